"""python -m gcp.compare: the quick path end to end, its numbers against direct calls, its errors."""

import csv
import json

import pytest
import torch

import gcp
from gcp.compare import main, parse
from gcp.compare.suites import degenerate_suite, geometric_spectrum

ARGS = ["--quick", "--modes", "exact,ed,pi,isqrt", "--dim", "4", "--sizes", "8", "--batch", "2", "--repeats", "2",
        "--epochs", "2", "--seeds", "0", "1", "--zca-dims", "32", "--zca-epochs", "1", "--workers", "1",
        "--train-modes", "exact,ed,isqrt,gap,hybrid", "--train-dims", "4", "8",
        "--sections", "accuracy,stability,speed,mechanism,training,texture,zca"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(ARGS + ["--out", str(out)]) == 0
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows


def _get(rows, **where):
    found = [float(r["value"]) for r in rows if all(r[k] == v for k, v in where.items())]
    assert found, where
    return found


@pytest.mark.slow  # the module's quick gcp-compare run (~11 s); CI's install check runs it too
def test_quick_run_writes_every_file(report):
    out, rows = report
    for name in ("report.md", "results.csv", "results.json", "grad_error_vs_gap.png", "time_vs_d.png",
                 "training_accuracy.png", "mechanism.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    for heading in ("## 1. Gradient accuracy", "## 2. Stability", "## 3. Speed", "## 4. What reaches the backbone",
                    "## 5. Training", "## 6. Texture control", "## 7. ZCA"):
        assert heading in md
    data = json.loads((out / "results.json").read_text())
    assert len(data["records"]) == len(rows) and data["config"]["modes"] == "exact,ed,pi,isqrt"
    sections = {"accuracy", "stability", "speed", "mechanism", "training", "texture", "zca"}
    assert {r["section"] for r in rows} == sections | {"timing"}
    assert {r["case"] for r in rows if r["section"] == "timing"} == sections  # each section's wall time
    assert "Wall time per section: accuracy" in md
    assert {r["mode"] for r in rows if r["section"] == "training"} == {"exact", "ed", "isqrt", "gap", "hybrid", "all"}
    assert {r["case"].split(",")[0] for r in rows if r["section"] == "training"} == {"d=4", "d=8"}
    assert {r["mode"] for r in rows if r["section"] == "texture"} == {"gap", "isqrt", "all"}
    assert "Significance threshold" in md and "detected with 80% power" in md


@pytest.mark.slow  # the module's quick gcp-compare run (~11 s); CI's install check runs it too
def test_numbers_match_direct_calls(report):
    _, rows = report
    # the reference is exact in float64
    assert max(_get(rows, section="accuracy", mode="exact", dtype="float64", metric="grad_rel_err")) <= 1e-8
    # "ed" breaks on the degenerate suite (identity among it); "exact" does not
    assert _get(rows, section="stability", mode="ed", dtype="float64", metric="nonfinite_fraction")[0] > 0
    assert _get(rows, section="stability", mode="exact", dtype="float64", metric="nonfinite_fraction")[0] == 0
    x = degenerate_suite()["identity"].requires_grad_()
    gcp.sqrtm(x, "ed").backward(torch.ones_like(x))
    assert not torch.isfinite(x.grad).all()
    # the recorded PI error at ratio 0.9 is what a direct call gives
    x = geometric_spectrum(0.9, 4)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = {}
    for mode in ("exact", "pi"):
        xi = x.clone().requires_grad_()
        gcp.sqrtm(xi, mode).backward(g)
        grads[mode] = xi.grad
    direct = ((grads["pi"] - grads["exact"]).norm() / grads["exact"].norm()).item()
    recorded = _get(rows, section="accuracy", mode="pi", dtype="float64", case="ratio=0.9", metric="grad_rel_err")[0]
    assert recorded == pytest.approx(direct, rel=1e-9)
    # training ran and reached better than chance on 10 digits
    assert max(_get(rows, section="training", mode="exact", metric="top1")) > 20
    assert all(v > 0 for v in _get(rows, section="speed", metric="fwd_bwd_over_eigh"))


def test_existing_report_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "report.md").write_text("an earlier run's report\n")  # refused before any measurement
    with pytest.raises(SystemExit):
        main(ARGS + ["--out", str(out)])
    assert "already holds report.md" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "an earlier run's report\n"


@pytest.mark.parametrize("argv, message", [
    (["--modes", "exact,padé"], "unknown mode"),
    (["--sections", "accuracy,nope"], "unknown section"),
    (["--dtypes", "float16"], "--dtypes must list"),
    (["--dim", "1"], "--dim and --sizes must be >= 2"),
])
def test_bad_options_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# --- uncertainty, generated conclusions, --recommend ------------------------------------------


@pytest.mark.slow  # the module's quick gcp-compare run (~11 s); CI's install check runs it too
def test_every_training_number_carries_its_uncertainty(report):
    out, rows = report
    md = (out / "report.md").read_text()
    # training: mean ± std over the 2 seeds and a p-value column; ZCA: runs per cell and mean ± std
    assert "(n=2)" in md and "p vs best" in md
    zca = md.split("## 7.")[1]
    zca_rows = [line for line in zca.splitlines() if line.startswith("| exact")]
    converged = "Not converged" not in zca.split("| mode")[0]
    assert zca_rows and all("/2 " in cell and ("±" in cell) == converged for cell in zca_rows[0].split("|")[2:-1])
    # the training section states its power and the papers' claims
    assert "Significance threshold" in md and "**The papers' claims at d = 8**" in md
    assert "d = 4: at most 4 over 16 positions; d = 8: at most 8 over 16 positions" in md
    seeds = {r["case"].split(",")[1] for r in rows if r["section"] in ("zca", "training") and r["mode"] != "all"}
    assert seeds == {"seed=0", "seed=1"}
    # speed: min–max of the per-round ratio next to the median
    assert _get(rows, section="speed", mode="exact", metric="fwd_bwd_over_eigh_min")[0] <= \
        _get(rows, section="speed", mode="exact", metric="fwd_bwd_over_eigh")[0] <= \
        _get(rows, section="speed", mode="exact", metric="fwd_bwd_over_eigh_max")[0]
    assert "## What this says" in md


def _records(section, values):
    return [dict(section=section, mode=m, dtype="float32", case=c, metric=k, value=v) for m, c, k, v in values]


def test_conclusions_follow_the_numbers():
    from gcp.compare.report import conclusions

    stab = _records("stability", [("a", "suite", "nonfinite_fraction", 0.4), ("b", "suite", "nonfinite_fraction", 0.0)])
    said = " ".join(conclusions(stab))
    assert "a (40% float32)" in said and "(b)" in said
    # equal-looking accuracies with overlapping seeds: no ranking; a clear gap: significant
    noisy = []
    for mode, finals in (("x", [90.0, 80.0, 85.0]), ("y", [88.0, 84.0, 86.0]), ("z", [20.0, 21.0, 19.0])):
        for seed, top1 in enumerate(finals):
            for metric, v in (("top1", top1), ("train_loss", 1.0), ("seconds", 1.0), ("nonfinite_steps", 0.0)):
                noisy += _records("training", [(mode, f"seed={seed},epoch=0", metric, v)])
    said = " ".join(conclusions(noisy))
    assert "not significantly different from it" in said and "y" in said.split("not significantly")[1]
    assert "significantly lower: z" in said
    # a single seed cannot rank
    single = [r for r in noisy if r["case"].startswith("seed=0")]
    assert "no difference can be tested" in " ".join(conclusions(single))


def test_holm_adjustment():
    from gcp.train.stats import holm

    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adj == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06), "d": None}


def test_recommend_small(tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["--recommend", "--dim", "12", "--batch", "4", "--out", str(out)]) == 0
    text = (out / "recommendation.md").read_text()
    assert "**Use `" in text and "| ed" not in text  # the unguarded control is never a candidate
    # the recommended route is stable and within tol: its row says so
    best = text.split("**Use `")[1].split("`")[0]
    row = next(line for line in text.splitlines() if line.startswith(f"| {best} ←"))
    assert "| yes |" in row and float(row.split("|")[3]) <= 1e-2
    with pytest.raises(SystemExit):  # never overwrite a recommendation
        main(["--recommend", "--dim", "12", "--batch", "4", "--out", str(out)])


def test_recommend_at_the_users_spectrum(tmp_path):
    feats = torch.randn(6, 10, 5, 5)
    torch.save(feats, tmp_path / "feats.pt")
    out = tmp_path / "rec"
    assert main(["--recommend", "--dim", "10", "--batch", "4", "--features", str(tmp_path / "feats.pt"),
                 "--out", str(out)]) == 0
    assert "6 matrices from" in (out / "recommendation.md").read_text()


def test_recommend_refuses_bad_features(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a tensor")
    assert main(["--recommend", "--dim", "10", "--batch", "4", "--features", str(text),
                 "--out", str(tmp_path / "r1")]) == 2
    assert "is not a tensor saved with torch.save" in capsys.readouterr().err
    torch.save(torch.randn(6, 12, 5, 5), tmp_path / "wrong_d.pt")
    assert main(["--recommend", "--dim", "10", "--batch", "4", "--features", str(tmp_path / "wrong_d.pt"),
                 "--out", str(tmp_path / "r2")]) == 2


def test_out_naming_a_file_fails_at_once(tmp_path):
    f = tmp_path / "report.txt"
    f.write_text("x")
    with pytest.raises(SystemExit):
        main(["--quick", "--out", str(f)])


@pytest.mark.slow  # the module's quick gcp-compare run (~11 s); CI's install check runs it too
def test_report_names_the_device(report):
    out, _ = report
    assert "device=cpu" in (out / "report.md").read_text()


@pytest.mark.cuda
def test_every_section_runs_on_cuda(tmp_path):
    out = tmp_path / "gpu"
    assert main(ARGS + ["--device", "cuda", "--out", str(out)]) == 0
    assert "device=cuda" in (out / "report.md").read_text()


def test_recommend_refuses_empty_nan_and_indefinite_input_before_measuring(tmp_path, capsys):
    cases = {"empty": torch.zeros(0, 10, 10), "nan": torch.full((2, 10, 4), float("nan")),
             "indefinite": -torch.eye(10).expand(2, 10, 10).clone()}
    for name, tensor in cases.items():
        torch.save(tensor, tmp_path / f"{name}.pt")
        assert main(["--recommend", "--dim", "10", "--batch", "4", "--features", str(tmp_path / f"{name}.pt"),
                     "--out", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err
        assert "gcp-compare: error:" in err and "| 0/30" in err and "| 1/30" not in err, name  # before step 1
        assert not (tmp_path / name / "recommendation.md").exists()


@pytest.mark.parametrize("bad", [["--seeds", "0", "0"], ["--seeds", "-1"], ["--zca-dims", "0"], ["--zca-dims", "5"],
                                 ["--train-dims", "1"], ["--train-dims", "300"], ["--train-dims", "8", "8"],
                                 ["--eval-every", "0"],
                                 ["--recommend", "--dim", "0"], ["--recommend", "--batch", "0"],
                                 ["--recommend", "--tol", "-1"], ["--recommend", "--features", "missing.pt"]])
def test_bad_flags_are_refused_before_work(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--quick", *bad, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_recommend_names_what_it_rests_on(tmp_path):
    out = tmp_path / "rec"
    assert main(["--recommend", "--dim", "8", "--batch", "2", "--out", str(out)]) == 0
    text = (out / "recommendation.md").read_text()
    assert "## What this rests on" in text and "does not say which route trains better" in text
    assert "--sections training" in text and "## Training evidence" in text and "No training evidence" in text


def test_recommend_reads_square_tensors_as_covariances_by_shape(tmp_path, capsys):
    a = torch.randn(5, 10, 30, dtype=torch.float64)
    cov = a @ a.transpose(-1, -2) / 30
    slightly_off = cov + 1e-4 * torch.randn(5, 10, 10, dtype=torch.float64)  # round-off of a saved covariance
    torch.save(slightly_off, tmp_path / "cov.pt")
    assert main(["--recommend", "--dim", "10", "--batch", "2", "--features", str(tmp_path / "cov.pt"),
                 "--out", str(tmp_path / "r1")]) == 0
    assert "5 matrices from" in (tmp_path / "r1" / "recommendation.md").read_text()
    torch.save(torch.randn(5, 10, 10), tmp_path / "square_features.pt")
    assert main(["--recommend", "--dim", "10", "--batch", "2", "--features", str(tmp_path / "square_features.pt"),
                 "--out", str(tmp_path / "r2")]) == 2
    assert "not symmetric" in capsys.readouterr().err


@pytest.mark.parametrize("features, pattern", [
    (torch.randn(4, 10, 1, 1), "1 position"),                   # one position per sample
    (torch.ones(4, 10, 6), "covariances are zero"),              # constant features
])
def test_recommend_refuses_degenerate_features(tmp_path, capsys, features, pattern):
    torch.save(features, tmp_path / "f.pt")
    assert main(["--recommend", "--dim", "10", "--batch", "2", "--features", str(tmp_path / "f.pt"),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert pattern in err and "inf" not in err.split("error:")[1]


@pytest.mark.parametrize("bad, pattern", [(["--threads", "0"], "--threads"), (["--device", "foo"], "--device"),
                                          (["--device", "meta"], "cpu or cuda")])
def test_threads_and_device_are_checked(tmp_path, capsys, bad, pattern):
    with pytest.raises(SystemExit) as exc:
        main(["--quick", *bad, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and pattern in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--sections", "training"], ["--quick"], ["--seeds", "1"], ["--modes", "exact"]])
def test_recommend_refuses_the_options_it_does_not_read(extra, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse(["--recommend", "--out", str(tmp_path / "r"), *extra])
    assert f"{extra[0]} does not apply to --recommend" in capsys.readouterr().err


def test_quick_and_full_defaults(tmp_path):
    quick = parse(["--quick", "--out", str(tmp_path / "q")])
    assert quick.arm_list == ["gap", "isqrt", "exact"] and quick.train_dims == (64,) and len(quick.seeds) == 5
    assert quick.eval_every == quick.epochs == 15  # evaluated once, at the end
    assert "texture" not in quick.section_list and "zca" not in quick.section_list
    assert "mechanism" in quick.section_list and "training" in quick.section_list
    full = parse(["--out", str(tmp_path / "f")])
    assert full.train_dims == (16, 32, 64) and full.eval_every == 5 and full.section_list[-2:] == ["texture", "zca"]
    assert {"gap", "isqrt", "exact", "taylor", "hybrid", "ed", "bcnn", "cbp", "logm"} == set(full.arm_list)
    assert parse(["--quick", "--train-dims", "32", "16", "--out", str(tmp_path / "d")]).train_dims == (16, 32)
