"""cuSOLVER's batched eigensolver against ``torch.linalg.eigh`` on a GPU, from the solver to a
training step.

Three sections, each timed in interleaved rounds in one process (ratios are per round, then the
median and min–max over rounds):

1. ``eigh`` alone: torch's vs ``gcp``'s batched solver, B ∈ --batches, d ∈ --dims, float32 and
   float64, with the batched solver's worst reconstruction error ‖VΛVᵀ − X‖/‖X‖ on that input.
2. GCP head forward+backward (B=--head-batch, 2048×14×14 features → d=256, 1000 classes):
   ``svd``/``exact`` and ``svd``/``pade`` with each solver, ``isqrt``, ``mpa``, and a GAP head.
   The issue's target: ``svd``/``exact`` within 1.2× of ``isqrt``.
3. A ResNet-50 SGD step at --train-batch, 224²: timm's resnet50 (GAP) and gcp_resnet50 heads.

Writes ``<results>/bench_gpu_eigh-<date>.md``, a CSV of every round and a PNG of section 1.

    python benchmarks/bench_gpu_eigh.py --device cuda
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from typing import Callable

import timm
import torch
from torch import nn
from tqdm import tqdm

import gcp
import gcp.zoo
from gcp.bench import Report
from gcp.bench.timing import interleaved_ms, positive_int

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def ratio_text(a: list[float], b: list[float]) -> str:
    ratios = sorted(x / y for x, y in zip(a, b))
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}–{ratios[-1]:.2f})"


def with_backend(name: str, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with gcp.using_eigh_backend(name):
            return fn()
    return run


def spd_batch(batch: int, d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Covariances of 196 positions (a 14×14 map) plus a small ridge: the head's input."""
    f = torch.randn(batch, d, 196, device=device, dtype=torch.float64)
    x = f @ f.mT / 196 + 1e-3 * torch.eye(d, device=device, dtype=torch.float64)
    return x.to(dtype)


def eigh_section(args, device, report, raw) -> list[tuple[int, int, str, float]]:
    rows, speedups = [], []
    grid = [(b, d, dt) for dt in args.dtypes for d in args.dims for b in args.batches]
    for b, d, dt in tqdm(grid, desc="eigh", file=sys.stderr):
        x = spd_batch(b, d, DTYPES[dt], device)
        with gcp.using_eigh_backend("cusolver"):
            lam, vecs = gcp.eigh_solver.symmetric_eigh(x)
        recon = ((vecs.double() * lam.double().unsqueeze(-2)) @ vecs.double().mT - x.double())
        err = (recon.flatten(1).norm(dim=1) / x.double().flatten(1).norm(dim=1)).max().item()
        t = interleaved_ms({"torch": lambda: torch.linalg.eigh(x),
                            "cusolver": with_backend("cusolver", lambda: gcp.eigh_solver.symmetric_eigh(x))},
                           device, args.repeats)
        for name, values in t.items():
            raw.extend((("eigh", f"B={b} d={d} {dt}", name, i, v) for i, v in enumerate(values)))
        speed = statistics.median(a / c for a, c in zip(t["torch"], t["cusolver"]))
        speedups.append((b, d, dt, speed))
        rows.append([str(b), str(d), dt, f"{statistics.median(t['torch']):.2f}",
                     f"{statistics.median(t['cusolver']):.2f}", ratio_text(t["torch"], t["cusolver"]), f"{err:.1e}"])
    report.line("\n## 1. eigh of B matrices d×d: torch.linalg.eigh vs cusolverDnXsyevBatched\n")
    report.table(["B", "d", "dtype", "torch ms", "batched ms", "speed-up (min–max)", "batched ‖VΛVᵀ−X‖/‖X‖"], rows)
    return speedups


def head_section(args, device, report, raw) -> None:
    b, c = args.head_batch, 2048
    x = torch.randn(b, c, 14, 14, device=device)
    gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000)).to(device)

    def step(module: nn.Module) -> None:
        module(x.detach().requires_grad_()).sum().backward()

    heads = {
        "svd / exact, torch eigh": ("torch", dict(method="svd", backward="exact")),
        "svd / exact, batched eigh": ("cusolver", dict(method="svd", backward="exact")),
        "svd / pade, torch eigh": ("torch", dict(method="svd", backward="pade")),
        "svd / pade, batched eigh": ("cusolver", dict(method="svd", backward="pade")),
        "isqrt (5 it.)": ("torch", dict(method="isqrt", iters=5)),
        "mpa [5/5]": ("torch", dict(method="mpa")),
    }
    fns: dict[str, Callable[[], object]] = {"GAP head": lambda: step(gap)}
    for name, (backend, cfg) in heads.items():
        head = gcp.GCPHead(c, 1000, reduced_dim=256, **cfg).to(device)
        fns[name] = with_backend(backend, lambda h=head: step(h))
    t = interleaved_ms(fns, device, args.repeats * 2)
    for name, values in t.items():
        raw.extend((("head", f"B={b} d=256", name, i, v) for i, v in enumerate(values)))
    rows = [[name, f"{statistics.median(v):.2f}", ratio_text(v, t["isqrt (5 it.)"])] for name, v in t.items()]
    report.line(f"\n## 2. GCP head forward+backward, B={b}, 2048×14×14 → 256, 1000 classes, float32 input\n")
    report.table(["head", "ms (median)", "÷ isqrt head (min–max)"], rows)
    for solver in ("torch", "batched"):
        report.line(f"- svd / exact ÷ isqrt with {solver} eigh: "
                    f"{ratio_text(t[f'svd / exact, {solver} eigh'], t['isqrt (5 it.)'])} (target ≤ 1.2)")


def train_section(args, device, report, raw) -> None:
    x = torch.randn(args.train_batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (args.train_batch,), device=device)
    models = {
        "timm resnet50 (GAP)": ("torch", lambda: timm.create_model("resnet50")),
        "gcp_resnet50 isqrt": ("torch", lambda: gcp.zoo.create_model("gcp_resnet50", method="isqrt")),
        "gcp_resnet50 svd / exact, torch eigh": (
            "torch", lambda: gcp.zoo.create_model("gcp_resnet50", method="svd", backward="exact")),
        "gcp_resnet50 svd / exact, batched eigh": (
            "cusolver", lambda: gcp.zoo.create_model("gcp_resnet50", method="svd", backward="exact")),
    }
    fns = {}
    for name, (backend, make) in models.items():
        torch.manual_seed(0)
        model = make().to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def sgd_step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        fns[name] = with_backend(backend, sgd_step)
    t = interleaved_ms(fns, device, args.repeats)
    for name, values in t.items():
        raw.extend((("train", f"B={args.train_batch} 224", name, i, v) for i, v in enumerate(values)))
    base = t["timm resnet50 (GAP)"]
    rows = [[name, f"{statistics.median(v):.1f}", f"{args.train_batch * 1e3 / statistics.median(v):.0f}",
             ratio_text(v, base)] for name, v in t.items()]
    report.line(f"\n## 3. ResNet-50 SGD step, batch {args.train_batch}, 224², float32\n")
    report.table(["model", "ms / step", "images/s", "÷ resnet50 step (min–max)"], rows)


def plot(speedups, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, dt in zip(axes, ("float32", "float64")):
        for b in sorted({s[0] for s in speedups}):
            pts = [(d, s) for bb, d, dd, s in speedups if bb == b and dd == dt]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"B={b}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xlabel="d", title=dt, yscale="log")
    axes[0].set_ylabel("torch eigh time ÷ batched eigh time")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", type=positive_int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--dims", type=positive_int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=sorted(DTYPES))
    ap.add_argument("--head-batch", type=positive_int, default=64)
    ap.add_argument("--train-batch", type=positive_int, default=64)
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--sections", nargs="+", default=["eigh", "head", "train"], choices=["eigh", "head", "train"])
    ap.add_argument("--results", default="results", metavar="DIR")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        ap.error("--device: this benchmark compares CUDA solvers and needs a CUDA device")
    reason = gcp.eigh_solver._cusolver.unavailable_reason()
    if reason:
        ap.error(f"the batched solver cannot run: {reason}")
    gcp.set_finite_checks(False)
    report = Report("bench_gpu_eigh", args.results or None)
    raw: list[tuple] = []
    speedups = eigh_section(args, device, report, raw) if "eigh" in args.sections else []
    if "head" in args.sections:
        head_section(args, device, report, raw)
    if "train" in args.sections:
        train_section(args, device, report, raw)
    path = report.save(device)
    if path:
        stem = os.path.splitext(path)[0]
        with open(stem + ".csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("section", "config", "arm", "round", "ms"), *raw])
        if speedups:
            plot(speedups, stem + ".png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
