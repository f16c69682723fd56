"""``topn``: SVD-TopN, the square root of the ``top_n`` largest eigenvalues with the rest floored; a
control that DifferentiableSVD (Song et al., ICCV 2021) reports as diverging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from ..backward import BackwardMode
from ..spectral import DEFAULT_EPS
from ..spectral_functions import TopNRoot, topn_sqrtm
from ._base import MatrixMethod, MethodOptions, check_int_option, check_positive_option, fail
from ._registry import register_method


@dataclass(frozen=True)
class TopNOptions(MethodOptions):
    top_n: Optional[int] = None  # eigenvalues kept; None: ⌈0.8·d⌉ (DifferentiableSVD keeps 206 of 256)
    eps: float = DEFAULT_EPS  # floor of the others, relative to λ_max

    def __post_init__(self) -> None:
        if self.top_n is not None:
            check_int_option("topn", "top_n", self.top_n, 1)
        check_positive_option("topn", "eps", self.eps, below=1)

    def kept(self, d: int) -> int:
        return self.top_n if self.top_n is not None else max(1, -(-4 * d // 5))


class TopN(MatrixMethod):
    name = "topn"
    summary = "square root of the top-N eigenvalues, the others floored (a control)"
    source = "SVD-TopN (Song et al., ICCV 2021, DifferentiableSVD)"
    options = TopNOptions
    takes_backward = True
    min_positions = 2

    def check(self, d: Optional[int], opts: TopNOptions, backward: BackwardMode, backward_opts: Any) -> None:
        backward.check_function(TopNRoot(1, torch.ones(1)))
        if d is not None and opts.kept(d) > d:
            fail("topn", f"top_n={opts.top_n} exceeds the {d} eigenvalues of a {d}×{d} covariance")

    def normalise(self, cov: Tensor, opts: TopNOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return topn_sqrtm(cov, opts.kept(cov.shape[-1]), backward, eps=opts.eps, **backward_opts)


register_method(TopN())
