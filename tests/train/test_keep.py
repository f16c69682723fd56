"""What a run folder keeps: --checkpoint-hist N (the N best epochs, best.pth linked to the best),
0 (none), --export-best (a save_pretrained folder of the best model), their repair after a kill,
and the flags honoured on resume."""

from __future__ import annotations

import os

import pytest
import timm
import torch

import gcp.train as gcptrain
import gcp.zoo
from gcp.train import keep
from gcp.train.checkpoint import load_checkpoint
from tests.train._runs import train as _train


def _ckpt(epoch):
    return dict(model={"w": torch.full((2,), float(epoch))}, optimizer={}, epoch=epoch, record={})


def _history(top1s):
    return [dict(epoch=e, top1=t) for e, t in enumerate(top1s)]


def _files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".pth"))


def test_the_n_best_epochs_are_kept_and_best_links_the_best(tmp_path):
    top1s = [50.0, 70.0, 60.0, 65.0]
    for epoch in range(len(top1s)):
        keep.keep_epoch(str(tmp_path), _ckpt(epoch), _history(top1s[: epoch + 1]), hist=2)
    # the two best are epochs 1 (70) and 3 (65), files named from 1
    assert _files(tmp_path) == ["best.pth", "checkpoint-2.pth", "checkpoint-4.pth"]
    assert os.path.samefile(tmp_path / "best.pth", tmp_path / "checkpoint-2.pth")  # a link: no second copy
    assert load_checkpoint(str(tmp_path / "best.pth"))["epoch"] == 1


def test_one_keeps_best_only_and_zero_keeps_none(tmp_path):
    one, none = tmp_path / "one", tmp_path / "none"
    one.mkdir()
    none.mkdir()
    for epoch in range(3):
        keep.keep_epoch(str(one), _ckpt(epoch), _history([50.0, 70.0, 60.0][: epoch + 1]), hist=1)
        keep.keep_epoch(str(none), _ckpt(epoch), _history([50.0, 70.0, 60.0][: epoch + 1]), hist=0)
    assert _files(one) == ["best.pth"] and load_checkpoint(str(one / "best.pth"))["epoch"] == 1
    assert _files(none) == []


def test_ties_keep_the_earlier_epoch():
    assert keep.ranked(_history([60.0, 70.0, 70.0, 10.0])) == [1, 2, 0, 3]


def test_repair_finishes_or_undoes_an_interrupted_export(tmp_path):
    final, old, tmp = tmp_path / keep.EXPORT, tmp_path / (keep.EXPORT + ".old"), tmp_path / (keep.EXPORT + ".tmp")
    old.mkdir()
    (old / "model.safetensors").write_text("complete")
    tmp.mkdir()  # killed after moving the old export aside, before the new one was in place
    keep.repair(str(tmp_path))
    assert (final / "model.safetensors").read_text() == "complete" and not old.exists() and not tmp.exists()
    old.mkdir()  # killed after the swap, before the old one was removed
    keep.repair(str(tmp_path))
    assert final.exists() and not old.exists()


@pytest.mark.parametrize("value", ["-1", "x"])
def test_a_negative_history_is_refused(imagenet, tmp_path, value):
    with pytest.raises((gcptrain.ConfigError, SystemExit)):
        _train(imagenet, tmp_path / "o", "--epochs", "1", "--checkpoint-hist", value)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_export_best_loads_with_gcp_and_timm_and_is_the_best_epoch(imagenet, tmp_path, monkeypatch):
    import gcp.train.engine as engine

    real_eval = engine.evaluate

    def scripted(*args, **kwargs):  # epoch 1 of 3 is the best
        epoch = int(kwargs["desc"].split()[1].split("/")[0]) - 1
        return dict(real_eval(*args, **kwargs), top1=(50.0, 70.0, 60.0, 55.0)[epoch])

    monkeypatch.setattr(engine, "evaluate", scripted)
    out = tmp_path / "run"
    assert _train(imagenet, out, "--epochs", "3", "--decay-milestones", "5", "--checkpoint-hist", "2",
                  "--export-best") == 0
    assert _files(out) == ["best.pth", "checkpoint-2.pth", "checkpoint-3.pth", "last.pth"]
    best = load_checkpoint(str(out / "best.pth"))
    assert best["epoch"] == 1
    exported = gcp.zoo.load_pretrained(str(out / keep.EXPORT))
    assert all(torch.equal(v, best["model"][k]) for k, v in exported.state_dict().items())
    card = (out / keep.EXPORT / "README.md").read_text()
    assert "Trained: by gcp.train" in card and "best epoch by top-1, 2 of 3" in card and "| val top-1 (%) | 70 |" in card
    via_timm = timm.create_model(f"local-dir:{out / keep.EXPORT}", pretrained=True)
    assert all(torch.equal(v, best["model"][k]) for k, v in via_timm.state_dict().items())
    # a resume may change what is kept: with 0 the next epoch removes the kept checkpoints
    assert _train(imagenet, out, "--epochs", "4", "--decay-milestones", "5", "--checkpoint-hist", "0",
                  "--resume", str(out / "last.pth")) == 0
    assert _files(out) == ["last.pth"]
