"""``"ed"``: the standard eigendecomposition gradient, the unstable control.

Back-propagates through ``U`` and ``Λ`` separately with the coupling ``K_ab = 1/(λ_b − λ_a)``
(Ionescu et al., ICCV 2015; the baseline of Wang et al., NeurIPS 2019 and Song et al.,
ICCV 2021). No guards: repeated eigenvalues give Inf/NaN, which is the point of the control.
"""

from __future__ import annotations

from torch import Tensor

from ._base import CouplingMode, SpectralState, zero_diagonal


class StandardED(CouplingMode):
    name = "ed"
    summary = "standard eigendecomposition gradient with 1/(λi−λj); unguarded control"

    def coupling(self, state: SpectralState, opts) -> Tensor:
        lam = state.lam
        return zero_diagonal(1.0 / (lam.unsqueeze(-2) - lam.unsqueeze(-1)))
