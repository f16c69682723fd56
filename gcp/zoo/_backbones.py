"""timm backbones prepared for covariance pooling."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Optional, Union

import timm
import timm.models
import torch
from timm.models.vgg import VGG
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from gcp import InvalidOptionError

PretrainedArg = Union[bool, str]


class HeadRemoved(nn.Module):
    """Stands where a timm backbone's own head was: the GCP head replaces it.

    Passes features through and answers the calls timm's model code makes on a head
    (``head(x, pre_logits=True)``, ``head.reset(num_classes, pool_type)``), so the backbone's
    ``forward``, ``reset_classifier``, ``prune_intermediate_layers`` and TorchScript still work.
    ``nn.Identity`` would accept neither ``pre_logits=`` nor ``reset``. Backbones whose
    ``forward_head`` calls the head's parts by name (MetaFormer: ``head.global_pool``, ``head.norm``,
    …) find them as pass-throughs, so TorchScript, which compiles every submodule's ``forward``,
    compiles theirs too.
    """

    #: the parts of a timm head that timm's forward_head code calls by name
    PARTS = ("global_pool", "norm", "flatten", "drop", "fc", "pre_logits", "head_drop")

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        for part in self.PARTS:
            setattr(self, part, nn.Identity())

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x

    def reset(self, num_classes: int = 0, pool_type: Optional[str] = None, **kwargs: Any) -> None:
        if num_classes:
            raise InvalidOptionError("the backbone's own classifier was removed; reset the GCP model's instead")


class CheckpointedVGG(VGG):
    """timm's VGG with activation checkpointing (timm's VGG refuses ``set_grad_checkpointing``);
    built VGGs get this class, nothing else changes. One checkpoint per stage (the layers up to
    each feature tap): a segment boundary between a BN and its in-place ReLU would let the ReLU
    overwrite a tensor the checkpoint saved."""

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward_features(self, x: Tensor) -> Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            start = 0
            for end in self.feature_ends:
                x = checkpoint(self.features[start:end + 1], x, use_reentrant=False)
                start = end + 1
            return self.features[start:](x) if start < len(self.features) else x
        return self.features(x)


def _create(name: str, in_chans: int, pretrained: PretrainedArg, global_pool: Optional[str] = "",
            **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, num_classes=0, global_pool="")``, with ImageNet weights if asked.

    ``pretrained`` is ``True`` (timm's default weights for ``name``) or a path to a local weight
    file in timm's layout; the classifier of the file is dropped by timm since num_classes=0.
    ``kwargs`` are backbone options timm passes to every model (``drop_path_rate``, …); one the
    backbone does not have is refused by name.
    """
    kwargs = dict(num_classes=0, in_chans=in_chans, **kwargs)
    if global_pool is not None:
        kwargs["global_pool"] = global_pool
    overlay = dict(file=pretrained) if isinstance(pretrained, str) else None
    if isinstance(pretrained, str):
        _check_backbone_file(name, pretrained, kwargs)
    offline = pretrained is True and not hub_reachable()
    try:
        with cache_only(offline):
            return timm.create_model(name, pretrained=bool(pretrained), pretrained_cfg_overlay=overlay, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        from .errors import UnknownBackboneOptionError

        raise UnknownBackboneOptionError(f"backbone {name} does not accept this option: {exc}") from exc
    except OSError as exc:  # the Hub or a URL unreachable, a file timm cannot read
        if not pretrained:
            raise
        from .errors import CheckpointError

        if offline:
            raise CheckpointError(
                f"backbone_pretrained=True: the Hugging Face Hub cannot be reached (or HF_HUB_OFFLINE is set) and "
                f"timm's ImageNet weights of {name} are not in the local cache; pass a local file of them: "
                "backbone_pretrained=PATH (gcp-finetune --backbone-pretrained PATH)") from exc
        source = f"the file {pretrained}" if isinstance(pretrained, str) else f"timm's ImageNet weights of {name}"
        raise CheckpointError(f"backbone_pretrained: cannot load {source}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection within ``timeout`` seconds (``False``
    at once when HF_HUB_OFFLINE is set). Offline, huggingface_hub would spend about a minute in
    retries before the same error; with this answer a download is looked up in the cache only."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def cache_only(enabled: bool) -> Iterator[None]:
    """huggingface_hub in offline mode (the local cache only) inside the block, when ``enabled``."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or enabled
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _check_backbone_file(name: str, path: str, kwargs: dict[str, Any]) -> None:
    """A weight file given for the backbone must be that backbone's: timm would load what matches
    and warn about the rest, leaving a random or mixed backbone. A file that lacks tensors of the
    backbone, or holds tensors it does not have (its classifier apart), is refused, naming what the
    file looks like."""
    from .errors import CheckpointError
    from .io import read_state_dict
    from .layouts import describe, missing_backbone_keys

    present = read_state_dict(path)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    expected = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier") or ()
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    missing = missing_backbone_keys(expected, present)
    extra = sorted(k for k in present if k not in expected and not k.endswith("num_batches_tracked")
                   and not any(k.startswith(c + ".") for c in classifier))
    if missing or extra:
        total = sum(1 for k in expected if not k.endswith("num_batches_tracked"))
        what = (f"lacks {len(missing)} of the {total} tensors of timm's {name} (e.g. {', '.join(missing[:3])})"
                if missing else f"holds {len(extra)} tensors timm's {name} does not have (e.g. {', '.join(extra[:3])})")
        raise CheckpointError(f"backbone_pretrained={path}: the file {what}; it looks like {describe(present)}")


def _undo_stride(module: nn.Module) -> None:
    """Make the first block of a stage keep its resolution: stride-2 convs → stride 1, and any
    average-pool downsampling (ResNet-D) → identity. Unlike dilation (timm's ``output_stride``),
    the kernels keep their receptive field, as in iSQRT-COV."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and child.stride == (2, 2):
            child.stride = (1, 1)
        elif isinstance(child, nn.AvgPool2d) and child.stride in (2, (2, 2)):
            setattr(module, name, nn.Identity())
        else:
            _undo_stride(child)


def resnet(name: str, in_chans: int = 3, pretrained: PretrainedArg = False, last_stride: int = 1,
           **kwargs: Any) -> nn.Module:
    """timm ResNet whose last stage keeps 1/16 resolution (14×14 at 224) when ``last_stride=1``."""
    if last_stride not in (1, 2):
        raise InvalidOptionError(f"last_stride must be 1 or 2, got {last_stride!r}")
    model = _create(name, in_chans, pretrained, **kwargs)
    if last_stride == 1:
        _undo_stride(model.layer4[0])
        model.feature_info[-1] = dict(model.feature_info[-1], reduction=16)
    return model


def vgg(name: str, in_chans: int = 3, pretrained: PretrainedArg = False, **kwargs: Any) -> nn.Module:
    """timm VGG without pool5 (14×14 at 224, as in iSQRT-COV) and without its fc6/fc7 head.

    pool5 is cut from ``features`` (not replaced), and with it the last feature tap, so
    ``feature_info`` and ``forward_intermediates`` end at the conv5 output the GCP head reads.
    """
    model = _create(name, in_chans, pretrained, **_without_fc6(pretrained, kwargs))
    if isinstance(model.features[-1], nn.MaxPool2d):
        model.features = model.features[:-1]
        model.feature_info = model.feature_info[:-1]
        model.feature_ends = model.feature_ends[:-1]
    # fc6/fc7 (a 7×7 conv MLP, 120M parameters) go; the classifier head built with
    # num_classes=0, global_pool='' is parameter-free and stays, so timm's VGG code keeps working
    model.pre_logits = HeadRemoved(model.num_features)
    model.head_hidden_size = model.num_features
    return _checkpointable(model)


def _without_fc6(pretrained: PretrainedArg, kwargs: dict[str, Any]) -> dict[str, Any]:
    """VGG options that skip building fc6: a 512→4096 7×7 conv (103M parameters) that timm builds
    only for the GCP head to drop; a one-channel hidden layer makes that 0.5 GB, 2 s allocation
    vanish. Pretrained builds keep timm's shapes, which its weight file must match."""
    return kwargs if pretrained else {"mlp_ratio": 1 / 4096, **kwargs}


def _checkpointable(model: nn.Module) -> nn.Module:
    """timm's VGG refuses ``set_grad_checkpointing``; the zoo's subclass has it (nothing else changes)."""
    if type(model) is VGG:
        model.__class__ = CheckpointedVGG
        model.grad_checkpointing = False
    return model


def plain(name: str, in_chans: int = 3, pretrained: PretrainedArg = False, global_pool: Optional[str] = "",
          keep_head: bool = False, **kwargs: Any) -> nn.Module:
    """A timm model used as is; its (parameterised) head is removed so every weight is used, unless
    ``keep_head`` (a model whose ``head`` is a stage of its forward_features)."""
    model = _create(name, in_chans, pretrained, global_pool=global_pool, **kwargs)
    head = getattr(model, "head", None)
    if not keep_head and isinstance(head, nn.Module) and any(True for _ in head.parameters()):
        model.head = HeadRemoved(model.num_features)
        model.head_hidden_size = model.num_features
    return model


def any_model(name: str, in_chans: int = 3, pretrained: PretrainedArg = False, **kwargs: Any) -> nn.Module:
    """Any timm model as a GCP backbone: built with ``num_classes=0, global_pool=''`` and its
    parameterised head removed (as :func:`plain`), after checking that its ``forward_features``
    can feed a GCP head. The backbones that cannot are refused by name with the reason."""
    from ._unsupported import HEAD_ONLY, KEEP_HEAD, PREFIX_TOKENS, UNSUPPORTED
    from .errors import UnsupportedBackboneError

    module = _module_of(name)
    reason = UNSUPPORTED.get(name) or UNSUPPORTED.get(module)
    if reason:
        raise UnsupportedBackboneError(f"gcp_{name}: timm's {name} cannot take a GCP head: {reason}")
    if module == "vgg":
        kwargs = _without_fc6(pretrained, kwargs)
    try:
        model = plain(name, in_chans, pretrained, global_pool="", keep_head=module in KEEP_HEAD, **kwargs)
    except (AssertionError, NotImplementedError) as exc:
        # a model that cannot turn its pooling off (CoaT-Lite, EfficientViT-MIT, InceptionNeXt,
        # distilled DeiT) keeps it: its forward_features is the same either way
        try:
            model = plain(name, in_chans, pretrained, global_pool=None, keep_head=module in KEEP_HEAD, **kwargs)
        except Exception:
            raise UnsupportedBackboneError(f"gcp_{name}: timm's {name} cannot be built without its "
                                           f"classifier: {exc}") from exc
    if module in PREFIX_TOKENS and not hasattr(model, "num_prefix_tokens"):
        model.num_prefix_tokens = PREFIX_TOKENS[module]  # the class token leads the tokens: not a patch
    for attr in HEAD_ONLY.get(module, ()):
        # layers that only timm's forward_head applies (after its pooling): unused before a GCP head,
        # and DDP refuses parameters without a gradient
        setattr(model, attr, nn.Identity())
    model = _checkpointable(model)
    if not callable(getattr(model, "forward_features", None)) or not isinstance(getattr(model, "num_features", None),
                                                                              int):
        raise UnsupportedBackboneError(f"gcp_{name}: timm's {name} has no forward_features/num_features")
    return model


def _module_of(name: str) -> str:
    """The timm module that defines ``name`` ("" for a name timm does not know)."""
    return _timm_modules().get(name, "")


@functools.lru_cache(maxsize=1)
def _timm_modules() -> dict[str, str]:
    # timm's public listing, inverted once: list_models(module=...) for each of list_modules(); read
    # from timm.models, since gcp.zoo.timm_suite_plugin replaces the top-level timm.list_models
    return {n: m for m in timm.models.list_modules() for n in timm.models.list_models(module=m)}
