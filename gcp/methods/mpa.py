"""``mpa``: the matrix Padé approximant square root with a Lyapunov backward (MPA-Lya, Song et al.,
ICLR 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import Tensor

from ..approximants import mpa_sqrtm
from ._base import MatrixMethod, MethodOptions, check_int_option
from ._registry import register_method


@dataclass(frozen=True)
class MPAOptions(MethodOptions):
    degree: tuple[int, int] = (5, 5)  # [m/n] of the Padé approximant (paper: (5, 5))
    lyap_iters: int = 8  # sign iterations of the Lyapunov backward (paper: 8)

    def __post_init__(self) -> None:
        from ..approximants import _check_pade_denominator
        from ..validators import check_int_pair

        object.__setattr__(self, "degree", check_int_pair(self.degree, "method 'mpa': option 'degree'"))
        _check_pade_denominator(*self.degree)
        check_int_option("mpa", "lyap_iters", self.lyap_iters, 1)


class MPA(MatrixMethod):
    name = "mpa"
    summary = "matrix Padé approximant square root, Lyapunov backward"
    source = "MPA-Lya (Song et al., ICLR 2022)"
    options = MPAOptions
    min_positions = 2

    def normalise(self, cov: Tensor, opts: MPAOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        return mpa_sqrtm(cov, opts.degree, lyap_iters=opts.lyap_iters)


register_method(MPA())
