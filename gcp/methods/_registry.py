"""The registry of head methods: a name → :class:`~gcp.methods.HeadMethod` table each method's
module adds itself to, with a lookup whose error lists the valid names."""

from __future__ import annotations

import difflib

from ..errors import InvalidOptionError
from ._base import HeadMethod

_REGISTRY: dict[str, HeadMethod] = {}


def register_method(method: HeadMethod) -> HeadMethod:
    """Add a method instance under ``method.name`` (names are unique); a registered method is
    accepted by name everywhere (``GCPHead(method=…)``, the zoo, the training commands)."""
    if method.name in _REGISTRY:
        raise ValueError(f"head method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


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
