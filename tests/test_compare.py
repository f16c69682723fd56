"""python -m gcp.compare: the quick path end to end, its numbers against direct calls, its errors."""

import csv
import json

import pytest
import torch

import gcp
from gcp.compare import main
from gcp.compare.suites import degenerate_suite, geometric_spectrum

ARGS = ["--quick", "--modes", "exact,ed,pi,isqrt", "--dim", "4", "--sizes", "8", "--batch", "2", "--repeats", "1",
        "--epochs", "1"]


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


def test_quick_run_writes_every_file(report):
    out, rows = report
    for name in ("report.md", "results.csv", "results.json", "grad_error_vs_gap.png", "time_vs_d.png",
                 "training_accuracy.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    for heading in ("## 1. Gradient accuracy", "## 2. Stability", "## 3. Speed", "## 4. Training", "## 5. ZCA"):
        assert heading in md
    data = json.loads((out / "results.json").read_text())
    assert len(data["records"]) == len(rows) and data["config"]["modes"] == "exact,ed,pi,isqrt"
    assert {r["section"] for r in rows} == {"accuracy", "stability", "speed", "training", "zca"}


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


def test_existing_report_is_not_overwritten(report, capsys):
    out, _ = report
    before = (out / "report.md").read_text()
    with pytest.raises(SystemExit):
        main(ARGS + ["--out", str(out)])
    assert "already holds a report" in capsys.readouterr().err
    assert (out / "report.md").read_text() == before


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
