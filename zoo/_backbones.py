"""timm backbones prepared for covariance pooling."""

from __future__ import annotations

from typing import Union

import timm
from torch import nn

PretrainedArg = Union[bool, str]


def _create(name: str, in_chans: int, pretrained: PretrainedArg) -> nn.Module:
    """``timm.create_model(name, num_classes=0, global_pool="")``, with ImageNet weights if asked.

    ``pretrained`` is ``True`` (timm's default weights for ``name``) or a path to a local weight
    file in timm's layout; the classifier of the file is dropped by timm since num_classes=0.
    """
    kwargs: dict = dict(num_classes=0, global_pool="", in_chans=in_chans)
    if isinstance(pretrained, str):
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=pretrained), **kwargs)
    return timm.create_model(name, pretrained=bool(pretrained), **kwargs)


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


def resnet(name: str, in_chans: int = 3, pretrained: PretrainedArg = False, last_stride: int = 1) -> nn.Module:
    """timm ResNet whose last stage keeps 1/16 resolution (14×14 at 224) when ``last_stride=1``."""
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
    model = _create(name, in_chans, pretrained)
    if last_stride == 1:
        _undo_stride(model.layer4[0])
        model.feature_info[-1] = dict(model.feature_info[-1], reduction=16)
    return model


def vgg(name: str, in_chans: int = 3, pretrained: PretrainedArg = False) -> nn.Module:
    """timm VGG without pool5 (14×14 at 224, as in iSQRT-COV) and without its fc6/fc7 head."""
    model = _create(name, in_chans, pretrained)
    if isinstance(model.features[-1], nn.MaxPool2d):
        model.features[-1] = nn.Identity()
    model.pre_logits = nn.Identity()
    model.head = nn.Identity()
    return model


def plain(name: str, in_chans: int = 3, pretrained: PretrainedArg = False) -> nn.Module:
    """A timm model used as is; its (parameterised) head is removed so every weight is used."""
    model = _create(name, in_chans, pretrained)
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
        model.head = nn.Identity()
    return model
