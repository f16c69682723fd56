"""The domain contract of every public matrix function, checked in one place.

Every route (``powm``/``sqrtm``/``inv_sqrtm``/``eigh``, ``logm``, ``topn_sqrtm``,
``scaled_eigen_branch``, ``isqrtm``, ``mpa_sqrtm``, ``mtp_sqrtm``) takes its input through
:func:`enter`, which

- checks a batch of finite, floating, square matrices (:func:`~gcp._validation.check_square_batch`);
- refuses a matrix that is not symmetric within :func:`symmetry_tolerance` with
  :class:`~gcp.NonSymmetricError`, and otherwise symmetrises it, ``(X + Xᵀ)/2``, so every route
  answers the same matrix (``eigh`` alone would read one triangle, the matmul routes all of it);
- rescales each matrix by a power of four, ``X = 4^k X̃`` with ``max |X̃|`` in ``[1/4, 1)``, so no
  norm, trace or product inside a route overflows or underflows, in float32 or float64, from
  1e-300 to 1e300. :func:`leave` scales the result back by ``2^{2kp}`` for ``X^p`` (exactly, a
  power of two, for the square root and its inverse). The scale is piecewise constant in ``X``, so
  gradients are those of the unscaled function.

Positive semi-definiteness is checked by each route where it has the eigenvalues (``eigh``) or
its cheap necessary condition (the matmul routes); a singular matrix raised to a negative power
is refused by the route, naming the floor option that makes it defined.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._validation import _failed, _skip_value_checks, check_square_batch
from .errors import NonFiniteError, NonSymmetricError

#: relative asymmetry accepted as round-off, per unit of ``d · ε_dtype``
SYMMETRY_SLACK = 16.0


def symmetry_tolerance(dtype: torch.dtype, d: int) -> float:
    """``max|X − Xᵀ| <= tol · max|X|`` counts as symmetric: ``max(1e-6, 16 d ε)``. A product
    ``A Aᵀ`` computed in ``dtype`` is symmetric to within ``~d ε`` relative (each entry is a sum
    of ``d`` rounded products), a float32 covariance of 256 channels to ~5e-4 at most."""
    return max(1e-6, SYMMETRY_SLACK * d * torch.finfo(dtype).eps)


def check_symmetric(x: Tensor, route: str) -> None:
    if _skip_value_checks(x):
        return
    scale = x.detach().abs().flatten(-2).amax(-1)
    asym = (x.detach() - x.detach().transpose(-1, -2)).abs().flatten(-2).amax(-1)
    tol = symmetry_tolerance(x.dtype, x.shape[-1])
    bad = asym > tol * scale
    if _failed(~bad.any()):
        worst = float((asym / scale.clamp_min(torch.finfo(x.dtype).tiny)).max())
        raise NonSymmetricError(
            f"{route}: {int(bad.sum())} of {bad.numel()} matrices are not symmetric (max|X − Xᵀ| = {worst:.3g} × "
            f"max|X|, tolerance {tol:.1e}); the square-root routes need symmetric PSD matrices such as "
            "covariances: pass 0.5 * (x + x.mT) if the asymmetry is yours to remove")


def _exponent(x: Tensor) -> Tensor:
    """Per matrix, the even integer ``2k`` with ``max|X| / 4^k`` in ``[1/4, 1)`` (0 for a zero
    matrix), as a float tensor of shape ``(..., 1, 1)``."""
    peak = x.detach().abs().amax((-2, -1), keepdim=True)
    positive = peak > 0
    e = torch.floor(torch.log2(torch.where(positive, peak, torch.ones_like(peak))))
    k = torch.floor(e / 2) + 1  # 4^k > peak >= 4^(k-1) (up to the rounding of log2: still a power of 4)
    return torch.where(positive, 2 * k, torch.zeros_like(k))


def _times_power_of_two(x: Tensor, exponent: Tensor) -> Tensor:
    """``x · 2^exponent`` in two halves, so neither factor overflows (float32's 2^±149 are not
    representable as one factor, but their halves are)."""
    # exp2 of an integer is exact (tested for every exponent of float32 and float64)
    half = torch.trunc(exponent / 2).to(x.dtype)
    return x * torch.exp2(half) * torch.exp2(exponent.to(x.dtype) - half)


def enter(x: Tensor, route: str) -> tuple[Tensor, Tensor]:
    """``(X̃, 2k)``: the checked, symmetrised input scaled by ``4^-k``, and the exponent."""
    check_square_batch(x, route)
    check_symmetric(x, route)
    sym = 0.5 * (x + x.transpose(-1, -2))
    exponent = _exponent(sym)
    return _times_power_of_two(sym, -exponent), exponent


def leave(y: Tensor, exponent: Tensor, p: float, route: str = "the matrix function") -> Tensor:
    """``y · 2^{exponent · p}``: ``f(X) = 4^{kp} f(X̃)`` for ``f = X^p``. Exact (a power of two)
    when ``exponent · p`` is an integer, as for ``p = ±½``; otherwise one rounding. An answer that
    the dtype cannot hold (an inverse root of a tiny, rank-deficient matrix in float32) is a
    :class:`~gcp.NonFiniteError`, not an Inf."""
    scaled = exponent * p
    if float(p) == math.floor(p) or p in (0.5, -0.5):
        out = _times_power_of_two(y, scaled.to(y.dtype))
    else:
        whole = torch.floor(scaled)
        out = _times_power_of_two(y, whole.to(y.dtype)) * torch.exp2(scaled - whole).to(y.dtype)
    if p < 0 or p > 1:  # 0 <= p <= 1 maps max|X̃| < 1 into [0, 1]: the answer cannot overflow, no sync
        check_representable(out, route)
    return out


def check_representable(y: Tensor, route: str) -> None:
    if _skip_value_checks(y):
        return
    if _failed(torch.isfinite(y.detach()).all()):
        raise NonFiniteError(
            f"{route}: the answer is not representable in {y.dtype} (it overflows); compute in float64 "
            "(x.double()), or regularise or rescale the input")


def zero_for_zero(y: Tensor, x: Tensor) -> Tensor:
    """``y`` with exact zeros for zero matrices ``x`` (a route that normalises by a norm or a floor
    answers ``f(0) = 0`` only to within that normaliser otherwise)."""
    nonzero = x.detach().abs().amax((-2, -1), keepdim=True) > 0
    return torch.where(nonzero, y, torch.zeros_like(y))


def unscale_log(y: Tensor, exponent: Tensor) -> Tensor:
    """``log(4^k X̃) = log X̃ + 2k log 2 · I``, for the matrix logarithm."""
    eye = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device)
    return y + (exponent.to(y.dtype) * math.log(2.0)) * eye
