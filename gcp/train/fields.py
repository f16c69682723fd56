"""The run record's fields, each declared once: its flag, its rule, what it applies to, and whether a
resume or an evaluation may change it.

Everything else is derived from :data:`FIELDS`: the flags of both training commands
(:func:`add_arguments`), the run record's flat keys, the rules a value must meet, the refusal of a
flag that applies to nothing in this run (``--min-lr`` on a step schedule, ``--model-ema-decay``
without ``--model-ema``), what a resume may change and what an evaluation keeps. Adding a field is
one declaration here and one attribute of :class:`~gcp.train.record.RunRecord`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from gcp.validators import is_int, is_real

Flat = Mapping[str, Any]


@dataclass(frozen=True)
class Applies:
    """When a field means something: ``test(record)`` on the resolved flat record, and the
    condition in words, as an error message says it (``"--sched cosine"``)."""

    test: Callable[[Flat], bool]
    condition: str


@dataclass(frozen=True)
class Field:
    """One run setting.

    ``rule`` returns whether a value is valid (given the whole flat record) and ``requirement`` says
    what valid is; ``applies`` (``None``: always) refuses a flag given where it means nothing;
    ``resume`` is ``"fixed"`` (a resumed run keeps it), ``"free"`` (how the run is executed) or
    ``"grow"`` (epochs, with its own rule); ``evaluation`` ``"fixed"`` means an evaluation takes it
    from the checkpoint. ``arg`` holds the argparse keywords of its flag (no flag: ``None``);
    ``group`` the flags' section in ``--help``.
    """

    name: str
    help: str = ""
    group: str = "run"
    rule: Optional[Callable[[Any, Flat], bool]] = None
    requirement: str = ""
    applies: Optional[Applies] = None
    resume: str = "fixed"
    evaluation: str = "free"
    arg: Optional[dict[str, Any]] = field(default_factory=dict)
    #: timm's spelling where it differs from the field's name (``--clip-grad`` for ``grad_clip``)
    spelling: Optional[str] = None
    #: a short option (timm's ``-j``)
    short: Optional[str] = None
    #: earlier spellings, still accepted for one release with a one-line warning
    deprecated: tuple[str, ...] = ()
    #: the flag's value as the record stores its meaning, and back (``None``: the same value)
    from_flag: Optional[Callable[[Any], Any]] = None
    to_flag: Optional[Callable[[Any], Any]] = None

    @property
    def flag(self) -> str:
        return self.spelling or "--" + self.name.replace("_", "-")


def _int_at_least(n: int) -> Callable[[Any, Flat], bool]:
    return lambda v, r: is_int(v) and v >= n


def _positive(v: Any, r: Flat) -> bool:
    return is_real(v) and v > 0


def _non_negative(v: Any, r: Flat) -> bool:
    return is_real(v) and v >= 0


def _milestones_from_flag(values: Any) -> tuple[int, ...]:
    """timm's ``--decay-milestones``: milestone M decays the lr from the M-th epoch, counted from 1
    as the logs count (timm's scheduler applies it at epoch index M − 1); the record stores that
    0-based index."""
    from .errors import ConfigError

    values = tuple(values)
    if not all(is_int(m) and m >= 1 for m in values):
        raise ConfigError(f"--decay-milestones must be epochs counted from 1 (timm's convention: M decays the lr "
                          f"from the M-th epoch), got {list(values)}")
    return tuple(m - 1 for m in values)


def _milestones_to_flag(values: Any) -> list[int]:
    return [int(m) + 1 for m in values]


def _milestones(v: Any, r: Flat) -> bool:
    values = list(v)
    return all(is_int(m) and m >= 0 for m in values) and values == sorted(set(values))


MULTISTEP = Applies(lambda r: r.get("sched") == "multistep", "--sched multistep")
STEP = Applies(lambda r: r.get("sched") == "step", "--sched step")
DECAYING = Applies(lambda r: r.get("sched") in ("multistep", "step"), "--sched multistep or step")
COSINE = Applies(lambda r: r.get("sched") == "cosine", "--sched cosine")
WARMUP = Applies(lambda r: (r.get("warmup_epochs") or 0) > 0, "--warmup-epochs > 0")
EMA = Applies(lambda r: bool(r.get("model_ema")), "--model-ema")


def _timm_optimizer(name: Any) -> Any:
    from timm.optim import get_optimizer_info, list_optimizers

    return get_optimizer_info(name) if isinstance(name, str) and name in list_optimizers() else None


def _known_optimizer(v: Any, r: Flat) -> bool:
    return _timm_optimizer(v) is not None


def _has_momentum(r: Flat) -> bool:
    info = _timm_optimizer(r.get("opt", "momentum"))
    return info is not None and info.has_momentum


MOMENTUM = Applies(_has_momentum, "an --opt that has momentum (momentum, sgd, rmsprop, …)")


# the sections timm's rand_augment_transform reads; it skips one without digits ("rand-q") silently,
# so a misspelt policy would train with its defaults instead
_RAND_SECTION = re.compile(r"t\w+|mstd\d+(\.\d+)?|mmax\d+|inc[01]|m\d+|n\d+|p(\d+(\.\d*)?|\.\d+)")


def _rand_augment(v: Any, r: Flat) -> bool:
    from timm.data.auto_augment import rand_augment_transform

    if not isinstance(v, str) or v.split("-")[0] != "rand":
        return False
    if not all(_RAND_SECTION.fullmatch(section) for section in v.split("-")[1:]):
        return False
    try:
        rand_augment_transform(v, {})
    except Exception:  # noqa: BLE001 - timm raises assorted errors on a malformed policy string
        return False
    return True


def _fraction(v: Any, r: Flat) -> bool:
    return is_real(v) and 0 <= v < 1


NORM = Applies(lambda r: r.get("norm_layer") is not None, "--norm-layer zca|pca")
ZCA = Applies(lambda r: r.get("norm_layer") == "zca", "--norm-layer zca")
PCA = Applies(lambda r: r.get("norm_layer") == "pca", "--norm-layer pca")
STOP = Applies(lambda r: r.get("on_nonfinite") == "stop", "--on-nonfinite stop")


#: timm's names and meanings (its train.py's --sched); the record stores the same names
SCHEDULES = ("multistep", "step", "cosine")
COMPILE = Applies(lambda r: r.get("torchcompile") is not None, "--torchcompile")


def _compile_backend(v: Any, r: Flat) -> bool:
    import torch._dynamo

    return v is None or v in torch._dynamo.list_backends(exclude_tags=())


def _backward_mode(v: Any, r: Flat) -> bool:
    import gcp

    return v is None or v in gcp.BACKWARDS


def _resnet(r: Flat) -> bool:
    import gcp.zoo

    spec = gcp.zoo.spec_of(str(r.get("model", "")))
    return spec is not None and spec.family == "resnet"


RESNET = Applies(_resnet, "a curated GCP ResNet (gcp_resnet18 … gcp_resnet152)")

_MODEL = dict(group="model", evaluation="fixed", arg=None)
_HEAD = dict(group="head", evaluation="fixed", arg=None)
_DATA = dict(group="data", evaluation="fixed", arg=None)

#: every field of the run record, in the order of ``--help``
FIELDS: tuple[Field, ...] = (
    # what is trained: the model, its head and its data (their flags are the commands' own)
    Field("model", **_MODEL),
    Field("num_classes", **_MODEL),
    Field("class_names", **_MODEL),
    *(Field(n, **_HEAD) for n in ("method", "backward", "iters", "alpha", "head_options", "reduced_dim",
                                  "drop_rate", "hybrid_switch_epoch", "hybrid_method", "hybrid_backward",
                                  "hybrid_options")),
    Field("last_stride", applies=RESNET, **_HEAD),
    # a ZCA whitening or PCA denoising layer in place of a batch normalisation (Wang et al., NeurIPS 2019);
    # --norm-dim and --norm-backward take lists (a sweep), so their flags are the commands' own
    Field("norm_layer", "replace a batch normalisation by ZCA whitening or PCA denoising (NeurIPS'19)", "norm",
          lambda v, r: v in (None, "zca", "pca"), "zca or pca", evaluation="fixed", arg=dict(choices=("zca", "pca"))),
    Field("norm_dim", group="norm", rule=lambda v, r: v is None or (is_int(v) and v >= 1),
          requirement="an integer >= 1", applies=ZCA, evaluation="fixed", arg=None),
    Field("norm_backward", group="norm", rule=_backward_mode, requirement="a backward mode (gcp.BACKWARDS)",
          applies=NORM, evaluation="fixed", arg=None),
    Field("norm_at", "the batch normalisation it replaces, a dotted module path (default: the first one, the "
          "stem's)", "norm", lambda v, r: v is None or (isinstance(v, str) and bool(v)), "a module path",
          applies=NORM, evaluation="fixed", arg=dict(metavar="PATH")),
    Field("norm_components", "components PCA keeps (its k; default 16)", "norm",
          lambda v, r: v is None or (is_int(v) and v >= 1), "an integer >= 1", applies=PCA, evaluation="fixed",
          arg=dict(type=int)),
    *(Field(n, **_DATA) for n in ("dataset", "train_split", "eval_split", "img_size", "crop_pct", "resize",
                                  "interpolation", "mean", "std", "data_options")),
    # the folder may move or be spelt otherwise; the fingerprint of its files decides (with_class_count)
    Field("data_dir", group="data", resume="free", arg=None),
    Field("data_fingerprint", group="data", evaluation="fixed", arg=None),
    # how it is optimised
    Field("epochs", "epochs to train", "optim", _int_at_least(1), "an integer >= 1", resume="grow",
          arg=dict(type=int)),
    # the flag is timm's -b, per process; the record stores the global batch (gcp.train.cli.given_flags)
    Field("batch_size", "batch size per process (timm's -b); the run records the global batch, this times the "
          "number of processes", "optim", _int_at_least(1), "an integer >= 1", arg=dict(type=int), short="-b"),
    Field("lr", "base learning rate", "optim", _positive, "a number > 0", arg=dict(type=float)),
    Field("opt", "optimizer, by timm's name (timm.optim.list_optimizers()); default 'momentum', the papers' "
          "SGD with (non-Nesterov) momentum", "optim", _known_optimizer,
          "an optimizer name timm knows (timm.optim.list_optimizers())", arg=dict(metavar="NAME")),
    Field("momentum", "momentum of --opt", "optim", lambda v, r: is_real(v) and 0 <= v < 1, "in [0, 1)",
          applies=MOMENTUM, arg=dict(type=float)),
    Field("weight_decay", "weight decay", "optim", _non_negative, "a number >= 0", arg=dict(type=float)),
    Field("classifier_lr_mult", "lr multiplier of the classifier", "optim", _positive, "a number > 0",
          arg=dict(type=float)),
    Field("reduction_lr_mult", "lr multiplier of the 1x1 reduction", "optim", _positive, "a number > 0",
          arg=dict(type=float)),
    Field("layer_decay", "layer-wise lr decay (timm's; the classifier and reduction multipliers apply on top, and "
          "1-d parameters get no weight decay, as in timm)", "optim",
          lambda v, r: v is None or (is_real(v) and 0 < v <= 1), "in (0, 1]", arg=dict(type=float)),
    Field("grad_accum_steps", "micro-batches of --batch-size per optimizer step", "optim", _int_at_least(1),
          "an integer >= 1", arg=dict(type=int)),
    Field("sched", "learning-rate schedule, timm's: multistep (at --decay-milestones; the papers'), step (every "
          "--decay-epochs) or cosine", "optim", lambda v, r: v in SCHEDULES, "multistep, step or cosine",
          arg=dict(choices=SCHEDULES)),
    Field("decay_milestones", "epochs, counted from 1 as the logs count, from which the lr is multiplied by "
          "--decay-rate (timm's convention)", "optim", _milestones, "increasing epochs counted from 1",
          applies=MULTISTEP, arg=dict(type=int, nargs="*"), from_flag=_milestones_from_flag,
          to_flag=_milestones_to_flag),
    Field("decay_epochs", "the lr is multiplied by --decay-rate every this many epochs", "optim", _int_at_least(1),
          "an integer >= 1", applies=STEP, arg=dict(type=int)),
    Field("decay_rate", "lr factor at each decay", "optim", lambda v, r: is_real(v) and 0 < v <= 1, "in (0, 1]",
          applies=DECAYING, arg=dict(type=float)),
    Field("warmup_epochs", "epochs of linear warm-up from --warmup-lr", "optim",
          lambda v, r: is_int(v) and 0 <= v < r.get("epochs", v + 1), "an integer in [0, --epochs)",
          arg=dict(type=int)),
    Field("warmup_lr", "lr at the start of the warm-up", "optim", _non_negative, "a number >= 0", applies=WARMUP,
          arg=dict(type=float)),
    Field("min_lr", "the lr the cosine schedule ends at", "optim",
          lambda v, r: is_real(v) and 0 <= v <= r.get("lr", v), "in [0, --lr]", applies=COSINE, arg=dict(type=float)),
    Field("on_nonfinite", "a step with a non-finite loss or gradient: 'skip' it (counted) or 'stop' the run, "
          "recorded as failed with its epoch and step (the NeurIPS'19 experiment's failure rate)", "optim",
          lambda v, r: v in ("skip", "stop"), "'skip' or 'stop'", arg=dict(choices=("skip", "stop"))),
    Field("grad_clip", "clip the gradient norm to this value", "optim",
          lambda v, r: v is None or (is_real(v) and v > 0), "a number > 0", arg=dict(type=float),
          spelling="--clip-grad", deprecated=("--grad-clip",)),
    # regularisation, through timm's own classes
    Field("smoothing", "label smoothing (timm's LabelSmoothingCrossEntropy, or Mixup's soft targets)",
          "regularisation", _fraction, "in [0, 1)", arg=dict(type=float)),
    Field("mixup", "mixup alpha (timm.data.Mixup, with SoftTargetCrossEntropy); 0: off", "regularisation",
          _non_negative, "a number >= 0", arg=dict(type=float)),
    Field("cutmix", "cutmix alpha (timm.data.Mixup); 0: off", "regularisation", _non_negative, "a number >= 0",
          arg=dict(type=float)),
    Field("aa", "RandAugment policy of the training images, timm's string (e.g. rand-m9-mstd0.5-inc1)",
          "regularisation", lambda v, r: v is None or _rand_augment(v, r),
          "a RandAugment policy such as rand-m9-mstd0.5-inc1", arg=dict(metavar="POLICY")),
    Field("drop_path", "stochastic-depth rate of the backbone (timm's drop_path_rate)", "regularisation",
          lambda v, r: v is None or _fraction(v, r), "in [0, 1)", arg=dict(type=float)),
    # how the run is executed
    # its flags are timm's --amp and --amp-dtype (gcp.train.cli); the record stores the meaning
    Field("amp", "mixed precision", "run", lambda v, r: v in ("none", "bf16", "fp16"), "none, bf16 or fp16",
          arg=None),
    Field("channels_last", "channels-last memory format", "run", arg=dict(action="store_true")),
    Field("grad_checkpointing", "recompute the backbone's activations in the backward (less memory, same result)",
          "run", resume="free", arg=dict(action="store_true")),
    Field("torchcompile", "torch.compile the training model with this backend (timm's flag; alone: inductor)", "run",
          _compile_backend, "a torch.compile backend (torch._dynamo.list_backends(exclude_tags=()))", resume="free",
          arg=dict(nargs="?", const="inductor", metavar="BACKEND")),
    Field("torchcompile_mode", "torch.compile's mode", "run",
          lambda v, r: v in (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
          "default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs", applies=COMPILE, resume="free",
          arg=dict(choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))),
    Field("model_ema", "keep an exponential moving average of the weights (evaluated instead)", "run",
          arg=dict(action="store_true")),
    Field("model_ema_decay", "decay of the weight average", "run", lambda v, r: is_real(v) and 0 < v < 1,
          "in (0, 1)", applies=EMA, arg=dict(type=float)),
    Field("seed", "random seed", "run", _int_at_least(0), "an integer >= 0", arg=dict(type=int)),
    Field("max_steps_per_epoch", "cap steps per epoch (smoke tests)", "run",
          lambda v, r: v is None or (is_int(v) and v >= 1), "an integer >= 1", arg=dict(type=int)),
    Field("checkpoint_hist", "keep the full checkpoints of this many best epochs (best.pth is the best; 0: none)",
          "run", _int_at_least(0), "an integer >= 0", resume="free", arg=dict(type=int)),
    Field("export_best", "keep the best model as OUTPUT/best_model, a gcp.zoo.save_pretrained folder (weights "
          "and config; gcp.zoo.load_pretrained and timm's local-dir: read it)", "run", resume="free",
          arg=dict(action="store_true")),
    Field("flip_average", evaluation="free", arg=None),
    Field("output", resume="free", arg=None),
    Field("workers", "data-loading processes", "run", _int_at_least(0), "an integer >= 0", resume="free",
          arg=dict(type=int), short="-j"),
    Field("device", "cpu or cuda (default: cuda when available)", "run", resume="free", arg=dict()),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
#: the run record's flat keys
FLAT_KEYS: frozenset[str] = frozenset(BY_NAME)
#: what a resume may change: how the run is executed, never what it computes (``--epochs``: its own rule)
RESUME_MUTABLE: frozenset[str] = frozenset(f.name for f in FIELDS if f.resume in ("free", "grow"))
#: what an evaluation of a checkpoint takes from it: the model, its head and its data
EVALUATION_FIXED: frozenset[str] = frozenset(f.name for f in FIELDS if f.evaluation == "fixed")
GROUP_TITLES = {"optim": "optimisation (default: the recipe's, else the papers' SGD)", "run": "run",
                "norm": "ZCA whitening / PCA denoising layer (NeurIPS'19)",
                "regularisation": "regularisation (timm's; default: none)"}


def add_arguments(parser: argparse.ArgumentParser, group: str) -> argparse._ArgumentGroup:
    """The flags of ``group``'s fields, each defaulting to ``None`` (not given)."""
    g = parser.add_argument_group(GROUP_TITLES.get(group, group))
    for f in FIELDS:
        if f.group == group and f.arg is not None:
            names = [n for n in (f.short, f.flag) if n] + list(f.deprecated)
            kwargs = dict(f.arg)
            if f.deprecated:
                kwargs["action"] = deprecating(kwargs.get("action"), f.deprecated, f.flag)
            g.add_argument(*names, dest=f.name, default=None, help=f.help or None, **kwargs)
    return g


def deprecating(action: Any, old: tuple[str, ...], new: str) -> type[argparse.Action]:
    """An argparse action that, given one of the ``old`` spellings, says once on stderr to use
    ``new`` (timm's name) and then does what ``action`` does."""
    import sys

    base = {None: argparse._StoreAction, "store_true": argparse._StoreTrueAction}[action]

    class Deprecated(base):  # type: ignore[misc, valid-type]
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: Optional[str] = None) -> None:
            if option_string in old:
                print(f"{parser.prog}: {option_string} is deprecated and goes in the next release; use {new} "
                      "(timm's name)", file=sys.stderr)
            super().__call__(parser, namespace, values, option_string)

    return Deprecated


def shown(name: str, value: Any) -> Any:
    """A record value as its flag spells it (``decay_milestones`` (29,) → ``[30]``)."""
    f = BY_NAME.get(name)
    if f is not None and f.to_flag is not None and value is not None:
        return f.to_flag(value)
    return list(value) if isinstance(value, tuple) else value


def violations(values: Flat) -> list[str]:
    """Every rule a flat record breaks, as ``--flag must be …, got …`` (the value as the flag has it)."""
    out = []
    for name, value in values.items():
        f = BY_NAME.get(name)
        if f is not None and f.rule is not None and value is not None and not f.rule(value, values):
            out.append(f"{f.flag} must be {f.requirement}, got {shown(name, value)!r}")
    return out


def inapplicable(given: Flat, record: Flat) -> list[str]:
    """The flags the user gave that mean nothing in this run, each with the condition it needs."""
    out = []
    for name in given:
        f = BY_NAME.get(name)
        if f is not None and f.applies is not None and not f.applies.test(record):
            out.append(f"{f.flag} applies with {f.applies.condition} only")
    return out
