"""Compute-dtype policy: spectral work runs in high precision, outside autocast, then casts back."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from .errors import DTypeError


def resolve_compute_dtype(
    dtype: torch.dtype, requested: Optional[torch.dtype], minimum: torch.dtype
) -> torch.dtype:
    """The dtype to compute in: ``requested`` if given, else the wider of ``dtype`` and ``minimum``.

    Only float32 and float64 can be requested: torch's eigendecomposition, Cholesky and the
    triangular solves have no 16-bit kernels, and 16-bit matmuls would lose the digits these
    routes exist to keep.
    """
    if requested is not None:
        if not isinstance(requested, torch.dtype) or requested not in (torch.float32, torch.float64):
            raise DTypeError(f"compute_dtype must be torch.float32 or torch.float64, got {requested}; "
                             "16-bit inputs are computed in float32/float64 and cast back by default")
        return requested
    return dtype if torch.finfo(dtype).bits >= torch.finfo(minimum).bits else minimum


def smallest_normal(dtype: torch.dtype) -> float:
    """``torch.finfo(dtype).tiny``, written out because TorchScript has no ``torch.finfo``."""
    if dtype == torch.float64:
        return 2.2250738585072014e-308
    if dtype == torch.float16:
        return 6.103515625e-05
    return 1.1754943508222875e-38  # float32 and bfloat16


@contextlib.contextmanager
def autocast_off(device: torch.device) -> Iterator[None]:
    """Disable autocast for ``device`` so eigh/matmuls see the dtype we chose, not fp16/bf16.

    Devices without autocast (``meta``, used for shape propagation) have nothing to disable.
    """
    if not torch.amp.is_autocast_available(device.type):
        yield
        return
    with torch.autocast(device_type=device.type, enabled=False):
        yield
