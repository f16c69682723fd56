"""The ZCA whitening or PCA denoising layer of a run (Wang et al., NeurIPS 2019): the run record's
``--norm-*`` settings as the :class:`gcp.NormLayerConfig` the zoo builds and records with the model,
and its errors in the flags' names."""

from __future__ import annotations

from typing import Optional

import gcp

from .errors import ConfigError
from .record import RunRecord

_FLAGS = {"layer": "norm_layer", "dim": "norm_dim", "components": "norm_components", "backward": "norm_backward",
          "at": "norm_at"}


def norm_config(record: RunRecord) -> Optional[gcp.NormLayerConfig]:
    """The layer ``record`` asks for, or ``None``."""
    if record.norm_layer is None:
        return None
    try:
        return gcp.NormLayerConfig(record.norm_layer, dim=record.norm_dim, components=record.norm_components,
                                   backward=record.norm_backward, at=record.norm_at)
    except gcp.InvalidOptionError as exc:
        raise norm_error(record, exc) from None


def norm_error(record: RunRecord, exc: gcp.InvalidOptionError) -> ConfigError:
    """``exc`` (raised by :class:`gcp.NormLayerConfig`, its ``option`` at fault) as a ConfigError
    that names the flag and the value given."""
    field = _FLAGS.get(getattr(exc, "option", "layer"), "norm_layer")
    flag = "--" + field.replace("_", "-")
    if field == "norm_at":  # the message starts with the path
        return ConfigError(f"{flag} {exc}")
    value = getattr(record, field)
    return ConfigError(f"{flag} {value if value is not None else '(default)'}: {exc}")
