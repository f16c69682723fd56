"""ctypes binding of cuSOLVER's batched symmetric eigensolver ``cusolverDnXsyevBatched``.

Written by hand because nothing torch ships calls it: torch's CUDA ``linalg.eigh`` batches
(``syevjBatched``) only up to 32×32 and otherwise loops ``syevd`` over the batch, one matrix at a
time, which is what a GCP head hits (a batch of 256×256 covariances every step). The library is
the ``libcusolver`` that torch's CUDA wheel already installs, so this adds no dependency; CuPy and
nvmath-python bind the same routine but are not torch's dependencies.

Layout: cuSOLVER is column-major. A symmetric row-major matrix is its own column-major copy, and
cuSOLVER's *upper* triangle is torch's *lower* one, so ``UPLO='L'`` is honoured exactly. The
eigenvectors come back as columns of a column-major array, i.e. as the rows of the row-major
buffer: ``V = buffer.mT``, with the Fortran strides ``torch.linalg.eigh`` returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import threading
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .errors import EighFailedError, SolverUnavailableError

# cuSOLVER / CUDA enums (cusolver_common.h, cublas_api.h, library_types.h)
_EIG_MODE_VECTOR = 1
_FILL_UPPER = 1  # column-major upper == row-major lower == torch's default UPLO='L'
_CUDA_TYPES = {torch.float32: 0, torch.float64: 1}  # CUDA_R_32F, CUDA_R_64F
_STATUS = {0: "SUCCESS", 1: "NOT_INITIALIZED", 2: "ALLOC_FAILED", 3: "INVALID_VALUE", 4: "ARCH_MISMATCH",
           5: "MAPPING_ERROR", 6: "EXECUTION_FAILED", 7: "INTERNAL_ERROR", 8: "MATRIX_TYPE_NOT_SUPPORTED",
           9: "NOT_SUPPORTED"}
# "n * lda * batchSize <= INT32_MAX" (cuSOLVER's documented limit of the batched routine)
_INT32_MAX = 2**31 - 1

_c = ctypes
_vp, _i64, _int, _size = _c.c_void_p, _c.c_int64, _c.c_int, _c.c_size_t


def _candidates() -> list[str]:
    """Where libcusolver may be: a copy already mapped into this process (torch's own), the
    ``nvidia`` wheels beside torch, then the system's loader path."""
    found: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(" ", 1)[-1].strip()
                if "/libcusolver.so" in path and path not in found:
                    found.append(path)
    except OSError:
        pass
    for root in sys.path:
        for pattern in ("nvidia/*/lib/libcusolver.so*", "nvidia/cusolver/lib/libcusolver.so*"):
            found += sorted(p for p in glob.glob(os.path.join(root, pattern)) if p not in found)
    name = ctypes.util.find_library("cusolver")
    if name:
        found.append(name)
    return found


class _Library:
    """The loaded library with typed entry points, and one handle per CUDA device."""

    def __init__(self, lib: ctypes.CDLL, path: str):
        self.path = path
        self.lib = lib
        lib.cusolverDnCreate.argtypes = [_c.POINTER(_vp)]
        lib.cusolverDnCreateParams.argtypes = [_c.POINTER(_vp)]
        lib.cusolverDnSetStream.argtypes = [_vp, _vp]
        lib.cusolverDnXsyevBatched_bufferSize.argtypes = [
            _vp, _vp, _int, _int, _i64, _int, _vp, _i64, _int, _vp, _int,
            _c.POINTER(_size), _c.POINTER(_size), _i64]
        lib.cusolverDnXsyevBatched.argtypes = [
            _vp, _vp, _int, _int, _i64, _int, _vp, _i64, _int, _vp, _int,
            _vp, _size, _vp, _size, _vp, _i64]
        for fn in (lib.cusolverDnCreate, lib.cusolverDnCreateParams, lib.cusolverDnSetStream,
                   lib.cusolverDnXsyevBatched_bufferSize, lib.cusolverDnXsyevBatched):
            fn.restype = _int
        self._handles: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def version(self) -> str:
        parts = []
        for kind in (0, 1, 2):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
            value = _int()
            if self.lib.cusolverGetProperty(kind, _c.byref(value)) != 0:
                return "unknown"
            parts.append(str(value.value))
        return ".".join(parts)

    def handle(self, device: int) -> tuple[int, int]:
        if device not in self._handles:
            with torch.cuda.device(device):
                handle, params = _vp(), _vp()
                _check(self.lib.cusolverDnCreate(_c.byref(handle)), "cusolverDnCreate")
                _check(self.lib.cusolverDnCreateParams(_c.byref(params)), "cusolverDnCreateParams")
            self._handles[device] = (handle.value, params.value)
        return self._handles[device]


def _check(status: int, call: str) -> None:
    if status != 0:
        raise EighFailedError(f"{call} returned CUSOLVER_STATUS_{_STATUS.get(status, status)}")


@dataclass(frozen=True)
class _Loaded:
    library: Optional[_Library]
    reason: str


_loaded: Optional[_Loaded] = None


def _load() -> _Loaded:
    global _loaded
    if _loaded is None:
        reasons = []
        library = None
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
                lib.cusolverDnXsyevBatched  # noqa: B018 - raises AttributeError when absent (cuSOLVER < 11.7)
                library = _Library(lib, path)
                break
            except (OSError, AttributeError) as exc:
                reasons.append(f"{path}: {exc}")
        reason = "" if library else ("no libcusolver with cusolverDnXsyevBatched found"
                                     + (f" ({'; '.join(reasons)})" if reasons else ""))
        _loaded = _Loaded(library, reason)
    return _loaded


def unavailable_reason() -> str:
    """Why the batched solver cannot run here ('' when it can)."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    return _load().reason


def library_info() -> dict[str, str]:
    """The loaded library's path and version, for benchmark headers."""
    loaded = _load()
    if loaded.library is None:
        return {"cusolver": f"unavailable: {loaded.reason}"}
    return {"cusolver": loaded.library.version(), "cusolver_path": loaded.library.path}


def syev_batched(x: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues ``(..., n)`` (ascending) and the eigenvectors *as rows* ``(..., n, n)``
    (``Vᵀ``, contiguous) of a batch of symmetric CUDA matrices, float32 or float64, reading the
    lower triangle like ``torch.linalg.eigh``.

    Runs on torch's current stream. Every matrix's ``info`` flag is read (one host sync, as in
    ``torch.linalg.eigh``): a matrix the solver did not converge on raises
    :class:`~gcp.errors.EighFailedError` instead of returning its garbage.
    """
    loaded = _load()
    if loaded.library is None:
        raise SolverUnavailableError(f"cusolverDnXsyevBatched cannot run: {loaded.reason}")
    lib = loaded.library
    n = x.shape[-1]
    batch_shape = x.shape[:-2]
    # cuSOLVER overwrites its input with the eigenvectors: work on a private contiguous copy
    a = x.reshape(-1, n, n).clone(memory_format=torch.contiguous_format)
    count = a.shape[0]
    w = torch.empty(count, n, dtype=x.dtype, device=x.device)
    info = torch.zeros(count, dtype=torch.int32, device=x.device)
    dtype_code = _CUDA_TYPES[x.dtype]
    chunk = max(1, _INT32_MAX // max(1, n * n))
    device = x.device.index if x.device.index is not None else torch.cuda.current_device()
    with lib._lock:
        handle, params = lib.handle(device)
        _check(lib.lib.cusolverDnSetStream(handle, torch.cuda.current_stream(x.device).cuda_stream),
               "cusolverDnSetStream")
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            a_ptr, w_ptr = a[start].data_ptr(), w[start].data_ptr()
            dev_bytes, host_bytes = _size(), _size()
            _check(lib.lib.cusolverDnXsyevBatched_bufferSize(
                handle, params, _EIG_MODE_VECTOR, _FILL_UPPER, n, dtype_code, a_ptr, n, dtype_code, w_ptr,
                dtype_code, _c.byref(dev_bytes), _c.byref(host_bytes), size), "cusolverDnXsyevBatched_bufferSize")
            # torch's caching allocator, on the current stream, so the buffer lives as long as the call
            dev_work = torch.empty(max(1, dev_bytes.value), dtype=torch.uint8, device=x.device)
            host_work = (_c.c_char * max(1, host_bytes.value))()
            _check(lib.lib.cusolverDnXsyevBatched(
                handle, params, _EIG_MODE_VECTOR, _FILL_UPPER, n, dtype_code, a_ptr, n, dtype_code, w_ptr,
                dtype_code, dev_work.data_ptr(), dev_bytes.value, _c.addressof(host_work), host_bytes.value,
                info[start].data_ptr(), size), "cusolverDnXsyevBatched")
    failed = torch.nonzero(info).flatten()
    if failed.numel():  # the sync torch.linalg.eigh also pays, to never return unconverged vectors
        first = int(failed[0])
        raise EighFailedError(
            f"cusolverDnXsyevBatched did not converge on {failed.numel()} of {count} matrices "
            f"(first: batch index {first}, info={int(info[first])}); the input may hold NaN/Inf")
    return w.reshape(*batch_shape, n), a.reshape(*batch_shape, n, n)
