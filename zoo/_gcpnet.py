"""``GCPNet``: any timm backbone followed by a :class:`gcp.GCPHead`, in timm's model contract."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from gcp import GCPHead


class GCPNet(nn.Module):
    """A timm backbone (``forward_features`` → ``(B, C, H, W)``) and a GCP head.

    Follows timm's classifier contract: ``forward_features``, ``forward_head(x, pre_logits)``,
    ``get_classifier``, ``reset_classifier``, ``num_features`` (the head's representation size,
    ``d(d+1)/2``), ``num_classes`` and ``pretrained_cfg``. ``arch_args`` records how the model was
    built (backbone name, head options) so :func:`zoo.save_pretrained` can rebuild it.

    Example:
        >>> backbone = timm.create_model("resnet18", num_classes=0, global_pool="")
        >>> model = zoo.GCPNet(backbone, gcp.GCPHead(backbone.num_features, 10, reduced_dim=64))
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(self, backbone: nn.Module, head: GCPHead, arch_args: Optional[dict[str, Any]] = None) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_features"):
            raise TypeError(f"backbone {type(backbone).__name__} has no forward_features()")
        if head.in_channels != getattr(backbone, "num_features", head.in_channels):
            raise ValueError(
                f"head expects {head.in_channels} channels but the backbone gives {backbone.num_features}"
            )
        self.backbone = backbone
        self.head = head
        self.arch_args = dict(arch_args or {})
        self.pretrained_cfg: dict[str, Any] = dict(getattr(backbone, "pretrained_cfg", {}) or {})

    @property
    def num_features(self) -> int:
        return self.head.num_features

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.get_classifier()

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Fresh classifier with ``num_classes`` outputs (0: the model returns the representation).

        ``global_pool`` is accepted for timm compatibility; covariance pooling is the only pool.
        """
        self.head.reset_classifier(num_classes)

    def set_method(self, *args: Any, **kwargs: Any) -> None:
        """Switch the head's normalisation in place (see :meth:`gcp.GCPHead.set_method`)."""
        self.head.set_method(*args, **kwargs)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer-decay hook: the backbone stem, then everything else as one block group."""
        return dict(stem=r"^backbone\.(conv1|bn1|stem|conv_stem|features\.0)\.", blocks=r"^(backbone|head)\.")
