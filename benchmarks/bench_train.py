"""Training throughput (images/s) of GCP ResNet-50 heads vs timm's plain resnet50, same batch.

    python benchmarks/bench_train.py [--batch 8] [--img-size 224] [--steps 3] [--device cuda] [--amp bf16]
"""

from __future__ import annotations

import argparse
import os
import sys

import timm
import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gcp  # noqa: E402
import zoo  # noqa: E402
from gcp._timing import markdown_table, median_ms  # noqa: E402
from zoo.training import amp_dtype, autocast  # noqa: E402

CONFIGS = {
    "timm resnet50 (GAP)": lambda: timm.create_model("resnet50"),
    "gcp_resnet50 isqrt (5 it.)": lambda: zoo.create_model("gcp_resnet50", method="isqrt"),
    "gcp_resnet50 svd / exact": lambda: zoo.create_model("gcp_resnet50", method="svd", backward="exact"),
    "gcp_resnet50 svd / pade": lambda: zoo.create_model("gcp_resnet50", method="svd", backward="pade"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    gcp.set_finite_checks(False)
    amp = amp_dtype(args.amp)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    rows, base = [], None
    for name, make in tqdm(CONFIGS.items(), desc="bench_train", file=sys.stderr):
        torch.manual_seed(0)
        model = make().to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            with autocast(device, amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        ms = median_ms(step, device, args.steps)
        ips = args.batch / (ms / 1e3)
        base = base or ips
        rows.append([name, f"{ms:.0f}", f"{ips:.1f}", f"{ips / base:.2f}"])
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"\nbatch {args.batch} × {args.img_size}², SGD step, device={device}, threads={threads}, amp={args.amp}, "
          f"median of {args.steps} steps\n")
    print(markdown_table(["model", "ms / step", "images/s", "÷ resnet50"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
