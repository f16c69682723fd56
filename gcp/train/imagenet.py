#!/usr/bin/env python
"""Train a GCP model from the zoo on an ImageNet-style folder, single process or torchrun.

    gcp-train --data-dir /data/imagenet --recipe isqrt-cov-r50 --output runs/r50
    torchrun --nproc_per_node=8 -m gcp.train.imagenet --data-dir DIR --recipe svd-pade-r50 --amp --amp-dtype bfloat16
    gcp-train ... --hybrid-switch-epoch 60 --hybrid-method svd --hybrid-backward pade
    gcp-train --data-dir /data/imagenet --resume runs/r50/last.pth --output runs/r50
    gcp-train --data-dir /data/imagenet --evaluate-only --resume runs/r50/best.pth
    gcp-train --data-dir /data/imagenet --head gap,isqrt,svd:pade --seeds 0 1 --output runs/heads
    gcp-train --dataset cifar10 --data-dir /data/cifar --recipe zca-cifar10-r18 --norm-dim 4,8 --norm-backward pi,ed

Data layout: DATA_DIR/train/<class>/*.jpg and DATA_DIR/val/<class>/*.jpg, the same class folders
in both; with --dataset cifar10/cifar100, DATA_DIR/cifar-10-batches-py/ or cifar-100-python/ (the
python version, from a trusted source: it is unpickled). ``-b/--batch-size`` is per process (timm's);
the run records the global batch. The run folder (``--output``) holds one run: ``run.json``,
``args.yaml``, ``last.pth``, ``best.pth``, ``summary.csv``; rank 0
writes, atomically. A resumed run keeps the settings its checkpoint's run record holds
(``--epochs`` may grow on a multistep or step schedule; workers, device and output may change). With several
heads (``--head``), backward modes (``--backward a,b``) or ``--seeds``, each run goes to
``OUTPUT/<arm>/seed<k>/`` and the comparison (``comparison.md``, ``.csv``, ``accuracy.png``) to
``OUTPUT``; ``--resume auto`` continues each run from its own ``last.pth``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional

import torch

from gcp.train import cli, config_file, fields
from gcp.train.arms import PlannedRun, plan_runs
from gcp.train.checkpoint import FitState, check_output_outside_data, load_checkpoint, read_failure, stored_record
from gcp.train.cifar import CIFAR, cifar_fingerprint, cifar_split
from gcp.train.comparison import write_comparison
from gcp.train.config import DATASET_DEFAULTS, RECIPES
from gcp.train.data import check_samples, check_splits, fingerprint, image_folder, transforms_for
from gcp.train.distributed import DistInfo, init_distributed
from gcp.train.engine import evaluate_weights, run
from gcp.train.errors import ConfigError
from gcp.train.model import check_models, create_run_model
from gcp.train.record import DEFAULT_MODEL, RunRecord, merge_layers, model_data_defaults, resolve, with_class_count

IMAGENET_RECIPES = ("isqrt-cov-r50", "svd-pade-r50", "zca-cifar10-r18", "zca-cifar100-r18", "pca-cifar10-r18")
DATASETS = ("imagefolder", *CIFAR)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gcp-train", description=__doc__, epilog=cli.recipes_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    config_file.add_config_argument(p)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None, choices=DATASETS,
                   help="imagefolder (default): DATA_DIR/{train,val}/<class>/*; cifar10 / cifar100: DATA_DIR holds "
                        "cifar-10-batches-py/ or cifar-100-python/ (the python version, from a trusted source)")
    g.add_argument("--data-dir", required=True)
    g.add_argument("--train-split", default=None, help="default train")
    g.add_argument("--val-split", default=None, help="default val")
    g.add_argument("--img-size", type=int, default=None, help="default: the model's pretrained config (224)")
    g.add_argument("--crop-pct", type=float, default=None, help="eval resize = img_size / crop_pct (default: the "
                   "model's, 0.875: 256 for 224)")
    g.add_argument("--interpolation", default=None, choices=("bilinear", "bicubic", "nearest"))
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help=f"a zoo model (gcp-zoo lists them; default {DEFAULT_MODEL})")
    g.add_argument("--recipe", choices=IMAGENET_RECIPES, default=None, help="paper presets; flags override them")
    g.add_argument("--num-classes", type=int, default=None, help="default: the number of class folders")
    g.add_argument("--pretrained", action="store_true", help="the model's own pretrained weights")
    g.add_argument("--pretrained-path", "--pretrained-file", dest="pretrained_file", default=None,
                   action=fields.deprecating(None, ("--pretrained-file",), "--pretrained-path"),
                   help="load GCP weights from this file (e.g. gcp.zoo.convert output), timm's --pretrained-path")
    g.add_argument("--backbone-pretrained", nargs="?", const=True, default=False,
                   help="timm ImageNet backbone weights (or a file of them); fresh GCP head")
    g.add_argument("--last-stride", type=int, default=None, choices=(1, 2))
    g.add_argument("--sync-bn", action="store_true")
    g.add_argument("--evaluate-only", action="store_true", help="evaluate the weights of --resume, --pretrained "
                   "or --pretrained-path on the validation split (a checkpoint's own model, head and data)")
    g.add_argument("--resume", default=None, help="continue the run of this checkpoint (its settings are kept); "
                   "'auto': every run continues from its own OUTPUT/.../last.pth when present")
    g.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds: one run each (default: --seed)")
    cli.add_head_arguments(p)
    cli.add_norm_arguments(p)
    cli.add_optim_arguments(p)
    cli.add_run_arguments(p, output="runs/train")
    return p


def resolve_record(args: argparse.Namespace, stored: Optional[RunRecord], start_epoch: int,
                   run: Optional[PlannedRun] = None) -> RunRecord:
    """The run's record from the flags, the recipe, the model's pretrained config and a checkpoint."""
    given = cli.given_flags(args)
    if run is not None:
        given.pop("backward", None)  # a list: the arm gives each run its own
        given.update(run.arm.settings if run.arm is not None else {}, output=run.output)
        if args.seeds is not None:
            given["seed"] = run.seed
    if stored is not None:
        # the same command again (a sweep's --resume auto): the recipe's settings, under the flags, must
        # be the ones the run has; where they do not apply they are inert, as in a new run
        recipe = dict(RECIPES[args.recipe]) if args.recipe else {}
        given = merge_layers(recipe, given)
        return resolve(given, stored=stored, start_epoch=start_epoch, evaluation=args.evaluate_only,
                       soft=cli.soft_flags(args) | (set(recipe) - set(cli.given_flags(args))))
    recipe = dict(RECIPES[args.recipe]) if args.recipe else {}
    model = given.get("model") or recipe.get("model") or DEFAULT_MODEL
    dataset = given.get("dataset") or recipe.get("dataset") or "imagefolder"
    below = {"model": model, "dataset": dataset, **model_data_defaults(model), **DATASET_DEFAULTS.get(dataset, {})}
    return resolve(given, recipe={**below, **recipe}, soft=cli.soft_flags(args))


def load_data(record: RunRecord, info: DistInfo, image_check: bool, evaluate_only: bool
              ) -> tuple[Any, Any, list[str], dict[str, str]]:
    data = record.data
    train_tf, eval_tf = transforms_for(data)
    if data.dataset in CIFAR:
        splits = {name: (None if evaluate_only and name == "train" else
                         cifar_split(data.dataset, data.root, split, tf))
                  for name, split, tf in (("train", data.train_split, train_tf), ("eval", data.eval_split, eval_tf))}
        prints = {name: cifar_fingerprint(ds, data.dataset, data.root, split)
                  for (name, ds), split in zip(splits.items(), (data.train_split, data.eval_split)) if ds is not None}
        return splits["train"], splits["eval"], list(splits["eval"].classes), prints
    train_set = None if evaluate_only else image_folder(data.root, data.train_split, train_tf)
    val_set = image_folder(data.root, data.eval_split, eval_tf)
    train_classes = train_set.classes if train_set is not None else val_set.classes
    check_splits(train_classes, val_set.classes, f"{data.root}/{data.train_split}",
                 f"{data.root}/{data.eval_split}", None)
    if info.is_main:
        for split, ds in ((data.train_split, train_set), (data.eval_split, val_set)):
            if ds is not None:
                check_samples(ds.samples, len(ds.classes), f"{data.root}/{split}", image_check)
    prints = {name: fingerprint(ds.samples, ds.classes, data.root)
              for name, ds in (("train", train_set), ("eval", val_set)) if ds is not None}
    return train_set, val_set, list(train_classes), prints


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = config_file.parse_args(parser, argv)
    cli.check_seed_flags(args)
    info = init_distributed(args.device, args.dist_timeout)  # --device cuda without CUDA: ConfigError first
    args.world_size = info.world_size  # -b is per process (timm's); the record keeps the global batch
    runs = plan_runs(cli.arms(args), args.seeds, args.output,
                     args.resume)
    if len(runs) > 1:
        return _compare(args, info, runs, parser)
    if args.evaluate_only and not (args.resume or args.pretrained or args.pretrained_file):
        raise ConfigError("--evaluate-only needs weights: --resume CKPT, --pretrained or --pretrained-path FILE")
    source = args.resume
    if source == "auto":  # the run in --output continues when it has a checkpoint, else starts
        if args.evaluate_only:
            raise ConfigError("--evaluate-only needs the checkpoint itself, not --resume auto")
        source = os.path.join(args.output, "last.pth")
        source = source if os.path.exists(source) else None
    resume = load_checkpoint(source) if source else None
    stored = stored_record(resume, source) if resume is not None else None
    record = resolve_record(args, stored, int(resume["epoch"]) + 1 if resume is not None else 0, runs[0])
    train_set, val_set, classes, prints = load_data(record, info, not args.no_image_check, args.evaluate_only)
    record = with_class_count(record, classes, from_checkpoint=stored is not None, fingerprints=prints)
    model = _model(args, record, info)

    if args.evaluate_only:
        evaluate_weights(model, val_set, info, record, resume, source or "")
        return 0

    state = run(model, train_set, val_set, info, record, resume=resume, resume_source=source or "",
                args_yaml=config_file.args_yaml(cli.record_flags(record, args, parser)))
    final = state.history[-1] if state.history else {}
    print(f"rank {info.rank} final: {json.dumps(final, sort_keys=True)}", flush=True)
    if info.distributed:
        torch.distributed.destroy_process_group()
    return 0


def _model(args: argparse.Namespace, record: RunRecord, info: DistInfo) -> torch.nn.Module:
    torch.manual_seed(record.seed)  # identical initialisation on every rank and every run
    model = create_run_model(record, pretrained=args.pretrained, backbone_pretrained=args.backbone_pretrained,
                             weights=args.pretrained_file or None)
    model.to(info.device)
    if args.sync_bn and info.device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel)")
    if args.sync_bn and info.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _compare(args: argparse.Namespace, info: DistInfo, runs: list[PlannedRun], parser: argparse.ArgumentParser) -> int:
    """Several runs (heads, modes, seeds), every one resolved before the first starts, then the
    comparison table, CSV and plot in ``--output``."""
    if args.evaluate_only:
        raise ConfigError("--evaluate-only evaluates one checkpoint; drop --head/--seeds or the backward list")
    planned = []
    for r in runs:
        path = os.path.join(r.output, "last.pth")
        resume = load_checkpoint(path) if args.resume == "auto" and os.path.exists(path) else None
        stored = stored_record(resume, path) if resume is not None else None
        record = resolve_record(args, stored, int(resume["epoch"]) + 1 if resume is not None else 0, r)
        planned.append((r, record, resume, path if resume is not None else ""))
    for _, record, _, _ in planned:
        check_output_outside_data(record.output, record.data.root)
    train_set, val_set, classes, prints = load_data(planned[0][1], info, not args.no_image_check, False)
    check_models([with_class_count(p[1], classes, from_checkpoint=p[2] is not None, fingerprints=prints)
                  for p in planned])
    results: dict[str, list[list[dict]]] = {}
    failures: dict[str, list] = {}
    for index, (r, record, resume, source) in enumerate(planned):
        if record.data != planned[0][1].data:
            raise ConfigError(f"{record.output}: its checkpoint read other data than this comparison's first run")
        record = with_class_count(record, classes, from_checkpoint=resume is not None, fingerprints=prints)
        if info.is_main:
            print(f"[run {index + 1}/{len(planned)}: {r.name} seed {record.seed}]", flush=True)
        stopped = read_failure(record.output) if args.resume == "auto" and resume is None else None
        if stopped is not None:  # a run that failed before its first epoch was saved: finished as failed
            state = FitState(history=list(stopped["history"]), failed=stopped)
        else:
            state = run(_model(args, record, info), train_set, val_set, info, record, resume=resume,
                        resume_source=source, args_yaml=config_file.args_yaml(cli.record_flags(record, args, parser)))
        results.setdefault(r.name, []).append(state.history)
        failures.setdefault(r.name, []).append(state.failed)
    if info.is_main:
        setting = cli.comparison_setting(planned[0][1], args, len(train_set), len(val_set), info.device)
        print("wrote " + ", ".join(write_comparison(results, args.output, title=planned[0][1].model,
                                                    failures=failures, setting=setting)))
    if info.distributed:
        torch.distributed.destroy_process_group()
    return 0


def console_main() -> int:
    """The installed command: typed errors end as one line on stderr, exit status 2."""
    return cli.exit_on_error(main)


if __name__ == "__main__":
    raise SystemExit(console_main())
