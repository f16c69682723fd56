"""The training sections of the comparison's report: summaries over seeds, tables, power and verdicts.

``training`` is GCP on the noisy digits at one or more head sizes ``d``; ``texture`` is the control
whose classes differ only in cross-channel correlation. Every sentence is generated from the records.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any, Optional

from gcp.train.stats import (
    ALPHA,
    compare_to_best,
    mean_std,
    pooled_std,
    power_difference,
    significance_threshold,
    welch_p,
)

from .claims import verdicts
from .routes import POOLING
from .tasks import NOISE_SIGMA, TEST_DRAWS
from .text import p_text, significance, table

Record = dict[str, Any]
Summary = dict[str, dict[str, Any]]


def parse_case(case: str) -> dict[str, str]:
    """``"d=64,seed=0,epoch=3"`` as ``{"d": "64", "seed": "0", "epoch": "3"}``."""
    return dict(part.split("=", 1) for part in case.split(",") if "=" in part)


def training_summaries(records: list[Record], section: str = "training") -> dict[int, dict[str, dict[str, Any]]]:
    """Per head size ``d`` and arm: final top-1 of each seed, its mean/std, the best evaluated top-1,
    seconds per epoch, non-finite steps, and the mean ± std learning curve over the evaluated
    epochs. Records written before the head size was recorded count as ``d = 0``."""
    per: dict[int, dict[str, dict[str, dict[int, dict[str, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict)))
    for r in records:
        if r["section"] != section or r["mode"] == "all" or r["case"] == "regime":
            continue
        case = parse_case(r["case"])
        per[int(case.get("d", 0))][r["mode"]][case["seed"]].setdefault(int(case["epoch"]), {})[r["metric"]] = r["value"]
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for d in sorted(per):
        out[d] = {}
        for mode, seeds in per[d].items():
            finals = [h[max(h)].get("top1", float("nan")) for h in seeds.values()]
            evaluated = sorted({e for h in seeds.values() for e, row in h.items() if "top1" in row})
            curve = [mean_std([h[e]["top1"] for h in seeds.values() if "top1" in h.get(e, {})]) for e in evaluated]
            out[d][mode] = dict(
                finals=finals, final_mean=mean_std(finals)[0], final_std=mean_std(finals)[1],
                best=max(row["top1"] for h in seeds.values() for row in h.values() if "top1" in row),
                sec_per_epoch=statistics.fmean(row["seconds"] for h in seeds.values() for row in h.values()),
                nonfinite=sum(row["nonfinite_steps"] for h in seeds.values() for row in h.values()),
                epochs=[e + 1 for e in evaluated], curve=[c[0] for c in curve], curve_std=[c[1] for c in curve],
                total_epochs=max(len(h) for h in seeds.values()))
    return out


def training_summary(records: list[Record], section: str = "training", d: Optional[int] = None
                     ) -> dict[str, dict[str, Any]]:
    """The summary per arm at head size ``d`` (default: the largest trained), or ``{}``."""
    every = training_summaries(records, section)
    if not every:
        return {}
    return every[max(every) if d is None else d]


def detectable(summary: dict[str, dict[str, Any]]) -> tuple[float, float, float, int]:
    """Seed noise pooled over the arms that trained without a non-finite step; the significance
    threshold of a t-test at ``ALPHA`` between two arms and the difference it detects with 80% power;
    and the seed count."""
    healthy = [s["finals"] for s in summary.values() if s["nonfinite"] == 0] or [s["finals"] for s in summary.values()]
    n = min(len(f) for f in healthy)
    sd = pooled_std(healthy)
    return sd, significance_threshold(sd, n), power_difference(sd, n), n


def power_sentence(summary: dict[str, dict[str, Any]]) -> str:
    """The power statement of a training table, or ``""`` with a single seed."""
    sd, threshold, eighty, n = detectable(summary)
    if not math.isfinite(threshold):
        return ""
    return (f"**Significance threshold: {threshold:.2f} points** of top-1 between two arms ({n} seeds each, pooled "
            f"seed std {sd:.2f}, two-sided t-test at p < {ALPHA}: a true difference this size reaches significance "
            f"about half the time); **detected with 80% power: {eighty:.2f} points**.")


def regime(records: list[Record], section: str = "training") -> dict[int, dict[str, int]]:
    """The measured shape of a training section's covariances per ``d``: ``cov_rank``, ``dim``,
    ``positions``."""
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for r in records:
        if r["section"] == section and r["mode"] == "all":
            out[int(parse_case(r["case"]).get("d", 0))][r["metric"]] = int(r["value"])
    return dict(out)


def _healthy_heads(summary: Summary) -> list[str]:
    """The covariance arms that trained without a non-finite step."""
    return [m for m in summary if m not in POOLING and summary[m]["nonfinite"] == 0]


def gcp_minus_gap(every: dict[int, Summary]) -> list[tuple[int, str, float, Optional[float]]]:
    """Per ``d`` with a ``gap`` arm: the best healthy covariance arm, its mean minus gap's, Welch p."""
    out = []
    for d, summary in every.items():
        heads = _healthy_heads(summary)
        if "gap" not in summary or not heads:
            continue
        best = max(heads, key=lambda m: summary[m]["final_mean"])
        diff = summary[best]["final_mean"] - summary["gap"]["final_mean"]
        out.append((d, best, diff, welch_p(summary[best]["finals"], summary["gap"]["finals"])))
    return out


def _p(p: Optional[float]) -> str:
    return "one seed" if p is None else f"p = {p:.3f}"


def _rank(records: list[Record], section: str) -> str:
    shapes = regime(records, section)
    return "; ".join(f"d = {d}: at most {s['cov_rank']} over {s['positions']} positions" for d, s in shapes.items()
                     if "cov_rank" in s) or "not measured"


def training_markdown(records: list[Record], number: int) -> list[str]:
    """The report's noisy-digits section: the setting, the final top-1 per arm and ``d``, the table at
    the largest ``d``, the power statement and the papers' claims."""
    every = training_summaries(records)
    if not every:
        return []
    dmax = max(every)
    summary = every[dmax]
    arms = list(dict.fromkeys(m for s in every.values() for m in s))
    epochs = max(s["total_epochs"] for s in summary.values())
    evaluated = max((s["epochs"] for s in summary.values()), key=len)
    parts = [f"## {number}. Training in the GCP regime: noisy digits", "",
             f"scikit-learn's `load_digits` (real 8×8 handwritten digits shipped in the wheel: offline) with fixed "
             f"Gaussian pixel noise (σ = {NOISE_SIGMA:g} on pixels in [0, 1]; the noise has its own seed, so every arm "
             f"and seed sees the same images); 1437 training images, and each of the 360 test digits drawn "
             f"{TEST_DRAWS} times with independent noise ({360 * TEST_DRAWS} test images: the test set's own sampling "
             "noise averages out of each run). A CNN (two 3×3 blocks, the second of stride 2: a 4×4 map of 64 "
             "channels) ends in a 1×1 reduction to d channels and the head. Measured rank of the covariances: "
             f"{_rank(records, 'training')}; where it is below d there are more channels than positions, as in GCP on "
             "ImageNet "
             "(256 channels over 196 positions). `gap`: global average pooling of the same d channels; `hybrid`: "
             "Newton–Schulz for the first half of the epochs, then SVD-Padé (Song et al., ICCV 2021). SGD with a "
             f"cosine schedule to 0 over {epochs} epochs; test top-1 after epoch(s) {', '.join(map(str, evaluated))}. "
             "Steps with a non-finite gradient are skipped and counted.", ""]
    if len(every) > 1:
        rows = [[m] + [f"{every[d][m]['final_mean']:.2f} ± {every[d][m]['final_std']:.2f}" if m in every[d] else "—"
                       for d in every] for m in arms]
        parts += ["Final top-1 (%) by head size, mean ± std over seeds:", "",
                  table(["arm"] + [f"d={d}" for d in every], rows), ""]
        diffs = gcp_minus_gap(every)
        if diffs:
            parts += ["Best covariance arm (without non-finite steps) minus `gap`: " + "; ".join(
                f"d = {d}: {m} {diff:+.2f} points ({_p(p)})" for d, m, diff, p in diffs) + ".", ""]
    best, pvals = compare_to_best({m: s["finals"] for m, s in summary.items()})
    rows = [[m, f"{s['final_mean']:.2f} ± {s['final_std']:.2f} (n={len(s['finals'])})",
             "best mean" if m == best else p_text(pvals[m]) + (" (noise)" if (pvals[m] or 0) >= ALPHA else ""),
             f"{s['best']:.2f}", f"{s['sec_per_epoch']:.2f}", f"{int(s['nonfinite'])}"]
            for m, s in summary.items()]
    parts += [f"At d = {dmax}: final top-1, mean ± sample std over seeds; `p`: Welch's t-test against the best "
              f"mean, Holm-adjusted over the arms; p ≥ {ALPHA} means the difference is within the seed-to-seed "
              "noise.", "",
              table(["arm", "final top-1 (%)", "p vs best", "best top-1 (%)", "s / epoch", "non-finite steps"], rows),
              ""]
    power = power_sentence(summary)
    if power:
        parts += [power + " Plot: `training_accuracy.png`.", ""]
    parts += [f"**The papers' claims at d = {dmax}** (generated by `gcp.compare.claims` from the table):", ""]
    parts += [f"- {v.line()}." for v in verdicts(summary)] + [""]
    return parts


def training_conclusions(records: list[Record]) -> list[str]:
    every = training_summaries(records)
    if not every:
        return []
    dmax = max(every)
    summary = every[dmax]
    out = significance({m: s["finals"] for m, s in summary.items()}, f"Noisy digits at d = {dmax}, final top-1")
    skipped = {m: int(s["nonfinite"]) for m, s in summary.items() if s["nonfinite"]}
    out.append(f"Noisy digits at d = {dmax}, non-finite steps: "
               + (", ".join(f"{m} {k}" for m, k in skipped.items()) if skipped else "none in any arm") + ".")
    diffs = gcp_minus_gap(every)
    if len(diffs) > 1:
        out.append("GCP against GAP by head size: " + "; ".join(
            f"d = {d} {diff:+.2f} points ({m}, {_p(p)})" for d, m, diff, p in diffs) + ".")
    sd, threshold, eighty, n = detectable(summary)
    if math.isfinite(threshold):
        out.append(f"Noisy digits, power: with {n} seeds and a pooled seed std of {sd:.2f} points, the significance "
                   f"threshold is {threshold:.2f} points and a true difference of {eighty:.2f} points is detected "
                   "with 80% power; a smaller difference can pass unseen.")
    return out + [f"Claim: {v.line()}." for v in verdicts(summary)]


def texture_markdown(records: list[Record], number: int) -> list[str]:
    summary = training_summary(records, "texture")
    if not summary:
        return []
    from .tasks import TEXTURE_PAIRS

    d = max(training_summaries(records, "texture"))
    rows = [[m, f"{s['final_mean']:.2f} ± {s['final_std']:.2f} (n={len(s['finals'])})", f"{int(s['nonfinite'])}"]
            for m, s in summary.items()]
    return [f"## {number}. Texture control: classes that differ only in cross-channel correlation", "",
            f"{len(TEXTURE_PAIRS)} classes of 3-channel 8×8 images whose pixels are independent draws of a "
            "zero-mean, unit-variance vector; each class correlates one pair of channels (±0.5). Means and variances "
            "are equal across classes, so only second-order statistics separate them. Same network, head size "
            f"d = {d} and schedule as the noisy digits (chance: {100 / len(TEXTURE_PAIRS):.1f}%).", "",
            table(["arm", "final top-1 (%)", "non-finite steps"], rows), "",
            *[f"- {line}" for line in texture_conclusions(records)], ""]


def texture_conclusions(records: list[Record]) -> list[str]:
    summary = training_summary(records, "texture")
    if "gap" not in summary or len(summary) < 2:
        return []
    out = []
    for m in (a for a in summary if a != "gap"):
        diff = summary[m]["final_mean"] - summary["gap"]["final_mean"]
        p = welch_p(summary[m]["finals"], summary["gap"]["finals"])
        verdict = ("within the seed noise" if p is None or p >= ALPHA else
                   f"{m} {'higher' if diff > 0 else 'lower'}: GAP {'loses' if diff > 0 else 'wins'} on this task")
        out.append(f"Texture control: {m} {summary[m]['final_mean']:.2f}% vs gap {summary['gap']['final_mean']:.2f}%, "
                   f"difference {diff:+.2f} points ({_p(p)}): {verdict}.")
    return out
