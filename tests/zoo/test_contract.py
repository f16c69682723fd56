"""timm's model contract, checked on every registered GCP model (one parametrised test).

The checks follow what timm's own ``tests/test_models.py`` asks of timm's models
(default cfgs, heads, backward, features_only, forward_intermediates, grad checkpointing,
FX, TorchScript, pretrained loading with ``in_chans != 3``), plus timm's layer-wise lr decay.
References are independent of the code under test: timm's and torchvision's own helpers, the
backbone run alone, and plain tensor arithmetic.
"""

from __future__ import annotations

import copy
import math

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2
from torchvision.models.feature_extraction import create_feature_extractor

import gcp
import gcp.zoo
from gcp.zoo import save_weights

# one ResNet, the VGG and the MobileNet run by default; the ConvNeXt and the deeper ResNets with -m slow
DEFAULT_MODELS = {"gcp_resnet18", "gcp_vgg16_bn", "gcp_mobilenetv2_100"}
SMALL = dict(reduced_dim=16)
IMAGE = 64  # small inputs keep the contract fast; pool_size is checked at the cfg's input size

_BUILT: dict[str, torch.nn.Module] = {}


def _model(name: str) -> torch.nn.Module:
    """A fresh copy of a small-head model (built once per name: VGG takes seconds to build)."""
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = timm.create_model(name, num_classes=7, **SMALL)
    return copy.deepcopy(_BUILT[name])


def _x(batch: int = 2, size: int = IMAGE) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def _all_params_have_grads(model: torch.nn.Module) -> None:
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient (breaks DDP): {missing[:5]}"


def check_attributes(name: str) -> None:
    model = timm.create_model(name).eval()  # the registered defaults (d = 256, 1000 classes)
    cfg, state = model.pretrained_cfg, model.state_dict()
    spec = gcp.zoo.SPECS[name]
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, *cfg["input_size"]))
        pre = model.forward_head(feats, pre_logits=True)
    assert feats.shape[1] == model.num_features == model.backbone.num_features
    assert tuple(feats.shape[-2:]) == tuple(cfg["pool_size"])
    assert pre.shape == (1, model.head_hidden_size) == (1, spec.representation_dim())
    assert model.num_classes == cfg["num_classes"] == 1000
    for key in ("first_conv", "classifier"):
        names = cfg[key] if isinstance(cfg[key], (tuple, list)) else (cfg[key],)
        for param in names:
            assert f"{param}.weight" in state, f"pretrained_cfg[{key!r}] = {param!r} is not a parameter"
    base = timm.models.get_pretrained_cfg(spec.backbone)
    assert cfg["first_conv"] == f"backbone.{base.first_conv}"
    assert (cfg["input_size"], cfg["crop_pct"], cfg["interpolation"]) == (base.input_size, base.crop_pct, base.interpolation)
    assert model.pretrained_cfg["architecture"] == name


def check_heads(name: str) -> None:
    model, x = _model(name).eval(), _x()
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert model(x).shape == (2, 7)
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), torch.nn.Identity)
        assert torch.equal(model(x), pre) and pre.shape == (2, model.head_hidden_size) == (2, 136)
        model.reset_classifier(0, global_pool="")
        assert torch.equal(model(x), feats)  # unpooled feature maps, as timm's contract expects
        assert model.head_hidden_size == model.num_features
        model.reset_classifier(5, global_pool="gcp")  # a fresh GCP head comes back
        assert model(x).shape == (2, 5) and model.head.method == "isqrt" and model.head.reduced_dim == 16
        with pytest.raises(gcp.InvalidOptionError, match="global_pool"):
            model.reset_classifier(5, global_pool="avg")
        with pytest.raises(gcp.InvalidOptionError, match="num_classes"):
            model.reset_classifier(5, global_pool="")
    # created without pooling; options timm passes to every model are honoured where the backbone
    # has them (drop_path_rate), refused by name where it does not (VGG); drop_rate is the head's
    extra = {} if name == "gcp_vgg16_bn" else dict(drop_path_rate=0.1)
    unpooled = timm.create_model(name, num_classes=0, global_pool="", drop_rate=0.25, **extra, **SMALL).eval()
    with torch.no_grad():
        out = unpooled(x)
    assert out.dim() == 4 and out.shape[1] == unpooled.num_features
    if extra:
        assert any("DropPath" in type(m).__name__ for m in unpooled.modules())
    else:
        with pytest.raises(gcp.InvalidOptionError, match="drop_path_rate"):
            timm.create_model(name, drop_path_rate=0.1, **SMALL)
    unpooled.reset_classifier(3, "gcp")  # the head comes back with the options the model was built with
    assert unpooled.head.head_drop.p == 0.25 and unpooled.head.reduced_dim == 16 and unpooled.num_classes == 3


def check_backward(name: str) -> None:
    """timm's test_model_backward: every parameter gets a gradient, outputs have num_classes."""
    model = timm.create_model(name, num_classes=42, **SMALL).train()
    out = model(_x())
    out.mean().backward()
    assert out.shape == (2, 42) and torch.isfinite(out).all()
    _all_params_have_grads(model)


def check_features_only(name: str) -> None:
    full = _model(name).eval()
    levels = len(full.feature_info)
    torch.manual_seed(0)  # the weights of _model(name)
    feats = timm.create_model(name, features_only=True, num_classes=7, **SMALL).eval()
    assert len(feats.feature_info.channels()) == levels >= 4
    x = _x(1)
    outs = feats(x)
    assert len(outs) == levels
    for channels, reduction, out in zip(feats.feature_info.channels(), feats.feature_info.reduction(), outs):
        assert out.shape[1] == channels
        assert out.shape[-1] <= math.ceil(IMAGE / reduction) + 1
    # the last level is what the GCP head pools (MobileNet's conv_head comes after its last tap)
    if name != "gcp_mobilenetv2_100":
        assert torch.allclose(outs[-1], full.forward_features(x), atol=1e-5)
    some = timm.create_model(name, features_only=True, out_indices=(1, -1), **SMALL)
    assert some.feature_info.channels() == [feats.feature_info.channels()[1], feats.feature_info.channels()[-1]]
    with pytest.raises(gcp.InvalidOptionError, match="out_indices"):
        timm.create_model(name, features_only=True, out_indices=(levels,), **SMALL)


def check_intermediates(name: str) -> None:
    model, x = _model(name).eval(), _x(1)
    info = timm.models.FeatureInfo(model.feature_info, list(range(len(model.feature_info))))
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.allclose(final, model.forward_features(x), atol=1e-5)
        assert len(inter) == len(model.feature_info)
        for channels, reduction, out in zip(info.channels(), info.reduction(), inter):
            assert out.shape[1] == channels and out.shape[-1] <= math.ceil(IMAGE / reduction) + 1
        only = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert len(only) == 2 and torch.allclose(only[-1], inter[-1], atol=1e-5)
        kept = model.prune_intermediate_layers(indices=[1])
        assert kept == [1]
        pruned = model.forward_intermediates(x, indices=[1], intermediates_only=True)
        assert torch.allclose(pruned[0], inter[1], atol=1e-5)
        assert isinstance(model.head, gcp.zoo.GCPNet.__init__.__globals__["NoPool"])


def check_grad_checkpointing(name: str) -> None:
    model, x = _model(name).eval(), _x()  # eval: BN statistics must not differ between the two runs
    model(x).square().mean().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(True)
    assert model.grad_checkpointing and any(getattr(m, "grad_checkpointing", False) for m in model.backbone.modules())
    model(x).square().mean().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, plain[n], rtol=1e-4, atol=1e-7), n


def check_layer_decay(name: str) -> None:
    model = _model(name)
    opt = create_optimizer_v2(model, "sgd", lr=0.1, layer_decay=0.7)
    scales = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert len(scales) == sum(1 for _ in model.parameters())
    by_name = {n: scales[id(p)] for n, p in model.named_parameters()}
    stem = [v for n, v in by_name.items() if n.startswith(model.pretrained_cfg["first_conv"])]
    head = [v for n, v in by_name.items() if n.startswith("head.")]
    assert head and max(head) == 1.0 and min(head) == 1.0  # the GCP head trains at full rate
    assert stem and max(stem) < 0.7 ** 3  # the stem is several layers down
    assert len(set(by_name.values())) >= 4


def check_fx(name: str) -> None:
    model, x = _model(name).eval(), _x()
    # torchvision's extractor traces both modes once; "head.fc" is the classifier's output node
    extractor = create_feature_extractor(model, train_return_nodes=["head.fc"], eval_return_nodes=["head.fc"])
    with torch.no_grad():
        assert torch.allclose(extractor(x)["head.fc"], model(x), rtol=1e-5, atol=1e-6)
    extractor.train()(x)["head.fc"].mean().backward()
    _all_params_have_grads(extractor)
    # timm's own FX helper (its leaf modules and autowrapped functions), intermediate nodes too
    from timm.models._features_fx import create_feature_extractor as timm_extractor

    first = model.pretrained_cfg["first_conv"]
    # timm's tracer keeps the GCP head whole (a registered leaf, so TorchScript can compile it)
    nodes = timm_extractor(model.eval(), return_nodes={first: "stem", "head": "out"})
    with torch.no_grad():
        got = nodes(x)
        assert torch.allclose(got["out"], model(x), rtol=1e-5, atol=1e-6)
        conv = model.get_submodule(first)
        assert torch.allclose(got["stem"], conv(x), rtol=1e-5, atol=1e-6)


def fx_torchscript(model: torch.nn.Module, x: torch.Tensor) -> None:
    """timm's FX + TorchScript model test: trace with timm's leaf modules and wrapped functions,
    extract the last node, script the graph module, and compare with the eager model."""
    from timm.models._features_fx import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import get_graph_node_names

    tracer = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                  param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer)
    graph = create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                     tracer_kwargs=tracer)
    scripted = torch.jit.script(graph.eval())
    with torch.no_grad():
        out = tuple(scripted(x).values())[0]
        assert torch.allclose(out, model(x), rtol=1e-5, atol=1e-5)


def check_fx_torchscript(name: str) -> None:
    from timm.layers import set_scriptable

    with set_scriptable(True):
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=5, **SMALL).eval()
    fx_torchscript(model, _x(1))


def test_fx_torchscript_of_a_generic_model():
    """timm's FX + TorchScript test on gcp_<timm name> models of three layouts (a ResNet, a ConvNeXt, and
    a ViT whose position embedding is resampled through a function timm keeps out of FX's trace)."""
    from timm.layers import set_scriptable

    for name in ("gcp_test_resnet", "gcp_test_convnext", "gcp_test_vit"):
        with set_scriptable(True):
            model = timm.create_model(name, num_classes=5).eval()
        fx_torchscript(model, _x(1))


def check_torchscript(name: str) -> None:
    model, x = _model(name).eval(), _x(1)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), rtol=1e-5, atol=1e-6)


def check_pretrained_in_chans(name: str, tmp_path) -> None:
    source = _model(name)
    path = str(tmp_path / "w.safetensors")
    save_weights(source, path)
    key = source.pretrained_cfg["first_conv"] + ".weight"
    rgb = source.state_dict()[key]
    grey = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), in_chans=1,
                             num_classes=5, **SMALL)
    # timm's rule for one channel: the RGB filters summed; a new class count gets a fresh classifier
    assert torch.allclose(grey.state_dict()[key], rgb.sum(1, keepdim=True), atol=1e-6)
    others = {k: v for k, v in grey.state_dict().items() if k != key and not k.startswith("head.fc.")}
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in others.items())
    assert grey.eval()(torch.randn(2, 1, IMAGE, IMAGE)).shape == (2, 5)
    four = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), in_chans=4,
                             num_classes=7, **SMALL)
    # more channels: the RGB filters repeated, scaled by 3/in_chans
    expected = torch.cat([rgb, rgb[:, :1]], 1) * (3 / 4)
    assert torch.allclose(four.state_dict()[key], expected, atol=1e-6)
    assert torch.equal(four.head.fc.weight, source.head.fc.weight)  # same class count: kept


CHECKS = {
    "attributes": check_attributes,
    "heads": check_heads,
    "backward": check_backward,
    "features_only": check_features_only,
    "intermediates": check_intermediates,
    "grad_checkpointing": check_grad_checkpointing,
    "layer_decay": check_layer_decay,
    "fx": check_fx,
    "fx_torchscript": check_fx_torchscript,
    "torchscript": check_torchscript,
    "pretrained_in_chans": check_pretrained_in_chans,
}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize(
    "name", [n if n in DEFAULT_MODELS else pytest.param(n, marks=pytest.mark.slow) for n in gcp.zoo.list_models()]
)
def test_timm_model_contract(name, check, tmp_path):
    fn = CHECKS[check]
    fn(name, tmp_path) if check == "pretrained_in_chans" else fn(name)


def test_registry_has_the_eight_models():
    assert len(gcp.zoo.list_models()) == 8 and DEFAULT_MODELS <= set(gcp.zoo.list_models())


def test_mpa_head_refuses_torchscript_with_a_typed_error():
    model = _model("gcp_resnet18")
    model.set_method("mpa")
    with pytest.raises(gcp.ExportError, match="cannot be scripted.*isqrt"):
        torch.jit.script(model)


def test_scripted_svd_head_matches_eager():
    model = _model("gcp_mobilenetv2_100").eval()
    model.set_method("svd", "pade")
    x = _x(1)
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(model)(x), model(x), rtol=1e-5, atol=1e-6)
