"""``mtp``: the matrix Taylor polynomial square root with a Lyapunov backward (MTP-Lya, Song et al.,
ICLR 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import Tensor

from ..approximants import mtp_sqrtm
from ._base import MatrixMethod, MethodOptions, check_int_option
from ._registry import register_method


@dataclass(frozen=True)
class MTPOptions(MethodOptions):
    degree: int = 10  # Taylor degree (paper: 10)
    lyap_iters: int = 8  # sign iterations of the Lyapunov backward (paper: 8)

    def __post_init__(self) -> None:
        check_int_option("mtp", "degree", self.degree, 1)
        check_int_option("mtp", "lyap_iters", self.lyap_iters, 1)


class MTP(MatrixMethod):
    name = "mtp"
    summary = "matrix Taylor polynomial square root, Lyapunov backward"
    source = "MTP-Lya (Song et al., ICLR 2022)"
    options = MTPOptions
    onnx = True
    min_positions = 2

    def normalise(self, cov: Tensor, opts: MTPOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return mtp_sqrtm(cov, opts.degree, lyap_iters=opts.lyap_iters)


register_method(MTP())
