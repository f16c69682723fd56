"""``none``: the covariance itself, unnormalised (second-order pooling without a matrix function)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import Tensor

from ._base import MatrixMethod, MethodOptions, ScriptedTriu, scripted_covariance
from ._registry import register_method


class ScriptedNone(ScriptedTriu):
    def __init__(self, d: int, opts: MethodOptions) -> None:
        super().__init__(d)

    def forward(self, x: Tensor) -> Tensor:
        return self.vectorise(scripted_covariance(x).to(x.dtype))


class NoNormalisation(MatrixMethod):
    name = "none"
    summary = "the covariance, unnormalised"
    source = "second-order pooling (O2P; Carreira et al., ECCV 2012)"
    onnx = True
    script_module = ScriptedNone

    def normalise(self, cov: Tensor, opts: MethodOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return cov


register_method(NoNormalisation())
