"""The training layer's rules: nothing silently wrong, nothing lost, clear errors.

Each test is a case a careless or hostile user met; most fail before any training starts (and
check that nothing was written), the others run one or two tiny epochs.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat

import pytest
import torch

import gcp
import gcp.train as gcptrain
import gcp.train.imagenet as train_imagenet
from gcp.finegrained.finetune import build_parser as finetune_parser
from gcp.finegrained.finetune import main as finetune
from tests import _fixtures
from tests.train._runs import BASE, FT
from tests.train._runs import summary as _summary
from tests.train._runs import train as _train


# ----------------------------------------------------------------------------- flags mean what they say
@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "0"), ("--lr", "0"),
                                        ("--lr", "-0.1"), ("--workers", "-1"), ("--momentum", "1.5")])
def test_zero_or_negative_flags_are_refused_not_replaced(cub, tmp_path, flag, value):
    out = tmp_path / "o"
    with pytest.raises(gcptrain.ConfigError, match=flag):
        finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(out), *FT, flag, value])
    assert not out.exists()


def test_epochs_zero_in_train_imagenet(imagenet, tmp_path):
    with pytest.raises(gcptrain.ConfigError, match="--epochs"):
        _train(imagenet, tmp_path / "o", "--epochs", "0")
    assert not (tmp_path / "o").exists()


def test_help_lists_modes_recipes_and_layouts(capsys):
    for parser in (train_imagenet.build_parser(), finetune_parser()):
        text = parser.format_help()
        assert "pade" in text and "taylor" in text and "isqrt" in text  # --backward / --method values
        assert "isqrt-cov-r50" in text and "lr=0.1" in text  # recipes with their settings
    assert "CUB_200_2011" in finetune_parser().format_help()


# ----------------------------------------------------------------------------- class indices, empty work
def test_class_missing_from_one_split_is_named(tmp_path):
    data = _fixtures.image_folder(str(tmp_path / "d"), classes=3)
    shutil.rmtree(os.path.join(data, "val", "class_1"))
    with pytest.raises(gcptrain.DatasetError, match="only in .*train: class_1"):
        _train(data, tmp_path / "o", "--epochs", "1")
    assert not (tmp_path / "o").exists()


def test_num_classes_below_the_dataset_is_refused(imagenet, tmp_path):
    with pytest.raises(gcptrain.ConfigError, match="--num-classes 2 is smaller than the 3 classes"):
        _train(imagenet, tmp_path / "o", "--epochs", "1", "--num-classes", "2")


def test_batch_larger_than_the_training_set_is_refused_up_front(imagenet, tmp_path):
    with pytest.raises(gcptrain.ConfigError, match="--batch-size 64 is larger than the 12 training images"):
        _train(imagenet, tmp_path / "o", "--epochs", "1", "--batch-size", "64")
    assert not (tmp_path / "o").exists()


def test_empty_evaluation_split_is_an_error(tmp_path):
    data = _fixtures.cub(str(tmp_path / "c"))
    split = os.path.join(data, "CUB_200_2011", "train_test_split.txt")
    with open(split) as fh:
        rows = [line.split() for line in fh if line.strip()]
    with open(split, "w") as fh:
        fh.write("\n".join(f"{i} 1" for i, _ in rows) + "\n")
    with pytest.raises(gcptrain.DatasetError, match="test split lists no images"):
        finetune(["--dataset", "cub", "--data-dir", data, "--output", str(tmp_path / "o"), *FT])


def test_an_epoch_without_steps_never_reports_nan():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(gcptrain.TrainingError, match="no step"):
        gcp.train.train_one_epoch(model, [], opt, gcptrain.DistInfo(), progress=False)
    with pytest.raises(gcptrain.TrainingError, match="evaluation split is empty"):
        gcp.train.evaluate(model, [], gcptrain.DistInfo(), progress=False)


# ----------------------------------------------------------------------------- datasets checked first
def _cub_copy(cub, tmp_path):
    return shutil.copytree(cub, tmp_path / "cub")


def test_cub_listed_file_missing_label_out_of_range_bad_split(cub, tmp_path):
    root = _cub_copy(cub, tmp_path)
    base = root / "CUB_200_2011"
    images = (base / "images.txt").read_text().splitlines()
    first = images[0].split()[1]
    os.remove(base / "images" / first)
    with pytest.raises(gcptrain.DatasetError, match=f"do not exist .*e.g. .*{os.path.basename(first)}"):
        finetune(["--dataset", "cub", "--data-dir", str(root), "--output", str(tmp_path / "o"), *FT])
    shutil.rmtree(root)
    root = _cub_copy(cub, tmp_path)
    base = root / "CUB_200_2011"
    (base / "train_test_split.txt").write_text((base / "train_test_split.txt").read_text().replace(" 0\n", " 2\n", 1))
    with pytest.raises(gcptrain.DatasetError, match="split value '2'"):
        finetune(["--dataset", "cub", "--data-dir", str(root), "--output", str(tmp_path / "o"), *FT])
    shutil.rmtree(root)
    root = _cub_copy(cub, tmp_path)
    labels = root / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("1 1\n", "1 9\n", 1))
    with pytest.raises(gcptrain.DatasetError, match="label 9 .* outside 1..3"):
        finetune(["--dataset", "cub", "--data-dir", str(root), "--output", str(tmp_path / "o"), *FT])
    assert not (tmp_path / "o").exists()


def test_aircraft_blank_line_class_and_malformed_line(tmp_path):
    root = _fixtures.fgvc_aircraft(str(tmp_path / "a"))
    data = os.path.join(root, "fgvc-aircraft-2013b", "data")
    with open(os.path.join(data, "variants.txt"), "a") as fh:
        fh.write("\nB777\n")
    with pytest.raises(gcptrain.DatasetError, match="variants.txt:4: blank line"):
        finetune(["--dataset", "aircraft", "--data-dir", root, "--output", str(tmp_path / "o"), *FT])
    with open(os.path.join(data, "variants.txt"), "w") as fh:
        fh.write("707-320\nA320\nA380\n")
    with open(os.path.join(data, "images_variant_test.txt"), "a") as fh:
        fh.write("1009999\n")
    with pytest.raises(gcptrain.DatasetError, match="images_variant_test.txt:7: expected"):
        finetune(["--dataset", "aircraft", "--data-dir", root, "--output", str(tmp_path / "o"), *FT])


def test_dogs_label_out_of_range(tmp_path):
    import numpy as np
    import scipy.io as sio

    root = _fixtures.stanford_dogs(str(tmp_path / "d"))
    mat = sio.loadmat(os.path.join(root, "test_list.mat"))
    mat["labels"][0, 0] = 7
    sio.savemat(os.path.join(root, "test_list.mat"), {"file_list": mat["file_list"], "labels": np.asarray(mat["labels"])})
    with pytest.raises(gcptrain.DatasetError, match="label 7 .* outside 1..3"):
        finetune(["--dataset", "dogs", "--data-dir", root, "--output", str(tmp_path / "o"), *FT])


def test_undecodable_image_is_named_before_training(tmp_path):
    data = _fixtures.image_folder(str(tmp_path / "d"))
    bad = os.path.join(data, "train", "class_2", "1.jpg")
    with open(bad, "wb") as fh:
        fh.write(b"not a jpeg at all")
    with pytest.raises(gcptrain.DatasetError, match=f"cannot decode image {bad}"):
        _train(data, tmp_path / "o", "--epochs", "1")
    assert not (tmp_path / "o").exists()
    # skipping the header check still names the file, now from the loader
    with pytest.raises(gcptrain.DatasetError, match="cannot decode image .*1.jpg"):
        _train(data, tmp_path / "o2", "--epochs", "1", "--no-image-check")


# ----------------------------------------------------------------------------- resume is honest
def test_resume_refuses_a_changed_schedule_and_extends_epochs_honestly(imagenet, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(imagenet, straight, "--epochs", "2") == 0
    assert _train(imagenet, split, "--epochs", "1") == 0
    last = str(split / "last.pth")
    with pytest.raises(gcptrain.ConfigError, match="lr: 0.01 in the checkpoint, 0.02 now"):
        _train(imagenet, split, "--epochs", "2", "--resume", last, "--lr", "0.02")
    with pytest.raises(gcptrain.ConfigError, match="--method: .isqrt. in the checkpoint, .svd. now"):
        _train(imagenet, split, "--epochs", "2", "--resume", last, "--method", "svd")
    # extending --epochs on the step schedule, giving no other flag: the run's own settings, the
    # same lr per epoch (milestone 1) and the same numbers as a straight 2-epoch run
    assert train_imagenet.main(["--data-dir", imagenet, "--output", str(split), "--resume", last,
                                "--epochs", "2", "--device", "cpu", "--workers", "0"]) == 0
    rows, ref = _summary(split), _summary(straight)
    assert [r["epoch"] for r in rows] == ["0", "1"] and [r["lr"] for r in rows] == ["0.01", "0.001"]
    assert [r["lr"] for r in rows] == [r["lr"] for r in ref]
    assert [r["top1"] for r in rows] == [r["top1"] for r in ref]


def test_cosine_epochs_cannot_change_on_resume(imagenet, tmp_path):
    out = tmp_path / "cos"
    base = [a for a in BASE if a not in ("--decay-milestones", "2")]  # milestones belong to the step schedule
    run = ["--data-dir", imagenet, "--output", str(out), *base, "--sched", "cosine"]
    assert train_imagenet.main([*run, "--epochs", "1"]) == 0
    with pytest.raises(gcptrain.ConfigError, match="cosine schedule spans all epochs"):
        train_imagenet.main([*run, "--epochs", "2", "--resume", str(out / "last.pth")])


@pytest.mark.slow
def test_resume_auto_continues_the_same_lr_as_a_straight_run(cub, tmp_path):
    args = ["--dataset", "cub", "--data-dir", cub, *FT, "--lr", "0.01", "--decay-milestones", "2"]
    assert finetune([*args, "--output", str(tmp_path / "s"), "--epochs", "2"]) == 0
    assert finetune([*args, "--output", str(tmp_path / "r"), "--epochs", "1"]) == 0
    assert finetune([*args, "--output", str(tmp_path / "r"), "--epochs", "2", "--resume", "auto"]) == 0
    straight, resumed = _summary(tmp_path / "s"), _summary(tmp_path / "r")
    assert [r["lr"] for r in resumed] == [r["lr"] for r in straight] == ["0.01", "0.001"]
    assert [r["top1"] for r in resumed] == [r["top1"] for r in straight]


# ----------------------------------------------------------------------------- nothing lost
@pytest.mark.slow
def test_a_folder_of_another_run_is_refused_on_resume(imagenet, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(imagenet, a, "--epochs", "1") == 0
    assert _train(imagenet, b, "--epochs", "1") == 0
    before = (b / "last.pth").read_bytes()
    with pytest.raises(gcptrain.RunFolderError, match="holds another run"):
        _train(imagenet, b, "--epochs", "2", "--resume", str(a / "last.pth"))
    assert (b / "last.pth").read_bytes() == before
    # into an empty folder: the same run continues there
    assert _train(imagenet, tmp_path / "c", "--epochs", "2", "--resume", str(a / "last.pth")) == 0
    assert [r["epoch"] for r in _summary(tmp_path / "c")] == ["0", "1"]


def test_kill_between_checkpoint_writes_then_resume(imagenet, tmp_path, monkeypatch):
    """Epoch 1 is the best (top-1 50, 70, 60). A first run is killed while writing its best.pth;
    the resumed run is killed between last.pth and summary.csv of epoch 2; the last resume
    finds nothing left to train. Each time the folder stays consistent: best.pth is the best
    epoch, summary.csv has every epoch once, no temporary file survives."""
    import gcp.train.engine as run_module

    out = tmp_path / "k"
    real_save, real_summary, real_eval = run_module.save_checkpoint, run_module.write_summary, run_module.evaluate

    def scripted_eval(*args, **kwargs):
        metrics = real_eval(*args, **kwargs)
        epoch = int(kwargs["desc"].split()[1].split("/")[0]) - 1
        return dict(metrics, top1=(50.0, 70.0, 60.0)[epoch])

    def dying_save(path, state):
        if os.path.basename(path) == "best.pth" and state["epoch"] == 1:
            (out / ".tmp-crash-best.pth").write_bytes(b"partial")  # a torn write, as a kill leaves it
            raise KeyboardInterrupt("killed while writing best.pth")
        return real_save(path, state)

    def dying_summary(path, rows):
        if len(rows) == 3:
            raise KeyboardInterrupt("killed before summary.csv")
        return real_summary(path, rows)

    args = ("--epochs", "3", "--decay-milestones", "5")
    monkeypatch.setattr(run_module, "evaluate", scripted_eval)
    import gcp.train.keep as keep_module

    monkeypatch.setattr(run_module, "save_checkpoint", dying_save)
    monkeypatch.setattr(keep_module, "save_checkpoint", dying_save)  # best.pth is written there
    with pytest.raises(gcptrain.TrainingError, match="interrupted; .*last.pth holds 1 completed epoch.*--resume"):
        _train(imagenet, out, *args)
    monkeypatch.setattr(run_module, "save_checkpoint", real_save)
    monkeypatch.setattr(keep_module, "save_checkpoint", real_save)
    monkeypatch.setattr(run_module, "write_summary", dying_summary)
    with pytest.raises(gcptrain.TrainingError, match="interrupted"):
        _train(imagenet, out, *args, "--resume", str(out / "last.pth"))
    assert len(_summary(out)) == 2 and torch.load(out / "last.pth", weights_only=True)["epoch"] == 2
    monkeypatch.setattr(run_module, "write_summary", real_summary)
    assert _train(imagenet, out, *args, "--resume", str(out / "last.pth")) == 0
    assert [(r["epoch"], float(r["top1"])) for r in _summary(out)] == [("0", 50.0), ("1", 70.0), ("2", 60.0)]
    assert torch.load(out / "best.pth", weights_only=True)["epoch"] == 1
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_written_files_have_normal_permissions(imagenet, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "p"
        assert _train(imagenet, out, "--epochs", "1") == 0
    finally:
        os.umask(old)
    for name in ("last.pth", "best.pth", "summary.csv", "run.json"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644, name


def test_compare_out_naming_a_file_fails_at_once(tmp_path):
    from gcp.compare import main as compare_main

    target = tmp_path / "report.txt"
    target.write_text("keep")
    with pytest.raises(SystemExit):
        compare_main(["--quick", "--sections", "speed", "--out", str(target)])
    assert target.read_text() == "keep"


@pytest.mark.parametrize("content", [b"\x00\x93random bytes\xff" * 10, b"just some text\n",
                                     pickle.dumps({"model": ValueError("a pickled object, not tensors")})])
def test_a_file_that_is_not_a_checkpoint_is_a_typed_error(tmp_path, content):
    path = tmp_path / "last.pth"
    path.write_bytes(content)
    with pytest.raises(gcptrain.CheckpointError, match=str(path)) as info:
        gcp.train.load_checkpoint(str(path))
    assert "weights_only=False" not in str(info.value) and "weights_only" not in str(info.value).replace(
        "weights_only=True", "")


# ----------------------------------------------------------------------------- clear errors
def test_cuda_without_cuda_is_a_one_line_error(imagenet, cub, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(gcptrain.ConfigError, match="no CUDA device") as a:
        train_imagenet.main(["--data-dir", imagenet, "--output", str(tmp_path / "o"), "--device", "cuda"])
    with pytest.raises(gcptrain.ConfigError, match="no CUDA device") as b:
        finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(tmp_path / "o"), "--device", "cuda"])
    assert "\n" not in str(a.value) and "\n" not in str(b.value)


def test_evaluate_only_without_weights_says_so(imagenet, tmp_path):
    with pytest.raises(gcptrain.ConfigError, match="--evaluate-only needs weights"):
        _train(imagenet, tmp_path / "o", "--evaluate-only")


def test_head_options_travel_through_the_hybrid_switch():
    import gcp.zoo
    from gcp.train.engine import HeadSchedule, _apply

    model = gcp.zoo.create_model("gcp_resnet18", num_classes=3, reduced_dim=8, method="svd", backward="taylor", degree=9)
    record = gcptrain.resolve(dict(dataset="imagefolder", data_dir="/d", model="gcp_resnet18", method="svd",
                                   backward="taylor", head_options=dict(degree=9), reduced_dim=8, epochs=4,
                                   hybrid_switch_epoch=2, hybrid_options=dict(degree=(6, 6))))
    schedule = HeadSchedule(record)
    _apply(model, schedule.at(1))
    assert (model.head.backward, model.head.config.backward_kwargs()) == ("taylor", {"degree": 9})
    _apply(model, schedule.at(2))  # the switch: the hybrid phase's own mode options
    assert (model.head.backward, model.head.config.backward_kwargs()) == ("pade", {"degree": (6, 6)})
    _apply(model, schedule.at(0))  # a resume before the switch: back to the first phase, options included
    assert (model.head.backward, model.head.config.backward_kwargs()) == ("taylor", {"degree": 9})


def test_finetune_honours_seed_and_refuses_seed_with_seeds(cub, tmp_path):
    from gcp.finegrained import finetune as ft

    args = ft.build_parser().parse_args(["--dataset", "cub", "--data-dir", cub, "--output", str(tmp_path / "o"), *FT,
                                         "--seed", "5"])
    planned = ft.plan(args)[0]
    assert ft.resolve_run(args, planned.arm, planned.seed, planned.output)[0].seed == 5
    with pytest.raises(gcptrain.ConfigError, match="--seed 5 and --seeds 1 2 both choose"):
        finetune(["--dataset", "cub", "--data-dir", cub, "--output", str(tmp_path / "p"), *FT, "--seed", "5",
                  "--seeds", "1", "2"])
