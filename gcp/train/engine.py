"""One training run end to end: optimiser, schedule, resume, DDP, loaders, the epoch loop and
the run folder's files."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import (
    FitState,
    claim_output,
    repair_after_resume,
    restore,
    resume_state,
    save_checkpoint,
    write_summary,
)
from .config import RunConfig, check_resume
from .data import make_loader
from .distributed import DistInfo, unwrap
from .loop import amp_dtype, evaluate, seed_epoch, train_one_epoch
from .optim import make_optimizer, make_scheduler


class HeadSchedule:
    """Which head normalisation (method, backward, mode options) runs at each epoch."""

    def __init__(self, head: dict[str, Any], switch_epoch: Optional[int], hybrid: dict[str, Any]) -> None:
        self.base = _normalisation(head)
        self.switch_epoch = switch_epoch
        self.hybrid = _normalisation(hybrid)

    def at(self, epoch: int) -> dict[str, Any]:
        return self.hybrid if self.switch_epoch is not None and epoch >= self.switch_epoch else self.base


def _normalisation(head: dict[str, Any]) -> dict[str, Any]:
    """The part of the head options ``set_method`` takes (the architecture ones stay)."""
    return {k: v for k, v in head.items() if k not in ("reduced_dim", "last_stride", "drop_rate")}


def _apply(model: nn.Module, wanted: dict[str, Any]) -> None:
    """Switch the head to ``wanted`` (method, backward, iters, alpha, eps and the mode options,
    which replace the head's own) unless it already runs exactly that."""
    head = model.head
    settings = ("method", "backward", "iters", "alpha", "eps")
    options = {k: v for k, v in wanted.items() if k not in settings}
    if head.opts != options or any(getattr(head, k) != wanted[k] for k in settings if k in wanted):
        model.set_method(wanted.get("method"), wanted.get("backward"), iters=wanted.get("iters"),
                         alpha=wanted.get("alpha"), eps=wanted.get("eps"), **options)


def fit(model: nn.Module, train_loader: Any, val_loader: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
        info: DistInfo, cfg: RunConfig, *, state: FitState, schedule: HeadSchedule, amp: Optional[torch.dtype] = None,
        scaler: Optional[torch.amp.GradScaler] = None, ema: Any = None,
        set_epoch: Optional[Callable[[int], None]] = None, cli_settings: Optional[dict[str, Any]] = None) -> FitState:
    """Train from ``state.start_epoch`` to ``cfg.epochs``; rank 0 writes ``best.pth`` (when it is
    the best epoch), then ``last.pth``, then ``summary.csv`` (see :mod:`gcp.train.checkpoint`)."""
    eval_model = ema.module if ema is not None else model
    for epoch in range(state.start_epoch, cfg.epochs):
        wanted = schedule.at(epoch)
        for m in (unwrap(model), ema.module if ema is not None else None):
            if m is not None:
                _apply(m, wanted)
        seed_epoch(cfg.seed, epoch)
        if set_epoch is not None:
            set_epoch(epoch)
        stats = train_one_epoch(model, train_loader, optimizer, info, amp=amp, scaler=scaler, grad_clip=cfg.grad_clip,
                                ema=ema, channels_last=cfg.channels_last, max_steps=cfg.max_steps_per_epoch,
                                desc=f"epoch {epoch + 1}/{cfg.epochs}")
        metrics = evaluate(eval_model, val_loader, info, amp=amp, flip_average=cfg.flip_average,
                           channels_last=cfg.channels_last, desc=f"eval {epoch + 1}/{cfg.epochs}")
        scheduler.step(epoch + 1)
        head = unwrap(model).head
        row = dict(epoch=epoch, method=head.method, backward=head.backward, lr=stats.lr, train_loss=stats.loss,
                   eval_loss=metrics["loss"], top1=metrics["top1"], top5=metrics["top5"],
                   epoch_time_s=stats.seconds, images_per_s=stats.images / max(stats.seconds, 1e-9),
                   nonfinite_steps=stats.nonfinite_steps)
        state.history.append(row)
        is_best = metrics["top1"] > state.best_top1
        state.best_top1 = max(state.best_top1, metrics["top1"])
        if info.is_main:
            ckpt = dict(
                model=unwrap(model).state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), scaler=scaler.state_dict() if scaler is not None else None,
                ema=ema.module.state_dict() if ema is not None else None, epoch=epoch, cli_settings=cli_settings or {},
                config=cfg.as_dict(), run_id=state.run_id, metrics=metrics, best_top1=state.best_top1,
                history=state.history,
            )
            # best before last: a kill between the two leaves last.pth one epoch behind, and the
            # resumed run redoes that epoch (bit-identically) and writes best.pth again
            if is_best:
                save_checkpoint(os.path.join(cfg.output, "best.pth"), ckpt)
            save_checkpoint(os.path.join(cfg.output, "last.pth"), ckpt)
            write_summary(os.path.join(cfg.output, "summary.csv"), state.history)
            tqdm.write(f"epoch {epoch}: {row['method']}/{row['backward']} train_loss {stats.loss:.4f} eval_loss "
                       f"{metrics['loss']:.4f} top1 {metrics['top1']:.2f} top5 {metrics['top5']:.2f} "
                       f"({row['images_per_s']:.1f} img/s, {stats.nonfinite_steps} non-finite)")
    return state


def run(model: nn.Module, train_set: Any, val_set: Any, info: DistInfo, cfg: RunConfig,
        resume: Optional[dict[str, Any]] = None, resume_source: str = "checkpoint",
        cli_settings: Optional[dict[str, Any]] = None) -> FitState:
    """Train ``model`` (already on ``info.device``) under ``cfg`` and return the history.

    With ``resume`` (a loaded checkpoint), the run continues where it stopped; its recorded
    settings must agree with ``cfg`` (:func:`gcp.train.config.check_resume`).
    """
    state = resume_state(resume) if resume is not None else FitState()
    if resume is not None and resume.get("config") is not None:
        check_resume(RunConfig.from_dict(resume["config"]), cfg, state.start_epoch)
    # every check that can fail runs before the run folder is touched
    train_loader, set_epoch = make_loader(train_set, cfg.batch_size, cfg.workers, info, train=True, seed=cfg.seed)
    val_loader, _ = make_loader(val_set, cfg.batch_size, cfg.workers, info, train=False)
    amp = amp_dtype(cfg.amp)
    if info.is_main:
        state.run_id = claim_output(cfg.output, resume, resume_source)
        if resume is not None:
            repair_after_resume(cfg.output, resume)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ema = None
    if cfg.model_ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.model_ema_decay)
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.classifier_lr_mult,
                               cfg.reduction_lr_mult)
    scheduler = make_scheduler(optimizer, cfg.epochs, cfg.sched, cfg.decay_milestones, cfg.decay_rate,
                               cfg.warmup_epochs, cfg.warmup_lr, cfg.min_lr)
    scaler = torch.amp.GradScaler(info.device.type) if cfg.amp == "fp16" else None
    if resume is not None:
        restore(resume, model, optimizer, scheduler, scaler, ema, source=resume_source)
        if info.is_main:
            print(f"resumed {resume_source} at epoch {state.start_epoch}")
    scheduler.step(state.start_epoch)
    train_model: nn.Module = model
    if info.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    schedule = HeadSchedule(cfg.head, cfg.hybrid_switch_epoch, cfg.hybrid_head)
    return fit(train_model, train_loader, val_loader, optimizer, scheduler, info, cfg, state=state,
               schedule=schedule, amp=amp, scaler=scaler, ema=ema, set_epoch=set_epoch, cli_settings=cli_settings)
