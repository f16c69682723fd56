"""The comparison's own small training loop: single device, SGD, non-finite steps skipped and counted.

Written here rather than imported from ``zoo.training``: the core (``gcp``) must not depend on the
layers above it, and this tool needs none of that loop's features (distribution, AMP, EMA,
checkpoints) — only the rule the tables rest on, that a step whose loss or gradient norm is not
finite is skipped and counted instead of poisoning the weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from ..errors import ShapeError


@dataclass(frozen=True)
class EpochResult:
    loss: float  # mean over the finite steps' samples (NaN when no step was finite)
    seconds: float
    nonfinite_steps: int


def train_epoch(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], optimizer: torch.optim.Optimizer,
                device: torch.device) -> EpochResult:
    """One pass; a step with a non-finite loss or gradient norm is skipped and counted."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    total, seen, skipped = 0.0, 0, 0
    start = time.perf_counter()
    for images, targets in batches:
        images, targets = images.to(device), targets.to(device)
        loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))  # the norm only, nothing clipped
        if bool(torch.isfinite(norm)) and bool(torch.isfinite(loss.detach())):
            optimizer.step()
            total += float(loss.detach()) * images.shape[0]
            seen += images.shape[0]
        else:
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return EpochResult(total / seen if seen else float("nan"), time.perf_counter() - start, skipped)


@torch.no_grad()
def top1(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    hits = count = 0
    for images, targets in batches:
        logits = model(images.to(device))
        hits += int((logits.argmax(1) == targets.to(device)).sum())
        count += targets.shape[0]
    if count == 0:
        raise ShapeError("top1: the evaluation split is empty")
    return 100.0 * hits / count
