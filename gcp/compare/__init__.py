"""``python -m gcp.compare`` (console script ``gcp-compare``): which backward should I use?

Measures every backward mode of :data:`gcp.BACKWARDS` plus the iterative ``isqrt``, ``mpa`` and
``mtp`` routes on this machine:

1. gradient accuracy vs. the float64 ``exact`` reference as the eigengap shrinks, and on real
   covariances with fewer / more samples than dimensions;
2. stability on a degenerate suite (non-finite fraction, largest gradient norm), float32/float64;
3. speed of forward and forward+backward for several ``d``, as multiples of ``eigh`` forward;
4. training of a small GCP network on scikit-learn's ``load_digits`` per mode, and the scaled-down
   ZCA-whitening experiment of Wang et al. (NeurIPS 2019).

Writes ``report.md``, ``results.csv``, ``results.json`` and PNG plots to ``--out`` and prints a
summary table. ``--quick`` finishes in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

import torch
from tqdm import tqdm

from ..backward import BACKWARDS
from ..errors import GCPError
from . import sections
from .report import terminal_summary, write_all
from .routes import ALL_ROUTES, parse_routes

SECTIONS = ("accuracy", "stability", "speed", "training", "zca")
QUICK = dict(dim=8, ratios=(0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999), sizes=(32, 64), batch=16,
             repeats=3, epochs=3, seeds=(0,), zca_dims=(4, 8, 16, 32), zca_epochs=3)
FULL = dict(dim=32, ratios=QUICK["ratios"], sizes=(64, 128, 256), batch=32, repeats=5, epochs=10, seeds=(0, 1, 2),
            zca_dims=(4, 8, 16, 32), zca_epochs=8)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gcp-compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, few epochs: a few minutes on 2 CPU cores")
    p.add_argument("--modes", default="all", help=f"comma-separated subset of {', '.join(ALL_ROUTES)} (default all)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--dtypes", default="float32,float64", help="input dtypes for accuracy and stability")
    p.add_argument("--dim", type=int, default=None, help="matrix size of the accuracy section")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="matrix sizes of the speed section")
    p.add_argument("--batch", type=int, default=None, help="batch of matrices in the speed section")
    p.add_argument("--speed-dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="training epochs per mode")
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--device", default="cpu", help="device of the speed section (cpu, cuda)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="output folder (default runs/compare-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace the report already in --out")
    return p


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    for key in ("dim", "sizes", "batch", "repeats", "epochs", "seeds"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    args.ratios, args.zca_dims = base["ratios"], base["zca_dims"]
    args.zca_epochs = args.epochs if args.epochs != base["epochs"] else base["zca_epochs"]
    try:
        args.mode_list = parse_routes(args.modes)
    except GCPError as exc:
        parser.error(str(exc))
    args.section_list = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.section_list if s not in SECTIONS]
    if bad or not args.section_list:
        parser.error(f"unknown section(s) {', '.join(bad) or '(none)'}; valid: {', '.join(SECTIONS)}")
    args.dtype_list = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not args.dtype_list or any(d not in sections.DTYPES for d in args.dtype_list):
        parser.error(f"--dtypes must list float32 and/or float64, got {args.dtypes!r}")
    if args.dim < 2 or min(args.sizes) < 2 or args.batch < 1 or args.repeats < 1 or args.epochs < 1:
        parser.error("--dim and --sizes must be >= 2; --batch, --repeats and --epochs >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    args.out = args.out or os.path.join("runs", time.strftime("compare-%Y%m%d-%H%M%S"))
    if os.path.exists(os.path.join(args.out, "report.md")) and not args.overwrite:
        parser.error(f"{args.out} already holds a report; pass --overwrite or choose another --out")
    return args


def run(args: argparse.Namespace) -> list[dict]:
    modes, secs = args.mode_list, args.section_list
    zca_modes = [m for m in modes if m in BACKWARDS] or ["ed", "exact", "pi"]
    steps = {
        "accuracy": (len(args.ratios) + 2) * len(modes), "stability": len(modes),
        "speed": len(args.sizes) * len(modes), "training": len(modes) * len(args.seeds),
        "zca": len(args.zca_dims) * len(zca_modes),
    }
    bar = tqdm(total=sum(steps[s] for s in secs), desc="gcp-compare", file=sys.stderr)
    tick = lambda: bar.update()  # noqa: E731
    records: list[dict] = []
    if "accuracy" in secs:
        records += sections.accuracy(modes, args.dtype_list, args.dim, args.ratios, tick)
    if "stability" in secs:
        records += sections.stability(modes, args.dtype_list, tick)
    if "speed" in secs:
        records += sections.speed(modes, args.sizes, args.batch, args.speed_dtype, args.repeats,
                                  torch.device(args.device), tick)
    if "training" in secs:
        records += sections.training(modes, args.epochs, list(args.seeds), tick)
    if "zca" in secs:
        records += sections.zca(zca_modes, args.zca_dims, args.zca_epochs, tick)
    bar.close()
    return records


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    records = run(args)
    config = dict(quick=args.quick, modes=",".join(args.mode_list), dim=args.dim, sizes=list(args.sizes),
                  batch=args.batch, speed_dtype=args.speed_dtype, epochs=args.epochs, seeds=list(args.seeds),
                  device=args.device, threads=torch.get_num_threads(), torch=torch.__version__)
    paths = write_all(records, config, args.out)
    print("\n" + terminal_summary(records))
    print(f"\n{len(records)} measurements in {time.perf_counter() - start:.0f} s; wrote:\n  " + "\n  ".join(paths))
    return 0


__all__ = ["main", "run", "parse", "SECTIONS"]
