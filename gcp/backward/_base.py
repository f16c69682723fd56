"""Shared machinery of the backward modes of the eigendecomposition forward.

Notation (ascending eigenvalues, as ``torch.linalg.eigh`` returns them):
``X = V diag(λ) Vᵀ``, ``Ω = Vᵀ (∂L/∂V)`` and ``M = Vᵀ sym(G) V`` for a matrix function with
incoming gradient ``G``.

Every mode that replaces the eigenvector coupling ``1/(λ_b − λ_a)`` by something else is a
:class:`CouplingMode`: it returns a matrix ``K`` (``K[a, b]`` multiplies ``Ω[a, b]``) and the
gradient is

    ∂L/∂X = V (sym(K ∘ Ω) + diag(∂L/∂λ)) Vᵀ.

For ``F = V diag(f(λ)) Vᵀ`` the eigen-gradients are ``∂L/∂V = 2 sym(G) V diag(f)`` and
``∂L/∂λ = f'(λ) ∘ diag(M)``, so ``Ω = 2 M diag(f)``; four batched matmuls in all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional

import torch
from torch import Tensor

from .._transforms import is_transformed, mul_
from ..errors import InvalidOptionError
from ..validators import is_int, is_real

# the powers whose second divided differences factor into first ones (gcp._higher_order)
SECOND_ORDER_POWERS: tuple[float, ...] = (0.5, -0.5, 1.0, 2.0)


@dataclass(frozen=True)
class SpectralState:
    """What the forward pass saved for the backward pass (all in the compute dtype).

    ``lam`` are the eigenvalues the forward used (clamped to ``floor`` for matrix functions),
    ``vecs`` the eigenvectors, ``x`` the input matrix (modes that iterate on ``X`` need it) and
    ``floor`` the per-matrix clamp level ``eps · λ_max`` with shape ``(..., 1)``. ``x`` is only
    kept for modes that set ``needs_input``.
    """

    lam: Tensor
    vecs: Tensor
    floor: Tensor
    x: Optional[Tensor] = None


@dataclass(frozen=True)
class Options:
    """Base class of the per-mode option dataclasses; subclasses validate in ``__post_init__``."""


def _fail(mode: str, message: str) -> None:
    raise InvalidOptionError(f"backward {mode!r}: {message}")


def check_int(mode: str, name: str, value: Any, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        _fail(mode, f"option {name!r} must be an integer >= {minimum}, got {value!r}")


def check_positive(mode: str, name: str, value: Any) -> None:
    if not is_real(value) or not value > 0:
        _fail(mode, f"option {name!r} must be a positive number, got {value!r}")


class SpectralFunction:
    """A function ``F(X) = V diag(f(λ)) Vᵀ`` of the eigenvalues, as the backward modes need it.

    ``values`` gives ``f(λ)``, ``derivatives`` ``f'(λ)`` and ``divided_difference`` the matrix
    ``K_ab = (f(λ_a) − f(λ_b))/(λ_a − λ_b)`` (``f'(λ_a)`` where ``λ_a = λ_b``), without cancellation;
    ``λ`` ascending, as ``eigh`` returns them. ``name`` appears in error messages.
    """

    name: str = "f"

    def values(self, lam: Tensor) -> Tensor:
        raise NotImplementedError

    def derivatives(self, lam: Tensor) -> Tensor:
        raise NotImplementedError

    def divided_difference(self, lam: Tensor) -> Tensor:
        raise NotImplementedError


class BackwardMode:
    """A way to differentiate ``powm`` (and, where it makes sense, ``eigh`` and other spectral
    functions: :meth:`function_grad`)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    options: ClassVar[type[Options]] = Options
    supports_eigh: ClassVar[bool] = True
    needs_input: ClassVar[bool] = False
    # powers p whose backward of X^p is itself differentiable (gcp._higher_order); others refuse
    second_order_powers: ClassVar[tuple[float, ...]] = ()

    def __init__(self) -> None:
        # read once: torch.compile cannot trace dataclasses.fields() on every call
        self.option_names: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(self.options))
        self._default_options = self.options()

    def parse_options(self, opts: Mapping[str, Any]) -> Options:
        unknown = sorted(k for k in opts if k not in self.option_names)
        if unknown:
            valid = ", ".join(self.option_names) if self.option_names else "none"
            _fail(self.name, f"unknown option(s) {', '.join(unknown)}; valid options: {valid}")
        return self.options(**opts) if opts else self._default_options

    def check_power(self, p: float) -> None:
        """Raise if this mode cannot differentiate ``X^p``; every ``p`` is fine by default."""

    def powm_grad(self, state: SpectralState, p: float, grad: Tensor, opts: Options) -> Tensor:
        raise NotImplementedError

    def check_function(self, fn: SpectralFunction) -> None:
        """Raise if this mode cannot differentiate the spectral function ``fn`` (modes built for
        the square root, ``ns`` and ``lyap``, refuse every other function)."""
        raise InvalidOptionError(
            f"backward {self.name!r} differentiates matrix powers only, not {fn.name}; use one of the "
            "modes defined by an eigenvector coupling (exact, ed, trunc, pi, taylor, pade)")

    def function_grad(self, state: SpectralState, fn: SpectralFunction, grad: Tensor, opts: Options) -> Tensor:
        """``∂L/∂X`` of ``F(X) = V diag(f(λ)) Vᵀ`` for the incoming gradient ``grad``."""
        raise NotImplementedError

    def eigh_grad(
        self, state: SpectralState, grad_lam: Tensor, grad_vecs: Tensor, opts: Options
    ) -> Tensor:
        raise NotImplementedError


def sym(a: Tensor) -> Tensor:
    return 0.5 * (a + a.transpose(-1, -2))


def conjugate(vecs: Tensor, inner: Tensor) -> Tensor:
    """``V inner Vᵀ``."""
    return vecs @ inner @ vecs.transpose(-1, -2)


def rotate_in(vecs: Tensor, a: Tensor) -> Tensor:
    """``Vᵀ a V``."""
    return vecs.transpose(-1, -2) @ a @ vecs


def power_values(lam: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """``(λ^p, p λ^(p-1))`` for positive ``λ``."""
    return lam.pow(p), p * lam.pow(p - 1.0)


def pairs(lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per pair ``(a, b)``: the larger eigenvalue, the smaller one, and the mask ``b > a``.

    With ascending eigenvalues ``b > a`` means ``λ_b >= λ_a``; the mask breaks ties by index, so
    exactly repeated eigenvalues still get a definite orientation.
    """
    la = lam.unsqueeze(-1)
    lb = lam.unsqueeze(-2)
    d = lam.shape[-1]
    upper = torch.ones(d, d, dtype=torch.bool, device=lam.device).triu(1)
    return torch.maximum(la, lb), torch.minimum(la, lb), upper


def log_ratio(hi: Tensor, lo: Tensor) -> Tensor:
    """``log(lo/hi)`` accurate to round-off: ``log1p`` of the relative gap when the ratio is
    near 1, the plain log of the (then well-conditioned) ratio otherwise."""
    r = lo / hi
    return torch.where(r < 0.5, torch.log(r), torch.log1p(-(hi - lo) / hi))


def geometric_partial_sums(hi: Tensor, lo: Tensor, degrees: tuple[int, ...]) -> list[Tensor]:
    """``(1/hi) Σ_{k=0}^{K} (lo/hi)^k`` for each ``K`` in ``degrees``, for ``0 < lo <= hi``.

    Evaluated as ``(1 − r^{K+1}) / (hi − lo)`` with ``r^{K+1}`` from :func:`log_ratio`, so it is
    accurate to round-off for every ratio, including ``r → 1`` where the limit is ``(K+1)/hi``,
    at a cost independent of ``K`` (the log-ratio is shared between the degrees).
    """
    gap = hi - lo
    log_r = log_ratio(hi, lo)
    distinct = gap > 0
    safe = torch.where(distinct, gap, torch.ones_like(gap))
    return [
        torch.where(distinct, -torch.expm1((k + 1) * log_r) / safe, (k + 1) / hi) for k in degrees
    ]


def series_coupling(state: SpectralState, degree_above: int, degree_below: int) -> Tensor:
    """Coupling from truncated geometric series of ``1/(λ_b − λ_a)``, on floored eigenvalues.

    ``K[a, b] = T_{degree_above}`` where ``λ_b >= λ_a`` and ``−T_{degree_below}`` on the other side,
    ``T_K = (1/λ_hi) Σ_{k=0}^{K} (λ_lo/λ_hi)^k``: Taylor uses one degree on both sides, power
    iteration with deflation ``K`` and ``K − 1``. The series are evaluated on the pairs ``a < b``
    only (packed), so the temporaries are half-size; ascending eigenvalues make ``λ_b`` the larger.
    """
    lam = clamp_to_floor(state.lam, state.floor)
    d = lam.shape[-1]
    rows, cols = torch.triu_indices(d, d, 1, device=lam.device)
    degrees = (degree_above,) if degree_above == degree_below else (degree_above, degree_below)
    sums = geometric_partial_sums(lam[..., cols], lam[..., rows], degrees)
    return pairs_to_matrix(lam.new_zeros(lam.shape + (d,)), rows, cols, sums[0], sums[-1].neg())


def pairs_to_matrix(base: Tensor, rows: Tensor, cols: Tensor, upper: Tensor, lower: Tensor) -> Tensor:
    """``base`` with ``[..., rows, cols] = upper`` and ``[..., cols, rows] = lower``: in place, or, under
    a ``torch.func`` transform (which cannot write a batched value into an unbatched tensor), by an
    out-of-place scatter into the flattened matrices."""
    if not is_transformed(base, upper, lower):
        base[..., rows, cols] = upper
        base[..., cols, rows] = lower
        return base
    d = base.shape[-1]
    flat = base.flatten(-2)
    flat = flat.scatter(-1, (rows * d + cols).expand(upper.shape), upper.to(flat.dtype))
    flat = flat.scatter(-1, (cols * d + rows).expand(lower.shape), lower.to(flat.dtype))
    return flat.unflatten(-1, (d, d))


class CouplingMode(BackwardMode):
    """A mode defined by its eigenvector coupling matrix ``K`` (see the module docstring)."""

    def coupling(self, state: SpectralState, opts: Options) -> Tensor:
        raise NotImplementedError

    def coupling_and_ties(self, state: SpectralState, opts: Options) -> tuple[Tensor, Optional[Tensor]]:
        """``(K, tied)``: a mode that detects numerically equal eigenvalues returns their
        ``(..., d, d)`` mask, and matrix functions then give those pairs the limit of the divided
        difference, ``f'(λ)``, instead of ``K``'s value (which cannot carry it). ``None``: no ties."""
        return self.coupling(state, opts), None

    def eigh_grad(
        self, state: SpectralState, grad_lam: Tensor, grad_vecs: Tensor, opts: Options
    ) -> Tensor:
        vecs = state.vecs
        omega = vecs.transpose(-1, -2) @ grad_vecs
        inner = sym(self.coupling(state, opts) * omega)
        inner = inner + torch.diag_embed(grad_lam)
        return conjugate(vecs, inner)

    def powm_grad(self, state: SpectralState, p: float, grad: Tensor, opts: Options) -> Tensor:
        f, df = power_values(state.lam, p)
        return self._coupled_grad(state, f, df, lambda: power_divided_difference(state.lam, p), grad, opts)

    def check_function(self, fn: SpectralFunction) -> None:
        """Every spectral function: the coupling replaces ``1/(λ_b − λ_a)`` whatever ``f`` is."""

    def function_grad(self, state: SpectralState, fn: SpectralFunction, grad: Tensor, opts: Options) -> Tensor:
        return self._coupled_grad(state, fn.values(state.lam), fn.derivatives(state.lam),
                                  lambda: fn.divided_difference(state.lam), grad, opts)

    def _coupled_grad(self, state: SpectralState, f: Tensor, df: Tensor, exact_k: Any, grad: Tensor,
                      opts: Options) -> Tensor:
        """``V (sym(K ∘ 2 M diag(f)) + diag(f' ∘ diag M)) Vᵀ``, ``M = Vᵀ sym(G) V``; tied pairs get
        the exact divided difference ``exact_k()`` (called only when the mode reports ties)."""
        # in place where possible: each batch of d×d temporaries is memory (and, on CPU, time)
        m = sym(rotate_in(state.vecs, grad))
        k, tied = self.coupling_and_ties(state, opts)
        inner = sym(mul_(mul_(k, m), 2.0 * f.unsqueeze(-2)))  # sym(K ∘ Ω)
        del k
        if tied is not None:  # the limit f'(λ) of tied pairs, as "exact" computes it
            inner = torch.where(tied, mul_(exact_k(), m), inner)
        inner.diagonal(dim1=-2, dim2=-1).add_(df * torch.diagonal(m, dim1=-2, dim2=-1))
        return conjugate(state.vecs, inner)


def power_divided_difference(lam: Tensor, p: float) -> Tensor:
    """``K_ab = (λ_a^p − λ_b^p)/(λ_a − λ_b)``, ``K_aa = p λ_a^{p−1}``, for positive ``λ``.

    The square root, inverse square root and integer powers 1 and 2 have cheap exact forms
    (two or three passes over ``d × d``); other powers use the ``expm1`` form.
    """
    if p == 0.5:
        s = lam.sqrt()
        return (s.unsqueeze(-1) + s.unsqueeze(-2)).reciprocal_()
    if p == -0.5:
        s = lam.sqrt()
        si, sj = s.unsqueeze(-1), s.unsqueeze(-2)
        return ((si + sj) * (si * sj)).reciprocal_().neg_()
    if p == 1.0:
        return torch.ones(lam.shape + lam.shape[-1:], dtype=lam.dtype, device=lam.device)
    if p == 2.0:
        return lam.unsqueeze(-1) + lam.unsqueeze(-2)
    hi, lo, _ = pairs(lam)
    log_r = log_ratio(hi, lo)
    distinct = log_r != 0
    denom = torch.expm1(torch.where(distinct, log_r, torch.ones_like(log_r)))
    ratio = torch.where(distinct, torch.expm1(p * log_r) / denom, torch.full_like(log_r, p))
    return hi.pow(p - 1.0) * ratio


def clamp_to_floor(lam: Tensor, floor: Tensor) -> Tensor:
    """Eigenvalues raised to the per-matrix floor, for couplings that divide by ``λ``."""
    return torch.maximum(lam, floor)


def zero_diagonal(k: Tensor) -> Tensor:
    """``k`` with its diagonal set to 0 (an eigenvector has no coupling to itself)."""
    d = k.shape[-1]
    return k.masked_fill(torch.eye(d, dtype=torch.bool, device=k.device), 0.0)


def oriented(upper: Tensor, above: Tensor, below: Tensor) -> Tensor:
    """``above`` where ``b > a`` (``λ_b >= λ_a``), ``below`` elsewhere, 0 on the diagonal."""
    return zero_diagonal(torch.where(upper, above, below))
