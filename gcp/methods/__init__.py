"""Registry of the head methods: how a GCP head pools its features.

Each method lives in its own module and declares its forward, options and facts
(:class:`HeadMethod`); :data:`METHODS` lists their names in a stable order and :func:`get_method`
resolves a name with a helpful error. Adding a method is one module and one line below.
"""

from __future__ import annotations

import difflib

from ..errors import InvalidOptionError
from ._base import HeadMethod, MatrixMethod, MethodOptions
from .bcnn import Bilinear
from .cbp import CompactBilinear
from .gap import GlobalAveragePooling
from .isqrt import ISqrt
from .logm import LogEuclidean
from .mpa import MPA
from .mtp import MTP
from .none import NoNormalisation
from .seb import ScalingEigenBranch
from .svd import SVD
from .topn import TopN

_REGISTRY: dict[str, HeadMethod] = {}


def register_method(method: HeadMethod) -> HeadMethod:
    """Add a method instance under ``method.name`` (names are unique); a registered method is
    accepted by name everywhere (``GCPHead(method=…)``, the zoo, the training commands)."""
    if method.name in _REGISTRY:
        raise ValueError(f"head method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


for _method in (SVD(), ISqrt(), MPA(), MTP(), NoNormalisation(), GlobalAveragePooling(), Bilinear(),
                CompactBilinear(), LogEuclidean(), TopN(), ScalingEigenBranch()):
    register_method(_method)

#: the built-in methods, in a stable order
METHODS: tuple[str, ...] = tuple(_REGISTRY)
#: methods a scripted GCPHead can run (TorchScript compiles no autograd Function)
SCRIPTABLE_METHODS: tuple[str, ...] = tuple(n for n, m in _REGISTRY.items() if m.scriptable)
#: methods whose forward ONNX can run as it is (no eigendecomposition, no Cholesky, no FFT)
ONNX_METHODS: tuple[str, ...] = tuple(n for n, m in _REGISTRY.items() if m.onnx)


def get_method(name: str) -> HeadMethod:
    """The registered method called ``name``; an :class:`~gcp.InvalidOptionError` lists the valid ones."""
    method = _REGISTRY.get(name) if isinstance(name, str) else None
    if method is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=2)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise InvalidOptionError(f"unknown method {name!r}{hint}; valid methods: {', '.join(_REGISTRY)}")
    return method


def registered_methods() -> tuple[str, ...]:
    """Every registered method, the built-in ones first."""
    return tuple(_REGISTRY)


def methods_table() -> str:
    """The registered methods as the README's markdown table (a test keeps the README equal to it)."""
    rows = ["| method | what the head computes | output size | backward | TorchScript / ONNX | source |",
            "|---|---|---|---|---|---|"]
    from ..backward import BACKWARDS
    from ..head_config import HeadConfig

    for name, m in _REGISTRY.items():
        backward = "autograd"
        if m.takes_backward:
            accepted = []
            for mode in BACKWARDS:
                try:
                    HeadConfig(name, mode)
                except InvalidOptionError:
                    continue
                accepted.append(mode)
            backward = "any of `gcp.BACKWARDS`" if len(accepted) == len(BACKWARDS) else ", ".join(accepted)
        export = f"{'yes' if m.scriptable else 'no'} / {'yes' if m.onnx else 'no'}"
        rows.append(f"| `{name}` | {m.summary} | {m.output_formula} | {backward} | {export} | {m.source} |")
    return "\n".join(rows)


__all__ = ["HeadMethod", "MatrixMethod", "MethodOptions", "METHODS", "ONNX_METHODS", "SCRIPTABLE_METHODS",
           "get_method", "methods_table", "register_method", "registered_methods"]
