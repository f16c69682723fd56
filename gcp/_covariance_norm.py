"""Shared machinery of the normalisation layers that act through a batch covariance.

Both ZCA whitening and PCA denoising map centred features ``x − μ`` by a ``d × d`` matrix
``T(Σ)`` computed from the covariance ``Σ`` of each channel group:

    y = T(Σ) (x − μ)        (then a per-channel affine, as in batch normalisation).

Training mode uses the batch statistics (gradients flow through ``T``); eval mode uses running
statistics. We keep the running **covariance** (and mean), not a running ``T``: the average of
covariances is a consistent estimate of the population covariance, whereas an average of
whitening matrices (``E[Σ^{-1/2}] ≠ E[Σ]^{-1/2}``) is biased. ``T(running Σ)`` is computed once
when first needed in eval mode and cached until the running statistics change.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ._precision import autocast_off
from .covariance import centred_moments
from .errors import InvalidOptionError, ShapeError
from .validators import check_int, is_int


def grouped_features(x: Tensor, groups: int) -> Tensor:
    """``(N, C, *)`` → ``(G, C/G, N·∏*)``: each channel group's samples as columns."""
    n, c = x.shape[:2]
    m = x.shape[2:].numel()  # explicit sizes: an empty batch has no -1 to infer
    return x.reshape(n, groups, c // groups, m).permute(1, 2, 0, 3).reshape(groups, c // groups, n * m)


def ungroup(y: Tensor, like: Tensor) -> Tensor:
    """Inverse of :func:`grouped_features` for a tensor shaped like ``like``."""
    n, c = like.shape[:2]
    g, d = y.shape[:2]
    return y.reshape(g, d, n, like.shape[2:].numel()).permute(2, 0, 1, 3).reshape(like.shape)


def check_features(x: Tensor, num_features: int, layer: str) -> None:
    if x.dim() < 2 or x.shape[1] != num_features:
        raise ShapeError(f"{layer} expects (N, {num_features}, ...) features; got shape {tuple(x.shape)}")
    if x.shape[0] * x.shape[2:].numel() < 2:
        raise ShapeError(f"{layer} needs at least 2 samples per channel in training mode; got shape {tuple(x.shape)}")


class CovarianceNorm(nn.Module):
    """Base class: subclasses define ``transform(cov) -> T`` for ``(G, d, d)`` covariances."""

    def __init__(self, num_features: int, groups: int, eps: float, momentum: Optional[float], affine: bool) -> None:
        super().__init__()
        check_int(num_features, "num_features", minimum=1)
        if not is_int(groups) or groups < 1 or num_features % groups:
            raise InvalidOptionError(
                f"groups must be a positive divisor of num_features={num_features}, got {groups!r}"
            )
        if not eps > 0:
            raise InvalidOptionError(f"eps must be positive, got {eps!r}")
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise InvalidOptionError(f"momentum must be in (0, 1] or None, got {momentum!r}")
        self.num_features = num_features
        self.groups = groups
        self.group_dim = num_features // groups
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        d = self.group_dim
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_cov", torch.eye(d).repeat(groups, 1, 1))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.register_buffer("_eval_transform", None, persistent=False)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def transform(self, cov: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"{self.num_features}, groups={self.groups}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}")

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_cov.copy_(torch.eye(self.group_dim).expand_as(self.running_cov))
        self.num_batches_tracked.zero_()
        self._eval_transform = None

    def _load_from_state_dict(self, *args, **kwargs):  # type: ignore[override]
        self._eval_transform = None  # new running statistics: recompute T on next eval forward
        super()._load_from_state_dict(*args, **kwargs)

    def _update_running(self, mean: Tensor, cov: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.reshape(-1).to(self.running_mean.dtype), m)
        self.running_cov.lerp_(cov.to(self.running_cov.dtype), m)
        self._eval_transform = None

    def forward(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ShapeError(f"{name} expects (N, {self.num_features}, ...) features; got shape {tuple(x.shape)}")
        with autocast_off(x.device):
            y = self._normalise(x, name)
        if self.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def _normalise(self, x: Tensor, name: str) -> Tensor:
        feats = grouped_features(x, self.groups)
        if self.training:
            check_features(x, self.num_features, name)
            mean, centred, cov = centred_moments(feats)
            t = self.transform(cov)
            with torch.no_grad():
                self._update_running(mean.detach(), cov.detach())
        else:
            t = self._eval_transform
            if t is None:
                with torch.no_grad():
                    t = self.transform(self.running_cov)
                # a shape check on the meta device (gcp.zoo.check_input_size) computes nothing to keep:
                # caching its stand-in would leave a meta buffer in the model
                if not t.is_meta:
                    self._eval_transform = t
            centred = feats.to(t.dtype) - self.running_mean.view(self.groups, self.group_dim, 1).to(t.dtype)
        return apply_transform(t, centred, x)


def apply_transform(t: Tensor, centred: Tensor, like: Tensor) -> Tensor:
    """``T (x − μ)`` in the dtype of ``T``, ungrouped and cast back to ``like``'s dtype."""
    return ungroup(t @ centred.to(t.dtype), like).to(like.dtype)
