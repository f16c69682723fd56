"""Fine-tune a GCP model on a fine-grained dataset; optionally compare backward modes.

    python -m finegrained.finetune --dataset cub --data-dir /data/birds --model gcp_resnet50 \\
        --backbone-pretrained --output runs/cub-r50
    python -m finegrained.finetune --dataset aircraft --data-dir /data --checkpoint runs/r50-imagenet ...
    python -m finegrained.finetune --dataset cars --data-dir /data --backward all --seeds 0 1 2 --output runs/cmp

The dataset's recipe (input size, transforms, batch, epochs, lr, classifier multiplier) fills
every option you do not give. ``--backward`` takes one mode, a comma-separated list or ``all``;
with several modes or seeds each run goes to ``OUTPUT/<mode>/seed<k>/`` and the comparison
(``comparison.md``, ``comparison.csv``, ``epochs.csv``, ``accuracy.png``) to ``OUTPUT``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import torch

import gcp
import zoo
from zoo import runner, training
from zoo.errors import CheckpointError, DatasetError

from .compare import write_comparison
from .datasets import DATASETS, build_dataset
from .recipes import recipe_for


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finegrained.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--data-dir", required=True)
    p.add_argument("--bbox-crop", action="store_true", help="CUB: crop each image to its bounding box")
    p.add_argument("--annotation-level", default="variant", choices=("variant", "family", "manufacturer"),
                   help="FGVC-Aircraft label granularity")
    p.add_argument("--model", default="gcp_resnet50")
    p.add_argument("--pretrained", action="store_true", help="the zoo model's own pretrained weights")
    p.add_argument("--backbone-pretrained", nargs="?", const=True, default=False,
                   help="timm ImageNet backbone weights (or a file of them); fresh GCP head")
    p.add_argument("--checkpoint", default=None,
                   help="GCP weights to start from: a zoo.save_pretrained folder or a weight file")
    p.add_argument("--method", default=None, choices=gcp.METHODS)
    p.add_argument("--backward", default=None, help="a mode, a comma-separated list, or 'all'")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--reduced-dim", type=int, default=None)
    p.add_argument("--head-opt", type=training.parse_head_option, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--classifier-lr-mult", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--decay-milestones", type=int, nargs="*", default=None)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--output", default="runs/finetune")
    p.add_argument("--resume", default=None, help="a last.pth to continue, or 'auto': every run continues "
                   "from its own OUTPUT/.../last.pth when present")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--device", default=None)
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap steps per epoch (smoke tests)")
    return p


def backward_modes(text: Optional[str]) -> list[Optional[str]]:
    if text is None:
        return [None]
    modes = list(gcp.BACKWARDS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for m in modes:
        gcp.get_backward(m)  # UnknownBackwardError lists the valid ones
    return modes


def build_model(args: argparse.Namespace, num_classes: int, backward: Optional[str]) -> torch.nn.Module:
    kw = training.head_options(args)
    kw.pop("backward", None)  # finetune's --backward may list several modes: one per run
    if backward is not None:
        kw["backward"] = backward
        kw.setdefault("method", "svd")
    if args.checkpoint and os.path.isdir(args.checkpoint):
        return zoo.load_pretrained(args.checkpoint, num_classes=num_classes, **kw)
    overlay = dict(pretrained_cfg_overlay=dict(file=args.checkpoint)) if args.checkpoint else {}
    return zoo.create_model(args.model, num_classes=num_classes, pretrained=args.pretrained or bool(overlay),
                            backbone_pretrained=args.backbone_pretrained, **kw, **overlay)


def run_one(args: argparse.Namespace, backward: Optional[str], seed: int, output: str,
            info: training.DistInfo) -> training.FitState:
    recipe = recipe_for(args.dataset, args.model)
    if args.img_size:
        recipe = recipe.scaled(args.img_size)
    train_tf, test_tf = recipe.transforms()
    opts = {}
    if args.dataset == "cub" and args.bbox_crop:
        opts["bbox_crop"] = True
    if args.dataset == "aircraft":
        opts["annotation_level"] = args.annotation_level
    train_set = build_dataset(args.dataset, args.data_dir, "train", train_tf, **opts)
    test_set = build_dataset(args.dataset, args.data_dir, "test", test_tf, **opts)
    epochs = args.epochs or recipe.epochs
    batch = args.batch_size or recipe.batch_size
    resume_path = os.path.join(output, "last.pth") if args.resume == "auto" else args.resume
    resume = training.load_checkpoint(resume_path) if resume_path and os.path.exists(resume_path) else None
    if args.resume not in (None, "auto") and resume is None:
        raise CheckpointError(f"checkpoint not found: {args.resume}")
    training.check_output(output, resume is not None)

    torch.manual_seed(seed)
    model = build_model(args, len(train_set.classes), backward).to(info.device)
    cfg = runner.RunConfig(
        output=output, epochs=epochs, batch_size=batch, lr=args.lr or recipe.lr, workers=args.workers,
        momentum=args.momentum, weight_decay=recipe.weight_decay if args.weight_decay is None else args.weight_decay,
        classifier_lr_mult=args.classifier_lr_mult or recipe.classifier_lr_mult,
        decay_milestones=recipe.decay_milestones if args.decay_milestones is None else args.decay_milestones,
        amp=args.amp, seed=seed, max_steps_per_epoch=args.max_steps_per_epoch, flip_average=True,
        args=vars(args) | dict(head_opt=[list(o) for o in args.head_opt], backward=backward, seed=seed))
    return runner.run(model, train_set, test_set, info, cfg, resume=resume, resume_source=resume_path or "")


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    modes = backward_modes(args.backward)
    info = training.init_distributed(args.device)
    if len(modes) == 1 and len(args.seeds) == 1:
        run_one(args, modes[0], args.seeds[0], args.output, info)
        return 0
    if args.resume not in (None, "auto"):
        raise CheckpointError("with several modes or seeds, --resume takes 'auto' (each run resumes its own)")
    results: dict[str, list[list[dict]]] = {}
    for mode in modes:
        for seed in args.seeds:
            name = mode or "default"
            state = run_one(args, mode, seed, os.path.join(args.output, name, f"seed{seed}"), info)
            results.setdefault(name, []).append(state.history)
    if info.is_main:
        paths = write_comparison(results, args.output, title=f"{args.dataset}, {args.model}")
        print("wrote " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (zoo.CheckpointError, DatasetError, gcp.GCPError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
