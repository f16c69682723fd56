"""--config FILE and the args.yaml of every run folder: a rerun from it, precedence, timm's own
args.yaml, and the refusals (unknown keys, timm settings gcp lacks, bad values, bad files)."""

from __future__ import annotations

import pytest
import yaml

import gcp.train as gcptrain
import gcp.train.imagenet as train_imagenet
from gcp.train.timm_defaults import TIMM_TRAIN_DEFAULTS
from tests.train._runs import summary as _summary
from tests.train._runs import train as _train


def _write(path, values):
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_args_yaml_reruns_the_run_with_the_same_first_epoch(imagenet, tmp_path):
    first = tmp_path / "first"
    assert _train(imagenet, first, "--epochs", "1", "--clip-grad", "5", "--method", "svd", "--backward", "taylor",
                  "--head-opt", "degree=9") == 0
    written = yaml.safe_load((first / "args.yaml").read_text())
    assert written["clip_grad"] == 5 and written["head_opt"] == ["degree=9"] and written["lr"] == 0.01
    assert "min_lr" not in written  # a setting that means nothing on a step schedule is not recorded
    again = tmp_path / "again"
    assert train_imagenet.main(["--config", str(first / "args.yaml"), "--output", str(again)]) == 0
    a, b = _summary(first)[0], _summary(again)[0]
    assert (a["train_loss"], a["eval_loss"], a["top1"]) == (b["train_loss"], b["eval_loss"], b["top1"])
    rerun = yaml.safe_load((again / "args.yaml").read_text())
    assert {k: v for k, v in rerun.items() if k != "output"} == {k: v for k, v in written.items() if k != "output"}


def _parse(tmp_path, values, *argv):
    path = _write(tmp_path / "c.yaml", values)
    args = gcptrain.config_file.parse_args(train_imagenet.build_parser(), ["--config", path, *argv])
    return train_imagenet.resolve_record(args, None, 0)


def test_flags_on_the_command_line_win_over_the_file(tmp_path):
    base = dict(data_dir="/d", model="gcp_resnet18", lr=0.5, epochs=4, method="svd", backward="taylor",
                head_opt=["degree=9"])
    assert _parse(tmp_path, base).lr == 0.5
    record = _parse(tmp_path, base, "--lr", "0.2", "--head-opt", "degree=7")
    assert record.lr == 0.2 and record.head.norm.flat_options() == {"degree": 7}


def test_a_timm_args_yaml_runs_where_the_flags_overlap(tmp_path):
    timm_file = {**TIMM_TRAIN_DEFAULTS, "data_dir": "/d", "model": "gcp_resnet18", "lr": 0.01, "epochs": 3,
                 "warmup_epochs": 1, "device": "cpu"}
    record = _parse(tmp_path, timm_file)
    # timm's values are honoured where gcp has the setting, not replaced by gcp's defaults
    assert (record.sched, record.opt, record.smoothing, record.weight_decay, record.seed, record.warmup_lr,
            record.batch_size) == ("cosine", "sgd", 0.1, 2e-5, 42, 1e-5, 128)
    # timm's other defaults are accepted (its args.yaml records every flag); gcp's inapplicable
    # settings at timm's defaults (decay_milestones on cosine) are inert
    assert record.decay_milestones == (89, 179, 269)  # timm's milestone M is epoch index M - 1


@pytest.mark.parametrize("values, pattern", [
    (dict(reprob=0.25), "reprob: 0.25 is a timm train.py setting gcp does not have"),
    (dict(lrr=0.1), "unknown setting 'lrr' \\(did you mean 'lr'\\?\\)"),
    (dict(lr="fast"), "lr: 'fast' is not a value of --lr"),
    (dict(sched="plateau"), "sched: 'plateau' is not one of --sched's choices"),
    (dict(channels_last="yes"), "channels_last: 'yes' must be true or false"),
    (dict(lr=None), "lr: null \\(timm derives it"),
    (dict(min_lr=0.001, sched="multistep"), "--min-lr applies with --sched cosine only"),
])
def test_bad_settings_are_refused_naming_file_and_key(tmp_path, values, pattern):
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        _parse(tmp_path, {"data_dir": "/d", "model": "gcp_resnet18", **values})


def test_min_lr_at_timms_default_is_inert_on_a_step_schedule(tmp_path):
    assert _parse(tmp_path, dict(data_dir="/d", model="gcp_resnet18", min_lr=0, sched="step")).sched == "step"
    assert _parse(tmp_path, dict(data_dir="/d", model="gcp_resnet18", min_lr=0)).sched == "multistep"


@pytest.mark.parametrize("text, pattern", [("- 1\n- 2\n", "expected a mapping"), ("lr: [1, \n", "not a readable yaml")])
def test_a_file_that_is_not_a_config_is_refused(tmp_path, text, pattern):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        gcptrain.config_file.parse_args(train_imagenet.build_parser(), ["--config", str(path)])
    with pytest.raises(gcptrain.ConfigError, match="no such file"):
        gcptrain.config_file.parse_args(train_imagenet.build_parser(), ["--config", str(tmp_path / "none.yaml")])
