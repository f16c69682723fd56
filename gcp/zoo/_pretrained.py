"""Loading pretrained weights: a file, a URL or a Hugging Face Hub id, verified by hash, checked
against the model's architecture, adapted to ``in_chans`` the way timm does."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any, Mapping, Optional

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


def read_folder_config(folder: str, wanted_classes: Optional[int] = None) -> dict[str, Any]:
    """A saved folder's ``config.json``, checked before timm or the zoo acts on it: valid JSON in
    timm's layout, a GCP architecture, an integer ``num_classes`` that the weights' classifier agrees
    with, ``model_args`` a mapping. Any fault is a :class:`CheckpointError` naming the file and key
    (a hand-edited file must not reach timm's constructors as a raw ``TypeError``). ``wanted_classes``,
    a class count the caller asks for that differs from the file's, gets a fresh classifier (timm's
    rule) and is not compared with the weights."""
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}: not a folder written by gcp.zoo.save_pretrained")
    try:
        with open(path) as fh:
            config = json.load(fh)
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(config).__name__}")
    if "arch_args" in config:
        raise CheckpointError(f"{path} is in the layout of gcp 0.1; load it with gcp 0.1 and save it again")
    from ._registry import spec_of

    arch = config.get("architecture")
    if not isinstance(arch, str) or spec_of(arch) is None:
        raise CheckpointError(f"{path}: architecture {arch!r} is not a GCP model (gcp.zoo.list_models(generic=True) "
                              "lists them: gcp_<timm name>); a plain timm model's folder loads with timm itself")
    classes = config.get("num_classes")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 0:
        raise CheckpointError(f"{path}: num_classes must be an integer >= 0, got {classes!r}")
    if not isinstance(config.get("model_args", {}), dict):
        raise CheckpointError(f"{path}: model_args must be a JSON object, got {config['model_args']!r}")
    recorded = config.get("model_args", {}).get("num_classes", classes)
    weights = folder_weights(folder)
    if wanted_classes is not None and wanted_classes not in (classes, recorded):
        return config  # another class count asked for: a fresh classifier, whatever the file says
    rows = classifier_rows(weights)
    if rows is not None and classes and rows != classes:
        raise CheckpointError(f"{path} says num_classes={classes} but the classifier in {weights} has {rows} classes; "
                              "pass num_classes= to choose (a different count gets a fresh classifier)")
    if recorded != classes:
        raise CheckpointError(f"{path} says num_classes={classes} but its model_args say num_classes={recorded!r}; "
                              "the file was edited by hand: make them agree (the weights decide)")
    return config


def classifier_rows(weights: str) -> Any:
    """The classifier's class count in a weights file (``None`` without a classifier), read without
    loading the other tensors where the format allows."""
    from .io import CLASSIFIER_PREFIX

    key = CLASSIFIER_PREFIX + "weight"
    if weights.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(weights, framework="pt") as fh:
                return fh.get_slice(key).get_shape()[0] if key in fh.keys() else None
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
            raise CheckpointError(f"cannot read {weights}: {exc}") from None
    classifier = read_state_dict(weights).get(key)
    return None if classifier is None else classifier.shape[0]


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
    trained = {k: saved.get(k) for k in ("method", "backward") if k in saved}
    loaded = {k: mine.get(k) for k in trained}
    if trained != loaded:
        # allowed (the hybrid protocol trains one head and continues with another), but stated
        import warnings

        from .errors import HeadMismatchWarning

        warnings.warn(f"{path} was trained with the head {trained} and is loaded into a model whose head is "
                      f"{loaded} (kept as asked; recorded as pretrained_cfg['weights_head'])",
                      HeadMismatchWarning, stacklevel=3)
        cfg = getattr(model, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            cfg["weights_head"] = trained


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
            # a hand-edited config that disagrees with its own weights is refused
            read_folder_config(location, getattr(model, "num_classes", None))
            location = folder_weights(location)
    elif cfg.get("url"):
        location = fetch(str(cfg["url"]))
    elif cfg.get("hf_hub_id"):
        from huggingface_hub import hf_hub_download

        location = hf_hub_download(cfg["hf_hub_id"], cfg.get("hf_hub_filename") or WEIGHTS_NAME)
    else:
        raise CheckpointError("the pretrained config names no weight file, url or hf_hub_id")
    load_weights_file(model, location, first_conv=cfg.get("first_conv"))
