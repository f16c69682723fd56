"""One training run end to end — optimiser, schedule, resume, DDP, loaders, the loop — shared by
``train_imagenet.py`` and ``python -m finegrained.finetune``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from . import data, training


@dataclass
class RunConfig:
    """Everything a run needs besides the model and the data (defaults: the papers' SGD)."""

    output: str
    epochs: int
    batch_size: int
    lr: float
    workers: int = 4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    classifier_lr_mult: float = 1.0
    reduction_lr_mult: float = 1.0
    sched: str = "step"
    decay_milestones: tuple[int, ...] | list[int] = ()
    decay_rate: float = 0.1
    warmup_epochs: int = 0
    warmup_lr: float = 1e-4
    min_lr: float = 0.0
    grad_clip: Optional[float] = None
    amp: str = "none"
    channels_last: bool = False
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    seed: int = 0
    max_steps_per_epoch: Optional[int] = None
    flip_average: bool = False
    hybrid_switch_epoch: Optional[int] = None
    hybrid_method: str = "svd"
    hybrid_backward: str = "pade"
    args: dict[str, Any] = field(default_factory=dict)  # stored in every checkpoint


def run(model: nn.Module, train_set: Any, val_set: Any, info: training.DistInfo, cfg: RunConfig,
        resume: Optional[dict[str, Any]] = None, resume_source: str = "checkpoint") -> training.FitState:
    """Train ``model`` (already on ``info.device``) and return the history; resumes from ``resume``."""
    amp = training.amp_dtype(cfg.amp)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ema = None
    if cfg.model_ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.model_ema_decay)
    optimizer = training.make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.classifier_lr_mult,
                                        cfg.reduction_lr_mult)
    scheduler = training.make_scheduler(optimizer, cfg.epochs, cfg.sched, cfg.decay_milestones, cfg.decay_rate,
                                        cfg.warmup_epochs, cfg.warmup_lr, cfg.min_lr)
    scaler = torch.amp.GradScaler(info.device.type) if cfg.amp == "fp16" else None
    state = None
    if resume is not None:
        training.restore(resume, model, optimizer, scheduler, scaler, ema, source=resume_source)
        state = training.resume_state(resume)
        if info.is_main:
            print(f"resumed {resume_source} at epoch {state.start_epoch}")
    scheduler.step(state.start_epoch if state is not None else 0)
    train_loader, set_epoch = data.make_loader(train_set, cfg.batch_size, cfg.workers, info, train=True,
                                               seed=cfg.seed)
    val_loader, _ = data.make_loader(val_set, cfg.batch_size, cfg.workers, info, train=False)
    train_model: nn.Module = model
    if info.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    schedule = training.Schedule(model.head.method, model.head.backward, cfg.hybrid_switch_epoch,
                                 cfg.hybrid_method, cfg.hybrid_backward)
    return training.fit(
        train_model, train_loader, val_loader, optimizer, scheduler, info, epochs=cfg.epochs, output=cfg.output,
        schedule=schedule, args=cfg.args, seed=cfg.seed, state=state, amp=amp, scaler=scaler,
        grad_clip=cfg.grad_clip, ema=ema, channels_last=cfg.channels_last, flip_average=cfg.flip_average,
        set_epoch=set_epoch, max_steps=cfg.max_steps_per_epoch)


def config_from_args(namespace: Any, **overrides: Any) -> RunConfig:
    """A :class:`RunConfig` from an argparse namespace (fields it lacks keep their defaults)."""
    names = RunConfig.__dataclass_fields__
    values = {k: v for k, v in vars(namespace).items() if k in names}
    values.update(overrides)
    return RunConfig(**values)
