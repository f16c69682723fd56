"""``"trunc"``: the standard gradient with the coupling clipped in magnitude (SVD-Trunc).

``K_ab = ±1 / max(|λ_b − λ_a|, threshold · λ_max)``: gaps smaller than ``threshold`` times the
largest eigenvalue are treated as that gap, so ``|K| <= 1/(threshold · λ_max)``. The threshold is
relative, which keeps the mode invariant to the scale of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._base import CouplingMode, Options, SpectralState, check_positive, oriented, pairs


@dataclass(frozen=True)
class TruncOptions(Options):
    threshold: float = 1e-3

    def __post_init__(self) -> None:
        check_positive("trunc", "threshold", self.threshold)


class Truncated(CouplingMode):
    name = "trunc"
    summary = "standard gradient with |1/(λi−λj)| clipped at 1/(threshold·λmax)"
    options = TruncOptions

    def coupling(self, state: SpectralState, opts: TruncOptions) -> Tensor:
        hi, lo, upper = pairs(state.lam)
        floor = opts.threshold * state.lam.abs().amax(-1, keepdim=True).unsqueeze(-1)
        inv_gap = 1.0 / torch.maximum(hi - lo, floor)
        return oriented(upper, inv_gap, -inv_gap)
