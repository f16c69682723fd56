"""Registry of the head methods: how a GCP head pools its features.

Each method lives in its own module, which declares its forward, options and facts
(:class:`HeadMethod`) and registers itself; :data:`METHODS` lists their names in a stable order and
:func:`get_method` resolves a name with a helpful error. Adding a method is one module and its name
in the import line below.
"""

from __future__ import annotations

from ..errors import InvalidOptionError
from ._base import HeadMethod, MatrixMethod, MethodOptions
from ._registry import _REGISTRY, get_method, register_method, registered_methods

# each module registers its method; the order of this line is the order of METHODS
from . import svd, isqrt, mpa, mtp, none, gap, bcnn, cbp, logm, topn, seb  # noqa: E401, F401, I001  isort: skip

#: the built-in methods, in a stable order
METHODS: tuple[str, ...] = tuple(_REGISTRY)
#: methods a scripted GCPHead can run (TorchScript compiles no autograd Function)
SCRIPTABLE_METHODS: tuple[str, ...] = tuple(n for n, m in _REGISTRY.items() if m.scriptable)
#: methods whose forward ONNX can run as it is (no eigendecomposition, no Cholesky solve)
ONNX_METHODS: tuple[str, ...] = tuple(n for n, m in _REGISTRY.items() if m.onnx)


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
