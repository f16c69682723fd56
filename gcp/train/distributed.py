"""Single process or torchrun: the process group, the device, and sums across ranks."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as torch_dist
from torch import nn

from .errors import ConfigError


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


def resolve_device(device: Optional[str]) -> torch.device:
    """``None`` → CUDA when available, else CPU; a device that is not there is a :class:`ConfigError`."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this machine has no CUDA device (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: training runs on cpu or cuda")
    return dev


def init_distributed(device: Optional[str] = None, timeout: float = 300.0) -> DistInfo:
    """Read torchrun's environment; start the process group (NCCL on GPU, gloo on CPU).

    timm's ``init_distributed_device_so`` would do the same but picks the backend from the
    device string only and assumes CUDA by default; ours runs gloo on CPU machines too.
    """
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"--dist-timeout must be a positive number of seconds, got {timeout!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not torch_dist.is_initialized():
        # a rank that stops answering ends every collective after `timeout`, not gloo's 30 minutes
        torch_dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                      timeout=datetime.timedelta(seconds=timeout))
    return DistInfo(rank, world, local, dev)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a list of numbers over ranks (float64, on the training device)."""
    if not info.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    torch_dist.all_reduce(t)
    return t.tolist()


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself, inside DistributedDataParallel (``.module``) and ``torch.compile``
    (``._orig_mod``), whose state dict has the model's own parameter names."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that timed out or lost its peer (gloo/NCCL word it as
    "timed out", "Timeout" or "Connection closed by peer")."""
    text = str(exc).lower()
    return isinstance(exc, torch_dist.DistError) or any(
        w in text for w in ("timed out", "timeout", "connection closed by peer", "connection reset"))
