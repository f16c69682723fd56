"""The training loss of a run: timm's label smoothing, Mixup/CutMix and their soft-target loss,
chosen from the run record as timm's ``train.py`` chooses them."""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from .errors import ConfigError
from .record import RunRecord


def training_loss(record: RunRecord, world_size: int = 1) -> tuple[nn.Module, Optional[Any]]:
    """The criterion and the batch mixer (``None``: no mixing) of ``record``.

    Mixup/CutMix (``timm.data.Mixup``, with ``--smoothing`` folded into its soft targets) train
    against ``SoftTargetCrossEntropy``; smoothing alone uses ``LabelSmoothingCrossEntropy``;
    otherwise plain cross-entropy. Mixup pairs each image with the batch reversed, so every
    process's batch must be even: refused here, before any work."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if record.mixes:
        per_rank = record.batch_size // max(1, world_size)
        if per_rank % 2:
            raise ConfigError(f"--mixup/--cutmix need an even batch on every process: --batch-size "
                              f"{record.batch_size} over {world_size} processes gives {per_rank}")
        if record.num_classes is None:
            raise ConfigError("--mixup/--cutmix need the number of classes (read from the dataset)")
        mixer = Mixup(mixup_alpha=record.mixup, cutmix_alpha=record.cutmix, label_smoothing=record.smoothing,
                      num_classes=record.num_classes)
        return SoftTargetCrossEntropy(), mixer
    if record.smoothing > 0:
        return LabelSmoothingCrossEntropy(record.smoothing), None
    return nn.CrossEntropyLoss(), None
