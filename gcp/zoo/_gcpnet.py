"""``GCPNet``: any timm backbone followed by a :class:`gcp.GCPHead`, in timm's model contract."""

# no ``from __future__ import annotations`` here: torch.fx re-emits forward's annotations, and
# TorchScript cannot read a postponed (string) one ("Unknown type name '_Tensor_'")
import re
from typing import Any, Callable, Mapping, Optional, Union

import torch
from timm.layers import register_notrace_module
from torch import Tensor, nn

from gcp import GCPHead, HeadConfig, InvalidOptionError, ShapeError
from gcp.head_config import flat_option_names
from gcp.validators import check_int, split_top_level

from .errors import StateDictMismatchError
from .io import describe_mismatch

# timm's global_pool values that GCPNet understands: the GCP head is the model's pooling
POOLS = ("gcp", "")


class NoPool(nn.Module):
    """The head of a GCPNet built or reset with ``global_pool=''``: features pass unpooled."""

    num_classes: int = 0

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x


def _prefix_pattern(pattern: str, prefix: str) -> str:
    """Anchor each top-level alternative of a timm group regex at ``prefix``.

    timm matches with ``re.match`` and writes patterns such as ``'^conv1|bn1|maxpool'`` (three
    alternatives, each meant at the start); ``'^backbone\\.(?:conv1|bn1|maxpool)'`` keeps that
    meaning for the backbone's parameters and keeps the numeric capturing groups timm sorts by.
    """
    parts = split_top_level(pattern, "|", "()")
    return f"^{re.escape(prefix)}(?:" + "|".join(p[1:] if p.startswith("^") else p for p in parts) + ")"


def _check_pool(global_pool: Optional[str]) -> None:
    if global_pool is not None and global_pool not in POOLS:
        raise InvalidOptionError(
            f"global_pool={global_pool!r}: a GCP model pools by covariance; valid values are "
            "'gcp' (the GCP head) and '' (no pooling: forward returns the backbone's feature maps)"
        )


class SoViTHead(GCPHead):
    r"""The So-ViT head (Xie et al., "So-ViT: Mind Visual Tokens for Vision Transformer"): the class
    token and the normalised covariance of the patch tokens, classified together.

    .. math:: \text{logits} = W_c\, t_{\text{cls}} + W_v\, \operatorname{vec}(N(\Sigma_{\text{patches}})) + b

    The paper sums a classifier of the class token and one of the covariance; one linear layer on
    their concatenation is that sum (with one bias), so ``pre_logits`` is the concatenation
    (``in_channels + d(d+1)/2`` features) and ``reset_classifier`` works as for any timm head.
    The patch tokens arrive as ``(B, C, N, 1)`` maps; the class token as ``(B, C)``.
    """

    def __init__(self, in_channels: int, num_classes: int, **head_args: Any) -> None:
        super().__init__(in_channels, 0, **head_args)
        self.num_features = in_channels + self.num_features
        self.reset_classifier(num_classes)

    def forward(self, x: Tensor, pre_logits: bool = False, cls_token: Optional[Tensor] = None) -> Tensor:
        if cls_token is None or cls_token.dim() != 2 or cls_token.shape[-1] != self.in_channels:
            raise ShapeError(f"SoViTHead needs the class token as (B, {self.in_channels}), got "
                             f"{None if cls_token is None else tuple(cls_token.shape)}")
        cov = super().forward(x, pre_logits=True)
        rep = torch.cat([cls_token.to(cov.dtype), cov], dim=-1)
        return rep if pre_logits else self.fc(rep)


def feature_layout(backbone: nn.Module) -> tuple[bool, int]:
    """How a timm backbone's ``forward_features`` lays out its output: whether a 4-d output is
    channels-last (timm's ``output_fmt='NHWC'``: Swin, MambaOut, …), and how many prefix tokens
    (class, distillation, register: timm's ``num_prefix_tokens``) lead a 3-d ``(B, N, C)`` one."""
    fmt = getattr(backbone, "output_fmt", "NCHW")
    nhwc = str(getattr(fmt, "value", fmt)).upper() == "NHWC"
    prefix = getattr(backbone, "num_prefix_tokens", 0)
    return nhwc, int(prefix) if isinstance(prefix, int) else 0


def as_feature_maps(x: Tensor, nhwc: bool, prefix_tokens: int) -> Tensor:
    """``forward_features``' output as ``(B, C, H, W)`` maps: NCHW as it is, NHWC permuted, tokens
    ``(B, N, C)`` without their ``prefix_tokens`` as ``(B, C, N, 1)``."""
    if x.dim() == 3:
        if x.size(1) - prefix_tokens < 2:
            raise ShapeError(f"a covariance needs at least 2 patch tokens; the backbone gave {x.size(1)} token(s), "
                             f"{prefix_tokens} of them prefix tokens")
        return x[:, prefix_tokens:].transpose(1, 2).unsqueeze(-1)
    if x.dim() == 4:
        return x.permute(0, 3, 1, 2) if nhwc else x
    raise ShapeError(f"a GCP head pools (B, C, H, W) / (B, H, W, C) maps or (B, N, C) tokens; the backbone gave "
                     f"a {x.dim()}-d tensor")


# a leaf of FX graphs (torchvision's create_feature_extractor, timm's FX helpers): its branches
# depend on the rank of a traced tensor
torch.fx.wrap("as_feature_maps")

# timm's FX tracer (its feature extractor, its FX + TorchScript model test) keeps a GCP head whole:
# TorchScript then compiles the head as ScriptedGCPHead (GCPHead.__prepare_scriptable__), which it
# cannot do with the head's traced internals (they take the HeadConfig as a constant)
register_notrace_module(GCPHead)
register_notrace_module(SoViTHead)


class GCPNet(nn.Module):
    """A timm backbone (``forward_features`` → ``(B, C, H, W)``) and a GCP head, in timm's contract.

    As for timm's models: ``num_features`` is the channel count ``C`` of ``forward_features``;
    ``head_hidden_size`` is the width of ``forward_head(x, pre_logits=True)``, the GCP
    representation ``d(d+1)/2``; the GCP head is the model's global pool, so
    ``reset_classifier(0, global_pool='')`` (or ``create_model(..., num_classes=0,
    global_pool='')``) gives the unpooled feature maps and ``reset_classifier(n, 'gcp')`` brings
    a fresh head back. ``feature_info``, ``forward_intermediates``,
    ``prune_intermediate_layers``, ``set_grad_checkpointing`` and ``group_matcher`` delegate to
    the backbone (so ``features_only=True``, FX feature extraction and layer-wise lr decay work).
    ``arch_args`` records how the model was built, for :func:`gcp.zoo.save_pretrained`.

    Example:
        >>> backbone = timm.create_model("resnet18", num_classes=0, global_pool="")
        >>> model = zoo.GCPNet(backbone, gcp.GCPHead(backbone.num_features, 10, reduced_dim=64))
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    # properties that read Python state; TorchScript compiles forward only
    __jit_unused_properties__ = ["num_features", "head_hidden_size", "num_classes", "feature_info", "arch_args",
                                "_model_args", "global_pool", "head_config"]
    # constants to TorchScript, so it compiles only the branch of this backbone's layout
    __constants__ = ["_nhwc", "_prefix_tokens", "_sovit"]

    def __init__(self, backbone: nn.Module, head: Union[GCPHead, NoPool],
                 arch_args: Optional[dict[str, Any]] = None, head_config: Optional[HeadConfig] = None,
                 sovit: bool = False) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_features"):
            raise InvalidOptionError(f"backbone {type(backbone).__name__} has no forward_features()")
        if isinstance(head, GCPHead) and head.in_channels != getattr(backbone, "num_features", head.in_channels):
            raise ShapeError(
                f"head expects {head.in_channels} channels but the backbone gives {backbone.num_features}"
            )
        self.backbone = backbone
        self.head = head
        self._pools = not isinstance(head, NoPool)  # forward_head reads this flag: TorchScript knows no NoPool
        self._nhwc, self._prefix_tokens = feature_layout(backbone)
        if isinstance(getattr(backbone, "feature_dim", None), int):
            # timm's record of the channel axis of forward_features' output (channels-last models)
            self.feature_dim = int(backbone.feature_dim)
        # timm's record of the layout forward_features returns (its config tests read it): the
        # backbone's own where it keeps one (NHWC maps: Swin, MambaOut)
        self.output_fmt = str(getattr(getattr(backbone, "output_fmt", "NCHW"), "value",
                                      getattr(backbone, "output_fmt", "NCHW")))
        self._sovit = isinstance(head, SoViTHead) or bool(sovit)
        if self._sovit and (self._prefix_tokens < 1 or getattr(backbone, "cls_token", None) is None):
            raise InvalidOptionError(
                f"sovit=True needs a backbone with a class token; {type(backbone).__name__} has "
                f"{self._prefix_tokens} prefix token(s) and no cls_token")
        self._arch_args = dict(arch_args or {})
        # timm's attribute for the image channels the model takes (its config tests and tools read it)
        self.in_chans = int(self._arch_args.get("in_chans", getattr(backbone, "in_chans", 3)))
        # the head's configuration when no GCP head is attached (global_pool=''): what
        # reset_classifier(n, 'gcp') rebuilds
        self._head_config = head.config if isinstance(head, GCPHead) else head_config
        self._factory_args = {}  # timm sets it through _model_args
        self.pretrained_cfg: dict[str, Any] = dict(getattr(backbone, "pretrained_cfg", {}) or {})
        self.grad_checkpointing = False

    # -- how the model was built, as it is now ----------------------------------------------
    @property
    def head_config(self) -> Optional[HeadConfig]:
        """The GCP head's configuration (kept while the head is removed with ``global_pool=''``)."""
        return self.head.config if isinstance(self.head, GCPHead) else self._head_config

    def _as_the_head_is_now(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """``recorded`` build arguments with the head as it is now (``set_method`` on the model or
        on its head): its flat head options replaced by the one nested ``head`` configuration."""
        live = self.head_config
        if live is None or not recorded:  # a model built by hand records nothing to rebuild it from
            return dict(recorded)
        args = {k: v for k, v in recorded.items() if k not in HEAD_ARGS}
        args["head"] = live.to_dict()
        return args

    @property
    def arch_args(self) -> dict[str, Any]:
        """How the model was built (``architecture``, ``backbone``, ``in_chans``, ``head``: the head's
        configuration as :meth:`gcp.HeadConfig.to_dict` gives it), with the head as it is now: a
        saved model rebuilds the head it has, not the one it was created with."""
        return self._as_the_head_is_now(self._arch_args)

    @property
    def _model_args(self) -> dict[str, Any]:
        """timm's record of the ``create_model`` arguments (set by its factory and read by
        ``save_for_hf``), with the head the model has now."""
        args = self._as_the_head_is_now(self._factory_args)
        if "cov_norm" in self._arch_args:  # the ZCA/PCA layer with the path it replaced
            args["cov_norm"] = dict(self._arch_args["cov_norm"])
        return args

    @_model_args.setter
    def _model_args(self, value: dict[str, Any]) -> None:
        self._factory_args = dict(value)

    # -- timm attributes ---------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return int(self.backbone.num_features)

    @property
    def head_hidden_size(self) -> int:
        return self.head.num_features if isinstance(self.head, GCPHead) else self.num_features

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def global_pool(self) -> str:
        return "gcp" if isinstance(self.head, GCPHead) else ""

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return [dict(info, module=f"backbone.{info['module']}") for info in self.backbone.feature_info]

    # -- forward -----------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting():  # TorchScript skips this block
            if isinstance(x, torch.fx.Proxy):  # torch.fx is tracing this forward
                return _traced_features(self.backbone, x)
        return self.backbone.forward_features(x)

    @torch.jit.unused
    def head_input(self, features: Tensor) -> Tensor:
        """``forward_features``' output as the ``(B, C, H, W)`` maps the GCP head pools: NCHW as it
        is, NHWC permuted, tokens without their prefix tokens as ``(B, C, N, 1)``."""
        return as_feature_maps(features, self._nhwc, self._prefix_tokens)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """The GCP head on ``forward_features``' output in the backbone's own layout: NCHW maps as
        they are, NHWC maps permuted, tokens ``(B, N, C)`` without their prefix tokens as
        ``(B, C, N, 1)`` maps (the covariance is over the patch tokens only; with So-ViT the class
        token joins it)."""
        if not self._pools:
            return x
        maps = as_feature_maps(x, self._nhwc, self._prefix_tokens)
        if self._sovit:
            return self.head(maps, pre_logits=pre_logits, cls_token=x[:, 0])
        return self.head(maps, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: Tensor,
        indices: Optional[Union[int, list[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[list[Tensor], tuple[Tensor, list[Tensor]]]:
        """The backbone's ``forward_intermediates`` (timm's signature); the final features are
        those of :meth:`forward_features`, before the GCP head."""
        return self.backbone.forward_intermediates(
            x, indices=indices, norm=norm, stop_early=stop_early, output_fmt=output_fmt,
            intermediates_only=intermediates_only,
        )

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: Union[int, list[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Cut the backbone after the last kept tap; the GCP head goes too when ``prune_head`` or
        when the features it was built for are gone."""
        take = self.backbone.prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=True)
        head_in = self.head.in_channels if isinstance(self.head, GCPHead) else None
        if prune_head or head_in != self.num_features:
            self.reset_classifier(0, "")
        return take

    # -- weights ---------------------------------------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """torch's ``load_state_dict``, with a mismatch refused before any tensor is copied, by a
        :class:`~gcp.zoo.StateDictMismatchError` (a ``RuntimeError`` too) that lists the keys and
        names the head option behind them, e.g. the ``reduced_dim`` a checkpoint was trained
        with. timm's ``load_checkpoint`` and ``create_model(checkpoint_path=...)`` come here."""
        problems = describe_mismatch(self.state_dict(), state_dict, strict=strict)
        if problems:
            name = self.arch_args.get("architecture", type(self).__name__)
            raise StateDictMismatchError(f"the state dict does not fit this {name}: " + "; ".join(problems))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- classifier --------------------------------------------------------------------------
    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.get_classifier() if isinstance(self.head, GCPHead) else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Fresh classifier with ``num_classes`` outputs (0: the model returns the representation).

        ``global_pool``: ``None`` keeps the pooling (a model without its head that is given classes
        gets its GCP head back: it is the only classifier a GCP model has); ``''`` removes the GCP
        head (the model then returns the backbone's feature maps, and ``num_classes`` must be 0);
        ``'gcp'`` keeps the head, or builds a fresh one after a ``''``. The new layers are placed on
        the device and in the dtype of the model's parameters.
        """
        _check_pool(global_pool)
        check_int(num_classes, "num_classes", minimum=0)
        pool = self.global_pool if global_pool is None else global_pool
        if global_pool is None and pool == "" and num_classes:
            pool = "gcp"
        if pool == "":
            if num_classes:
                raise InvalidOptionError(
                    f"num_classes={num_classes} needs the GCP head; pass global_pool='gcp' to bring it back")
            if isinstance(self.head, GCPHead):  # the configuration it has now, for a later 'gcp'
                self._head_config = self.head.config
            self.head = NoPool().train(self.training)
            self._pools = False
            return
        if not isinstance(self.head, GCPHead):
            if self._head_config is None:
                raise InvalidOptionError("this model was built without a GCP head and has no head options to "
                                         "rebuild one")
            like = next(self.backbone.parameters())
            head_cls = SoViTHead if self._sovit else GCPHead
            self.head = head_cls(self.num_features, num_classes, config=self._head_config).to(
                device=like.device, dtype=like.dtype).train(self.training)
            self._pools = True
            return
        self.head.reset_classifier(num_classes)

    def set_method(self, *args: Any, **kwargs: Any) -> None:
        """Switch the head's normalisation in place (see :meth:`gcp.GCPHead.set_method`)."""
        if not isinstance(self.head, GCPHead):
            raise InvalidOptionError("the model has no GCP head (built or reset with global_pool='')")
        self.head.set_method(*args, **kwargs)

    # -- training helpers --------------------------------------------------------------------
    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing in the backbone (timm's own, per block); the head is small.
        A backbone timm gives none (ConViT, DLA, HRNet, the Inceptions, …) is refused by name."""
        try:
            self.backbone.set_grad_checkpointing(enable)
        except (AssertionError, NotImplementedError) as exc:  # timm's way of saying "not supported"
            name = self.arch_args.get("architecture", type(self).__name__)
            raise InvalidOptionError(f"{name}: timm's {type(self.backbone).__name__} does not support gradient "
                                     "checkpointing (train without --grad-checkpointing)") from exc
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Union[dict[str, Any], Callable[[str], Any]]:
        """timm's parameter grouping (layer-wise lr decay): the backbone's groups, as timm groups the
        backbone alone, with the GCP head after every one of them (timm puts what no group matches
        last, and the head trains at the full rate).

        The backbone's matcher is a dict of regexes (anchored at ``backbone.`` here) or a function
        of a parameter name (CaiT, the Inceptions: wrapped). A backbone without one (CSATv2,
        MetaFormer) gets timm's own fallback, ``auto_group_layers``, over the backbone."""
        inner = getattr(self.backbone, "group_matcher", None)
        if inner is None:
            from timm.optim import auto_group_layers

            layers = {f"backbone.{n}": i for n, i in auto_group_layers(self.backbone).items()}
            return lambda name: (layers[name],) if name in layers else (float("inf"),)
        spec = inner(coarse=coarse)
        if callable(spec):
            prefix = "backbone."
            return lambda name: spec(name[len(prefix):]) if name.startswith(prefix) else (float("inf"),)
        groups: dict[str, Any] = {}
        for name, entry in spec.items():
            if isinstance(entry, (list, tuple)):
                groups[name] = [(_prefix_pattern(p, "backbone."), suffix) for p, suffix in entry]
            elif entry is not None:
                groups[name] = _prefix_pattern(entry, "backbone.")
        return groups

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        inner = getattr(self.backbone, "no_weight_decay", None)
        return {f"backbone.{n}" for n in inner()} if callable(inner) else set()


#: the build arguments that configure the head (flat, or nested as ``head``)
HEAD_ARGS = flat_option_names() | {"head"}


def recorded_head(args: Mapping[str, Any]) -> dict[str, Any]:
    """``method``, ``backward`` and ``reduced_dim`` of a recorded model, from the nested ``head``
    configuration or from flat build arguments (older records, converters)."""
    head = args.get("head")
    source = {**(head if isinstance(head, Mapping) else {}), **{k: v for k, v in args.items() if k != "head"}}
    return {k: source[k] for k in ("method", "backward", "reduced_dim") if k in source}


def _traced_features(backbone: nn.Module, x: Tensor) -> Tensor:
    """The backbone's ``forward_features`` entered as a module call while torch.fx traces.

    torch.fx patches the functions timm registers as not traceable (``register_notrace_function``:
    a ViT's position-embedding resampling, …) in the globals of each ``forward`` it enters through a
    module call, and of the root. A GCP model's root is gcp's module, and ``forward_features`` is a
    method call, so timm's module would stay unpatched and FX would trace into those functions.
    Calling the backbone as a module, with ``forward_features`` as its ``forward`` for the call,
    patches timm's module as when timm's own model is the root; the graph is the same.
    """
    backbone.forward = backbone.forward_features  # type: ignore[method-assign]
    try:
        return backbone(x)
    finally:
        del backbone.forward
