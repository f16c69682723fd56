"""Input checks shared by every public function: cheap, early and with readable messages.

Checks that read tensor *values* (NaN/Inf, definiteness) need the value on the host, which a
traced graph cannot do. In eager mode they raise a typed :class:`~gcp.GCPError`; under
``torch.compile`` / ``torch.export`` they become ``torch._assert_async`` assertions, which stay
inside the graph (a ``RuntimeError`` carrying the same message when they fail); under FX or
TorchScript tracing and on ``meta`` tensors there are no values and they are skipped.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

from ._transforms import under_vmap
from .errors import DTypeError, ExportError, IndefiniteError, NonFiniteError, NonSquareError, ShapeError

_FINITE_CHECKS = True


def set_finite_checks(enabled: bool) -> None:
    """Turn the value checks of every :mod:`gcp` function on or off globally.

    These are the NaN/Inf input check and the definiteness check of the matrix functions
    (:class:`~gcp.IndefiniteError`). Each costs one reduction (and, on a GPU, one host
    synchronisation) per call; switch them off in a tuned training loop once the pipeline is
    known to be clean. Under ``torch.compile`` they never synchronise (see the module docstring).
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


def _skip_value_checks(x: torch.Tensor) -> bool:
    """True when value checks are off, or a tensor's values cannot be read: meta tensors, FX
    symbolic and JIT tracing, and ``torch.func.vmap`` (a vmapped function cannot branch on values)."""
    return (
        not _FINITE_CHECKS
        or x.device.type == "meta"
        or torch.jit.is_scripting()
        or torch.jit.is_tracing()
        or torch.fx._symbolic_trace.is_fx_symbolic_tracing()
        or under_vmap(x)
    )


def _failed(ok: torch.Tensor) -> bool:
    """Whether the check ``ok`` (a 0-d bool tensor) failed in eager mode. Under
    ``torch.compile``/``torch.export`` it becomes an in-graph assertion and ``False`` is returned."""
    if torch.compiler.is_compiling():
        torch._assert_async(ok, "gcp: input check failed (NaN/Inf or not positive semi-definite)")
        return False
    return not bool(ok)


def check_finite(x: torch.Tensor, name: str = "input") -> None:
    if _skip_value_checks(x):
        return
    if _failed(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(
            f"{name} holds {bad} non-finite (NaN/Inf) entr{'y' if bad == 1 else 'ies'}; "
            "disable this check with gcp.set_finite_checks(False)"
        )


INDEFINITE_RTOL = 1e-3


def indefinite_tolerance(dtype: torch.dtype, d: int) -> float:
    """Relative size ``max(1e-3, √d · ε_dtype)`` of a negative eigenvalue that counts as round-off.

    Rounding ``X`` to ``dtype`` perturbs each eigenvalue by at most ``‖E‖_F <= (ε/2)√d·max|λ|``
    (Weyl), so ``√d·ε`` covers storage in a 16-bit dtype; the floor ``1e-3`` covers the
    accumulation error of a float32 covariance (``Σ`` over ``n`` positions of products).
    """
    return max(INDEFINITE_RTOL, math.sqrt(d) * torch.finfo(dtype).eps)


def check_definite(lam: torch.Tensor, dtype: torch.dtype, name: str = "input") -> None:
    """Refuse matrices that are clearly not positive semi-definite, from their eigenvalues.

    ``lam`` are ascending eigenvalues ``(..., d)`` of matrices given in ``dtype``. A matrix fails
    when ``λ_min < −tol · max|λ|`` with ``tol`` from :func:`indefinite_tolerance`; smaller
    negatives are round-off of a rank-deficient covariance and are accepted.
    """
    if _skip_value_checks(lam):
        return
    tol = indefinite_tolerance(dtype, lam.shape[-1])
    scale = lam.abs().amax(-1)
    bad = lam[..., 0] < -tol * scale
    if _failed(~bad.any()):
        worst = float((lam[..., 0] / scale.clamp_min(torch.finfo(lam.dtype).tiny)).min())
        raise IndefiniteError(
            f"{name}: {int(bad.sum())} of {bad.numel()} matrices are not positive semi-definite "
            f"(most negative eigenvalue {worst:.3g} × max|λ|, tolerance {tol:.1e}); square roots "
            "need symmetric PSD matrices such as covariances"
        )


def check_trace_normalisable(x: torch.Tensor, name: str = "input") -> None:
    """The cheap definiteness check of the matmul-only routes (iSQRT, MPA, MTP).

    A PSD matrix has a non-negative diagonal, and a positive trace unless it is zero. Matrices
    whose diagonal has an entry below ``−tol · max|diag|`` or whose trace is not positive (while
    the matrix is not zero) are refused. Indefinite matrices with a positive diagonal pass: telling
    them apart needs an eigendecomposition, which these routes exist to avoid.
    """
    if _skip_value_checks(x):
        return
    diag = torch.diagonal(x, dim1=-2, dim2=-1)
    tol = indefinite_tolerance(x.dtype, x.shape[-1])
    scale = diag.abs().amax(-1)
    nonzero = x.detach().abs().flatten(-2).amax(-1) > 0
    bad = (diag.amin(-1) < -tol * scale) | ((diag.sum(-1) <= 0) & nonzero)
    if _failed(~bad.any()):
        raise IndefiniteError(
            f"{name}: {int(bad.sum())} of {bad.numel()} matrices have a negative diagonal entry or a "
            "non-positive trace, so they are not positive semi-definite; square roots need "
            "symmetric PSD matrices such as covariances"
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


try:  # the dynamo ONNX exporter's flag, read as a module attribute: a traced read is a guarded constant
    from torch.onnx._internal.exporter import _flags as _onnx_flags
except ImportError:  # a torch whose exporter keeps it elsewhere: torch.onnx.is_in_onnx_export alone
    _onnx_flags = None


def _in_onnx_export() -> bool:
    """Whether an ONNX export is running. ``torch.onnx.is_in_onnx_export()`` alone does not do: under
    the dynamo exporter's strict capture it is traced as an op, not evaluated, so the check would be
    skipped and the export would fail later on an untranslatable ``aten._linalg_eigh``."""
    if _onnx_flags is not None and getattr(_onnx_flags, "_is_onnx_exporting", False):
        return True
    return torch.onnx.is_in_onnx_export()


def check_onnx_exportable(route: str, needs: str) -> None:
    """Refuse, at ONNX export time, a route that needs an operator ONNX lacks, saying what works.

    ONNX (opset ≤ 23) has no eigendecomposition and no Cholesky factorisation; the exporter would
    fail deep inside its translation with a message about an aten op.
    """
    if _in_onnx_export():
        raise ExportError(
            f"{route} needs {needs}, which ONNX does not have. Export with a matmul-only square root: "
            "switch the head first with head.set_method('isqrt', iters=N) or set_method('mtp'), "
            "or use gcp.zoo.export_onnx, which picks N on your own features and reports the difference"
        )
