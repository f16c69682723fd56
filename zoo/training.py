"""The training loop shared by ``train_imagenet.py`` and ``python -m finegrained.finetune``.

Single process or ``torchrun`` (DistributedDataParallel: NCCL on GPU, gloo on CPU), AMP with the
GCP head kept in float32/float64, non-finite steps skipped and counted, atomic checkpoints that
resume exactly, a ``summary.csv`` rewritten atomically after every epoch, tqdm on rank 0.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from tqdm import tqdm

from ._pretrained import atomic_write, load_into
from .errors import CheckpointError


# ----------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: Optional[str] = None) -> DistInfo:
    """Read torchrun's environment; start the process group (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a list of numbers over ranks (float64, on the training device)."""
    if not info.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    torch_dist.all_reduce(t)
    return t.tolist()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


# ----------------------------------------------------------------------------- optimisation
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


def make_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                   classifier_lr_mult: float = 1.0, reduction_lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """SGD with (non-Nesterov) momentum over :func:`param_groups`, the papers' optimiser, built by
    timm's factory (``opt="momentum"``; timm's ``"sgd"`` would be Nesterov)."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(param_groups(model, classifier_lr_mult, reduction_lr_mult), opt="momentum", lr=lr,
                               momentum=momentum, weight_decay=weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, epochs: int, sched: str = "step",
                   milestones: tuple[int, ...] | list[int] = (), decay_rate: float = 0.1, warmup_epochs: int = 0,
                   warmup_lr: float = 1e-4, min_lr: float = 0.0) -> Any:
    """timm scheduler stepped per epoch. ``milestones`` are 0-based epochs from which the lr is
    multiplied by ``decay_rate`` (torch's MultiStepLR convention; timm's multistep decays at
    ``t + 1 >= milestone``, hence the shift). No milestones: a constant lr."""
    from timm.scheduler import create_scheduler_v2

    if sched not in ("step", "cosine"):
        raise ValueError(f"sched must be 'step' or 'cosine', got {sched!r}")
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="multistep" if sched == "step" else "cosine", num_epochs=epochs,
        decay_milestones=[m + 1 for m in milestones] or [epochs + 1], decay_rate=decay_rate,
        warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, min_lr=min_lr)
    return scheduler


def parse_head_option(text: str) -> tuple[str, Any]:
    """``"degree=9"`` → ``("degree", 9)`` for ``--head-opt`` (values parsed as Python literals)."""
    import argparse
    import ast

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


HEAD_FLAGS = ("method", "backward", "iters", "alpha", "reduced_dim", "last_stride", "drop_rate")


def head_options(namespace: Any) -> dict[str, Any]:
    """Model keyword arguments from a CLI namespace: ``--head-opt`` pairs plus every head flag
    the command has and the user set (``None`` means: keep the model's default)."""
    kw = dict(getattr(namespace, "head_opt", []))
    for name in HEAD_FLAGS:
        value = getattr(namespace, name, None)
        if value is not None:
            kw[name] = value
    return kw


def amp_dtype(name: str) -> Optional[torch.dtype]:
    table = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise ValueError(f"--amp must be one of {', '.join(table)}, got {name!r}")
    return table[name]


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every RNG from ``(seed, epoch)``: a resumed epoch draws exactly what it would have."""
    s = seed * 1000 + epoch
    random.seed(s)
    torch.manual_seed(s)


# ----------------------------------------------------------------------------- loops
@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float
    nonfinite_steps: int = 0
    lr: float = 0.0


def _progress(iterable: Any, info: DistInfo, desc: str, show: bool = True) -> Any:
    return tqdm(iterable, desc=desc, disable=not (show and info.is_main), leave=False, dynamic_ncols=True)


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    info: DistInfo,
    *,
    amp: Optional[torch.dtype] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    grad_clip: Optional[float] = None,
    ema: Optional[Any] = None,
    channels_last: bool = False,
    max_steps: Optional[int] = None,
    desc: str = "train",
    progress: bool = True,
) -> EpochStats:
    """One pass over ``loader``. A step whose gradient norm is not finite is skipped (counted in
    ``nonfinite_steps``) instead of poisoning the weights: that count is how unstable backward
    modes show up in the comparison tables."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    total_loss, seen, finite_seen, skipped = 0.0, 0, 0, 0
    start = time.perf_counter()
    for step, (images, targets) in enumerate(_progress(loader, info, desc, progress)):
        if max_steps is not None and step >= max_steps:
            break
        images = images.to(info.device, non_blocking=True)
        targets = targets.to(info.device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(info.device, amp):
            loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
        finite = bool(torch.isfinite(norm)) and bool(torch.isfinite(loss.detach()))
        if info.distributed:  # every rank must take the same decision
            finite = all_reduce_sum([0.0 if finite else 1.0], info)[0] == 0
        if finite:
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
            if ema is not None:
                ema.update(unwrap(model))
            total_loss += float(loss.detach()) * images.shape[0]
            finite_seen += images.shape[0]
        else:
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()
        seen += images.shape[0]
    if info.device.type == "cuda":
        torch.cuda.synchronize(info.device)
    seconds = time.perf_counter() - start
    loss_sum, count, finite_count, skipped_all = all_reduce_sum(
        [total_loss, float(seen), float(finite_seen), float(skipped)], info)
    mean = loss_sum / finite_count if finite_count > 0 else float("nan")
    return EpochStats(loss=mean, images=int(count), seconds=seconds, nonfinite_steps=int(skipped_all),
                      lr=optimizer.param_groups[0]["lr"])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    info: DistInfo,
    *,
    amp: Optional[torch.dtype] = None,
    flip_average: bool = False,
    channels_last: bool = False,
    desc: str = "eval",
    progress: bool = True,
) -> dict[str, float]:
    """Loss, top-1 and top-5 (percent) over ``loader``, reduced across ranks. With
    ``flip_average`` the logits of each image and its horizontal flip are averaged (fast-MPN-COV's
    two-crop evaluation)."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss_sum = top1 = top5 = count = 0.0
    for images, targets in _progress(loader, info, desc, progress):
        images = images.to(info.device, non_blocking=True)
        targets = targets.to(info.device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(info.device, amp):
            logits = model(images).float()
            if flip_average:
                logits = 0.5 * (logits + model(images.flip(-1)).float())
        loss_sum += float(criterion(logits, targets))
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(targets.unsqueeze(1))
        top1 += float(hits[:, 0].sum())
        top5 += float(hits.any(dim=1).sum())
        count += targets.shape[0]
    loss_sum, top1, top5, count = all_reduce_sum([loss_sum, top1, top5, count], info)
    n = max(count, 1.0)
    return dict(loss=loss_sum / n, top1=100.0 * top1 / n, top5=100.0 * top5 / n, images=int(count))


# ----------------------------------------------------------------------------- checkpoints
CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "args")


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a torn file."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`save_checkpoint`; clear errors otherwise."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a training checkpoint (missing {', '.join(missing)})")
    return state


def restore(state: dict[str, Any], model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
            scheduler: Any = None, scaler: Any = None, ema: Any = None, source: str = "checkpoint") -> None:
    """Load a checkpoint into the training objects; the model strictly, with listed key errors."""
    load_into(unwrap(model), state["model"], source)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"optimizer state of {source} does not fit: {exc}") from exc
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("ema") is not None:
        load_into(ema.module, state["ema"], source + " (EMA)")


# ----------------------------------------------------------------------------- summary
SUMMARY_FIELDS = ("epoch", "method", "backward", "lr", "train_loss", "eval_loss", "top1", "top5",
                  "epoch_time_s", "images_per_s", "nonfinite_steps")


def write_summary(path: str, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``summary.csv`` atomically from the full history (it survives resumes)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(buf.getvalue())

    atomic_write(path, write)


# ----------------------------------------------------------------------------- the loop
@dataclass
class Schedule:
    """Which head normalisation runs at each epoch (the hybrid protocol of Song et al., ICCV 2021:
    Newton–Schulz until ``switch_epoch``, then ``hybrid``)."""

    method: str
    backward: str
    switch_epoch: Optional[int] = None
    hybrid_method: str = "svd"
    hybrid_backward: str = "pade"

    def at(self, epoch: int) -> tuple[str, str]:
        if self.switch_epoch is not None and epoch >= self.switch_epoch:
            return self.hybrid_method, self.hybrid_backward
        return self.method, self.backward


@dataclass
class FitState:
    start_epoch: int = 0
    best_top1: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    info: DistInfo,
    *,
    epochs: int,
    output: str,
    schedule: Schedule,
    args: dict[str, Any],
    seed: int = 0,
    state: Optional[FitState] = None,
    amp: Optional[torch.dtype] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    grad_clip: Optional[float] = None,
    ema: Any = None,
    channels_last: bool = False,
    flip_average: bool = False,
    set_epoch: Optional[Callable[[int], None]] = None,
    max_steps: Optional[int] = None,
    on_epoch_end: Optional[Callable[[dict[str, Any]], None]] = None,
) -> FitState:
    """Train from ``state.start_epoch`` to ``epochs``; rank 0 writes ``last.pth``, ``best.pth`` and
    ``summary.csv`` under ``output`` after every epoch."""
    state = state or FitState()
    eval_model = ema.module if ema is not None else model
    for epoch in range(state.start_epoch, epochs):
        method, backward = schedule.at(epoch)
        for m in (unwrap(model), ema.module if ema is not None else None):
            if m is not None and (m.head.method, m.head.backward) != (method, backward):
                m.set_method(method, backward)
        seed_epoch(seed, epoch)
        if set_epoch is not None:
            set_epoch(epoch)
        stats = train_one_epoch(model, train_loader, optimizer, info, amp=amp, scaler=scaler, grad_clip=grad_clip,
                                ema=ema, channels_last=channels_last, max_steps=max_steps,
                                desc=f"epoch {epoch + 1}/{epochs}")
        metrics = evaluate(eval_model, val_loader, info, amp=amp, flip_average=flip_average,
                           channels_last=channels_last, desc=f"eval {epoch + 1}/{epochs}")
        scheduler.step(epoch + 1)
        row = dict(epoch=epoch, method=method, backward=backward, lr=stats.lr, train_loss=stats.loss,
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
                ema=ema.module.state_dict() if ema is not None else None, epoch=epoch, args=args,
                metrics=metrics, best_top1=state.best_top1, history=state.history,
            )
            os.makedirs(output, exist_ok=True)
            save_checkpoint(os.path.join(output, "last.pth"), ckpt)
            if is_best:
                save_checkpoint(os.path.join(output, "best.pth"), ckpt)
            write_summary(os.path.join(output, "summary.csv"), state.history)
            tqdm.write(f"epoch {epoch}: {method}/{backward} train_loss {stats.loss:.4f} eval_loss "
                       f"{metrics['loss']:.4f} top1 {metrics['top1']:.2f} top5 {metrics['top5']:.2f} "
                       f"({stats.images / max(stats.seconds, 1e-9):.1f} img/s, {stats.nonfinite_steps} non-finite)")
        if on_epoch_end is not None:
            on_epoch_end(row)
    return state


def check_output(output: str, resuming: bool) -> None:
    """Refuse to start a fresh run in a folder that already holds one (nothing is overwritten)."""
    last = os.path.join(output, "last.pth")
    if not resuming and os.path.exists(last):
        raise CheckpointError(f"{output} already holds a run ({last}); pass --resume {last} to continue "
                              "it or choose another --output")


def resume_state(ckpt: dict[str, Any]) -> FitState:
    return FitState(start_epoch=int(ckpt["epoch"]) + 1, best_top1=float(ckpt.get("best_top1", -math.inf)),
                    history=list(ckpt.get("history", [])))
