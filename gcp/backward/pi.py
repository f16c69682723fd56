"""``"pi"``: power iteration with deflation (Wang et al., NeurIPS 2019, "SVD-PI").

The forward takes the eigenvectors from ``eigh``; the backward treats each eigenvector ``v``, in
descending order of eigenvalue, as the fixed point of ``K`` power-iteration steps on the deflated
matrix ``M`` (``M ← M − M v vᵀ`` after each vector, differentiable), with::

    ∂L/∂M = [Σ_{k=0}^{K} (M/‖Mv‖)^k] (I − v vᵀ)/‖Mv‖ · (∂L/∂v) vᵀ,   λ = vᵀ M v.

Because the forward eigenvectors diagonalise every deflated matrix, the whole reverse sweep
(including the gradient that flows back through each deflation) has a closed form in the
eigenbasis. With ``T_K(λ_i, λ_j) = (1/λ_i) Σ_{k=0}^{K} (λ_j/λ_i)^k`` for ``λ_i >= λ_j``, the
coupling is ``K[j, i] = T_K`` and ``K[i, j] = −T_{K−1}``: the series of degree ``K`` on one side of
the pair and ``K − 1`` on the other (the ``1/λ_j`` terms of the deflation cancel exactly). So the
mode is batched, costs four matmuls like every other coupling mode, and — unlike the public
``SVD_PI`` which applies the single-vector formula to the whole square ``U`` where
``I − U Uᵀ ≈ 0`` — passes back a meaningful gradient. ``‖Mv‖ = λ`` is kept above the floor
``eps · λ_max`` (the paper clamps it at 1e-5 in absolute terms).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ._base import CouplingMode, Options, SpectralState, check_int, series_coupling


@dataclass(frozen=True)
class PowerIterationOptions(Options):
    iters: int = 19

    def __post_init__(self) -> None:
        check_int("pi", "iters", self.iters, 1)


class PowerIteration(CouplingMode):
    name = "pi"
    summary = "power iteration with deflation, K unrolled steps per eigenvector"
    options = PowerIterationOptions

    def coupling(self, state: SpectralState, opts: PowerIterationOptions) -> Tensor:
        return series_coupling(state, opts.iters, opts.iters - 1)
