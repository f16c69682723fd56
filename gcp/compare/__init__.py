"""``python -m gcp.compare`` (console script ``gcp-compare``): which backward should I use?

Measures every backward mode of :data:`gcp.BACKWARDS` plus the iterative ``isqrt``, ``mpa`` and
``mtp`` routes on this machine:

1. gradient accuracy vs. the float64 ``exact`` reference as the eigengap shrinks, and on real
   covariances with fewer / more samples than dimensions;
2. stability on a degenerate suite (non-finite fraction, largest gradient norm), float32/float64;
3. speed of forward and forward+backward for several ``d``, as multiples of ``eigh`` forward;
4. what reaches the backbone: each route's gradient with respect to the covariance and to the
   features, as multiples of Newton–Schulz's, per head size d over 16 positions;
5. training in the GCP regime: a CNN on noisy 8×8 digits whose head pools a rank-deficient
   covariance (d channels over 16 positions), per route and head method, against global average
   pooling and the hybrid protocol, over seeds, with the significance threshold, the difference
   detected with 80% power, and which of the papers' claims reproduce;
6. a texture control whose classes differ only in cross-channel correlation (full run);
7. the scaled-down ZCA-whitening experiment of Wang et al. (NeurIPS 2019) (full run).

Writes ``report.md``, ``results.csv``, ``results.json`` and PNG plots to ``--out`` and prints a
summary table. ``--quick`` (``make demo``) takes about two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

import torch
from tqdm import tqdm

from gcp.bench.timing import positive_int

from ..backward import BACKWARDS
from ..errors import GCPError
from . import mechanism, sections, training
from .report import read_records, terminal_summary, write_all
from .routes import ALL_ROUTES, HEAD_CONFIG, METHOD_ARMS, POOLING, parse_routes

SECTIONS = ("accuracy", "stability", "speed", "mechanism", "training", "texture", "zca")
#: the arms of the training section in --quick: the baseline, Newton–Schulz and the exact gradient
QUICK_ARMS = ("gap", "isqrt", "exact")
#: the full run's arms: the routes the SVD-Padé paper compares, the baselines and the other heads
FULL_ARMS = ("gap", "isqrt", "exact", "taylor", "hybrid", "ed", "bcnn", "cbp", "logm")
QUICK = dict(dim=8, ratios=(0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999), sizes=(32, 64), batch=16,
             repeats=3, epochs=15, seeds=(0, 1, 2, 3, 4), train_dims=(training.DIM,), eval_every=15,
             zca_dims=(4, 32), zca_epochs=5, arms=QUICK_ARMS,
             sections=("accuracy", "stability", "speed", "mechanism", "training"))
FULL = dict(dim=32, ratios=QUICK["ratios"], sizes=(64, 128, 256), batch=32, repeats=5, epochs=15,
            seeds=(0, 1, 2, 3, 4), train_dims=training.DIMS, eval_every=5, zca_dims=(4, 8, 16, 32), zca_epochs=6,
            arms=FULL_ARMS, sections=SECTIONS)


#: what --recommend reads; every other option given with it is refused
RECOMMEND_OPTIONS = frozenset({"recommend", "dim", "batch", "repeats", "dtype", "device", "features", "evidence", "tol",
                               "threads", "out", "overwrite"})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gcp-compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes; training: gap, isqrt and exact at d = 64 over 5 seeds, evaluated once at the "
                        "end; no texture or ZCA section: about two minutes on 2 cores")
    p.add_argument("--modes", default="all", help=f"comma-separated subset of {', '.join(ALL_ROUTES)} (default all)")
    p.add_argument("--sections", default=None,
                   help=f"comma-separated subset of {', '.join(SECTIONS)} (default all; --quick: "
                        f"{','.join(QUICK['sections'])})")
    p.add_argument("--dtypes", default="float32,float64", help="input dtypes for accuracy and stability")
    p.add_argument("--dim", type=int, default=None, help="matrix size of the accuracy section")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="matrix sizes of the speed section")
    p.add_argument("--batch", type=int, default=None, help="batch of matrices in the speed section")
    p.add_argument("--speed-dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="training epochs per arm (default 15)")
    p.add_argument("--train-dims", type=int, nargs="+", default=None,
                   help="head sizes d of the training section, 2..256 (default 16 32 64; --quick 64); the "
                        "texture control uses the largest")
    p.add_argument("--eval-every", type=positive_int, default=None,
                   help="evaluate the test set every N epochs and after the last (default 5; --quick: the last only)")
    p.add_argument("--train-modes", default=None,
                   help="arms of the training section: routes, hybrid, and any head method by name ("
                        f"{', '.join(METHOD_ARMS)}) (default {','.join(FULL_ARMS)}; --quick "
                        f"{','.join(QUICK_ARMS)}; with --modes, those modes and gap, hybrid)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds of the training, texture and ZCA sections (default 0 1 2 3 4): every number gets "
                        "mean ± std")
    p.add_argument("--zca-epochs", type=int, default=None, help="epochs of each ZCA run (default 6; --quick 5)")
    p.add_argument("--zca-dims", type=int, nargs="+", default=None,
                   help="group sizes of the ZCA section, divisors of 32 (default 4 8 16 32; --quick 4 32)")
    p.add_argument("--device", default="cpu", help="device of every section (cpu, cuda); the report names it")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (an integer >= 1)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes that train the training and ZCA runs side by side, one thread each (default: "
                        "2 on a CPU with 2 or more cores, else 1; 1 on cuda). The numbers do not depend on it")
    p.add_argument("--out", default=None, help="output folder (default runs/compare-<timestamp>)")
    p.add_argument("--reference", default=None,
                   help="the --out folder of an earlier run (typically the full one): the report says which of "
                        "the papers' claims point the same way here and there")
    p.add_argument("--overwrite", action="store_true", help="replace the report already in --out")
    rec = p.add_argument_group("recommendation for your setting (--recommend; under a minute at d = 256 on 2 cores)")
    rec.add_argument("--recommend", action="store_true",
                     help="measure stability, gradient error and speed at --dim/--batch/--dtype/--device and "
                          "print one recommended route with the evidence (default d=256, batch 32, float32)")
    rec.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="input dtype (--recommend)")
    rec.add_argument("--features", default=None,
                     help="a .pt file with your features (N, C, H, W) / (N, C, M) or covariances (N, d, d): "
                          "the gradient error is measured at their spectrum (--recommend)")
    rec.add_argument("--evidence", default=None,
                     help="the --out folder of a gcp-compare run with the training section: its training table is "
                          "set next to the recommendation, and a disagreement is stated (--recommend)")
    rec.add_argument("--tol", type=float, default=1e-2,
                     help="largest gradient error vs the exact gradient a recommended route may have (default 1e-2)")
    return p


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.recommend:
        ignored = [a.option_strings[0] for a in parser._actions
                   if a.option_strings and a.dest not in RECOMMEND_OPTIONS | {"help"}
                   and getattr(args, a.dest) != a.default]
        if ignored:
            parser.error(f"{', '.join(ignored)} does not apply to --recommend (it takes "
                         f"{', '.join('--' + o.replace('_', '-') for o in sorted(RECOMMEND_OPTIONS - {'recommend'}))})")
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out} is an existing file, not a folder")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a device name (cpu, cuda, cuda:1)")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: gcp-compare runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.workers is None:
        args.workers = 1 if device.type == "cuda" else max(1, min(2, os.cpu_count() or 1))
    if args.recommend:
        args.dim = 256 if args.dim is None else args.dim
        args.batch = 32 if args.batch is None else args.batch
        args.repeats = 3 if args.repeats is None else args.repeats
        if args.dim < 2 or args.batch < 1 or args.repeats < 1 or not args.tol > 0:
            parser.error("--dim must be >= 2, --batch and --repeats >= 1, --tol > 0")
        if args.features is not None and not os.path.isfile(args.features):
            parser.error(f"--features: no such file {args.features!r}")
        if args.evidence is not None:
            from .recommend import load_training_evidence

            try:
                args.training_evidence = load_training_evidence(args.evidence)
            except GCPError as exc:
                parser.error(str(exc))
        _claim_out(parser, args, "recommend", "recommendation.md")
        return args
    base = QUICK if args.quick else FULL
    for key in ("dim", "sizes", "batch", "repeats", "epochs", "seeds", "train_dims", "eval_every"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    if len(set(args.train_dims)) != len(args.train_dims) or not all(2 <= d <= 256 for d in args.train_dims):
        parser.error(f"--train-dims must be distinct integers in 2..256, got {list(args.train_dims)}")
    args.train_dims = tuple(sorted(args.train_dims))
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds must be distinct non-negative integers, got {list(args.seeds)}")
    args.ratios = base["ratios"]
    args.zca_dims = tuple(args.zca_dims) if args.zca_dims else base["zca_dims"]
    if any(d < 1 or 32 % d for d in args.zca_dims):
        parser.error(f"--zca-dims must be divisors of 32 (the whitened features), got {list(args.zca_dims)}")
    args.zca_epochs = base["zca_epochs"] if args.zca_epochs is None else args.zca_epochs
    if args.zca_epochs < 1:
        parser.error(f"--zca-epochs must be >= 1, got {args.zca_epochs}")
    try:
        args.mode_list = parse_routes(args.modes)
    except GCPError as exc:
        parser.error(str(exc))
    args.arm_list = _arms(parser, args, base)
    sections_text = args.sections if args.sections is not None else ",".join(base["sections"])
    args.section_list = [s.strip() for s in sections_text.split(",") if s.strip()]
    bad = [s for s in args.section_list if s not in SECTIONS]
    if bad or not args.section_list:
        parser.error(f"unknown section(s) {', '.join(bad) or '(none)'}; valid: {', '.join(SECTIONS)}")
    args.dtype_list = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not args.dtype_list or any(d not in sections.DTYPES for d in args.dtype_list):
        parser.error(f"--dtypes must list float32 and/or float64, got {args.dtypes!r}")
    if args.dim < 2 or min(args.sizes) < 2 or args.batch < 1 or args.repeats < 1 or args.epochs < 1:
        parser.error("--dim and --sizes must be >= 2; --batch, --repeats and --epochs >= 1")
    args.reference_records = None
    if args.reference is not None:
        try:
            args.reference_records = read_records(args.reference, "--reference")
        except GCPError as exc:
            parser.error(str(exc))
    _claim_out(parser, args, "compare", "report.md")
    return args


def _arms(parser: argparse.ArgumentParser, args: argparse.Namespace, base: dict) -> list[str]:
    """The training section's arms: ``--train-modes`` as given, else the ``--modes`` that are heads
    plus both baselines, else the default of the run."""
    if args.train_modes is None:
        if args.modes == "all":
            return list(base["arms"])
        return [m for m in args.mode_list if m in HEAD_CONFIG] + list(training.BASELINES)
    arms = [a.strip() for a in args.train_modes.split(",") if a.strip()]
    valid = tuple(HEAD_CONFIG) + tuple(a for a in (*training.BASELINES, *METHOD_ARMS) if a not in HEAD_CONFIG)
    valid = tuple(dict.fromkeys(valid))
    unknown = [a for a in arms if a not in valid]
    if unknown or not arms or len(set(arms)) != len(arms):
        parser.error(f"--train-modes {args.train_modes!r}: give distinct names among {', '.join(valid)}"
                     + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return arms


def _claim_out(parser: argparse.ArgumentParser, args: argparse.Namespace, kind: str, marker: str) -> None:
    """Default ``--out`` to ``runs/<kind>-<time>``; refuse a folder that already holds ``marker``."""
    args.out = args.out or os.path.join("runs", time.strftime(f"{kind}-%Y%m%d-%H%M%S"))
    if os.path.exists(os.path.join(args.out, marker)) and not args.overwrite:
        parser.error(f"{args.out} already holds {marker}; pass --overwrite or choose another --out")


def run(args: argparse.Namespace) -> list[dict]:
    modes, secs = args.mode_list, args.section_list
    zca_modes = [m for m in modes if m in BACKWARDS] or ["ed", "exact", "pi"]
    steps = {
        "accuracy": (len(args.ratios) + 2) * len(modes), "stability": len(modes),
        "speed": len(args.sizes) * (len(modes) + len(POOLING)), "mechanism": len(mechanism.DIMS) * len(args.dtype_list),
        "training": len(args.arm_list) * len(args.train_dims) * len(args.seeds),
        "texture": len(training.TEXTURE_ARMS) * len(args.seeds),
        "zca": len(args.zca_dims) * len(zca_modes) * len(args.seeds),
    }
    bar = tqdm(total=sum(steps[s] for s in secs), desc="gcp-compare", file=sys.stderr)
    tick = lambda: bar.update()  # noqa: E731
    device = torch.device(args.device)  # every section runs there; the report's configuration names it
    measure = {
        "accuracy": lambda: sections.accuracy(modes, args.dtype_list, args.dim, args.ratios, tick, device),
        "stability": lambda: sections.stability(modes, args.dtype_list, tick, device),
        "speed": lambda: sections.speed(modes, args.sizes, args.batch, args.speed_dtype, args.repeats, device, tick)
        + sections.pooling_speed(list(POOLING), args.sizes, args.batch, args.speed_dtype, args.repeats, device, tick),
        "mechanism": lambda: mechanism.mechanism(modes, args.dtype_list, tick),
        "training": lambda: training.training(args.arm_list, args.epochs, list(args.seeds), tick, device,
                                              args.workers, args.train_dims, args.eval_every),
        "texture": lambda: training.texture(list(training.TEXTURE_ARMS), args.epochs, list(args.seeds), tick, device,
                                            args.workers, max(args.train_dims), args.eval_every),
        "zca": lambda: training.zca(zca_modes, args.zca_dims, args.zca_epochs, tick, seeds=list(args.seeds),
                                    device=device, workers=args.workers),
    }
    records: list[dict] = []
    for name in SECTIONS:  # in the report's order, whatever order --sections lists them in
        if name in secs:
            start = time.perf_counter()
            records += measure[name]()
            records.append(dict(section="timing", mode="all", dtype="", case=name, metric="seconds",
                                value=time.perf_counter() - start))
    bar.close()
    return records


def _recommend(args: argparse.Namespace) -> int:
    from .recommend import CANDIDATES, recommend, render

    dtype, device = sections.DTYPES[args.dtype], torch.device(args.device)
    start = time.perf_counter()
    bar = tqdm(total=3 * len(CANDIDATES), desc="gcp-compare --recommend", file=sys.stderr)
    try:
        best, evidence, source = recommend(args.dim, args.batch, dtype, device, args.features, args.tol,
                                           args.repeats, progress=bar.update)
    except (GCPError, ValueError) as exc:
        bar.close()
        print(f"gcp-compare: error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    text = render(best, evidence, source, args.dim, args.batch, dtype, device, args.tol,
                  getattr(args, "training_evidence", None), args.evidence)
    text += (f"\nMeasured in {time.perf_counter() - start:.0f} s, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads.\n")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "recommendation.md")
    with open(path, "w") as fh:
        fh.write(text)
    print(text + f"\nwrote {path}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.recommend:
        return _recommend(args)
    start = time.perf_counter()
    records = run(args)
    config = dict(quick=args.quick, modes=",".join(args.mode_list), dim=args.dim, sizes=list(args.sizes),
                  batch=args.batch, speed_dtype=args.speed_dtype, epochs=args.epochs, seeds=list(args.seeds),
                  train_modes=",".join(args.arm_list), train_dims=list(args.train_dims), eval_every=args.eval_every,
                  sections=",".join(args.section_list), zca_dims=list(args.zca_dims), zca_epochs=args.zca_epochs,
                  device=args.device, threads=torch.get_num_threads(), workers=args.workers,
                  threads_per_training_run=1, torch=torch.__version__)
    reference = (args.reference, args.reference_records) if args.reference_records is not None else None
    paths = write_all(records, config, args.out, reference)
    print("\n" + terminal_summary(records))
    print(f"\n{len(records)} measurements in {time.perf_counter() - start:.0f} s; wrote:\n  " + "\n  ".join(paths))
    return 0


__all__ = ["main", "run", "parse", "SECTIONS"]
