"""``cbp``: compact bilinear pooling by Tensor Sketch (Gao et al., CVPR 2016), then the signed square
root and L2 normalisation. The sketch's hashes and signs are persistent buffers, so a saved model
reloads the same projection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import Tensor

from ..bilinear import signed_sqrt_l2, sketch_hashes, tensor_sketch
from ._base import HeadMethod, MethodOptions, check_int_option, check_positive_option
from ._registry import register_method


@dataclass(frozen=True)
class CBPOptions(MethodOptions):
    proj_dim: int = 8192  # the sketch's size D (Gao et al.: 8192)
    seed: int = 0  # seed of the hashes and signs
    thresh: float = 1e-8  # inside the signed square root

    def __post_init__(self) -> None:
        check_int_option("cbp", "proj_dim", self.proj_dim, 1)
        check_int_option("cbp", "seed", self.seed, 0)
        check_positive_option("cbp", "thresh", self.thresh)


class CompactBilinear(HeadMethod):
    name = "cbp"
    summary = "compact bilinear pooling (Tensor Sketch), signed square root, L2 normalisation"
    source = "CBP (Gao et al., CVPR 2016), fast-MPN-COV's CBP"
    output_formula = "proj_dim"
    options = CBPOptions
    onnx = True  # ONNX's DFT runs the FFT (tested through onnxruntime)

    def output_size(self, d: int, opts: CBPOptions) -> int:
        return opts.proj_dim

    def buffers(self, d: int, opts: CBPOptions) -> dict[str, tuple[Tensor, bool]]:
        index, sign = sketch_hashes(d, opts.proj_dim, opts.seed)
        return {"sketch_index": (index, True), "sketch_sign": (sign, True)}

    def pool(self, feats: Tensor, opts: CBPOptions, backward: Optional[str], backward_opts: Mapping[str, Any],
             buffers: tuple[Tensor, ...]) -> Tensor:
        index, sign = buffers
        return signed_sqrt_l2(tensor_sketch(feats, index, sign, opts.proj_dim), opts.thresh)


register_method(CompactBilinear())
