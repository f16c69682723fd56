"""Peak memory of forward+backward for every square-root route, each in a fresh process.

For a batch of B float32 covariances (n = 196 samples, d channels), each route runs one
forward and one backward in a new Python process; the figure is the process's peak resident
memory (``ru_maxrss``) minus its resident memory just before the call, with the input already
built. A fresh process per route keeps one route's freed buffers from hiding another's peak.
Reported as median and min–max over ``--runs`` processes.

    python benchmarks/bench_memory.py                       # B=32, d=256, 3 runs per route
    python benchmarks/bench_memory.py --dim 128 --runs 5 --csv memory.csv
    python benchmarks/bench_memory.py --device cuda         # peak CUDA memory instead of RSS
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys

from tqdm import tqdm

# Baselines written the plain way, for scale: autograd through the iterations / through eigh;
# and what computing "exact" in float32 (instead of the default float64) would save.
BASELINES = ("autograd NS-5", "naive eigh+autograd", "exact (compute f32)")

_CHILD = r"""
import json, resource, sys
import torch
import gcp
from gcp.compare.routes import route

torch.set_num_threads({threads})
name, device = {name!r}, torch.device({device!r})
gcp.set_finite_checks(False)

def autograd_ns(x, iters=5):
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    tr = torch.diagonal(x, dim1=-2, dim2=-1).sum(-1)[..., None, None]
    y, z = x / tr, eye.expand_as(x)
    for _ in range(iters):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * tr.sqrt()

def naive(x):
    lam, v = torch.linalg.eigh(x)
    return (v * lam.clamp_min(0).sqrt().unsqueeze(-2)) @ v.transpose(-1, -2)

extra = {{"autograd NS-5": autograd_ns, "naive eigh+autograd": naive,
         "exact (compute f32)": lambda x: gcp.sqrtm(x, compute_dtype=torch.float32)}}
fn = extra.get(name) or route(name)
g = torch.Generator().manual_seed(0)
x = gcp.covariance(torch.randn({batch}, {dim}, 196, generator=g)).to(device).requires_grad_()
grad = torch.randn(x.shape, generator=g).to(device)

def rss_kb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024

if device.type == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(x).backward(grad); torch.cuda.synchronize()
    peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
else:
    base = rss_kb()
    fn(x).backward(grad)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps({{"peak_mb": peak_mb}}))
"""


def measure(name: str, args: argparse.Namespace) -> float:
    code = _CHILD.format(threads=args.threads, name=name, device=args.device,
                         batch=args.batch, dim=args.dim)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"route {name!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def main(argv: list[str] | None = None) -> int:
    import torch

    from gcp.bench import Report
    from gcp.bench.timing import markdown_table, positive_int
    from gcp.compare.routes import ALL_ROUTES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=positive_int, default=32)
    ap.add_argument("--dim", type=positive_int, default=256)
    ap.add_argument("--runs", type=positive_int, default=3, help="fresh processes per route")
    ap.add_argument("--routes", default="all", help="comma-separated route names (default: all + baselines)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per process")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--results", default="results", metavar="DIR",
                    help="write the table to DIR/bench_memory-<date>.md (default: results/; '' to skip)")
    args = ap.parse_args(argv)
    report = Report("bench_memory", args.results or None)
    names = list(BASELINES) + list(ALL_ROUTES) if args.routes == "all" else [n.strip() for n in args.routes.split(",")]
    unknown = [n for n in names if n not in BASELINES and n not in ALL_ROUTES]
    if unknown or not names:  # before any process is started
        ap.error(f"unknown route(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(BASELINES + ALL_ROUTES)}")
    if not args.timeout > 0:
        ap.error("--timeout must be positive")
    results: dict[str, list[float]] = {}
    for name in tqdm(names, desc="bench_memory", file=sys.stderr):
        results[name] = [measure(name, args) for _ in range(args.runs)]
    unit = "peak CUDA memory above the input" if args.device.startswith("cuda") else "peak RSS above the input"
    report.line(f"\nB={args.batch}, d={args.dim}, n=196, float32 input, device={args.device}; {unit}, "
          f"one fresh process per run, {args.runs} runs\n")
    rows = [[n, f"{statistics.median(v):.0f}", f"{min(v):.0f}–{max(v):.0f}"] for n, v in results.items()]
    report.line(markdown_table(["route", "median MB", "min–max MB"], rows))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["route", "run", "peak_mb"])
            for n, v in results.items():
                writer.writerows([n, i, f"{m:.1f}"] for i, m in enumerate(v))
    report.save(torch.device(args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
