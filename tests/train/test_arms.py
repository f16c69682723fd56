"""--head lists: parsing, refusals before any run, and a head comparison end to end (gcp-train)."""

import csv
import os

import pytest

import gcp
import gcp.train as gcptrain
import gcp.train.imagenet as train_imagenet
from gcp.train.arms import arms_of, parse_heads, plan_runs
from tests._fixtures import image_folder

BASE = ["--model", "gcp_resnet18", "--reduced-dim", "8", "--img-size", "32", "--batch-size", "4",
        "--workers", "0", "--lr", "0.01", "--device", "cpu", "--no-image-check"]


def test_head_list_syntax():
    arms = parse_heads("gap, bcnn,cbp(proj_dim=512),isqrt(iters=3),svd:exact,svd:pade(degree=(8, 8))")
    assert [a.label for a in arms] == ["gap", "bcnn", "cbp(proj_dim=512)", "isqrt(iters=3)", "svd/exact",
                                       "svd/pade(degree=(8, 8))"]
    assert arms[3].settings == {"method": "isqrt", "backward": None, "iters": 3, "head_options": {}}
    assert arms[5].settings["head_options"] == {"degree": (8, 8)}
    assert [a.folder for a in arms][-2:] == ["svd-exact", "svd-pade-degree=-8,-8"]


@pytest.mark.parametrize("text, pattern", [
    ("gap,bcnn,gap", "lists gap more than once"),
    ("svd,svd:exact", "lists svd/exact more than once"),  # the same head spelt twice
    ("isqrt:pade", "'isqrt' takes no backward mode"),
    ("cbp(proj_dim=0)", "'proj_dim' must be an integer >= 1"),
    ("svd:taylor(degre=3)", "'degre' applies to neither"),
    ("svd(", "expected METHOD"),
    ("gap,,isqrt", "empty entry"),
    ("gp", "did you mean 'gap'"),
    ("cbp(proj_dim=os.sep)", "must be a Python literal"),
])
def test_a_bad_head_list_is_refused_before_any_run(text, pattern):
    with pytest.raises(gcp.GCPError, match=pattern):
        parse_heads(text)


def test_head_with_the_flags_it_replaces_is_refused():
    with pytest.raises(gcptrain.ConfigError, match="drop --method, --iters"):
        arms_of("gap,isqrt", None, {"method": "svd", "iters": 3})
    with pytest.raises(gcptrain.ConfigError, match="drop --backward"):
        arms_of("gap,isqrt", "pade", {})


def test_plan_puts_each_head_and_seed_in_its_own_folder(tmp_path):
    runs = plan_runs(parse_heads("gap,svd:pade"), [0, 1], str(tmp_path), None)
    assert [os.path.relpath(r.output, tmp_path) for r in runs] == [
        "gap/seed0", "gap/seed1", "svd-pade/seed0", "svd-pade/seed1"]
    with pytest.raises(gcptrain.ConfigError, match="--resume takes 'auto'"):
        plan_runs(parse_heads("gap,isqrt"), [0], str(tmp_path), "x/last.pth")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return image_folder(str(tmp_path_factory.mktemp("imagenet")))


@pytest.mark.slow  # four tiny runs; the default run's multi-run path is the CIFAR sweep's
def test_gcp_train_compares_heads_in_one_command(dataset, tmp_path, capsys):
    out = tmp_path / "heads"
    assert train_imagenet.main(["--data-dir", dataset, "--output", str(out), *BASE, "--epochs", "1",
                                "--max-steps-per-epoch", "1", "--head", "gap,svd:pade"]) == 0
    log = capsys.readouterr().out
    assert "[run 1/2: gap seed 0]" in log and "[run 2/2: svd/pade seed 0]" in log
    with open(out / "comparison.csv") as fh:
        rows = {r["arm"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"gap", "svd/pade"} and rows["gap"]["seeds"] == "1"
    with open(out / "svd-pade" / "seed0" / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert (summary[0]["method"], summary[0]["backward"]) == ("svd", "pade")
    with open(out / "gap" / "seed0" / "summary.csv") as fh:
        assert next(csv.DictReader(fh))["backward"] == ""  # gap takes no backward
    assert (out / "comparison.md").exists() and (out / "accuracy.png").exists()
    with open(out / "epochs.csv") as fh:
        assert [(r["arm"], r["seed"], r["epoch"]) for r in csv.DictReader(fh)] == [("gap", "0", "0"),
                                                                                   ("svd/pade", "0", "0")]
    # --resume auto: both finished runs are found complete, nothing is retrained
    assert train_imagenet.main(["--data-dir", dataset, "--output", str(out), *BASE, "--epochs", "1",
                                "--max-steps-per-epoch", "1", "--head", "gap,svd:pade", "--resume", "auto"]) == 0
