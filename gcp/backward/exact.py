"""``"exact"``: the closed-form gradient of a spectral function (Daleckii–Krein).

For ``F = V diag(f(λ)) Vᵀ``::

    ∂L/∂X = V (K ∘ (Vᵀ sym(G) V)) Vᵀ,  K_ab = (f(λ_a) − f(λ_b)) / (λ_a − λ_b),  K_aa = f'(λ_a).

For ``f = λ^p`` the divided difference is evaluated without cancellation: ``1/(√λ_a + √λ_b)`` for
p = ½, ``−1/(√λ_a √λ_b (√λ_a + √λ_b))`` for p = −½, ``λ_a + λ_b`` for p = 2, and in general, with
``hi = max(λ_a, λ_b)`` and ``log r`` from ``log1p`` of the relative gap (ratio near 1) or the log
of the ratio (far from 1)::

    K_ab = hi^{p−1} · expm1(p log r) / expm1(log r),

whose limit at ``λ_a = λ_b`` is ``f'(λ)``. The gradient is therefore exact and finite on repeated
eigenvalues; the only large values come from ``f'`` near the eigenvalue floor when ``p < 1``.

For :func:`gcp.eigh` the eigenvectors of a repeated eigenvalue are not unique, so no eigenvector
gradient is exact there: ``"exact"`` uses the standard coupling ``1/(λ_b − λ_a)`` and sets it to
zero for pairs whose eigenvalues coincide within ``rtol · max|λ|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._base import (
    SECOND_ORDER_POWERS,
    CouplingMode,
    Options,
    SpectralFunction,
    SpectralState,
    check_positive,
    conjugate,
    power_divided_difference,
    rotate_in,
    sym,
    zero_diagonal,
)


@dataclass(frozen=True)
class ExactOptions(Options):
    rtol: float = 1e-8  # eigh only: relative gap under which two eigenvalues count as equal

    def __post_init__(self) -> None:
        check_positive("exact", "rtol", self.rtol)


class Exact(CouplingMode):
    name = "exact"
    summary = "closed-form Daleckii–Krein gradient, exact and finite on repeated eigenvalues"
    options = ExactOptions
    second_order_powers = SECOND_ORDER_POWERS

    def coupling(self, state: SpectralState, opts: ExactOptions) -> Tensor:
        lam = state.lam
        diff = lam.unsqueeze(-2) - lam.unsqueeze(-1)  # [a, b] = λ_b − λ_a
        scale = lam.abs().amax(-1, keepdim=True).unsqueeze(-1)
        tie = diff.abs() <= opts.rtol * scale
        k = torch.where(tie, torch.zeros_like(diff), 1.0 / torch.where(tie, torch.ones_like(diff), diff))
        return zero_diagonal(k)

    def powm_grad(self, state: SpectralState, p: float, grad: Tensor, opts: ExactOptions) -> Tensor:
        inner = sym(rotate_in(state.vecs, grad)).mul_(power_divided_difference(state.lam, p))
        return conjugate(state.vecs, inner)

    def function_grad(self, state: SpectralState, fn: SpectralFunction, grad: Tensor, opts: ExactOptions) -> Tensor:
        inner = sym(rotate_in(state.vecs, grad)).mul_(fn.divided_difference(state.lam))
        return conjugate(state.vecs, inner)
