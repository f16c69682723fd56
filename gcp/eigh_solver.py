"""Which solver computes the eigendecomposition in the forward of every ``eigh`` route.

On CUDA, ``torch.linalg.eigh`` of a batch of matrices larger than 32×32 runs ``syevd`` on one
matrix after another (cuSOLVER's batched Jacobi is used only up to 32×32). cuSOLVER's batched
``cusolverDnXsyevBatched`` solves the whole batch in one call; :mod:`gcp._cusolver` binds it.

Backends (:func:`set_eigh_backend`, or the ``GCP_EIGH_BACKEND`` environment variable):

- ``"torch"`` (default): always ``torch.linalg.eigh``.
- ``"auto"``: the batched solver for batches where it is expected to beat torch's
  (:func:`uses_batched_solver` states the rule), torch's everywhere else.
- ``"cusolver"``: the batched solver for every CUDA float32/float64 batch; raises
  :class:`~gcp.errors.SolverUnavailableError` where it cannot run, rather than falling back.

The batched solver is a ``torch.library`` custom op (``gcp::syev_batched``), so ``torch.vmap``
and ``torch.compile`` see an ordinary operator. It has no autograd formula of its own: the routes
call it inside their autograd Functions, whose backward is the selected backward mode.

Example:
    >>> import gcp
    >>> gcp.set_eigh_backend("auto")
    >>> gcp.eigh_backend()
    'auto'
    >>> gcp.set_eigh_backend("torch")
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from . import _cusolver
from .errors import InvalidOptionError, SolverUnavailableError

EIGH_BACKENDS = ("auto", "torch", "cusolver")
# torch's until the batched solver's CUDA tests and benchmarks/gpu_session.sh have run on a GPU
# (none was lent to the project yet): an unmeasured path is not made the default
DEFAULT_EIGH_BACKEND = "torch"

# The rule "auto" applies: torch already batches up to 32×32 (syevjBatched), and a batch of one
# gains nothing from a batched call. To be set from the crossover that
# benchmarks/bench_gpu_eigh.py measures (its sizes include 32 and 48, and batches of 2 and 8).
BATCHED_FROM_N = 33
BATCHED_FROM_BATCH = 2


def _from_environment() -> str:
    value = os.environ.get("GCP_EIGH_BACKEND", DEFAULT_EIGH_BACKEND)
    if value not in EIGH_BACKENDS:
        raise InvalidOptionError(f"GCP_EIGH_BACKEND={value!r}: expected one of {', '.join(EIGH_BACKENDS)}")
    return value


_backend = _from_environment()


def set_eigh_backend(name: str) -> None:
    """Select the solver of the ``eigh`` forward: ``"auto"``, ``"torch"`` or ``"cusolver"``."""
    global _backend
    if name not in EIGH_BACKENDS:
        raise InvalidOptionError(f"eigh backend {name!r}: expected one of {', '.join(EIGH_BACKENDS)}")
    _backend = name


def eigh_backend() -> str:
    """The selected backend's name."""
    return _backend


@contextmanager
def using_eigh_backend(name: str) -> Iterator[None]:
    """Select ``name`` inside a ``with`` block and restore the previous backend after it."""
    previous = _backend
    set_eigh_backend(name)
    try:
        yield
    finally:
        set_eigh_backend(previous)


@torch.library.custom_op("gcp::syev_batched", mutates_args=(), device_types="cuda")
def _syev_batched(x: Tensor) -> tuple[Tensor, Tensor]:
    # the eigenvectors as rows, contiguous: what the fake below promises; transposed outside
    return _cusolver.syev_batched(x)


@_syev_batched.register_fake
def _(x: Tensor) -> tuple[Tensor, Tensor]:
    return x.new_empty(x.shape[:-1]), torch.empty_like(x, memory_format=torch.contiguous_format)


def _vmap_rule(info, in_dims, x: Tensor):  # noqa: ANN001 - torch.library's signature
    (dim,) = in_dims
    if dim is not None:
        x = x.movedim(dim, 0)
    return _syev_batched(x), (0 if dim is not None else None, 0 if dim is not None else None)


_syev_batched.register_vmap(_vmap_rule)


def uses_batched_solver(x: Tensor) -> bool:
    """Whether :func:`symmetric_eigh` sends ``x`` to cuSOLVER's batched solver: a CUDA float32 or
    float64 batch, and with ``"auto"``, at least ``BATCHED_FROM_BATCH`` matrices of at least
    ``BATCHED_FROM_N`` rows."""
    if _backend == "torch" or x.device.type != "cuda" or x.dtype not in (torch.float32, torch.float64):
        return False
    if _backend == "cusolver":
        return True
    n = x.shape[-1]
    count = x.numel() // max(1, n * n)
    return n >= BATCHED_FROM_N and count >= BATCHED_FROM_BATCH and not _cusolver.unavailable_reason()


def symmetric_eigh(x: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh(x)`` (ascending eigenvalues, eigenvectors as columns, lower triangle
    read) by the selected backend. Call it where no gradient flows through it (inside an autograd
    Function's forward); where one would, it is torch's, whose autograd is defined."""
    if (x.requires_grad and torch.is_grad_enabled()) or x.numel() == 0 or not uses_batched_solver(x):
        return torch.linalg.eigh(x)
    if _backend == "cusolver":  # asked for by name: refused where it cannot run ("auto" checked it)
        reason = _cusolver.unavailable_reason()
        if reason:
            raise SolverUnavailableError(f"eigh backend 'cusolver' was selected but cannot run: {reason}")
    lam, rows = _syev_batched(x)
    return lam, rows.mT


def backend_info() -> dict[str, str]:
    """The backend setting and the batched solver's library, for benchmark headers."""
    info = {"eigh_backend": _backend}
    if torch.cuda.is_available():
        info.update(_cusolver.library_info())
    return info
