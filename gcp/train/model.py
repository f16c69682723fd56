"""The model of a run: built from its record for the image size it trains at, and checked to take
that size before any data is read (a ViT built for 224² would refuse 448² fine-grained crops only
at its first batch)."""

from __future__ import annotations

import os
from typing import Optional, Union

from torch import nn

import gcp
import gcp.zoo

from .errors import ConfigError
from .norm_layer import norm_config, norm_error
from .record import RunRecord, is_plain


def create_run_model(record: RunRecord, *, pretrained: bool = False, backbone_pretrained: Union[bool, str] = False,
                     weights: Optional[str] = None) -> nn.Module:
    """``record``'s model with its head options and class count.

    ``weights`` is a weight file (loaded strictly, as ``pretrained_cfg_overlay=dict(file=...)``)
    or a folder written by :func:`gcp.zoo.save_pretrained` (its saved architecture is rebuilt).
    A backbone built for a fixed input size (ViT, Swin, …) is built for ``record.data.img_size``
    (timm resamples pretrained position embeddings); any model that still cannot take that size
    is a :class:`ConfigError` naming ``--img-size``.
    """
    head: dict = record.head.model_kwargs()
    if record.drop_path is not None:
        head["drop_path_rate"] = record.drop_path  # a backbone option; refused by name where it has none
    size = record.data.img_size
    if is_plain(record.model) and not (weights and os.path.isdir(weights)):
        # the timm model's own classifier: GAP + linear over its features, no reduction (the same network)
        head = dict(head=gcp.HeadConfig("gap", reduced_dim=None, drop_rate=record.head.drop_rate or 0.0),
                    **{k: v for k, v in head.items() if k == "drop_path_rate"})
        record_model = f"gcp_{record.model}"
    else:
        record_model = record.model
    cov_norm = norm_config(record)
    if cov_norm is not None:
        head["cov_norm"] = cov_norm  # built and recorded by the zoo: a saved model rebuilds it
    if weights and os.path.isdir(weights):
        model = gcp.zoo.load_pretrained(weights, num_classes=record.num_classes, **head)
    else:
        overlay = dict(pretrained_cfg_overlay=dict(file=weights)) if weights else {}
        try:
            model = gcp.zoo.create_model(record_model, num_classes=record.num_classes,
                                         pretrained=pretrained or bool(weights),
                                         backbone_pretrained=backbone_pretrained, **head, **overlay,
                                         **gcp.zoo.input_size_kwargs(record_model, size))
        except gcp.InvalidOptionError as exc:
            if getattr(exc, "option", None) is not None:
                raise norm_error(record, exc) from None
            if "drop_path_rate" not in str(exc):
                raise
            raise ConfigError(f"--drop-path {record.drop_path}: {record.model}'s backbone has no stochastic depth "
                              f"({exc})") from None
    try:
        gcp.zoo.check_input_size(model, size)
    except gcp.ShapeError as exc:
        raise ConfigError(f"--img-size {size}: {exc}") from exc
    if record.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def check_models(records: list[RunRecord]) -> None:
    """Build the model of every planned run once (on the CPU, then dropped), so that a setting one
    of them cannot take (a ``--norm-dim`` that does not divide, a ``--drop-path`` its backbone
    lacks) is refused before the first run starts rather than after the others trained."""
    seen = set()
    for record in records:
        key = repr((record.model, record.num_classes, record.head, record.data.img_size, record.norm_layer,
                    record.norm_dim, record.norm_backward, record.norm_at, record.norm_components, record.drop_path))
        if key not in seen:
            seen.add(key)
            create_run_model(record)
