"""The square-root routes the comparison measures, by name."""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from ..approximants import mpa_sqrtm, mtp_sqrtm
from ..backward import BACKWARDS, get_backward
from ..errors import UnknownBackwardError
from ..head_config import HeadConfig
from ..methods import registered_methods
from ..newton_schulz import isqrtm
from ..spectral import sqrtm

Route = Callable[[Tensor], Tensor]

#: iterative routes next to the eigendecomposition backward modes
ITERATIVE: dict[str, Route] = {
    "isqrt": lambda x: isqrtm(x, 5),
    "mpa": lambda x: mpa_sqrtm(x, (5, 5)),
    "mtp": lambda x: mtp_sqrtm(x, 10),
}
ALL_ROUTES: tuple[str, ...] = BACKWARDS + tuple(ITERATIVE)

#: how each route maps onto a GCP head configuration
HEAD_CONFIG: dict[str, HeadConfig] = {**{m: HeadConfig("svd", m) for m in BACKWARDS},
                                      **{m: HeadConfig(m) for m in ITERATIVE}}


#: heads that pool otherwise than by a covariance's square root, measured next to the routes: the
#: training section trains them as arms and the speed section times them from the features. The
#: sketch of cbp is half the size of the d² = 1024 bilinear features it compresses (d = 32 here)
POOLING: dict[str, HeadConfig] = {"gap": HeadConfig("gap"), "bcnn": HeadConfig("bcnn"),
                                  "cbp": HeadConfig("cbp", method_options={"proj_dim": 512})}
#: every other head method by its name, as a training arm (its default options and backward)
METHOD_ARMS: dict[str, HeadConfig] = {**{m: HeadConfig(m) for m in registered_methods()
                                         if m != "svd" and m not in ITERATIVE and m not in POOLING}, **POOLING}


def route(name: str) -> Route:
    """``sqrtm`` with backward ``name``, or one of the iterative routes."""
    if name in ITERATIVE:
        return ITERATIVE[name]
    get_backward(name)  # raises UnknownBackwardError listing the modes
    return lambda x: sqrtm(x, name)


def parse_routes(text: str) -> list[str]:
    """``"all"`` or a comma-separated list of route names, validated."""
    names = list(ALL_ROUTES) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_ROUTES]
    if unknown or not names:
        raise UnknownBackwardError(
            f"unknown mode(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(ALL_ROUTES)}, or 'all'")
    return names
