"""Fine-tune a GCP model on a fine-grained dataset; optionally compare backward modes.

    python -m gcp.finegrained.finetune --dataset cub --data-dir /data/birds --model gcp_resnet50 \\
        --backbone-pretrained --output runs/cub-r50
    python -m gcp.finegrained.finetune --dataset aircraft --data-dir /data --checkpoint runs/r50-imagenet ...
    python -m gcp.finegrained.finetune --dataset cars --data-dir /data --backward all --seeds 0 1 2 --output runs/cmp

The recipe of the model (finegrained-resnet or finegrained-vgg, below) fills every option you do
not give. ``--backward`` takes one mode, a comma-separated list or ``all``; with several modes or
seeds each run goes to ``OUTPUT/<mode>/seed<k>/`` and the comparison (``comparison.md``,
``comparison.csv``, ``epochs.csv``, ``accuracy.png``) to ``OUTPUT``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional

import torch

import gcp
import gcp.zoo
from gcp.train import cli
from gcp.train.checkpoint import FitState, load_checkpoint
from gcp.train.data import check_samples, check_splits, fixed_crop_transforms
from gcp.train.distributed import DistInfo, init_distributed
from gcp.train.engine import run
from gcp.train.errors import CheckpointError, ConfigError

from .compare import write_comparison
from .datasets import DATASETS, LAYOUTS, build_dataset
from .recipes import recipe_for, resize_for


def build_parser() -> argparse.ArgumentParser:
    layouts = "dataset layouts (--data-dir):\n" + "\n".join(f"  {k}: {v}" for k, v in LAYOUTS.items())
    p = argparse.ArgumentParser(prog="python -m gcp.finegrained.finetune", description=__doc__,
                                epilog=layouts + "\n\n" + cli.recipes_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    g.add_argument("--data-dir", required=True)
    g.add_argument("--bbox-crop", action="store_true", help="CUB: crop each image to its bounding box")
    g.add_argument("--annotation-level", default="variant", choices=("variant", "family", "manufacturer"),
                   help="FGVC-Aircraft label granularity")
    g.add_argument("--img-size", type=int, default=None, help="crop size (default 448; the resize keeps its ratio)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="gcp_resnet50")
    g.add_argument("--pretrained", action="store_true", help="the zoo model's own pretrained weights")
    g.add_argument("--backbone-pretrained", nargs="?", const=True, default=False,
                   help="timm ImageNet backbone weights (or a file of them); fresh GCP head")
    g.add_argument("--checkpoint", default=None,
                   help="GCP weights to start from: a gcp.zoo.save_pretrained folder or a weight file")
    g.add_argument("--seeds", type=int, nargs="+", default=[0])
    g.add_argument("--resume", default=None, help="a last.pth to continue, or 'auto': every run continues "
                   "from its own OUTPUT/.../last.pth when present")
    cli.add_head_arguments(p, backward_help="a mode, a comma-separated list or 'all'")
    cli.add_optim_arguments(p)
    cli.add_run_arguments(p, output="runs/finetune")
    return p


def backward_modes(text: Optional[str]) -> list[Optional[str]]:
    if text is None:
        return [None]
    modes = list(gcp.BACKWARDS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    if not modes:
        raise ConfigError(f"--backward {text!r} names no mode")
    for m in modes:
        gcp.get_backward(m)  # UnknownBackwardError lists the valid ones
    return modes


def build_model(args: argparse.Namespace, head: dict[str, Any], num_classes: int) -> torch.nn.Module:
    if args.checkpoint and os.path.isdir(args.checkpoint):
        return gcp.zoo.load_pretrained(args.checkpoint, num_classes=num_classes, **head)
    overlay = dict(pretrained_cfg_overlay=dict(file=args.checkpoint)) if args.checkpoint else {}
    return gcp.zoo.create_model(args.model, num_classes=num_classes, pretrained=args.pretrained or bool(overlay),
                            backbone_pretrained=args.backbone_pretrained, **head, **overlay)


def load_splits(args: argparse.Namespace, img_size: int) -> tuple[Any, Any]:
    train_tf, test_tf = fixed_crop_transforms(img_size, resize_for(args.dataset, img_size))
    opts: dict[str, Any] = {}
    if args.dataset == "cub" and args.bbox_crop:
        opts["bbox_crop"] = True
    if args.dataset == "aircraft":
        opts["annotation_level"] = args.annotation_level
    train_set = build_dataset(args.dataset, args.data_dir, "train", train_tf, **opts)
    test_set = build_dataset(args.dataset, args.data_dir, "test", test_tf, **opts)
    check_splits(train_set.classes, test_set.classes, f"{args.dataset} train", f"{args.dataset} test")
    for name, ds in (("train", train_set), ("test", test_set)):
        check_samples(ds.samples, len(ds.classes), f"{args.dataset} {name} split", not args.no_image_check)
    return train_set, test_set


def run_one(args: argparse.Namespace, backward: Optional[str], seed: int, output: str, info: DistInfo,
            splits: tuple[Any, Any]) -> FitState:
    resume_path = os.path.join(output, "last.pth") if args.resume == "auto" else args.resume
    resume = load_checkpoint(resume_path) if resume_path and os.path.exists(resume_path) else None
    if args.resume not in (None, "auto") and resume is None:
        raise CheckpointError(f"checkpoint not found: {args.resume}")
    base = dict(resume["config"]) if resume is not None and resume.get("config") else recipe_for(args.model)
    fixed: dict[str, Any] = dict(output=output, seed=seed, flip_average=True)
    cfg = cli.resolve(args, base, **fixed)
    if backward is not None:  # one run of a --backward list: the mode is this run's
        cfg.head = dict(cfg.head, backward=backward, method=cfg.head.get("method", "svd"))
    torch.manual_seed(seed)
    model = build_model(args, cfg.head, len(splits[0].classes)).to(info.device)
    stored = dict(model=args.model, dataset=args.dataset, data_dir=args.data_dir, backward=backward, seed=seed)
    return run(model, splits[0], splits[1], info, cfg, resume=resume, resume_source=resume_path or "",
               cli_settings=stored)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    info = init_distributed(args.device)
    modes = backward_modes(args.backward)
    args.backward = None  # each run sets its own mode (run_one)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise ConfigError(f"--seeds must be distinct integers >= 0, got {args.seeds}")
    img_size = args.img_size if args.img_size is not None else recipe_for(args.model)["img_size"]
    if img_size < 32:
        raise ConfigError(f"--img-size must be >= 32, got {img_size}")
    several = len(modes) > 1 or len(args.seeds) > 1
    if several and args.resume not in (None, "auto"):
        raise ConfigError("with several modes or seeds, --resume takes 'auto' (each run resumes its own)")
    splits = load_splits(args, img_size)
    if not several:
        run_one(args, modes[0], args.seeds[0], args.output, info, splits)
        return 0
    results: dict[str, list[list[dict]]] = {}
    for mode in modes:
        for seed in args.seeds:
            name = mode or "default"
            state = run_one(args, mode, seed, os.path.join(args.output, name, f"seed{seed}"), info, splits)
            results.setdefault(name, []).append(state.history)
    if info.is_main:
        paths = write_comparison(results, args.output, title=f"{args.dataset}, {args.model}")
        print("wrote " + ", ".join(paths))
    return 0


def console_main() -> int:
    """The installed command: typed errors end as one line on stderr, exit status 2."""
    return cli.exit_on_error(main)


if __name__ == "__main__":
    raise SystemExit(console_main())
