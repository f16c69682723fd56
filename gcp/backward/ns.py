"""``"ns"``: the gradient of a Newton–Schulz iteration evaluated at the input (SVD-Newton).

The forward square root comes from the eigendecomposition; the backward is the exact gradient
of ``iters`` coupled Newton–Schulz iterations of iSQRT-COV (trace pre-normalisation, ``√tr``
post-compensation) run on the same input (Song et al., ICCV 2021, "SVD-Newton"; ``iters=10``
there). Defined for ``p = ½`` (the ``Y`` iterate) and ``p = −½`` (the ``Z`` iterate) only, and not
for :func:`gcp.eigh`. Too few iterations under-resolve eigenvalues far below ``tr X``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InvalidOptionError
from ..newton_schulz import ns_power
from ._base import BackwardMode, Options, SpectralState, check_int, sym


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


class NewtonSchulz(BackwardMode):
    name = "ns"
    summary = "gradient of coupled Newton–Schulz iterations run on the input (p = ±½ only)"
    options = NewtonSchulzOptions
    supports_eigh = False
    needs_input = True

    def check_power(self, p: float) -> None:
        check_square_root_power(self.name, p)

    def powm_grad(
        self, state: SpectralState, p: float, grad: Tensor, opts: NewtonSchulzOptions
    ) -> Tensor:
        with torch.enable_grad():
            x = sym(state.x).detach().requires_grad_(True)
            out = ns_power(x, opts.iters, inverse=p < 0)
            (gx,) = torch.autograd.grad(out, x, sym(grad))
        return sym(gx)
