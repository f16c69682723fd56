"""Covariance pooling and upper-triangular vectorisation."""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from ._precision import autocast_off, resolve_compute_dtype
from ._validation import check_finite, check_floating
from .errors import NonSquareError, ShapeError


def covariance(x: Tensor, *, compute_dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""Centred covariance of feature maps, as in MPN-COV / iSQRT-COV.

    .. math::
        \Sigma = X \hat I X^\top,\qquad \hat I = \tfrac1M\big(I - \tfrac1M \mathbf 1\mathbf 1^\top\big),

    with ``X ∈ R^{C×M}`` the ``M = H·W`` (or ``N``) spatial features of one sample. Computed with
    autocast disabled in ``compute_dtype`` (default the input's, at least float32) and returned in
    that dtype, so half-precision features give a float32 covariance for the matrix function
    that follows.

    Args:
        x: ``(B, C, H, W)`` feature maps or ``(B, C, N)`` feature sets, ``N >= 1``.

    Returns:
        ``(B, C, C)`` symmetric PSD matrices (rank ``<= min(C, M − 1)``).

    Example:
        >>> gcp.covariance(torch.randn(2, 256, 14, 14)).shape
        torch.Size([2, 256, 256])
    """
    return centred_moments(x, compute_dtype=compute_dtype)[2]


def centred_moments(x: Tensor, *, compute_dtype: Optional[torch.dtype] = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean (B, C), centred features (B, C, M), covariance (B, C, C))`` of :func:`covariance`,
    for callers that also apply a transform to the centred features (ZCA, PCA) and would
    otherwise centre them a second time."""
    check_floating(x)
    if x.dim() not in (3, 4):
        raise ShapeError(
            f"covariance expects (B, C, H, W) or (B, C, N) features; got shape {tuple(x.shape)}"
        )
    feats = x.flatten(2)
    if feats.shape[-1] < 1 or feats.shape[1] < 1:
        raise ShapeError(f"covariance needs C >= 1 channels and N >= 1 positions; got shape {tuple(x.shape)}")
    check_finite(x)
    cdt = resolve_compute_dtype(x.dtype, compute_dtype, torch.float32)
    with autocast_off(x.device):
        feats = feats.to(cdt)
        mean = feats.mean(-1)
        centred = feats - mean.unsqueeze(-1)
        return mean, centred, centred @ centred.transpose(-1, -2) / feats.shape[-1]


@functools.lru_cache(maxsize=32)
def _triu_indices(d: int, device: torch.device) -> tuple[Tensor, Tensor]:
    rows, cols = torch.triu_indices(d, d, device=device)
    return rows, cols


def triu_vec(x: Tensor) -> Tensor:
    """Upper triangle (diagonal included) of ``(..., d, d)`` matrices, row-major: ``(..., d(d+1)/2)``.

    Example:
        >>> gcp.triu_vec(torch.eye(256).expand(2, 256, 256)).shape
        torch.Size([2, 32896])
    """
    check_floating(x)
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise NonSquareError(f"triu_vec expects square matrices (..., d, d); got shape {tuple(x.shape)}")
    d = x.shape[-1]
    # the cache saves rebuilding the indices in eager mode; a compiled graph builds them once
    # itself (dynamo would trace through lru_cache and warn)
    if torch.compiler.is_compiling():
        rows, cols = torch.triu_indices(d, d, device=x.device)
    else:
        rows, cols = _triu_indices(d, x.device)
    return x[..., rows, cols]
