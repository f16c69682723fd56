"""Covariance pooling and upper-triangular vectorisation."""

from __future__ import annotations

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


# eager-mode cache of the index per (d, device); a compiled or exported graph computes it itself
# (dynamo would trace into a cache, and an exporter must see how the index is made)
_TRIU_INDEX: dict[tuple[int, str], Tensor] = {}


def triu_index(d: int, device: Optional[torch.device] = None) -> Tensor:
    r"""Flat row-major indices of the upper triangle (diagonal included) of a ``d × d`` matrix.

    Entry ``k`` of the packed vector lies in row ``i = d − 1 − t``, where ``t`` is the largest
    integer with ``t(t+1)/2 <= m = d(d+1)/2 − 1 − k`` (the last ``t(t+1)/2`` entries fill the last
    ``t`` rows); row ``i`` starts at ``s_i = i·d − i(i−1)/2``, so the column is ``k − s_i + i``.
    Only ``arange``, ``sqrt``, ``floor`` and integer arithmetic: static shapes that every
    exporter knows (``torch.triu_indices`` has no ONNX symbolic; a boolean mask would make the
    length data-dependent).

    Example:
        >>> gcp.triu_index(3)
        tensor([0, 1, 2, 4, 5, 8])
    """
    n = d * (d + 1) // 2
    k = torch.arange(n, device=device, dtype=torch.int64)
    m = (n - 1) - k
    t = torch.floor((torch.sqrt(8.0 * m.to(torch.float64) + 1.0) - 1.0) / 2.0).to(torch.int64)
    # one integer correction each way makes the float estimate exact
    t = t - (t * (t + 1) // 2 > m).to(torch.int64)
    t = t + ((t + 1) * (t + 2) // 2 <= m).to(torch.int64)
    row = (d - 1) - t
    start = row * d - row * (row - 1) // 2
    return row * d + (k - start + row)


def _cached_triu_index(d: int, device: torch.device) -> Tensor:
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return triu_index(d, device)
    key = (d, str(device))
    index = _TRIU_INDEX.get(key)
    if index is None:
        index = _TRIU_INDEX[key] = triu_index(d, device)
    return index


def triu_vec(x: Tensor) -> Tensor:
    """Upper triangle (diagonal included) of ``(..., d, d)`` matrices, row-major: ``(..., d(d+1)/2)``.

    A gather with :func:`triu_index`, so it traces and exports (ONNX ``Gather``).

    Example:
        >>> gcp.triu_vec(torch.eye(256).expand(2, 256, 256)).shape
        torch.Size([2, 32896])
    """
    check_floating(x)
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise NonSquareError(f"triu_vec expects square matrices (..., d, d); got shape {tuple(x.shape)}")
    d = x.shape[-1]
    return x.flatten(-2).index_select(-1, _cached_triu_index(d, x.device))
