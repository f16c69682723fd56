"""``svd``: ``Σ^α`` by an eigendecomposition, with a selectable backward (MPN-COV, Li et al., ICCV 2017;
the backward modes of DifferentiableSVD, Song et al., ICCV 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import Tensor

from ..spectral import DEFAULT_EPS, eigh_power_forward, powm
from ._base import MatrixMethod, MethodOptions, ScriptedTriu, check_positive_option, fail, scripted_covariance
from ._registry import register_method


@dataclass(frozen=True)
class SVDOptions(MethodOptions):
    alpha: float = 0.5  # the matrix power (0.5: square root)
    eps: float = DEFAULT_EPS  # eigenvalue floor, relative to λ_max (for α <= 0 and the couplings)

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)):
            fail("svd", f"option 'alpha' must be a number, got {self.alpha!r}")
        check_positive_option("svd", "eps", self.eps, below=1)


class ScriptedSVD(ScriptedTriu):
    def __init__(self, d: int, opts: SVDOptions) -> None:
        super().__init__(d)
        self.alpha = float(opts.alpha)
        self.eps = float(opts.eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.vectorise(eigh_power_forward(scripted_covariance(x), self.alpha, self.eps).to(x.dtype))


class SVD(MatrixMethod):
    name = "svd"
    summary = "Σ^α by eigh, with the selected backward mode"
    source = "MPN-COV (Li et al., ICCV 2017); backward modes: Song et al., ICCV 2021"
    options = SVDOptions
    takes_backward = True
    min_positions = 2
    script_module = ScriptedSVD

    def check(self, d: Optional[int], opts: SVDOptions, backward: Any, backward_opts: Any) -> None:
        backward.check_power(float(opts.alpha))

    def normalise(self, cov: Tensor, opts: SVDOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return powm(cov, opts.alpha, backward, eps=opts.eps, **backward_opts)


register_method(SVD())
