"""Global covariance pooling: the functional ``covariance_pool`` and the ``GCPHead`` module."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .approximants import mpa_sqrtm, mtp_sqrtm
from .covariance import covariance, triu_index
from .errors import ExportError, InvalidOptionError, ShapeError
from .newton_schulz import isqrtm, ns_power
from .spectral import DEFAULT_EPS, eigh_power_forward, powm
from .validators import check_int

METHODS: tuple[str, ...] = ("svd", "isqrt", "mpa", "mtp", "none")
# methods whose forward a scripted GCPHead can run (TorchScript compiles no autograd Function,
# and MPA/MTP keep their coefficients in Python)
SCRIPTABLE_METHODS: tuple[str, ...] = ("svd", "isqrt", "none")


def normalize_covariance(
    cov: Tensor,
    method: str = "svd",
    backward: str = "exact",
    *,
    iters: int = 5,
    alpha: float = 0.5,
    eps: float = DEFAULT_EPS,
    **opts: Any,
) -> Tensor:
    """Matrix normalisation of ``(B, d, d)`` covariances by ``method`` (see :func:`covariance_pool`).

    ``iters``: Newton–Schulz iterations of ``"isqrt"``; ``alpha``: matrix power of ``"svd"``
    (0.5 = square root); ``eps``: relative eigenvalue floor of ``"svd"``; ``**opts``: options of the
    backward mode (svd) or of ``mpa_sqrtm``/``mtp_sqrtm``.
    """
    if method not in METHODS:
        raise InvalidOptionError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if method != "svd" and alpha != 0.5:
        raise InvalidOptionError(
            f"method {method!r} computes the square root only (alpha=0.5); use method='svd' for alpha={alpha}"
        )
    if method == "svd":
        return powm(cov, alpha, backward, eps=eps, **opts)
    if method == "isqrt":
        if opts:
            raise InvalidOptionError(f"method 'isqrt' takes no option(s) {', '.join(sorted(opts))}")
        return isqrtm(cov, iters)
    if method == "mpa":
        return mpa_sqrtm(cov, **opts)
    if method == "mtp":
        return mtp_sqrtm(cov, **opts)
    if opts:
        raise InvalidOptionError(f"method 'none' takes no option(s) {', '.join(sorted(opts))}")
    return cov


def covariance_pool(x: Tensor, method: str = "svd", backward: str = "exact", **kwargs: Any) -> Tensor:
    r"""Covariance pooling followed by matrix normalisation.

    .. math::
        \Sigma = X \hat I X^\top \in \mathbb R^{C\times C},\qquad
        Y = \begin{cases}
        \Sigma^{\alpha} & \text{svd (eigh forward, selectable backward)}\\
        \text{Newton–Schulz } \Sigma^{1/2} & \text{isqrt (iSQRT-COV, ``iters`` steps)}\\
        \text{Padé / Taylor } \Sigma^{1/2} & \text{mpa / mtp (Lyapunov backward)}\\
        \Sigma & \text{none}
        \end{cases}

    Args:
        x: ``(B, C, H, W)`` feature maps or ``(B, C, N)`` feature sets.
        method: one of :data:`METHODS`.
        backward: backward mode of ``method="svd"`` (one of :data:`gcp.BACKWARDS`).
        **kwargs: ``iters`` (5), ``alpha`` (0.5), ``eps`` (1e-10) and the options of the backward mode
            (svd) or of ``mpa_sqrtm``/``mtp_sqrtm``, as in :func:`normalize_covariance`.

    Returns:
        ``(B, C, C)`` normalised covariances in float32 (float64 for float64 input), computed
        outside autocast.

    Example:
        >>> y = gcp.covariance_pool(torch.randn(2, 64, 7, 7), method="svd", backward="pade")
        >>> y.shape
        torch.Size([2, 64, 64])
    """
    positions = x.shape[2:].numel() if isinstance(x, Tensor) and x.dim() >= 3 else None
    if positions is not None and positions < 2 and method in ("svd", "mpa", "mtp"):
        # the covariance of one position is the zero matrix, where a square root is not
        # differentiable: the gradient would be Inf/NaN, so refuse before any work
        raise ShapeError(
            f"covariance pooling over {positions} position(s) (feature maps {tuple(x.shape[2:])}): the "
            f"covariance is zero and method={method!r} has no finite gradient there; use larger inputs "
            "(e.g. a larger --img-size) so the final feature map has at least 2 positions, or method='isqrt'")
    return normalize_covariance(covariance(x), method, backward, **kwargs)


def _checked_feature_maps(x: Tensor, in_channels: int) -> Tensor:
    """``x`` itself, after checking it is ``(B, in_channels, H, W)``."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ShapeError(f"GCPHead expects (B, {in_channels}, H, W) feature maps; got shape {tuple(x.shape)}")
    return x


# FX symbolic tracing (torchvision's create_feature_extractor, timm's FX helpers) keeps these two
# as single calls in the graph: their shape check and their method dispatch read concrete values,
# which FX proxies do not have. They run as they are when the traced module runs, so checks,
# custom backwards and gradients stay those of eager mode.
torch.fx.wrap("_checked_feature_maps")
torch.fx.wrap("covariance_pool")


class GCPHead(nn.Module):
    r"""Global covariance pooling head: reduction, covariance pooling, normalisation, classifier.

    ``(B, C, H, W)`` → 1×1 conv (no bias) + BN + ReLU to ``reduced_dim`` (``None``: no reduction,
    ``d = C``) → :func:`covariance_pool` → upper triangle ``d(d+1)/2`` (32896 for d = 256) →
    dropout → linear classifier; as in iSQRT-COV (Li et al., CVPR 2018) and SVD-Padé
    (Song et al., ICCV 2021). The covariance and the matrix function run in float32/float64
    even under ``torch.autocast``; the normalised matrix is cast back to the features' dtype.

    ``method``/``backward`` (and their options) can be changed on a live module with
    :meth:`set_method`, without touching parameters — the hybrid protocol (Newton–Schulz until
    the last learning-rate stage, then SVD) relies on it.

    Args:
        in_channels: ``C`` of the input feature maps.
        num_classes: classifier outputs; 0 gives the pooled representation.
        reduced_dim: channels after the 1×1 reduction, or ``None`` to skip it.
        method, backward, iters, alpha, eps, **opts: see :func:`covariance_pool`.
        drop_rate: dropout before the classifier.

    Example:
        >>> head = gcp.GCPHead(2048, 1000, reduced_dim=256, method="isqrt")
        >>> head(torch.randn(2, 2048, 14, 14)).shape
        torch.Size([2, 1000])
        >>> head.set_method("svd", backward="pade")
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        reduced_dim: Optional[int] = 256,
        method: str = "svd",
        backward: str = "exact",
        iters: int = 5,
        alpha: float = 0.5,
        eps: float = DEFAULT_EPS,
        drop_rate: float = 0.0,
        **opts: Any,
    ) -> None:
        super().__init__()
        check_int(in_channels, "GCPHead: in_channels", minimum=1)
        check_int(num_classes, "GCPHead: num_classes", minimum=0)
        if reduced_dim is not None:
            check_int(reduced_dim, "GCPHead: reduced_dim", minimum=1, requirement="an integer >= 1 or None")
        if not 0.0 <= drop_rate < 1.0:
            raise InvalidOptionError(f"GCPHead: drop_rate must be in [0, 1), got {drop_rate!r}")
        self.in_channels = in_channels
        self.reduced_dim = reduced_dim
        self.dim = reduced_dim if reduced_dim is not None else in_channels
        self.num_features = self.dim * (self.dim + 1) // 2
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.method, self.backward, self.iters, self.alpha, self.eps, self.opts = "svd", "exact", 5, 0.5, eps, {}
        self.set_method(method, backward, iters=iters, alpha=alpha, eps=eps, **opts)
        if reduced_dim is None:
            self.reduce: nn.Module = nn.Identity()
        else:
            self.reduce = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, reduced_dim, kernel_size=1, bias=False),
                bn=nn.BatchNorm2d(reduced_dim),
                act=nn.ReLU(inplace=True),
            ))
            nn.init.kaiming_normal_(self.reduce.conv.weight, mode="fan_out", nonlinearity="relu")
        self.head_drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        # the upper triangle is a gather by a fixed index (not part of the state dict): every
        # tracer and exporter, TorchScript and ONNX included, handles index_select
        self.register_buffer("triu_index", triu_index(self.dim), persistent=False)

    def set_method(
        self,
        method: Optional[str] = None,
        backward: Optional[str] = None,
        *,
        iters: Optional[int] = None,
        alpha: Optional[float] = None,
        eps: Optional[float] = None,
        **opts: Any,
    ) -> None:
        """Switch the normalisation in place; arguments left ``None`` keep their value.

        Mode options (``**opts``) replace the previous ones; they are reset when ``method`` or
        ``backward`` changes and none are given. The new configuration is validated on a tiny
        matrix before it is applied, so a bad switch raises and leaves the head unchanged.
        """
        method = self.method if method is None else method
        backward = self.backward if backward is None else backward
        if not opts and method == self.method and backward == self.backward:
            opts = dict(self.opts)
        config = dict(
            method=method,
            backward=backward,
            iters=self.iters if iters is None else iters,
            alpha=self.alpha if alpha is None else alpha,
            eps=self.eps if eps is None else eps,
        )
        probe = torch.eye(2, dtype=torch.float64, device="cpu").unsqueeze(0)
        normalize_covariance(probe, config.pop("method"), config.pop("backward"), **config, **opts)
        self.method, self.backward = method, backward
        self.iters = config["iters"]
        self.alpha = config["alpha"]
        self.eps = config["eps"]
        self.opts = dict(opts)

    def extra_repr(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.opts.items())
        return (f"in_channels={self.in_channels}, reduced_dim={self.reduced_dim}, method={self.method!r}, "
                f"backward={self.backward!r}, iters={self.iters}, alpha={self.alpha}{extra}")

    @torch.jit.unused
    def pool(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` → normalised ``(B, d, d)`` matrices, in the dtype of the features."""
        feats = self.reduce(_checked_feature_maps(x, self.in_channels))
        y = covariance_pool(feats, self.method, self.backward, iters=self.iters, alpha=self.alpha,
                            eps=self.eps, **self.opts)
        return y.to(feats.dtype)

    def _scripted_pool(self, x: Tensor) -> Tensor:
        """What :meth:`pool` computes, in code TorchScript compiles (forward only: gradients of a
        scripted head are autograd's, not the selected backward mode's)."""
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise RuntimeError("GCPHead expects (B, in_channels, H, W) feature maps")
        feats = self.reduce(x)
        flat = feats.flatten(2)
        if flat.dtype != torch.float64:
            flat = flat.to(torch.float32)
        centred = flat - flat.mean(-1, keepdim=True)
        cov = centred @ centred.transpose(-1, -2) / flat.size(-1)
        if self.method == "isqrt":
            y = ns_power(0.5 * (cov + cov.transpose(-1, -2)), self.iters)
        elif self.method == "svd":
            y = eigh_power_forward(cov, self.alpha, self.eps)
        elif self.method == "none":
            y = cov
        else:
            raise RuntimeError("this GCPHead method has no TorchScript path")
        return y.to(feats.dtype)

    def __prepare_scriptable__(self) -> "GCPHead":
        # called by torch.jit.script before compiling: refuse what the scripted path cannot run
        if self.method not in SCRIPTABLE_METHODS:
            raise ExportError(
                f"GCPHead(method={self.method!r}) cannot be scripted: TorchScript runs methods "
                f"{', '.join(SCRIPTABLE_METHODS)}. Use torch.export / torch.compile, or switch first "
                "with head.set_method('isqrt')"
            )
        return self

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        y = self._scripted_pool(x) if torch.jit.is_scripting() else self.pool(x)
        rep = self.head_drop(y.flatten(-2).index_select(-1, self.triu_index))
        return rep if pre_logits else self.fc(rep)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
