"""Checkpoint I/O: verified loading, strict key checks, atomic saving, self-describing folders."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.parse
from typing import Any, Mapping, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
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


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_into(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Strict load with readable errors; the classifier is kept fresh when the class counts differ.

    timm's rule: a checkpoint's classifier is dropped (and the model's freshly initialised one
    kept) only when the model was asked for a different number of classes; any other
    missing, unexpected or mis-shaped key is an error that lists the keys — never a silent
    partial load.
    """
    expected = model.state_dict()
    ckpt_classes = state.get(CLASSIFIER_PREFIX + "weight")
    model_classes = getattr(model, "num_classes", None)
    if ckpt_classes is not None and ckpt_classes.shape[0] != model_classes:
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
        expected = {k: v for k, v in expected.items() if not k.startswith(CLASSIFIER_PREFIX)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listing(shapes)}")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=not (ckpt_classes is not None and ckpt_classes.shape[0] != model_classes))


def check_metadata(model: nn.Module, path: str) -> None:
    """Refuse weights converted for a different, parameter-free architecture choice (stride)."""
    if not path.endswith(".safetensors"):
        return
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata() or {}
    if "gcp_config" not in meta:
        return
    saved = json.loads(meta["gcp_config"]).get("arch_args", {})
    mine = getattr(model, "arch_args", {})
    if saved.get("backbone", mine.get("backbone")) != mine.get("backbone"):
        raise CheckpointError(
            f"{path} holds weights of {saved.get('architecture', saved['backbone'])} but the model is "
            f"{mine.get('architecture', mine.get('backbone'))}"
        )
    for key in ("last_stride", "reduced_dim"):
        if key in saved and key in mine and saved[key] != mine[key]:
            raise CheckpointError(
                f"{path} was saved for {key}={saved[key]!r} but the model has {key}={mine[key]!r}; "
                f"create the model with {key}={saved[key]!r}"
            )


def adapt_input_convs(model: nn.Module, state: dict[str, Tensor], first_conv: Any) -> dict[str, Tensor]:
    """timm's rule for ``in_chans != 3``: the first conv's RGB filters are summed (1 channel) or
    repeated and scaled by ``3/in_chans`` (timm's ``adapt_input_conv``), so pretrained weights
    load into a model built for other inputs. Only the named first conv(s) are adapted."""
    from timm.models import adapt_input_conv

    names = first_conv if isinstance(first_conv, (tuple, list)) else (first_conv,) if first_conv else ()
    expected = model.state_dict()
    state = dict(state)
    for name in names:
        key = f"{name}.weight"
        if key in state and key in expected and state[key].dim() == 4:
            have, want = state[key].shape, expected[key].shape
            if have[1] != want[1] and have[0] == want[0] and have[2:] == want[2:]:
                state[key] = adapt_input_conv(want[1], state[key])
    return state


def load_weights_file(model: nn.Module, location: str, first_conv: Any = None) -> None:
    """Load ``location`` (a path, optionally with ``#sha256=<hex>``) into ``model``, verified;
    ``first_conv`` names the input conv(s) to adapt when the model's ``in_chans`` differs."""
    path, expected = split_hash(location)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected:
            raise CheckpointError(f"SHA-256 of {path} is {actual}, expected {expected}: refusing to load")
    state = read_state_dict(path)
    check_metadata(model, path)
    load_into(model, adapt_input_convs(model, state, first_conv), path)


def fetch(url: str) -> str:
    """Local path of ``url`` (``#sha256=`` fragment kept), downloading it into torch's hub cache."""
    base, expected = split_hash(url)
    filename = os.path.basename(urllib.parse.urlparse(base).path) or "weights"
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    if not os.path.isfile(cached):
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        try:
            torch.hub.download_url_to_file(base, cached, progress=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot download {base}: {exc}") from exc
    return f"{cached}#sha256={expected}" if expected else cached


def load_pretrained_weights(model: nn.Module, cfg: Mapping[str, Any]) -> None:
    """Load the weights a timm pretrained cfg points at (``file``, ``url`` or ``hf_hub_id``)."""
    if cfg.get("file"):
        location = str(cfg["file"])
    elif cfg.get("url"):
        location = fetch(str(cfg["url"]))
    elif cfg.get("hf_hub_id"):
        from huggingface_hub import hf_hub_download

        location = hf_hub_download(cfg["hf_hub_id"], cfg.get("hf_hub_filename") or WEIGHTS_NAME)
    else:
        raise CheckpointError("the pretrained config names no weight file, url or hf_hub_id")
    load_weights_file(model, location, first_conv=cfg.get("first_conv"))


def atomic_write(path: str, write: Any) -> None:
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


def model_config(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return dict(
        architecture=cfg.get("architecture") or getattr(model, "arch_args", {}).get("architecture"),
        arch_args=getattr(model, "arch_args", {}),
        num_classes=getattr(model, "num_classes", None),
        input_size=list(cfg.get("input_size", (3, 224, 224))),
        mean=list(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=list(cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=cfg.get("interpolation", "bilinear"),
        crop_pct=cfg.get("crop_pct", 0.875),
    )


def save_weights(model: nn.Module, path: str, config: Optional[dict] = None) -> None:
    """Atomically write ``model``'s state dict as safetensors with the model config as metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"gcp_config": json.dumps(config or model_config(model))}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))
