"""The configuration of a GCP head, as one frozen, validated value.

:class:`HeadConfig` holds the method and its options, the backward mode and its options (for the
methods that take one), the reduction width and the dropout. It is validated once, when it is
built: an unknown method, a backward given to a method that takes none, an option that belongs to
neither the method nor the backward, or a value out of range raise :class:`~gcp.InvalidOptionError`
naming what would be accepted. Options equal to their defaults are dropped and the default backward
is filled in, so two configurations that build the same head compare equal.

:class:`gcp.GCPHead` holds one; the zoo records it and the training run record stores it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from .backward import get_backward
from .backward import registered as registered_backwards
from .errors import InvalidOptionError
from .methods import HeadMethod, MethodOptions, get_method, registered_methods
from .validators import check_int, is_real

DEFAULT_BACKWARD = "exact"
Items = tuple[tuple[str, Any], ...]


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _items(options: Any, what: str) -> Items:
    if isinstance(options, Mapping):
        pairs = list(options.items())
    elif isinstance(options, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in options):
        pairs = [tuple(p) for p in options]
    else:
        raise InvalidOptionError(f"{what} must be a mapping of option names to values, got {options!r}")
    if not all(isinstance(k, str) for k, _ in pairs):
        raise InvalidOptionError(f"{what} must have string names, got {[k for k, _ in pairs]!r}")
    return tuple(sorted((k, _freeze(v)) for k, v in pairs))


def _without_defaults(items: Items, defaults: Mapping[str, Any]) -> Items:
    return tuple((k, v) for k, v in items if k not in defaults or defaults[k] != v)


def _owners(option: str) -> list[str]:
    """Where an option name is declared: ``method 'isqrt'``, ``backward 'taylor'``, …"""
    out = [f"method {m!r}" for m in registered_methods() if option in get_method(m).option_names]
    out += [f"backward {b!r}" for b in registered_backwards() if option in get_backward(b).option_names]
    return out


@dataclass(frozen=True)
class HeadConfig:
    """A GCP head: method, backward, their options, ``reduced_dim`` and ``drop_rate``.

    Args:
        method: a registered head method (:data:`gcp.METHODS`).
        backward: a backward mode (:data:`gcp.BACKWARDS`) for methods that take one (default
            ``"exact"``); must be ``None`` for the others.
        method_options: the method's options (e.g. ``{"iters": 5}`` for ``isqrt``).
        backward_options: the backward mode's options (e.g. ``{"degree": 9}`` for ``taylor``).
        reduced_dim: channels after the 1×1 reduction, or ``None`` for none.
        drop_rate: dropout before the classifier, in ``[0, 1)``.

    Example:
        >>> cfg = gcp.HeadConfig("svd", "taylor", backward_options={"degree": 9})
        >>> cfg.replace(backward="pade").backward_options
        ()
        >>> gcp.HeadConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> gcp.HeadConfig.from_kwargs(method="isqrt", iters=3).method_options
        (('iters', 3),)
    """

    method: str = "svd"
    backward: Optional[str] = None
    method_options: Items = ()
    backward_options: Items = ()
    reduced_dim: Optional[int] = 256
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        method = get_method(self.method)
        if self.reduced_dim is not None:
            check_int(self.reduced_dim, "reduced_dim", minimum=1, requirement="an integer >= 1 or None")
        if not (is_real(self.drop_rate) and 0.0 <= self.drop_rate < 1.0):
            raise InvalidOptionError(f"drop_rate must be in [0, 1), got {self.drop_rate!r}")
        backward = self.backward
        if not method.takes_backward:
            if backward is not None:
                takers = ", ".join(m for m in registered_methods() if get_method(m).takes_backward)
                raise InvalidOptionError(
                    f"method {self.method!r} takes no backward mode (autograd differentiates it as it is); "
                    f"backward={backward!r} applies to methods {takers}")
            if self.backward_options:
                raise InvalidOptionError(f"method {self.method!r} takes no backward mode, so no backward options "
                                         f"({', '.join(k for k, _ in _items(self.backward_options, 'x'))})")
        elif backward is None:
            backward = DEFAULT_BACKWARD
        method_items = _items(self.method_options, "method_options")
        opts = method.parse_options(dict(method_items))
        backward_items: Items = ()
        mode = None
        if backward is not None:
            mode = get_backward(backward)
            backward_items = _items(self.backward_options, "backward_options")
            mode_opts = mode.parse_options(dict(backward_items))
            backward_items = _without_defaults(backward_items, dataclasses.asdict(mode._default_options))
        else:
            mode_opts = None
        method.check(self.reduced_dim, opts, mode, mode_opts)
        object.__setattr__(self, "backward", backward)
        object.__setattr__(self, "method_options", _without_defaults(method_items, method.defaults))
        # parsed once: the head reads them on every forward (not a field: equality ignores it)
        object.__setattr__(self, "_parsed", opts)
        object.__setattr__(self, "backward_options", backward_items)
        object.__setattr__(self, "drop_rate", float(self.drop_rate))

    # ------------------------------------------------------------------ views
    @property
    def head_method(self) -> HeadMethod:
        return get_method(self.method)

    def options(self) -> MethodOptions:
        """The method's options, defaults filled in."""
        return self._parsed

    def backward_kwargs(self) -> dict[str, Any]:
        """The backward mode's options given (defaults omitted), as keyword arguments."""
        return dict(self.backward_options)

    def output_size(self, d: Optional[int] = None) -> int:
        """The representation's width for ``d`` channels (default ``reduced_dim``)."""
        d = self.reduced_dim if d is None else d
        if d is None:
            raise InvalidOptionError("output_size needs d when reduced_dim is None")
        return self.head_method.output_size(d, self.options())

    def label(self) -> str:
        """``svd/pade``, ``isqrt``, ``cbp(proj_dim=512)``: the head as a table row names it."""
        text = self.method if self.backward is None else f"{self.method}/{self.backward}"
        extra = [*self.method_options, *self.backward_options]
        return text + (f"({', '.join(f'{k}={v!r}' for k, v in extra)})" if extra else "")

    # ------------------------------------------------------------------ changes
    def replace(self, **changes: Any) -> "HeadConfig":
        """A copy with ``changes``, validated. A new method starts from its own option defaults and
        (if it takes one) keeps the backward; a new backward starts from its own option defaults,
        unless the options are given too."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise InvalidOptionError(f"HeadConfig has no field(s) {', '.join(unknown)}")
        new = dict(changes)
        if "method" in new and new["method"] != self.method:
            new.setdefault("method_options", ())
            if "backward" not in new:
                new["backward"] = self.backward if get_method(new["method"]).takes_backward else None
        if new.get("backward", self.backward) != self.backward:
            new.setdefault("backward_options", ())
        return dataclasses.replace(self, **new)

    def switched(self, method: Optional[str] = None, backward: Optional[str] = None, **options: Any) -> "HeadConfig":
        """What :meth:`gcp.GCPHead.set_method` switches to: ``None`` keeps the method/backward; flat
        ``options`` go to the method or the backward that declares them and replace the previous
        ones, which are kept only when neither the method, the backward nor the options change."""
        method = self.method if method is None else method
        changes: dict[str, Any] = {"method": method}
        if backward is not None:
            changes["backward"] = backward
        elif method != self.method:
            changes["backward"] = self.backward if get_method(method).takes_backward else None
        target = self.replace(**changes)
        if options or target.method != self.method or target.backward != self.backward:
            method_items, backward_items = _split(target.method, target.backward, options)
            target = dataclasses.replace(target, method_options=method_items, backward_options=backward_items)
        return target

    # ------------------------------------------------------------------ flat and nested forms
    @classmethod
    def from_kwargs(cls, method: str = "svd", backward: Optional[str] = None, reduced_dim: Optional[int] = 256,
                    drop_rate: float = 0.0, **options: Any) -> "HeadConfig":
        """The convenience form ``GCPHead`` and ``create_model`` take: each option goes to the method or
        the backward mode that declares it, and one that neither declares is refused by name."""
        take = get_method(method).takes_backward if isinstance(method, str) else False
        mode = (backward if backward is not None else DEFAULT_BACKWARD) if take else backward
        method_items, backward_items = _split(method, mode, options)
        return cls(method, backward, method_items, backward_items, reduced_dim, drop_rate)

    def kwargs(self) -> dict[str, Any]:
        """The flat form: ``method``, ``backward`` (when the method takes one), the options,
        ``reduced_dim`` and ``drop_rate``; ``HeadConfig.from_kwargs(**c.kwargs()) == c``."""
        out: dict[str, Any] = {"method": self.method}
        if self.backward is not None:
            out["backward"] = self.backward
        out.update(self.method_options)
        out.update(self.backward_options)
        out.update(reduced_dim=self.reduced_dim, drop_rate=self.drop_rate)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, the options nested under the method and the backward."""
        return {"method": self.method, "backward": self.backward,
                "method_options": {k: _thaw(v) for k, v in self.method_options},
                "backward_options": {k: _thaw(v) for k, v in self.backward_options},
                "reduced_dim": self.reduced_dim, "drop_rate": self.drop_rate}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "HeadConfig":
        """The inverse of :meth:`to_dict`; unknown keys are refused."""
        if not isinstance(values, Mapping):
            raise InvalidOptionError(f"a head configuration must be a mapping, got {type(values).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise InvalidOptionError(f"unknown head configuration key(s) {', '.join(unknown)}; valid: "
                                     f"{', '.join(sorted(fields))}")
        return cls(**{k: (_items(v or {}, k) if k.endswith("_options") else v) for k, v in values.items()})

    @classmethod
    def coerce(cls, value: Any) -> "HeadConfig":
        """A ``HeadConfig`` as it is, or one built from its :meth:`to_dict` form."""
        return value if isinstance(value, cls) else cls.from_dict(value)


def flat_option_names() -> frozenset[str]:
    """Every keyword :meth:`HeadConfig.from_kwargs` accepts: the fields and every registered method's
    and backward mode's options (how the zoo tells head options from a timm backbone's)."""
    names = {"method", "backward", "reduced_dim", "drop_rate"}
    names.update(o for m in registered_methods() for o in get_method(m).option_names)
    names.update(o for b in registered_backwards() for o in get_backward(b).option_names)
    return frozenset(names)


def _split(method: str, backward: Optional[str], options: Mapping[str, Any]) -> tuple[Items, Items]:
    """Flat options → (method's, backward's), by which of them declares each name."""
    method_names = get_method(method).option_names
    backward_names = get_backward(backward).option_names if backward is not None else ()
    mine, theirs = {}, {}
    for key, value in options.items():
        in_method, in_backward = key in method_names, key in backward_names
        if in_method and in_backward:
            raise InvalidOptionError(f"option {key!r} is declared by both method {method!r} and backward "
                                     f"{backward!r}; pass HeadConfig(method_options=…, backward_options=…)")
        if in_method:
            mine[key] = value
        elif in_backward:
            theirs[key] = value
        else:
            where = f" nor backward {backward!r} ({', '.join(backward_names) or 'no options'})" if backward else ""
            owners = _owners(key)
            hint = f"; {key} belongs to {', '.join(owners)}" if owners else ""
            mine_text = ", ".join(method_names) or "no options"
            raise InvalidOptionError(
                f"option {key!r} applies to neither method {method!r} ({mine_text}){where}{hint}")
    return _items(mine, "method_options"), _items(theirs, "backward_options")
