"""Registered GCP models: specs and pretrained configs as data, entry points registered with timm."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, resolve_pretrained_cfg

from gcp import GCPHead, InvalidOptionError

from . import _backbones
from ._gcpnet import GCPNet
from ._pretrained import load_pretrained_weights
from .errors import CheckpointError, UnknownModelError

ISQRT_REPO = "https://github.com/jiangtaoxie/fast-MPN-COV"
SVD_REPO = "https://github.com/KingJamesSong/DifferentiableSVD"


@dataclass(frozen=True)
class GCPWeights:
    """One pretrained weight of a GCP model (a timm pretrained tag).

    ``url`` may pin its SHA-256 with a ``#sha256=<hex>`` suffix (checked before loading).
    Published checkpoints whose files we cannot redistribute have no ``url``: convert the
    original file with ``python -m zoo.convert`` and load it with
    ``pretrained_cfg_overlay=dict(file=...)``.
    """

    tag: str
    url: Optional[str] = None
    top1: Optional[float] = None
    top5: Optional[float] = None
    origin_url: Optional[str] = None
    paper_name: Optional[str] = None
    notes: tuple[str, ...] = ()
    num_classes: int = 1000
    interpolation: str = "bilinear"

    def cfg(self) -> dict[str, Any]:
        return dict(
            url=self.url, num_classes=self.num_classes, input_size=(3, 224, 224), pool_size=None,
            crop_pct=0.875, interpolation=self.interpolation, mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225), first_conv="backbone.conv1", classifier="head.fc",
            origin_url=self.origin_url, paper_name=self.paper_name,
            notes=self.notes or None,
        )


@dataclass(frozen=True)
class ModelSpec:
    """How a registered GCP model is built: backbone, its preparation, and head defaults."""

    name: str
    backbone: str
    family: str  # "resnet" (last stage at 1/16), "vgg" (no pool5, no fc6/7), "plain"
    reduced_dim: int = 256
    method: str = "isqrt"
    iters: int = 5
    weights: tuple[GCPWeights, ...] = field(default_factory=tuple)
    note: str = ""

    def representation_dim(self) -> int:
        return self.reduced_dim * (self.reduced_dim + 1) // 2


_ISQRT = dict(origin_url=ISQRT_REPO, paper_name="Towards Faster Training of Global Covariance Pooling Networks "
              "by Iterative Matrix Square Root Normalization (CVPR 2018)")

SPECS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("gcp_resnet18", "resnet18", "resnet"),
    ModelSpec("gcp_resnet34", "resnet34", "resnet"),
    ModelSpec("gcp_resnet50", "resnet50", "resnet", weights=(
        GCPWeights("isqrt_cov_in1k", top1=77.86, top5=93.78, notes=(
            "iSQRT-COV ResNet-50 (mpncovresnet50), paper top-1/5 error 22.14/6.22, repository "
            "re-run 21.71/6.13; convert the released file with `python -m zoo.convert SRC DST "
            "--format isqrt-cov`",), **_ISQRT),
        GCPWeights("svd_pade_in1k", top1=77.33, top5=93.49, origin_url=SVD_REPO,
                   paper_name="Why Approximate Matrix Square Root Outperforms Accurate SVD in Global "
                   "Covariance Pooling? (ICCV 2021)", notes=(
                       "SVD-Padé ResNet-50: top-1/5 error 22.67/6.51 (hybrid 22.60/6.44); its last stage "
                       "keeps stride 2: build with last_stride=2, method='svd', backward='pade'",)),
    )),
    ModelSpec("gcp_resnet101", "resnet101", "resnet", weights=(
        GCPWeights("isqrt_cov_in1k", top1=78.79, top5=94.32, notes=(
            "iSQRT-COV ResNet-101 (mpncovresnet101), paper top-1/5 error 21.21/5.68, repository "
            "re-run 20.99/5.56; convert with `python -m zoo.convert SRC DST --format isqrt-cov`",), **_ISQRT),
    )),
    ModelSpec("gcp_resnet152", "resnet152", "resnet"),
    ModelSpec("gcp_mobilenetv2_100", "mobilenetv2_100", "plain", note="1280→256 reduction after conv_head"),
    ModelSpec("gcp_vgg16_bn", "vgg16_bn", "vgg", note="pool5 removed (14×14 at 224), fc6/fc7 dropped"),
    ModelSpec("gcp_convnext_tiny", "convnext_tiny", "plain", note="768→256 reduction, features before the head norm"),
)}

HEAD_ARGS = ("reduced_dim", "method", "backward", "iters", "alpha", "eps", "drop_rate")


def _default_cfgs() -> dict[str, dict]:
    cfgs: dict[str, dict] = {}
    for spec in SPECS.values():
        cfgs[f"{spec.name}.untrained"] = GCPWeights("untrained").cfg()
        for w in spec.weights:
            cfgs[f"{spec.name}.{w.tag}"] = w.cfg()
    return cfgs


default_cfgs = generate_default_cfgs(_default_cfgs())


def _build(spec: ModelSpec, *, num_classes: int = 1000, in_chans: int = 3, backbone_pretrained: Any = False,
           last_stride: Optional[int] = None, **kwargs: Any) -> GCPNet:
    if spec.family == "resnet":
        backbone = _backbones.resnet(spec.backbone, in_chans, backbone_pretrained, last_stride or 1)
    elif last_stride is not None:
        raise InvalidOptionError(f"{spec.name} has no option last_stride (ResNets only)")
    elif spec.family == "vgg":
        backbone = _backbones.vgg(spec.backbone, in_chans, backbone_pretrained)
    else:
        backbone = _backbones.plain(spec.backbone, in_chans, backbone_pretrained)
    head_args = dict(reduced_dim=spec.reduced_dim, method=spec.method, iters=spec.iters)
    head_args.update(kwargs)
    head = GCPHead(backbone.num_features, num_classes, **head_args)
    arch_args = dict(architecture=spec.name, backbone=spec.backbone, in_chans=in_chans, **head_args)
    if spec.family == "resnet":
        arch_args["last_stride"] = last_stride or 1
    return GCPNet(backbone, head, arch_args=arch_args)


def _create(spec: ModelSpec, pretrained: bool = False, **kwargs: Any) -> GCPNet:
    cfg = resolve_pretrained_cfg(spec.name, kwargs.get("pretrained_cfg"), kwargs.get("pretrained_cfg_overlay"))
    if pretrained and not cfg.has_weights:
        tag = f".{cfg.tag}" if cfg.tag else ""
        raise CheckpointError(
            f"{spec.name}{tag} has no downloadable weights; convert a published checkpoint with "
            "`python -m zoo.convert SRC DST --format isqrt-cov|svd-pade` and load it with "
            "pretrained_cfg_overlay=dict(file=DST), or use backbone_pretrained=True for ImageNet "
            "backbone weights with a fresh head"
        )
    # weights are loaded here rather than by timm, so every source is hash-checked and strict
    model = build_model_with_cfg(lambda **kw: _build(spec, **kw), spec.name, False, **kwargs)
    if pretrained:
        load_pretrained_weights(model, model.pretrained_cfg)
    return model


def _entrypoint(spec: ModelSpec) -> Callable[..., GCPNet]:
    def fn(pretrained: bool = False, **kwargs: Any) -> GCPNet:
        return _create(spec, pretrained, **kwargs)

    fn.__name__ = fn.__qualname__ = spec.name
    fn.__module__ = __name__
    fn.__doc__ = f"{spec.name}: timm {spec.backbone} + GCP head ({spec.reduced_dim}-d, {spec.representation_dim()} features)."
    return fn


for _spec in SPECS.values():
    globals()[_spec.name] = register_model(_entrypoint(_spec))


def list_models(pretrained: bool = False) -> list[str]:
    """Registered GCP model names; with ``pretrained=True`` the ``name.tag`` of published weights."""
    if not pretrained:
        return sorted(SPECS)
    return sorted(f"{s.name}.{w.tag}" for s in SPECS.values() for w in s.weights)


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> GCPNet:
    """Build a registered GCP model (``timm.create_model`` with a helpful unknown-name error).

    Every :class:`gcp.GCPHead` option passes through: ``create_model("gcp_resnet50",
    method="svd", backward="pade", num_classes=200)``; ``backbone_pretrained=True`` (or a file)
    loads the timm backbone's ImageNet weights and leaves the head freshly initialised.
    """
    name = model_name.partition(".")[0]
    if name not in SPECS:
        close = difflib.get_close_matches(name, list(SPECS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown GCP model {model_name!r}{hint} (zoo.list_models() lists them)")
    return timm.create_model(model_name, pretrained=pretrained, **kwargs)
