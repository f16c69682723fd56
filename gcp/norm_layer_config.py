"""Where and how a model's batch normalisation is replaced by ZCA whitening or PCA denoising, as
one value a model can record and rebuild (Wang et al., NeurIPS 2019)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

from torch import nn

from .backward import BACKWARDS
from .errors import InvalidOptionError
from .pca import PCADenoising
from .validators import is_int
from .whitening import ZCAWhitening, replace_batchnorm

NORM_LAYERS = {"zca": ZCAWhitening, "pca": PCADenoising}
PCA_DEFAULT_COMPONENTS = 16  # the paper keeps the top 16 eigenvectors


def batchnorm_paths(model: nn.Module) -> list[str]:
    """The dotted paths of ``model``'s batch normalisations, in module order (a stem's first)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _refuse(option: str, message: str) -> InvalidOptionError:
    error = InvalidOptionError(message)
    error.option = option  # type: ignore[attr-defined]  # which option is wrong, for the CLIs' flag names
    return error


@dataclass(frozen=True)
class NormLayerConfig:
    """A ZCA (``layer="zca"``, groups of ``dim`` channels; ``None``: one group) or PCA
    (``layer="pca"``, ``components`` kept; default 16) layer in place of the batch normalisation at
    ``at`` (a dotted path; ``None``: the model's first, the stem's), with the ``backward`` mode of its
    eigendecomposition (``None``: the layer's default). Errors carry ``option``, the field at fault.

    Example:
        >>> model = timm.create_model("resnet18_cifar")
        >>> NormLayerConfig("zca", dim=8, backward="pi").apply(model)
        'bn1'
    """

    layer: str
    dim: Optional[int] = None
    components: Optional[int] = None
    backward: Optional[str] = None
    at: Optional[str] = None

    def __post_init__(self) -> None:
        if self.layer not in NORM_LAYERS:
            raise _refuse("layer", f"norm layer {self.layer!r}: expected one of {', '.join(NORM_LAYERS)}")
        if self.dim is not None and (self.layer != "zca" or not is_int(self.dim) or self.dim < 1):
            raise _refuse("dim", f"dim={self.dim!r}: channels per group of a ZCA layer, an integer >= 1")
        if self.components is not None and (self.layer != "pca" or not is_int(self.components)
                                            or self.components < 1):
            raise _refuse("components", f"components={self.components!r}: of a PCA layer, an integer >= 1")
        if self.backward is not None and self.backward not in BACKWARDS:
            raise _refuse("backward", f"unknown backward {self.backward!r}; the backward modes are "
                                      f"{', '.join(BACKWARDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "NormLayerConfig":
        unknown = sorted(set(values) - {"layer", "dim", "components", "backward", "at"})
        if unknown:
            raise _refuse("layer", f"norm layer option(s) {', '.join(unknown)} unknown (layer, dim, components, "
                                   "backward, at)")
        return cls(**dict(values))

    def apply(self, model: nn.Module) -> str:
        """Replace the batch normalisation at ``at`` (default: the first) and return its path."""
        paths = batchnorm_paths(model)
        if not paths:
            raise _refuse("layer", f"{type(model).__name__} has no batch normalisation to replace")
        path = self.at or paths[0]
        try:
            old = model.get_submodule(path)
        except AttributeError:
            raise _refuse("at", f"{path}: no such module; the batch normalisations are "
                                f"{', '.join(paths[:6])}{', …' if len(paths) > 6 else ''}") from None
        if not isinstance(old, nn.modules.batchnorm._BatchNorm):
            raise _refuse("at", f"{path}: a {type(old).__name__}, not a batch normalisation (e.g. {paths[0]})")
        channels = old.num_features
        kwargs: dict[str, Any] = {} if self.backward is None else {"backward": self.backward}
        if self.layer == "zca":
            d = self.dim or channels
            if channels % d:
                raise _refuse("dim", f"{path} has {channels} channels, which groups of {d} do not divide")
            kwargs["groups"] = channels // d
        else:
            k = self.components or PCA_DEFAULT_COMPONENTS
            if k > channels:
                raise _refuse("components", f"{path} has only {channels} channels, fewer than {k} components")
            kwargs["k"] = k
        try:
            replace_batchnorm(model, path, NORM_LAYERS[self.layer], **kwargs)
        except InvalidOptionError as exc:
            raise _refuse("backward", f"{self.layer} layer at {path}: {exc}") from None
        return path
