"""The papers' optimiser and schedules, built with timm's factories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .distributed import unwrap
from .errors import ConfigError


def param_groups(model: nn.Module, classifier_lr_mult: float = 1.0, reduction_lr_mult: float = 1.0) -> list[dict]:
    """Three groups — backbone, the GCP head's reduction, the classifier — with timm's
    ``lr_scale`` so timm schedulers keep the multipliers (the papers' classifier factor)."""
    groups: dict[str, list[Tensor]] = {"classifier": [], "reduction": [], "features": []}
    for name, p in unwrap(model).named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("head.fc."):
            groups["classifier"].append(p)
        elif name.startswith("head.reduce."):
            groups["reduction"].append(p)
        else:
            groups["features"].append(p)
    scale = {"classifier": classifier_lr_mult, "reduction": reduction_lr_mult, "features": 1.0}
    return [dict(params=ps, lr_scale=scale[k], name=k) for k, ps in groups.items() if ps]


@dataclass(frozen=True)
class OptimizerSettings:
    """What the optimiser of a run is built from (:meth:`gcp.train.RunRecord.optimizer_settings`)."""

    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    classifier_lr_mult: float = 1.0
    reduction_lr_mult: float = 1.0


@dataclass(frozen=True)
class ScheduleSettings:
    """What the learning-rate schedule of a run is built from (:meth:`gcp.train.RunRecord.schedule_settings`).
    ``milestones`` are 0-based epochs from which the lr is multiplied by ``decay_rate``."""

    epochs: int
    sched: str = "step"
    milestones: tuple[int, ...] = ()
    decay_rate: float = 0.1
    warmup_epochs: int = 0
    warmup_lr: float = 1e-4
    min_lr: float = 0.0


def make_optimizer(model: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """SGD with (non-Nesterov) momentum over :func:`param_groups`, the papers' optimiser, built by
    timm's factory (``opt="momentum"``; timm's ``"sgd"`` would be Nesterov)."""
    from timm.optim import create_optimizer_v2

    groups = param_groups(model, settings.classifier_lr_mult, settings.reduction_lr_mult)
    return create_optimizer_v2(groups, opt="momentum", lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, settings: ScheduleSettings) -> Any:
    """timm scheduler stepped per epoch. Milestones are 0-based epochs from which the lr is
    multiplied by the decay rate (torch's MultiStepLR convention; timm's multistep decays at
    ``t + 1 >= milestone``, hence the shift). No milestones: a constant lr."""
    from timm.scheduler import create_scheduler_v2

    epochs, sched, milestones = settings.epochs, settings.sched, settings.milestones
    if sched not in ("step", "cosine"):
        raise ConfigError(f"--sched must be 'step' or 'cosine', got {sched!r}")
    # no milestones: a constant lr, whatever the number of epochs (a placeholder milestone past
    # the last epoch would decay the lr of epochs added on resume); decay_rate 1 makes it a no-op
    constant = sched == "step" and not milestones
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="multistep" if sched == "step" else "cosine", num_epochs=epochs,
        decay_milestones=[m + 1 for m in milestones] or [epochs + 1],
        decay_rate=1.0 if constant else settings.decay_rate, warmup_epochs=settings.warmup_epochs,
        warmup_lr=settings.warmup_lr, min_lr=settings.min_lr)
    return scheduler
