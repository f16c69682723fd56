"""Registered GCP models: specs and pretrained configs as data, entry points registered with timm."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import timm
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    get_pretrained_cfg,
    register_model,
    resolve_pretrained_cfg,
)
from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureGetterNet

from gcp import GCPHead, HeadConfig, InvalidOptionError, NormLayerConfig
from gcp.validators import check_int

from . import _backbones
from ._gcpnet import HEAD_ARGS, GCPNet, NoPool, SoViTHead, _check_pool
from ._pretrained import load_pretrained_weights
from .errors import CheckpointError, UnknownModelError

ISQRT_REPO = "https://github.com/jiangtaoxie/fast-MPN-COV"
SVD_REPO = "https://github.com/KingJamesSong/DifferentiableSVD"


@dataclass(frozen=True)
class GCPWeights:
    """One pretrained weight of a GCP model (a timm pretrained tag).

    ``url`` may pin its SHA-256 with a ``#sha256=<hex>`` suffix (checked before loading).
    Published checkpoints whose files we cannot redistribute have no ``url``: convert the
    original file with ``python -m gcp.zoo.convert`` and load it with
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

    # architecture options the weights were trained with (defaults of the model built for them)
    model_args: tuple[tuple[str, Any], ...] = ()

    def cfg(self, spec: "ModelSpec") -> dict[str, Any]:
        """timm pretrained cfg of these weights on ``spec``: their evaluation recipe (iSQRT-COV's
        resize 256 → crop 224, bilinear), the feature map size the head pools, and the names of
        the first conv and the classifier as they appear in the model's state dict."""
        last_stride = dict(self.model_args).get("last_stride", 1)
        return dict(
            url=self.url, num_classes=self.num_classes, input_size=(3, 224, 224),
            pool_size=spec.pool_size(224, last_stride), crop_pct=0.875, interpolation=self.interpolation,
            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), first_conv=spec.first_conv(),
            classifier="head.fc", origin_url=self.origin_url, paper_name=self.paper_name,
            notes=self.notes or None,
        )


@dataclass(frozen=True)
class ModelSpec:
    """How a registered GCP model is built: backbone, its preparation, and head defaults."""

    name: str
    backbone: str
    family: str  # "resnet" (last stage at 1/16), "vgg" (no pool5, no fc6/7), "plain", "any" (any timm model)
    # the head a model is built with when no head option is given (iSQRT-COV's: 256-d, 5 iterations)
    head: HeadConfig = field(default_factory=lambda: HeadConfig("isqrt"))
    weights: tuple[GCPWeights, ...] = field(default_factory=tuple)
    note: str = ""

    def representation_dim(self) -> int:
        return self.head.output_size()

    def backbone_cfg(self) -> Any:
        return get_pretrained_cfg(self.backbone)

    def first_conv(self, base: Any = None) -> Any:
        first = (base or self.backbone_cfg()).first_conv
        if isinstance(first, (list, tuple)):
            return [f"backbone.{f}" for f in first]
        return f"backbone.{first}" if first else None

    def reduction(self, last_stride: int = 1) -> int:
        """Stride of the feature maps the GCP head pools (ResNets keep 1/16 with last_stride=1;
        the VGG drops pool5)."""
        if self.family == "resnet":
            return 16 if last_stride == 1 else 32
        return 16 if self.family == "vgg" else 32

    def pool_size(self, image_size: int, last_stride: int = 1, base: Any = None) -> Optional[tuple[int, int]]:
        if self.family == "any":  # the backbone's own, where timm records it (token models do not)
            return (base or self.backbone_cfg()).pool_size
        side = image_size // self.reduction(last_stride)
        return (side, side)

    def untrained_cfg(self) -> dict[str, Any]:
        """The cfg of a freshly built model: every field of the backbone's cfg that describes its
        input and features (sizes, whether the size is fixed, crops, interpolation, mean/std), since
        any weights it starts from are the backbone's. What the GCP model changes is said in
        ``notes``: the classifier (``head.fc``), the parameter names (``backbone.`` prefix) and, for
        the curated ResNets and VGG, the size of the map the head pools."""
        base = self.backbone_cfg()
        test_size = base.test_input_size
        changed = ["classifier head.fc (the GCP head)", "first_conv under backbone."]
        if self.family != "any":
            changed.append(f"pool_size of the map the head pools (stride {self.reduction()})")
        return dict(
            num_classes=1000, input_size=base.input_size, pool_size=self.pool_size(base.input_size[-1], base=base),
            test_input_size=test_size, min_input_size=base.min_input_size, fixed_input_size=base.fixed_input_size,
            test_pool_size=None if test_size is None else (base.test_pool_size if self.family == "any"
                                                           else self.pool_size(test_size[-1], base=base)),
            crop_pct=base.crop_pct, test_crop_pct=base.test_crop_pct, crop_mode=base.crop_mode,
            interpolation=base.interpolation, mean=base.mean, std=base.std,
            first_conv=self.first_conv(base), classifier="head.fc",
            notes=("changed from the backbone's cfg: " + "; ".join(changed),),
        )


_ISQRT = dict(origin_url=ISQRT_REPO, paper_name="Towards Faster Training of Global Covariance Pooling Networks "
              "by Iterative Matrix Square Root Normalization (CVPR 2018)")

SPECS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("gcp_resnet18", "resnet18", "resnet"),
    ModelSpec("gcp_resnet34", "resnet34", "resnet"),
    ModelSpec("gcp_resnet50", "resnet50", "resnet", weights=(
        GCPWeights("isqrt_cov_in1k", top1=77.86, top5=93.78, notes=(
            "iSQRT-COV ResNet-50 (mpncovresnet50), paper top-1/5 error 22.14/6.22, repository "
            "re-run 21.71/6.13; convert the released file with `python -m gcp.zoo.convert SRC DST "
            "--format isqrt-cov`",), **_ISQRT),
        GCPWeights("svd_pade_in1k", top1=77.33, top5=93.49, origin_url=SVD_REPO,
                   model_args=(("last_stride", 2), ("method", "svd"), ("backward", "pade")),
                   paper_name="Why Approximate Matrix Square Root Outperforms Accurate SVD in Global "
                   "Covariance Pooling? (ICCV 2021)", notes=(
                       "SVD-Padé ResNet-50: top-1/5 error 22.67/6.51 (hybrid 22.60/6.44); its last stage "
                       "keeps stride 2 (this tag builds last_stride=2, method='svd', backward='pade')",)),
    )),
    ModelSpec("gcp_resnet101", "resnet101", "resnet", weights=(
        GCPWeights("isqrt_cov_in1k", top1=78.79, top5=94.32, notes=(
            "iSQRT-COV ResNet-101 (mpncovresnet101), paper top-1/5 error 21.21/5.68, repository "
            "re-run 20.99/5.56; convert with `python -m gcp.zoo.convert SRC DST --format isqrt-cov`",), **_ISQRT),
    )),
    ModelSpec("gcp_resnet152", "resnet152", "resnet"),
    ModelSpec("gcp_mobilenetv2_100", "mobilenetv2_100", "plain", note="1280→256 reduction after conv_head"),
    ModelSpec("gcp_vgg16_bn", "vgg16_bn", "vgg", note="pool5 removed (14×14 at 224), fc6/fc7 dropped"),
    ModelSpec("gcp_convnext_tiny", "convnext_tiny", "plain", note="768→256 reduction, features before the head norm"),
)}


#: every timm model not curated above, as ``gcp_<timm name>``: its backbone as timm builds it and a
#: GCP head (256-d reduction, iSQRT by default) that reads its output layout (NCHW, NHWC, tokens)
GENERIC: dict[str, ModelSpec] = {f"gcp_{n}": ModelSpec(f"gcp_{n}", n, "any") for n in timm.list_models()
                                 if f"gcp_{n}" not in SPECS and not n.startswith("gcp_")}


def spec_of(name: str) -> Optional[ModelSpec]:
    """The spec of a GCP model name (a curated recipe or ``gcp_<timm name>``; a ``.tag`` is
    ignored), or ``None``."""
    base = name.split(".")[0]
    return SPECS.get(base) or GENERIC.get(base)


def _default_cfgs() -> dict[str, dict]:
    cfgs: dict[str, dict] = {}
    for spec in GENERIC.values():
        cfgs[f"{spec.name}.untrained"] = spec.untrained_cfg()
    for spec in SPECS.values():
        cfgs[f"{spec.name}.untrained"] = spec.untrained_cfg()
        for w in spec.weights:
            cfgs[f"{spec.name}.{w.tag}"] = w.cfg(spec)
    return cfgs


default_cfgs = generate_default_cfgs(_default_cfgs())


# options timm passes to every model that belong to the backbone (refused by name where the
# backbone lacks them, e.g. drop_path_rate for VGG)
BACKBONE_ARGS = ("drop_path_rate", "drop_block_rate")
# timm's feature-extraction arguments, handled here because weights are loaded by zoo
FEATURE_ARGS = ("out_indices", "feature_cls", "output_fmt", "norm")


#: the options of a GCP head (HeadConfig's keywords, ``head`` nested, ``sovit``) and ``cov_norm`` (a
#: ZCA/PCA layer in place of a batch normalisation, :class:`gcp.NormLayerConfig`); on a
#: ``gcp_<timm name>`` model every other option goes to the timm backbone
HEAD_KEYS = HEAD_ARGS | {"sovit", "cov_norm"}

# gcp 0.2 recorded every head option of GCPHead's old signature, applicable or not; a record with
# all three is read as that layout, and those that do not apply to its method (at 0.2's defaults,
# which its head ignored) are dropped
_LEGACY_DEFAULTS = dict(backward="exact", iters=5, alpha=0.5, eps=1e-10)


def _legacy_flat(flat: dict[str, Any]) -> dict[str, Any]:
    if not {"iters", "alpha", "eps"} <= set(flat) or not isinstance(flat.get("method"), str):
        return flat
    from gcp import get_method

    method = get_method(flat["method"])
    out = dict(flat)
    for key, default in _LEGACY_DEFAULTS.items():
        applies = method.takes_backward if key == "backward" else key in method.option_names
        if not applies and out.get(key) == default:
            out.pop(key)
    return out


def head_config_of(base: HeadConfig, nested: Any, flat: dict[str, Any]) -> HeadConfig:
    """The head a model is built with: ``base`` (the spec's), replaced by a ``head=`` configuration
    (a :class:`~gcp.HeadConfig` or its dict), then changed by flat keywords: ``method``/``backward``
    and options switch as :meth:`gcp.GCPHead.set_method` does, ``reduced_dim``/``drop_rate`` replace."""
    config = base if nested is None else HeadConfig.coerce(nested)
    flat = _legacy_flat(dict(flat))
    fields = {k: flat.pop(k) for k in ("reduced_dim", "drop_rate") if k in flat}
    method, backward = flat.pop("method", None), flat.pop("backward", None)
    if method is not None or backward is not None or flat:
        config = config.switched(method, backward, **flat)
    return config.replace(**fields) if fields else config


def _build(spec: ModelSpec, *, num_classes: int = 1000, in_chans: int = 3, backbone_pretrained: Any = False,
           last_stride: Optional[int] = None, global_pool: Optional[str] = None, **kwargs: Any) -> GCPNet:
    # timm's create_model passes where to place the model as constructor arguments: the whole model
    # (backbone and head) goes there once built
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if spec.family == "any":
        backbone_args = {k: kwargs.pop(k) for k in list(kwargs) if k not in HEAD_KEYS}
    else:
        backbone_args = {k: kwargs.pop(k) for k in BACKBONE_ARGS if k in kwargs}
    _check_pool(global_pool)
    check_int(in_chans, "in_chans", minimum=1)
    if isinstance(backbone_pretrained, (str, os.PathLike)) and not os.path.isfile(backbone_pretrained):
        raise CheckpointError(f"backbone_pretrained={str(backbone_pretrained)!r}: no such file (pass True for "
                              f"timm's ImageNet weights of {spec.backbone}, or the path of a weight file)")
    if last_stride is not None and spec.family != "resnet":
        raise InvalidOptionError(f"{spec.name} has no option last_stride (the curated GCP ResNets only: it sets the "
                                 "stride of their last stage)")
    if spec.family == "any":
        backbone = _backbones.any_model(spec.backbone, in_chans, backbone_pretrained, **backbone_args)
    elif spec.family == "resnet":
        backbone = _backbones.resnet(spec.backbone, in_chans, backbone_pretrained, last_stride or 1, **backbone_args)
    elif spec.family == "vgg":
        backbone = _backbones.vgg(spec.backbone, in_chans, backbone_pretrained, **backbone_args)
    else:
        backbone = _backbones.plain(spec.backbone, in_chans, backbone_pretrained, **backbone_args)
    sovit = kwargs.pop("sovit", False)
    if sovit not in (True, False):
        raise InvalidOptionError(f"sovit must be True or False, got {sovit!r}")
    nested = kwargs.pop("head", None)
    cov_norm = kwargs.pop("cov_norm", None)
    try:
        config = head_config_of(spec.head, nested, kwargs)
    except InvalidOptionError as exc:
        if any(k not in HEAD_KEYS for k in kwargs):  # an unexpected keyword: a TypeError too, as in timm
            from .errors import UnknownBackboneOptionError

            raise UnknownBackboneOptionError(str(exc)) from exc
        raise
    head_cls = SoViTHead if sovit else GCPHead
    if global_pool == "":
        if num_classes:
            raise InvalidOptionError(
                f"global_pool='' removes the GCP head, so num_classes must be 0 (got {num_classes})")
        head_cls(backbone.num_features, 0, config=config)  # validates the configuration it keeps for later
        head: Any = NoPool()
    else:
        head = head_cls(backbone.num_features, num_classes, config=config)
    arch_args = dict(architecture=spec.name, backbone=spec.backbone, in_chans=in_chans, head=config.to_dict())
    if sovit:
        arch_args["sovit"] = True
    if spec.family == "resnet":
        arch_args["last_stride"] = last_stride or 1
    net = GCPNet(backbone, head, arch_args=arch_args, head_config=config, sovit=bool(sovit))
    if cov_norm is not None:
        # recorded with the path it replaced, so a saved model rebuilds the same layer in the same place
        layer = cov_norm if isinstance(cov_norm, NormLayerConfig) else NormLayerConfig.from_dict(cov_norm)
        path = layer.apply(net)
        net._arch_args["cov_norm"] = dict(layer.to_dict(), at=path)
    if device is not None or dtype is not None:
        net.to(device=device, dtype=dtype)
    return net


def _create(spec: ModelSpec, pretrained: bool = False, **kwargs: Any) -> Any:
    cfg = resolve_pretrained_cfg(spec.name, kwargs.get("pretrained_cfg"), kwargs.get("pretrained_cfg_overlay"))
    if pretrained and not cfg.has_weights:
        tag = f".{cfg.tag}" if cfg.tag else ""
        if spec.family == "any":
            raise CheckpointError(
                f"{spec.name}{tag} has no GCP weights to download (only the curated models have published "
                f"ones); use backbone_pretrained=True for timm's ImageNet weights of {spec.backbone} with a fresh "
                "GCP head, or load a file of yours with pretrained_cfg_overlay=dict(file=PATH) or a folder with "
                "local-dir:PATH")
        raise CheckpointError(
            f"{spec.name}{tag} has no downloadable weights; convert a published checkpoint with "
            "`python -m gcp.zoo.convert SRC DST --format isqrt-cov|svd-pade` and load it with "
            "pretrained_cfg_overlay=dict(file=DST), or use backbone_pretrained=True for ImageNet "
            "backbone weights with a fresh head"
        )
    weights = next((w for w in spec.weights if w.tag == cfg.tag), None)
    for key, value in (weights.model_args if weights else ()):
        kwargs.setdefault(key, value)
    features_only = kwargs.pop("features_only", False)
    feature_args = {k: kwargs.pop(k) for k in FEATURE_ARGS if k in kwargs}
    # weights are loaded here rather than by timm, so every source is hash-checked and strict
    model = build_model_with_cfg(lambda **kw: _build(spec, **kw), spec.name, False, **kwargs)
    last_stride = model.arch_args.get("last_stride", 1)
    model.pretrained_cfg["pool_size"] = spec.pool_size(model.pretrained_cfg["input_size"][-1], last_stride)
    if pretrained:
        load_pretrained_weights(model, model.pretrained_cfg)
    if not features_only:
        if feature_args:
            raise InvalidOptionError(f"{', '.join(sorted(feature_args))} need features_only=True")
        return model
    if spec.family == "any" and "out_indices" not in feature_args:
        feature_args["out_indices"] = _default_out_indices(spec.backbone, len(model.feature_info))
    return _features(model, **feature_args)


def _default_out_indices(backbone: str, levels: int) -> tuple[int, ...]:
    """The feature levels timm's own ``features_only`` model of ``backbone`` returns by default (some
    skip a level, TResNet its space-to-depth stem), read from a build on the meta device; every level
    where timm's build fails or disagrees with the backbone's levels."""
    import torch

    try:
        with torch.device("meta"):
            ref = timm.create_model(backbone, features_only=True, pretrained=False)
        chosen = tuple(int(i) for i in ref.feature_info.out_indices)
    except Exception:  # a backbone timm cannot wrap as features_only: the GCP wrapper still can
        return tuple(range(levels))
    return chosen if chosen and all(0 <= i < levels for i in chosen) else tuple(range(levels))


def _features(model: GCPNet, out_indices: Any = None, feature_cls: str = "getter", **kwargs: Any) -> Any:
    """timm's ``features_only`` wrapper: ``FeatureGetterNet`` over ``forward_intermediates`` (the
    wrapper timm uses for models with that method; the others look modules up by name).
    ``out_indices`` defaults to every level of the backbone (5 for ResNet/VGG/MobileNet, 4 for
    ConvNeXt); a ``gcp_<timm name>`` model defaults to the levels timm's own features_only model
    returns."""
    if feature_cls != "getter":
        raise InvalidOptionError(f"GCP models extract features with feature_cls='getter', not {feature_cls!r}")
    levels = len(model.feature_info)
    if out_indices is None:
        out_indices = tuple(range(levels))
    indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
    if not indices or not all(isinstance(i, int) and -levels <= i < levels for i in indices):
        raise InvalidOptionError(
            f"out_indices={out_indices!r}: {model.arch_args.get('architecture')} has feature levels "
            f"0..{levels - 1} (or negative indices from the end)")
    cfg = model.pretrained_cfg
    wrapped = FeatureGetterNet(model, out_indices=[i % levels for i in indices], **kwargs)
    wrapped.pretrained_cfg = wrapped.default_cfg = pretrained_cfg_for_features(cfg)
    return wrapped


def _entrypoint(spec: ModelSpec) -> Callable[..., GCPNet]:
    def fn(pretrained: bool = False, **kwargs: Any) -> GCPNet:
        return _create(spec, pretrained, **kwargs)

    fn.__name__ = fn.__qualname__ = spec.name
    fn.__module__ = __name__
    fn.__doc__ = (f"{spec.name}: timm {spec.backbone} + GCP head ({spec.head.label()}, {spec.head.reduced_dim}-d, "
                  f"{spec.representation_dim()} features).")
    return fn


for _spec in [*SPECS.values(), *GENERIC.values()]:
    globals()[_spec.name] = register_model(_entrypoint(_spec))


def list_models(pretrained: bool = False, generic: bool = False) -> list[str]:
    """The curated GCP models (recipes of the papers); ``generic=True`` adds ``gcp_<name>`` for every
    other timm model; ``pretrained=True`` lists the ``name.tag`` of published weights instead."""
    if pretrained:
        return sorted(f"{s.name}.{w.tag}" for s in SPECS.values() for w in s.weights)
    return sorted(SPECS) + (sorted(GENERIC) if generic else [])


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> GCPNet:
    """Build a registered GCP model (``timm.create_model`` with a helpful unknown-name error).

    Every :class:`gcp.GCPHead` option passes through: ``create_model("gcp_resnet50",
    method="svd", backward="pade", num_classes=200)``; ``backbone_pretrained=True`` (or a file)
    loads the timm backbone's ImageNet weights and leaves the head freshly initialised.
    """
    name = model_name.partition(".")[0]
    if spec_of(name) is None:
        close = difflib.get_close_matches(name, [*SPECS, *GENERIC], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown GCP model {model_name!r}{hint} (gcp.zoo.list_models() lists them)")
    return timm.create_model(model_name, pretrained=pretrained, **kwargs)
