"""Save a GCP model to a folder and rebuild it from there without repeating its options."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from safetensors.torch import save_file
from torch import nn

from ._gcpnet import recorded_head
from ._pretrained import CONFIG_NAME, WEIGHTS_NAME, folder_weights, read_folder_config
from .errors import CheckpointError
from .io import CLASSIFIER_PREFIX, atomic_write, read_state_dict
from .model_card import Provenance, model_card

CARD_NAME = "README.md"


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


def _timm_config(model: nn.Module) -> dict[str, Any]:
    """``config.json`` in timm's own layout (``architecture``, ``num_classes``, ``model_args``,
    ``pretrained_cfg``), written by timm's ``save_config_for_hf``, so that timm's tools —
    ``timm.create_model("local-dir:<folder>")``, ``validate.py``, the Hub — read the folder."""
    import tempfile

    # timm's writer of that file lives in timm.models._hub; its public save_for_hf would also
    # write (and here duplicate) the weights, which save_weights writes atomically with metadata
    from timm.models._hub import save_config_for_hf

    with tempfile.TemporaryDirectory() as tmp:
        save_config_for_hf(model, os.path.join(tmp, CONFIG_NAME))
        with open(os.path.join(tmp, CONFIG_NAME)) as fh:
            return json.load(fh)


def save_pretrained(model: nn.Module, path: str, overwrite: bool = False,
                    provenance: Optional[Provenance] = None) -> str:
    """Write ``path/model.safetensors``, ``path/config.json`` in timm's layout (the model name,
    its head options as ``model_args``, num_classes, preprocessing) and ``path/README.md``, a model
    card (:func:`gcp.zoo.model_card.model_card`: the architecture, where the weights come from
    as ``provenance`` says, the results, the citations, the license), each atomically. An existing
    save is never replaced unless ``overwrite=True``. Returns ``path``. The folder loads with
    :func:`load_pretrained` and with ``timm.create_model("local-dir:<path>", pretrained=True)``.

    Example:
        >>> gcp.zoo.save_pretrained(model, "runs/cub-r50")
        >>> same = gcp.zoo.load_pretrained("runs/cub-r50")
    """
    import timm

    meta = model_config(model)
    name = meta.get("architecture")
    if not name or not timm.is_model(str(name).split(".")[0]) or not getattr(model, "arch_args", None):
        raise CheckpointError(f"save_pretrained needs a model built by gcp.zoo.create_model / timm.create_model "
                              f"(a {type(model).__name__} built by hand records no architecture to rebuild it "
                              "from); save its state_dict with gcp.zoo.save_weights instead")
    weights, cfg_path = os.path.join(path, WEIGHTS_NAME), os.path.join(path, CONFIG_NAME)
    if not overwrite and (os.path.exists(weights) or os.path.exists(cfg_path)):
        raise CheckpointError(f"{path} already holds a saved model; pass overwrite=True to replace it")
    config = _timm_config(model)
    save_weights(model, weights, meta)

    def write_config(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(config, fh, indent=2)

    atomic_write(cfg_path, write_config)
    card = model_card(model, provenance)

    def write_card(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(card)

    atomic_write(os.path.join(path, CARD_NAME), write_card)
    return path


def push_to_hub(model: nn.Module, repo_id: str, *, token: Optional[str] = None, private: bool = False,
                commit_message: str = "Add a gcp model", provenance: Optional[Provenance] = None,
                api: Any = None) -> Any:
    """Upload ``model`` to the Hugging Face Hub repository ``repo_id`` as :func:`save_pretrained`
    writes it (weights, timm's ``config.json``, the model card), as timm's ``push_to_hf_hub`` does:
    the repository is created if missing, then the folder is uploaded in one commit. ``api`` is a
    ``huggingface_hub.HfApi`` (default: one with ``token``); returns what its ``upload_folder``
    returns. ``timm.create_model("hf-hub:<repo_id>", pretrained=True)`` then loads it (after
    ``import gcp.zoo``)."""
    import tempfile

    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model, os.path.join(tmp, "model"), provenance=provenance)
        api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)


def load_pretrained(path: str, **overrides: Any) -> nn.Module:
    """Rebuild the model saved by :func:`save_pretrained` (or by timm's ``save_for_hf``) and load
    its weights, strictly: ``timm.create_model("local-dir:<path>", pretrained=True, **overrides)``
    after checking that ``config.json`` and the weights agree.

    ``overrides`` replace saved options, e.g. ``num_classes=200`` (the classifier is then fresh)
    or ``method="svd"``.
    """
    import timm

    cfg_path = os.path.join(path, CONFIG_NAME)
    config = read_folder_config(path, overrides.get("num_classes"))
    args = dict(config.get("model_args", {}))
    args["num_classes"] = config["num_classes"]
    _check_agreement(cfg_path, folder_weights(path), args, overrides)
    return timm.create_model(f"local-dir:{path}", pretrained=True, **overrides)


def _check_agreement(cfg_path: str, weights: str, args: dict[str, Any], overrides: dict[str, Any]) -> None:
    """``config.json`` and the weights file must describe the same model: the classifier's class
    count, and the head options the weights' own metadata records. An override the caller passes
    is honoured (a different ``num_classes`` then gets a fresh classifier, as timm does)."""
    from safetensors import safe_open

    if not os.path.isfile(weights):
        raise CheckpointError(f"{weights} not found: the folder of {cfg_path} has no weights")
    meta: dict[str, str] = {}
    if weights.endswith(".safetensors"):
        try:
            with safe_open(weights, framework="pt") as fh:
                meta = fh.metadata() or {}
                rows = fh.get_slice(CLASSIFIER_PREFIX + "weight").get_shape()[0] \
                    if CLASSIFIER_PREFIX + "weight" in fh.keys() else None
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
            raise CheckpointError(f"cannot read {weights}: {exc}") from None
    else:  # timm's pickled pytorch_model.bin, read without unpickling anything but tensors
        classifier = read_state_dict(weights).get(CLASSIFIER_PREFIX + "weight")
        rows = None if classifier is None else classifier.shape[0]
    if rows is not None and "num_classes" not in overrides and rows != args["num_classes"]:
        raise CheckpointError(f"{cfg_path} says num_classes={args['num_classes']} but the classifier in {weights} "
                              f"has {rows} classes; pass num_classes= to choose (a different count gets a fresh "
                              "classifier)")
    saved_args = json.loads(meta["gcp_config"]).get("arch_args", {}) if "gcp_config" in meta else {}
    saved = {**recorded_head(saved_args), **{k: saved_args[k] for k in ("last_stride",) if k in saved_args}}
    mine = {**recorded_head(args), **{k: args[k] for k in ("last_stride",) if k in args}}
    for key in ("method", "backward", "reduced_dim", "last_stride"):
        if key in saved and key in mine and key not in overrides and "head" not in overrides \
                and saved[key] != mine[key]:
            raise CheckpointError(f"{cfg_path} says {key}={mine[key]!r} but {weights} was saved with "
                                  f"{key}={saved[key]!r}; pass {key}= to choose")
