"""``"taylor"``: the coupling replaced by a truncated geometric series (SVD-Taylor).

For ``λ_i > λ_j`` and ``r = λ_j/λ_i`` (Wang et al., TPAMI 2021; Song et al., ICCV 2021)::

    1/(λ_i − λ_j) = (1/λ_i) · 1/(1 − r) ≈ (1/λ_i) Σ_{k=0}^{K} r^k,

antisymmetric in ``(i, j)`` and bounded by ``(K+1)/λ_i``. ICCV 2021 uses ``K = 100``, the TPAMI
paper ``K = 9``. Eigenvalues are raised to the floor ``eps · λ_max`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ._base import CouplingMode, Options, SpectralState, check_int, series_coupling


@dataclass(frozen=True)
class TaylorOptions(Options):
    degree: int = 100

    def __post_init__(self) -> None:
        check_int("taylor", "degree", self.degree, 0)


class Taylor(CouplingMode):
    name = "taylor"
    summary = "1/(λi−λj) replaced by its degree-K Taylor (geometric) series"
    options = TaylorOptions

    def coupling(self, state: SpectralState, opts: TaylorOptions) -> Tensor:
        return series_coupling(state, opts.degree, opts.degree)
