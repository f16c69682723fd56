"""Whether a tensor is inside a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, …).

Two rules of the transforms shape the code: under ``vmap`` a function cannot branch on tensor
values (so the value checks step aside), and an in-place op whose target is not batched cannot take
a batched operand (so the backward's in-place products fall back to out-of-place ones).
Under ``torch.compile`` tensors are fake and never wrapped; dynamo cannot trace these queries.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch._C import _functorch


def is_transformed(*tensors: Tensor) -> bool:
    """True if any of ``tensors`` is wrapped by a ``torch.func`` transform."""
    if torch.compiler.is_compiling():
        return False
    return any(isinstance(t, Tensor) and _functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def under_vmap(t: Tensor) -> bool:
    """True if ``t`` is (or wraps) a tensor batched by ``torch.func.vmap``."""
    if torch.compiler.is_compiling():
        return False
    while isinstance(t, Tensor) and _functorch.is_functorch_wrapped_tensor(t):
        if _functorch.is_batchedtensor(t):
            return True
        t = _functorch.get_unwrapped(t)
    return False


def mul_(a: Tensor, b: Tensor) -> Tensor:
    """``a *= b`` in place, or ``a * b`` when a transform is active (see the module docstring)."""
    return a * b if is_transformed(a, b) else a.mul_(b)


def under_forward_mode() -> bool:
    """True inside a ``torch.func.jvp``/``jacfwd`` transform (e.g. ``torch.func.hessian``)."""
    if torch.compiler.is_compiling():
        return False
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return any(i.key() == TransformType.Jvp for i in retrieve_all_functorch_interpreters())
