"""``"lyap"``: the Lyapunov equation solved by coupled Newton–Schulz sign iterations.

For ``F = X^{1/2}``, ``F² = X`` gives ``F dF + dF F = dX``, so ``∂L/∂X`` solves
``F Y + Y F = sym(G)``. For ``F = X^{−1/2}`` the root ``R = X^{1/2}`` receives ``−F sym(G) F`` and the
same equation is solved with ``R``. Both are normalised by ``√‖X‖_F`` so the spectrum lies in
``(0, 1]`` and solved with :func:`gcp.lyapunov.lyap_sign_solve` (Song et al., ICLR 2022; 8 steps
there). Matmul-only, GPU-friendly; eigenvalues far below ``‖X‖_F`` are under-resolved.
Defined for ``p = ±½`` only, and not for :func:`gcp.eigh`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..lyapunov import lyap_sign_solve
from ._base import BackwardMode, Options, SpectralState, check_int, sym
from .ns import check_square_root_power


@dataclass(frozen=True)
class LyapunovOptions(Options):
    iters: int = 8

    def __post_init__(self) -> None:
        check_int("lyap", "iters", self.iters, 1)


class Lyapunov(BackwardMode):
    name = "lyap"
    summary = "Lyapunov equation by coupled Newton–Schulz sign iterations (p = ±½ only)"
    options = LyapunovOptions
    supports_eigh = False

    def check_power(self, p: float) -> None:
        check_square_root_power(self.name, p)

    def powm_grad(self, state: SpectralState, p: float, grad: Tensor, opts: LyapunovOptions) -> Tensor:
        lam, vecs = state.lam, state.vecs
        scale = lam.square().sum(-1).sqrt().sqrt()[..., None, None]  # √‖X‖_F
        root = (vecs * lam.sqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)
        rhs = sym(grad)
        if p < 0:
            inv_root = (vecs * lam.rsqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)
            rhs = -(inv_root @ rhs @ inv_root)
        return sym(lyap_sign_solve(root / scale, rhs / scale, opts.iters))
