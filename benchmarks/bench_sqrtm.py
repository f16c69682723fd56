"""Speed of every square-root route, as ratios to ``torch.linalg.eigh`` measured in the same run.

For a batch of B covariance matrices (n = 196 samples, as a 14×14 feature map) and each d and
dtype, times the forward and the forward+backward of ``gcp.sqrtm`` with every backward mode,
``gcp.isqrtm``, ``gcp.mpa_sqrtm`` and ``gcp.mtp_sqrtm``, and reports them as ratios to
(a) ``torch.linalg.eigh`` forward alone and (b) a naive square root through ``eigh`` + autograd.

    python benchmarks/bench_sqrtm.py                      # B=32, d=64,128,256, float32+float64
    python benchmarks/bench_sqrtm.py --sizes 64 --repeats 3 --csv out.csv
    python benchmarks/bench_sqrtm.py --device cuda
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from typing import Callable

import torch
from tqdm import tqdm

import gcp
from gcp.bench import Report
from gcp.bench.timing import interleaved_ms, markdown_table, median_ratio
from gcp.compare.routes import ALL_ROUTES, route


def naive_sqrtm(x: torch.Tensor) -> torch.Tensor:
    lam, v = torch.linalg.eigh(x)
    return (v * lam.clamp_min(0).sqrt().unsqueeze(-2)) @ v.transpose(-1, -2)


def routes(dtype: torch.dtype) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    r: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"naive eigh+autograd": naive_sqrtm}
    for name in ALL_ROUTES:
        r[f"sqrtm[{name}]" if name in gcp.BACKWARDS else f"{name} (default options)"] = route(name)
    if dtype != torch.float64:  # the cost of the default float64 compute dtype
        r["sqrtm[exact], compute f32"] = lambda x: gcp.sqrtm(x, compute_dtype=torch.float32)
    r["sqrtm[exact], value checks on"] = _with_checks(gcp.sqrtm)  # the NaN/Inf and PSD checks' cost
    return r


def _with_checks(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with gcp.finite_checks(True):
            return fn(x)

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--samples", type=int, default=196, help="feature positions per covariance")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--csv", default=None, help="also write the raw timings here")
    ap.add_argument("--results", default="results", metavar="DIR",
                    help="write the table to DIR/bench_sqrtm-<date>.md (default: results/; '' to skip)")
    args = ap.parse_args(argv)
    report = Report("bench_sqrtm", args.results or None)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gcp.set_finite_checks(False)  # time the maths; one route below times them with the checks on
    rows, records = [], []
    configs = [(d, dt) for dt in args.dtypes for d in args.sizes]
    bar = tqdm(total=sum(len(routes(getattr(torch, dt))) for _, dt in configs), desc="bench_sqrtm", file=sys.stderr)
    for d, dtname in configs:
        dtype = getattr(torch, dtname)
        g = torch.Generator().manual_seed(0)
        feats = torch.randn(args.batch, d, args.samples, generator=g, dtype=dtype)
        x = gcp.covariance(feats).to(dtype).to(device)
        grad = torch.randn(x.shape, generator=g, dtype=dtype).to(device)

        def fwd_bwd(fn):
            xi = x.detach().requires_grad_()
            fn(xi).backward(grad)

        for name, fn in routes(dtype).items():
            t = interleaved_ms(
                {
                    "eigh": lambda: torch.linalg.eigh(x),
                    "naive": lambda: fwd_bwd(naive_sqrtm),
                    "fwd": lambda fn=fn: fn(x),
                    "fb": lambda fn=fn: fwd_bwd(fn),
                },
                device,
                args.repeats,
            )
            bar.update()
            med = {k: statistics.median(v) for k, v in t.items()}
            rec = dict(
                d=d, dtype=dtname, route=name, eigh_ms=med["eigh"], fwd_ms=med["fwd"], fwd_bwd_ms=med["fb"],
                fwd_over_eigh=median_ratio(t["fwd"], t["eigh"]),
                fwd_bwd_over_eigh=median_ratio(t["fb"], t["eigh"]),
                fwd_bwd_over_naive=median_ratio(t["fb"], t["naive"]),
            )
            records.append(rec)
            rows.append([
                str(d), dtname, name, f"{rec['eigh_ms']:.1f}", f"{rec['fwd_ms']:.1f}", f"{rec['fwd_bwd_ms']:.1f}",
                f"{rec['fwd_over_eigh']:.2f}", f"{rec['fwd_bwd_over_eigh']:.2f}", f"{rec['fwd_bwd_over_naive']:.2f}",
            ])
    bar.close()
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    report.line(f"\nB={args.batch}, n={args.samples}, device={device}, threads={threads}; median of "
          f"{args.repeats} interleaved rounds; ratios are medians of per-round ratios to eigh forward "
          "and to the naive eigh+autograd fwd+bwd, same dtype\n")
    report.line(markdown_table(
        ["d", "dtype", "route", "eigh ms", "fwd ms", "fwd+bwd ms", "fwd/eigh", "fwd+bwd/eigh", "fwd+bwd/naive"],
        rows))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    report.save(torch.device(args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
