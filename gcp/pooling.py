"""The GCP head (``GCPHead``) and the functional pooling it runs (``pool_features``,
``covariance_pool``, ``normalize_covariance``), for every registered head method (:mod:`gcp.methods`)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ._precision import autocast_off, resolve_compute_dtype
from .errors import ExportError, InvalidOptionError, ShapeError
from .head_config import HeadConfig
from .methods import METHODS, SCRIPTABLE_METHODS, MatrixMethod, get_method
from .validators import check_int

_UNSET: Any = object()


def method_buffers(config: HeadConfig, d: int, device: Optional[torch.device] = None) -> tuple[Tensor, ...]:
    """The tensors the method keeps for ``d`` channels (a sketch's hashes; the triangle's index), in
    the order :func:`pool_features` takes them."""
    return tuple(t.to(device) if device is not None else t
                 for t, _ in config.head_method.buffers(d, config.options()).values())


def pool_features(feats: Tensor, config: HeadConfig, buffers: Optional[tuple[Tensor, ...]] = None) -> Tensor:
    """The method's pooled output of ``(B, d, H, W)`` maps or ``(B, d, N)`` sets: ``(B, d, d)``
    matrices (the covariance methods, ``bcnn``) or ``(B, n)`` vectors (``gap``, ``cbp``), in the
    features' dtype. Computed in float32 (float64 for float64 features) with autocast off.

    ``buffers``: the method's tensors (:meth:`gcp.methods.HeadMethod.buffers`), built from the
    configuration when omitted. Refuses fewer positions than the method needs, before any work.
    """
    method = config.head_method
    if not isinstance(feats, Tensor) or feats.dim() not in (3, 4):
        shape = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
        raise ShapeError(f"method {config.method!r} pools (B, d, H, W) maps or (B, d, N) sets; got {shape}")
    positions = feats.shape[2:].numel()
    if positions < method.min_positions:
        # the covariance of one position is the zero matrix, where a square root is not
        # differentiable: the gradient would be Inf/NaN, so refuse before any work
        raise ShapeError(
            f"method {config.method!r} pools over {positions} position(s) (feature maps {tuple(feats.shape[2:])}); "
            f"it needs at least {method.min_positions} positions: the covariance of one position is zero and has no "
            "finite gradient there. Use larger inputs (e.g. a larger --img-size) so the final feature map has more "
            "positions, or a method that needs one (" + ", ".join(
                m for m in METHODS if get_method(m).min_positions <= positions) + ")")
    if buffers is None:
        buffers = method_buffers(config, feats.shape[1], feats.device)
    flat = feats.flatten(2)
    with autocast_off(flat.device):
        flat = flat.to(resolve_compute_dtype(flat.dtype, None, torch.float32))
        pooled = method.pool(flat, config.options(), config.backward, config.backward_kwargs(), buffers)
    return pooled.to(feats.dtype)


def head_representation(feats: Tensor, config: HeadConfig, buffers: Optional[tuple[Tensor, ...]] = None) -> Tensor:
    """``(B, output_size)``: :func:`pool_features`' output as the classifier's input vector (the
    upper triangle of a matrix, a flattened ``bcnn`` matrix, a vector as it is)."""
    if buffers is None:
        buffers = method_buffers(config, feats.shape[1], feats.device)
    return config.head_method.vectorise(pool_features(feats, config, buffers), buffers)


def covariance_pool(x: Tensor, method: str = "svd", backward: Optional[str] = None, **options: Any) -> Tensor:
    r"""Covariance pooling followed by matrix normalisation (the covariance methods).

    .. math::
        \Sigma = X \hat I X^\top \in \mathbb R^{C\times C},\qquad Y = N(\Sigma)

    with ``N`` the method's normalisation: ``Σ^α`` (``svd``, selectable backward), Newton–Schulz
    (``isqrt``), Padé/Taylor (``mpa``/``mtp``), ``log(Σ + εI)`` (``logm``), the top-N root
    (``topn``), the scaling eigen branch (``seb``) or ``Σ`` (``none``).

    Args:
        x: ``(B, C, H, W)`` feature maps or ``(B, C, N)`` feature sets.
        method: a covariance method of :data:`METHODS`.
        backward: backward mode of the methods that take one (default ``"exact"``).
        **options: the method's and the backward mode's options (see :class:`gcp.HeadConfig`).

    Returns:
        ``(B, C, C)`` normalised covariances in the dtype of ``x`` (computed in float32 or float64,
        outside autocast).

    Example:
        >>> y = gcp.covariance_pool(torch.randn(2, 64, 7, 7), method="svd", backward="pade")
        >>> y.shape
        torch.Size([2, 64, 64])
    """
    config = HeadConfig.from_kwargs(method, backward, reduced_dim=None, **options)
    if not isinstance(config.head_method, MatrixMethod):
        raise InvalidOptionError(f"method {method!r} does not normalise a covariance; use gcp.pool_features(x, "
                                 f"HeadConfig({method!r}, ...)) for its pooled output")
    return pool_features(x, config)


def normalize_covariance(cov: Tensor, method: str = "svd", backward: Optional[str] = None, **options: Any) -> Tensor:
    """The covariance methods' normalisation of ``(B, d, d)`` covariances (see :func:`covariance_pool`)."""
    config = HeadConfig.from_kwargs(method, backward, reduced_dim=None, **options)
    if not isinstance(config.head_method, MatrixMethod):
        raise InvalidOptionError(f"method {method!r} does not normalise a covariance")
    return config.head_method.normalise(cov, config.options(), config.backward, config.backward_kwargs())


def _checked_feature_maps(x: Tensor, in_channels: int) -> Tensor:
    """``x`` itself, after checking it is ``(B, in_channels, H, W)``."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ShapeError(f"GCPHead expects (B, {in_channels}, H, W) feature maps; got shape {tuple(x.shape)}")
    return x


# FX symbolic tracing (torchvision's create_feature_extractor, timm's FX helpers) keeps these as
# single calls in the graph: their shape checks and method dispatch read concrete values, which FX
# proxies do not have (the HeadConfig argument is recorded as a constant). They run as they are when
# the traced module runs, so checks, custom backwards and gradients stay those of eager mode.
torch.fx.wrap("_checked_feature_maps")
torch.fx.wrap("head_representation")
torch.fx.wrap("pool_features")


class GCPHead(nn.Module):
    r"""Global covariance pooling head: reduction, pooling by a head method, classifier.

    ``(B, C, H, W)`` → 1×1 conv (no bias) + BN + ReLU to ``reduced_dim`` (``None``: no reduction,
    ``d = C``) → the method (:data:`METHODS`: the covariance's normalised upper triangle,
    ``d(d+1)/2`` values for the covariance methods; ``d`` for ``gap``, ``d²`` for ``bcnn``,
    ``proj_dim`` for ``cbp``) → dropout → linear classifier; as in iSQRT-COV (Li et al., CVPR
    2018) and SVD-Padé (Song et al., ICCV 2021). The pooling runs in float32/float64 even under
    ``torch.autocast``; its output is cast back to the features' dtype.

    The configuration is one :class:`~gcp.HeadConfig` (``head.config``): pass ``config=`` or the
    flat keywords that build it. The method and backward can be switched on a live module with
    :meth:`set_method` without touching parameters (the hybrid protocol relies on it), between
    methods of the same output size.

    Args:
        in_channels: ``C`` of the input feature maps.
        num_classes: classifier outputs; 0 gives the representation.
        reduced_dim, method, backward, drop_rate, **options: see :class:`~gcp.HeadConfig`.
        config: a :class:`~gcp.HeadConfig` instead of the keywords.

    Example:
        >>> head = gcp.GCPHead(2048, 1000, reduced_dim=256, method="isqrt")
        >>> head(torch.randn(2, 2048, 14, 14)).shape
        torch.Size([2, 1000])
        >>> head.set_method("svd", backward="pade")
        >>> gcp.GCPHead(2048, 10, method="gap").num_features
        256
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        reduced_dim: Optional[int] = _UNSET,
        method: str = _UNSET,
        backward: Optional[str] = None,
        drop_rate: float = _UNSET,
        *,
        config: Optional[HeadConfig] = None,
        **options: Any,
    ) -> None:
        super().__init__()
        check_int(in_channels, "GCPHead: in_channels", minimum=1)
        check_int(num_classes, "GCPHead: num_classes", minimum=0)
        if config is not None:
            given = [n for n, v in (("reduced_dim", reduced_dim), ("method", method), ("drop_rate", drop_rate))
                     if v is not _UNSET] + (["backward"] if backward is not None else []) + sorted(options)
            if given:
                raise InvalidOptionError(f"GCPHead: pass either config= or the keywords that build it, not both "
                                         f"(also given: {', '.join(given)})")
            config = HeadConfig.coerce(config)
        else:
            config = HeadConfig.from_kwargs(
                "svd" if method is _UNSET else method, backward, 256 if reduced_dim is _UNSET else reduced_dim,
                0.0 if drop_rate is _UNSET else drop_rate, **options)
        self.in_channels = in_channels
        self.dim = config.reduced_dim if config.reduced_dim is not None else in_channels
        config.head_method.check(self.dim, config.options(), None if config.backward is None else
                                 _mode(config.backward), None)
        self.config = config
        self._buffer_names = ()  # the method's buffers (set_method replaces them)
        self._install_buffers(config)
        self.representation_size = config.output_size(self.dim)
        self.num_features = self.representation_size
        self.num_classes = num_classes
        if config.reduced_dim is None:
            self.reduce: nn.Module = nn.Identity()
        else:
            self.reduce = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, config.reduced_dim, kernel_size=1, bias=False),
                bn=nn.BatchNorm2d(config.reduced_dim),
                act=nn.ReLU(inplace=True),
            ))
            nn.init.kaiming_normal_(self.reduce.conv.weight, mode="fan_out", nonlinearity="relu")
        self.head_drop = nn.Dropout(config.drop_rate)
        self.fc: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    # ------------------------------------------------------------------ the configuration
    @property
    def method(self) -> str:
        return self.config.method

    @property
    def backward(self) -> Optional[str]:
        return self.config.backward

    @property
    def reduced_dim(self) -> Optional[int]:
        return self.config.reduced_dim

    @property
    def drop_rate(self) -> float:
        return self.config.drop_rate

    def _install_buffers(self, config: HeadConfig) -> None:
        device = next((t.device for t in [*self.parameters(), *self.buffers()]), None)
        for name in self._buffer_names:
            delattr(self, name)
        built = config.head_method.buffers(self.dim, config.options())
        for name, (tensor, persistent) in built.items():
            self.register_buffer(name, tensor.to(device) if device is not None else tensor, persistent=persistent)
        self._buffer_names = tuple(built)

    def set_method(self, method: Optional[str] = None, backward: Optional[str] = None, **options: Any) -> None:
        """Switch the method and backward in place; ``None`` keeps them. The options replace the
        previous ones, which are kept only when neither the method, the backward nor the options
        change. The new configuration is validated (and its output size compared) before it is
        applied, so a bad switch raises and leaves the head unchanged.
        """
        new = self.config.switched(method, backward, **options)
        new.head_method.check(self.dim, new.options(), None if new.backward is None else _mode(new.backward), None)
        size = new.output_size(self.dim)
        if size != self.representation_size:
            raise InvalidOptionError(
                f"cannot switch the head from {self.config.label()} ({self.representation_size} features) to "
                f"{new.label()} ({size} features) in place: the classifier reads {self.representation_size}; "
                "build a new head (or model) for that method")
        if new != self.config:
            self._install_buffers(new)
            self.config = new

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, {self.config.label()}, reduced_dim={self.reduced_dim}"

    # ------------------------------------------------------------------ forward
    def _method_buffers(self) -> tuple[Tensor, ...]:
        return tuple(getattr(self, n) for n in self._buffer_names)

    @torch.jit.unused
    def pool(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` → the method's pooled output (``(B, d, d)`` matrices for the covariance
        methods and ``bcnn``, ``(B, n)`` for ``gap`` and ``cbp``), in the dtype of the features."""
        feats = self.reduce(_checked_feature_maps(x, self.in_channels))
        return pool_features(feats, self.config, self._method_buffers())

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        feats = self.reduce(_checked_feature_maps(x, self.in_channels))
        rep = self.head_drop(head_representation(feats, self.config, self._method_buffers()))
        return rep if pre_logits else self.fc(rep)

    def __prepare_scriptable__(self) -> nn.Module:
        # called by torch.jit.script before compiling: the head in code TorchScript compiles
        # (forward only: gradients of a scripted head are autograd's, not the backward mode's)
        method = self.config.head_method
        if method.script_module is None:
            raise ExportError(
                f"GCPHead(method={self.method!r}) cannot be scripted: TorchScript runs methods "
                f"{', '.join(SCRIPTABLE_METHODS)}. Use torch.export / torch.compile, or switch first "
                "with head.set_method('isqrt')"
            )
        return ScriptedGCPHead(self)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: identity), on the
        device, in the dtype and in the train/eval mode of the head (its parameters: the reduction's,
        or the old classifier's)."""
        self.num_classes = num_classes
        like = next(self.parameters(), None)
        place = dict(device=like.device, dtype=like.dtype) if like is not None else {}
        fc = nn.Linear(self.num_features, num_classes, **place) if num_classes > 0 else nn.Identity()
        self.fc = fc.train(self.training)  # a model in eval mode stays in eval mode


def _mode(name: str) -> Any:
    from .backward import get_backward

    return get_backward(name)


class ScriptedGCPHead(nn.Module):
    """What ``torch.jit.script`` compiles for a :class:`GCPHead`: its reduction, dropout and
    classifier (shared) around the method's TorchScript module. ``cls_token`` (``(B, C)``), when
    given, leads the representation (the So-ViT head)."""

    def __init__(self, head: GCPHead) -> None:
        super().__init__()
        config = head.config
        device = next((t.device for t in [*head.parameters(), *head.buffers()]), torch.device("cpu"))
        self.in_channels = head.in_channels
        self.reduce = head.reduce
        self.method = config.head_method.script_module(head.dim, config.options()).to(device)
        self.head_drop = head.head_drop
        self.fc = head.fc

    def forward(self, x: Tensor, pre_logits: bool = False, cls_token: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise RuntimeError("GCPHead expects (B, in_channels, H, W) feature maps")
        rep = self.head_drop(self.method(self.reduce(x)))
        if cls_token is not None:
            rep = torch.cat([cls_token.to(rep.dtype), rep], dim=-1)
        return rep if pre_logits else self.fc(rep)
