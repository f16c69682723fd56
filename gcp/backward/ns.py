"""``"ns"``: the gradient of a Newton–Schulz iteration evaluated at the input (SVD-Newton).

The forward square root comes from the eigendecomposition; the backward is the exact gradient
of ``iters`` coupled Newton–Schulz iterations of iSQRT-COV (trace pre-normalisation, ``√tr``
post-compensation) run on the same input (Song et al., ICCV 2021, "SVD-Newton"; ``iters=10``
there). Defined for ``p = ½`` (the ``Y`` iterate) and ``p = −½`` (the ``Z`` iterate) only, and not
for :func:`gcp.eigh`. Too few iterations under-resolve eigenvalues far below ``tr X``.

How it is computed. On symmetric ``A = X/tr X`` every iterate is a polynomial in ``A``, so it
shares ``A``'s eigenvectors, and since ``Y_k = A Z_k`` the coupled iteration reduces to one scalar
recursion per eigenvalue: ``z₀ = 1``, ``z_{k+1} = ½ z_k (3 − a z_k²)``, with ``Y_N = g(A)``,
``g(a) = a z_N(a)`` (or ``Z_N``, ``g = z_N``). The gradient of a matrix polynomial is the
Daleckii–Krein formula with the divided differences ``[g]_ab = (g(a_a) − g(a_b))/(a_a − a_b)``,
which follow the iteration exactly through the product rule ``[fh]_ab = [f]_ab h_b + f_a [h]_ab``
(no cancellation, and ``[g]_aa = g'(a_a)`` on ties). With ``t = tr X``, ``s = ±½``, ``out = t^s g(X/t)``
and ``M = Vᵀ sym(G) V``::

    ∂L/∂X = V (t^{s−1} [g] ∘ M + c I) Vᵀ,
    c = s t^{s−1} Σ_a M_aa g(a_a) − t^{s−2} Σ_a [g]_aa M_aa λ_a.

This is the gradient autograd would give through the ``iters`` matrix iterations (to round-off),
at the cost of the ``"exact"`` mode plus ``O(iters · d²)`` element-wise work, and without keeping
the ``3 · iters`` intermediate matrices autograd stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._transforms import mul_
from ..errors import InvalidOptionError
from ._base import BackwardMode, Options, SpectralState, check_int, conjugate, rotate_in, sym


@dataclass(frozen=True)
class NewtonSchulzOptions(Options):
    iters: int = 10

    def __post_init__(self) -> None:
        check_int("ns", "iters", self.iters, 1)


def check_square_root_power(mode: str, p: float) -> None:
    if p not in (0.5, -0.5):
        raise InvalidOptionError(
            f"backward {mode!r} differentiates the square root or inverse square root only "
            f"(p = 0.5 or -0.5), got p = {p}; use 'exact' for other powers"
        )


def _ns_divided_differences(a: Tensor, iters: int, inverse: bool) -> tuple[Tensor, Tensor]:
    z = torch.ones_like(a)
    dz = a.new_zeros(a.shape + a.shape[-1:])  # [z]_ab of z_0 = 1
    for _ in range(iters):
        az = a * z
        c = 3.0 - az * z
        # z' = ½ z c and [a z²]_ab = z_b² + a_a [z]_ab (z_a + z_b) (product rule) give
        # [z']_ab = [z]_ab F_ab + H_ab,  F_ab = ½ c_b − ½ a_a z_a (z_a + z_b),  H_ab = −½ z_a z_b²
        f = (z.unsqueeze(-1) + z.unsqueeze(-2)).mul_((-0.5 * az).unsqueeze(-1)).add_(0.5 * c.unsqueeze(-2))
        dz.mul_(f).add_((-0.5 * z).unsqueeze(-1) * (z * z).unsqueeze(-2))
        z = 0.5 * z * c
    if inverse:
        return z, dz
    # g = a z:  [g]_ab = z_b + a_a [z]_ab
    return a * z, dz.mul_(a.unsqueeze(-1)).add_(z.unsqueeze(-2))


# An opaque operator for torch.compile: inductor inlines element-wise chains, and a recursion
# that reads z three times per step grows as 3^iters when inlined (measured: 38 s to compile 8
# steps of the bare scalar recursion, minutes for 10). As a custom op it runs as written.
@torch.library.custom_op("gcp::ns_divided_differences", mutates_args=())
def _ns_divided_differences_op(a: Tensor, iters: int, inverse: bool) -> tuple[Tensor, Tensor]:
    return _ns_divided_differences(a, iters, inverse)


@_ns_divided_differences_op.register_fake
def _(a: Tensor, iters: int, inverse: bool) -> tuple[Tensor, Tensor]:
    return a.new_empty(a.shape), a.new_empty(a.shape + a.shape[-1:])


def ns_divided_differences(a: Tensor, iters: int, inverse: bool) -> tuple[Tensor, Tensor]:
    """``(g(a), [g])`` for the scalar Newton–Schulz map ``g`` of ``iters`` steps (see the module doc).

    ``a``: ``(..., d)`` trace-normalised eigenvalues. Returns ``g(a)`` ``(..., d)`` and the matrix of
    divided differences ``[g]_ab`` ``(..., d, d)`` (``g'(a_a)`` on the diagonal), by the recursion
    ``[z']_ab = [z]_ab F_ab + H_ab`` (linear in ``[z]``; derived from the product rule).
    """
    return _ns_divided_differences_op(a, iters, inverse)


class NewtonSchulz(BackwardMode):
    name = "ns"
    summary = "gradient of coupled Newton–Schulz iterations run on the input (p = ±½ only)"
    options = NewtonSchulzOptions
    supports_eigh = False

    def check_power(self, p: float) -> None:
        check_square_root_power(self.name, p)

    def powm_grad(
        self, state: SpectralState, p: float, grad: Tensor, opts: NewtonSchulzOptions
    ) -> Tensor:
        lam = state.lam
        trace = lam.sum(-1, keepdim=True).clamp_min(torch.finfo(lam.dtype).tiny)
        s = 0.5 if p > 0 else -0.5
        g, dg = ns_divided_differences(lam / trace, opts.iters, inverse=p < 0)
        m = rotate_in(state.vecs, sym(grad))
        m_diag = torch.diagonal(m, dim1=-2, dim2=-1)
        t = trace.unsqueeze(-1)  # (..., 1, 1)
        c = s * trace.pow(s - 1.0) * (m_diag * g).sum(-1, keepdim=True) - trace.pow(s - 2.0) * (
            torch.diagonal(dg, dim1=-2, dim2=-1) * m_diag * lam
        ).sum(-1, keepdim=True)
        inner = mul_(mul_(dg, m), t.pow(s - 1.0))
        inner.diagonal(dim1=-2, dim2=-1).add_(c)
        return sym(conjugate(state.vecs, inner))
