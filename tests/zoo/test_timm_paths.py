"""What timm's train.py and validate.py call, through timm's public API: save_for_hf, local-dir:,
create_model(pretrained_cfg_overlay=...) with train.py's own checkpoint format."""

import argparse
import json

import pytest
import timm
import torch

import gcp
import gcp.zoo

OPTS = dict(num_classes=5, reduced_dim=8, method="svd", backward="taylor", degree=9)


def _model():
    torch.manual_seed(0)
    return timm.create_model("gcp_resnet18", **OPTS).eval()


def _same(a, b):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(x), b.eval()(x))


def test_save_for_hf_then_local_dir_rebuilds_the_same_model(tmp_path):
    model = _model()
    timm.models.save_for_hf(model, str(tmp_path / "hf"), safe_serialization=True)
    again = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True)
    assert (again.head.method, again.head.backward, again.head.opts) == ("svd", "taylor", {"degree": 9})
    assert _same(model, again)


def test_a_zoo_folder_is_in_timms_layout(tmp_path):
    model = _model()
    folder = gcp.zoo.save_pretrained(model, str(tmp_path / "zoo"))
    config = json.load(open(tmp_path / "zoo" / "config.json"))
    assert config["architecture"] == "gcp_resnet18" and config["model_args"]["backward"] == "taylor"
    assert _same(model, timm.create_model(f"local-dir:{folder}", pretrained=True))
    assert _same(model, gcp.zoo.load_pretrained(folder))


def test_fine_tuning_from_a_timm_train_py_checkpoint(tmp_path):
    """train.py saves {'state_dict', 'args': argparse.Namespace, ...}; timm reads it with
    weights_only=True, and so does the zoo (the Namespace allowed, nothing else unpickled)."""
    model = _model()
    path = tmp_path / "last.pth.tar"
    torch.save({"epoch": 3, "arch": "gcp_resnet18", "state_dict": model.state_dict(),
                "args": argparse.Namespace(lr=0.1, model="gcp_resnet18"), "version": 2}, path)
    loaded = timm.create_model("gcp_resnet18", **OPTS, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert _same(model, loaded)
    fresh_head = timm.create_model("gcp_resnet18", **dict(OPTS, num_classes=3), pretrained=True,
                                   pretrained_cfg_overlay=dict(file=str(path)))
    assert fresh_head.num_classes == 3  # another class count: a fresh classifier, as timm does
    timm.models.load_checkpoint(loaded, str(path))  # validate.py's --checkpoint path


def test_a_model_built_by_hand_is_refused_by_save_pretrained(tmp_path):
    backbone = timm.create_model("resnet18", num_classes=0, global_pool="")
    model = gcp.zoo.GCPNet(backbone, gcp.GCPHead(512, 3, reduced_dim=8))
    with pytest.raises(gcp.zoo.CheckpointError, match="built by hand .*save_weights"):
        gcp.zoo.save_pretrained(model, str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()
