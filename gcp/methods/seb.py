"""``seb``: the scaling eigen branch (Song et al., TPAMI 2022, "On the Eigenvalues of Global Covariance
Pooling for Fine-grained Visual Recognition"): ``(1 + ‖Σ^{1/2} e^{−Σ}‖_F) Σ^{1/2}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import Tensor

from ..backward import BackwardMode
from ..spectral import DEFAULT_EPS
from ..spectral_functions import scaled_eigen_branch
from ._base import MatrixMethod, MethodOptions, check_positive_option
from ._registry import register_method


@dataclass(frozen=True)
class SEBOptions(MethodOptions):
    eps: float = DEFAULT_EPS  # eigenvalue floor, relative to λ_max

    def __post_init__(self) -> None:
        check_positive_option("seb", "eps", self.eps, below=1)


class ScalingEigenBranch(MatrixMethod):
    name = "seb"
    summary = "square root scaled by (1 + ‖Σ^½ e^−Σ‖_F), the scaling eigen branch"
    source = "SEB (Song et al., TPAMI 2022; DifferentiableSVD's SEB.py)"
    options = SEBOptions
    takes_backward = True
    min_positions = 2

    def check(self, d: Optional[int], opts: SEBOptions, backward: BackwardMode, backward_opts: Any) -> None:
        backward.check_power(0.5)

    def normalise(self, cov: Tensor, opts: SEBOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return scaled_eigen_branch(cov, backward, eps=opts.eps, **backward_opts)


register_method(ScalingEigenBranch())
