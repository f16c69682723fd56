"""Input checks shared by every public function: cheap, early and with readable messages."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .errors import DTypeError, NonFiniteError, NonSquareError, ShapeError

_FINITE_CHECKS = True


def set_finite_checks(enabled: bool) -> None:
    """Turn the NaN/Inf input check of every :mod:`gcp` function on or off globally.

    The check costs one reduction (and, on a GPU, one host synchronisation) per call; switch it
    off in a tuned training loop once the pipeline is known to be clean.
    """
    global _FINITE_CHECKS
    _FINITE_CHECKS = bool(enabled)


@contextlib.contextmanager
def finite_checks(enabled: bool) -> Iterator[None]:
    """Context manager form of :func:`set_finite_checks`."""
    global _FINITE_CHECKS
    previous = _FINITE_CHECKS
    _FINITE_CHECKS = bool(enabled)
    try:
        yield
    finally:
        _FINITE_CHECKS = previous


def check_floating(x: torch.Tensor, name: str = "input") -> None:
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{name} must have a floating dtype, got {x.dtype}")


def check_finite(x: torch.Tensor, name: str = "input") -> None:
    if _FINITE_CHECKS and x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(
            f"{name} holds {bad} non-finite (NaN/Inf) entr{'y' if bad == 1 else 'ies'}; "
            "disable this check with gcp.set_finite_checks(False)"
        )


def check_square_batch(x: torch.Tensor, name: str = "input") -> None:
    """Validate a batch ``(..., d, d)`` of floating, finite, square matrices with ``d >= 1``."""
    check_floating(x, name)
    if x.dim() < 2:
        raise ShapeError(f"{name} must be a batch of matrices (..., d, d); got shape {tuple(x.shape)}")
    if x.shape[-1] != x.shape[-2]:
        raise NonSquareError(
            f"{name} must hold square matrices (..., d, d); got shape {tuple(x.shape)}"
        )
    if x.shape[-1] == 0:
        raise ShapeError(f"{name} holds empty 0x0 matrices; got shape {tuple(x.shape)}")
    check_finite(x, name)
