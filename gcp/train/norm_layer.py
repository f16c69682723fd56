"""The ZCA whitening or PCA denoising layer of a run (Wang et al., NeurIPS 2019), put in place of a
batch normalisation of the model as the run record says, with every refusal before any work."""

from __future__ import annotations

from torch import nn

import gcp

from .errors import ConfigError
from .record import RunRecord

PCA_DEFAULT_COMPONENTS = 16  # the paper keeps the top 16 eigenvectors


def batchnorm_paths(model: nn.Module) -> list[str]:
    """The dotted paths of the model's batch normalisations, in module order (the stem's first)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def insert_norm_layer(model: nn.Module, record: RunRecord) -> nn.Module:
    """Replace ``record.norm_at`` (default: the first batch normalisation, the stem's) by the
    record's layer and return it. A path that names no batch normalisation, a ``--norm-dim`` that
    does not divide its channels and more PCA components than channels are refused by flag."""
    paths = batchnorm_paths(model)
    if not paths:
        raise ConfigError(f"--norm-layer {record.norm_layer}: {record.model} has no batch normalisation to replace")
    path = record.norm_at or paths[0]
    try:
        old = model.get_submodule(path)
    except AttributeError:
        raise ConfigError(f"--norm-at {path}: {record.model} has no module {path!r}; its batch normalisations are "
                          f"{', '.join(paths[:6])}{', …' if len(paths) > 6 else ''}") from None
    if not isinstance(old, nn.modules.batchnorm._BatchNorm):
        raise ConfigError(f"--norm-at {path}: a {type(old).__name__}, not a batch normalisation (e.g. {paths[0]})")
    channels = old.num_features
    kwargs: dict = {}
    if record.norm_backward is not None:
        kwargs["backward"] = record.norm_backward
    if record.norm_layer == "zca":
        d = record.norm_dim or channels
        if channels % d:
            raise ConfigError(f"--norm-dim {d}: {path} has {channels} channels, which groups of {d} do not divide")
        layer, kwargs["groups"] = gcp.ZCAWhitening, channels // d
    else:
        k = record.norm_components or PCA_DEFAULT_COMPONENTS
        if k > channels:
            raise ConfigError(f"--norm-components {k}: {path} has only {channels} channels")
        layer, kwargs["k"] = gcp.PCADenoising, k
    try:
        return gcp.replace_batchnorm(model, path, layer, **kwargs)
    except gcp.GCPError as exc:
        raise ConfigError(f"--norm-layer {record.norm_layer} at {path}: {exc}") from None
