"""File I/O shared by the zoo and the layers above it: atomic writes, state-dict reading, strict
loading with readable errors, and SHA-256 hashes.

Every writer in the project goes through :func:`atomic_write`, so a reader (or a resumed run)
never sees a partial file; every reader of weights goes through :func:`read_state_dict`, so an
untrusted file is never unpickled.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from typing import Any, Callable, Mapping, Optional

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from .errors import CheckpointError

__all__ = ["CLASSIFIER_PREFIX", "atomic_write", "describe_mismatch", "load_state_dict_strict", "read_state_dict",
           "sha256_of", "split_hash"]

CLASSIFIER_PREFIX = "head.fc."


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_hash(location: str) -> tuple[str, Optional[str]]:
    """``"path#sha256=<hex>"`` → ``("path", "<hex>")``; the pip-style fragment pins a file's hash."""
    base, sep, fragment = location.partition("#")
    if sep and fragment.startswith("sha256="):
        return base, fragment[len("sha256="):].lower()
    return location, None


def read_state_dict(path: str) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a torch checkpoint (``state_dict``/``model`` unwrapped)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            return load_file(path)
        # timm's train.py stores its argparse.Namespace in a checkpoint's "args": a plain
        # attribute bag, allowed so that its checkpoints load without unpickling anything else
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch/pickle raise many types for a bad file
        # torch's message would suggest weights_only=False, i.e. unpickling an untrusted file
        raise CheckpointError(f"cannot read checkpoint {path}: not a weight file ({type(exc).__name__}); "
                              "untrusted files are never unpickled") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return dict(obj)


def atomic_write(path: str, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates the file 0600; the final file gets the permissions any new file gets
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def describe_mismatch(expected: Mapping[str, Any], state: Mapping[str, Any], strict: bool = True) -> list[str]:
    """What keeps ``state`` from loading into a model whose state dict is ``expected`` (names to
    tensors or shapes): missing and unexpected keys (when ``strict``) and shape mismatches (always,
    as torch refuses them either way), each listed; then the head option they point at."""
    shape = {k: tuple(getattr(v, "shape", v)) for k, v in expected.items()}
    have = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, Tensor)}
    missing = sorted(set(shape) - set(have)) if strict else []
    unexpected = sorted(set(have) - set(shape)) if strict else []
    shapes = sorted(f"{k}: checkpoint {have[k]} vs model {shape[k]}" for k in set(have) & set(shape)
                    if have[k] != shape[k])
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listing(shapes)}")
    hint = _backbone_hint(shape, have) or _head_hint(shape, have)
    if problems and hint:
        problems.append(hint)
    return problems


def _backbone_hint(model: Mapping[str, tuple], ckpt: Mapping[str, tuple]) -> str:
    """A timm backbone's own weights (keys without the ``backbone.`` prefix) given where a GCP
    model's are expected: say where they go."""
    if not ckpt or any(k.startswith("backbone.") for k in ckpt):
        return ""
    fits = sum(f"backbone.{k}" in model for k in ckpt)
    if fits < max(1, len(ckpt) // 2):
        return ""
    return ("the file holds a timm backbone's weights (its keys lack the 'backbone.' prefix): load them into the "
            "backbone with backbone_pretrained=PATH, which keeps a fresh GCP head")


def _head_hint(model: Mapping[str, tuple], ckpt: Mapping[str, tuple]) -> str:
    """The GCP head option a mismatch points at: the width of the head's 1×1 reduction is its
    ``reduced_dim``; with the same reduction, a classifier that also takes the class token's C
    features is a So-ViT head."""
    key = "head.reduce.conv.weight"
    if key in model and key in ckpt and model[key] != ckpt[key]:
        want, have = ckpt[key][0], model[key][0]
        return (f"the checkpoint's GCP head reduces to {want} channels and the model's to {have}: build the "
                f"model with reduced_dim={want} (timm's train.py, validate.py and benchmark.py: --model-kwargs "
                f"reduced_dim={want}), or save it with gcp.zoo.save_pretrained and load the folder "
                "(local-dir:<folder>), which records its head options")
    fc = CLASSIFIER_PREFIX + "weight"
    if key in model and fc in model and fc in ckpt and model[fc][1:] != ckpt[fc][1:]:
        d = model[key][0]
        plain = d * (d + 1) // 2
        kind = {plain: "a plain GCP head", plain + model[key][1]: "a So-ViT head (sovit=True)"}
        return (f"the checkpoint's classifier takes {ckpt[fc][1]} features "
                f"({kind.get(ckpt[fc][1], 'another head')}), the model's {model[fc][1]} "
                f"({kind.get(model[fc][1], 'another head')})")
    return ""


def load_state_dict_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Strict load with readable errors; the classifier is kept fresh when the class counts differ.

    timm's rule: a checkpoint's classifier is dropped (and the model's freshly initialised one
    kept) only when the model was asked for a different number of classes; any other
    missing, unexpected or mis-shaped key is an error that lists the keys — never a silent
    partial load.
    """
    expected = model.state_dict()
    ckpt_classes = state.get(CLASSIFIER_PREFIX + "weight")
    model_classes = getattr(model, "num_classes", None)
    fresh_classifier = ckpt_classes is not None and ckpt_classes.shape[0] != model_classes
    if fresh_classifier:
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
        expected = {k: v for k, v in expected.items() if not k.startswith(CLASSIFIER_PREFIX)}
    problems = describe_mismatch(expected, state)
    if problems:
        from .layouts import describe

        kind = describe(state)
        if "gcp.zoo.convert" in kind:  # one line instead of hundreds of keys: the file needs converting
            raise CheckpointError(f"checkpoint {source} is {kind}")
        raise CheckpointError(f"checkpoint {source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=not fresh_classifier)
