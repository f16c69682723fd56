"""A ZCA/PCA layer in a zoo model (``cov_norm``): built where asked, refused with the option at
fault, and saved with the model so that load_pretrained and timm's local-dir: rebuild it."""

from __future__ import annotations

import pytest
import timm
import torch

import gcp
import gcp.zoo


@pytest.mark.parametrize("values, option, pattern", [
    (dict(layer="bn"), "layer", "expected one of zca, pca"),
    (dict(layer="pca", dim=4), "dim", "channels per group of a ZCA layer"),
    (dict(layer="zca", components=4), "components", "of a PCA layer"),
    (dict(layer="zca", dim=0), "dim", "an integer >= 1"),
    (dict(layer="zca", colour="red"), "layer", "colour unknown"),
])
def test_a_bad_configuration_names_its_option(values, option, pattern):
    with pytest.raises(gcp.InvalidOptionError, match=pattern) as err:
        gcp.NormLayerConfig.from_dict(values)
    assert err.value.option == option


@pytest.mark.parametrize("values, option, pattern", [
    (dict(layer="zca", dim=5), "dim", "backbone.bn1 has 64 channels, which groups of 5 do not divide"),
    (dict(layer="zca", at="backbone.conv1"), "at", "backbone.conv1: a Conv2d, not a batch normalisation"),
    (dict(layer="zca", at="backbone.nope"), "at", "backbone.nope: no such module"),
    (dict(layer="pca", components=65), "components", "only 64 channels, fewer than 65"),
    (dict(layer="zca", backward="nope"), "backward", "unknown backward 'nope'"),
])
def test_a_place_the_model_cannot_take_names_its_option(values, option, pattern):
    with pytest.raises(gcp.InvalidOptionError, match=pattern) as err:
        gcp.zoo.create_model("gcp_resnet18_cifar", num_classes=10, cov_norm=values)
    assert err.value.option == option


@pytest.mark.parametrize("values, kind", [(dict(layer="zca", dim=8, backward="pi"), gcp.ZCAWhitening),
                                          (dict(layer="pca", components=8, at="backbone.layer1.0.bn1"),
                                           gcp.PCADenoising)])
def test_the_layer_is_saved_with_the_model(tmp_path, values, kind):
    torch.manual_seed(0)
    model = gcp.zoo.create_model("gcp_resnet18_cifar", num_classes=10, cov_norm=values)
    model.train()
    model(torch.randn(8, 3, 32, 32))  # running statistics that differ from the initial ones
    model.eval()
    path = values.get("at", "backbone.bn1")
    assert isinstance(model.get_submodule(path), kind)
    assert model.arch_args["cov_norm"]["at"] == path
    gcp.zoo.save_pretrained(model, str(tmp_path / "saved"))
    x = torch.randn(2, 3, 32, 32)
    for loaded in (gcp.zoo.load_pretrained(str(tmp_path / "saved")),
                   timm.create_model(f"local-dir:{tmp_path / 'saved'}", pretrained=True)):
        loaded.eval()
        assert isinstance(loaded.get_submodule(path), kind)
        assert torch.equal(loaded(x), model(x))


def test_a_shape_check_on_the_meta_device_leaves_no_meta_buffer():
    model = gcp.zoo.create_model("gcp_resnet18_cifar", num_classes=10, cov_norm=dict(layer="zca", dim=16)).eval()
    gcp.zoo.check_input_size(model, 32)
    assert not any(b.is_meta for b in model.buffers())
    model.to("cpu")
