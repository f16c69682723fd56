"""The comparison table's statistics against scipy computed here (not the module's own helpers):
confidence intervals, Welch p-values against the best arm with Holm's adjustment by hand, the
significance threshold and 80%-power difference, failed runs left out, and the LaTeX table."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from gcp.train.comparison import power, summarise, to_latex, write_comparison


def _history(top1, epochs=1):
    return [dict(epoch=e, top1=top1 - (epochs - 1 - e), epoch_time_s=2.0, nonfinite_steps=0, train_loss=1.0)
            for e in range(epochs)]


RESULTS = {"pade": [_history(v, 2) for v in (71.0, 72.5, 70.2)],
           "isqrt": [_history(v, 2) for v in (69.0, 70.9, 70.1)],
           "ed": [_history(v, 2) for v in (40.0, 45.5, 43.0)]}


def test_intervals_and_p_values_match_scipy():
    rows = {r["arm"]: r for r in summarise(RESULTS)}
    finals = {arm: [h[-1]["top1"] for h in runs] for arm, runs in RESULTS.items()}
    for arm, values in finals.items():
        low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 3, scale=stats.sem(values))
        assert rows[arm]["final_top1_ci95_low"] == pytest.approx(low, rel=1e-12)
        assert rows[arm]["final_top1_ci95_high"] == pytest.approx(high, rel=1e-12)
    assert rows["pade"]["p_vs_best"] == "best"
    raw = {arm: stats.ttest_ind(finals[arm], finals["pade"], equal_var=False).pvalue for arm in ("isqrt", "ed")}
    small, large = sorted(raw, key=raw.get)
    holm = {small: min(1.0, 2 * raw[small])}
    holm[large] = max(holm[small], min(1.0, raw[large]))
    for arm in raw:
        assert rows[arm]["p_vs_best"] == pytest.approx(holm[arm], rel=1e-9)


def test_the_power_statement_is_the_t_threshold_and_the_noncentral_t_of_the_pooled_spread():
    rows = summarise(RESULTS)
    finals = [[h[-1]["top1"] for h in runs] for runs in RESULTS.values()]
    pooled = math.sqrt(sum(stats.tstd(v) ** 2 for v in finals) / len(finals))
    expected = stats.t.ppf(0.975, 4) * pooled * math.sqrt(2 / 3)
    threshold, eighty = power(rows)
    assert threshold == pytest.approx(expected, rel=1e-12)
    # at the 80%-power difference, scipy's noncentral t puts 80% of the statistic beyond the threshold
    nc = eighty / (pooled * math.sqrt(2 / 3))
    crit = stats.t.ppf(0.975, 4)
    assert stats.nct.sf(crit, 4, nc) + stats.nct.cdf(-crit, 4, nc) == pytest.approx(0.8, abs=1e-9)


def test_failed_runs_are_left_out_of_the_statistics_and_counted():
    rows = {r["arm"]: r for r in summarise(RESULTS, {"ed": [None, dict(epoch=2, step=5), dict(epoch=1, step=9)]})}
    assert (rows["ed"]["finished"], rows["ed"]["seeds"], rows["ed"]["first_failure"]) == (1, 3, "epoch 1, step 9")
    assert rows["ed"]["final_top1_mean"] == 40.0 and math.isnan(rows["ed"]["final_top1_ci95_low"])
    assert rows["ed"]["final_top1_per_seed"] == "40.00"


def test_every_file_is_written_with_the_setting(tmp_path):
    paths = write_comparison(RESULTS, str(tmp_path), title="cub_x", setting={"dataset": "cub: 6 / 4 images"})
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["accuracy.png", "comparison.csv", "comparison.md",
                                                         "comparison.tex", "epochs.csv"]
    md = (tmp_path / "comparison.md").read_text()
    assert "- **dataset**: cub: 6 / 4 images" in md and "| pade | 3 / 3 | 2 |" in md
    tex = (tmp_path / "comparison.tex").read_text()
    assert r"\begin{tabular}" in tex and r"cub\_x" in tex and "pade & 3/3 & $71.23 \\pm 1.17$" in tex
    assert tex == to_latex(summarise(RESULTS), "cub_x")
