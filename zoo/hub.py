"""Save a GCP model to a folder and rebuild it from there without repeating its options."""

from __future__ import annotations

import json
import os
from typing import Any

from torch import nn

from ._pretrained import CONFIG_NAME, WEIGHTS_NAME, atomic_write, load_weights_file, model_config, save_weights
from .errors import CheckpointError


def save_pretrained(model: nn.Module, path: str, overwrite: bool = False) -> str:
    """Write ``path/model.safetensors`` and ``path/config.json`` (model name, head options,
    num_classes, mean/std, input size), each atomically. An existing save is never replaced
    unless ``overwrite=True``. Returns ``path``.

    Example:
        >>> zoo.save_pretrained(model, "runs/cub-r50")
        >>> same = zoo.load_pretrained("runs/cub-r50")
    """
    config = model_config(model)
    if not config.get("architecture"):
        raise CheckpointError("save_pretrained needs a model built by zoo.create_model (no architecture recorded)")
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
        raise CheckpointError(f"{path} has no {CONFIG_NAME}: not a folder written by zoo.save_pretrained")
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
