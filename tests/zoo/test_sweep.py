"""gcp_<timm name> for every timm model: names, output layouts (NCHW, NHWC, tokens), So-ViT, refusals,
and the sweep over one smallest model per timm module (the full sweep is under -m slow)."""

import json
import pathlib

import pytest
import timm
import torch

import gcp
from gcp.zoo import list_models
from gcp.zoo._unsupported import UNSUPPORTED
from gcp.zoo.errors import UnsupportedBackboneError
from gcp.zoo.sweep import check_model

LISTING = json.loads((pathlib.Path(__file__).parent / "sweep_models.json").read_text())
SWEEP = LISTING["modules"]


def test_every_timm_model_has_a_gcp_name():
    base = [n for n in timm.list_models() if not n.startswith("gcp_")]
    names = set(list_models(generic=True))
    assert [n for n in base if f"gcp_{n}" not in names] == []
    assert all(timm.is_model(f"gcp_{n}") for n in base[::50])
    assert set(list_models()) <= names and len(list_models()) == 8  # the curated recipes stay apart


def test_the_sweep_list_is_one_model_of_every_installed_timm_module():
    # timm's own modules: not those gcp registers (gcp_* models, resnet18_cifar in gcp.zoo.cifar_resnet)
    modules = {m for m in timm.list_modules() if any(not timm.models.model_entrypoint(n).__module__.startswith("gcp.")
                                                     for n in timm.list_models(module=m))}
    assert LISTING["timm"] == timm.__version__ and set(SWEEP) == modules
    assert all(v["model"] in timm.list_models(module=m) for m, v in SWEEP.items())


@pytest.mark.parametrize("key", sorted(UNSUPPORTED))
def test_a_backbone_that_cannot_take_a_gcp_head_is_refused_by_name(key):
    model = SWEEP[key]["model"] if key in SWEEP else key  # a timm module, or one model
    with pytest.raises(UnsupportedBackboneError, match=f"gcp_{model}: timm's {model} cannot take a GCP head: "):
        timm.create_model(f"gcp_{model}")


def test_a_backbone_option_it_lacks_is_refused_by_name():
    with pytest.raises(gcp.InvalidOptionError, match="backbone test_convnext does not accept"):
        timm.create_model("gcp_test_convnext", no_such_option=1)


# one model per layout in the default run; mobilenetv3 and naflexvit keep head-only layers timm's
# forward_head applies, which must go (DDP refuses parameters without a gradient)
QUICK = ["test_convnext", "test_vit", "test_efficientnet", "mobilenetv3_small_050", "deit_tiny_distilled_patch16_224"]


@pytest.mark.parametrize("name", QUICK)
def test_quick_sweep(name):
    result = check_model(name)
    assert result.ok, result


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(SWEEP))
def test_sweep(module):
    model = SWEEP[module]["model"]
    result = check_model(model)
    if module in UNSUPPORTED or model in UNSUPPORTED:
        assert result.stage == "build" and "UnsupportedBackboneError" in result.reason
    else:
        assert result.ok, result


def _vit(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("gcp_test_vit", num_classes=4, reduced_dim=8, **kwargs).eval()


def test_tokens_pool_the_patch_tokens_only():
    model = _vit(method="svd")
    assert model._prefix_tokens == model.backbone.num_prefix_tokens >= 1
    x = torch.randn(2, 3, *model.pretrained_cfg["input_size"][1:])
    with torch.no_grad():
        tokens = model.forward_features(x)
        got = model.forward_head(tokens)
        p = model._prefix_tokens
        # independently arranged: the patch tokens as a (B, C, N, 1) map for the head itself
        want = model.head(tokens[:, p:].transpose(1, 2).unsqueeze(-1))
        assert torch.allclose(got, want, atol=1e-6)
        other_prefix = tokens.clone()
        other_prefix[:, :p] += 5.0
        assert torch.allclose(model.forward_head(other_prefix), got, atol=1e-6)
        shuffled = torch.cat([tokens[:, :p], tokens[:, p:].flip(1)], 1)  # a covariance ignores the order
        assert torch.allclose(model.forward_head(shuffled), got, atol=1e-5)
        moved = tokens.clone()
        moved[:, p] += 5.0
        assert not torch.allclose(model.forward_head(moved), got, atol=1e-3)


@pytest.mark.parametrize("name, prefix", [("coat_lite_tiny", 1), ("volo_d1_224", 1), ("deit_tiny_distilled_patch16_224", 2)])
def test_class_tokens_timm_does_not_declare_are_not_pooled(name, prefix):
    with torch.device("meta"):
        model = timm.create_model(f"gcp_{name}", reduced_dim=8)
    assert model._prefix_tokens == prefix


def test_fewer_than_two_patch_tokens_is_a_shape_error():
    from gcp.zoo._gcpnet import as_feature_maps

    with pytest.raises(gcp.ShapeError, match="at least 2 patch tokens"):
        as_feature_maps(torch.randn(2, 2, 8), nhwc=False, prefix_tokens=1)
    assert as_feature_maps(torch.randn(2, 3, 8), nhwc=False, prefix_tokens=1).shape == (2, 8, 2, 1)


def test_channels_last_maps_are_permuted():
    torch.manual_seed(0)
    name = SWEEP["mambaout"]["model"]
    model = timm.create_model(f"gcp_{name}", num_classes=3, reduced_dim=8).eval()
    assert model._nhwc
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = model.forward_features(x)
        assert maps.shape[-1] == model.num_features  # NHWC
        assert torch.allclose(model.forward_head(maps), model.head(maps.permute(0, 3, 1, 2)), atol=1e-6)


def test_sovit_adds_the_class_token_to_the_covariance():
    model = _vit(sovit=True)
    c, d = model.num_features, 8
    assert model.head_hidden_size == c + d * (d + 1) // 2
    x = torch.randn(2, 3, *model.pretrained_cfg["input_size"][1:])
    with torch.no_grad():
        tokens = model.forward_features(x)
        rep = model.forward_head(tokens, pre_logits=True)
        assert torch.allclose(rep[:, :c], tokens[:, 0], atol=1e-6)  # the class token, as it is
        plain = _vit().head  # the covariance part is the plain GCP head's representation
        plain.load_state_dict({k: v for k, v in model.head.state_dict().items() if not k.startswith("fc.")},
                              strict=False)
        assert torch.allclose(rep[:, c:], plain(tokens[:, 1:].transpose(1, 2).unsqueeze(-1), pre_logits=True),
                              atol=1e-6)
        other_cls = tokens.clone()
        other_cls[:, 0] += 1.0
        assert not torch.allclose(model.forward_head(other_cls), model.forward_head(tokens))
    model.reset_classifier(0, "")
    model.reset_classifier(6, "gcp")  # the So-ViT head comes back, not a plain one
    assert model.head_hidden_size == c + d * (d + 1) // 2 and model.num_classes == 6
    with pytest.raises(gcp.InvalidOptionError, match="sovit=True needs a backbone with a class token"):
        timm.create_model("gcp_test_convnext", sovit=True)


def _feats(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=3, reduced_dim=8).eval()
    size = tuple(model.pretrained_cfg["input_size"])
    with torch.no_grad():
        return model, model.forward_features(torch.randn(2, *size)), size


def test_the_layout_audit_finds_an_undeclared_prefix_token():
    """A backbone whose class token is not declared (num_prefix_tokens 0): test_vit's 1 + 10×10
    tokens at 160² with patch 16 leave one token over the grid, which the audit names."""
    from gcp.zoo.sweep import layout_findings

    model, feats, size = _feats("gcp_test_vit")
    assert feats.shape[1] == 1 + (size[1] // 16) * (size[2] // 16)  # the truth, from timm's own geometry
    assert layout_findings(model, feats, size) == ("", "")
    model._prefix_tokens = 0
    finding, _ = layout_findings(model, feats, size)
    assert "1 undeclared prefix token(s)" in finding and f"{feats.shape[1]} tokens" in finding


def test_the_layout_audit_finds_a_channels_last_map_read_as_channels_first():
    from gcp.zoo.sweep import layout_findings

    model, feats, size = _feats("gcp_test_mambaout")
    assert feats.shape[-1] == model.num_features != feats.shape[1]  # NHWC, as timm declares
    assert layout_findings(model, feats, size) == ("", "")
    model._nhwc = False
    finding, _ = layout_findings(model, feats, size)
    assert "NCHW output" in finding and "it looks channels-last" in finding


def test_the_layout_audit_of_consistent_and_refused_models():
    from gcp.zoo.sweep import audit_layout

    for name in ("test_resnet", "test_vit", "test_mambaout", "levit_128s"):  # LeViT: 224/64 rounds up to 4×4
        audit = audit_layout(name)
        assert audit.ok and audit.layout in ("NCHW", "NHWC", "tokens (1 prefix)", "tokens (0 prefix)"), audit
    refused = audit_layout("pit_ti_224")
    assert refused.layout == "refused" and refused.ok and "only the class" in refused.note
    assert audit_layout("no_such_model").layout == "not built"


def test_the_layout_audit_would_have_found_the_undeclared_class_tokens(monkeypatch):
    """CoaT-Lite and VOLO lead their tokens with a class token timm does not declare; without the
    zoo's PREFIX_TOKENS entry for them, the audit names it (so the audit of every timm model that
    finds nothing is a check that can fail)."""
    from gcp.zoo import _unsupported
    from gcp.zoo.sweep import audit_layout

    assert audit_layout("coat_lite_tiny").ok
    for module in list(_unsupported.PREFIX_TOKENS):
        monkeypatch.delitem(_unsupported.PREFIX_TOKENS, module)
    audit = audit_layout("coat_lite_tiny")
    assert audit.layout == "tokens (0 prefix)" and "1 undeclared prefix token(s)" in audit.finding


def test_a_generic_models_bad_weights_and_input_options_are_refused_by_name(tmp_path, monkeypatch):
    with pytest.raises(gcp.zoo.CheckpointError, match="no GCP weights .* backbone_pretrained=True for timm's "
                                                      "ImageNet weights of test_resnet"):
        timm.create_model("gcp_test_resnet", pretrained=True)
    with pytest.raises(gcp.InvalidOptionError, match="in_chans must be an integer >= 1, got 0"):
        timm.create_model("gcp_test_resnet", in_chans=0)
    missing = str(tmp_path / "absent.safetensors")
    with pytest.raises(gcp.zoo.CheckpointError, match=f"backbone_pretrained='{missing}': no such file"):
        timm.create_model("gcp_test_resnet", backbone_pretrained=missing)

    def offline(*args, **kwargs):  # what the Hub client raises without a network
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    # the Hub answers the probe but the download fails (the unreachable case is test_backbone_files')
    monkeypatch.setattr(gcp.zoo._backbones, "hub_reachable", lambda timeout=3.0: True)
    with pytest.raises(gcp.zoo.CheckpointError, match="cannot load timm's ImageNet weights of test_resnet: OSError"):
        timm.create_model("gcp_test_resnet", backbone_pretrained=True)


@pytest.mark.slow  # two VGG-11 backward passes: ~2 s
def test_grad_checkpointing_of_generic_models_is_exact_or_refused_by_name():
    """timm's --grad-checkpointing: a generic VGG gets the zoo's checkpointed VGG (timm's refuses),
    with the gradients of the plain run; a backbone timm gives no checkpointing is refused by name."""
    torch.manual_seed(0)
    model = timm.create_model("gcp_vgg11", num_classes=3, reduced_dim=8).train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model(x).logsumexp(-1).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(*grads))
    assert sum(p.numel() for p in model.parameters()) < 10_000_000  # fc6/fc7 (120M) not built to be dropped
    with pytest.raises(gcp.InvalidOptionError, match="gcp_convit_tiny: timm's ConVit does not support gradient "
                                                     "checkpointing"):
        timm.create_model("gcp_convit_tiny", num_classes=3, reduced_dim=8).set_grad_checkpointing(True)


def _lr_scales(model):
    from timm.optim import create_optimizer_v2

    opt = create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.7)
    scales = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert len(scales) == sum(1 for p in model.parameters() if p.requires_grad)  # each parameter once
    return {n: scales[id(p)] for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["cait_xxs24_224", "poolformerv2_s12",
                                  *(pytest.param(n, marks=pytest.mark.slow) for n in ("inception_v3", "csatv2"))])
def test_layer_decay_of_generic_models_follows_timms_grouping(name):
    """timm's --layer-decay on backbones whose group_matcher is a function (CaiT, Inception-v3) or
    missing (MetaFormer, CSATv2: timm's auto_group_layers): every parameter in one group, the GCP
    head at the full rate, and, for the function matchers, each backbone parameter at the lr scale
    timm gives it in its own model (which ends in timm's classifier where ours ends in the head)."""
    with torch.device("meta"):
        model = timm.create_model(f"gcp_{name}", num_classes=3, reduced_dim=8)
        reference = timm.create_model(name, num_classes=3)
    ours = _lr_scales(model)
    assert {v for n, v in ours.items() if n.startswith("head.")} == {1.0}
    backbone = {n[len("backbone."):]: v for n, v in ours.items() if n.startswith("backbone.")}
    assert len(set(backbone.values())) >= 3 and max(backbone.values()) < 1.0
    first = model.pretrained_cfg["first_conv"]
    if isinstance(first, str):  # CSATv2's timm config names none
        assert backbone[f"{first[len('backbone.'):]}.weight"] == min(backbone.values())  # the stem is at the bottom
    if callable(getattr(reference, "group_matcher", lambda coarse: None)(coarse=False)):
        theirs = _lr_scales(reference)
        assert {n: theirs[n] for n in backbone} == backbone


def test_input_size_kwargs_build_fixed_size_backbones_for_the_run():
    from gcp.zoo import check_input_size, input_size_kwargs

    assert input_size_kwargs("gcp_resnet18", 448) == {}  # a CNN takes any size
    assert input_size_kwargs("gcp_vit_tiny_patch16_224", 224) == {}  # its own size
    assert input_size_kwargs("gcp_vit_tiny_patch16_224", 448) == {"img_size": 448}
    with torch.device("meta"):
        vit = timm.create_model("gcp_vit_tiny_patch16_224", num_classes=3, reduced_dim=8, img_size=448)
        assert vit.backbone.pos_embed.shape == (1, 1 + 28 * 28, 192)
        check_input_size(vit, 448)
        with pytest.raises(gcp.ShapeError, match="cannot take 224×224 inputs"):
            check_input_size(vit, 224)
