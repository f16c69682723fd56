"""Save a GCP model to a folder and rebuild it from there without repeating its options."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from safetensors.torch import save_file
from torch import nn

from ._pretrained import CONFIG_NAME, WEIGHTS_NAME, load_weights_file
from .errors import CheckpointError
from .io import atomic_write


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


def save_pretrained(model: nn.Module, path: str, overwrite: bool = False) -> str:
    """Write ``path/model.safetensors`` and ``path/config.json`` (model name, head options,
    num_classes, mean/std, input size), each atomically. An existing save is never replaced
    unless ``overwrite=True``. Returns ``path``.

    Example:
        >>> gcp.zoo.save_pretrained(model, "runs/cub-r50")
        >>> same = gcp.zoo.load_pretrained("runs/cub-r50")
    """
    config = model_config(model)
    if not config.get("architecture"):
        raise CheckpointError("save_pretrained needs a model built by gcp.zoo.create_model (no architecture recorded)")
    weights, cfg_path = os.path.join(path, WEIGHTS_NAME), os.path.join(path, CONFIG_NAME)
    if not overwrite and (os.path.exists(weights) or os.path.exists(cfg_path)):
        raise CheckpointError(f"{path} already holds a saved model; pass overwrite=True to replace it")
    save_weights(model, weights, config)

    def write_config(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(config, fh, indent=2)

    atomic_write(cfg_path, write_config)
    return path


def load_pretrained(path: str, **overrides: Any) -> nn.Module:
    """Rebuild the model saved by :func:`save_pretrained` and load its weights (strictly).

    ``overrides`` replace saved options, e.g. ``num_classes=200`` (the classifier is then fresh)
    or ``method="svd"``.
    """
    from ._registry import create_model

    cfg_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{path} has no {CONFIG_NAME}: not a folder written by gcp.zoo.save_pretrained")
    try:
        with open(cfg_path) as fh:
            config = json.load(fh)
        args = dict(config["arch_args"])
        name = args.pop("architecture")
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{cfg_path} is not a valid GCP model config: {exc}") from exc
    args.pop("backbone", None)
    args["num_classes"] = config.get("num_classes", 1000)
    args.update(overrides)
    model = create_model(name, **args)
    load_weights_file(model, os.path.join(path, WEIGHTS_NAME))
    return model
