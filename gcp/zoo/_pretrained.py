"""Loading pretrained weights: a file, a URL or a Hugging Face Hub id, verified by hash, checked
against the model's architecture, adapted to ``in_chans`` the way timm does."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .io import load_state_dict_strict, read_state_dict, sha256_of, split_hash

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# what timm's save_for_hf writes by default (safe_serialization=False): its weights, pickled
TORCH_WEIGHTS_NAME = "pytorch_model.bin"


def folder_weights(folder: str) -> str:
    """The weights file of a saved model folder: ``model.safetensors``, else the
    ``pytorch_model.bin`` that ``timm.models.save_for_hf`` writes unless asked for safetensors
    (read with ``weights_only=True``)."""
    for name in (WEIGHTS_NAME, TORCH_WEIGHTS_NAME):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise CheckpointError(f"{folder} holds neither {WEIGHTS_NAME} nor {TORCH_WEIGHTS_NAME}: no weights to load")


def check_metadata(model: nn.Module, path: str) -> None:
    """Refuse weights converted for a different, parameter-free architecture choice (stride)."""
    if not path.endswith(".safetensors"):
        return
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata() or {}
    if "gcp_config" not in meta:
        return
    from ._gcpnet import recorded_head

    saved_args = json.loads(meta["gcp_config"]).get("arch_args", {})
    mine_args = getattr(model, "arch_args", {})
    saved = {**saved_args, **recorded_head(saved_args)}
    mine = {**mine_args, **recorded_head(mine_args)}
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
    load_state_dict_strict(model, adapt_input_convs(model, state, first_conv), path)


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
        if os.path.isdir(location):  # timm's local-dir: source, a saved model folder
            location = folder_weights(location)
    elif cfg.get("url"):
        location = fetch(str(cfg["url"]))
    elif cfg.get("hf_hub_id"):
        from huggingface_hub import hf_hub_download

        location = hf_hub_download(cfg["hf_hub_id"], cfg.get("hf_hub_filename") or WEIGHTS_NAME)
    else:
        raise CheckpointError("the pretrained config names no weight file, url or hf_hub_id")
    load_weights_file(model, location, first_conv=cfg.get("first_conv"))
