"""The papers' optimiser and schedules, built with timm's factories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .distributed import unwrap
from .errors import ConfigError


def _part(name: str) -> str:
    if name.startswith("head.fc."):
        return "classifier"
    if name.startswith("head.reduce."):
        return "reduction"
    return "features"


def param_groups(model: nn.Module, classifier_lr_mult: float = 1.0, reduction_lr_mult: float = 1.0,
                 layer_decay: Optional[float] = None, weight_decay: float = 0.0) -> list[dict]:
    """Three groups — backbone, the GCP head's reduction, the classifier — with timm's
    ``lr_scale`` so timm schedulers keep the multipliers (the papers' classifier factor).

    With ``layer_decay``, timm's ``param_groups_layer_decay`` makes the groups (one per layer and
    weight-decay class, from the model's ``group_matcher``; 1-d parameters without weight decay,
    as timm does) and each is split into the three parts, whose multiplier scales its layer's
    ``lr_scale``: the fine-grained protocol's factors survive layer decay."""
    net = unwrap(model)
    part = {id(p): _part(name) for name, p in net.named_parameters()}
    scale = {"classifier": classifier_lr_mult, "reduction": reduction_lr_mult, "features": 1.0}
    if layer_decay is None:
        base: list[dict] = [dict(params=[p for p in net.parameters() if p.requires_grad], lr_scale=1.0)]
    else:
        from timm.optim import param_groups_layer_decay

        no_decay = net.no_weight_decay() if hasattr(net, "no_weight_decay") else ()
        base = param_groups_layer_decay(net, weight_decay=weight_decay, no_weight_decay_list=no_decay,
                                        layer_decay=layer_decay)
    out = []
    for index, group in enumerate(base):
        for name in scale:
            params: list[Tensor] = [p for p in group["params"] if part[id(p)] == name]
            if params:
                label = name if layer_decay is None else f"{name}.{index}"
                out.append({**group, "params": params, "lr_scale": group.get("lr_scale", 1.0) * scale[name],
                            "name": label})
    return out


@dataclass(frozen=True)
class OptimizerSettings:
    """What the optimiser of a run is built from (:meth:`gcp.train.RunRecord.optimizer_settings`)."""

    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    classifier_lr_mult: float = 1.0
    reduction_lr_mult: float = 1.0
    opt: str = "momentum"
    layer_decay: Optional[float] = None


@dataclass(frozen=True)
class ScheduleSettings:
    """What the learning-rate schedule of a run is built from (:meth:`gcp.train.RunRecord.schedule_settings`):
    timm's ``multistep`` (``milestones``: 0-based epochs from which the lr is multiplied by
    ``decay_rate``), ``step`` (every ``decay_epochs``) or ``cosine``."""

    epochs: int
    sched: str = "multistep"
    milestones: tuple[int, ...] = ()
    decay_rate: float = 0.1
    decay_epochs: int = 90
    warmup_epochs: int = 0
    warmup_lr: float = 1e-4
    min_lr: float = 0.0


def make_optimizer(model: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """``settings.opt`` (default ``"momentum"``: the papers' SGD with non-Nesterov momentum; timm's
    ``"sgd"`` is Nesterov) over :func:`param_groups`, built by timm's factory. Weight decay
    applies to every parameter, as in the papers, except under layer decay (timm's groups)."""
    from timm.optim import create_optimizer_v2, get_optimizer_info

    groups = param_groups(model, settings.classifier_lr_mult, settings.reduction_lr_mult, settings.layer_decay,
                          settings.weight_decay)
    extra = dict(momentum=settings.momentum) if get_optimizer_info(settings.opt).has_momentum else {}
    return create_optimizer_v2(groups, opt=settings.opt, lr=settings.lr, weight_decay=settings.weight_decay, **extra)


def make_scheduler(optimizer: torch.optim.Optimizer, settings: ScheduleSettings) -> Any:
    """timm's scheduler of ``settings.sched``, stepped per epoch. Multistep milestones are 0-based
    epochs from which the lr is multiplied by the decay rate (timm's milestone M applies at index
    M − 1, hence the shift); no milestones: a constant lr."""
    from timm.scheduler import create_scheduler_v2

    epochs, sched, milestones = settings.epochs, settings.sched, settings.milestones
    if sched not in ("multistep", "step", "cosine"):
        raise ConfigError(f"--sched must be multistep, step or cosine, got {sched!r}")
    # no milestones: a constant lr, whatever the number of epochs (a placeholder milestone past
    # the last epoch would decay the lr of epochs added on resume); decay_rate 1 makes it a no-op
    constant = sched == "multistep" and not milestones
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=sched, num_epochs=epochs, decay_epochs=settings.decay_epochs,
        decay_milestones=[m + 1 for m in milestones] or [epochs + 1],
        decay_rate=1.0 if constant else settings.decay_rate, warmup_epochs=settings.warmup_epochs,
        warmup_lr=settings.warmup_lr, min_lr=settings.min_lr)
    return scheduler
