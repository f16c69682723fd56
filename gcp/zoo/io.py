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

__all__ = ["CLASSIFIER_PREFIX", "atomic_write", "load_state_dict_strict", "read_state_dict", "sha256_of", "split_hash"]

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
