"""``resnet18_cifar``: the CIFAR ResNet-18 of the NeurIPS'19 ZCA/PCA experiment (Wang et al.,
"Backpropagation-Friendly Eigendecomposition"), registered with timm.

timm's ResNet-18 with the CIFAR stem: a 3×3 stride-1 convolution and no max-pool, so the stages
run at 32, 16, 8 and 4 pixels for a 32×32 image and the classifier averages a 4×4 map. Built by
timm's ``build_model_with_cfg``, so ``features_only``, ``num_classes``, ``drop_path_rate`` and
timm's scripts work as for any timm model. ``gcp_resnet18_cifar`` (the generic GCP model of this
backbone) is the same network with a GCP head. No weights are published for it.

    >>> model = timm.create_model("resnet18_cifar", num_classes=10)   # after import gcp.zoo
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from .errors import CheckpointError

# the normalisation of the NeurIPS'19 experiment's CIFAR code (kuangliu's pytorch-cifar)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class CifarResNet(ResNet):
    """A timm ResNet whose stem keeps the resolution (3×3 stride-1 convolution, no max-pool)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        in_chans = self.conv1.in_channels
        width = self.conv1.out_channels
        self.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()
        # the stem no longer divides the resolution by 4: every stage's reduction is 4 times smaller
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // (2 if info["module"] == "act1" else 4))


default_cfgs = generate_default_cfgs({
    "resnet18_cifar": dict(
        num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0, interpolation="bilinear",
        mean=CIFAR_MEAN, std=CIFAR_STD, first_conv="conv1", classifier="fc",
        paper_name="Backpropagation-Friendly Eigendecomposition (NeurIPS 2019)",
        notes=("the CIFAR ResNet-18 of the paper's ZCA/PCA experiment: 3x3 stride-1 stem, no max-pool; no "
               "published weights",)),
})


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 for 32×32 images (CIFAR): BasicBlocks [2, 2, 2, 2], a 3×3 stride-1 stem, no max-pool."""
    if pretrained:
        raise CheckpointError("resnet18_cifar has no published weights; train it (gcp-train --dataset cifar10 "
                              "--model resnet18_cifar) or load a file with --pretrained-path")
    kwargs.setdefault("num_classes", 10)
    return build_model_with_cfg(CifarResNet, "resnet18_cifar", pretrained, block=BasicBlock, layers=[2, 2, 2, 2],
                                **kwargs)
