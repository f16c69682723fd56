"""The run record: everything that defines a run, in one typed, frozen value.

A :class:`RunRecord` holds the model name, the head (architecture options apart from the
normalisation), the hybrid phase, the data (dataset, root, splits, size, resize/crop, statistics,
dataset options), the optimisation and the run settings. Checkpoints store it and nothing else
about the run. :func:`resolve` builds it from the flags a user gave, a recipe and a stored
record, with one precedence rule; the same function decides what a resume may change.

Rules live where the types are defined: :class:`Normalisation` builds the head's
:class:`gcp.HeadConfig`, whose validation (from the head-method and backward-mode registries)
refuses a backward mode for a method that takes none and an option that belongs to neither the
method nor its backward; the error names the flag.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import gcp
import gcp.zoo
from gcp.validators import is_int, is_real

from .cifar import CIFAR
from .errors import ConfigError
from .fields import EVALUATION_FIXED, FLAT_KEYS, RESUME_MUTABLE, inapplicable, shown, violations
from .optim import OptimizerSettings, ScheduleSettings

DEFAULT_MODEL = "gcp_resnet50"

def _sorted_items(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), _freeze(v)) for k, v in dict(options).items()))


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return _sorted_items(value)
    return value


def _thaw(value: Any) -> Any:
    """JSON/pickle-safe plain values: tuples become lists."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------- the head
@dataclass(frozen=True)
class Normalisation:
    """The part of the head that :meth:`gcp.GCPHead.set_method` switches: method, backward mode and
    their options (``iters`` and ``alpha`` have flags of their own; the rest come by
    ``--head-opt``). It is validated by building the :class:`gcp.HeadConfig` it stands for."""

    method: str
    backward: Optional[str] = None
    iters: Optional[int] = None
    alpha: Optional[float] = None
    options: tuple[tuple[str, Any], ...] = ()
    flag_prefix: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _sorted_items(dict(self.options)))
        p = self.flag_prefix
        reserved = sorted(k for k, _ in self.options if k in ("method", "backward", "iters", "alpha"))
        if reserved:
            raise ConfigError(f"--{p}head-opt {reserved[0]}=…: {reserved[0]} is a head setting, not a mode option; "
                              f"pass --{p}{reserved[0]}")
        try:
            self.config()
        except (gcp.GCPError, TypeError) as exc:
            raise ConfigError(f"{self._blame(str(exc))}: {exc}") from None

    def _blame(self, message: str) -> str:
        """The flag an error of the head configuration is about."""
        p = self.flag_prefix
        if self.method not in gcp.methods.registered_methods():
            return f"--{p}method {self.method}"
        if self.backward is not None and not gcp.get_method(self.method).takes_backward:
            return f"--{p}backward {self.backward} (with --{p}method {self.method})"
        for name in ("iters", "alpha"):
            if getattr(self, name) is not None and f"'{name}'" in message:
                return f"--{p}{name} {getattr(self, name)} (with --{p}method {self.method})"
        return f"--{p}method {self.method}" + (f" --{p}backward {self.backward}" if self.backward else "") + \
            (f" --{p}head-opt {dict(self.options)}" if self.options else "")

    def flat_options(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in ("iters", "alpha") if getattr(self, name) is not None}
        out.update(dict(self.options))
        return out

    def config(self, reduced_dim: Optional[int] = None, drop_rate: float = 0.0) -> gcp.HeadConfig:
        """The head configuration (with ``reduced_dim`` and ``drop_rate``, which are not switched)."""
        return gcp.HeadConfig.from_kwargs(self.method, self.backward, reduced_dim, drop_rate, **self.flat_options())

    def head_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``GCPHead`` / ``create_model`` / ``set_method``."""
        out: dict[str, Any] = dict(method=self.method)
        if self.backward is not None:
            out["backward"] = self.backward
        out.update(self.flat_options())
        return out

    def canonical(self) -> gcp.HeadConfig:
        """The normalisation with every default filled in (two specs that build the same head
        compare equal)."""
        return self.config()

    @classmethod
    def of_head(cls, head: Any) -> "Normalisation":
        """What a built ``GCPHead`` runs."""
        config = head.config
        return cls(config.method, backward=config.backward,
                   options=_sorted_items({**dict(config.method_options), **dict(config.backward_options)}))


@dataclass(frozen=True)
class HeadSpec:
    """The head: its normalisation, and the architecture options fixed when the model is built
    (``None``: the model's default)."""

    norm: Normalisation
    reduced_dim: Optional[int] = None
    last_stride: Optional[int] = None
    drop_rate: Optional[float] = None

    def model_kwargs(self) -> dict[str, Any]:
        out = self.norm.head_kwargs()
        out.update({k: getattr(self, k) for k in ("reduced_dim", "last_stride", "drop_rate")
                    if getattr(self, k) is not None})
        return out


@dataclass(frozen=True)
class HybridSpec:
    """The hybrid protocol (Song et al., ICCV 2021): from ``switch_epoch`` on, the head runs ``norm``."""

    switch_epoch: int
    norm: Normalisation


# ----------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class DataSpec:
    """Which images a run reads and how they are prepared.

    ``dataset`` names a layout (``imagefolder`` for ImageNet-style folders; the fine-grained
    formats ``cub``, ``cars``, ``aircraft``, ``dogs``). With ``resize`` empty, evaluation resizes
    to ``img_size / crop_pct`` and training uses RandomResizedCrop (ImageNet); with ``resize``
    (one value: the shorter side, two: ``(h, w)``) both centre-crop ``img_size`` after it, and
    training adds a flip (fast-MPN-COV's fine-grained protocol)."""

    dataset: str
    root: str
    train_split: str = "train"
    eval_split: str = "val"
    img_size: int = 224
    crop_pct: float = 0.875
    resize: tuple[int, ...] = ()
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = tuple(IMAGENET_DEFAULT_MEAN)
    std: tuple[float, ...] = tuple(IMAGENET_DEFAULT_STD)
    options: tuple[tuple[str, Any], ...] = ()
    aa: Optional[str] = None  # RandAugment of the training images (timm's policy string)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resize", tuple(self.resize))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "options", _sorted_items(dict(self.options)))
        if not (is_int(self.img_size) and self.img_size >= 32):
            raise ConfigError(f"--img-size must be an integer >= 32, got {self.img_size!r}")
        if not (is_real(self.crop_pct) and 0 < self.crop_pct <= 1):
            raise ConfigError(f"--crop-pct must be in (0, 1], got {self.crop_pct!r}")
        if not all(is_int(r) and r >= self.img_size for r in self.resize) or len(self.resize) > 2:
            raise ConfigError(f"the resize {self.resize} must be one or two sizes >= --img-size {self.img_size}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ConfigError(f"interpolation must be bilinear, bicubic or nearest, got {self.interpolation!r}")
        if self.dataset in CIFAR:
            if self.img_size != 32:
                raise ConfigError(f"--img-size {self.img_size}: {self.dataset}'s images are 32×32")
            if (self.train_split, self.eval_split) != ("train", "test"):
                raise ConfigError(f"{self.dataset} has the splits train and test, not {self.train_split!r} / "
                                  f"{self.eval_split!r} (--val-split)")
            if self.resize:
                raise ConfigError(f"{self.dataset}: no resize (its images are 32×32)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean/std must be three numbers each (std > 0), got {self.mean}, {self.std}")


# ----------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class RunRecord:
    """Everything that defines a run (defaults: the papers' SGD). See the module docstring."""

    model: str
    head: HeadSpec
    data: DataSpec
    num_classes: Optional[int] = None
    class_names: tuple[str, ...] = ()  # the dataset's classes, in label order (filled when it is read)
    # what the data is, per split: ((split, "N files, C classes, sha256 …"), …), filled when it is read
    data_fingerprint: tuple[tuple[str, str], ...] = ()
    hybrid: Optional[HybridSpec] = None
    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.1
    opt: str = "momentum"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    classifier_lr_mult: float = 1.0
    reduction_lr_mult: float = 1.0
    layer_decay: Optional[float] = None
    grad_accum_steps: int = 1
    sched: str = "multistep"
    decay_milestones: tuple[int, ...] = ()
    decay_epochs: int = 90
    decay_rate: float = 0.1
    warmup_epochs: int = 0
    warmup_lr: float = 1e-4
    min_lr: float = 0.0
    grad_clip: Optional[float] = None
    on_nonfinite: str = "skip"
    norm_layer: Optional[str] = None
    norm_dim: Optional[int] = None
    norm_backward: Optional[str] = None
    norm_at: Optional[str] = None
    norm_components: Optional[int] = None
    smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    drop_path: Optional[float] = None  # None: the backbone's default
    amp: str = "none"
    channels_last: bool = False
    grad_checkpointing: bool = False
    torchcompile: Optional[str] = None
    torchcompile_mode: Optional[str] = None
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    seed: int = 0
    max_steps_per_epoch: Optional[int] = None
    flip_average: bool = False
    checkpoint_hist: int = 1
    export_best: bool = False
    # how the run is executed, not what it computes: these may change on resume
    output: str = "runs/train"
    workers: int = 4
    device: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "decay_milestones", tuple(self.decay_milestones))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "data_fingerprint", tuple(tuple(p) for p in self.data_fingerprint))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, flag: str, rule: str, value: Any) -> None:
            if not ok:
                raise ConfigError(f"--{flag} must be {rule}, got {value!r}")

        need(isinstance(self.model, str) and bool(self.model), "model", "a model name", self.model)
        need(self.num_classes is None or (is_int(self.num_classes) and self.num_classes >= 1), "num-classes",
             "an integer >= 1", self.num_classes)
        broken = violations(self.flat())  # the rules declared in gcp.train.fields
        if broken:
            raise ConfigError(broken[0])
        if is_plain(self.model) and (self.head.norm.method != "gap" or self.head.reduced_dim is not None):
            raise ConfigError(f"--model {self.model} keeps its own average-pooling classifier; --method/--reduced-dim "
                              f"choose a GCP head: use --model gcp_{self.model}")
        if self.mixes and is_int(self.batch_size) and self.batch_size % 2:
            raise ConfigError(f"--mixup/--cutmix mix each batch with its reversal, so --batch-size must be even, got "
                              f"{self.batch_size}")
        if self.hybrid is not None:
            need(is_int(self.hybrid.switch_epoch) and 1 <= self.hybrid.switch_epoch < self.epochs,
                 "hybrid-switch-epoch", f"an epoch in 1..{self.epochs - 1} (--epochs {self.epochs})",
                 self.hybrid.switch_epoch)
            self._check_hybrid_size()

    def _check_hybrid_size(self) -> None:
        """The switch keeps the classifier, so both heads must give as many features: refused now,
        not at the switch epoch."""
        spec = gcp.zoo.spec_of(self.model)
        d = self.head.reduced_dim or (spec.head.reduced_dim if spec is not None else None) or 256
        before = self.head.norm.config(d).output_size()
        after = self.hybrid.norm.config(d).output_size()
        if before != after:
            raise ConfigError(
                f"--hybrid-method {self.hybrid.norm.method}: the hybrid switch keeps the classifier, which reads "
                f"{before} features from --method {self.head.norm.method} (d = {d}), but {self.hybrid.norm.method} "
                f"gives {after}; switch between methods of the same output size (e.g. isqrt → svd)")

    @property
    def mixes(self) -> bool:
        """Whether training mixes images (mixup or cutmix)."""
        return bool(self.mixup) or bool(self.cutmix)

    # ------------------------------------------------------------------ sub-records
    def optimizer_settings(self) -> OptimizerSettings:
        return OptimizerSettings(self.lr, self.momentum, self.weight_decay, self.classifier_lr_mult,
                                 self.reduction_lr_mult, self.opt, self.layer_decay)

    def schedule_settings(self) -> ScheduleSettings:
        return ScheduleSettings(self.epochs, self.sched, self.decay_milestones, self.decay_rate, self.decay_epochs,
                                self.warmup_epochs, self.warmup_lr, self.min_lr)

    # ------------------------------------------------------------------ flat form (flags, recipes)
    def flat(self) -> dict[str, Any]:
        """The record as flag-named values (what :func:`resolve` merges and compares)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("head", "data", "hybrid")}
        out.update(_norm_flat(self.head.norm, ""))
        out.update(reduced_dim=self.head.reduced_dim, last_stride=self.head.last_stride,
                   drop_rate=self.head.drop_rate)
        d = self.data
        out.update(dataset=d.dataset, data_dir=d.root, train_split=d.train_split, eval_split=d.eval_split,
                   img_size=d.img_size, crop_pct=d.crop_pct, resize=d.resize, interpolation=d.interpolation,
                   mean=d.mean, std=d.std, data_options=dict(d.options), aa=d.aa)
        if self.hybrid is not None:
            out["hybrid_switch_epoch"] = self.hybrid.switch_epoch
            out.update(_norm_flat(self.hybrid.norm, "hybrid_"))
        return out

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> "RunRecord":
        v = dict(values)
        unknown = sorted(set(v) - FLAT_KEYS)
        if unknown:
            raise ConfigError(f"unknown run setting(s) {', '.join(unknown)}")
        if "model" not in v or "dataset" not in v or "data_dir" not in v:
            raise ConfigError("a run needs a model, a dataset and a data folder")
        method = v.get("method") or _default_method(v["model"])
        norm = Normalisation(method, v.get("backward"), v.get("iters"), v.get("alpha"),
                             _sorted_items(v.get("head_options") or {}))
        head = HeadSpec(norm, v.get("reduced_dim"), v.get("last_stride"), v.get("drop_rate"))
        hybrid = None
        if v.get("hybrid_switch_epoch") is not None:
            hmethod = v.get("hybrid_method") or "svd"
            takes = hmethod in gcp.methods.registered_methods() and gcp.get_method(hmethod).takes_backward
            hnorm = Normalisation(hmethod, v.get("hybrid_backward") or ("pade" if takes else None),
                                  None, None, _sorted_items(v.get("hybrid_options") or {}), flag_prefix="hybrid-")
            hybrid = HybridSpec(v["hybrid_switch_epoch"], hnorm)
        elif any(v.get(k) for k in ("hybrid_method", "hybrid_backward", "hybrid_options")):
            raise ConfigError("--hybrid-method/--hybrid-backward/--hybrid-head-opt need --hybrid-switch-epoch")
        data_keys = dict(dataset="dataset", root="data_dir", train_split="train_split", eval_split="eval_split",
                         img_size="img_size", crop_pct="crop_pct", resize="resize", interpolation="interpolation",
                         mean="mean", std="std", options="data_options", aa="aa")
        data = DataSpec(**{k: (_sorted_items(v[f]) if k == "options" else v[f])
                           for k, f in data_keys.items() if v.get(f) is not None})
        rest = {k: v[k] for k in _RUN_FIELDS if k in v and v[k] is not None}
        if "decay_milestones" in v and v["decay_milestones"] is not None:
            rest["decay_milestones"] = tuple(v["decay_milestones"])
        return cls(model=v["model"], head=head, data=data, hybrid=hybrid, **rest)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, dicts, numbers, strings) for a checkpoint."""
        return {k: _thaw(val) for k, val in self.flat().items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunRecord":
        values = dict(values)
        if values.get("sched") == "step" and "decay_epochs" not in values:
            # written before gcp had timm's "step" (every N epochs): its "step" was the milestones one
            values["sched"] = "multistep"
        return cls.from_flat({k: (tuple(val) if k in _TUPLE_KEYS and val is not None else val)
                              for k, val in values.items()})


def _norm_flat(norm: Normalisation, prefix: str) -> dict[str, Any]:
    out = {f"{prefix}method": norm.method, f"{prefix}backward": norm.backward,
           f"{prefix}options" if prefix else "head_options": dict(norm.options)}
    if not prefix:
        out.update(iters=norm.iters, alpha=norm.alpha)
    return out


def is_plain(model: str) -> bool:
    """Whether ``model`` names a timm model with its own average-pooling classifier (``resnet18_cifar``)
    rather than a GCP model: it trains as ``gcp_<model>`` with the ``gap`` head and no reduction,
    the same network and parameter count."""
    return gcp.zoo.spec_of(model) is None and gcp.zoo.spec_of(f"gcp_{model}") is not None


def _default_method(model: str) -> str:
    """The zoo model's own default head method (written once, in its ``ModelSpec``); ``gap`` for a
    plain timm model (:func:`is_plain`)."""
    if is_plain(model):
        return "gap"
    spec = gcp.zoo.spec_of(model)
    if spec is None:
        raise gcp.zoo.UnknownModelError(f"unknown GCP model {model!r}; gcp.zoo.list_models(generic=True) lists "
                                        "them (the curated recipes and gcp_<timm name> for every timm model)")
    return spec.head.method


_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name not in ("model", "head", "data", "hybrid"))
_TUPLE_KEYS = {"decay_milestones", "resize", "mean", "std", "class_names", "data_fingerprint"}
_NORM_KEYS = ("method", "backward", "iters", "alpha", "head_options")
_HYBRID_NORM_KEYS = ("hybrid_method", "hybrid_backward", "hybrid_options")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` wins; a method given in ``over`` that differs from ``base``'s takes its
    method-specific settings from ``over`` only (a recipe's ``iters`` never reaches an svd head)."""
    out = dict(base)
    for method_key, keys in (("method", _NORM_KEYS), ("hybrid_method", _HYBRID_NORM_KEYS)):
        if over.get(method_key) is not None and over[method_key] != base.get(method_key):
            for k in keys:
                out.pop(k, None)
    out.update({k: v for k, v in over.items() if v is not None})
    return out


def merge_layers(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` (flags) over ``base`` (a recipe), as :func:`resolve` merges them."""
    return _merge(base, over)


def _same(a: Any, b: Any) -> bool:
    return _freeze(_thaw(a)) == _freeze(_thaw(b))


def resolve(given: Mapping[str, Any], *, recipe: Optional[Mapping[str, Any]] = None,
            stored: Optional[RunRecord] = None, start_epoch: int = 0, evaluation: bool = False,
            from_flags: bool = True, soft: frozenset[str] = frozenset()) -> RunRecord:
    """The run's record, resolved once.

    Without ``stored``: the flags ``given`` over the ``recipe`` over the defaults. With
    ``stored`` (a resume, or an evaluation of a checkpoint): the stored record, and every given
    value must equal the stored one except those a resume may change (:data:`RESUME_MUTABLE`;
    ``--epochs`` only on a multistep or step schedule and not below the epochs already run). An evaluation
    takes the model, head and data from ``stored`` and lets the rest change. Repeating a value
    the run already used is not a change. Unknown keys are an error, never filtered. With
    ``from_flags`` (a user's flags, not a whole record), a flag that means nothing in the resolved
    run is refused (:func:`gcp.train.fields.inapplicable`), except the ``soft`` ones: values a
    config file holds at timm's defaults (:mod:`gcp.train.config_file`), which are inert there.
    """
    for source, values in (("flag", given), ("recipe setting", recipe or {})):
        unknown = sorted(set(values) - FLAT_KEYS)
        if unknown:
            raise ConfigError(f"unknown {source}(s) {', '.join(unknown)}")
    given = {k: v for k, v in given.items() if v is not None}
    if from_flags and isinstance(given.get("data_dir"), str):
        # the folder, not the spelling: a relative path means the same images from any working directory
        given["data_dir"] = os.path.abspath(os.path.expanduser(given["data_dir"]))
    if stored is None:
        return _honoured(given, RunRecord.from_flat(_merge(dict(recipe or {}), given)), from_flags, soft)
    base = stored.flat()
    fixed = EVALUATION_FIXED if evaluation else FLAT_KEYS - RESUME_MUTABLE
    changed = [f"--{k.replace('_', '-')}: {shown(k, base.get(k))!r} in the checkpoint, {shown(k, v)!r} now"
               for k, v in given.items() if k in fixed and not _same(base.get(k), v)]
    if changed:
        what = "an evaluated checkpoint keeps its model, head and data" if evaluation else \
            "a resumed run keeps the settings it ran with"
        raise ConfigError(f"{what}; these differ: " + "; ".join(changed)
                          + ". Start a new run (--pretrained-path / --checkpoint to start from its weights)")
    record = _honoured(given, RunRecord.from_flat({**base, **given}), from_flags, soft)
    if not evaluation and record.epochs != stored.epochs:
        if record.epochs < start_epoch:
            raise ConfigError(f"--epochs {record.epochs}: the checkpoint has already run {start_epoch} epochs")
        if stored.sched == "cosine":
            raise ConfigError(f"--epochs {stored.epochs} → {record.epochs}: the cosine schedule spans all epochs, so "
                              "changing their number would change the lr of epochs already run")
    return record


def _honoured(given: Mapping[str, Any], record: RunRecord, from_flags: bool = True,
              soft: frozenset[str] = frozenset()) -> RunRecord:
    """``record``, after refusing every flag the user gave that means nothing in it (each field
    declares when it applies, in :mod:`gcp.train.fields`); ``soft`` ones are inert instead."""
    unused = inapplicable({k: v for k, v in given.items() if k not in soft}, record.flat()) if from_flags else []
    if unused:
        raise ConfigError("; ".join(unused) + ": drop the flag or give what it needs (a flag is honoured or "
                          "refused, never ignored)")
    return record


def model_data_defaults(model: str) -> dict[str, Any]:
    """The preprocessing of ``model``'s pretrained config (timm's ``resolve_data_config``): the
    lowest-priority source of a run's data settings, below a recipe and the flags."""
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(model, allow_unregistered=False) if timm.is_model(model.split(".")[0]) \
        else None
    if cfg is None:
        return {}
    d = resolve_data_config(pretrained_cfg=cfg.to_dict())
    return dict(img_size=int(d["input_size"][-1]), crop_pct=float(d["crop_pct"]), interpolation=d["interpolation"],
                mean=tuple(d["mean"]), std=tuple(d["std"]))


def with_class_count(record: RunRecord, class_names: Any, from_checkpoint: bool,
                     fingerprints: Optional[Mapping[str, str]] = None) -> RunRecord:
    """``record`` with the dataset's classes and the fingerprint of each split read
    (:func:`gcp.train.data.fingerprint`); refuses a ``--num-classes`` below their number, a
    checkpoint whose classes are not this dataset's (its labels would mean other classes), and one
    whose data was other files, however ``--data-dir`` is spelled (the same data moved or given
    by another path is accepted)."""
    names = tuple(str(c) for c in class_names)
    if from_checkpoint and record.class_names and record.class_names != names:
        diff = next((f"label {i}: {a!r} in the checkpoint, {b!r} here" for i, (a, b) in
                     enumerate(zip(record.class_names, names)) if a != b),
                    f"{len(record.class_names)} classes in the checkpoint, {len(names)} here")
        raise ConfigError(f"--data-dir {record.data.root}: the checkpoint was trained on other classes than it holds "
                          f"({diff}); its classifier and metrics would not match these labels")
    stored = dict(record.data_fingerprint)
    for split, now in (fingerprints or {}).items():
        if from_checkpoint and split in stored and stored[split] != now:
            raise ConfigError(f"--data-dir {record.data.root}: its {split} split is not the data the checkpoint was "
                              f"trained on ({stored[split]} in the checkpoint; {now} here)")
    record = dataclasses.replace(record, data_fingerprint=tuple(sorted({**stored, **(fingerprints or {})}.items())))
    count = record.num_classes if record.num_classes is not None else len(names)
    if count < len(names):
        raise ConfigError(f"--num-classes {count} is smaller than the {len(names)} classes of the dataset")
    return dataclasses.replace(record, num_classes=count, class_names=names)
