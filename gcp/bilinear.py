"""Bilinear pooling (B-CNN) and compact bilinear pooling by Tensor Sketch (CBP).

Both pool the *uncentred* second moment ``B = (1/M) Σ_m x_m x_mᵀ`` of the ``M`` positions of
``(B, C, H, W)`` maps or ``(B, C, N)`` sets; B-CNN keeps all ``C²`` entries, CBP a random
``D``-dimensional sketch whose inner products estimate ``⟨B_X, B_Y⟩_F`` without bias. Both are
followed by the signed square root and L2 normalisation of Lin et al. (ICCV 2015).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._precision import autocast_off, resolve_compute_dtype
from ._validation import check_finite, check_floating
from .errors import ShapeError
from .validators import check_int, check_real


def _positions(x: Tensor, name: str) -> Tensor:
    """``(B, C, M)`` float32+ features of ``(B, C, H, W)`` or ``(B, C, N)`` input."""
    check_floating(x, name)
    if x.dim() not in (3, 4) or x.shape[2:].numel() < 1:
        raise ShapeError(f"{name} expects (B, C, H, W) maps or (B, C, N) sets; got shape {tuple(x.shape)}")
    check_finite(x, name)
    flat = x.flatten(2)
    return flat.to(resolve_compute_dtype(x.dtype, None, torch.float32))


def signed_sqrt_l2(y: Tensor, thresh: float = 1e-8) -> Tensor:
    """``sign(y)·√(|y| + thresh)``, then L2 normalisation over the last dimension (Lin et al., ICCV
    2015). ``thresh > 0`` keeps the derivative of the root finite at 0."""
    y = torch.sign(y) * torch.sqrt(y.abs() + thresh)
    return torch.nn.functional.normalize(y, dim=-1)


def bilinear_pool(x: Tensor, *, thresh: float = 1e-8, normalize: bool = True) -> Tensor:
    r"""Bilinear pooling (B-CNN, Lin et al., ICCV 2015): the uncentred second moment of the positions.

    .. math:: B = \tfrac1M X X^\top \in \mathbb R^{C\times C},\qquad
        y = \frac{\operatorname{sign}(B)\sqrt{|B| + t}}{\lVert \operatorname{sign}(B)\sqrt{|B| + t} \rVert_2}

    Args:
        x: ``(B, C, H, W)`` maps or ``(B, C, N)`` sets.
        thresh: ``t``, inside the signed square root.
        normalize: apply the signed square root and L2 normalisation (over all ``C²`` entries).

    Returns:
        ``(B, C, C)`` in float32 (float64 for float64 input), computed outside autocast.

    Example:
        >>> gcp.bilinear_pool(torch.randn(2, 16, 7, 7)).shape
        torch.Size([2, 16, 16])
    """
    feats = _positions(x, "bilinear_pool")
    check_real(thresh, "thresh", low=0)
    with autocast_off(feats.device):
        b = feats @ feats.transpose(-1, -2) / feats.shape[-1]
        if not normalize:
            return b
        return signed_sqrt_l2(b.flatten(-2), thresh).view_as(b)


def sketch_hashes(channels: int, proj_dim: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The two count sketches of Tensor Sketch: ``(index (2, C) long, sign (2, C) ±1 float)``, drawn
    from their own generator seeded by ``seed`` (independent of torch's global random state)."""
    check_int(channels, "channels", minimum=1)
    check_int(proj_dim, "proj_dim", minimum=1)
    check_int(seed, "seed", minimum=0)
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, proj_dim, (2, channels), generator=gen)
    sign = torch.randint(0, 2, (2, channels), generator=gen).mul_(2).sub_(1).to(torch.float32)
    return index, sign


def tensor_sketch(feats: Tensor, index: Tensor, sign: Tensor, proj_dim: int) -> Tensor:
    """The mean over positions of the Tensor Sketch of ``x_m ⊗ x_m``: ``(B, C, M)`` → ``(B, D)``.

    Each position's two count sketches ``C_k x`` (``(C_k x)_j = Σ_{i: h_k(i) = j} s_k(i) x_i``) are
    convolved circularly through the FFT (Pham and Pagh, 2013; Gao et al., CVPR 2016)."""
    positions = feats.transpose(-1, -2)  # (B, M, C)
    sketches = []
    for k in range(2):
        out = positions.new_zeros(positions.shape[:-1] + (proj_dim,))
        sketches.append(torch.fft.rfft(out.index_add(-1, index[k], positions * sign[k].to(positions.dtype)), dim=-1))
    conv = torch.fft.irfft(sketches[0] * sketches[1], n=proj_dim, dim=-1)
    return conv.mean(-2)


def compact_bilinear(x: Tensor, proj_dim: int = 8192, seed: int = 0, *,
                     compute_dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""Compact bilinear pooling by Tensor Sketch (Gao et al., CVPR 2016), before normalisation.

    .. math:: \phi(X) = \tfrac1M \sum_m \mathcal F^{-1}\bigl(\mathcal F(C_1 x_m) \circ \mathcal F(C_2 x_m)\bigr)
        \in \mathbb R^D,\qquad \mathbb E\,\langle \phi(X), \phi(Y)\rangle
        = \bigl\langle \tfrac1M X X^\top, \tfrac1N Y Y^\top \bigr\rangle_F

    ``C_1, C_2`` are count sketches (a random bucket in ``0..D−1`` and a random sign per channel)
    drawn from ``seed``: the inner product of two sketches with the same seed is an unbiased
    estimate of the inner product of the bilinear matrices (over the draw of the seed).

    Args:
        x: ``(B, C, H, W)`` maps or ``(B, C, N)`` sets.
        proj_dim: ``D``, the sketch's size.
        seed: seed of the hashes and signs.

    Returns:
        ``(B, proj_dim)``, float32 or wider, computed outside autocast.

    Example:
        >>> gcp.compact_bilinear(torch.randn(2, 16, 7, 7), proj_dim=512).shape
        torch.Size([2, 512])
    """
    feats = _positions(x, "compact_bilinear")
    if compute_dtype is not None:
        feats = feats.to(resolve_compute_dtype(feats.dtype, compute_dtype, torch.float32))
    index, sign = sketch_hashes(feats.shape[1], proj_dim, seed)
    with autocast_off(feats.device):
        return tensor_sketch(feats, index.to(feats.device), sign.to(feats.device), proj_dim)
