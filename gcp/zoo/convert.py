"""Convert published GCP checkpoints to this zoo's layout.

    python -m gcp.zoo.convert SRC DST --format isqrt-cov     # fast-MPN-COV mpncovresnet50/101
    python -m gcp.zoo.convert SRC DST --format svd-pade      # DifferentiableSVD ResNet-50

Recognised source layouts:

* iSQRT-COV release files: flat torchvision ResNet keys (``conv1.``, ``bn1.``, ``layer1-4.``) plus
  ``layer_reduce.`` (1×1 conv), ``layer_reduce_bn.`` and ``fc.`` (``fc.weight`` is
  classes × 32896);
* training checkpoints of both repositories (``.pth.tar`` dicts with ``state_dict``): the
  backbone as ``features.[module.]N.`` (0 conv1, 1 bn1, 4–7 layer1–4), the reduction as
  ``representation.conv_dr_block.{0,1}.`` and the classifier as ``classifier.``.

DST is a safetensors file whose metadata records the architecture (ResNet depth, reduction,
method, last-stage stride), so ``gcp.zoo.create_model(name, **arch, pretrained=True,
pretrained_cfg_overlay=dict(file=DST))`` loads it and refuses a mismatching stride.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Optional

import torch
from safetensors.torch import save_file
from torch import Tensor

from .errors import CheckpointError
from .io import atomic_write, read_state_dict

FORMATS = ("isqrt-cov", "svd-pade")
_FEATURE_INDEX = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_RESNETS = {
    (2, 2, 2, 2, False): "gcp_resnet18",
    (3, 4, 6, 3, False): "gcp_resnet34",
    (3, 4, 6, 3, True): "gcp_resnet50",
    (3, 4, 23, 3, True): "gcp_resnet101",
    (3, 8, 36, 3, True): "gcp_resnet152",
}
_FORMAT_ARGS = {
    "isqrt-cov": dict(method="isqrt", iters=5, last_stride=1),
    "svd-pade": dict(method="svd", backward="pade", last_stride=2),
}


def _rename(key: str) -> Optional[str]:
    """Source key → zoo key, or ``None`` for keys that carry no parameters of ours."""
    key = re.sub(r"(^|\.)module\.", r"\1", key)  # DataParallel wrappers
    m = re.match(r"features\.(\d+)\.(.*)$", key)
    if m:
        if m.group(1) not in _FEATURE_INDEX:
            raise CheckpointError(f"unexpected backbone index in source key {key!r}")
        return f"backbone.{_FEATURE_INDEX[m.group(1)]}.{m.group(2)}"
    for src, dst in (("representation.conv_dr_block.0.", "head.reduce.conv."),
                     ("representation.conv_dr_block.1.", "head.reduce.bn."),
                     ("layer_reduce_bn.", "head.reduce.bn."), ("layer_reduce.", "head.reduce.conv."),
                     ("classifier.", "head.fc."), ("fc.", "head.fc.")):
        if key.startswith(src):
            return dst + key[len(src):]
    if re.match(r"(conv1|bn1|layer[1-4])\.", key):
        return "backbone." + key
    return None


def convert_state_dict(state: dict[str, Tensor], fmt: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Rename a source state dict; returns ``(state, arch)`` with the zoo model name and options."""
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = _rename(key)
        if new is None:
            unknown.append(key)
        elif new in out:
            raise CheckpointError(f"two source keys map to {new!r}")
        else:
            out[new] = value
    if unknown:
        raise CheckpointError(f"source keys of no known layout: {', '.join(sorted(unknown)[:12])}")
    for key in [k for k in out if k.endswith(".running_var")]:  # checkpoints older than torch 0.4.1
        out.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    arch = _infer_arch(out, fmt)
    return out, arch


def _infer_arch(state: dict[str, Tensor], fmt: str) -> dict[str, Any]:
    blocks = []
    for layer in range(1, 5):
        idx = {int(m.group(1)) for k in state if (m := re.match(rf"backbone\.layer{layer}\.(\d+)\.", k))}
        blocks.append(len(idx))
    bottleneck = any(".conv3." in k for k in state)
    name = _RESNETS.get((*blocks, bottleneck))
    if name is None:
        raise CheckpointError(f"not a ResNet-18/34/50/101/152 backbone: blocks per stage {blocks}")
    if "head.reduce.conv.weight" not in state or "head.fc.weight" not in state:
        raise CheckpointError("source has no reduction layer or no classifier (layer_reduce / fc keys)")
    reduced = state["head.reduce.conv.weight"].shape[0]
    classes, features = state["head.fc.weight"].shape
    if features != reduced * (reduced + 1) // 2:
        raise CheckpointError(f"classifier takes {features} features but a {reduced}-d covariance gives "
                              f"{reduced * (reduced + 1) // 2}")
    return dict(architecture=name, reduced_dim=reduced, num_classes=classes, **_FORMAT_ARGS[fmt])


def convert_file(src: str, dst: str, fmt: str) -> dict[str, Any]:
    """Convert ``src`` to a safetensors file ``dst`` (written atomically); returns the arch dict."""
    state, arch = convert_state_dict(read_state_dict(src), fmt)
    config = dict(architecture=arch["architecture"], arch_args=dict(arch), num_classes=arch["num_classes"],
                  source=src, format=fmt)
    config["arch_args"].pop("num_classes")
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    atomic_write(dst, lambda tmp: save_file(tensors, tmp, metadata={"gcp_config": json.dumps(config)}))
    return arch


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gcp.zoo.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="published checkpoint (.pth, .pth.tar or .safetensors)")
    ap.add_argument("dst", help="output .safetensors file")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    args = ap.parse_args(argv)
    if not args.dst.endswith(".safetensors"):
        ap.error("DST must end with .safetensors")
    if os.path.exists(args.dst) and not args.overwrite:
        ap.error(f"{args.dst} exists; pass --overwrite to replace it")
    try:
        arch = convert_file(args.src, args.dst, args.format)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = arch.pop("architecture")
    opts = ", ".join(f"{k}={v!r}" for k, v in arch.items())
    print(f"wrote {args.dst}\nload it with:\n  gcp.zoo.create_model({name!r}, {opts}, pretrained=True, "
          f"pretrained_cfg_overlay=dict(file={args.dst!r}))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
