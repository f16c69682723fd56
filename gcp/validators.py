"""Validators of scalar options, shared by every layer: one rule for what counts as an integer or a
real number, and one wording of the error; and the splitter of user-written lists
(:func:`split_top_level`).

``bool`` is a subclass of ``int`` in Python, so ``True`` would pass a plain ``isinstance(x, int)``
check and silently mean 1; these validators refuse it. Each returns the value it checked (as an
``int`` or ``float``) and raises :class:`~gcp.InvalidOptionError` (or the error type the caller
passes) whose message names the option.

Example:
    >>> check_int(5, "iters", minimum=1)
    5
    >>> check_int(True, "iters", minimum=1)
    Traceback (most recent call last):
    ...
    gcp.errors.InvalidOptionError: iters must be an integer >= 1, got True
"""

from __future__ import annotations

import math
from typing import Any, Optional

from .errors import InvalidOptionError

__all__ = ["check_int", "check_int_pair", "check_real", "is_int", "is_real"]


def is_int(value: Any) -> bool:
    """True for Python integers other than ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for finite Python ``int``/``float`` values other than ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_requirement(minimum: Optional[int], maximum: Optional[int]) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def check_int(value: Any, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
              requirement: Optional[str] = None, error: type[Exception] = InvalidOptionError) -> int:
    """``value`` as an ``int`` if it is an integer within ``[minimum, maximum]``, else ``error``.

    ``requirement`` replaces the generated wording ("an integer >= 1") in the message.
    """
    if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise error(f"{name} must be {requirement or _int_requirement(minimum, maximum)}, got {value!r}")
    return int(value)


def check_int_pair(value: Any, name: str, *, minimum: tuple[int, int] = (1, 1),
                   error: type[Exception] = InvalidOptionError) -> tuple[int, int]:
    """A pair ``(m, n)`` (tuple or list) of integers with ``m >= minimum[0]`` and ``n >= minimum[1]``."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2 or not all(is_int(v) for v in value)
            or value[0] < minimum[0] or value[1] < minimum[1]):
        if minimum[0] == minimum[1]:
            bounds = f"integers >= {minimum[0]}"
        else:
            bounds = f"integers with m >= {minimum[0]}, n >= {minimum[1]}"
        raise error(f"{name} must be a pair (m, n) of {bounds}, got {value!r}")
    return int(value[0]), int(value[1])


def check_real(value: Any, name: str, *, low: Optional[float] = None, high: Optional[float] = None,
               low_open: bool = True, high_open: bool = True, requirement: Optional[str] = None,
               error: type[Exception] = InvalidOptionError) -> float:
    """``value`` as a ``float`` if it is a finite real number within the given bounds, else ``error``.

    Bounds are open by default (``low < value < high``); ``low_open=False`` makes ``low`` allowed.
    """
    ok = is_real(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if requirement is None:
            if low is not None and high is not None:
                requirement = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            elif low is not None:
                requirement = f"a number {'>' if low_open else '>='} {low:g}"
            elif high is not None:
                requirement = f"a number {'<' if high_open else '<='} {high:g}"
            else:
                requirement = "a finite real number"
        raise error(f"{name} must be {requirement}, got {value!r}")
    return float(value)


def split_top_level(text: str, separator: str, brackets: str = "()[]") -> list[str]:
    """``text`` split at ``separator`` outside brackets (``brackets`` lists opening/closing pairs):
    ``"a,b(c,d),e"`` → ``["a", "b(c,d)", "e"]``. Unbalanced text is split as far as it balances."""
    depth_change = {o: 1 for o in brackets[0::2]} | {c: -1 for c in brackets[1::2]}
    parts, depth, current = [], 0, ""
    for char in text:
        depth += depth_change.get(char, 0)
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts
