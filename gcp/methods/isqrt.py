"""``isqrt``: iSQRT-COV, Newton–Schulz iterations with trace pre-normalisation and post-compensation
(Li et al., CVPR 2018), differentiated by autograd through the iterations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import Tensor

from ..newton_schulz import isqrtm, ns_power
from ._base import MatrixMethod, MethodOptions, ScriptedTriu, check_int_option, scripted_covariance
from ._registry import register_method


@dataclass(frozen=True)
class ISqrtOptions(MethodOptions):
    iters: int = 5  # Newton–Schulz iterations (paper: 5)

    def __post_init__(self) -> None:
        check_int_option("isqrt", "iters", self.iters, 1)


class ScriptedISqrt(ScriptedTriu):
    def __init__(self, d: int, opts: ISqrtOptions) -> None:
        super().__init__(d)
        self.iters = int(opts.iters)

    def forward(self, x: Tensor) -> Tensor:
        cov = scripted_covariance(x)
        return self.vectorise(ns_power(0.5 * (cov + cov.transpose(-1, -2)), self.iters).to(x.dtype))


class ISqrt(MatrixMethod):
    name = "isqrt"
    summary = "Newton–Schulz square root (iSQRT-COV), matmuls only"
    source = "iSQRT-COV (Li et al., CVPR 2018), fast-MPN-COV"
    options = ISqrtOptions
    onnx = True
    script_module = ScriptedISqrt

    def normalise(self, cov: Tensor, opts: ISqrtOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return isqrtm(cov, opts.iters)


register_method(ISqrt())
