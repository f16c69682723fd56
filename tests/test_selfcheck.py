"""The demo (``python -m gcp.selfcheck``) runs end to end and its numbers mean what they say."""

import csv

import gcp
from gcp import selfcheck


def test_selfcheck_quick_run_writes_files(tmp_path, capsys):
    assert selfcheck.main(["--batch", "2", "--dim", "8", "--repeats", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| sqrtm[exact] |" in out
    rows = list(csv.DictReader(open(tmp_path / "selfcheck.csv")))
    by_route = {r["route"]: r for r in rows}
    assert set(by_route) >= {f"sqrtm[{m}]" for m in gcp.BACKWARDS} | {"isqrtm(iters=5)", "mpa_sqrtm(5,5)"}
    assert float(by_route["sqrtm[exact]"]["grad_rel_err"]) == 0.0
    assert float(by_route["sqrtm[pade]"]["grad_rel_err"]) < 1e-12
    # the unguarded control breaks on the degenerate suite, every other route stays finite
    finite, total = map(int, by_route["sqrtm[ed]"]["degenerate_finite"].split("/"))
    assert finite < total
    for route, r in by_route.items():
        if route != "sqrtm[ed]":
            f, t = map(int, r["degenerate_finite"].split("/"))
            assert f == t, route
    assert (tmp_path / "selfcheck.md").read_text().startswith("| route |")
