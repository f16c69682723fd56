"""ZCA whitening: a decorrelating alternative to batch normalisation."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from ._covariance_norm import CovarianceNorm, apply_transform, check_features, grouped_features
from ._precision import autocast_off
from .covariance import centred_moments
from .errors import InvalidOptionError
from .spectral import inv_sqrtm
from .validators import is_int


def _zca_matrix(cov: Tensor, eps: float, backward: str, opts: dict) -> Tensor:
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    return inv_sqrtm(cov + eps * eye, backward, **opts)


def zca_whiten(x: Tensor, groups: int = 1, eps: float = 1e-4, backward: str = "exact", **opts: Any) -> Tensor:
    r"""ZCA-whiten features with their own batch statistics.

    For each group of ``d = C/groups`` channels with samples ``X ∈ R^{d×M}`` (``M = N·H·W``):

    .. math::
        \Sigma = \tfrac1M (X-\mu)(X-\mu)^\top + \epsilon I,\qquad Y = \Sigma^{-1/2}(X - \mu),

    so ``Y`` has covariance ``≈ I`` (exactly ``Σ_0 (Σ_0 + εI)^{-1}``) and is the whitened signal
    closest to ``X`` (Wang et al., NeurIPS 2019). ``Σ^{-1/2}`` is :func:`gcp.inv_sqrtm` with the
    chosen ``backward``.

    Args:
        x: ``(N, C, *)`` features, e.g. ``(N, C, H, W)``.
        groups: number of channel groups (``C`` divisible by it).
        eps: ridge added to the covariance.
        backward: backward mode of the inverse square root; ``**opts`` its options.

    Returns:
        Tensor shaped and typed like ``x``.

    Example:
        >>> y = gcp.zca_whiten(torch.randn(16, 8, 4, 4), groups=2)
    """
    if x.dim() < 2:
        raise InvalidOptionError(f"zca_whiten expects (N, C, ...) features; got shape {tuple(x.shape)}")
    c = x.shape[1]
    if not is_int(groups) or groups < 1 or c % groups:
        raise InvalidOptionError(f"groups must be a positive divisor of C={c}, got {groups!r}")
    check_features(x, c, "zca_whiten")
    with autocast_off(x.device):
        feats = grouped_features(x, groups)
        _, centred, cov = centred_moments(feats)
        return apply_transform(_zca_matrix(cov, eps, backward, opts), centred, x)


class ZCAWhitening(CovarianceNorm):
    r"""ZCA whitening layer, a drop-in replacement for ``nn.BatchNorm2d`` (Wang et al., NeurIPS 2019).

    Training mode whitens each group of ``d = C/groups`` channels with the batch covariance,
    ``y = (Σ + εI)^{-1/2}(x − μ)`` (see :func:`zca_whiten`), then applies a per-channel affine
    ``γ y + β``. Running mean and running **covariance** are updated with ``momentum`` (``None``:
    cumulative average, as in BN); eval mode whitens with ``(Σ_run + εI)^{-1/2}``, computed once
    and cached — averaging covariances rather than whitening matrices keeps the estimate
    unbiased. ``groups`` reproduces the paper's experiments with ``d = C/groups``; the paper
    reports that the standard ED gradient (``backward="ed"``) fails for ``d >= 8`` while
    ``"exact"``/``"pi"`` train normally.

    Args:
        num_features: ``C``.
        groups: channel groups whitened independently.
        eps: ridge ``ε`` (paper: 1e-4).
        momentum: running-statistics momentum, or ``None`` for a cumulative average.
        backward: backward mode of the inverse square root; ``**opts`` its options.
        affine: learn ``γ`` and ``β``.

    Shape:
        ``(N, C, *)`` → same shape and dtype.

    Example:
        >>> zca = gcp.ZCAWhitening(64, groups=4, backward="pi")
        >>> zca(torch.randn(8, 64, 16, 16)).shape
        torch.Size([8, 64, 16, 16])
    """

    def __init__(
        self,
        num_features: int,
        groups: int = 1,
        eps: float = 1e-4,
        momentum: Optional[float] = 0.1,
        backward: str = "exact",
        affine: bool = True,
        **opts: Any,
    ) -> None:
        super().__init__(num_features, groups, eps, momentum, affine)
        self.backward = backward
        self.opts = dict(opts)
        _zca_matrix(torch.eye(2, dtype=torch.float64, device="cpu").unsqueeze(0), eps, backward, self.opts)  # validate

    def extra_repr(self) -> str:
        return super().extra_repr() + f", backward={self.backward!r}"

    def transform(self, cov: Tensor) -> Tensor:
        return _zca_matrix(cov, self.eps, self.backward, self.opts)


def replace_batchnorm(model: nn.Module, name: str, layer: type[CovarianceNorm] = ZCAWhitening,
                      **kwargs: Any) -> CovarianceNorm:
    """Swap the ``nn.BatchNorm*`` at dotted path ``name`` (e.g. ``"bn1"``, ``"layer1.0.bn2"``).

    The new ``layer`` (default :class:`ZCAWhitening`) gets the BN's ``num_features``, ``eps`` is
    left to the layer's own default unless given, and a trained BN's affine ``γ``/``β`` are
    copied. Returns the new module.

    Example:
        >>> model = timm.create_model("resnet18")
        >>> zca = gcp.replace_batchnorm(model, "bn1", groups=8)
        >>> model.bn1 is zca
        True
    """
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
    except AttributeError as exc:
        raise InvalidOptionError(f"model has no submodule {name!r}") from exc
    if not isinstance(old, nn.modules.batchnorm._BatchNorm):
        raise InvalidOptionError(f"{name!r} is a {type(old).__name__}, not a batch normalisation layer")
    new = layer(old.num_features, **kwargs)
    if old.affine and new.affine:
        with torch.no_grad():
            new.weight.copy_(old.weight)
            new.bias.copy_(old.bias)
    new.to(device=old.weight.device if old.affine else None)
    setattr(parent, child, new)
    return new
