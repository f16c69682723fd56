"""``"pade"``: the coupling replaced by a Padé approximant (SVD-Padé, Song et al., ICCV 2021).

For ``λ_i > λ_j``, ``r = λ_j/λ_i``: ``1/(λ_i − λ_j) ≈ (1/λ_i) P(r)/Q(r)`` with ``[m/n]`` the Padé
approximant of the degree-``m+n`` Taylor series of ``1/(1−r)``; the paper uses ``[50/50]``.

A fact worth knowing: the geometric series is itself rational, so its ``[m/n]`` Padé
approximant is ``1/(1−r)`` for every ``n >= 1`` — the Padé system is singular and all its
solutions are ``P = S``, ``Q = (1−r) S``. The coefficients here are the minimum-norm solution,
computed once in 50-digit arithmetic (``P_k = 1 − k/n``, ``Q = 1 − (1/n) Σ r^k`` for ``m >= n−1``),
which share the published coefficients' property ``Q ≈ (1−r)P``. The Padé gradient is therefore
the standard one up to the round-off of evaluating ``P`` and ``Q`` (the paper reports errors of
3e-16 … 3e-10 at ``r`` = 0.9 … 0.999), whatever the order.

Ties: pairs whose ``Q(r)`` is below its own evaluation error (numerically repeated eigenvalues)
are *tied*. Their eigenvector coupling is undefined, so :func:`gcp.eigh` gets zero there (the rule
``"exact"`` uses), but a matrix function has a well-defined limit: the divided difference
``(f(λ_a) − f(λ_b))/(λ_a − λ_b)`` tends to ``f'(λ)``. :func:`gcp.powm` therefore gives tied pairs
the exact divided difference of ``λ^p`` (the value ``"exact"`` uses), so the Padé gradient is
correct on repeated spectra (the identity, block-identity covariances) instead of dropping those
terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..series import pade_coefficients
from ..validators import is_int
from ._base import CouplingMode, Options, SpectralState, _fail, clamp_to_floor, pairs_to_matrix


@dataclass(frozen=True)
class PadeOptions(Options):
    degree: tuple[int, int] = (50, 50)

    def __post_init__(self) -> None:
        deg = self.degree
        if (
            not isinstance(deg, (tuple, list))
            or len(deg) != 2
            or not all(is_int(v) for v in deg)
            or deg[0] < 0
            or deg[1] < 1
        ):
            _fail("pade", f"option 'degree' must be a pair (m, n) with m >= 0, n >= 1, got {deg!r}")
        object.__setattr__(self, "degree", tuple(deg))
        pade_coefficients("geometric", *self.degree)  # fill the cache in eager mode (see gcp.series)


def horner(coefs: Sequence[float], r: Tensor) -> Tensor:
    """``Σ_k coefs[k] r^k`` by Horner's rule, in place on one buffer."""
    acc = torch.full_like(r, coefs[-1])
    for c in reversed(coefs[:-1]):
        acc.mul_(r).add_(c)
    return acc


class Pade(CouplingMode):
    name = "pade"
    summary = "1/(λi−λj) replaced by the [m/n] Padé approximant of its Taylor series"
    options = PadeOptions

    def coupling(self, state: SpectralState, opts: PadeOptions) -> Tensor:
        return self.coupling_and_ties(state, opts)[0]

    def coupling_and_ties(self, state: SpectralState, opts: PadeOptions) -> tuple[Tensor, Tensor]:
        """``(K, tied)``: the Padé coupling (zero on tied pairs) and the ``(..., d, d)`` tie mask."""
        p, q = pade_coefficients("geometric", *opts.degree)
        lam = clamp_to_floor(state.lam, state.floor)
        d = lam.shape[-1]
        rows, cols = torch.triu_indices(d, d, 1, device=lam.device)
        # only the pairs b > a (λ_b >= λ_a): the coupling is antisymmetric, so half the Horner work
        hi, lo = lam[..., cols], lam[..., rows]
        r = lo / hi
        num = horner(p, r)
        den = horner(q, r)
        # Horner's forward error bound: below it Q(r) is round-off, i.e. r == 1 numerically.
        noise = 2 * len(q) * torch.finfo(r.dtype).eps * sum(abs(c) for c in q)
        degenerate = den.abs() <= noise
        value = torch.where(degenerate, torch.zeros_like(num), num / (hi * torch.where(degenerate, 1.0, den)))
        k = pairs_to_matrix(lam.new_zeros(lam.shape + (d,)), rows, cols, value, -value)
        tied = pairs_to_matrix(torch.zeros(k.shape, dtype=torch.bool, device=k.device), rows, cols, degenerate,
                               degenerate)
        return k, tied
