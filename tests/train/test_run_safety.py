"""Nothing silently wrong, nothing lost, clear errors: the cases a careless or hostile user met,
each asserted end to end through the commands (tiny data, one or two epochs)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import gcp.train as gcptrain
import gcp.train.imagenet as train_imagenet
import gcp.zoo
from gcp.finegrained.finetune import main as finetune
from gcp.train import cli
from gcp.train.data import check_samples, image_folder, load_image, to_rgb
from tests import _fixtures
from tests.train._runs import BASE, FT
from tests.train._runs import summary as _summary
from tests.train._runs import train as _train


def _ckpt(path):
    return torch.load(path, weights_only=True)


def _error_line(err: str) -> str:
    """The one ``error:`` line a command prints (progress bars share stderr), and it is the last."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-3:]
    return errors[0]


# ----------------------------------------------------------------------------- silently wrong
def test_backward_without_method_svd_is_refused_before_any_work(imagenet, tmp_path):
    with pytest.raises(gcptrain.ConfigError, match=r"--backward pade \(with --method isqrt\): method 'isqrt' takes no backward mode"):
        _train(imagenet, tmp_path / "o", "--backward", "pade")
    assert not (tmp_path / "o").exists()


def test_finetune_backward_list_for_another_method_is_refused(tmp_path):
    cub = _fixtures.cub(str(tmp_path / "cub"))
    with pytest.raises(gcptrain.ConfigError, match=r"--backward exact \(with --method isqrt\): method 'isqrt' takes no backward mode"):
        finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(tmp_path / "o"), *FT,
                  "--method", "isqrt", "--backward", "exact,ed"])
    assert not (tmp_path / "o").exists()


def test_finetune_backward_listing_a_mode_twice_is_refused_before_the_first_run(tmp_path):
    cub = _fixtures.cub(str(tmp_path / "cub"))
    with pytest.raises(gcptrain.ConfigError, match="lists exact more than once"):
        finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(tmp_path / "o"), *FT,
                  "--method", "svd", "--backward", "exact,pade,exact"])
    assert not (tmp_path / "o").exists()


def test_evaluate_only_uses_the_checkpoints_model_head_and_data(imagenet, tmp_path, capsys):
    out = tmp_path / "svd"
    with pytest.raises(gcptrain.ConfigError, match="--img-size 32: .* over 1 position"):  # stride 32 at 32 pixels
        _train(imagenet, out, "--epochs", "1", "--method", "svd", "--backward", "pade", "--last-stride", "2")
    assert not out.exists()
    assert _train(imagenet, out, "--epochs", "1", "--method", "svd", "--backward", "pade", "--last-stride", "2",
                  "--img-size", "64") == 0
    ckpt = _ckpt(out / "last.pth")
    capsys.readouterr()
    # no head or size flag repeated: the checkpoint's svd / stride-2 / 32-pixel model is evaluated
    assert train_imagenet.main(["--data-dir", imagenet, "--evaluate-only", "--resume", str(out / "last.pth"),
                                "--device", "cpu", "--workers", "0"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["evaluate"]
    assert metrics["top1"] == pytest.approx(ckpt["metrics"]["top1"]) and metrics["loss"] == pytest.approx(
        ckpt["metrics"]["loss"], rel=1e-5)
    with pytest.raises(gcptrain.ConfigError, match="--method: 'svd' in the checkpoint, 'isqrt' now"):
        train_imagenet.main(["--data-dir", imagenet, "--evaluate-only", "--resume", str(out / "last.pth"),
                             "--method", "isqrt", "--device", "cpu"])


@pytest.mark.slow
def test_evaluate_or_resume_on_other_classes_is_refused(imagenet, tmp_path):
    out = tmp_path / "run"
    assert _train(imagenet, out, "--epochs", "1") == 0
    other = shutil.copytree(imagenet, tmp_path / "data")
    for split in ("train", "val"):
        shutil.copytree(os.path.join(other, split, "class_0"), os.path.join(other, split, "class_9"))
    for extra in (["--evaluate-only"], ["--epochs", "2"]):
        with pytest.raises(gcptrain.ConfigError, match="--data-dir"):  # another folder is another dataset
            train_imagenet.main(["--data-dir", str(other), "--resume", str(out / "last.pth"), *extra])
    shutil.copytree(os.path.join(imagenet, "train", "class_0"), os.path.join(imagenet, "train", "class_9"))
    shutil.copytree(os.path.join(imagenet, "val", "class_0"), os.path.join(imagenet, "val", "class_9"))
    try:  # the same folder, now with another class: labels would mean other classes
        with pytest.raises(gcptrain.ConfigError, match="trained on other classes.*3 classes in the checkpoint, 4"):
            train_imagenet.main(["--data-dir", imagenet, "--resume", str(out / "last.pth"), "--epochs", "2",
                                 "--workers", "0", "--device", "cpu"])
    finally:
        shutil.rmtree(os.path.join(imagenet, "train", "class_9"))
        shutil.rmtree(os.path.join(imagenet, "val", "class_9"))


@pytest.mark.slow
def test_finegrained_resume_keeps_model_and_size_and_a_constant_lr(tmp_path):
    cub = _fixtures.cub(str(tmp_path / "cub"))
    out = tmp_path / "ft"
    assert finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(out), *FT, "--epochs", "1"]) == 0
    # resume without --model and --img-size: the run's own (before: gcp_resnet50 at 448)
    assert finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(out), "--resume", "auto",
                     "--epochs", "2", "--workers", "0", "--device", "cpu"]) == 0
    record = _ckpt(out / "last.pth")["record"]
    assert (record["model"], record["img_size"], record["resize"]) == ("gcp_resnet18", 32, [32])
    rows = _summary(out)
    assert [r["lr"] for r in rows] == [rows[0]["lr"]] * 2  # the recipe's constant lr (before: ÷10 for epoch 2)
    with pytest.raises(gcptrain.ConfigError, match="--img-size: 32 in the checkpoint, 48 now"):
        finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(out), "--resume", "auto",
                  "--epochs", "3", "--img-size", "48", "--device", "cpu"])


def test_load_pretrained_refuses_a_config_that_disagrees_with_the_weights(tmp_path):
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=5, reduced_dim=8, method="svd", backward="pade")
    folder = gcp.zoo.save_pretrained(model, str(tmp_path / "m"))
    cfg_path = os.path.join(folder, "config.json")
    config = json.load(open(cfg_path))
    json.dump(dict(config, num_classes=7), open(cfg_path, "w"))
    with pytest.raises(gcptrain.CheckpointError, match="num_classes=7 but the classifier .* has 5 classes"):
        gcp.zoo.load_pretrained(folder)
    # a count the folder does not claim is asked for: a fresh classifier; the count it claims wrongly is refused
    assert gcp.zoo.load_pretrained(folder, num_classes=9).num_classes == 9
    with pytest.raises(gcptrain.CheckpointError, match="num_classes=7 but the classifier"):
        gcp.zoo.load_pretrained(folder, num_classes=7)
    json.dump(dict(config, model_args=dict(config["model_args"], method="isqrt")), open(cfg_path, "w"))
    with pytest.raises(gcptrain.CheckpointError, match="method='isqrt' but .* was saved with method='svd'"):
        gcp.zoo.load_pretrained(folder)
    assert gcp.zoo.load_pretrained(folder, method="isqrt").head.method == "isqrt"


# ----------------------------------------------------------------------------- nothing lost
def test_a_folder_in_use_is_refused_and_its_files_are_not_touched(imagenet, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{holder.pid}\n")
        (out / ".tmp-inflight-last.pth").write_bytes(b"the running run's epoch")
        with pytest.raises(gcptrain.RunFolderError, match=f"in use by another run \\(process {holder.pid}\\)"):
            _train(imagenet, out, "--epochs", "1")
        assert (out / ".tmp-inflight-last.pth").read_bytes() == b"the running run's epoch"
    finally:
        holder.kill()
        holder.wait()
    assert _train(imagenet, out, "--epochs", "1") == 0  # the holder is gone: its lock is taken over
    assert not (out / ".lock").exists() and not list(out.glob(".tmp-*"))


@pytest.mark.slow
def test_resuming_an_older_checkpoint_into_its_own_folder_is_refused(imagenet, tmp_path):
    out = tmp_path / "run"
    assert _train(imagenet, out, "--epochs", "1") == 0
    old = tmp_path / "epoch1.pth"
    shutil.copy(out / "last.pth", old)
    assert _train(imagenet, out, "--epochs", "2", "--resume", str(out / "last.pth")) == 0
    summary = (out / "summary.csv").read_text()
    with pytest.raises(gcptrain.RunFolderError, match="epoch 1 of this run.*already holds epoch 2"):
        _train(imagenet, out, "--epochs", "2", "--resume", str(old))
    assert (out / "summary.csv").read_text() == summary and _ckpt(out / "last.pth")["epoch"] == 1
    assert _train(imagenet, tmp_path / "fork", "--epochs", "2", "--resume", str(old)) == 0  # an explicit fork


@pytest.mark.slow
def test_a_run_killed_in_its_first_epoch_can_be_started_again(imagenet, tmp_path, monkeypatch):
    import gcp.train.engine as engine

    out = tmp_path / "k"
    real = engine.train_one_epoch

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "train_one_epoch", killed)
    with pytest.raises(gcptrain.TrainingError, match="no epoch was saved; rerun the same command"):
        _train(imagenet, out, "--epochs", "1")
    assert (out / "run.json").exists() and not (out / "last.pth").exists()
    monkeypatch.setattr(engine, "train_one_epoch", real)
    assert _train(imagenet, out, "--epochs", "1") == 0
    cub = _fixtures.cub(str(tmp_path / "cub"))
    ft = tmp_path / "ft"
    monkeypatch.setattr(engine, "train_one_epoch", killed)
    with pytest.raises(gcptrain.TrainingError):
        finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(ft), *FT, "--epochs", "1"])
    monkeypatch.setattr(engine, "train_one_epoch", real)
    assert finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(ft), *FT, "--epochs", "1",
                     "--resume", "auto"]) == 0


def test_output_inside_the_dataset_is_refused(imagenet, tmp_path):
    with pytest.raises(gcptrain.RunFolderError, match="inside --data-dir"):
        _train(imagenet, os.path.join(imagenet, "runs", "x"), "--epochs", "1")
    assert not os.path.exists(os.path.join(imagenet, "runs"))


# ----------------------------------------------------------------------------- clear errors
def test_a_full_disk_ends_with_one_line_and_a_resumable_folder(imagenet, tmp_path, monkeypatch, capsys):
    import gcp.train.engine as engine

    out = tmp_path / "full"
    assert _train(imagenet, out, "--epochs", "1") == 0

    def full(path, state):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(engine, "save_checkpoint", full)
    status = cli.exit_on_error(train_imagenet.main, ["--data-dir", imagenet, "--output", str(out), *BASE,
                                                     "--epochs", "2", "--resume", str(out / "last.pth")])
    err = _error_line(capsys.readouterr().err)
    assert status == 2
    assert "No space left on device" in err and "holds 1 completed epoch" in err
    assert _ckpt(out / "last.pth")["epoch"] == 0


def test_an_output_that_cannot_be_created_is_one_line(imagenet, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    status = cli.exit_on_error(train_imagenet.main, ["--data-dir", imagenet, "--output", str(tmp_path / "file" / "o"),
                                                     *BASE, "--epochs", "1"])
    err = _error_line(capsys.readouterr().err)
    assert status == 2 and "cannot create the run folder" in err


def test_a_bad_image_found_by_a_dataloader_worker_is_one_line(tmp_path, capsys):
    data = _fixtures.image_folder(str(tmp_path / "d"))
    with open(os.path.join(data, "train", "class_1", "2.jpg"), "wb") as fh:
        fh.write(b"\xff\xd8 not a jpeg")
    status = cli.exit_on_error(train_imagenet.main, ["--data-dir", data, "--output", str(tmp_path / "o"), *BASE,
                                                     "--epochs", "1", "--workers", "1", "--no-image-check"])
    err = _error_line(capsys.readouterr().err)
    assert status == 2
    assert "cannot decode image" in err and "2.jpg" in err and "DataLoader worker" in err


def test_a_decompression_bomb_is_named(tmp_path, monkeypatch):
    data = _fixtures.image_folder(str(tmp_path / "d"), size=40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 40×40 is then more than twice the limit
    ds = image_folder(data, "train")
    with pytest.raises(gcptrain.DatasetError, match="decompression bomb"):
        check_samples(ds.samples, len(ds.classes), "train")
    with pytest.raises(gcptrain.DatasetError, match="decompression bomb"):
        load_image(ds.samples[0][0])


def test_dist_timeout_is_a_flag_and_is_validated():
    args = train_imagenet.build_parser().parse_args(["--data-dir", "d", "--dist-timeout", "60"])
    assert args.dist_timeout == 60.0
    with pytest.raises(gcptrain.ConfigError, match="--dist-timeout"):
        gcptrain.init_distributed("cpu", timeout=0)
    from gcp.train.distributed import is_timeout

    assert is_timeout(RuntimeError("[gloo] Timed out waiting 60000ms for recv operation to complete"))
    assert not is_timeout(RuntimeError("shape mismatch"))


# ----------------------------------------------------------------------------- datasets as they are
def test_image_modes_are_converted_without_clipping():
    grey16 = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert np.asarray(to_rgb(grey16))[0, :, 0].tolist() == [0, 128, 255]  # PIL's convert would give 255s
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 0, 0], [0, 0, 255]]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[255, 0, 0]]]
    la = Image.new("LA", (1, 1), (100, 7))
    assert np.asarray(to_rgb(la)).tolist() == [[[100, 100, 100]]]
    floats = Image.fromarray(np.array([[0.0, 0.5, 2.0]], dtype=np.float32), mode="F")
    assert np.asarray(to_rgb(floats))[0, :, 0].tolist() == [0, 64, 255]


def test_os_litter_and_links_are_read_as_a_person_sees_the_folder(tmp_path):
    data = _fixtures.image_folder(str(tmp_path / "d"))
    for split in ("train", "val"):
        (tmp_path / "d" / split / ".ipynb_checkpoints").mkdir()
        (tmp_path / "d" / split / "__MACOSX").mkdir()
        (tmp_path / "d" / split / ".DS_Store").write_bytes(b"\x00\x01")
        (tmp_path / "d" / split / "class_0" / "._0.jpg").write_bytes(b"AppleDouble")
        (tmp_path / "d" / split / "class_0" / "Thumbs.db").write_bytes(b"x")
    linked = tmp_path / "elsewhere"
    shutil.move(str(tmp_path / "d" / "train" / "class_2"), linked)
    os.symlink(linked, tmp_path / "d" / "train" / "class_2")
    ds = image_folder(data, "train")
    assert ds.classes == ["class_0", "class_1", "class_2"] and len(ds.samples) == 12
    check_samples(ds.samples, 3, "train")


def _cub(tmp_path):
    root = _fixtures.cub(str(tmp_path / "cub"))
    return root, os.path.join(root, "CUB_200_2011")


@pytest.mark.parametrize("edit, pattern", [
    (("images.txt", lambda t: t + "3 001.Class_0/img_0.jpg\n"), "images.txt:16: id 3 repeats line 3"),
    (("image_class_labels.txt", lambda t: t.replace("1 1\n", "1 x\n", 1)), "'x' is not an integer"),
    (("image_class_labels.txt", lambda t: t.replace("1 1\n", "1 2\n", 1)), "label 2 .* lies in the folder of class"),
    (("classes.txt", lambda t: t.replace("002.Class_1", "001.Class_0")), "listed twice"),
    (("bounding_boxes.txt", lambda t: t.replace("1 4.0 6.0 20.0 16.0", "1 4.0 6.0 0.0 16.0")), "empty or negative box"),
    (("bounding_boxes.txt", lambda t: t.replace("1 4.0 6.0 20.0 16.0", "1 4.0 6.0 20.0 nan")), "not a number"),
])
def test_cub_annotation_defects_are_named(tmp_path, edit, pattern):
    from gcp.finegrained.datasets import cub200

    root, base = _cub(tmp_path)
    name, change = edit
    path = os.path.join(base, name)
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(change(text))
    with pytest.raises(gcptrain.DatasetError, match=pattern):
        cub200(root, "train", bbox_crop=True)


def test_foreign_encodings_and_boxes_outside_the_image_are_named(tmp_path):
    from gcp.finegrained.datasets import cub200

    root, base = _cub(tmp_path)
    with open(os.path.join(base, "classes.txt"), "ab") as fh:
        fh.write("4 004.Möwe\n".encode("latin-1"))
    with pytest.raises(gcptrain.DatasetError, match="classes.txt:4: not UTF-8 text"):
        cub200(root, "train")
    root, base = _cub(tmp_path / "b")
    path = os.path.join(base, "bounding_boxes.txt")
    text = open(path).read().replace("1 4.0 6.0 20.0 16.0", "1 30.0 6.0 20.0 16.0")
    open(path, "w").write(text)
    ds = cub200(root, "train", bbox_crop=True)
    with pytest.raises(gcptrain.DatasetError, match="reaches outside the 40×40 image"):
        ds[0]


# ----------------------------------------------------------------------------- data by content
def test_a_resume_identifies_the_data_by_its_files_not_by_how_the_folder_is_spelt(imagenet, tmp_path, monkeypatch):
    run = ["--output", str(tmp_path / "run"), *BASE]
    assert train_imagenet.main(["--data-dir", imagenet, *run, "--epochs", "1"]) == 0
    resume = ["--resume", str(tmp_path / "run" / "last.pth")]
    # the same folder by a relative path from another working directory: the same images
    monkeypatch.chdir(os.path.dirname(imagenet))
    assert train_imagenet.main(["--data-dir", os.path.basename(imagenet), *run, "--epochs", "2", *resume]) == 0
    # a copy with one image removed is other data, whatever its name
    other = tmp_path / "copy"
    shutil.copytree(imagenet, other)
    victim = sorted((other / "train").rglob("*.*"))[0]
    victim.unlink()
    with pytest.raises(gcptrain.ConfigError, match=r"its train split is not the data the checkpoint was trained on "
                                                   r"\(\d+ files, \d+ classes, sha256 [0-9a-f]{16} in the checkpoint; "
                                                   r"\d+ files, \d+ classes, sha256 [0-9a-f]{16} here\)"):
        train_imagenet.main(["--data-dir", str(other), *run, "--epochs", "3", "--resume",
                             str(tmp_path / "run" / "last.pth")])


@pytest.mark.slow
def test_a_moved_copy_of_the_same_data_resumes(imagenet, tmp_path):
    run = ["--output", str(tmp_path / "run"), *BASE]
    assert train_imagenet.main(["--data-dir", imagenet, *run, "--epochs", "1"]) == 0
    moved = tmp_path / "moved"
    shutil.copytree(imagenet, moved)
    assert train_imagenet.main(["--data-dir", str(moved), *run, "--epochs", "2", "--resume",
                                str(tmp_path / "run" / "last.pth")]) == 0


def test_a_symbolic_link_back_to_its_class_folder_lists_each_image_once(tmp_path):
    root = _fixtures.image_folder(str(tmp_path / "data"))
    first = sorted(d for d in (tmp_path / "data" / "train").iterdir())[0]
    before = len(image_folder(root, "train").samples)
    os.symlink(first, first / "again")
    assert len(image_folder(root, "train").samples) == before
