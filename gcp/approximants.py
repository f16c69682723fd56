"""Matrix Taylor / Padé square roots with a Lyapunov backward (Song et al., ICLR 2022)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from . import _domain
from ._higher_order import refuse_forward_mode, refuse_higher
from ._precision import autocast_off, resolve_compute_dtype
from ._validation import check_onnx_exportable, check_trace_normalisable
from .errors import InvalidOptionError
from .lyapunov import lyap_sign_solve
from .newton_schulz import _eye_like
from .series import pade_coefficients, taylor_coefficients
from .validators import check_int, check_int_pair


def _block_size(degree: int, count: int) -> int:
    """Paterson–Stockmeyer block size ``s`` with the fewest matmuls for ``count`` polynomials.

    Powers ``Z² … Z^s`` cost ``s − 1`` matmuls, shared; each polynomial then costs one matmul per
    block of ``s`` coefficients after the first, less one when the top block is a single
    coefficient (folded in as ``c · Z^s``). Ties go to the smaller ``s`` (fewer element-wise passes).
    """
    def cost(s: int) -> int:
        blocks = -(-(degree + 1) // s)
        folded = 1 if blocks > 1 and (degree + 1) % s == 1 else 0
        return (s - 1) + count * (blocks - 1 - folded)

    return min(range(1, max(degree, 1) + 1), key=lambda s: (cost(s), s))


def _linear_combination(coefs: Sequence[float], powers: Sequence[Tensor]) -> Tensor:
    """``Σ_i coefs[i] Z^i`` for ``i < len(coefs) <= len(powers)``; the ``Z⁰ = I`` term on the diagonal."""
    acc = torch.zeros_like(powers[1]) if len(coefs) == 1 else coefs[1] * powers[1]
    for c, zi in zip(coefs[2:], powers[2:]):
        acc.add_(zi, alpha=c)
    acc.diagonal(dim1=-2, dim2=-1).add_(coefs[0])
    return acc


def _matrix_polynomials(coef_sets: Sequence[Sequence[float]], z: Tensor) -> list[Tensor]:
    """``Σ_k c_k Z^k`` for each coefficient list, by the Paterson–Stockmeyer scheme.

    ``P(Z) = Σ_j (Z^s)^j B_j(Z)`` with blocks ``B_j`` of ``s`` coefficients, evaluated by Horner's
    rule in ``Z^s`` on the shared powers ``Z … Z^s``: about ``2√K`` matmuls for degree ``K``
    instead of ``K`` (5 instead of 10 for the degree-10 Taylor polynomial; 4 instead of 10 for the
    ``[5/5]`` Padé pair). For ``Z`` with spectrum in ``[0, 1]`` every power is bounded, so the
    scheme is as accurate as Horner's. Runs inside an autograd ``Function`` (no graph), so it
    updates in place.
    """
    degree = max(len(c) for c in coef_sets) - 1
    s = _block_size(degree, len(coef_sets))
    powers = [z, z]  # index 0 (the identity) is never read as a matrix
    for _ in range(2, s + 1):
        powers.append(powers[-1] @ z)
    results = []
    for coefs in coef_sets:
        blocks = [list(coefs[i : i + s]) for i in range(0, len(coefs), s)]
        if len(blocks) == 1:
            results.append(_linear_combination(blocks[0], powers))
            continue
        top = blocks.pop()
        if len(top) == 1:  # c · (Z^s)^r: fold into the next block, saving one matmul
            acc = _linear_combination(blocks.pop(), powers).add_(powers[s], alpha=top[0])
        else:
            acc = _linear_combination(top, powers)
        for block in reversed(blocks):
            acc = (powers[s] @ acc).add_(_linear_combination(block, powers))
        results.append(acc)
    return results


def _mtp(z: Tensor, degree: int) -> Tensor:
    return _matrix_polynomials([taylor_coefficients("sqrt1m", degree)], z)[0]


def _mpa(z: Tensor, degree: tuple[int, int]) -> Tensor:
    p, q = pade_coefficients("sqrt1m", *degree)
    num, den = _matrix_polynomials([p, q], z)
    # Q(Z) is symmetric positive definite: Z = I − X/‖X‖_F has its spectrum in [0, 1] for PSD X,
    # and Q has no root in [0, 1] (checked per degree by _check_pade_denominator). So a Cholesky
    # solve replaces the general LU solve, which is also cheaper, and avoids the batched-LU
    # hang of some MKL builds (torch.linalg.solve on a batch of 256×256 matrices with 2 threads).
    chol, _ = torch.linalg.cholesky_ex(den)
    return torch.cholesky_solve(num, chol)


_CHECKED_DENOMINATORS: set[tuple[int, int]] = set()  # a set, not lru_cache: see gcp.series


def _check_pade_denominator(m: int, n: int) -> None:
    """Refuse ``[m/n]`` orders whose denominator ``Q`` vanishes on ``[0, 1]`` (none known do)."""
    if (m, n) in _CHECKED_DENOMINATORS:
        return
    _, q = pade_coefficients("sqrt1m", m, n)
    roots = np.roots(np.array(q[::-1]))
    real = roots[np.abs(roots.imag) <= 1e-9 * np.abs(roots).max()].real
    if np.any((real >= 0.0) & (real <= 1.0)):
        raise InvalidOptionError(
            f"mpa_sqrtm: the [{m}/{n}] Padé denominator of √(1−z) vanishes at z = "
            f"{real[(real >= 0) & (real <= 1)].min():.4g} in [0, 1], so Q(Z) is singular there; "
            "choose another degree (the paper uses (5, 5))"
        )
    _CHECKED_DENOMINATORS.add((m, n))


_check_pade_denominator(5, 5)  # the paper's default, checked at import so traced calls skip it


class _LyapunovSqrt(torch.autograd.Function):
    """``X^{1/2} ≈ √‖X‖_F · R(I − X/‖X‖_F)``; backward solves ``B Y + Y B = G/√‖X‖_F``, ``B = R``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, approximant, lyap_iters):  # type: ignore[override]
        norm = torch.linalg.matrix_norm(x).clamp_min(torch.finfo(x.dtype).tiny)[..., None, None]
        root = approximant(_eye_like(x) - x / norm)
        return root * norm.sqrt(), root, norm

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, _, lyap_iters = inputs
        _, root, norm = output
        ctx.mark_non_differentiable(root, norm)
        ctx.save_for_backward(x, root, norm)
        ctx.lyap_iters = lyap_iters

    @staticmethod
    def backward(ctx, grad, *_):  # type: ignore[override]
        x, root, norm = ctx.saved_tensors
        rhs = 0.5 * (grad + grad.transpose(-1, -2)) / norm.sqrt()
        gx = lyap_sign_solve(root, rhs, ctx.lyap_iters)
        gx = 0.5 * (gx + gx.transpose(-1, -2))
        # the Lyapunov backward is the exact gradient of the approximant's root, not a function
        # whose own derivative is known: a second derivative is refused, never zero
        return refuse_higher(gx, "gcp.mpa_sqrtm / gcp.mtp_sqrtm (Lyapunov backward)", x, grad), None, None


class _LyapunovSqrtForwardMode(_LyapunovSqrt):
    """Refuses forward mode with a typed error (eager only: dynamo cannot trace a custom ``jvp``)."""

    @staticmethod
    def jvp(ctx, *tangents):  # type: ignore[override]
        refuse_forward_mode("gcp.mpa_sqrtm / gcp.mtp_sqrtm")


def _run(
    x: Tensor, approximant: Callable[[Tensor], Tensor], lyap_iters: int, compute_dtype: Optional[torch.dtype]
) -> Tensor:
    check_int(lyap_iters, "lyap_iters", minimum=1)
    cdt = resolve_compute_dtype(x.dtype, compute_dtype, torch.float32)
    with autocast_off(x.device):
        function = _LyapunovSqrt if torch.compiler.is_compiling() else _LyapunovSqrtForwardMode
        return function.apply(x.to(cdt), approximant, lyap_iters)[0].to(x.dtype)


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
    xs, exponent = _domain.enter(x, "gcp.mtp_sqrtm")
    check_trace_normalisable(xs)
    check_int(degree, "mtp_sqrtm: degree", minimum=1)
    taylor_coefficients("sqrt1m", degree)  # fill the cache in eager mode (see gcp.series)
    y = _domain.zero_for_zero(_run(xs, lambda z: _mtp(z, degree), lyap_iters, compute_dtype), xs)
    return _domain.leave(y, exponent, 0.5, "gcp.mtp_sqrtm")


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

    with ``P_m/Q_n`` the ``[m/n]`` Padé approximant of ``√(1−z)`` (``p_0 = q_0 = 1``; the
    coefficients of ``P`` and ``Q`` alternate in sign). One Cholesky solve plus about
    ``2√max(m, n)`` matmuls (Paterson–Stockmeyer, powers shared by ``P`` and ``Q``); the backward
    is the Lyapunov sign iteration as in :func:`mtp_sqrtm`.

    Args:
        x: ``(..., d, d)`` symmetric positive semi-definite matrices.
        degree: ``(m, n)`` (paper: (5, 5)).
        lyap_iters: sign iterations of the backward (paper: 8).
        compute_dtype: default the input's dtype, at least float32.

    Example:
        >>> y = gcp.mpa_sqrtm(gcp.covariance(torch.randn(4, 32, 196)), degree=(5, 5))
    """
    check_onnx_exportable("method='mpa' (gcp.mpa_sqrtm)", "a Cholesky solve")
    xs, exponent = _domain.enter(x, "gcp.mpa_sqrtm")
    check_trace_normalisable(xs)
    deg = check_int_pair(degree, "mpa_sqrtm: degree")
    _check_pade_denominator(*deg)
    y = _domain.zero_for_zero(_run(xs, lambda z: _mpa(z, deg), lyap_iters, compute_dtype), xs)
    return _domain.leave(y, exponent, 0.5, "gcp.mpa_sqrtm")


__all__ = ["mpa_sqrtm", "mtp_sqrtm"]
