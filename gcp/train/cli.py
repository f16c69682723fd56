"""The flags both training commands share, and how they become run-record values.

Every shared flag defaults to ``None`` ("not given"), so a recipe or a resumed checkpoint can
fill it and a value the user gave always wins (:func:`gcp.train.record.resolve`). Library code
takes :class:`~gcp.train.record.RunRecord` values; only this module reads argparse namespaces.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Any, Callable, Optional

import gcp

from . import fields
from .config import RECIPES
from .errors import ConfigError


def parse_head_option(text: str) -> tuple[str, Any]:
    """``"degree=9"`` → ``("degree", 9)`` for ``--head-opt`` (values parsed as Python literals)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def recipes_help() -> str:
    lines = ["recipes (flags you give override them):"]
    for name, recipe in RECIPES.items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={fields.shown(k, v)}" for k, v in recipe.items()))
    return "\n".join(lines)


def add_head_arguments(p: argparse.ArgumentParser, backward_help: str = "") -> None:
    g = p.add_argument_group("GCP head")
    g.add_argument("--method", default=None, choices=gcp.METHODS, help="how the head pools: " + "; ".join(
        f"{m}: {gcp.get_method(m).summary}" for m in gcp.METHODS))
    g.add_argument("--head", default=None, metavar="HEADS",
                   help="several heads compared in one command, each METHOD[:BACKWARD][(KEY=VALUE, ...)], "
                        "comma-separated, e.g. gap,bcnn,cbp,isqrt,svd:exact,svd:pade (one run per head and seed)")
    g.add_argument("--backward", default=None, metavar="MODE",
                   help=(backward_help or "backward mode of method svd") + ": " + ", ".join(gcp.BACKWARDS))
    g.add_argument("--iters", type=int, default=None, help="iterations of method isqrt (or of backward pi/ns/lyap)")
    g.add_argument("--alpha", type=float, default=None, help="matrix power of method svd (0.5: square root)")
    g.add_argument("--reduced-dim", type=int, default=None, help="channels after the 1×1 reduction (256)")
    g.add_argument("--drop", "--drop-rate", dest="drop_rate", type=float, default=None,
                   action=fields.deprecating(None, ("--drop-rate",), "--drop"), help="dropout before the classifier")
    g.add_argument("--head-opt", type=parse_head_option, action="append", default=None, metavar="KEY=VALUE",
                   help="an option of the method or of the backward mode, e.g. --head-opt degree=9, "
                        "--head-opt proj_dim=2048 (repeatable)")
    g.add_argument("--hybrid-switch-epoch", type=int, default=None,
                   help="switch the head to --hybrid-method/--hybrid-backward at this epoch (ICCV'21)")
    g.add_argument("--hybrid-method", default=None, choices=gcp.METHODS, help="method after the switch (svd)")
    g.add_argument("--hybrid-backward", default=None, metavar="MODE", help="backward after the switch (pade)")
    g.add_argument("--hybrid-head-opt", type=parse_head_option, action="append", default=None,
                   metavar="KEY=VALUE", help="an option of the backward mode after the switch")


def add_norm_arguments(p: argparse.ArgumentParser) -> None:
    """The ZCA/PCA layer's flags: ``--norm-layer --norm-at --norm-components`` from the declarations,
    and ``--norm-dim``/``--norm-backward``, which take lists (one run per combination)."""
    g = fields.add_arguments(p, "norm")
    g.add_argument("--norm-dim", dest="norm_dims", default=None, metavar="D[,D...]",
                   help="channels per ZCA group (groups = C / D); a comma-separated list sweeps them")
    g.add_argument("--norm-backward", dest="norm_backwards", default=None, metavar="MODE[,MODE...]",
                   help="backward mode of the layer's eigendecomposition (" + ", ".join(gcp.BACKWARDS) +
                        "); a comma-separated list sweeps them")


def add_optim_arguments(p: argparse.ArgumentParser) -> None:
    """The optimisation and regularisation flags, from the run record's declarations
    (:mod:`gcp.train.fields`)."""
    fields.add_arguments(p, "optim")
    fields.add_arguments(p, "regularisation")


def add_run_arguments(p: argparse.ArgumentParser, output: str) -> None:
    """The run flags, from the declarations, and the flags that steer the command."""
    g = fields.add_arguments(p, "run")
    g.add_argument("--amp", nargs="?", const="on", default=None, choices=("on", "none", "bf16", "fp16"),
                   help="mixed precision (timm's --amp, with --amp-dtype; the value form --amp bf16 is deprecated)")
    g.add_argument("--amp-dtype", default=None, choices=("float16", "bfloat16"),
                   help="the dtype of --amp (default float16, as timm's)")
    g.add_argument("--output", default=output, help=f"the run folder (default {output}); one run per folder")
    g.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="under torchrun: end the job with a clear error when a rank does not respond within "
                        "this many seconds (default 300; gloo's own default is 30 minutes)")
    g.add_argument("--no-image-check", action="store_true",
                   help="skip opening every image's header before training (files and labels are still checked)")


# argparse destination -> run-record key, where they differ
_RENAMED = {"head_opt": "head_options", "hybrid_head_opt": "hybrid_options", "val_split": "eval_split"}
# flags that steer the command rather than define the run
_COMMAND_ONLY = {"recipe", "resume", "evaluate_only", "pretrained", "pretrained_file", "backbone_pretrained",
                 "checkpoint", "seeds", "sync_bn", "no_image_check", "dist_timeout", "head", "config", "config_soft",
                 "norm_dims", "norm_backwards", "world_size"}
# command flags an args.yaml does not repeat: they pick other runs (a resume, an evaluation, a list)
_NOT_REPEATED = {"resume", "evaluate_only", "head", "seeds", "config", "config_soft", "norm_dims", "norm_backwards",
                 "world_size"}


def arms(ns: argparse.Namespace) -> list[Any]:
    """The arms of a command line (:func:`gcp.train.arms.arms_of`): heads or backward modes, times
    the ZCA/PCA sweep."""
    from .arms import arms_of

    return arms_of(ns.head, ns.backward, given_flags(ns), ns.norm_dims, ns.norm_backwards)


def comparison_setting(record: Any, ns: argparse.Namespace, train_size: int, eval_size: int,
                       device: Any, recipe: Optional[str] = None) -> dict[str, str]:
    """What a comparison's numbers come from, for the head of its table: data and split sizes,
    model, recipe, epochs, image size, device, versions and the command."""
    import platform
    import shlex

    import timm
    import torch

    return {
        "dataset": f"{record.data.dataset} ({record.data.root}): {train_size} training / {eval_size} "
                   f"{record.data.eval_split} images, {record.num_classes} classes",
        "model": record.model,
        "recipe": recipe or getattr(ns, "recipe", None) or "none (the flags and defaults)",
        "epochs": str(record.epochs), "image size": str(record.data.img_size),
        "batch": str(record.batch_size), "device": str(device),
        "versions": f"torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}",
        "command": " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    }


def check_seed_flags(ns: argparse.Namespace) -> None:
    """``--seed`` (one run) and ``--seeds`` (one run per seed) both say which seeds run."""
    if getattr(ns, "seed", None) is not None and getattr(ns, "seeds", None) is not None:
        seeds = " ".join(map(str, ns.seeds))
        raise ConfigError(f"--seed {ns.seed} and --seeds {seeds} both choose the seeds: give one")


def soft_flags(ns: argparse.Namespace) -> frozenset[str]:
    """The run settings a ``--config`` file gave at timm's defaults, under their record names:
    inert where they do not apply (:mod:`gcp.train.config_file`)."""
    return frozenset(_RENAMED.get(d, d) for d in getattr(ns, "config_soft", frozenset()))


def record_flags(record: Any, ns: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A run's flags, for its ``args.yaml``: every setting of the resolved record that has a flag
    and means something in the run (in its flag's form), and the command flags that shape the run
    (its starting weights), so that ``--config args.yaml`` resolves to the same record. Keys are
    the flags' names in underscores (timm's, ``clip_grad``), as timm's ``args.yaml`` has them."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    dests = set(actions)
    inverse = {v: k for k, v in _RENAMED.items()}
    out: dict[str, Any] = {d: getattr(ns, d, None) for d in sorted(_COMMAND_ONLY & dests - _NOT_REPEATED)}
    flat = record.flat()
    for key, value in flat.items():
        declared = fields.BY_NAME.get(key)
        if declared is not None and declared.applies is not None and not declared.applies.test(flat):
            continue  # means nothing in this run (--min-lr on a step schedule)
        if key == "amp":
            out["amp"] = value != "none"
            if value != "none":
                out["amp_dtype"] = {"bf16": "bfloat16", "fp16": "float16"}[value]
            continue
        if key in ("head_options", "hybrid_options"):
            value = [f"{k}={v!r}" for k, v in dict(value).items()] or None
        if key == "data_options":
            out.update({k: v for k, v in dict(value).items() if k in dests})
            continue
        dest = {"norm_dim": "norm_dims", "norm_backward": "norm_backwards"}.get(key, inverse.get(key, key))
        if key == "batch_size":
            value = value // world_size(ns)  # the flag is per process
        if dest in dests:
            out[dest] = fields.shown(key, value)
    return {_key(actions[d]) if d in actions else d: v for d, v in out.items()}


def _key(action: argparse.Action) -> str:
    """A flag's name in a config file: its current long spelling, in underscores."""
    return next(o for o in action.option_strings if o.startswith("--"))[2:].replace("-", "_")


def world_size(ns: argparse.Namespace) -> int:
    """The number of processes a command runs in (set on the namespace once torch.distributed is up)."""
    return int(getattr(ns, "world_size", 1) or 1)


def given_flags(ns: argparse.Namespace) -> dict[str, Any]:
    """The run settings the user gave (every shared flag defaults to ``None``: not given), under
    their :class:`~gcp.train.record.RunRecord` names; repeated ``KEY=VALUE`` options become dicts."""
    out: dict[str, Any] = {}
    values = dict(vars(ns))
    if "amp" in values or "amp_dtype" in values:
        values["amp"] = _amp(values.pop("amp", None), values.pop("amp_dtype", None))
    for name, value in values.items():
        if name in _COMMAND_ONLY or value is None:
            continue
        key = _RENAMED.get(name, name)
        if key in ("head_options", "hybrid_options"):
            value = dict(value)
        elif key in fields.BY_NAME and fields.BY_NAME[key].from_flag is not None:
            value = fields.BY_NAME[key].from_flag(value)  # the flag's convention → the record's meaning
        elif key == "batch_size" and isinstance(value, int):
            value *= world_size(ns)  # timm's -b is per process; the record keeps the global batch
        out[key] = value
    return out


def _amp(amp: Optional[str], dtype: Optional[str]) -> Optional[str]:
    """timm's ``--amp [--amp-dtype D]`` as the run record's meaning (``"fp16"``, ``"bf16"``); the
    deprecated value form ``--amp bf16`` is accepted for one release."""
    if amp is None:
        if dtype is not None:
            raise ConfigError(f"--amp-dtype {dtype} applies with --amp only: add --amp, or drop --amp-dtype")
        return None
    if amp == "on":
        return "bf16" if dtype == "bfloat16" else "fp16"
    print(f"--amp {amp} is deprecated and goes in the next release; use --amp --amp-dtype "
          f"{ {'bf16': 'bfloat16', 'fp16': 'float16'}.get(amp, '…') } (timm's names)", file=sys.stderr)
    if dtype is not None:
        raise ConfigError(f"--amp {amp} and --amp-dtype {dtype} both set the precision: give --amp --amp-dtype {dtype}")
    return amp


def exit_on_error(main: Callable[[Optional[list[str]]], int], argv: Optional[list[str]] = None) -> int:
    """Run a command's ``main``; a typed error of any gcp layer becomes ``error: <message>`` on
    stderr and exit status 2 (argparse's status for a usage error), never a traceback."""
    try:
        return main(argv)
    except gcp.GCPError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line. A ``DataLoader`` worker's error reaches the main process
    as the same type with the worker's traceback as its message; its last line is the cause."""
    text = str(exc)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        cause = last.split(": ", 1)[1] if ": " in last else last
        return f"{cause} (in a DataLoader worker)"
    return " ".join(text.split())
