"""The training section of gcp-compare: its regime, its power statement, the claims' verdicts, the
ZCA convergence rule, the hybrid switch, the workers, and the recommendation's training evidence."""

import json
import math
from typing import Optional

import pytest
import torch
from scipy import stats as scipy_stats

from gcp.compare import main
from gcp.compare.claims import verdicts
from gcp.compare.recommend import training_section
from gcp.compare.report import markdown, training_summary
from gcp.compare.training import RegimeNet, head_rank, hybrid_switch, load_digits_split, training
from gcp.train.stats import detectable_difference, pooled_std


def _unit(n):
    """n values with mean 0 and sample standard deviation exactly 1."""
    z = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    return (z / z.std()).tolist()


@pytest.mark.parametrize("n, sd", [(2, 0.5), (3, 1.1), (4, 0.9), (5, 2.0)])
def test_detectable_difference_is_where_the_t_test_crosses_alpha(n, sd):
    mdd = detectable_difference(sd, n)
    a = [100 + sd * z for z in _unit(n)]
    # scipy's own t-test, on two groups of that sd whose means differ by exactly the threshold
    p_at = scipy_stats.ttest_ind(a, [v - mdd for v in a], equal_var=False).pvalue
    assert p_at == pytest.approx(0.05, rel=1e-9)
    assert scipy_stats.ttest_ind(a, [v - 1.01 * mdd for v in a], equal_var=False).pvalue < 0.05
    assert scipy_stats.ttest_ind(a, [v - 0.99 * mdd for v in a], equal_var=False).pvalue > 0.05
    assert math.isnan(detectable_difference(sd, 1))


def test_pooled_std_is_the_root_mean_variance():
    assert pooled_std([[1.0, 3.0], [0.0, 0.0, 0.0], [5.0]]) == pytest.approx(math.sqrt((2.0 + 0.0) / 2))


def _records(finals: dict, nonfinite: Optional[dict] = None):
    nonfinite = nonfinite or {}
    out = []
    for arm, values in finals.items():
        for seed, top1 in enumerate(values):
            for metric, v in (("top1", top1), ("train_loss", 0.1), ("seconds", 0.1),
                              ("nonfinite_steps", nonfinite.get(arm, 0) if seed == 0 else 0)):
                out.append(dict(section="training", mode=arm, dtype="float32", case=f"seed={seed},epoch=0",
                                metric=metric, value=float(v)))
    return out


def _status(finals, nonfinite=None, mdd=1.0):
    said = verdicts(training_summary(_records(finals, nonfinite)), mdd)
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
    assert "detect differences of 1.0 points" in said[1].evidence
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
    rank, d = head_rank(RegimeNet("exact").eval(), load_digits_split()[2][:64])
    assert d == 32 and rank <= 15  # 16 centred positions: rank <= 15 of 32
    with pytest.raises(TypeError):
        head_rank(RegimeNet("gap"), load_digits_split()[2][:4])


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
    text = training_section("exact", summary, "runs/x")
    assert "**The training table ranks `isqrt` above the recommended `exact`**" in text and "use `isqrt`" in text
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
    assert f"From `{folder}`" in (out / "recommendation.md").read_text()
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
