"""``gcp.mpa_sqrtm`` / ``gcp.mtp_sqrtm`` against the published MPA-Lya / MTP-Lya algorithm.

The baseline is the ICLR 2022 algorithm as its reference code structures it, written out here:
``Z = I − X/‖X‖_F``; the powers ``Z^k`` accumulated one matmul at a time into the Taylor sum
(MTP, degree 10) or into ``P`` and ``Q`` (MPA, [5/5]) followed by a general LU solve
``Q⁻¹P``; a backward of 8 coupled sign iterations with six matmuls each. gcp evaluates the
polynomials by Paterson–Stockmeyer (5 and 4 matmuls), solves with Cholesky, and needs five
matmuls per sign iteration. Forward+backward times are taken in interleaved rounds and
reported as the median and min–max of the per-round ratios gcp / baseline.

Runs with one CPU thread by default: the baseline's batched LU of 256×256 matrices hangs or
fails with two threads in some MKL builds (the reason gcp does not use it).

    python benchmarks/bench_approximants.py                     # B=32, d=256, float32
    python benchmarks/bench_approximants.py --dims 64 128 256 --device cuda
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
from gcp.series import pade_coefficients, taylor_coefficients


class _PublishedLya(torch.autograd.Function):
    """The published structure: accumulated powers, LU solve, six-matmul sign iterations."""

    @staticmethod
    def forward(ctx, x, kind):
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand_as(x)
        norm = torch.linalg.matrix_norm(x)[..., None, None]
        z = eye - x / norm
        if kind == "mtp":
            coefs = taylor_coefficients("sqrt1m", 10)
            root, power = coefs[0] * eye, z
            for c in coefs[1:]:
                root = root + c * power
                power = power @ z
        else:
            p, q = pade_coefficients("sqrt1m", 5, 5)
            num, den, power = p[0] * eye, q[0] * eye, z
            for cp, cq in zip(p[1:], q[1:]):
                num = num + cp * power
                den = den + cq * power
                power = power @ z
            root = torch.linalg.solve(den, num)
        ctx.save_for_backward(root, norm)
        return root * norm.sqrt()

    @staticmethod
    def backward(ctx, grad):
        b, norm = ctx.saved_tensors
        eye3 = 3.0 * torch.eye(b.shape[-1], dtype=b.dtype, device=b.device)
        c = grad / norm.sqrt()
        for _ in range(8):
            b2 = b @ b
            c = 0.5 * (c @ (eye3 - b2) - b2 @ c + b @ c @ b)
            b = 0.5 * b @ (eye3 - b2)
        return 0.5 * c, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=positive_int, default=32)
    ap.add_argument("--dims", type=positive_int, nargs="+", default=[256])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=positive_int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--results", default="results", metavar="DIR",
                    help="write the table to DIR/bench_approximants-<date>.md (default: results/; '' to skip)")
    args = ap.parse_args(argv)
    report = Report("bench_approximants", args.results or None)
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    gcp.set_finite_checks(False)  # time the maths, as the baseline has no checks
    rows = []
    for d in tqdm(args.dims, desc="bench_approximants", file=sys.stderr):
        g = torch.Generator().manual_seed(0)
        x = gcp.covariance(torch.randn(args.batch, d, 196, generator=g, dtype=dtype)).to(device)
        grad = torch.randn(x.shape, generator=g, dtype=dtype).to(device)
        grad = 0.5 * (grad + grad.transpose(-1, -2))

        def fwd_bwd(fn):
            xi = x.detach().requires_grad_()
            fn(xi).backward(grad)
            return xi.grad

        ours = {"mpa": gcp.mpa_sqrtm, "mtp": gcp.mtp_sqrtm}
        for kind, fn in ours.items():
            ref_grad = fwd_bwd(lambda a, k=kind: _PublishedLya.apply(a, k))
            rel = ((fwd_bwd(fn) - ref_grad).norm() / ref_grad.norm()).item()
            t = interleaved_ms(
                {"published": lambda k=kind: fwd_bwd(lambda a: _PublishedLya.apply(a, k)),
                 "gcp": lambda f=fn: fwd_bwd(f)},
                device, args.repeats)
            ratios = sorted(a / b for a, b in zip(t["gcp"], t["published"]))
            rows.append([str(d), kind, f"{statistics.median(t['published']):.1f}",
                         f"{statistics.median(t['gcp']):.1f}", f"{statistics.median(ratios):.2f}",
                         f"{ratios[0]:.2f}–{ratios[-1]:.2f}", f"{rel:.1e}"])
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    report.line(f"\nB={args.batch}, n=196, {args.dtype}, device={device}, threads={threads}; forward+backward, "
          f"{args.repeats} interleaved rounds\n")
    report.line(markdown_table(["d", "route", "published ms", "gcp ms", "gcp/published (median)", "min–max",
                          "grad rel. diff"], rows))
    report.save(torch.device(args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
