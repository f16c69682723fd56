"""The NeurIPS'19 experiment as commands: CIFAR in its native pickles, resnet18_cifar, a ZCA/PCA
layer by flag, the sweep over d and backward modes with failed runs recorded, and resume."""

from __future__ import annotations

import csv
import json
import os
import pickle

import pytest
import timm
import torch

import gcp
import gcp.train as gcptrain
import gcp.train.imagenet as train_imagenet
import gcp.zoo
from gcp.train.cifar import cifar_split
from gcp.train.model import create_run_model
from gcp.train.record import resolve
from tests import _fixtures

TINY = ["--workers", "0", "--device", "cpu", "--batch-size", "8", "--epochs", "1"]


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    return _fixtures.cifar(str(tmp_path_factory.mktemp("cifar")), "cifar10")


def _train(data, out, *extra):
    return train_imagenet.main(["--dataset", "cifar10", "--data-dir", data, "--output", str(out), *TINY, *extra])


# ----------------------------------------------------------------------------- CIFAR in its own format
@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_both_cifars_load_from_their_native_pickles(tmp_path, name, classes):
    root = _fixtures.cifar(str(tmp_path), name, per_batch=4, test=6)
    train, test = cifar_split(name, root, "train"), cifar_split(name, root, "test")
    assert (len(train), len(test), len(train.classes)) == (20, 6, classes)
    image, label = train[0]
    assert image.size == (32, 32) and 0 <= label < classes


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_a_broken_cifar_folder_names_the_file(cifar10, tmp_path):
    with pytest.raises(gcptrain.DatasetError, match="no cifar-10-batches-py/ folder"):
        cifar_split("cifar10", str(tmp_path), "train")
    root = _copy(cifar10, tmp_path / "a")
    os.remove(os.path.join(root, "cifar-10-batches-py", "data_batch_3"))
    with pytest.raises(gcptrain.DatasetError, match="data_batch_3: missing"):
        cifar_split("cifar10", root, "train")
    root = _copy(cifar10, tmp_path / "b")
    with open(os.path.join(root, "cifar-10-batches-py", "data_batch_2"), "wb") as fh:
        fh.write(b"\x80\x02}q\x00(X\x04")  # a torn pickle
    with pytest.raises(gcptrain.DatasetError, match="data_batch_2: not a CIFAR pickle"):
        cifar_split("cifar10", root, "train")
    root = _copy(cifar10, tmp_path / "c")
    with open(os.path.join(root, "cifar-10-batches-py", "test_batch"), "wb") as fh:
        pickle.dump({"data": [[1, 2, 3]], "labels": [0]}, fh, protocol=2)
    with pytest.raises(gcptrain.DatasetError, match="test_batch: not a CIFAR batch"):
        cifar_split("cifar10", root, "test")


def test_cifar_labels_out_of_range_are_refused(tmp_path):
    root = _fixtures.cifar(str(tmp_path), "cifar10", per_batch=2, test=2)
    path = os.path.join(root, "cifar-10-batches-py", "test_batch")
    with open(path, "rb") as fh:
        entry = pickle.load(fh)
    entry["labels"] = [3, 12]
    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)
    with pytest.raises(gcptrain.DatasetError, match="labels 3..12 .* cifar10 has 10 classes"):
        cifar_split("cifar10", root, "test")


# ----------------------------------------------------------------------------- the paper's network
def test_resnet18_cifar_is_a_timm_model_with_the_cifar_stem():
    model = timm.create_model("resnet18_cifar")
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10) and model.forward_features(x).shape == (2, 512, 4, 4)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    feats = timm.create_model("resnet18_cifar", features_only=True)
    assert [f.shape[-1] for f in feats(x)] == [32, 32, 16, 8, 4]
    assert feats.feature_info.reduction() == [1, 1, 2, 4, 8]
    assert gcp.zoo.create_model("gcp_resnet18_cifar", num_classes=10)(x).shape == (2, 10)
    with pytest.raises(gcp.zoo.CheckpointError, match="no published weights"):
        timm.create_model("resnet18_cifar", pretrained=True)


def _record(**given):
    return resolve({"dataset": "cifar10", "data_dir": "/d", "model": "resnet18_cifar", "img_size": 32,
                    "train_split": "train", "eval_split": "test", "num_classes": 10, **given})


def test_the_plain_model_trains_as_itself_and_refuses_a_gcp_head():
    model = create_run_model(_record())
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in timm.create_model("resnet18_cifar").parameters())
    with pytest.raises(gcptrain.ConfigError, match="use --model gcp_resnet18_cifar"):
        _record(method="svd")


# ----------------------------------------------------------------------------- the layer by flag
def test_zca_and_pca_replace_the_stem_batchnorm():
    zca = create_run_model(_record(norm_layer="zca", norm_dim=8, norm_backward="pi"))
    layer = zca.backbone.bn1
    assert isinstance(layer, gcp.ZCAWhitening) and layer.groups == 8 and layer.backward == "pi"
    pca = create_run_model(_record(norm_layer="pca", norm_components=12, norm_at="backbone.layer1.0.bn1"))
    assert isinstance(pca.backbone.layer1[0].bn1, gcp.PCADenoising) and pca.backbone.layer1[0].bn1.k == 12


@pytest.mark.parametrize("given, pattern", [
    (dict(norm_layer="zca", norm_dim=5), "--norm-dim 5: backbone.bn1 has 64 channels"),
    (dict(norm_layer="zca", norm_backward="nope"), "--norm-backward"),
    (dict(norm_layer="zca", norm_at="backbone.layer1.0.conv1"), "--norm-at backbone.layer1.0.conv1: a Conv2d"),
    (dict(norm_layer="zca", norm_at="backbone.nope"), "--norm-at backbone.nope: no such module"),
    (dict(norm_layer="pca", norm_components=100), "--norm-components 100: backbone.bn1 has only 64 channels"),
])
def test_a_layer_the_model_cannot_take_is_refused_before_the_run_folder_exists(cifar10, tmp_path, given, pattern):
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        create_run_model(_record(**given))
    flags = [t for k, v in given.items() for t in (f"--{k.replace('_', '-')}", str(v))]
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        _train(cifar10, tmp_path / "o", "--model", "resnet18_cifar", *flags)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("given, pattern", [
    (dict(norm_dim=4), "--norm-dim applies with --norm-layer zca only"),
    (dict(norm_layer="pca", norm_dim=4), "--norm-dim applies with --norm-layer zca only"),
    (dict(norm_layer="zca", norm_components=4), "--norm-components applies with --norm-layer pca only"),
    (dict(img_size=64), "--img-size 64: cifar10's images are 32×32"),
])
def test_settings_that_mean_nothing_here_are_refused(given, pattern):
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        _record(**given)


# ----------------------------------------------------------------------------- the experiment's sweep
def _inject_ed_divergence(monkeypatch):
    """Stands in for the divergence the paper reports for the ED gradient (over hundreds of epochs
    on real CIFAR): a ZCA layer with backward 'ed' returns a non-finite output."""
    real = gcp.ZCAWhitening.forward

    def forward(self, x):
        y = real(self, x)
        return y * float("nan") if self.backward == "ed" and self.training else y

    monkeypatch.setattr(gcp.ZCAWhitening, "forward", forward)


def test_the_sweep_writes_its_table_and_records_failed_runs(cifar10, tmp_path, monkeypatch):
    _inject_ed_divergence(monkeypatch)
    out = tmp_path / "sweep"
    # the paper's recipe on timm's tiny test_resnet (its stem's BN has 16 channels): seconds, not minutes
    args = ["--recipe", "zca-cifar10-r18", "--model", "test_resnet", "--norm-dim", "4,8", "--norm-backward", "pi,ed",
            "--seeds", "0", "1", "--max-steps-per-epoch", "1", "--resume", "auto"]
    assert _train(cifar10, out, *args) == 0
    with open(out / "comparison.csv") as fh:
        rows = {r["arm"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"d=4 pi", "d=4 ed", "d=8 pi", "d=8 ed"}
    for d in (4, 8):
        assert (rows[f"d={d} pi"]["finished"], rows[f"d={d} pi"]["first_failure"]) == ("2", "")
        assert (rows[f"d={d} ed"]["finished"], rows[f"d={d} ed"]["first_failure"]) == ("0", "epoch 1, step 1")
    failure = json.loads((out / "d8-ed" / "seed1" / "failure.json").read_text())
    assert (failure["epoch"], failure["step"]) == (1, 1)
    assert "| d=8 ed | 0 / 2 |" in (out / "comparison.md").read_text()
    # --resume auto again: every run is finished (the failed ones too), nothing is trained again
    before = {p: os.path.getmtime(p) for p in out.glob("*/seed*/last.pth")}
    assert _train(cifar10, out, *args) == 0
    assert {p: os.path.getmtime(p) for p in out.glob("*/seed*/last.pth")} == before
    # a new run into a failed run's folder is refused
    with pytest.raises(gcptrain.RunFolderError, match="stopped at a non-finite step"):
        _train(cifar10, out / "d8-ed" / "seed1", "--recipe", "zca-cifar10-r18", "--model", "test_resnet",
               "--norm-backward", "ed")


@pytest.mark.slow
def test_a_zca_run_resumes_bit_identically(cifar10, tmp_path):
    args = ["--recipe", "zca-cifar10-r18", "--norm-dim", "8", "--max-steps-per-epoch", "2",
            "--decay-milestones", "2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(cifar10, straight, *args, "--epochs", "2") == 0
    assert _train(cifar10, split, *args) == 0
    assert _train(cifar10, split, *args, "--epochs", "2", "--resume", str(split / "last.pth")) == 0
    a = torch.load(straight / "last.pth", weights_only=True)
    b = torch.load(split / "last.pth", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["record"]["norm_layer"] == "zca" and a["record"]["norm_dim"] == 8
    # an evaluation rebuilds the layer from the checkpoint's record (its weights load strictly)
    assert train_imagenet.main(["--dataset", "cifar10", "--data-dir", cifar10, "--workers", "0", "--device", "cpu",
                                "--evaluate-only", "--resume", str(split / "last.pth")]) == 0
