"""Model zoo: the timm contract over every registered model, pretrained loading, save/load."""

import os

import pytest
import timm
import torch

import gcp
import gcp.zoo
from gcp.zoo import save_weights
from gcp.zoo.io import sha256_of

SMALL = dict(num_classes=7, reduced_dim=16)


def test_resnet_last_stage_keeps_14x14_without_dilation():
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=3)
    x = torch.randn(1, 3, 224, 224)
    assert model.forward_features(x).shape[-2:] == (14, 14)
    assert all(m.dilation == (1, 1) for m in model.backbone.layer4.modules() if isinstance(m, torch.nn.Conv2d))
    assert gcp.zoo.create_model("gcp_resnet18", num_classes=3, last_stride=2).forward_features(x).shape[-2:] == (7, 7)
    assert gcp.zoo.create_model("gcp_vgg16_bn", num_classes=3, reduced_dim=8).forward_features(x).shape[-2:] == (14, 14)


def test_head_options_pass_through_timm_create_model():
    model = timm.create_model("gcp_resnet50", method="svd", backward="pade", num_classes=200, degree=(8, 8))
    assert (model.head.method, model.head.backward, model.head.config.backward_kwargs()) == ("svd", "pade", {"degree": (8, 8)})
    assert model.num_classes == 200 and model.head_hidden_size == 32896 and model.num_features == 2048
    assert sum(p.numel() for p in model.head.fc.parameters()) == 32896 * 200 + 200
    with pytest.raises(gcp.InvalidOptionError, match="'degre' applies to neither method 'svd'"):
        timm.create_model("gcp_resnet18", method="svd", backward="taylor", degre=3)


def test_unknown_model_suggests_close_names():
    with pytest.raises(gcp.zoo.UnknownModelError, match="did you mean gcp_resnet50"):
        gcp.zoo.create_model("gcp_resnt50")


def test_pretrained_without_weights_is_a_clear_error():
    with pytest.raises(gcp.zoo.CheckpointError, match="no downloadable weights.*gcp.zoo.convert"):
        gcp.zoo.create_model("gcp_resnet50.isqrt_cov_in1k", pretrained=True)


def _saved(tmp_path, **kwargs):
    torch.manual_seed(1)
    model = gcp.zoo.create_model("gcp_resnet18", **{**SMALL, **kwargs}).eval()
    path = str(tmp_path / "w.safetensors")
    save_weights(model, path)
    return model, path


def test_pretrained_file_with_hash_and_num_classes_rule(tmp_path):
    model, path = _saved(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    digest = sha256_of(path)
    loaded = gcp.zoo.create_model("gcp_resnet18", **SMALL, pretrained=True,
                              pretrained_cfg_overlay=dict(file=f"{path}#sha256={digest}")).eval()
    assert torch.equal(loaded(x), model(x))
    # a different number of classes: classifier fresh, everything else loaded (timm's rule)
    other = gcp.zoo.create_model("gcp_resnet18", num_classes=3, reduced_dim=16, pretrained=True,
                             pretrained_cfg_overlay=dict(file=path)).eval()
    assert torch.equal(other.backbone.conv1.weight, model.backbone.conv1.weight)
    assert other.head.fc.weight.shape == (3, 136)
    with pytest.raises(gcp.zoo.CheckpointError, match="SHA-256 of .* expected 0000"):
        gcp.zoo.create_model("gcp_resnet18", **SMALL, pretrained=True,
                         pretrained_cfg_overlay=dict(file=f"{path}#sha256={'0' * 64}"))


def test_pretrained_url_download_checks_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    model, path = _saved(tmp_path)
    url = f"file://{path}#sha256={sha256_of(path)}"
    loaded = gcp.zoo.create_model("gcp_resnet18", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(url=url)).eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(x), model(x))


def test_checkpoint_that_does_not_fit_lists_the_keys(tmp_path):
    model, path = _saved(tmp_path)
    plain = str(tmp_path / "plain.pth")  # no metadata: the key check itself must catch it
    torch.save(model.state_dict(), plain)
    with pytest.raises(gcp.zoo.CheckpointError, match=r"saved for reduced_dim=16 but the model has reduced_dim=32"):
        gcp.zoo.create_model("gcp_resnet18", num_classes=7, reduced_dim=32, pretrained=True,
                         pretrained_cfg_overlay=dict(file=path))
    with pytest.raises(gcp.zoo.CheckpointError, match=r"shape mismatches: head.fc.weight: checkpoint \(7, 136\) vs model \(7, 528\), head.reduce.bn.bias"):
        gcp.zoo.create_model("gcp_resnet18", num_classes=7, reduced_dim=32, pretrained=True,
                         pretrained_cfg_overlay=dict(file=plain))
    with pytest.raises(gcp.zoo.CheckpointError, match=r"weights of gcp_resnet18 but the model is gcp_resnet34"):
        gcp.zoo.create_model("gcp_resnet34", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=path))
    with pytest.raises(gcp.zoo.CheckpointError, match=r"missing keys: backbone.layer1.2.*"):
        gcp.zoo.create_model("gcp_resnet34", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=plain))
    partial = str(tmp_path / "partial.pth")
    torch.save({k: v for k, v in model.state_dict().items() if "layer4" not in k} | {"extra.w": torch.ones(1)}, partial)
    with pytest.raises(gcp.zoo.CheckpointError, match=r"missing keys: backbone.layer4.0.bn1.bias.*unexpected keys: extra.w"):
        gcp.zoo.create_model("gcp_resnet18", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=partial))
    with pytest.raises(gcp.zoo.CheckpointError, match="last_stride=1 but the model has last_stride=2"):
        gcp.zoo.create_model("gcp_resnet18", **SMALL, last_stride=2, pretrained=True, pretrained_cfg_overlay=dict(file=path))


def test_corrupt_or_missing_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(gcp.zoo.CheckpointError, match="cannot read checkpoint"):
        gcp.zoo.create_model("gcp_resnet18", **SMALL, pretrained=True, pretrained_cfg_overlay=dict(file=str(bad)))
    with pytest.raises(gcp.zoo.CheckpointError, match="not found"):
        gcp.zoo.create_model("gcp_resnet18", **SMALL, pretrained=True,
                         pretrained_cfg_overlay=dict(file=str(tmp_path / "nope.safetensors")))


def test_backbone_pretrained_from_file_keeps_fresh_head(tmp_path):
    torch.manual_seed(2)
    ref = timm.create_model("resnet18")
    path = str(tmp_path / "resnet18.pth")
    torch.save(ref.state_dict(), path)
    model = gcp.zoo.create_model("gcp_resnet18", **SMALL, backbone_pretrained=path)
    assert torch.equal(model.backbone.layer4[0].conv1.weight, ref.layer4[0].conv1.weight)
    assert model.backbone.layer4[0].conv1.stride == (1, 1)  # stride removed after loading
    fresh = gcp.zoo.create_model("gcp_resnet18", **SMALL)
    assert not torch.equal(model.backbone.conv1.weight, fresh.backbone.conv1.weight)


def test_save_pretrained_rebuilds_options_and_never_overwrites(tmp_path):
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=4, reduced_dim=8, method="svd", backward="taylor",
                             degree=9).eval()
    out = str(tmp_path / "run")
    gcp.zoo.save_pretrained(model, out)
    again = gcp.zoo.load_pretrained(out)
    assert (again.head.method, again.head.backward, again.head.config.backward_kwargs()) == ("svd", "taylor", {"degree": 9})
    with pytest.raises(gcp.zoo.CheckpointError, match="already holds a saved model"):
        gcp.zoo.save_pretrained(model, out)
    before = os.path.getmtime(os.path.join(out, "model.safetensors"))
    gcp.zoo.save_pretrained(model, out, overwrite=True)
    assert os.path.getmtime(os.path.join(out, "model.safetensors")) >= before
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]
    with pytest.raises(gcp.zoo.CheckpointError, match="no config.json"):
        gcp.zoo.load_pretrained(str(tmp_path))


def test_model_table_lists_every_model_with_published_numbers(capsys):
    from gcp.zoo.__main__ import main, model_rows

    rows = {r["name"]: r for r in model_rows()}
    assert set(rows) == set(gcp.zoo.list_models())
    assert rows["gcp_resnet50"]["representation"] == 32896
    assert abs(rows["gcp_resnet50"]["params_m"] - 56.9) < 0.1  # iSQRT-COV paper: 56.9 M
    assert "77.86" in rows["gcp_resnet50"]["published_top1"]
    assert main() == 0 and "| `gcp_vgg16_bn` |" in capsys.readouterr().out


def test_weight_tag_builds_the_architecture_its_weights_need():
    model = gcp.zoo.create_model("gcp_resnet50.svd_pade_in1k", reduced_dim=16)
    assert model.arch_args["last_stride"] == 2 and (model.head.method, model.head.backward) == ("svd", "pade")
    assert model.pretrained_cfg["pool_size"] == (7, 7)
    assert model.forward_features(torch.randn(1, 3, 224, 224)).shape[-2:] == (7, 7)
    # a value the user gives wins over the tag's default
    assert gcp.zoo.create_model("gcp_resnet50.svd_pade_in1k", reduced_dim=16, last_stride=1).arch_args["last_stride"] == 1


# ----------------------------------------------------------------------------- every head method
def _method_kwargs(method):
    return dict(method=method, **({"proj_dim": 64} if method == "cbp" else {}))


@pytest.mark.parametrize("method", [m if m in ("gap", "cbp", "logm") else pytest.param(m, marks=pytest.mark.slow)
                                    for m in gcp.METHODS])
def test_every_head_method_builds_saves_and_reloads_by_name(method, tmp_path):
    torch.manual_seed(0)
    model = gcp.zoo.create_model("gcp_test_resnet", num_classes=3, reduced_dim=8, **_method_kwargs(method)).eval()
    assert model.head.method == method and model.head_hidden_size == model.head.config.output_size()
    x = torch.randn(2, 3, 64, 64)
    folder = gcp.zoo.save_pretrained(model, str(tmp_path / method))
    for again in (gcp.zoo.load_pretrained(folder), timm.create_model(f"local-dir:{folder}", pretrained=True)):
        assert again.head.config == model.head.config
        with torch.no_grad():
            assert torch.equal(again.eval()(x), model(x))


def test_a_checkpoint_of_another_method_is_refused_before_any_copy():
    cbp = gcp.zoo.create_model("gcp_resnet18", num_classes=3, reduced_dim=8, method="cbp", proj_dim=64)
    other = gcp.zoo.create_model("gcp_resnet18", num_classes=3, reduced_dim=8, method="isqrt")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(gcp.zoo.StateDictMismatchError, match="sketch_index"):
        other.load_state_dict(cbp.state_dict())
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_a_live_switch_to_another_output_size_is_refused_with_both_sizes():
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=3, reduced_dim=8)
    with pytest.raises(gcp.InvalidOptionError, match=r"\(36 features\) to bcnn \(64 features\)"):
        model.set_method("bcnn")
    model.set_method("logm", "pade")  # the same size: allowed (the hybrid protocol needs it)
    assert model.arch_args["head"]["method"] == "logm"


def test_a_nested_head_configuration_is_the_same_model_as_flat_keywords():
    nested = gcp.zoo.create_model("gcp_resnet18", num_classes=3,
                                  head=gcp.HeadConfig("svd", "taylor", backward_options={"degree": 9}, reduced_dim=8))
    flat = gcp.zoo.create_model("gcp_resnet18", num_classes=3, method="svd", backward="taylor", degree=9,
                                reduced_dim=8)
    assert nested.head.config == flat.head.config and nested.arch_args == flat.arch_args


def test_a_gcp_0_2_config_with_every_old_head_option_still_loads(tmp_path):
    """gcp 0.2 recorded iters, alpha, eps and backward for every method; those its head ignored
    are read as the defaults they were."""
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=3, reduced_dim=8, method="isqrt", iters=3,
                                 backward="exact", alpha=0.5, eps=1e-10)
    assert model.head.config == gcp.HeadConfig("isqrt", method_options={"iters": 3}, reduced_dim=8)
    with pytest.raises(gcp.InvalidOptionError, match="'isqrt' takes no backward"):
        gcp.zoo.create_model("gcp_resnet18", num_classes=3, method="isqrt", backward="pade", iters=3, alpha=0.5,
                             eps=1e-10)


@pytest.mark.parametrize("name", ["gcp_test_vit", "gcp_resnet26", "gcp_vgg16_bn"])
def test_last_stride_is_refused_where_it_changes_nothing(name):
    with pytest.raises(gcp.InvalidOptionError, match=f"{name} has no option last_stride"):
        gcp.zoo.create_model(name, num_classes=3, reduced_dim=8, last_stride=2)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "levit_128s"])
def test_the_backbones_input_fields_are_carried_over_and_the_changes_named(name):
    from timm.models import get_pretrained_cfg

    base, ours = get_pretrained_cfg(name), get_pretrained_cfg(f"gcp_{name}")
    for key in ("input_size", "fixed_input_size", "min_input_size", "test_input_size", "crop_pct", "test_crop_pct",
                "crop_mode", "interpolation", "mean", "std", "pool_size"):
        assert getattr(ours, key) == getattr(base, key), key
    assert ours.fixed_input_size is True and ours.classifier == "head.fc" and "classifier head.fc" in ours.notes[0]


def test_output_fmt_is_the_backbones():
    assert timm.create_model("gcp_test_resnet", num_classes=3, reduced_dim=8).output_fmt == "NCHW"
    assert timm.create_model("gcp_test_mambaout", num_classes=3, reduced_dim=8).output_fmt == "NHWC"
