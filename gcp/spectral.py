"""Matrix functions of SPD matrices from an eigendecomposition, with a selectable backward."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from . import _domain
from ._higher_order import (
    FORWARD_OVER_REVERSE,
    ExactPowerGrad,
    exact_power_grad,
    refuse_forward_mode,
    refuse_higher,
)
from ._precision import autocast_off, resolve_compute_dtype, smallest_normal
from ._transforms import under_forward_mode
from ._validation import _failed, _skip_value_checks, check_definite, check_onnx_exportable
from .backward import BackwardMode, Options, SpectralState, get_backward
from .eigh_solver import symmetric_eigh
from .errors import InvalidOptionError, SingularError, UnsupportedDerivativeError
from .validators import check_real

DEFAULT_EPS = 1e-10


def _eigh_state(x: Tensor, cdt: torch.dtype, eps: float, keep_input: bool) -> SpectralState:
    xc = x.to(cdt)
    lam, vecs = symmetric_eigh(xc)
    lam_max = lam[..., -1:].clamp_min(smallest_normal(cdt))
    return SpectralState(lam=lam, vecs=vecs, floor=eps * lam_max, x=xc if keep_input else None)


def _spectral_power(lam: Tensor, vecs: Tensor, floor: Tensor, p: float) -> Tensor:
    """``V diag(λ^p) Vᵀ``. The floor exists for λ^p with p <= 0 (infinite at 0) and for the
    backward's couplings, which divide by λ. λ^p with p > 0 is finite at 0, so there only
    round-off negatives are clipped: flooring would cost ~√eps of accuracy on the rank-deficient
    covariances GCP produces (d channels > n positions)."""
    values = torch.maximum(lam, floor).pow(p) if p <= 0 else lam.clamp_min(0.0).pow(p)
    return (vecs * values.unsqueeze(-2)) @ vecs.transpose(-1, -2)


def eigh_power_forward(x: Tensor, p: float, eps: float) -> Tensor:
    """The forward of :func:`powm` (float64 ``eigh``, floor ``eps·λ_max``) in plain tensor code,
    without checks or custom backward: what a scripted :class:`gcp.GCPHead` runs (TorchScript
    cannot compile an autograd Function; its gradient there is autograd's through ``eigh``)."""
    xc = x.to(torch.float64) if x.dtype != torch.float64 else x
    lam, vecs = torch.linalg.eigh(xc)
    floor = eps * lam[..., -1:].clamp_min(smallest_normal(xc.dtype))
    return _spectral_power(lam, vecs, floor, p).to(x.dtype)


class _PowM(torch.autograd.Function):
    """``X^p`` by ``eigh``. The floored eigenvalues and the eigenvectors are returned as extra,
    non-differentiable outputs: with ``setup_context`` (what ``torch.func`` needs) that is how a
    forward hands its intermediates to the backward."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, p, mode, opts, eps, cdt):  # type: ignore[override]
        with autocast_off(x.device):
            state = _eigh_state(x, cdt, eps, False)
            check_definite(state.lam, x.dtype)
            out = _spectral_power(state.lam, state.vecs, state.floor, p)
            floored = torch.maximum(state.lam, state.floor)
        return out.to(x.dtype), floored, state.vecs, state.floor

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, p, mode, opts, _, cdt = inputs
        _, floored, vecs, floor = output
        ctx.mark_non_differentiable(floored, vecs, floor)
        ctx.save_for_backward(x, floored, vecs, floor)
        ctx.save_for_forward(floored, vecs)
        ctx.p, ctx.mode, ctx.opts, ctx.cdt = p, mode, opts, cdt

    @staticmethod
    def backward(ctx, grad, *_):  # type: ignore[override]
        x, lam, vecs, floor = ctx.saved_tensors
        if torch.is_grad_enabled() and ctx.p in ctx.mode.second_order_powers:
            # a graph of the backward is wanted (create_graph=True, torch.func): build it from
            # the closed-form second derivative rather than autograd through eigh
            if under_forward_mode():
                raise UnsupportedDerivativeError(FORWARD_OVER_REVERSE)
            with autocast_off(grad.device):
                return ExactPowerGrad.apply(x, grad, lam, vecs, ctx.p), None, None, None, None, None
        state = SpectralState(lam=lam, vecs=vecs, floor=floor, x=x.to(ctx.cdt) if ctx.mode.needs_input else None)
        with autocast_off(grad.device):
            gx = ctx.mode.powm_grad(state, ctx.p, grad.to(lam.dtype), ctx.opts).to(grad.dtype)
        gx = refuse_higher(gx, f"gcp.powm(p={ctx.p:g}) with backward={ctx.mode.name!r}", x, grad)
        return gx, None, None, None, None, None


class _PowMForwardMode(_PowM):
    """:class:`_PowM` with forward-mode AD (``torch.func.jvp``/``jacfwd``). A separate class
    because dynamo cannot trace an autograd Function that defines ``jvp``; compiled code uses
    :class:`_PowM`."""

    @staticmethod
    def jvp(ctx, dx, *_):  # type: ignore[override]
        # forward mode is the Fréchet derivative Df(X)[dX] itself, which only "exact" computes;
        # the other modes define a gradient, not a derivative of the function
        if not ctx.mode.second_order_powers:
            refuse_forward_mode(f"gcp.powm with backward={ctx.mode.name!r} (it defines only a gradient)")
        lam, vecs = ctx.saved_tensors  # in jvp: what save_for_forward kept
        with autocast_off(dx.device):
            dy = exact_power_grad(lam, vecs, ctx.p, dx.to(lam.dtype)).to(dx.dtype)
        return dy, None, None, None


class _Eigh(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, mode, opts, eps, cdt):  # type: ignore[override]
        with autocast_off(x.device):
            state = _eigh_state(x, cdt, eps, False)
        # copies: an output that is also a saved, non-differentiable one would lose its gradient
        return (state.lam.to(x.dtype, copy=True), state.vecs.to(x.dtype, copy=True), state.lam, state.vecs,
                state.floor)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, mode, opts, _, _ = inputs
        _, _, lam, vecs, floor = output
        ctx.mark_non_differentiable(lam, vecs, floor)
        ctx.save_for_backward(x, lam, vecs, floor)
        ctx.mode, ctx.opts = mode, opts

    @staticmethod
    def backward(ctx, grad_lam, grad_vecs, *_):  # type: ignore[override]
        x, lam, vecs, floor = ctx.saved_tensors
        state = SpectralState(lam=lam, vecs=vecs, floor=floor)
        cdt = lam.dtype
        grad_lam = torch.zeros_like(lam) if grad_lam is None else grad_lam.to(cdt)
        grad_vecs = torch.zeros_like(vecs) if grad_vecs is None else grad_vecs.to(cdt)
        with autocast_off(lam.device):
            gx = ctx.mode.eigh_grad(state, grad_lam, grad_vecs, ctx.opts).to(x.dtype)
        # eigenvectors of a repeated eigenvalue are not unique: no second derivative is exact there
        gx = refuse_higher(gx, f"gcp.eigh with backward={ctx.mode.name!r}", x, grad_lam, grad_vecs)
        return gx, None, None, None, None


class _EighForwardMode(_Eigh):
    """:class:`_Eigh` refusing forward mode with a typed error (eager only; see :class:`_PowMForwardMode`)."""

    @staticmethod
    def jvp(ctx, *tangents):  # type: ignore[override]
        refuse_forward_mode("gcp.eigh")


def check_invertible(floored: Tensor, route: str) -> None:
    """A negative power needs a positive floor: the floor is ``eps · λ_max``, zero for a zero matrix."""
    if _skip_value_checks(floored):
        return
    zero = floored[..., -1] <= smallest_normal(floored.dtype)  # the floor of λ_max = 0 is below any normal
    if _failed(~zero.any()):
        raise SingularError(
            f"{route}: {int(zero.sum())} of {zero.numel()} matrices are zero, and a negative power of a zero matrix "
            "is undefined (the eigenvalue floor, eps · λ_max, is zero too); regularise the input, e.g. x + δ·I")


def _prepare(
    x: Tensor, backward: str, eps: float, compute_dtype: Optional[torch.dtype], opts: dict
) -> tuple[BackwardMode, Options, torch.dtype]:
    check_onnx_exportable("method='svd' (like every eigendecomposition route: gcp.powm, gcp.eigh)",
                          "an eigendecomposition")
    mode = get_backward(backward)
    check_real(eps, "eps", low=0, high=1)
    cdt = resolve_compute_dtype(x.dtype, compute_dtype, torch.float64)
    return mode, mode.parse_options(opts), cdt


def powm(
    x: Tensor,
    p: float,
    backward: str = "exact",
    *,
    eps: float = DEFAULT_EPS,
    compute_dtype: Optional[torch.dtype] = None,
    **opts: Any,
) -> Tensor:
    r"""Matrix power ``X^p = V diag(λ^p) Vᵀ`` of symmetric PSD matrices, via ``eigh``.

    The forward runs ``torch.linalg.eigh`` in ``compute_dtype`` (default float64 for float32
    and lower inputs) with autocast disabled, and casts the result back to ``x.dtype``.
    For ``p <= 0`` eigenvalues below ``eps · λ_max`` (per matrix) are raised to that floor, which
    keeps ``X^p`` finite on rank-deficient input; for ``p > 0`` only round-off negatives are set
    to 0, so the forward is as accurate as the eigendecomposition. The backward differentiates
    the function at the floored matrix (its couplings divide by ``λ``). Matrices that are clearly
    not positive semi-definite raise :class:`~gcp.IndefiniteError` (tolerance in
    :func:`gcp._validation.indefinite_tolerance`: ``λ_min < −max(1e-3, √d·ε)·max|λ|``).
    ``backward`` picks how gradients flow (see :data:`gcp.BACKWARDS`); extra keyword arguments
    are that mode's options, e.g. ``powm(x, 0.5, "taylor", degree=9)``.

    Args:
        x: ``(..., d, d)`` symmetric positive semi-definite matrices (only the lower triangle
            is read, as by ``torch.linalg.eigh``).
        p: the power, any real number (``p <= 0`` needs positive definite input or the floor).
        backward: name of the backward mode.
        eps: relative eigenvalue floor, in ``(0, 1)``.
        compute_dtype: dtype of the eigendecomposition and of the backward.

    Returns:
        ``(..., d, d)`` tensor in the dtype of ``x``; its gradient is symmetric.

    Example:
        >>> x = gcp.covariance(torch.randn(4, 16, 100))
        >>> y = gcp.powm(x, 0.5, backward="pi", iters=19)
        >>> torch.allclose(y @ y, x, atol=1e-5)
        True
    """
    check_real(p, "p")
    route = {0.5: "gcp.sqrtm", -0.5: "gcp.inv_sqrtm"}.get(float(p), f"gcp.powm(p={float(p):g})")
    xs, exponent = _domain.enter(x, route)
    mode, options, cdt = _prepare(x, backward, eps, compute_dtype, opts)
    mode.check_power(float(p))
    function = _PowM if torch.compiler.is_compiling() else _PowMForwardMode
    y, floored = function.apply(xs, float(p), mode, options, float(eps), cdt)[:2]
    if p < 0:
        check_invertible(floored, route)
    return _domain.leave(y, exponent, float(p), route)


def sqrtm(x: Tensor, backward: str = "exact", **kwargs: Any) -> Tensor:
    """Matrix square root ``X^{1/2}``; :func:`powm` with ``p = 0.5`` (same arguments)."""
    return powm(x, 0.5, backward, **kwargs)


def inv_sqrtm(x: Tensor, backward: str = "exact", **kwargs: Any) -> Tensor:
    """Inverse matrix square root ``X^{-1/2}``; :func:`powm` with ``p = -0.5`` (same arguments)."""
    return powm(x, -0.5, backward, **kwargs)


def eigh(
    x: Tensor,
    backward: str = "exact",
    *,
    eps: float = DEFAULT_EPS,
    compute_dtype: Optional[torch.dtype] = None,
    **opts: Any,
) -> tuple[Tensor, Tensor]:
    r"""Eigendecomposition ``(λ ascending, V)`` whose gradient uses the chosen backward.

    ``∂L/∂X = V (sym(K ∘ Vᵀ ∂L/∂V) + diag(∂L/∂λ)) Vᵀ`` with the mode's coupling ``K`` in place of
    ``1/(λ_b − λ_a)``. Eigenvectors of a repeated eigenvalue are not unique, so no eigenvector
    gradient is exact there: ``"exact"`` is the standard gradient with the coupling set to zero
    where two eigenvalues coincide within ``rtol · max|λ|`` (option ``rtol``, default 1e-8);
    ``"ed"`` is the same without that guard. Modes that only differentiate square roots
    (``"ns"``, ``"lyap"``) are refused. The eigenvalues are returned unclamped; ``eps`` only sets
    the floor the Taylor/Padé/PI couplings divide by.

    Args:
        x: ``(..., d, d)`` symmetric matrices.
        backward: name of the backward mode.

    Returns:
        ``(eigenvalues (..., d), eigenvectors (..., d, d))`` in the dtype of ``x``; the loss must
        not depend on the eigenvectors' signs.

    Example:
        >>> lam, v = gcp.eigh(gcp.covariance(torch.randn(2, 8, 50)), backward="pi")
        >>> lam.shape, v.shape
        (torch.Size([2, 8]), torch.Size([2, 8, 8]))
    """
    xs, exponent = _domain.enter(x, "gcp.eigh")
    mode, options, cdt = _prepare(x, backward, eps, compute_dtype, opts)
    if not mode.supports_eigh:
        raise InvalidOptionError(
            f"backward {backward!r} differentiates matrix square roots, not eigenvectors; "
            "use one of: " + ", ".join(n for n in _eigh_modes())
        )
    function = _Eigh if torch.compiler.is_compiling() else _EighForwardMode
    lam, vecs = function.apply(xs, mode, options, float(eps), cdt)[:2]
    return _domain.leave(lam, exponent.squeeze(-1), 1.0, "gcp.eigh"), vecs


def _eigh_modes() -> list[str]:
    from .backward import BACKWARDS

    return [n for n in BACKWARDS if get_backward(n).supports_eigh]
