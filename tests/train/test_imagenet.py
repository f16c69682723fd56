"""train_imagenet.py on a tiny ImageFolder: epochs, checkpoints, resume, hybrid switch, torchrun."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

import gcp.train as gcptrain
import gcp.train.imagenet as train_imagenet
from tests._fixtures import image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = ["--model", "gcp_resnet18", "--reduced-dim", "8", "--img-size", "32", "--batch-size", "4",
        "--workers", "0", "--lr", "0.01", "--device", "cpu", "--decay-milestones", "2"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return image_folder(str(tmp_path_factory.mktemp("imagenet")))


def _run(dataset, out, *extra):
    return train_imagenet.main(["--data-dir", dataset, "--output", str(out), *BASE, *extra])


def _summary(out):
    with open(os.path.join(out, "summary.csv")) as fh:
        return list(csv.DictReader(fh))


def test_one_epoch_writes_summary_and_checkpoints(dataset, tmp_path):
    out = tmp_path / "run"
    assert _run(dataset, out, "--epochs", "1") == 0
    rows = _summary(out)
    assert len(rows) == 1 and rows[0]["epoch"] == "0" and rows[0]["method"] == "isqrt"
    for key in ("train_loss", "eval_loss", "top1", "top5", "lr", "epoch_time_s", "images_per_s"):
        assert float(rows[0][key]) >= 0, key
    assert float(rows[0]["images_per_s"]) > 0
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "record", "metrics", "history"} <= set(ckpt)
    assert "config" not in ckpt and "cli_settings" not in ckpt  # the record is the only description of the run
    assert (out / "best.pth").exists()
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_resume_continues_exactly(dataset, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(dataset, straight, "--epochs", "2") == 0
    assert _run(dataset, split, "--epochs", "1") == 0
    first = torch.load(split / "last.pth", weights_only=True)
    # a fresh run in the same folder is refused rather than overwriting it
    with pytest.raises(gcptrain.RunFolderError, match="already holds a run"):
        _run(dataset, split, "--epochs", "2")
    assert _run(dataset, split, "--epochs", "2", "--resume", str(split / "last.pth")) == 0
    a = torch.load(straight / "last.pth", weights_only=True)
    b = torch.load(split / "last.pth", weights_only=True)
    assert b["epoch"] == 1 and len(b["history"]) == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    for pid, st in a["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"], b["optimizer"]["state"][pid]["momentum_buffer"])
    assert first["epoch"] == 0
    rows = _summary(split)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01, 0.001])  # milestone 1: decayed from epoch 1
    # the resumed run reproduces the straight one: every column but the timings is identical
    timing = {"epoch_time_s", "images_per_s"}
    drop = lambda table: [{k: v for k, v in r.items() if k not in timing} for r in table]  # noqa: E731
    assert drop(rows) == drop(_summary(straight))


def test_hybrid_switch_changes_the_head_at_the_right_epoch(dataset, tmp_path):
    out = tmp_path / "hybrid"
    assert _run(dataset, out, "--epochs", "2", "--method", "isqrt", "--hybrid-switch-epoch", "1",
                "--hybrid-method", "svd", "--hybrid-backward", "pade") == 0
    rows = _summary(out)
    assert [(r["method"], r["backward"]) for r in rows] == [("isqrt", ""), ("svd", "pade")]


def test_classifier_multiplier_and_recipe(dataset, tmp_path):
    parse = train_imagenet.build_parser().parse_args
    cfg = train_imagenet.resolve_record(parse(["--data-dir", dataset, "--epochs", "3", "--recipe", "isqrt-cov-r50"]),
                                        None, 0)
    assert (cfg.batch_size, cfg.lr, cfg.decay_milestones, cfg.epochs) == (160, 0.1, (30, 45, 60), 3)
    assert (cfg.data.img_size, cfg.data.crop_pct, cfg.data.interpolation) == (224, 0.875, "bilinear")
    cfg = train_imagenet.resolve_record(parse(["--data-dir", dataset, "--recipe", "svd-pade-r50"]), None, 0)
    assert (cfg.batch_size, cfg.lr) == (256, 0.0794)
    assert cfg.head.model_kwargs() == dict(method="svd", backward="pade", last_stride=2)
    out = tmp_path / "mult"
    assert _run(dataset, out, "--epochs", "1", "--classifier-lr-mult", "5", "--reduction-lr-mult", "2") == 0
    groups = {g["name"]: g for g in torch.load(out / "last.pth", weights_only=True)["optimizer"]["param_groups"]}
    assert groups["classifier"]["lr"] == pytest.approx(5 * groups["features"]["lr"])
    assert groups["reduction"]["lr"] == pytest.approx(2 * groups["features"]["lr"])


def test_corrupt_checkpoint_is_a_clear_error_and_nothing_is_overwritten(dataset, tmp_path):
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "last.pth").write_bytes(b"garbage")
    (out / "summary.csv").write_text("keep")
    with pytest.raises(gcptrain.CheckpointError, match="is not a training checkpoint"):
        _run(dataset, out, "--epochs", "1", "--resume", str(out / "last.pth"))
    assert (out / "last.pth").read_bytes() == b"garbage" and (out / "summary.csv").read_text() == "keep"
    other = tmp_path / "other"
    assert _run(dataset, other, "--epochs", "1") == 0
    with pytest.raises(gcptrain.ConfigError, match="--reduced-dim: 8 in the checkpoint, 4 now"):  # a resume keeps the run's settings
        _run(dataset, tmp_path / "x", "--epochs", "1", "--reduced-dim", "4", "--resume", str(other / "last.pth"))


def test_missing_data_and_empty_class(tmp_path, dataset):
    with pytest.raises(gcptrain.DatasetError, match="dataset folder not found"):
        _run(str(tmp_path / "nope"), tmp_path / "o", "--epochs", "1")
    bad = tmp_path / "bad"
    image_folder(str(bad), classes=2)
    os.makedirs(bad / "train" / "class_empty")
    with pytest.raises(gcptrain.DatasetError, match="without images.*class_empty"):
        _run(str(bad), tmp_path / "o2", "--epochs", "1")


def test_evaluate_only(dataset, tmp_path, capsys):
    out = tmp_path / "ev"
    assert _run(dataset, out, "--epochs", "1") == 0
    capsys.readouterr()
    assert _run(dataset, tmp_path / "ev2", "--evaluate-only", "--resume", str(out / "last.pth")) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["evaluate"]
    # evaluating the saved weights gives the top-1 the training run recorded for that epoch
    assert metrics["images"] == 6
    assert metrics["top1"] == pytest.approx(float(_summary(out)[-1]["top1"]), abs=1e-3)


@pytest.mark.slow  # two fresh processes importing torch and timm: ~14 s
def test_torchrun_two_processes_agree(dataset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(ROOT, "train_imagenet.py"), "--data-dir", dataset, "--output", str(out), *BASE,
           "--epochs", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finals = {}
    for line in proc.stdout.splitlines():
        if " final: " in line:
            rank, payload = line.split(" final: ")
            finals[rank] = json.loads(payload)
    assert set(finals) == {"rank 0", "rank 1"}
    timing = {"epoch_time_s", "images_per_s"}  # wall-clock figures are per rank
    same = {k: v for k, v in finals["rank 0"].items() if k not in timing}
    assert same == {k: v for k, v in finals["rank 1"].items() if k not in timing}
    assert len(_summary(out)) == 1
    # the metrics cover the whole validation split once (6 images), not one rank's shard
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["metrics"]["images"] == 6
    # --batch-size is per process, as timm's -b: 4 on each of 2 processes is a global batch of 8
    assert ckpt["record"]["batch_size"] == 8
    assert "batch_size: 4" in (out / "args.yaml").read_text()


def test_sync_bn_on_cpu_is_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        _run(dataset, tmp_path / "s", "--epochs", "1", "--sync-bn")


def test_bf16_amp_ema_channels_last(dataset, tmp_path):
    out = tmp_path / "amp"
    assert _run(dataset, out, "--epochs", "1", "--amp", "--amp-dtype", "bfloat16", "--model-ema", "--channels-last",
                "--method", "svd", "--backward", "taylor", "--head-opt", "degree=9") == 0
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["ema"] is not None and ckpt["record"]["head_options"]["degree"] == 9
    row = _summary(out)[0]
    assert row["nonfinite_steps"] == "0" and float(row["train_loss"]) > 0


@pytest.mark.slow  # gcp-finetune's test covers the same model builder in the default run
def test_a_generic_timm_model_trains_at_the_runs_image_size(dataset, tmp_path):
    """gcp-train takes gcp_<timm name>; a ViT built for 224² is built for --img-size 32 (1 class
    token + (32/16)² patches) and its record keeps the name and head options."""
    out = tmp_path / "vit"
    assert _run(dataset, out, "--epochs", "1", "--model", "gcp_vit_tiny_patch16_224", "--method", "svd",
                "--backward", "pade") == 0
    assert _summary(out)[0]["method"] == "svd"
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["model"]["backbone.pos_embed"].shape == (1, 1 + 2 * 2, 192)
    assert ckpt["record"]["model"] == "gcp_vit_tiny_patch16_224"


def test_a_channels_last_one_position_map_is_refused_for_a_later_svd_head(dataset, tmp_path):
    """MambaOut's maps are NHWC: at 32² its last map is 1×1 (stride 32), one position, which a head
    that switches to svd later cannot differentiate; refused before the run folder exists."""
    out = tmp_path / "nhwc"
    with pytest.raises(gcptrain.ConfigError, match="final feature map is 1×1, one position"):
        _run(dataset, out, "--epochs", "2", "--model", "gcp_test_mambaout", "--method", "isqrt",
             "--hybrid-switch-epoch", "1", "--hybrid-method", "svd")
    assert not out.exists()


@pytest.mark.slow
def test_resume_auto_starts_or_continues_the_run_in_output(dataset, tmp_path):
    out = tmp_path / "auto"
    assert _run(dataset, out, "--epochs", "1", "--resume", "auto") == 0  # nothing there yet: a new run
    assert _run(dataset, out, "--epochs", "2", "--resume", "auto") == 0  # continues at epoch 1
    assert [r["epoch"] for r in _summary(out)] == ["0", "1"]


@pytest.mark.parametrize("old, new, key, value", [
    (["--grad-clip", "2.5"], ["--clip-grad", "2.5"], "grad_clip", 2.5),
    (["--drop-rate", "0.2"], ["--drop", "0.2"], "drop_rate", 0.2),
    (["--amp", "bf16"], ["--amp", "--amp-dtype", "bfloat16"], "amp", "bf16"),
    (["--amp", "fp16"], ["--amp"], "amp", "fp16"),
    (["--workers", "3"], ["-j", "3"], "workers", 3),
])
def test_timm_spellings_and_their_deprecated_predecessors_mean_the_same(old, new, key, value, capsys):
    from gcp.train import cli

    parser = train_imagenet.build_parser()
    base = ["--data-dir", "/d"]
    assert cli.given_flags(parser.parse_args(base + new))[key] == value
    assert "deprecated" not in capsys.readouterr().err
    assert cli.given_flags(parser.parse_args(base + old))[key] == value
    err = capsys.readouterr().err
    if old[0] != "--workers":
        assert "deprecated" in err and err.count("\n") == 1


def test_amp_dtype_without_amp_is_refused():
    from gcp.train import cli

    with pytest.raises(gcptrain.ConfigError, match="--amp-dtype bfloat16 applies with --amp only"):
        cli.given_flags(train_imagenet.build_parser().parse_args(["--data-dir", "/d", "--amp-dtype", "bfloat16"]))
