"""Cost of a second derivative (Hessian-vector product) through ``gcp.sqrtm(backward="exact")``.

Times, in interleaved rounds on B covariances of n = 196 samples:
- ``fwd+bwd``: forward and first derivative (the baseline);
- ``hvp``: forward, first derivative with ``create_graph=True``, and the derivative of
  ``⟨H, ∂L/∂X⟩`` (the closed-form second-order Daleckii–Krein backward);
- ``isqrtm hvp``: the same for 5 Newton–Schulz iterations, whose second derivative is autograd's.

    python benchmarks/bench_second_order.py [--dims 64 128 256] [--batch 32] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from tqdm import tqdm

import gcp
from gcp.bench import Report
from gcp.bench.timing import interleaved_ms, markdown_table, positive_int


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=positive_int, default=32)
    ap.add_argument("--dims", type=positive_int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--results", default="results", metavar="DIR",
                    help="write the table to DIR/bench_second_order-<date>.md (default: results/; '' to skip)")
    args = ap.parse_args(argv)
    report = Report("bench_second_order", args.results or None)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    gcp.set_finite_checks(False)
    rows = []
    for d in tqdm(args.dims, desc="bench_second_order", file=sys.stderr):
        g = torch.Generator().manual_seed(0)
        x = gcp.covariance(torch.randn(args.batch, d, 196, generator=g, dtype=dtype)).to(device)
        w = torch.randn(x.shape, generator=g, dtype=dtype).to(device)
        h = torch.randn(x.shape, generator=g, dtype=dtype).to(device)

        def first(fn):
            xi = x.detach().requires_grad_()
            (fn(xi) * w).sum().backward()

        def hvp(fn):
            xi = x.detach().requires_grad_()
            (gx,) = torch.autograd.grad((fn(xi) * w).sum(), xi, create_graph=True)
            torch.autograd.grad((gx * h).sum(), xi)

        t = interleaved_ms({"fb": lambda: first(gcp.sqrtm), "hvp": lambda: hvp(gcp.sqrtm),
                            "isqrt": lambda: hvp(gcp.isqrtm)}, device, args.repeats)
        ratio = [a / b for a, b in zip(t["hvp"], t["fb"])]
        rows.append([str(d), f"{statistics.median(t['fb']):.1f}", f"{statistics.median(t['hvp']):.1f}",
                     f"{statistics.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f})",
                     f"{statistics.median(t['isqrt']):.1f}"])
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    report.line(f"\nB={args.batch}, n=196, {args.dtype}, device={device}, threads={threads}; median of "
                f"{args.repeats} interleaved rounds\n")
    report.line(markdown_table(["d", "exact fwd+bwd ms", "exact hvp ms", "hvp ÷ fwd+bwd (min–max)",
                                "isqrtm(5) hvp ms"], rows))
    report.save(device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
