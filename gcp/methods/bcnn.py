"""``bcnn``: bilinear pooling (B-CNN; Lin et al., ICCV 2015): ``(1/M) X Xᵀ``, uncentred, signed square
root, L2 normalisation over all ``d²`` entries (as fast-MPN-COV's ``BCNN``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from ..bilinear import signed_sqrt_l2
from ._base import HeadMethod, MethodOptions, check_positive_option
from ._registry import register_method


@dataclass(frozen=True)
class BCNNOptions(MethodOptions):
    thresh: float = 1e-8  # inside the signed square root: sign(b)·√(|b| + thresh)

    def __post_init__(self) -> None:
        check_positive_option("bcnn", "thresh", self.thresh)


class ScriptedBCNN(nn.Module):
    def __init__(self, d: int, opts: BCNNOptions) -> None:
        super().__init__()
        self.thresh = float(opts.thresh)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2)
        if flat.dtype != torch.float64:
            flat = flat.to(torch.float32)
        b = (flat @ flat.transpose(-1, -2) / flat.size(-1)).flatten(1)
        y = torch.sign(b) * torch.sqrt(b.abs() + self.thresh)
        return torch.nn.functional.normalize(y, dim=-1).to(x.dtype)


class Bilinear(HeadMethod):
    name = "bcnn"
    summary = "bilinear pooling, signed square root, L2 normalisation"
    source = "B-CNN (Lin et al., ICCV 2015), fast-MPN-COV's BCNN"
    output_formula = "d²"
    options = BCNNOptions
    onnx = True
    matrix = True
    script_module = ScriptedBCNN

    def output_size(self, d: int, opts: BCNNOptions) -> int:
        return d * d

    def pool(self, feats: Tensor, opts: BCNNOptions, backward: Optional[str], backward_opts: Mapping[str, Any],
             buffers: tuple[Tensor, ...]) -> Tensor:
        b = feats @ feats.transpose(-1, -2) / feats.shape[-1]
        return signed_sqrt_l2(b.flatten(-2), opts.thresh).view_as(b)

    def vectorise(self, pooled: Tensor, buffers: tuple[Tensor, ...]) -> Tensor:
        return pooled.flatten(-2)


register_method(Bilinear())
