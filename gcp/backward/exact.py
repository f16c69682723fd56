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
    CouplingMode,
    Options,
    SpectralState,
    check_positive,
    conjugate,
    log_ratio,
    pairs,
    rotate_in,
    sym,
    zero_diagonal,
)


@dataclass(frozen=True)
class ExactOptions(Options):
    rtol: float = 1e-8  # eigh only: relative gap under which two eigenvalues count as equal

    def __post_init__(self) -> None:
        check_positive("exact", "rtol", self.rtol)


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


class Exact(CouplingMode):
    name = "exact"
    summary = "closed-form Daleckii–Krein gradient, exact and finite on repeated eigenvalues"
    options = ExactOptions

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
