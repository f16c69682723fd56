"""Check a ``gcp_<timm name>`` model end to end: build, forward, backward, timm's model contract.

:func:`check_model` is what the sweep over timm's modules runs (``tests/zoo/test_sweep.py`` and
``scripts/sweep_zoo.py``, which writes the table the README cites). It never raises: a failure is
a :class:`SweepResult` naming the stage and the reason.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

STAGES = ("build", "forward", "backward", "contract")


@dataclass(frozen=True)
class SweepResult:
    model: str
    layout: str = ""  # the backbone's output: "NCHW", "NHWC" or "tokens (k prefix)"
    stage: str = ""  # the first stage that failed; "" when every stage passed
    reason: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.stage


def _layout(x: torch.Tensor, model: torch.nn.Module) -> str:
    if x.dim() == 3:
        return f"tokens ({model._prefix_tokens} prefix)"
    return "NHWC" if model._nhwc else "NCHW"


def _build(name: str, num_classes: int, reduced_dim: int, max_side: int) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The model and the input size to run it at: its own, or 224 when its own is over ``max_side``
    (224 = 2⁵·7 divides into every patch size and stride; ViTs get ``img_size=224``, a model that
    takes no ``img_size`` is fed 224 as it is)."""
    import timm

    from gcp.errors import InvalidOptionError

    model = timm.create_model(name, num_classes=num_classes, reduced_dim=reduced_dim, pretrained=False)
    size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    if max(size[1:]) <= max_side:
        return model, size
    try:
        model = timm.create_model(name, num_classes=num_classes, reduced_dim=reduced_dim, img_size=224)
    except (InvalidOptionError, TypeError):
        pass
    return model, (size[0], 224, 224)


def _check_layer_decay(model: torch.nn.Module) -> None:
    """timm's ``--layer-decay`` (``param_groups_layer_decay`` over ``group_matcher``): every
    parameter in exactly one group, the GCP head at the full rate, more than one level."""
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(model, layer_decay=0.7)
    scales = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    if len(scales) != sum(len(g["params"]) for g in groups) or \
            len(scales) != sum(1 for p in model.parameters() if p.requires_grad):
        raise AssertionError("layer decay: a parameter is in no group or in two")
    head = {scales[id(p)] for n, p in model.named_parameters() if n.startswith("head.")}
    if head != {1.0} or len(set(scales.values())) < 2:
        raise AssertionError(f"layer decay: head at lr scale {sorted(head)}, {len(set(scales.values()))} level(s)")


def check_model(timm_name: str, reduced_dim: int = 16, num_classes: int = 5, batch: int = 2,
                max_side: int = 256) -> SweepResult:
    """Build ``gcp_<timm_name>`` (an ``reduced_dim``-d head, iSQRT), run a batch at the backbone's
    input size, back-propagate, and check what timm's scripts rely on: every parameter gets a finite
    gradient (DDP refuses unused ones), ``num_features``, ``head_hidden_size`` (= the width of
    ``pre_logits``), ``reset_classifier`` to another class count and to 0, and
    ``forward_intermediates`` where the backbone has it, and timm's layer-wise lr decay groups.
    Inputs are at most ``max_side`` pixels a side (a 768-pixel ViT would need 14 GB), which is
    what the contract needs."""
    name = f"gcp_{timm_name}"
    start = time.perf_counter()
    stage, layout = "build", ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            model, size = _build(name, num_classes, reduced_dim, max_side)
            x = torch.randn(batch, *size)
            stage = "forward"
            model.train()
            feats = model.forward_features(x)
            layout = _layout(feats, model)
            out = model.forward_head(feats)
            if tuple(out.shape) != (batch, num_classes):
                raise AssertionError(f"logits of shape {tuple(out.shape)}, expected {(batch, num_classes)}")
            stage = "backward"
            out.square().mean().backward()
            missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            if missing:
                raise AssertionError(f"{len(missing)} parameters get no gradient (DDP refuses them): "
                                     + ", ".join(missing[:4]))
            bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            if bad:
                raise AssertionError(f"non-finite gradients in {', '.join(bad[:4])}")
            stage = "contract"
            model.eval()
            with torch.no_grad():
                width = model.forward_head(model.forward_features(x), pre_logits=True).shape[-1]
                expected = reduced_dim * (reduced_dim + 1) // 2 + (model.num_features if model._sovit else 0)
                if model.head_hidden_size != width or width != expected:
                    raise AssertionError(f"head_hidden_size {model.head_hidden_size}, pre_logits width {width}, "
                                         f"expected {expected}")
                if model.num_features != model.backbone.num_features:
                    raise AssertionError("num_features is not the backbone's")
                _check_layer_decay(model)
                model.reset_classifier(3)
                if tuple(model(x).shape) != (batch, 3):
                    raise AssertionError("reset_classifier(3) did not give 3 logits")
                model.reset_classifier(0)
                if tuple(model(x).shape) != (batch, width):
                    raise AssertionError("reset_classifier(0) did not give the representation")
                if callable(getattr(model.backbone, "forward_intermediates", None)):
                    taps = model.forward_intermediates(x, indices=1, intermediates_only=True)
                    if len(taps) != 1:
                        raise AssertionError(f"forward_intermediates(indices=1) gave {len(taps)} tensors")
    except Exception as exc:  # the sweep reports every failure with its stage and reason
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        return SweepResult(name, layout, stage, reason, time.perf_counter() - start)
    return SweepResult(name, layout, "", "", time.perf_counter() - start)


@dataclass(frozen=True)
class LayoutAudit:
    """What :func:`audit_layout` found for one model: its output layout and any inconsistency
    between that output and what the GCP head assumes of it."""

    model: str
    layout: str = ""  # "NCHW", "NHWC", "tokens (k prefix)", "refused" or "not built"
    finding: str = ""  # "" when the output is what the head assumes
    note: str = ""  # informational: tokens merged below the patch grid, the refusal's reason

    @property
    def ok(self) -> bool:
        return not self.finding


def _patch_grid(backbone: torch.nn.Module, size: tuple[int, ...]) -> Optional[tuple[int, int]]:
    """The fewest and the most patch tokens the input can make: the patch embedding's grid, else
    the input over the last feature level's reduction, rounded down and up (strided convolutions
    with padding round up: LeViT's 224² input at reduction 64 gives 4 × 4)."""
    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
    if grid is not None and all(isinstance(g, int) for g in grid):
        return int(grid[0]) * int(grid[1]), int(grid[0]) * int(grid[1])
    info = getattr(backbone, "feature_info", None)
    reduction = info[-1].get("reduction") if info else None
    if not reduction:
        return None
    h, w = size[-2] / reduction, size[-1] / reduction
    return math.floor(h) * math.floor(w), math.ceil(h) * math.ceil(w)


def layout_findings(model: torch.nn.Module, feats: torch.Tensor, size: tuple[int, ...]) -> tuple[str, str]:
    """``(finding, note)`` for a GCP model's ``forward_features`` output ``feats`` at input ``size``.

    A finding is an inconsistency the head would pool silently: the channel axis of the declared
    layout (NCHW, NHWC) is not ``num_features``; tokens outnumber the patch grid, i.e. a class,
    distillation or register token leads them that ``num_prefix_tokens`` does not declare (it would
    join the covariance as if it were a patch). Fewer tokens than the grid (a backbone that merges
    or pools its patches) is a note, not a finding: every token is still a patch feature."""
    width = model.num_features
    if feats.dim() == 4:
        axis = -1 if model._nhwc else 1
        if feats.shape[axis] != width:
            other = 1 if model._nhwc else -1
            hint = f" (it looks {'channels-first' if model._nhwc else 'channels-last'})" \
                if feats.shape[other] == width else ""
            return f"{'NHWC' if model._nhwc else 'NCHW'} output {tuple(feats.shape)} has not num_features={width} " \
                   f"on its channel axis{hint}", ""
        return "", ""
    if feats.dim() != 3:
        return f"a {feats.dim()}-d output", ""
    if feats.shape[-1] != width:
        return f"tokens {tuple(feats.shape)} are not num_features={width} wide", ""
    patches = feats.shape[1] - model._prefix_tokens
    grid = _patch_grid(model.backbone, size)
    if grid is None:
        return "", "no patch grid to compare the token count with"
    fewest, most = grid
    if patches > most:
        return (f"{feats.shape[1]} tokens with {model._prefix_tokens} declared prefix tokens leave {patches} for a "
                f"{most}-patch grid: {patches - most} undeclared prefix token(s) would join the covariance"), ""
    if patches < fewest:
        return "", f"{patches} tokens for a {fewest}-patch grid (merged or pooled patches)"
    return "", ""


def audit_layout(timm_name: str, batch: int = 2) -> LayoutAudit:
    """Build ``gcp_<timm_name>`` on the meta device (no memory, no weights: every timm model, the
    largest included, takes well under a second), run ``forward_features`` and the head at the
    model's own input size, and check the output against the layout the head assumes
    (:func:`layout_findings`) and timm's layer-wise lr decay groups. Never raises: a model that
    cannot be built is reported as such."""
    import timm

    from .errors import UnsupportedBackboneError

    name = f"gcp_{timm_name}"
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            try:
                model = timm.create_model(name, num_classes=3, reduced_dim=8, pretrained=False)
            except UnsupportedBackboneError as exc:
                return LayoutAudit(name, "refused", "", str(exc).split(": ", 2)[-1])
            size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
            feats = model.forward_features(torch.empty(batch, *size))
            layout = _layout(feats, model) if isinstance(feats, torch.Tensor) else type(feats).__name__
            if not isinstance(feats, torch.Tensor):
                return LayoutAudit(name, layout, f"forward_features returns a {layout}, not a tensor")
            finding, note = layout_findings(model, feats, size)
            if not finding:
                out = model.forward_head(feats)
                if tuple(out.shape) != (batch, 3):
                    finding = f"logits of shape {tuple(out.shape)}"
            if not finding:
                try:
                    _check_layer_decay(model)
                except AssertionError as exc:
                    finding = str(exc)
    except Exception as exc:  # the audit reports every failure with its reason
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return LayoutAudit(name, "not built", f"{type(exc).__name__}: {first}")
    return LayoutAudit(name, layout, finding, note)
