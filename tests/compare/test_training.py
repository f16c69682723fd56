"""The training sections of gcp-compare: the tasks, the regime, the power statement, the claims' verdicts,
the ZCA convergence rule, the hybrid switch, the workers, and the recommendation's training evidence."""

import json
import math
from typing import Optional

import pytest
import torch
from scipy import stats as scipy_stats

from gcp.compare import main
from gcp.compare.claims import verdicts
from gcp.compare.recommend import training_section
from gcp.compare.report import markdown
from gcp.compare.tasks import digits_split, noisy_digits
from gcp.compare.training import RegimeNet, head_rank, hybrid_switch, training
from gcp.compare.training_report import gcp_minus_gap, training_summaries, training_summary
from gcp.train.stats import pooled_std, power_difference, significance_threshold


def _unit(n):
    """n values with mean 0 and sample standard deviation exactly 1."""
    z = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    return (z / z.std()).tolist()


@pytest.mark.parametrize("n, sd", [(2, 0.5), (3, 1.1), (4, 0.9), (5, 2.0)])
def test_significance_threshold_is_where_the_t_test_crosses_alpha(n, sd):
    mdd = significance_threshold(sd, n)
    a = [100 + sd * z for z in _unit(n)]
    # scipy's own t-test, on two groups of that sd whose means differ by exactly the threshold
    p_at = scipy_stats.ttest_ind(a, [v - mdd for v in a], equal_var=False).pvalue
    assert p_at == pytest.approx(0.05, rel=1e-9)
    assert scipy_stats.ttest_ind(a, [v - 1.01 * mdd for v in a], equal_var=False).pvalue < 0.05
    assert scipy_stats.ttest_ind(a, [v - 0.99 * mdd for v in a], equal_var=False).pvalue > 0.05
    assert math.isnan(significance_threshold(sd, 1))


@pytest.mark.parametrize("effect, n", [(0.8, 26), (0.5, 64), (0.2, 394)])
def test_power_difference_matches_cohens_table(effect, n):
    # Cohen (1988), Table 2.4.1: per-group n for 80% power, two-sided alpha = 0.05
    assert power_difference(1.0, n) == pytest.approx(effect, abs=0.01)
    assert power_difference(3.0, n) == pytest.approx(3 * power_difference(1.0, n), rel=1e-9)


def test_power_difference_is_detected_eighty_percent_of_the_time():
    """A simulation of scipy's own t-test at the computed difference rejects 80% of the time (5 seeds)."""
    import numpy as np

    n, delta = 5, power_difference(1.0, 5)
    assert delta > significance_threshold(1.0, 5)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40000, n)), rng.standard_normal((40000, n)) + delta
    rate = float(np.mean(scipy_stats.ttest_ind(a, b, axis=1).pvalue < 0.05))
    assert rate == pytest.approx(0.80, abs=0.01)
    assert math.isnan(power_difference(1.0, 1)) and math.isnan(power_difference(float("nan"), 5))


def test_pooled_std_is_the_root_mean_variance():
    assert pooled_std([[1.0, 3.0], [0.0, 0.0, 0.0], [5.0]]) == pytest.approx(math.sqrt((2.0 + 0.0) / 2))


def _records(finals: dict, nonfinite: Optional[dict] = None, d: Optional[int] = 64, section: str = "training"):
    """Training records of one epoch per seed (``d=None``: the layout before the head size was recorded)."""
    nonfinite = nonfinite or {}
    out = []
    for arm, values in finals.items():
        for seed, top1 in enumerate(values):
            for metric, v in (("top1", top1), ("train_loss", 0.1), ("seconds", 0.1),
                              ("nonfinite_steps", nonfinite.get(arm, 0) if seed == 0 else 0)):
                case = (f"d={d}," if d is not None else "") + f"seed={seed},epoch=0"
                out.append(dict(section=section, mode=arm, dtype="float32", case=case, metric=metric, value=float(v)))
    return out


def _status(finals, nonfinite=None):
    said = verdicts(training_summary(_records(finals, nonfinite)))
    return {v.claim.split()[1] if v.claim.startswith("the") else v.claim.split()[0]: v.status for v in said}, said


def test_claims_follow_the_table():
    same = [97.0, 97.5, 98.0]
    status, said = _status({"exact": [90.0, 90.5, 89.5], "isqrt": [97.0, 97.4, 97.2], "pade": same, "taylor": same,
                            "ed": [10.0, 11.0, 9.0], "hybrid": same, "gap": [80.0, 80.5, 79.5]}, {"ed": 40})
    assert status == {"standard": "reproduced", "Newton–Schulz": "reproduced", "Padé": "reproduced",
                      "hybrid": "reproduced", "a": "reproduced"}
    # no gap between isqrt and exact: the claim it would close cannot be tested; a higher exact reverses
    status, said = _status({"exact": [97.0, 97.5, 98.0], "isqrt": [97.1, 97.4, 98.0], "pade": same, "ed": same,
                            "gap": same})
    assert status["Newton–Schulz"] == "not reproduced" and status["Padé"] == "not testable"
    assert status["standard"] == "not reproduced" and status["a"] == "not reproduced"
    assert status["hybrid"] == "not run" and "needs the arm(s) hybrid" in said[3].evidence
    # the power of a comparison is that of its two arms' seeds: here isqrt and exact
    sd = pooled_std([[97.1, 97.4, 98.0], [97.0, 97.5, 98.0]])
    assert (f"significance threshold {significance_threshold(sd, 3):.2f} points, 80%-power difference "
            f"{power_difference(sd, 3):.2f} points") in said[1].evidence
    status, _ = _status({"exact": [99.0, 99.2, 98.8], "isqrt": [90.0, 90.5, 89.5]})
    assert status["Newton–Schulz"] == "reversed"


def test_zca_shows_accuracies_only_where_the_seeds_agree():
    def cell(d, mode, seed, top1, steps=0):
        case = f"d={d},seed={seed}"
        return [dict(section="zca", mode=mode, dtype="float32", case=case, metric=k, value=float(v)) for k, v in
                (("nonfinite_steps", steps), ("success", steps == 0), ("final_top1", top1), ("seconds", 1))]
    records = []
    for seed, (a, b) in enumerate([(98.0, 60.0), (98.5, 90.0), (97.5, 75.0)]):
        records += cell(4, "exact", seed, a) + cell(4, "pi", seed, a + 0.2)
        records += cell(32, "exact", seed, b) + cell(32, "ed", seed, b, steps=3)
    md = markdown(records, {})
    row = next(line for line in md.splitlines() if line.startswith("| exact"))
    d4, d32 = row.split("|")[2:4]
    assert "±" in d4 and "±" not in d32 and "3/3 ✓" in d32
    assert "Not converged, so shown as finite/non-finite only: d=32 (largest seed std 15.0 points)" in md
    assert "the runs have not converged and only the finite/non-finite outcome is a finding" in md


def test_the_head_pools_a_rank_deficient_covariance():
    torch.manual_seed(0)
    rank, d = head_rank(RegimeNet("exact").eval(), noisy_digits().x_test[:64])
    assert d == 64 and rank <= 15  # 16 centred positions: rank <= 15 of 64
    rank, d = head_rank(RegimeNet("exact", 8).eval(), noisy_digits().x_test[:64])
    assert d == 8 and rank <= 8
    with pytest.raises(TypeError):
        head_rank(RegimeNet("gap"), noisy_digits().x_test[:4])


def test_noisy_digits_are_fixed_by_their_own_seed():
    clean_train, y_train, clean_test, y_test = digits_split()
    task = noisy_digits()
    again = noisy_digits()
    assert torch.equal(task.x_train, again.x_train) and torch.equal(task.x_test, again.x_test)
    torch.manual_seed(123)  # the training seed does not move the images
    assert torch.equal(noisy_digits().x_train, task.x_train)
    assert not torch.equal(noisy_digits(noise_seed=1).x_train, task.x_train)
    assert torch.equal(task.y_train, y_train) and task.x_train.shape == clean_train.shape == (1437, 1, 8, 8)
    # five independent draws of each of the 360 test digits, labels repeated with them
    assert task.x_test.shape == (1800, 1, 8, 8) and torch.equal(task.y_test, y_test.repeat(5))
    noise = task.x_test.view(5, 360, 64) - clean_test.view(1, 360, 64)
    assert float(noise.std()) == pytest.approx(0.3, rel=0.02)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01)
    corr = torch.corrcoef(noise.reshape(5, -1))  # the draws are independent of each other
    assert float((corr - torch.eye(5)).abs().max()) < 0.02
    assert float((task.x_train - clean_train).std()) == pytest.approx(0.3, rel=0.02)
    with pytest.raises(ValueError):
        noisy_digits(test_draws=0)


def test_texture_classes_differ_only_in_channel_correlation():
    import numpy as np

    from gcp.compare.tasks import TEXTURE_PAIRS, correlation_textures

    task = correlation_textures()
    assert task.in_chans == 3 and task.num_classes == len(TEXTURE_PAIRS) == 6
    assert task.x_train.shape == (6 * 240, 3, 8, 8) and task.x_test.shape == (6 * 300, 3, 8, 8)
    for k, (i, j, rho) in enumerate(TEXTURE_PAIRS):
        pixels = task.x_train[task.y_train == k].permute(1, 0, 2, 3).reshape(3, -1).numpy().astype(np.float64)
        np.testing.assert_allclose(pixels.mean(axis=1), 0.0, atol=0.03)
        np.testing.assert_allclose(pixels.std(axis=1), 1.0, atol=0.03)
        corr = np.corrcoef(pixels)
        expected = np.eye(3)
        expected[i, j] = expected[j, i] = rho
        np.testing.assert_allclose(corr, expected, atol=0.03)


def test_summaries_are_per_head_size_and_read_the_older_layout():
    records = _records({"gap": [80.0, 81.0, 80.5], "isqrt": [80.2, 80.9, 80.6]}, d=16)
    records += _records({"gap": [80.0, 81.0, 80.5], "isqrt": [84.0, 85.0, 84.5]}, d=64)
    every = training_summaries(records)
    assert list(every) == [16, 64] and training_summary(records)["isqrt"]["finals"] == [84.0, 85.0, 84.5]
    assert training_summary(records, d=16)["isqrt"]["final_mean"] == pytest.approx(80.5666666, rel=1e-6)
    (d16, arm16, diff16, p16), (d64, arm64, diff64, p64) = gcp_minus_gap(every)
    assert (d16, arm16, d64, arm64) == (16, "isqrt", 64, "isqrt")
    assert diff64 == pytest.approx(4.0) and p64 == pytest.approx(
        scipy_stats.ttest_ind([84.0, 85.0, 84.5], [80.0, 81.0, 80.5], equal_var=False).pvalue)
    assert p16 > 0.5
    old = training_summaries(_records({"exact": [97.0, 98.0]}, d=None))
    assert list(old) == [0] and old[0]["exact"]["final_mean"] == 97.5
    md = markdown(records, {})
    assert "| arm | d=16 | d=64 |" in md and "d = 64: isqrt +4.00 points" in md
    assert "**The papers' claims at d = 64**" in md


def test_hybrid_switches_to_svd_pade_half_way_and_keeps_the_weights():
    model = RegimeNet("hybrid")
    assert model.head.method == "isqrt"
    switch = hybrid_switch(model, 6)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    for epoch in range(3):
        switch(epoch)
    assert model.head.method == "isqrt"
    switch(3)
    assert (model.head.method, model.head.backward) == ("svd", "pade")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


@pytest.mark.slow
def test_workers_do_not_change_the_numbers():
    one = training(["exact", "gap"], 1, [0, 1], lambda: None, workers=1)
    two = training(["exact", "gap"], 1, [0, 1], lambda: None, workers=2)
    strip = lambda rs: [(r["mode"], r["case"], r["metric"], r["value"]) for r in rs if r["metric"] != "seconds"]  # noqa: E731
    assert strip(one) == strip(two)


@pytest.mark.parametrize("arms, pattern", [("exact,nope", "unknown: nope"), ("gap,gap", "distinct"), (",", "distinct")])
def test_train_modes_are_checked_before_work(tmp_path, capsys, arms, pattern):
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--train-modes", arms, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and pattern in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_recommendation_states_when_the_training_table_disagrees():
    summary = training_summary(_records({"exact": [90.0, 90.5, 89.5], "isqrt": [97.0, 97.4, 97.2]}))
    summary[""] = dict(d=64, seeds=3, threshold=1.5, eighty=2.25)
    text = training_section("exact", summary, "runs/x")
    assert "**The training table ranks `isqrt` above the recommended `exact`**" in text and "use `isqrt`" in text
    assert "(noisy digits, d = 64 channels over 16 positions)" in text
    assert "significance threshold is 1.50 points; a true difference of 2.25 points is detected with 80% power" in text
    agree = training_section("isqrt", summary, "runs/x")
    assert "agrees with this choice" in agree and "ranks" not in agree
    assert "has no arm for `mpa`" in training_section("mpa", summary, "runs/x")


def test_recommend_reads_the_evidence_folder(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(dict(config={}, records=_records(
        {"exact": [97.0, 97.5, 98.0], "isqrt": [97.1, 97.4, 98.0]}))))
    out = tmp_path / "rec"
    assert main(["--recommend", "--dim", "8", "--batch", "2", "--evidence", str(folder), "--out", str(out)]) == 0
    text = (out / "recommendation.md").read_text()
    assert f"From `{folder}` (noisy digits, d = 64" in text and "detected with 80% power" in text
    for bad, pattern in ((tmp_path, "no results.json"), (out, "no results.json")):
        with pytest.raises(SystemExit) as exc:
            main(["--recommend", "--dim", "8", "--evidence", str(bad), "--out", str(tmp_path / "r2")])
        assert exc.value.code == 2 and pattern in capsys.readouterr().err
    (folder / "results.json").write_text("{not json")
    with pytest.raises(SystemExit):
        main(["--recommend", "--dim", "8", "--evidence", str(folder), "--out", str(tmp_path / "r3")])
    assert "is not a gcp-compare results file" in capsys.readouterr().err


def test_quick_is_checked_against_a_reference_run(tmp_path, capsys):
    from gcp.compare.report import against_reference

    agree = _records({"exact": [97.0, 97.5, 98.0], "isqrt": [97.1, 97.4, 98.0]})
    differ = _records({"exact": [90.0, 90.5, 89.5], "isqrt": [97.0, 97.4, 97.2]})
    text = "\n".join(against_reference(agree, differ, "full"))
    assert "1 of 1 claims do not point the same way as in `full`" in text and "| **no** |" in text
    assert "All 1 claims tested in both point the same way" in "\n".join(against_reference(agree, agree, "full"))
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--reference", str(tmp_path), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--reference" in capsys.readouterr().err


def test_every_head_method_is_a_training_arm_by_name(tmp_path):
    import gcp
    from gcp.compare import parse
    from gcp.compare.routes import METHOD_ARMS

    assert set(METHOD_ARMS) | {"svd", "isqrt", "mpa", "mtp"} == set(gcp.METHODS)
    args = parse(["--sections", "training", "--quick", "--train-modes", ",".join(METHOD_ARMS),
                  "--out", str(tmp_path / "c")])
    assert args.arm_list == list(METHOD_ARMS)
    for arm in METHOD_ARMS:
        model = RegimeNet(arm)
        assert model.head.method == arm and model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
