"""The Lyapunov equation ``B X + X B = C`` by coupled Newton–Schulz sign iterations.

``sign([[B, C], [0, −B]]) = [[I, 2X], [0, −I]]`` when ``B`` is SPD; the Newton–Schulz sign
iteration ``H ← ½ H (3I − H²)`` on that block matrix splits into (Song et al., ICLR 2022)::

    C_{k+1} = ½ (C_k (3I − B_k²) − B_k² C_k + B_k C_k B_k),   B_{k+1} = ½ B_k (3I − B_k²),

and ``X = ½ C_N``. Matmul-only (six per step). It converges for spectra of ``B`` in
``(0, √3)``; an eigenvalue ``b`` of ``B`` grows by ~1.5× a step until it nears 1, so small ones
need more steps and are otherwise under-resolved (a smoothed gradient).
"""

from __future__ import annotations

from torch import Tensor

from .newton_schulz import _eye_like


def lyap_sign_solve(b: Tensor, c: Tensor, iters: int) -> Tensor:
    """Solve ``b X + X b = c`` for ``b`` SPD with spectrum in ``(0, 1]`` (normalise first)."""
    eye3 = 3.0 * _eye_like(b)
    for _ in range(iters):
        b2 = b @ b
        c = 0.5 * (c @ (eye3 - b2) - b2 @ c + b @ c @ b)
        b = 0.5 * b @ (eye3 - b2)
    return 0.5 * c
