"""A weight file given as the backbone's loads only if it is that backbone's; otherwise a typed
error says what the file looks like and what loads it (never a random backbone and a warning)."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

import gcp.zoo
from gcp.zoo import CheckpointError


def _save(state, path):
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


def test_the_backbones_own_file_loads_every_tensor(tmp_path):
    timm_model = timm.create_model("resnet18")
    path = _save(timm_model.state_dict(), tmp_path / "r18.safetensors")  # its classifier fc.* included
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=3, backbone_pretrained=path)
    for key, value in timm_model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.backbone.state_dict()[key], value), key


@pytest.mark.parametrize("make, pattern", [
    (lambda: gcp.zoo.create_model("gcp_resnet18", num_classes=3).state_dict(),
     "lacks 100 of the 100 tensors of timm's resnet18 .* a gcp model's weights .* not as a backbone"),
    (lambda: {"module.features.0.weight": torch.zeros(64, 3, 7, 7),
              "module.representation.conv_dr_block.0.weight": torch.zeros(256, 2048, 1, 1)},
     "published iSQRT-COV / DifferentiableSVD checkpoint .* gcp.zoo.convert"),
    (lambda: timm.create_model("resnet34").state_dict(),
     "holds 80 tensors timm's resnet18 does not have .* another timm model"),
])
def test_a_file_that_is_not_the_backbones_is_a_typed_error(tmp_path, make, pattern):
    path = _save(make(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=pattern):
        gcp.zoo.create_model("gcp_resnet18", num_classes=3, backbone_pretrained=path)


def test_offline_the_hub_is_not_retried_for_a_minute(monkeypatch):
    import time

    from huggingface_hub import constants

    from gcp.zoo import _backbones

    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")  # nothing listens there
    assert not _backbones.hub_reachable(timeout=2)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="Hub cannot be reached .* backbone_pretrained=PATH"):
        gcp.zoo.create_model("gcp_resnet18", num_classes=3, backbone_pretrained=True)
    assert time.perf_counter() - start < 20
    assert constants.HF_HUB_OFFLINE is True  # restored as it was


def test_weights_of_another_head_load_with_a_warning_and_a_record(tmp_path):
    trained = gcp.zoo.create_model("gcp_resnet18", num_classes=3, method="svd", backward="pade")
    gcp.zoo.save_weights(trained, str(tmp_path / "w.safetensors"))
    with pytest.warns(gcp.zoo.HeadMismatchWarning, match="trained with the head .*'svd'.*'pade'.* head is .*'isqrt'"):
        model = gcp.zoo.create_model("gcp_resnet18", num_classes=3, method="isqrt", pretrained=True,
                                     pretrained_cfg_overlay=dict(file=str(tmp_path / "w.safetensors")))
    assert model.pretrained_cfg["weights_head"] == {"method": "svd", "backward": "pade"}
    assert torch.equal(model.head.fc.weight, trained.head.fc.weight)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", gcp.zoo.HeadMismatchWarning)  # the same head: no warning
        gcp.zoo.create_model("gcp_resnet18", num_classes=3, method="svd", backward="pade", pretrained=True,
                             pretrained_cfg_overlay=dict(file=str(tmp_path / "w.safetensors")))


def test_an_unconverted_published_checkpoint_as_gcp_weights_names_the_converter(tmp_path):
    # fast-MPN-COV's DataParallel training layout: module.features.*, module.representation.*, module.fc.*
    state = {"module.features.0.weight": torch.zeros(64, 3, 7, 7),
             "module.representation.conv_dr_block.0.weight": torch.zeros(256, 512, 1, 1),
             "module.fc.weight": torch.zeros(3, 32896), "module.fc.bias": torch.zeros(3)}
    path = _save(state, tmp_path / "mpncov.safetensors")
    with pytest.raises(CheckpointError, match=r"is a published iSQRT-COV .* gcp\.zoo\.convert") as err:
        gcp.zoo.create_model("gcp_resnet18", num_classes=3, pretrained=True, pretrained_cfg_overlay=dict(file=path))
    assert len(str(err.value)) < 400  # one line, not the hundreds of missing and unexpected keys
