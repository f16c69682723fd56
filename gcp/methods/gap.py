"""``gap``: global average pooling of the (reduced) channels, the first-order baseline every
comparison needs, in the same head with the same flags."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import Tensor, nn

from ._base import HeadMethod, MethodOptions
from ._registry import register_method


class ScriptedGAP(nn.Module):
    def __init__(self, d: int, opts: MethodOptions) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).mean(-1)


class GlobalAveragePooling(HeadMethod):
    name = "gap"
    summary = "global average pooling (first order)"
    source = "GAvP, as in fast-MPN-COV and DifferentiableSVD (Lin et al., ICLR 2014)"
    output_formula = "d"
    onnx = True
    script_module = ScriptedGAP

    def output_size(self, d: int, opts: MethodOptions) -> int:
        return d

    def pool(self, feats: Tensor, opts: MethodOptions, backward: Optional[str], backward_opts: Mapping[str, Any],
             buffers: tuple[Tensor, ...]) -> Tensor:
        return feats.mean(-1)


register_method(GlobalAveragePooling())
