"""Registry of the backward modes of the eigendecomposition forward.

Each mode lives in its own module; :data:`BACKWARDS` lists their names in a stable order and
:func:`get_backward` resolves a name with a helpful error.
"""

from __future__ import annotations

import difflib

from ..errors import UnknownBackwardError
from ._base import BackwardMode, CouplingMode, Options, SpectralFunction, SpectralState
from .ed import StandardED
from .exact import Exact
from .lyap import Lyapunov
from .ns import NewtonSchulz
from .pade import Pade
from .pi import PowerIteration
from .taylor import Taylor
from .trunc import Truncated

_REGISTRY: dict[str, BackwardMode] = {}


def register_backward(mode: BackwardMode) -> BackwardMode:
    """Add a mode instance to the registry under ``mode.name`` (names are unique).

    A registered mode is accepted by name everywhere (``sqrtm(x, "mine")``, ``GCPHead``);
    :data:`BACKWARDS` keeps listing the built-in modes only.
    """
    if mode.name in _REGISTRY:
        raise ValueError(f"backward mode {mode.name!r} is already registered")
    _REGISTRY[mode.name] = mode
    return mode


for _mode in (Exact(), StandardED(), Truncated(), PowerIteration(), Taylor(), Pade(), NewtonSchulz(), Lyapunov()):
    register_backward(_mode)

BACKWARDS: tuple[str, ...] = tuple(_REGISTRY)


def registered() -> tuple[str, ...]:
    """Every registered mode, the built-in ones first."""
    return tuple(_REGISTRY)


def get_backward(name: str) -> BackwardMode:
    """The registered mode called ``name``; an :class:`UnknownBackwardError` lists the valid ones."""
    mode = _REGISTRY.get(name) if isinstance(name, str) else None
    if mode is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=2)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise UnknownBackwardError(
            f"unknown backward {name!r}{hint}; valid backward modes: {', '.join(_REGISTRY)}"
        )
    return mode


__all__ = [
    "BACKWARDS",
    "BackwardMode",
    "CouplingMode",
    "Options",
    "SpectralFunction",
    "SpectralState",
    "get_backward",
    "register_backward",
    "registered",
]
