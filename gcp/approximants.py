"""Matrix Taylor / Padé square roots with a Lyapunov backward (Song et al., ICLR 2022)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ._precision import autocast_off, resolve_compute_dtype
from ._series import pade_coefficients, taylor_coefficients
from ._validation import check_square_batch
from .errors import InvalidOptionError
from .lyapunov import lyap_sign_solve
from .newton_schulz import _eye_like


def _matrix_polynomial(coefs: Sequence[float], z: Tensor) -> Tensor:
    """``Σ_k coefs[k] Z^k`` by Horner's rule (``len(coefs) − 1`` matmuls)."""
    eye = _eye_like(z)
    acc = coefs[-1] * eye
    for c in reversed(coefs[:-1]):
        acc = z @ acc + c * eye
    return acc


def _mtp(z: Tensor, degree: int) -> Tensor:
    return _matrix_polynomial(taylor_coefficients("sqrt1m", degree), z)


def _mpa(z: Tensor, degree: tuple[int, int]) -> Tensor:
    p, q = pade_coefficients("sqrt1m", *degree)
    return torch.linalg.solve(_matrix_polynomial(q, z), _matrix_polynomial(p, z))


class _LyapunovSqrt(torch.autograd.Function):
    """``X^{1/2} ≈ √‖X‖_F · R(I − X/‖X‖_F)``; backward solves ``B Y + Y B = G/√‖X‖_F``, ``B = R``."""

    @staticmethod
    def forward(ctx, x, approximant, lyap_iters):  # type: ignore[override]
        norm = torch.linalg.matrix_norm(x).clamp_min(torch.finfo(x.dtype).tiny)[..., None, None]
        root = approximant(_eye_like(x) - x / norm)
        ctx.save_for_backward(root, norm)
        ctx.lyap_iters = lyap_iters
        return root * norm.sqrt()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        root, norm = ctx.saved_tensors
        rhs = 0.5 * (grad + grad.transpose(-1, -2)) / norm.sqrt()
        gx = lyap_sign_solve(root, rhs, ctx.lyap_iters)
        return 0.5 * (gx + gx.transpose(-1, -2)), None, None


def _run(
    x: Tensor, approximant: Callable[[Tensor], Tensor], lyap_iters: int, compute_dtype: Optional[torch.dtype]
) -> Tensor:
    if isinstance(lyap_iters, bool) or not isinstance(lyap_iters, int) or lyap_iters < 1:
        raise InvalidOptionError(f"lyap_iters must be an integer >= 1, got {lyap_iters!r}")
    cdt = resolve_compute_dtype(x.dtype, compute_dtype, torch.float32)
    with autocast_off(x.device):
        return _LyapunovSqrt.apply(x.to(cdt), approximant, lyap_iters).to(x.dtype)


def mtp_sqrtm(
    x: Tensor, degree: int = 10, *, lyap_iters: int = 8, compute_dtype: Optional[torch.dtype] = None
) -> Tensor:
    r"""Matrix Taylor polynomial square root (MTP-Lya, Song et al., ICLR 2022).

    .. math::
        Z = I - X/\|X\|_F,\qquad X^{1/2} \approx \sqrt{\|X\|_F}\,\sum_{k=0}^{K} a_k Z^k,

    ``a_k`` the Taylor coefficients of ``√(1−z)``. The backward solves the Lyapunov equation of
    the square root with :func:`gcp.lyapunov.lyap_sign_solve` (``lyap_iters`` steps). Accurate
    when the spectrum of ``X`` is not spread over many decades (small eigenvalues put ``Z`` near
    ``I`` where the series converges slowly).

    Args:
        x: ``(..., d, d)`` symmetric positive semi-definite matrices.
        degree: Taylor degree ``K`` (paper: 10).
        lyap_iters: sign iterations of the backward (paper: 8).
        compute_dtype: default the input's dtype, at least float32.

    Example:
        >>> y = gcp.mtp_sqrtm(gcp.covariance(torch.randn(4, 32, 196)))
    """
    check_square_batch(x)
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
        raise InvalidOptionError(f"mtp_sqrtm: degree must be an integer >= 1, got {degree!r}")
    return _run(x, lambda z: _mtp(z, degree), lyap_iters, compute_dtype)


def mpa_sqrtm(
    x: Tensor,
    degree: tuple[int, int] = (5, 5),
    *,
    lyap_iters: int = 8,
    compute_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""Matrix Padé approximant square root (MPA-Lya, Song et al., ICLR 2022).

    .. math::
        Z = I - X/\|X\|_F,\qquad X^{1/2} \approx \sqrt{\|X\|_F}\;Q_n(Z)^{-1} P_m(Z),

    with ``P_m/Q_n`` the ``[m/n]`` Padé approximant of ``√(1−z)`` (``p_0 = q_0 = 1``; the ``k > 0``
    coefficients of ``P`` are negative). One linear solve plus ``m + n`` matmuls; the backward
    is the Lyapunov sign iteration as in :func:`mtp_sqrtm`.

    Args:
        x: ``(..., d, d)`` symmetric positive semi-definite matrices.
        degree: ``(m, n)`` (paper: (5, 5)).
        lyap_iters: sign iterations of the backward (paper: 8).
        compute_dtype: default the input's dtype, at least float32.

    Example:
        >>> y = gcp.mpa_sqrtm(gcp.covariance(torch.randn(4, 32, 196)), degree=(5, 5))
    """
    check_square_batch(x)
    if (
        not isinstance(degree, (tuple, list))
        or len(degree) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in degree)
    ):
        raise InvalidOptionError(f"mpa_sqrtm: degree must be a pair (m, n) of integers >= 1, got {degree!r}")
    deg = (int(degree[0]), int(degree[1]))
    return _run(x, lambda z: _mpa(z, deg), lyap_iters, compute_dtype)


__all__ = ["mpa_sqrtm", "mtp_sqrtm"]
