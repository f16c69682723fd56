"""Spectral functions other than powers: the matrix logarithm, the top-N square root and the
scaling eigen branch, each with an ``eigh`` forward and a selectable backward.

For ``F(X) = V diag(f(λ)) Vᵀ`` the backward modes that are defined by an eigenvector coupling
(``exact``, ``ed``, ``trunc``, ``pi``, ``taylor``, ``pade``) differentiate any ``f``: ``exact`` with
the divided differences ``(f(λ_a) − f(λ_b))/(λ_a − λ_b)`` computed without cancellation, the others
with their coupling in place of ``1/(λ_b − λ_a)`` (see :mod:`gcp.backward`). ``ns`` and ``lyap``
differentiate square roots only and are refused here. Second derivatives are refused with
:class:`~gcp.UnsupportedDerivativeError`; forward mode (``torch.func.jvp``) is exact with
``backward="exact"`` and refused otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from . import _domain
from ._higher_order import refuse_forward_mode, refuse_higher
from ._precision import autocast_off, resolve_compute_dtype, smallest_normal
from ._validation import check_definite, check_onnx_exportable, check_square_batch
from .backward import SpectralFunction, SpectralState, get_backward
from .backward._base import log_ratio
from .eigh_solver import symmetric_eigh
from .errors import InvalidOptionError
from .validators import check_int, check_real


class Log(SpectralFunction):
    """``f(λ) = log λ`` on positive ``λ``; ``K_ab = (log λ_a − log λ_b)/(λ_a − λ_b)``."""

    name = "the matrix logarithm"

    def values(self, lam: Tensor) -> Tensor:
        return lam.log()

    def derivatives(self, lam: Tensor) -> Tensor:
        return lam.reciprocal()

    def divided_difference(self, lam: Tensor) -> Tensor:
        hi = torch.maximum(lam.unsqueeze(-1), lam.unsqueeze(-2))
        lo = torch.minimum(lam.unsqueeze(-1), lam.unsqueeze(-2))
        gap = hi - lo  # exact (Sterbenz) where the two are close, which is where it matters
        distinct = gap > 0
        # −log(lo/hi)/(hi − lo): log_ratio is log1p of the relative gap near 1, so no cancellation
        return torch.where(distinct, -log_ratio(hi, lo) / torch.where(distinct, gap, torch.ones_like(gap)),
                           hi.reciprocal())


class TopNRoot(SpectralFunction):
    """``f(λ_i) = √λ_i`` for the ``top_n`` largest eigenvalues and ``√floor`` for the others
    (SVD-TopN; the eigenvalues arrive ascending and floored). Across the cut, where an eigenvalue
    that is kept ties with one that is not, the function jumps; there the coupling is bounded by
    the floor instead of infinite."""

    name = "the top-N square root"

    def __init__(self, top_n: int, floor: Tensor) -> None:
        self.top_n = top_n
        self.floor = floor

    def _kept(self, lam: Tensor) -> Tensor:
        d = lam.shape[-1]
        return torch.arange(d, device=lam.device) >= d - self.top_n

    def values(self, lam: Tensor) -> Tensor:
        return torch.where(self._kept(lam), lam, self.floor.expand_as(lam)).sqrt()

    def derivatives(self, lam: Tensor) -> Tensor:
        return torch.where(self._kept(lam), 0.5 * lam.rsqrt(), torch.zeros_like(lam))

    def divided_difference(self, lam: Tensor) -> Tensor:
        kept = self._kept(lam)
        f = self.values(lam)
        both = kept.unsqueeze(-1) & kept.unsqueeze(-2)
        one = kept.unsqueeze(-1) ^ kept.unsqueeze(-2)
        s = lam.sqrt()
        inside = (s.unsqueeze(-1) + s.unsqueeze(-2)).reciprocal()
        gap = (lam.unsqueeze(-1) - lam.unsqueeze(-2)).abs()
        floor = self.floor.unsqueeze(-1)
        across = (f.unsqueeze(-1) - f.unsqueeze(-2)).abs() / torch.maximum(gap, floor)
        return torch.where(both, inside, torch.where(one, across, torch.zeros_like(inside)))


class EigenScale(SpectralFunction):
    """``f(λ) = λ e^{−2λ}``: ``tr f(Σ) = ‖Σ^{1/2} e^{−Σ}‖_F²``, the scale of the scaling eigen branch."""

    name = "λ·exp(−2λ)"

    def values(self, lam: Tensor) -> Tensor:
        return lam * torch.exp(-2.0 * lam)

    def derivatives(self, lam: Tensor) -> Tensor:
        return (1.0 - 2.0 * lam) * torch.exp(-2.0 * lam)

    def divided_difference(self, lam: Tensor) -> Tensor:
        la, lb = lam.unsqueeze(-1), lam.unsqueeze(-2)
        gap = la - lb
        # [f]_ab = e^{−2λ_b} (1 − λ_a (1 − e^{−2(λ_a−λ_b)})/(λ_a − λ_b)): the ratio is −expm1(−2h)/h,
        # evaluated as 2·(−expm1(−2h))/(2h) with its limit 2 at h = 0, so no cancellation
        h2 = 2.0 * gap
        small = h2.abs() < 1e-12
        ratio = torch.where(small, torch.full_like(h2, 2.0), -torch.expm1(-h2) / torch.where(small, torch.ones_like(h2),
                                                                                              gap))
        return torch.exp(-2.0 * lb) * (1.0 - la * ratio)


class _Spectral(torch.autograd.Function):
    """``V diag(f(λ)) Vᵀ`` by ``eigh``; ``make_fn(λ, floor)`` builds the function, which may depend
    on the floor. Eigenvalues are floored at ``eps · λ_max`` for ``f`` and for the couplings."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, make_fn, mode, opts, eps, cdt):  # type: ignore[override]
        with autocast_off(x.device):
            lam, vecs = symmetric_eigh(x.to(cdt))
            check_definite(lam, x.dtype)
            floor = eps * lam[..., -1:].clamp_min(smallest_normal(cdt))
            floored = torch.maximum(lam, floor)
            values = make_fn(floor).values(floored)
            out = (vecs * values.unsqueeze(-2)) @ vecs.transpose(-1, -2)
        return out.to(x.dtype), floored, vecs, floor

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, make_fn, mode, opts, _, cdt = inputs
        _, floored, vecs, floor = output
        ctx.mark_non_differentiable(floored, vecs, floor)
        ctx.save_for_backward(x, floored, vecs, floor)
        ctx.save_for_forward(floored, vecs, floor)
        ctx.make_fn, ctx.mode, ctx.opts = make_fn, mode, opts

    @staticmethod
    def backward(ctx, grad, *_):  # type: ignore[override]
        x, lam, vecs, floor = ctx.saved_tensors
        fn = ctx.make_fn(floor)
        state = SpectralState(lam=lam, vecs=vecs, floor=floor)
        with autocast_off(grad.device):
            gx = ctx.mode.function_grad(state, fn, grad.to(lam.dtype), ctx.opts).to(grad.dtype)
        gx = refuse_higher(gx, f"{fn.name} with backward={ctx.mode.name!r}", x, grad)
        return gx, None, None, None, None, None


class _SpectralForwardMode(_Spectral):
    """:class:`_Spectral` with forward mode: the Fréchet derivative ``V (K ∘ Vᵀ dX V) Vᵀ`` for
    ``exact``, refused for modes that define only a gradient (eager only, as for ``powm``)."""

    @staticmethod
    def jvp(ctx, dx, *_):  # type: ignore[override]
        if ctx.mode.name != "exact":
            refuse_forward_mode(f"a spectral function with backward={ctx.mode.name!r} (it defines only a gradient)")
        lam, vecs, floor = ctx.saved_tensors
        k = ctx.make_fn(floor).divided_difference(lam)
        with autocast_off(dx.device):
            d = dx.to(lam.dtype)
            inner = vecs.transpose(-1, -2) @ (0.5 * (d + d.transpose(-1, -2))) @ vecs
            dy = (vecs @ (k * inner) @ vecs.transpose(-1, -2)).to(dx.dtype)
        return dy, None, None, None


def spectral_function(x: Tensor, make_fn: Any, route: str, backward: str = "exact", *, eps: float = 1e-10,
                      compute_dtype: Optional[torch.dtype] = None, **opts: Any) -> Tensor:
    """``V diag(f(λ)) Vᵀ`` of symmetric PSD ``x`` for ``f = make_fn(floor)`` (a
    :class:`~gcp.backward.SpectralFunction`), with the gradient of ``backward``. ``route`` names the
    public function in errors."""
    check_square_batch(x)
    check_onnx_exportable(route, "an eigendecomposition")
    check_real(eps, "eps", low=0, high=1)
    mode = get_backward(backward)
    mode.check_function(make_fn(torch.ones(1)))
    options = mode.parse_options(opts)
    cdt = resolve_compute_dtype(x.dtype, compute_dtype, torch.float64)
    function = _Spectral if torch.compiler.is_compiling() else _SpectralForwardMode
    return function.apply(x, make_fn, mode, options, float(eps), cdt)[0]


def _log(floor: Tensor) -> SpectralFunction:
    return Log()


def _eigen_scale(floor: Tensor) -> SpectralFunction:
    return EigenScale()


def logm(x: Tensor, backward: str = "exact", *, eps: float = 1e-5, compute_dtype: Optional[torch.dtype] = None,
         **opts: Any) -> Tensor:
    r"""Matrix logarithm ``log(X + εI)`` of symmetric PSD matrices (log-Euclidean pooling).

    .. math:: \log(X + \varepsilon I) = V \operatorname{diag}(\log(\lambda_i + \varepsilon)) V^\top

    As in DeepO2P (Ionescu et al., ICCV 2015), ``ε > 0`` makes the logarithm of a rank-deficient
    covariance finite. ``backward="exact"`` differentiates with the divided differences
    ``(log μ_a − log μ_b)/(μ_a − μ_b)`` of ``μ = λ + ε``, evaluated as ``−log1p(−gap/μ_hi)/gap`` near
    ties, so repeated eigenvalues give the limit ``1/μ`` exactly. ``ed``, ``trunc``, ``pi``,
    ``taylor`` and ``pade`` use their couplings on ``X + εI``.

    Args:
        x: ``(..., d, d)`` symmetric positive semi-definite matrices.
        backward: name of the backward mode.
        eps: ``ε > 0``, added to the eigenvalues (an absolute amount, in the units of ``x``).
        compute_dtype: dtype of the eigendecomposition (default float64 for float32 input).

    Returns:
        ``(..., d, d)`` in the dtype of ``x``.

    Example:
        >>> y = gcp.logm(gcp.covariance(torch.randn(2, 8, 50)), backward="exact")
        >>> y.shape
        torch.Size([2, 8, 8])
    """
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0 and math.isfinite(eps)):
        raise InvalidOptionError(f"logm: eps must be a positive number (the logarithm of a singular matrix is "
                                 f"infinite), got {eps!r}")
    check_square_batch(x, "gcp.logm")
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    xs, exponent = _domain.enter(x + eps * eye, "gcp.logm")  # log(4^k Y) = log Y + 2k log 2 · I
    y = spectral_function(xs, _log, "gcp.logm", backward, eps=1e-10, compute_dtype=compute_dtype, **opts)
    return _domain.unscale_log(y, exponent)


def topn_sqrtm(x: Tensor, top_n: int, backward: str = "exact", *, eps: float = 1e-10,
               compute_dtype: Optional[torch.dtype] = None, **opts: Any) -> Tensor:
    r"""SVD-TopN: the square root of the ``top_n`` largest eigenvalues, the others floored.

    .. math:: Y = V \operatorname{diag}(f_i) V^\top,\quad f_i = \sqrt{\lambda_i}\ (i \text{ among the top } n),
        \quad f_i = \sqrt{\varepsilon \lambda_{\max}}\ \text{otherwise}

    DifferentiableSVD's control (Song et al., ICCV 2021), reported there to diverge. Any coupling
    backward mode applies; ``exact`` differentiates the function as it is, which jumps where a kept
    eigenvalue ties with a dropped one.

    Example:
        >>> y = gcp.topn_sqrtm(gcp.covariance(torch.randn(2, 8, 50)), top_n=4)
        >>> y.shape
        torch.Size([2, 8, 8])
    """
    xs, exponent = _domain.enter(x, "gcp.topn_sqrtm")  # √ of eigenvalues and a relative floor: degree ½
    check_int(top_n, "top_n", minimum=1, maximum=x.shape[-1])
    y = spectral_function(xs, lambda floor: TopNRoot(top_n, floor), "gcp.topn_sqrtm", backward, eps=eps,
                          compute_dtype=compute_dtype, **opts)
    return _domain.leave(_domain.zero_for_zero(y, xs), exponent, 0.5, "gcp.topn_sqrtm")


def scaled_eigen_branch(x: Tensor, backward: str = "exact", *, eps: float = 1e-10,
                        compute_dtype: Optional[torch.dtype] = None, **opts: Any) -> Tensor:
    r"""The scaling eigen branch (SEB; Song et al., TPAMI 2022): the square root scaled by the
    Frobenius norm of ``Σ^{1/2} e^{−Σ}``, which weighs the small eigenvalues.

    .. math:: Y = \bigl(1 + \lVert \Sigma^{1/2} e^{-\Sigma} \rVert_F\bigr)\, \Sigma^{1/2},\qquad
        \lVert \Sigma^{1/2} e^{-\Sigma} \rVert_F^2 = \sum_i \lambda_i e^{-2\lambda_i}

    DifferentiableSVD's ``SEB`` computes ``Q ∘ (A / normalize(A))`` with ``A = Q e^{−Σ}`` and adds
    ``Q``, which is this scalar multiple of ``Q``. The root takes ``backward`` (and its options); the
    scale is differentiated exactly (its gradient ``V diag(f'(λ)) Vᵀ / 2s`` has no eigenvector coupling).

    Example:
        >>> y = gcp.scaled_eigen_branch(gcp.covariance(torch.randn(2, 8, 50)), backward="pade")
        >>> y.shape
        torch.Size([2, 8, 8])
    """
    from .spectral import powm

    _domain.check_symmetric(x, "gcp.scaled_eigen_branch")  # not scale-equivariant (e^{−Σ}): no rescaling
    root = powm(x, 0.5, backward, eps=eps, compute_dtype=compute_dtype, **opts)
    h = spectral_function(x, _eigen_scale, "gcp.scaled_eigen_branch", "exact", eps=eps, compute_dtype=compute_dtype)
    scale = torch.diagonal(h, dim1=-2, dim2=-1).sum(-1).clamp_min(0.0).sqrt()
    return (1.0 + scale)[..., None, None] * root
