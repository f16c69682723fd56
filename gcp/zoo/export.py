"""ONNX export of GCP models, including the eigendecomposition (``svd``) ones.

ONNX has no eigendecomposition and no Cholesky factorisation, so a head with ``method='svd'`` (or
``'mpa'``) cannot be exported as it is. :func:`export_onnx` exports a copy whose head computes the
square root with Newton–Schulz iterations (matmuls only), with the fewest iterations that stay
within ``tol`` of the model's own root on the images you give, and reports what it did.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from gcp import ONNX_METHODS, ExportError, GCPHead, covariance, normalize_covariance
from gcp.validators import is_real

from ._gcpnet import GCPNet

NS_ITERS = (5, 8, 10, 12, 15, 20, 25, 30, 40, 50)


@dataclass(frozen=True)
class RootChoice:
    """The matmul-only root chosen for an ``svd`` head, and how far it is from the original."""

    iters: int
    rel_error: float  # max over the images of ‖Y_ns − Y_svd‖_F / ‖Y_svd‖_F
    tol: float
    tried: tuple[tuple[int, float], ...]  # (iters, rel_error) of every candidate measured


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and measured."""

    path: str
    method: str  # the head's method in the exported graph
    root: Optional[RootChoice]  # set when an svd head was replaced by Newton–Schulz
    max_abs_diff: Optional[float]  # onnxruntime vs the exported configuration in eager mode
    max_abs_diff_original: Optional[float]  # onnxruntime vs the model as given

    def summary(self) -> str:
        lines = [f"wrote {self.path} (head method {self.method!r})"]
        if self.root is not None:
            lines.append(
                f"svd square root replaced by {self.root.iters} Newton–Schulz iterations: max relative "
                f"difference {self.root.rel_error:.2e} on the given images (tolerance {self.root.tol:.0e})"
            )
        if self.max_abs_diff is not None:
            lines.append(f"onnxruntime vs eager: max |Δ| {self.max_abs_diff:.2e}; vs the original model "
                         f"{self.max_abs_diff_original:.2e}")
        return "\n".join(lines)


def _head_of(model: nn.Module) -> GCPHead:
    head = getattr(model, "head", None)
    if not isinstance(model, GCPNet) or not isinstance(head, GCPHead):
        raise ExportError(f"export_onnx expects a GCPNet with a GCP head, got {type(model).__name__}")
    return head


def _check_inputs(images: Tensor, tol: float) -> None:
    if not is_real(tol) or not 0 < tol < 1:
        raise ExportError(f"tol must be a number in (0, 1), got {tol!r}")
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ExportError(f"images must be a non-empty (B, C, H, W) batch, got {shape}")
    if not images.is_floating_point():
        raise ExportError(f"images must be a floating-point batch, normalised as the model expects (timm's "
                          f"transforms give float32), got {images.dtype}")


@torch.no_grad()
def choose_matmul_root(model: GCPNet, images: Tensor, tol: float = 1e-3,
                       candidates: Sequence[int] = NS_ITERS) -> RootChoice:
    """Fewest Newton–Schulz iterations whose square root is within ``tol`` (relative Frobenius
    norm, worst image) of the head's eigendecomposition root, on the covariances of ``images``.

    Raises :class:`gcp.ExportError` when the head computes a power other than ½ (Newton–Schulz
    gives square roots only) or when no candidate reaches ``tol``.
    """
    head = _head_of(model)
    _check_inputs(images, tol)
    if head.method != "svd":
        raise ExportError(f"the head's method is {head.method!r}; only 'svd' needs a replacement root")
    options = head.config.options()
    if options.alpha != 0.5:
        raise ExportError(f"the head computes Σ^{options.alpha}; a matmul-only export exists for the square root "
                          "(alpha=0.5) only")
    was_training = model.training
    model.eval()
    try:
        cov = covariance(head.reduce(model.head_input(model.forward_features(images))))
    finally:
        model.train(was_training)
    reference = normalize_covariance(cov, "svd", head.backward, alpha=0.5, eps=options.eps,
                                     **head.config.backward_kwargs())
    ref_norm = torch.linalg.matrix_norm(reference).clamp_min(torch.finfo(reference.dtype).tiny)
    tried = []
    for iters in candidates:
        approx = normalize_covariance(cov, "isqrt", iters=iters)
        err = float((torch.linalg.matrix_norm(approx - reference) / ref_norm).max())
        tried.append((iters, err))
        if err <= tol:
            return RootChoice(iters, err, tol, tuple(tried))
    best = min(tried, key=lambda t: t[1])
    raise ExportError(
        f"no Newton–Schulz root within {tol:g} of the svd root on these images (best: {best[0]} iterations, "
        f"{best[1]:.2e}); raise tol or export with torch.export instead of ONNX")


def export_onnx(model: GCPNet, path: str, images: Tensor, *, tol: float = 1e-3, overwrite: bool = False,
                dynamic_batch: bool = True, verify: bool = True) -> OnnxExport:
    """Export ``model`` (eval mode) to ONNX with ``torch.onnx.export(dynamo=True)``.

    ``images``: a batch of real (or representative) inputs; it is the example input of the
    export, the data on which an ``svd`` head's replacement root is chosen
    (:func:`choose_matmul_root`), and the data of the onnxruntime check (``verify``). The model
    is not modified: a copy is exported. ``mpa`` heads are refused (their Padé denominator needs a
    Cholesky solve); switch them with ``model.set_method('isqrt', iters=...)`` first.

    Example:
        >>> report = gcp.zoo.export_onnx(model, "gcp_resnet50.onnx", images)
        >>> print(report.summary())
    """
    head = _head_of(model)
    _check_inputs(images, tol)
    if os.path.exists(path) and not overwrite:
        raise ExportError(f"{path} exists; pass overwrite=True to replace it")
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as exc:
        raise ExportError("ONNX export needs the [export] extra: pip install 'gcp[export]'") from exc
    root = None
    exported = copy.deepcopy(model).eval()
    if head.method == "svd":
        root = choose_matmul_root(model, images, tol)
        exported.set_method("isqrt", iters=root.iters)
    elif head.method not in ONNX_METHODS:
        raise ExportError(f"method {head.method!r} cannot be exported to ONNX (ONNX runs methods "
                          f"{', '.join(ONNX_METHODS)}, and 'svd' through a Newton–Schulz replacement); switch a "
                          "square-root head with model.set_method('isqrt', iters=N) first")
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        # one self-contained file (every zoo model is far below protobuf's 2 GB limit), renamed whole
        torch.onnx.export(exported, (images,), tmp, dynamo=True, dynamic_shapes=dynamic, external_data=False,
                          verbose=False)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp + ".data"):
            if os.path.exists(leftover):
                os.remove(leftover)
    diff = diff_original = None
    if verify:
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.cpu().numpy()})[0])
        with torch.no_grad():
            want = exported(images).cpu()
            was_training = model.training
            original = model.eval()(images).cpu()
            model.train(was_training)
        diff = float((got - want).abs().max())
        diff_original = float((got - original).abs().max())
    return OnnxExport(path, exported.head.method, root, diff, diff_original)
