"""The four measurements of ``python -m gcp.compare``; each returns flat records.

A record is ``dict(section, mode, dtype, case, metric, value)``; the report pivots them.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from gcp.bench.timing import interleaved_ms, median_ratio
from gcp.pooling import GCPHead
from gcp.spectral import sqrtm
from gcp.train.distributed import DistInfo
from gcp.train.loop import evaluate, train_one_epoch
from gcp.whitening import ZCAWhitening

from .routes import HEAD_CONFIG, route
from .suites import F64, degenerate_suite, geometric_spectrum, random_covariance

Record = dict[str, Any]
Progress = Callable[[], None]


def _rec(section: str, mode: str, dtype: str, case: str, metric: str, value: float) -> Record:
    return dict(section=section, mode=mode, dtype=dtype, case=case, metric=metric, value=float(value))


def _grad(fn: Callable[[Tensor], Tensor], x: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    xi = x.detach().clone().requires_grad_()
    out = fn(xi)
    out.backward(g)
    return out.detach(), xi.grad


def _rel(a: Tensor, b: Tensor) -> float:
    err = ((a.double() - b).norm() / b.norm()).item()
    return err if math.isfinite(err) else float("inf")


DTYPES = {"float32": torch.float32, "float64": F64}


# ----------------------------------------------------------------------------- 1. accuracy
def accuracy(modes: list[str], dtypes: list[str], d: int, ratios: Iterable[float], tick: Progress,
             device: torch.device = torch.device("cpu")) -> list[Record]:
    """Forward and gradient relative error vs the float64 ``exact`` reference, per eigengap and on
    random covariances with fewer (n = d/2) and more (n = 4d) samples than dimensions."""
    cases = {f"ratio={r:g}": geometric_spectrum(r, d) for r in ratios}
    cases["cov n<d"] = random_covariance(d, max(2, d // 2))
    cases["cov n>d"] = random_covariance(d, 4 * d)
    out: list[Record] = []
    for case, x64 in cases.items():
        g64 = torch.randn(x64.shape, generator=torch.Generator().manual_seed(1), dtype=F64).to(device)
        x64 = x64.to(device)
        ref_out, ref_grad = _grad(sqrtm, x64, g64)
        for mode in modes:
            for dt in dtypes:
                y, gx = _grad(route(mode), x64.to(DTYPES[dt]), g64.to(DTYPES[dt]))
                out.append(_rec("accuracy", mode, dt, case, "forward_rel_err", _rel(y, ref_out)))
                out.append(_rec("accuracy", mode, dt, case, "grad_rel_err", _rel(gx, ref_grad)))
            tick()
    return out


# ----------------------------------------------------------------------------- 2. stability
def stability(modes: list[str], dtypes: list[str], tick: Progress,
              device: torch.device = torch.device("cpu")) -> list[Record]:
    """Fraction of degenerate inputs with a non-finite gradient, and the largest finite gradient
    norm relative to the incoming gradient's."""
    suite = degenerate_suite()
    out: list[Record] = []
    for mode in modes:
        for dt in dtypes:
            bad, norms = 0, []
            for x in suite.values():
                xc = x.to(device, DTYPES[dt])
                g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64).to(device, DTYPES[dt])
                _, gx = _grad(route(mode), xc, g)
                if torch.isfinite(gx).all():
                    norms.append((gx.double().norm() / g.double().norm()).item())
                else:
                    bad += 1
            out.append(_rec("stability", mode, dt, "suite", "nonfinite_fraction", bad / len(suite)))
            out.append(_rec("stability", mode, dt, "suite", "max_grad_norm", max(norms) if norms else float("nan")))
        tick()
    return out


# ----------------------------------------------------------------------------- 3. speed
def speed(modes: list[str], sizes: Iterable[int], batch: int, dtype: str, repeats: int, device: torch.device,
          tick: Progress) -> list[Record]:
    """Forward and forward+backward milliseconds per batch of covariances (n = 196 samples), and
    their ratio to ``torch.linalg.eigh`` forward in the same interleaved rounds."""
    out: list[Record] = []
    for d in sizes:
        g = torch.Generator().manual_seed(3)
        feats = torch.randn(batch, d, 196, generator=g, dtype=DTYPES[dtype])
        x = (feats @ feats.transpose(-1, -2) / 196).to(device)
        gy = torch.randn(x.shape, generator=g, dtype=DTYPES[dtype]).to(device)
        for mode in modes:
            fn = route(mode)

            def fwd_bwd(fn: Callable = fn) -> None:
                xi = x.detach().requires_grad_()
                fn(xi).backward(gy)

            t = interleaved_ms({"eigh": lambda: torch.linalg.eigh(x), "fwd": lambda fn=fn: fn(x), "fb": fwd_bwd},
                               device, repeats)
            case = f"d={d}"
            out += [_rec("speed", mode, dtype, case, "eigh_ms", statistics.median(t["eigh"])),
                    _rec("speed", mode, dtype, case, "fwd_ms", statistics.median(t["fwd"])),
                    _rec("speed", mode, dtype, case, "fwd_bwd_ms", statistics.median(t["fb"])),
                    _rec("speed", mode, dtype, case, "fwd_over_eigh", median_ratio(t["fwd"], t["eigh"])),
                    _rec("speed", mode, dtype, case, "fwd_bwd_over_eigh", median_ratio(t["fb"], t["eigh"]))]
            ratios = [a / b for a, b in zip(t["fb"], t["eigh"])]  # per round: the spread of the ratio
            out += [_rec("speed", mode, dtype, case, "fwd_bwd_over_eigh_min", min(ratios)),
                    _rec("speed", mode, dtype, case, "fwd_bwd_over_eigh_max", max(ratios))]
            tick()
    return out


# ----------------------------------------------------------------------------- 4. training
def load_digits_split(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's ``load_digits`` (1797 8×8 handwritten digits shipped inside the wheel: real
    data, offline, reproducible), scaled to [0, 1], split 80/20 with a fixed permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(y))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


class DigitsNet(nn.Module):
    """Two 3×3 conv blocks (8×8 maps, 32 channels), then either a GCP head (d = 16 from 64
    positions) or, with ``zca_groups``, global average pooling, ZCA whitening of the 32 pooled
    features in ``zca_groups`` groups, and a linear classifier."""

    def __init__(self, method: str = "svd", backward: str = "exact", zca_groups: int = 0,
                 zca_compute: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                      nn.ReLU(inplace=True), nn.Conv2d(16, 32, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        self.head: nn.Module = (
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), ZCAWhitening(32, groups=zca_groups, backward=backward,
                                                                   compute_dtype=zca_compute),
                          nn.Linear(32, 10)) if zca_groups
            else GCPHead(32, 10, reduced_dim=16, method=method, backward=backward))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _train(model: nn.Module, data: tuple[Tensor, Tensor, Tensor, Tensor], epochs: int, seed: int,
           lr: float = 0.05, batch: int = 64, device: torch.device = torch.device("cpu")) -> list[dict[str, float]]:
    from torch.utils.data import DataLoader, TensorDataset

    xtr, ytr, xte, yte = data
    info = DistInfo(device=device)
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    test = DataLoader(TensorDataset(xte, yte), batch_size=256)
    history = []
    for epoch in range(epochs):
        torch.manual_seed(seed * 1000 + epoch)  # the shuffle of each epoch depends on (seed, epoch) only
        train = DataLoader(TensorDataset(xtr, ytr), batch_size=batch, shuffle=True, drop_last=True)
        stats = train_one_epoch(model, train, opt, info, progress=False)
        metrics = evaluate(model, test, info, progress=False)
        history.append(dict(epoch=epoch, train_loss=stats.loss, top1=metrics["top1"],
                            seconds=stats.seconds, nonfinite_steps=stats.nonfinite_steps))
    return history


def training(modes: list[str], epochs: int, seeds: list[int], tick: Progress,
             device: torch.device = torch.device("cpu")) -> list[Record]:
    """A small GCP network on ``load_digits`` per mode and seed: accuracy per epoch, time, and the
    steps skipped because the gradient was not finite."""
    data = load_digits_split()
    out: list[Record] = []
    for mode in modes:
        method, backward = HEAD_CONFIG[mode]
        for seed in seeds:
            torch.manual_seed(seed)
            history = _train(DigitsNet(method, backward), data, epochs, seed, device=device)
            for h in history:
                case = f"seed={seed},epoch={h['epoch']}"
                out += [_rec("training", mode, "float32", case, "top1", h["top1"]),
                        _rec("training", mode, "float32", case, "train_loss", h["train_loss"]),
                        _rec("training", mode, "float32", case, "seconds", h["seconds"]),
                        _rec("training", mode, "float32", case, "nonfinite_steps", h["nonfinite_steps"])]
            tick()
    return out


def zca(modes: list[str], group_dims: Iterable[int], epochs: int, tick: Progress, batch: int = 16,
        seeds: Iterable[int] = (0,), device: torch.device = torch.device("cpu")) -> list[Record]:
    """Scaled-down SVD-PI finding (Wang et al., NeurIPS 2019): ZCA whitening in groups of ``d``
    channels, trained with each backward and each seed. With a batch of 16, a group's covariance
    has rank ``<= 15``, so for ``d >= 16`` its spectrum holds a cluster of (numerically) repeated
    eigenvalues ``≈ ε`` — the near-degeneracy that, in the paper's ResNets, grows with ``d``.
    A run *fails* when any step has a non-finite gradient (the step is skipped and counted)."""
    data = load_digits_split()
    out: list[Record] = []
    for d in group_dims:
        for mode in modes:
            for seed in seeds:
                torch.manual_seed(seed)
                start = time.perf_counter()
                history = _train(DigitsNet(backward=mode, zca_groups=32 // d), data, epochs, seed=seed, batch=batch,
                                 device=device)
                skipped = sum(h["nonfinite_steps"] for h in history)
                case = f"d={d},seed={seed}"
                out += [_rec("zca", mode, "float32", case, "nonfinite_steps", skipped),
                        _rec("zca", mode, "float32", case, "success", float(skipped == 0)),
                        _rec("zca", mode, "float32", case, "final_top1", history[-1]["top1"]),
                        _rec("zca", mode, "float32", case, "seconds", time.perf_counter() - start)]
                tick()
    return out
