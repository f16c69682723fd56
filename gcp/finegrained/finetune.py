"""Fine-tune a GCP model on a fine-grained dataset; optionally compare backward modes.

    gcp-finetune --dataset cub --data-dir /data/birds --model gcp_resnet50 --backbone-pretrained --output runs/cub-r50
    gcp-finetune --dataset aircraft --data-dir /data --checkpoint runs/r50-imagenet ...
    gcp-finetune --dataset cars --data-dir /data --method svd --backward all --seeds 0 1 2 --output runs/cmp

    gcp-finetune --dataset cub --data-dir /data/birds --head gap,bcnn,cbp,isqrt,svd:exact,svd:pade --seeds 0 1 2 ...

The recipe of the model (finegrained-resnet or finegrained-vgg, below) fills every option you do
not give. ``--backward`` takes one mode, a comma-separated list or ``all``; ``--head`` a list of
heads, ``METHOD[:BACKWARD][(KEY=VALUE, ...)]``. With several heads, modes or seeds each run goes to
``OUTPUT/<arm>/seed<k>/`` and the comparison (``comparison.md``, ``comparison.csv``,
``epochs.csv``, ``accuracy.png``) to ``OUTPUT``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional

import torch

from gcp.train import cli, config_file
from gcp.train.arms import Arm, PlannedRun, plan_runs
from gcp.train.checkpoint import FitState, check_output_outside_data, load_checkpoint, read_failure, stored_record
from gcp.train.comparison import write_comparison
from gcp.train.data import check_samples, check_splits, fingerprint, transforms_for
from gcp.train.distributed import init_distributed
from gcp.train.engine import evaluate_weights, run
from gcp.train.errors import CheckpointError, ConfigError
from gcp.train.model import check_models, create_run_model
from gcp.train.record import DEFAULT_MODEL, DataSpec, RunRecord, model_data_defaults, resolve, with_class_count

from .datasets import DATASETS, LAYOUTS, all_options, build_dataset
from .recipes import recipe_for


def build_parser() -> argparse.ArgumentParser:
    layouts = "dataset layouts (--data-dir):\n" + "\n".join(f"  {k}: {v}" for k, v in LAYOUTS.items())
    p = argparse.ArgumentParser(prog="gcp-finetune", description=__doc__,
                                epilog=layouts + "\n\n" + cli.recipes_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    config_file.add_config_argument(p)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    g.add_argument("--data-dir", required=True)
    for option in all_options():  # each dataset declares its options (gcp.finegrained.datasets.DATASETS)
        g.add_argument(option.flag, default=None, help=option.help, **dict(option.arg))
    g.add_argument("--img-size", type=int, default=None, help="crop size (default 448; the resize keeps its ratio)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help=f"a zoo model (default {DEFAULT_MODEL}; a resumed run: its own)")
    g.add_argument("--pretrained", action="store_true", help="the zoo model's own pretrained weights")
    g.add_argument("--backbone-pretrained", nargs="?", const=True, default=False,
                   help="timm ImageNet backbone weights (or a file of them); fresh GCP head")
    g.add_argument("--checkpoint", default=None,
                   help="GCP weights to start from: a gcp.zoo.save_pretrained folder or a weight file")
    g.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 (a resumed run: its own)")
    g.add_argument("--resume", default=None, help="a last.pth to continue, or 'auto': every run continues "
                   "from its own OUTPUT/.../last.pth when present")
    g.add_argument("--evaluate-only", action="store_true",
                   help="evaluate on the test split: a fine-tune checkpoint (--resume, with its own model, head and "
                        "data), or the weights of --checkpoint / --pretrained")
    cli.add_head_arguments(p, backward_help="a mode, a comma-separated list or 'all'")
    cli.add_norm_arguments(p)
    cli.add_optim_arguments(p)
    cli.add_run_arguments(p, output="runs/finetune")
    return p


def build_model(record: RunRecord, args: argparse.Namespace) -> torch.nn.Module:
    return create_run_model(record, pretrained=args.pretrained, backbone_pretrained=args.backbone_pretrained,
                            weights=args.checkpoint or None)


def load_splits(data: DataSpec, image_check: bool) -> tuple[Any, Any]:
    train_tf, test_tf = transforms_for(data)
    opts = dict(data.options)
    train_set = build_dataset(data.dataset, data.root, "train", train_tf, **opts)
    test_set = build_dataset(data.dataset, data.root, "test", test_tf, **opts)
    check_splits(train_set.classes, test_set.classes, f"{data.dataset} train", f"{data.dataset} test")
    for name, ds in (("train", train_set), ("test", test_set)):
        check_samples(ds.samples, len(ds.classes), f"{data.dataset} {name} split", image_check)
    return train_set, test_set


def fingerprints(data: DataSpec, splits: tuple[Any, Any]) -> dict[str, str]:
    return {name: fingerprint(ds.samples, ds.classes, data.root) for name, ds in zip(("train", "eval"), splits)}


def _given(args: argparse.Namespace) -> dict[str, Any]:
    given = cli.given_flags(args)
    options = {o.name: given.pop(o.name) for o in all_options() if given.get(o.name) is not None}
    if options:
        given["data_options"] = options
    given.pop("backward", None)  # a list: each run gets one of its modes
    given.pop("head", None)  # a list: each run gets one of its heads
    given["eval_split"] = "test"
    return given


def plan(args: argparse.Namespace) -> list[PlannedRun]:
    """Every run (head or mode × seed) with its folder, checked before the first one starts."""
    return plan_runs(cli.arms(args), args.seeds, args.output, args.resume)


def resolve_run(args: argparse.Namespace, arm: Optional[Arm], seed: Optional[int], output: str
                ) -> tuple[RunRecord, Optional[dict], str]:
    """One run's record (and the checkpoint it resumes, if any)."""
    resume_path = os.path.join(output, "last.pth") if args.resume == "auto" else args.resume
    resume = load_checkpoint(resume_path) if resume_path and os.path.exists(resume_path) else None
    if args.resume not in (None, "auto") and resume is None:
        raise CheckpointError(f"checkpoint not found: {args.resume}")
    given = dict(_given(args), output=output)
    DATASETS[given["dataset"]].check_options(given["dataset"], given.get("data_options", {}))
    if arm is not None:
        given.update(arm.settings)
    if seed is not None and args.seeds is not None:  # else --seed (or the resumed run's own)
        given["seed"] = seed
    if resume is not None:
        stored = stored_record(resume, resume_path)
        return (resolve(given, stored=stored, start_epoch=int(resume["epoch"]) + 1, soft=cli.soft_flags(args)), resume,
                resume_path)
    model = given.get("model") or DEFAULT_MODEL
    recipe = {"model": model, **model_data_defaults(model),
              **recipe_for(model, given["dataset"], given.get("img_size"))}
    return resolve(given, recipe=recipe, soft=cli.soft_flags(args)), None, ""


def evaluate_only(args: argparse.Namespace, info: Any, runs: list[PlannedRun]) -> int:
    """Top-1/top-5 on the test split of one checkpoint or weight file; prints a JSON line."""
    if len(runs) > 1:
        raise ConfigError("--evaluate-only evaluates one model; drop --head/--seeds or the backward list")
    if args.resume == "auto" or not (args.resume or args.checkpoint or args.pretrained):
        raise ConfigError("--evaluate-only needs weights: --resume CKPT (a fine-tune checkpoint), --checkpoint or "
                          "--pretrained")
    resume = load_checkpoint(args.resume) if args.resume else None
    given = dict(_given(args), output=args.output)
    DATASETS[given["dataset"]].check_options(given["dataset"], given.get("data_options", {}))
    if resume is not None:
        record = resolve(given, stored=stored_record(resume, args.resume), evaluation=True)
    else:
        record = resolve_run(args, runs[0].arm, None, args.output)[0]
    train_set, test_set = load_splits(record.data, not args.no_image_check)
    record = with_class_count(record, train_set.classes, from_checkpoint=resume is not None,
                              fingerprints=fingerprints(record.data, (train_set, test_set)))
    evaluate_weights(build_model(record, args).to(info.device), test_set, info, record, resume, args.resume or "")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = config_file.parse_args(parser, argv)
    cli.check_seed_flags(args)
    info = init_distributed(args.device, args.dist_timeout)
    args.world_size = info.world_size  # -b is per process (timm's); the record keeps the global batch
    runs = plan(args)
    if args.evaluate_only:
        return evaluate_only(args, info, runs)
    resolved = [resolve_run(args, r.arm, r.seed, r.output) for r in runs]  # every refusal before any run
    for record, _, _ in resolved:
        check_output_outside_data(record.output, record.data.root)
    splits = load_splits(resolved[0][0].data, not args.no_image_check)
    prints = fingerprints(resolved[0][0].data, splits)
    check_models([with_class_count(r, splits[0].classes, from_checkpoint=res is not None, fingerprints=prints)
                  for r, res, _ in resolved])
    results: dict[str, list[list[dict]]] = {}
    failures: dict[str, list] = {}
    for index, (planned, (record, resume, source)) in enumerate(zip(runs, resolved)):
        if record.data != resolved[0][0].data:
            raise ConfigError(f"{record.output}: its checkpoint read other data than this comparison's first run")
        record = with_class_count(record, splits[0].classes, from_checkpoint=resume is not None, fingerprints=prints)
        if len(runs) > 1 and info.is_main:
            print(f"[run {index + 1}/{len(runs)}: {planned.name} seed {record.seed}]", flush=True)
        stopped = read_failure(record.output) if args.resume == "auto" and resume is None else None
        if stopped is not None:  # a run that failed before its first epoch was saved: finished as failed
            state = FitState(history=list(stopped["history"]), failed=stopped)
        else:
            torch.manual_seed(record.seed)
            model = build_model(record, args).to(info.device)
            state = run(model, splits[0], splits[1], info, record, resume=resume, resume_source=source,
                        args_yaml=config_file.args_yaml(cli.record_flags(record, args, parser)))
        results.setdefault(planned.name, []).append(state.history)
        failures.setdefault(planned.name, []).append(state.failed)
    if len(runs) > 1 and info.is_main:
        setting = cli.comparison_setting(record, args, len(splits[0]), len(splits[1]), info.device,
                                         recipe="the model's fine-grained recipe (gcp.finegrained.recipes), "
                                                "under the flags")
        paths = write_comparison(results, args.output, title=f"{args.dataset}, {resolved[0][0].model}",
                                 failures=failures, setting=setting)
        print("wrote " + ", ".join(paths))
    return 0


def console_main() -> int:
    """The installed command: typed errors end as one line on stderr, exit status 2."""
    return cli.exit_on_error(main)


if __name__ == "__main__":
    raise SystemExit(console_main())
