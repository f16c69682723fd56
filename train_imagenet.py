#!/usr/bin/env python
"""Train a GCP model from the zoo on an ImageNet-style folder, single process or torchrun.

    python train_imagenet.py --data-dir /data/imagenet --model gcp_resnet50 --recipe isqrt-cov-r50 --output runs/r50
    torchrun --nproc_per_node=8 train_imagenet.py --data-dir /data/imagenet --recipe svd-pade-r50 --amp bf16 ...
    python train_imagenet.py ... --hybrid-switch-epoch 60 --hybrid-method svd --hybrid-backward pade
    python train_imagenet.py ... --resume runs/r50/last.pth
    python train_imagenet.py ... --evaluate-only --resume runs/r50/best.pth

Data layout: DATA_DIR/train/<class>/*.jpg and DATA_DIR/val/<class>/*.jpg. ``--batch-size`` is the
global batch, split over the processes. Checkpoints (``last.pth``, ``best.pth``) and
``summary.csv`` go to ``--output``; rank 0 writes, atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

import torch

import zoo
from zoo import data, runner, training

RECIPES: dict[str, dict[str, Any]] = {
    # Li et al., CVPR 2018 (fast-MPN-COV): iSQRT-COV ResNet-50
    "isqrt-cov-r50": dict(model="gcp_resnet50", method="isqrt", iters=5, batch_size=160, epochs=65, lr=0.1,
                          sched="step", decay_milestones=[30, 45, 60], weight_decay=1e-4),
    # Song et al., ICCV 2021 (DifferentiableSVD): SVD-Padé ResNet-50, last stage at stride 2
    "svd-pade-r50": dict(model="gcp_resnet50", method="svd", backward="pade", last_stride=2, batch_size=256,
                         epochs=60, lr=0.0794, sched="step", decay_milestones=[30, 45], weight_decay=1e-4),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", required=True)
    g.add_argument("--train-split", default="train")
    g.add_argument("--val-split", default="val")
    g.add_argument("--workers", type=int, default=4)
    g.add_argument("--img-size", type=int, default=224)
    g.add_argument("--crop-pct", type=float, default=0.875, help="eval resize = img_size / crop_pct (256 for 224)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="gcp_resnet50", help="a zoo model (python -m zoo lists them)")
    g.add_argument("--num-classes", type=int, default=None, help="default: the number of class folders")
    g.add_argument("--pretrained", action="store_true", help="the model's own pretrained weights")
    g.add_argument("--pretrained-file", default=None, help="load GCP weights from this file (e.g. zoo.convert output)")
    g.add_argument("--backbone-pretrained", nargs="?", const=True, default=False,
                   help="timm ImageNet backbone weights (or a file of them); fresh GCP head")
    g.add_argument("--method", default=None, choices=("svd", "isqrt", "mpa", "mtp", "none"))
    g.add_argument("--backward", default=None)
    g.add_argument("--iters", type=int, default=None)
    g.add_argument("--alpha", type=float, default=None)
    g.add_argument("--reduced-dim", type=int, default=None)
    g.add_argument("--last-stride", type=int, default=None, choices=(1, 2))
    g.add_argument("--drop-rate", type=float, default=0.0)
    g.add_argument("--head-opt", type=training.parse_head_option, action="append", default=[], metavar="KEY=VALUE",
                   help="backward-mode option, e.g. --head-opt degree=9 (repeatable)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--recipe", choices=sorted(RECIPES), default=None, help="paper presets; flags override them")
    g.add_argument("--epochs", type=int, default=90)
    g.add_argument("--batch-size", type=int, default=256, help="global batch size")
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--sched", choices=("step", "cosine"), default="step")
    g.add_argument("--decay-milestones", type=int, nargs="+", default=[30, 60, 80],
                   help="0-based epochs from which the lr is multiplied by --decay-rate (step schedule)")
    g.add_argument("--decay-rate", type=float, default=0.1)
    g.add_argument("--warmup-epochs", type=int, default=0)
    g.add_argument("--warmup-lr", type=float, default=1e-4)
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--classifier-lr-mult", type=float, default=1.0, help="lr multiplier of the classifier")
    g.add_argument("--reduction-lr-mult", type=float, default=1.0, help="lr multiplier of the 1x1 reduction")
    g.add_argument("--grad-clip", type=float, default=None)
    g.add_argument("--hybrid-switch-epoch", type=int, default=None,
                   help="switch the head to --hybrid-method/--hybrid-backward at this epoch (ICCV'21)")
    g.add_argument("--hybrid-method", default="svd")
    g.add_argument("--hybrid-backward", default="pade")
    g = p.add_argument_group("run")
    g.add_argument("--output", default="runs/train")
    g.add_argument("--resume", default=None, help="continue from this checkpoint (same schedule and epochs)")
    g.add_argument("--evaluate-only", action="store_true")
    g.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--sync-bn", action="store_true")
    g.add_argument("--model-ema", action="store_true")
    g.add_argument("--model-ema-decay", type=float, default=0.9998)
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap steps per epoch (smoke tests)")
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.recipe:
        recipe = dict(RECIPES[pre.recipe])
        parser.set_defaults(**recipe)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    info = training.init_distributed(args.device)
    resume = training.load_checkpoint(args.resume) if args.resume else None
    if not args.evaluate_only:
        training.check_output(args.output, resume is not None)

    train_set = None if args.evaluate_only else data.image_folder(
        args.data_dir, args.train_split, data.train_transform(args.img_size))
    val_set = data.image_folder(args.data_dir, args.val_split, data.eval_transform(args.img_size, args.crop_pct))
    num_classes = args.num_classes or len(val_set.classes)

    torch.manual_seed(args.seed)  # identical initialisation on every rank and every run
    overlay = dict(pretrained_cfg_overlay=dict(file=args.pretrained_file)) if args.pretrained_file else {}
    model = zoo.create_model(args.model, num_classes=num_classes, pretrained=args.pretrained or bool(overlay),
                             backbone_pretrained=args.backbone_pretrained, **training.head_options(args), **overlay)
    model.to(info.device)
    if args.sync_bn and info.device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel)")
    if args.sync_bn and info.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    amp = training.amp_dtype(args.amp)

    if args.evaluate_only:
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        if resume is not None:
            training.restore(resume, model, source=args.resume)
        loader, _ = data.make_loader(val_set, args.batch_size, args.workers, info, train=False)
        metrics = training.evaluate(model, loader, info, amp=amp, channels_last=args.channels_last)
        if info.is_main:
            print(json.dumps(dict(evaluate=metrics)))
        return 0

    stored = vars(args) | dict(head_opt=[list(o) for o in args.head_opt])
    state = runner.run(model, train_set, val_set, info, runner.config_from_args(args, args=stored),
                       resume=resume, resume_source=args.resume or "")
    final = state.history[-1] if state.history else {}
    print(f"rank {info.rank} final: {json.dumps(final, sort_keys=True)}", flush=True)
    if info.distributed:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (zoo.CheckpointError, zoo.DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
