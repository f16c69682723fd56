"""Forward+backward time of the GCP head per method, as a ratio to a global-average-pooling head.

Input: a ResNet-50-sized feature batch (B=32, 2048×14×14); the GCP head reduces to 256 channels
(1×1 conv + BN + ReLU), pools the covariance, normalises it and classifies 32896 features into
1000 classes. The baseline is timm's idiom for ResNet-50: global average pooling + a linear
2048→1000 classifier. Both run in the same interleaved rounds.

    python benchmarks/bench_head.py [--batch 32] [--repeats 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch import nn
from tqdm import tqdm

import gcp
from gcp.bench import Report
from gcp.bench.timing import interleaved_ms, markdown_table


def configs() -> list[tuple[str, dict]]:
    out = [(f"svd / {b}", dict(method="svd", backward=b)) for b in gcp.BACKWARDS if b != "ed"]
    out += [("isqrt (5 it.)", dict(method="isqrt", iters=5)), ("mpa [5/5]", dict(method="mpa")),
            ("mtp (10)", dict(method="mtp")), ("none (plain covariance)", dict(method="none"))]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=2048)
    ap.add_argument("--size", type=int, default=14)
    ap.add_argument("--reduced-dim", type=int, default=256)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--results", default="results", metavar="DIR",
                    help="write the table to DIR/bench_head-<date>.md (default: results/; '' to skip)")
    args = ap.parse_args(argv)
    report = Report("bench_head", args.results or None)
    device = torch.device(args.device)
    gcp.set_finite_checks(False)
    x = torch.randn(args.batch, args.channels, args.size, args.size, device=device)
    gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(args.channels, args.classes)).to(device)

    def step(module: nn.Module) -> None:
        xi = x.detach().requires_grad_()
        module(xi).sum().backward()

    timings = []
    for name, cfg in tqdm(configs(), desc="bench_head", file=sys.stderr):
        head = gcp.GCPHead(args.channels, args.classes, reduced_dim=args.reduced_dim, **cfg).to(device)
        # the GAP head is ~50× cheaper and noisier: time it several times per round
        t = interleaved_ms(
            {"gap": lambda: [step(gap) for _ in range(4)], "gcp": lambda h=head: step(h)}, device, args.repeats
        )
        timings.append((name, [v / 4 for v in t["gap"]], t["gcp"]))
    # one GAP figure pooled over every round of the run: a ~20 ms step is too noisy per config
    gap_ms = statistics.median(v for _, gaps, _ in timings for v in gaps)
    rows = [[name, f"{statistics.median(g):.1f}", f"{statistics.median(g) / gap_ms:.1f}"] for name, _, g in timings]
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    report.line(f"\nB={args.batch}, {args.channels}×{args.size}×{args.size} → {args.reduced_dim}, "
                f"{args.classes} classes, device={device}, threads={threads}; median of {args.repeats} "
                "interleaved rounds, float32 input\n")
    report.line(f"GAP head fwd+bwd: {gap_ms:.1f} ms (median over all rounds)\n")
    report.line(markdown_table(["GCP head", "fwd+bwd ms", "÷ GAP head"], rows))
    report.save(torch.device(args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
