"""PCA denoising: keep the top-k principal directions of the (standardised) channels."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ._covariance_norm import CovarianceNorm, apply_transform, check_features, grouped_features
from ._precision import autocast_off
from .covariance import centred_moments
from .errors import InvalidOptionError
from .spectral import eigh
from .validators import check_int


def _pca_matrix(cov: Tensor, k: int, eps: float, backward: str, opts: dict) -> Tensor:
    """``U_k U_kᵀ D^{-1/2}``: standardise by the channel variances, project on the top-k
    eigenvectors of the correlation matrix ``D^{-1/2} Σ D^{-1/2}`` (``D = diag(Σ) + ε``)."""
    inv_std = (torch.diagonal(cov, dim1=-2, dim2=-1) + eps).rsqrt()
    corr = cov * inv_std.unsqueeze(-1) * inv_std.unsqueeze(-2)
    _, vecs = eigh(corr, backward, **opts)
    top = vecs[..., -k:]
    return (top @ top.transpose(-1, -2)) * inv_std.unsqueeze(-2)


def _check_k(k: int, d: int) -> None:
    check_int(k, "k", minimum=1, maximum=d, requirement=f"an integer in [1, {d}] (channels per group)")


def pca_denoise(x: Tensor, k: int = 16, eps: float = 1e-5, backward: str = "pi", **opts: Any) -> Tensor:
    r"""Standardise channels and keep the top-``k`` principal components, with batch statistics.

    .. math::
        \hat x = D^{-1/2}(x-\mu),\qquad y = U_k U_k^\top \hat x,

    ``U_k`` the eigenvectors of the ``k`` largest eigenvalues of the correlation matrix
    (Wang et al., NeurIPS 2019). The eigenvector gradient goes through :func:`gcp.eigh` with the
    chosen ``backward``; the paper reports that the standard gradient (``"ed"``) gives NaN here
    while power iteration (``"pi"``) does not.

    Args:
        x: ``(N, C, *)`` features.
        k: principal directions kept (``<= C``).
        eps: added to the channel variances.
        backward: backward mode of the eigendecomposition; ``**opts`` its options.

    Returns:
        Tensor shaped and typed like ``x``, in the span of the top-``k`` directions.

    Example:
        >>> y = gcp.pca_denoise(torch.randn(16, 32, 4, 4), k=8)
    """
    if x.dim() < 2:
        raise InvalidOptionError(f"pca_denoise expects (N, C, ...) features; got shape {tuple(x.shape)}")
    _check_k(k, x.shape[1])
    check_features(x, x.shape[1], "pca_denoise")
    with autocast_off(x.device):
        feats = grouped_features(x, 1)
        _, centred, cov = centred_moments(feats)
        return apply_transform(_pca_matrix(cov, k, eps, backward, opts), centred, x)


class PCADenoising(CovarianceNorm):
    r"""PCA denoising layer (Wang et al., NeurIPS 2019): see :func:`pca_denoise`.

    Training mode uses batch statistics; eval mode uses the running mean and running covariance
    (from which the running variances and correlation follow), with ``U_k`` computed once and
    cached. A per-channel affine follows, as in batch normalisation, so the layer can replace one.

    Args:
        num_features: ``C``.
        k: principal directions kept (paper: 16).
        backward: backward mode of :func:`gcp.eigh` (default ``"pi"``); ``**opts`` its options.
        eps: added to the channel variances.
        momentum: running-statistics momentum, or ``None`` for a cumulative average.
        affine: learn ``γ`` and ``β``.

    Shape:
        ``(N, C, *)`` → same shape and dtype.

    Example:
        >>> pca = gcp.PCADenoising(64, k=16)
        >>> pca(torch.randn(8, 64, 8, 8)).shape
        torch.Size([8, 64, 8, 8])
    """

    def __init__(
        self,
        num_features: int,
        k: int = 16,
        backward: str = "pi",
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        **opts: Any,
    ) -> None:
        super().__init__(num_features, 1, eps, momentum, affine)
        _check_k(k, num_features)
        self.k = k
        self.backward = backward
        self.opts = dict(opts)
        probe = torch.eye(2, dtype=torch.float64, device="cpu").unsqueeze(0)
        _pca_matrix(probe, 1, eps, backward, self.opts)  # validates the options now, not at the first call

    def extra_repr(self) -> str:
        return super().extra_repr() + f", k={self.k}, backward={self.backward!r}"

    def transform(self, cov: Tensor) -> Tensor:
        return _pca_matrix(cov, self.k, self.eps, self.backward, self.opts)
