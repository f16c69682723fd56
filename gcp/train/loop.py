"""One training epoch and one evaluation pass: AMP with the GCP head in float32/float64,
non-finite steps skipped and counted, metrics summed exactly across ranks, tqdm on rank 0."""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .distributed import DistInfo, all_reduce_sum, unwrap
from .errors import ConfigError, NonFiniteStepError, TrainingError


def amp_dtype(name: str) -> Optional[torch.dtype]:
    table = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise ConfigError(f"--amp must be one of {', '.join(table)}, got {name!r}")
    return table[name]


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every RNG from ``(seed, epoch)``: a resumed epoch draws exactly what it would have
    (numpy's too: timm's Mixup draws its λ and boxes from it)."""
    s = seed * 1000 + epoch
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The lr the schedule is written in: a group's lr over its ``lr_scale`` (timm's schedulers set
    ``lr = base · lr_scale``; the classifier's and, under layer decay, every layer's differ)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)


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
    criterion: Optional[nn.Module] = None,
    mixup: Optional[Any] = None,
    accum_steps: int = 1,
    stop_on_nonfinite: bool = False,
) -> EpochStats:
    """One pass over ``loader``. A step whose gradient norm is not finite is skipped (counted in
    ``nonfinite_steps``) instead of poisoning the weights: that count is how unstable backward
    modes show up in the comparison tables.

    ``criterion`` defaults to cross-entropy; ``mixup`` (timm's ``Mixup``) mixes each batch and its
    targets first. With ``accum_steps`` > 1 the gradients of that many micro-batches (each loss
    divided by ``accum_steps``, as timm's ``train.py`` does) make one optimizer step; a last
    partial group still steps. With ``stop_on_nonfinite`` a non-finite step raises
    :class:`~gcp.train.errors.NonFiniteStepError` (on every rank alike) instead of being skipped."""
    model.train()
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    total_loss, seen, finite_seen, skipped = 0.0, 0, 0, 0
    start = time.perf_counter()
    count = len(loader) if max_steps is None else min(len(loader), max_steps)
    pending: list[tuple[torch.Tensor, int]] = []  # (loss, images) of the micro-batches since the last step
    optimizer.zero_grad(set_to_none=True)
    for step, (images, targets) in enumerate(_progress(loader, info, desc, progress)):
        if max_steps is not None and step >= max_steps:
            break
        images = images.to(info.device, non_blocking=True)
        targets = targets.to(info.device, non_blocking=True)
        if mixup is not None:
            images, targets = mixup(images, targets)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        last_of_group = (step + 1) % accum_steps == 0 or step + 1 == count
        sync = last_of_group or not info.distributed
        with (contextlib.nullcontext() if sync else model.no_sync()):
            with autocast(info.device, amp):
                loss = criterion(model(images), targets)
            scaled = loss / accum_steps if accum_steps > 1 else loss
            if scaler is not None:
                scaler.scale(scaled).backward()
            else:
                scaled.backward()
        pending.append((loss.detach(), images.shape[0]))
        if not last_of_group:
            continue
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
        finite = bool(torch.isfinite(norm)) and all(bool(torch.isfinite(v)) for v, _ in pending)
        group_images = sum(n for _, n in pending)
        if info.distributed:  # every rank must take the same decision
            finite = all_reduce_sum([0.0 if finite else 1.0], info)[0] == 0
        if finite:
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
            if ema is not None:
                ema.update(unwrap(model))
            total_loss += sum(float(v) * n for v, n in pending)
            finite_seen += group_images
        else:
            skipped += 1
            if stop_on_nonfinite:
                optimizer.zero_grad(set_to_none=True)
                raise NonFiniteStepError(step, f"non-finite loss or gradient at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()
        seen += group_images
        pending = []
    if info.device.type == "cuda":
        torch.cuda.synchronize(info.device)
    seconds = time.perf_counter() - start
    loss_sum, count, finite_count, skipped_all = all_reduce_sum(
        [total_loss, float(seen), float(finite_seen), float(skipped)], info)
    if count == 0:
        raise TrainingError("the training loader gave no batch: the epoch would take no step (is the batch "
                            "larger than the training set?)")
    mean = loss_sum / finite_count if finite_count > 0 else float("nan")
    return EpochStats(loss=mean, images=int(count), seconds=seconds, nonfinite_steps=int(skipped_all),
                      lr=base_lr(optimizer))


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
        # summed hits rather than timm.utils.accuracy's per-batch percentages: exact over uneven
        # last batches and across ranks
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(targets.unsqueeze(1))
        top1 += float(hits[:, 0].sum())
        top5 += float(hits.any(dim=1).sum())
        count += targets.shape[0]
    loss_sum, top1, top5, count = all_reduce_sum([loss_sum, top1, top5, count], info)
    if count == 0:
        raise TrainingError("the evaluation split is empty: there is no top-1 to report")
    n = count
    return dict(loss=loss_sum / n, top1=100.0 * top1 / n, top5=100.0 * top5 / n, images=int(count))
