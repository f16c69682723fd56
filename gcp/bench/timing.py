"""Small timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def positive_int(text: str) -> int:
    """``argparse`` type of the benchmark scripts' counts and sizes: an integer >= 1, or a usage error."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_ms(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, list[float]]:
    """Time several callables in turns (one run of each per round, ``repeats`` rounds).

    Interleaving makes ratios between them robust to the machine's slow drifts (thermal,
    other processes): compare per-round ratios rather than medians taken minutes apart.
    """
    for fn in fns.values():
        fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios ``a[i] / b[i]``."""
    return statistics.median(x / y for x, y in zip(a, b))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
