"""One definition of a run: its settings (:class:`RunConfig`), the papers' recipes as data, the
checks every value gets before work starts, and what a resume may change.

Precedence: a flag the user gave > the recipe (or, on resume, the checkpoint's settings) > the
defaults. A value given is honoured or refused, never replaced: ``--epochs 0`` is an error, not
"use the recipe".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional

import gcp
from gcp.validators import is_int, is_real

from .errors import ConfigError

# The papers' settings. ImageNet: Li et al., CVPR 2018 (fast-MPN-COV, iSQRT-COV ResNet-50) and
# Song et al., ICCV 2021 (SVD-Padé ResNet-50, last stage at stride 2). Fine-grained (fast-MPN-COV):
# 448² input, batch 10, SGD momentum 0.9, classifier ×5 (ResNet) or ×20 (VGG), flip-averaged test.
RECIPES: dict[str, dict[str, Any]] = {
    "isqrt-cov-r50": dict(model="gcp_resnet50", head=dict(method="isqrt", iters=5), batch_size=160, epochs=65,
                          lr=0.1, sched="step", decay_milestones=(30, 45, 60), weight_decay=1e-4),
    "svd-pade-r50": dict(model="gcp_resnet50", head=dict(method="svd", backward="pade", last_stride=2),
                         batch_size=256, epochs=60, lr=0.0794, sched="step", decay_milestones=(30, 45),
                         weight_decay=1e-4),
    "finegrained-resnet": dict(img_size=448, batch_size=10, epochs=100, lr=1.2e-3, classifier_lr_mult=5.0,
                               weight_decay=1e-4, decay_milestones=(), flip_average=True),
    "finegrained-vgg": dict(img_size=448, batch_size=10, epochs=40, lr=3e-3, classifier_lr_mult=20.0,
                            weight_decay=1e-4, decay_milestones=(20,), flip_average=True),
}

HEAD_KEYS = ("method", "backward", "iters", "alpha", "reduced_dim", "last_stride", "drop_rate")


@dataclass
class RunConfig:
    """Everything a run needs besides the model and the data (defaults: the papers' SGD).

    ``head`` holds the model's head options as data (``method``, ``backward``, ``iters``, …, and
    a mode's own options such as ``degree``); ``hybrid_head`` those of the phase after
    ``hybrid_switch_epoch`` (Song et al., ICCV 2021: Newton–Schulz, then SVD-Padé).
    """

    output: str = "runs/train"
    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.1
    workers: int = 4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    classifier_lr_mult: float = 1.0
    reduction_lr_mult: float = 1.0
    sched: str = "step"
    decay_milestones: tuple[int, ...] = ()
    decay_rate: float = 0.1
    warmup_epochs: int = 0
    warmup_lr: float = 1e-4
    min_lr: float = 0.0
    grad_clip: Optional[float] = None
    amp: str = "none"
    channels_last: bool = False
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    seed: int = 0
    max_steps_per_epoch: Optional[int] = None
    flip_average: bool = False
    head: dict[str, Any] = field(default_factory=dict)
    hybrid_switch_epoch: Optional[int] = None
    hybrid_head: dict[str, Any] = field(default_factory=lambda: dict(method="svd", backward="pade"))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decay_milestones"] = list(self.decay_milestones)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in values.items() if k in names}
        if "decay_milestones" in kw:
            kw["decay_milestones"] = tuple(kw["decay_milestones"])
        return cls(**kw)

    def validate(self) -> "RunConfig":
        """Refuse values no run can use, naming the flag."""
        def need(ok: bool, flag: str, rule: str, value: Any) -> None:
            if not ok:
                raise ConfigError(f"--{flag} must be {rule}, got {value!r}")

        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch-size", "an integer >= 1", self.batch_size)
        need(is_real(self.lr) and self.lr > 0, "lr", "a number > 0", self.lr)
        need(is_int(self.workers) and self.workers >= 0, "workers", "an integer >= 0", self.workers)
        need(is_real(self.momentum) and 0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        need(is_real(self.weight_decay) and self.weight_decay >= 0, "weight-decay", "a number >= 0", self.weight_decay)
        for flag, value in (("classifier-lr-mult", self.classifier_lr_mult),
                            ("reduction-lr-mult", self.reduction_lr_mult)):
            need(is_real(value) and value > 0, flag, "a number > 0", value)
        need(self.sched in ("step", "cosine"), "sched", "'step' or 'cosine'", self.sched)
        milestones = list(self.decay_milestones)
        need(all(is_int(m) and m >= 0 for m in milestones) and milestones == sorted(set(milestones)),
             "decay-milestones", "increasing epochs >= 0", milestones)
        need(is_real(self.decay_rate) and 0 < self.decay_rate <= 1, "decay-rate", "in (0, 1]", self.decay_rate)
        need(is_int(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs, "warmup-epochs",
             f"an integer in [0, --epochs {self.epochs})", self.warmup_epochs)
        need(is_real(self.warmup_lr) and self.warmup_lr >= 0, "warmup-lr", "a number >= 0", self.warmup_lr)
        need(is_real(self.min_lr) and 0 <= self.min_lr <= self.lr, "min-lr", "in [0, --lr]", self.min_lr)
        need(self.grad_clip is None or (is_real(self.grad_clip) and self.grad_clip > 0), "grad-clip",
             "a number > 0", self.grad_clip)
        need(self.amp in ("none", "bf16", "fp16"), "amp", "none, bf16 or fp16", self.amp)
        need(is_real(self.model_ema_decay) and 0 < self.model_ema_decay < 1, "model-ema-decay", "in (0, 1)",
             self.model_ema_decay)
        need(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        need(self.max_steps_per_epoch is None or (is_int(self.max_steps_per_epoch) and self.max_steps_per_epoch >= 1),
             "max-steps-per-epoch", "an integer >= 1", self.max_steps_per_epoch)
        need(self.hybrid_switch_epoch is None or (is_int(self.hybrid_switch_epoch)
                                                 and 1 <= self.hybrid_switch_epoch < self.epochs),
             "hybrid-switch-epoch", f"an epoch in 1..{self.epochs - 1} (--epochs {self.epochs})",
             self.hybrid_switch_epoch)
        for flag, head in (("method/--backward/--head-opt", self.head),
                           ("hybrid-method/--hybrid-backward", self.hybrid_head)):
            check_head(head, flag)
        return self


def check_head(head: Mapping[str, Any], flag: str) -> None:
    """The head options are valid ``gcp.GCPHead`` options (checked on a tiny head, before any
    model is built)."""
    args = {k: v for k, v in head.items() if k not in ("last_stride", "reduced_dim")}
    try:
        gcp.GCPHead(2, 0, reduced_dim=None, **args)
    except (gcp.GCPError, TypeError) as exc:
        raise ConfigError(f"--{flag}: {exc}") from None


# what a resumed run may not change: it would rewrite the schedule of epochs that already ran
SCHEDULE_KEYS = ("lr", "batch_size", "momentum", "weight_decay", "classifier_lr_mult", "reduction_lr_mult",
                 "sched", "decay_milestones", "decay_rate", "warmup_epochs", "warmup_lr", "min_lr", "seed",
                 "head", "hybrid_switch_epoch", "hybrid_head", "amp", "flip_average", "model_ema",
                 "model_ema_decay", "grad_clip")


def check_resume(stored: RunConfig, given: RunConfig, start_epoch: int) -> None:
    """What a resume may change: ``--epochs`` (step schedule only, never below the epochs
    already run), and settings that do not define the schedule (workers, output, …). Anything
    else is refused with the list of differences: the checkpoint records what ran."""
    changed = [f"{k}: {getattr(stored, k)!r} in the checkpoint, {getattr(given, k)!r} now"
               for k in SCHEDULE_KEYS if _norm(getattr(stored, k)) != _norm(getattr(given, k))]
    if changed:
        raise ConfigError("a resumed run keeps the settings it ran with; these differ: " + "; ".join(changed)
                          + ". Start a new run (--pretrained-file / --checkpoint to start from its weights)")
    if given.epochs != stored.epochs:
        if given.epochs < start_epoch:
            raise ConfigError(f"--epochs {given.epochs}: the checkpoint has already run {start_epoch} epochs")
        if stored.sched != "step":
            raise ConfigError(f"--epochs {stored.epochs} → {given.epochs}: the cosine schedule spans all epochs, so "
                              "changing their number would change the lr of epochs already run")


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value
