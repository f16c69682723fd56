"""``logm``: log-Euclidean pooling, ``log(Σ + εI)`` (DeepO2P, Ionescu et al., ICCV 2015), with the
backward modes of ``svd`` that apply to any spectral function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import Tensor

from ..backward import BackwardMode
from ..spectral_functions import Log, logm
from ._base import MatrixMethod, MethodOptions, check_positive_option
from ._registry import register_method


@dataclass(frozen=True)
class LogmOptions(MethodOptions):
    eps: float = 1e-5  # added to the eigenvalues (absolute, in the covariance's units)

    def __post_init__(self) -> None:
        check_positive_option("logm", "eps", self.eps)


class LogEuclidean(MatrixMethod):
    name = "logm"
    summary = "matrix logarithm log(Σ + εI), log-Euclidean"
    source = "DeepO2P (Ionescu et al., ICCV 2015)"
    options = LogmOptions
    takes_backward = True

    def check(self, d: Optional[int], opts: LogmOptions, backward: BackwardMode, backward_opts: Any) -> None:
        backward.check_function(Log())

    def normalise(self, cov: Tensor, opts: LogmOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return logm(cov, backward, eps=opts.eps, **backward_opts)


register_method(LogEuclidean())
