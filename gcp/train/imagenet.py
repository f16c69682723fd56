#!/usr/bin/env python
"""Train a GCP model from the zoo on an ImageNet-style folder, single process or torchrun.

    python train_imagenet.py --data-dir /data/imagenet --recipe isqrt-cov-r50 --output runs/r50
    torchrun --nproc_per_node=8 train_imagenet.py --data-dir /data/imagenet --recipe svd-pade-r50 --amp bf16 ...
    python train_imagenet.py ... --hybrid-switch-epoch 60 --hybrid-method svd --hybrid-backward pade
    python train_imagenet.py ... --resume runs/r50/last.pth
    python train_imagenet.py ... --evaluate-only --resume runs/r50/best.pth

Data layout: DATA_DIR/train/<class>/*.jpg and DATA_DIR/val/<class>/*.jpg, the same class folders
in both. ``--batch-size`` is the global batch, split over the processes. The run folder
(``--output``) holds one run: ``run.json``, ``last.pth``, ``best.pth``, ``summary.csv``; rank 0
writes, atomically. A resumed run keeps the settings its checkpoint records (``--epochs`` may
grow on the step schedule).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

import torch

import gcp
import gcp.zoo
from gcp.train import cli
from gcp.train.checkpoint import load_checkpoint, restore
from gcp.train.config import RECIPES
from gcp.train.data import check_samples, check_splits, eval_transform, image_folder, make_loader, train_transform
from gcp.train.distributed import init_distributed
from gcp.train.engine import run
from gcp.train.errors import ConfigError
from gcp.train.loop import amp_dtype, evaluate

IMAGENET_RECIPES = ("isqrt-cov-r50", "svd-pade-r50")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, epilog=cli.recipes_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", required=True)
    g.add_argument("--train-split", default="train")
    g.add_argument("--val-split", default="val")
    g.add_argument("--img-size", type=int, default=None, help="default 224 (a resumed run: its own)")
    g.add_argument("--crop-pct", type=float, default=None, help="eval resize = img_size / crop_pct (default 0.875: "
                   "256 for 224)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="a zoo model (python -m zoo lists them; default gcp_resnet50)")
    g.add_argument("--recipe", choices=IMAGENET_RECIPES, default=None, help="paper presets; flags override them")
    g.add_argument("--num-classes", type=int, default=None, help="default: the number of class folders")
    g.add_argument("--pretrained", action="store_true", help="the model's own pretrained weights")
    g.add_argument("--pretrained-file", default=None,
                   help="load GCP weights from this file (e.g. gcp.zoo.convert output)")
    g.add_argument("--backbone-pretrained", nargs="?", const=True, default=False,
                   help="timm ImageNet backbone weights (or a file of them); fresh GCP head")
    g.add_argument("--last-stride", type=int, default=None, choices=(1, 2))
    g.add_argument("--sync-bn", action="store_true")
    g.add_argument("--evaluate-only", action="store_true", help="evaluate the weights of --resume, --pretrained "
                   "or --pretrained-file on the validation split")
    g.add_argument("--resume", default=None, help="continue the run of this checkpoint (its settings are kept)")
    cli.add_head_arguments(p)
    cli.add_optim_arguments(p)
    cli.add_run_arguments(p, output="runs/train")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    info = init_distributed(args.device)  # --device cuda without CUDA: ConfigError before any work
    if args.backward is not None:
        gcp.get_backward(args.backward)
    if args.evaluate_only and not (args.resume or args.pretrained or args.pretrained_file):
        raise ConfigError("--evaluate-only needs weights: --resume CKPT, --pretrained or --pretrained-file FILE")
    resume = load_checkpoint(args.resume) if args.resume else None
    recipe: dict[str, Any] = dict(RECIPES[args.recipe]) if args.recipe else {}
    recorded: dict[str, Any] = resume.get("cli_settings", {}) if resume is not None else {}
    if resume is not None and resume.get("config") is not None and not args.evaluate_only:
        base = dict(resume["config"], output=args.output)  # a resumed run keeps its recorded settings
    else:
        base = recipe
    model_name = args.model or recorded.get("model") or recipe.get("model") or "gcp_resnet50"
    # the data settings of a resumed run are its own too, unless given
    if args.img_size is None:
        args.img_size = recorded.get("img_size", 224)
    if args.crop_pct is None:
        args.crop_pct = recorded.get("crop_pct", 0.875)
    if args.img_size < 32 or not 0 < args.crop_pct <= 1:
        raise ConfigError(f"--img-size must be >= 32 and --crop-pct in (0, 1]; got {args.img_size}, {args.crop_pct}")
    cfg = cli.resolve(args, base)

    check_images = not args.no_image_check
    train_set = None if args.evaluate_only else image_folder(args.data_dir, args.train_split,
                                                             train_transform(args.img_size))
    val_set = image_folder(args.data_dir, args.val_split, eval_transform(args.img_size, args.crop_pct))
    train_classes = train_set.classes if train_set is not None else val_set.classes
    num_classes = check_splits(train_classes, val_set.classes, f"{args.data_dir}/{args.train_split}",
                               f"{args.data_dir}/{args.val_split}", args.num_classes)
    if info.is_main:
        for split, ds in ((args.train_split, train_set), (args.val_split, val_set)):
            if ds is not None:
                check_samples(ds.samples, len(ds.classes), f"{args.data_dir}/{split}", check_images)

    torch.manual_seed(cfg.seed)  # identical initialisation on every rank and every run
    overlay = dict(pretrained_cfg_overlay=dict(file=args.pretrained_file)) if args.pretrained_file else {}
    model = gcp.zoo.create_model(model_name, num_classes=num_classes, pretrained=args.pretrained or bool(overlay),
                             backbone_pretrained=args.backbone_pretrained, **cfg.head, **overlay)
    model.to(info.device)
    if args.sync_bn and info.device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel)")
    if args.sync_bn and info.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    if args.evaluate_only:
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if resume is not None:
            restore(resume, model, source=args.resume)
        loader, _ = make_loader(val_set, cfg.batch_size, cfg.workers, info, train=False)
        metrics = evaluate(model, loader, info, amp=amp_dtype(cfg.amp), channels_last=cfg.channels_last)
        if info.is_main:
            print(json.dumps(dict(evaluate=metrics)))
        return 0

    stored = dict(model=model_name, data_dir=args.data_dir, img_size=args.img_size, crop_pct=args.crop_pct,
                  recipe=args.recipe, num_classes=num_classes)
    state = run(model, train_set, val_set, info, cfg, resume=resume, resume_source=args.resume or "",
                cli_settings=stored)
    final = state.history[-1] if state.history else {}
    print(f"rank {info.rank} final: {json.dumps(final, sort_keys=True)}", flush=True)
    if info.distributed:
        torch.distributed.destroy_process_group()
    return 0


def console_main() -> int:
    """The installed command: typed errors end as one line on stderr, exit status 2."""
    return cli.exit_on_error(main)


if __name__ == "__main__":
    raise SystemExit(console_main())
