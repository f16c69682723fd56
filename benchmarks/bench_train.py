"""Training throughput (images/s) of GCP ResNet-50 heads vs timm's plain resnet50, same batch.

All models are built first and timed in interleaved rounds (one SGD step of each per round), so
slow drifts of the machine hit them alike; each figure is the median over rounds with the min–max
of the per-round ratio to resnet50. Pairs of GCP configurations whose ratio ranges overlap are
reported as within noise rather than ranked.

    python benchmarks/bench_train.py [--batch 8] [--img-size 224] [--rounds 7] [--device cuda] [--amp bf16]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import timm
import torch
from tqdm import tqdm

import gcp
import gcp.zoo
from gcp.bench import Report
from gcp.bench.timing import interleaved_ms, markdown_table, positive_int
from gcp.train.loop import amp_dtype, autocast
from gcp.train.stats import ranges_overlap

CONFIGS = {
    "timm resnet50 (GAP)": lambda: timm.create_model("resnet50"),
    "gcp_resnet50 isqrt (5 it.)": lambda: gcp.zoo.create_model("gcp_resnet50", method="isqrt"),
    "gcp_resnet50 svd / exact": lambda: gcp.zoo.create_model("gcp_resnet50", method="svd", backward="exact"),
    "gcp_resnet50 svd / pade": lambda: gcp.zoo.create_model("gcp_resnet50", method="svd", backward="pade"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=positive_int, default=8)
    ap.add_argument("--img-size", type=positive_int, default=224)
    ap.add_argument("--rounds", type=positive_int, default=7, help="interleaved rounds (one step of every model each)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    ap.add_argument("--results", default="results", metavar="DIR",
                    help="write the table to DIR/bench_train-<date>.md (default: results/; '' to skip)")
    args = ap.parse_args(argv)
    report = Report("bench_train", args.results or None)
    device = torch.device(args.device)
    gcp.set_finite_checks(False)
    amp = amp_dtype(args.amp)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    steps = {}
    for name, make in tqdm(CONFIGS.items(), desc="bench_train: build", file=sys.stderr):
        torch.manual_seed(0)
        model = make().to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, opt=opt) -> None:
            with autocast(device, amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[name] = step
    times = interleaved_ms(steps, device, args.rounds)
    base_name = next(iter(CONFIGS))
    ratio = {n: [b / t for t, b in zip(times[n], times[base_name])] for n in times}  # throughput ÷ resnet50
    rows = []
    for name, t in times.items():
        ms = statistics.median(t)
        r = ratio[name]
        rows.append([name, f"{ms:.0f} ({min(t):.0f}–{max(t):.0f})", f"{args.batch / (ms / 1e3):.1f}",
                     f"{statistics.median(r):.2f} ({min(r):.2f}–{max(r):.2f})"])
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    report.line(f"\nbatch {args.batch} × {args.img_size}², SGD step, device={device}, threads={threads}, "
                f"amp={args.amp}, median (min–max) of {args.rounds} interleaved rounds\n")
    report.line(markdown_table(["model", "ms / step", "images/s", "throughput ÷ resnet50"], rows))
    gcp_names = [n for n in CONFIGS if n != base_name]
    report.line()
    for i, a in enumerate(gcp_names):
        for b in gcp_names[i + 1:]:
            ra, rb = (min(ratio[a]), max(ratio[a])), (min(ratio[b]), max(ratio[b]))
            verdict = ("within noise (ranges overlap)" if ranges_overlap(ra, rb)
                       else f"{a if statistics.median(ratio[a]) > statistics.median(ratio[b]) else b} is faster")
            report.line(f"- {a} vs {b}: {verdict}")
    report.save(torch.device(args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
