"""Turn comparison records into report.md, results.csv/json, PNG plots and a terminal summary."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections import defaultdict
from typing import Any, Iterable, Optional

from gcp.train.stats import ALPHA, compare_to_best, detectable_difference, mean_std, pooled_std, ranges_overlap

from .claims import verdicts

#: the ZCA section shows accuracies only where the stable modes' seed std is at most this (points)
CONVERGED_STD = 3.0

Record = dict[str, Any]


def read_records(folder: str, flag: str) -> list[Record]:
    """The records of an earlier run's ``results.json`` in ``folder`` (given by ``flag``)."""
    from ..errors import GCPError

    path = os.path.join(folder, "results.json")
    if not os.path.isfile(path):
        raise GCPError(f"{flag} {folder!r}: no results.json there; give the --out folder of a gcp-compare run")
    try:
        with open(path, encoding="utf-8") as fh:
            records = json.load(fh)["records"]
        if not all(isinstance(r, dict) and {"section", "mode", "case", "metric", "value"} <= set(r) for r in records):
            raise ValueError("records without section/mode/case/metric/value")
    except (ValueError, KeyError, TypeError) as exc:
        raise GCPError(f"{flag} {path!r} is not a gcp-compare results file ({exc.__class__.__name__})") from exc
    return records


def _value(records: Iterable[Record], **where: Any) -> Optional[float]:
    for r in records:
        if all(r.get(k) == v for k, v in where.items()):
            return r["value"]
    return None


def _fmt(v: Optional[float], spec: str = ".1e") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def _modes(records: list[Record], section: str) -> list[str]:
    return list(dict.fromkeys(r["mode"] for r in records if r["section"] == section))


def _cases(records: list[Record], section: str) -> list[str]:
    return list(dict.fromkeys(r["case"] for r in records if r["section"] == section))


def training_summary(records: list[Record]) -> dict[str, dict[str, float]]:
    """Per mode: final top-1 mean/std over seeds, best top-1, seconds per epoch, non-finite steps."""
    per: dict[str, dict[str, dict[int, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r["section"] != "training" or r["case"] == "regime":
            continue
        seed, epoch = (int(p.split("=")[1]) for p in r["case"].split(","))
        per[r["mode"]][str(seed)].setdefault(epoch, {})[r["metric"]] = r["value"]
    out = {}
    for mode, seeds in per.items():
        finals = [h[max(h)]["top1"] for h in seeds.values()]
        out[mode] = dict(
            finals=finals, final_mean=mean_std(finals)[0], final_std=mean_std(finals)[1],
            best=max(e["top1"] for h in seeds.values() for e in h.values()),
            sec_per_epoch=statistics.fmean(e["seconds"] for h in seeds.values() for e in h.values()),
            nonfinite=sum(e["nonfinite_steps"] for h in seeds.values() for e in h.values()),
            curve=[mean_std([h[e]["top1"] for h in seeds.values() if e in h])[0]
                   for e in range(max(len(h) for h in seeds.values()))],
            curve_std=[mean_std([h[e]["top1"] for h in seeds.values() if e in h])[1]
                       for e in range(max(len(h) for h in seeds.values()))],
        )
    return out


def detectable(summary: dict[str, dict[str, Any]]) -> tuple[float, float, int]:
    """Seed noise pooled over the arms that trained without a non-finite step, and the smallest
    difference between two arms it lets a t-test at ``ALPHA`` detect; with the seed count."""
    healthy = [s["finals"] for s in summary.values() if s["nonfinite"] == 0] or [s["finals"] for s in summary.values()]
    n = min(len(f) for f in healthy)
    sd = pooled_std(healthy)
    return sd, detectable_difference(sd, n), n


def regime(records: list[Record]) -> dict[str, int]:
    """The measured shape of the training section's covariances: ``cov_rank``, ``dim``, ``positions``."""
    return {r["metric"]: int(r["value"]) for r in records if r["section"] == "training" and r["case"] == "regime"}


def zca_converged(cells: dict[str, dict[str, Any]]) -> tuple[bool, float]:
    """Whether the modes whose every run was finite agree across seeds within ``CONVERGED_STD``
    points, and the largest seed std among them."""
    stable = [mean_std(c["finals"])[1] for c in cells.values() if c["finite_runs"] == c["runs"] and c["runs"] > 1]
    worst = max(stable) if stable else float("nan")
    return bool(stable) and worst <= CONVERGED_STD, worst


def zca_summary(records: list[Record]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per group dimension and mode: final top-1 of each seed, runs without a non-finite step,
    total non-finite steps."""
    per: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(
        lambda: dict(finals=[], finite_runs=0, runs=0, nonfinite=0)))
    for r in records:
        if r["section"] != "zca":
            continue
        d = r["case"].split(",")[0]
        cell = per[d][r["mode"]]
        if r["metric"] == "final_top1":
            cell["finals"].append(r["value"])
            cell["runs"] += 1
        elif r["metric"] == "success":
            cell["finite_runs"] += int(r["value"])
        elif r["metric"] == "nonfinite_steps":
            cell["nonfinite"] += int(r["value"])
    return per


def _p(p: Optional[float]) -> str:
    return "n/a (1 seed)" if p is None else f"{p:.2f}"


def _significance(groups: dict[str, list[float]], what: str) -> list[str]:
    """Sentences: the best group, the ones within noise of it, the ones significantly below."""
    if len(groups) < 2:
        return []
    best, pvals = compare_to_best(groups)
    m, sd = mean_std(groups[best])
    n = len(groups[best])
    if any(p is None for p in pvals.values()):
        return [f"{what}: highest mean {best} ({m:.1f}%), but with a single seed no difference can be "
                "tested; the table does not rank the modes."]
    same = sorted(k for k, p in pvals.items() if p >= ALPHA)
    below = sorted((k for k, p in pvals.items() if p < ALPHA), key=lambda k: pvals[k])
    text = f"{what}: highest mean {best} ({m:.1f} ± {sd:.1f}%, {n} seeds)"
    if same:
        text += (f"; not significantly different from it (Welch's t-test, Holm-adjusted p ≥ {ALPHA}): "
                 f"{', '.join(same)}"
                 " — their order in the table is noise")
    if below:
        text += "; significantly lower: " + ", ".join(
            f"{k} ({mean_std(groups[k])[0]:.1f}%, p = {pvals[k]:.3f})" for k in below)
    return [text + "."]


def conclusions(records: list[Record]) -> list[str]:
    """The report's "what this says", generated from the measured records (nothing pre-written)."""
    out: list[str] = []
    stab = [r for r in records if r["section"] == "stability" and r["metric"] == "nonfinite_fraction"]
    if stab:
        bad = defaultdict(list)
        for r in stab:
            if r["value"] > 0:
                bad[r["mode"]].append(f"{r['value']:.0%} {r['dtype']}")
        modes = list(dict.fromkeys(r["mode"] for r in stab))
        if bad:
            out.append("Stability: non-finite gradients on the degenerate suite for "
                       + "; ".join(f"{m} ({', '.join(v)})" for m, v in bad.items())
                       + f". Every other mode ({', '.join(m for m in modes if m not in bad)}) stayed finite.")
        else:
            out.append("Stability: every mode stayed finite on the degenerate suite.")
    gaps = [c for c in _cases(records, "accuracy") if c.startswith("ratio=")]
    if gaps:
        tight = gaps[-1]
        errs = {m: _value(records, section="accuracy", mode=m, dtype="float64", case=tight, metric="grad_rel_err")
                for m in _modes(records, "accuracy")}
        errs = {m: e for m, e in errs.items() if e is not None}
        if errs:
            exactish = sorted(m for m, e in errs.items() if e <= 1e-6)
            smooth = sorted(m for m, e in errs.items() if e > 1e-1)
            out.append(f"Accuracy at the smallest eigengap ({tight}, float64): within 1e-6 of the exact gradient: "
                       f"{', '.join(exactish) or 'none'}; more than 10% off (smoothed or a different function): "
                       f"{', '.join(smooth) or 'none'}.")
    speed_cases = _cases(records, "speed")
    if speed_cases:
        big = speed_cases[-1]
        rows = []
        for m in _modes(records, "speed"):
            med = _value(records, section="speed", mode=m, case=big, metric="fwd_bwd_over_eigh")
            lo = _value(records, section="speed", mode=m, case=big, metric="fwd_bwd_over_eigh_min")
            hi = _value(records, section="speed", mode=m, case=big, metric="fwd_bwd_over_eigh_max")
            if med is not None:
                rows.append((med, m, (lo if lo is not None else med, hi if hi is not None else med)))
        rows.sort()
        if rows:
            first = rows[0]
            tied = [m for _, m, rng in rows[1:] if ranges_overlap(rng, first[2])]
            text = (f"Speed at {big}: fastest {first[1]} ({first[0]:.2f}× eigh, rounds {first[2][0]:.2f}–"
                    f"{first[2][1]:.2f})")
            text += (f"; within its round-to-round spread, hence not distinguishable: {', '.join(tied)}"
                     if tied else "; no other mode's range overlaps it")
            out.append(text + ". Order: " + ", ".join(f"{m} {med:.2f}" for med, m, _ in rows) + ".")
    summary = training_summary(records)
    if summary:
        sd, mdd, n = detectable(summary)
        out += _significance({m: s["finals"] for m, s in summary.items()}, "GCP regime, final top-1")
        skipped = {m: int(s["nonfinite"]) for m, s in summary.items() if s["nonfinite"]}
        out.append("GCP regime, non-finite steps: " + (", ".join(f"{m} {k}" for m, k in skipped.items())
                                                        if skipped else "none in any arm") + ".")
        if math.isfinite(mdd):
            out.append(f"GCP regime, power: with {n} seeds and a seed-to-seed std of {sd:.2f} points (pooled over the "
                       f"arms without non-finite steps), two arms must differ by at least {mdd:.2f} points of "
                       f"top-1 for a t-test to reach p < {ALPHA}; smaller differences are not resolved here.")
        out += [f"Claim: {v.line()}." for v in verdicts(summary, mdd)]
    zca = zca_summary(records)
    for d, cells in zca.items():
        failing = {m: c for m, c in cells.items() if c["finite_runs"] < c["runs"]}
        text = f"ZCA {d}: " + ("non-finite steps in " + ", ".join(
            f"{m} ({c['runs'] - c['finite_runs']} of {c['runs']} runs, {c['nonfinite']} steps)"
            for m, c in failing.items()) if failing else "every run finite")
        converged, worst = zca_converged(cells)
        if not converged:
            out.append(text + (f". Accuracies are not compared: the finite modes' seeds disagree by up to "
                               f"{worst:.1f} points (std > {CONVERGED_STD:g}), so the runs have not converged and "
                               "only the finite/non-finite outcome is a finding." if math.isfinite(worst) else "."))
            continue
        healthy = {m: c["finals"] for m, c in cells.items() if m not in failing}
        sig = _significance(healthy, "among the finite modes, final top-1") if len(healthy) > 1 else []
        out.append(text + (". " + sig[0][0].upper() + sig[0][1:] if sig else "."))
    return out


def claim_verdicts(records: list[Record]) -> dict[str, str]:
    """Each claim's status in a run's records (empty without a training section)."""
    summary = training_summary(records)
    if not summary:
        return {}
    return {v.claim: v.status for v in verdicts(summary, detectable(summary)[1])}


def against_reference(records: list[Record], reference: list[Record], where: str) -> list[str]:
    """Whether this run's verdicts on the papers' claims point the same way as a reference run's
    (``--reference``: typically the full run, against which ``--quick`` is checked)."""
    mine, theirs = claim_verdicts(records), claim_verdicts(reference)
    shared = [c for c in mine if c in theirs and "not run" not in (mine[c], theirs[c])]
    if not shared:
        return [f"No claim was tested both here and in the reference run `{where}`."]
    rows = [[c, mine[c], theirs[c], "yes" if mine[c] == theirs[c] else "**no**"] for c in shared]
    differ = [c for c in shared if mine[c] != theirs[c]]
    verdict = (f"All {len(shared)} claims tested in both point the same way as in `{where}`." if not differ else
               f"{len(differ)} of {len(shared)} claims do not point the same way as in `{where}`: "
               + "; ".join(f"{c} ({mine[c]} here, {theirs[c]} there)" for c in differ) + ".")
    return [_table(["claim", "this run", "reference", "same"], rows), "", verdict]


def markdown(records: list[Record], config: dict[str, Any], reference: Optional[tuple[str, list[Record]]] = None
             ) -> str:
    parts = ["# Backward-strategy comparison", "",
             "Configuration: " + ", ".join(f"{k}={v}" for k, v in config.items()), ""]
    acc_modes = _modes(records, "accuracy")
    if acc_modes:
        parts += ["## 1. Gradient accuracy", "",
                  "Relative error (Frobenius) of the gradient of the matrix square root against the float64 "
                  "`exact` reference. `ratio=r`: eigenvalues `1, r, r², …` (eigengap shrinks as r → 1); "
                  "`cov n<d` / `cov n>d`: covariances of Gaussian samples.", ""]
        for dt in dict.fromkeys(r["dtype"] for r in records if r["section"] == "accuracy"):
            cases = _cases(records, "accuracy")
            rows = [[m] + [_fmt(_value(records, section="accuracy", mode=m, dtype=dt, case=c, metric="grad_rel_err"))
                           for c in cases] for m in acc_modes]
            parts += [f"**{dt} input**", "", _table(["mode"] + cases, rows), ""]
        rows = [[m] + [_fmt(_value(records, section="accuracy", mode=m, dtype="float64", case=c,
                                   metric="forward_rel_err")) for c in _cases(records, "accuracy")]
                for m in acc_modes]
        parts += ["Forward relative error (float64 input):", "",
                  _table(["mode"] + _cases(records, "accuracy"), rows), ""]
    stab_modes = _modes(records, "stability")
    if stab_modes:
        dts = list(dict.fromkeys(r["dtype"] for r in records if r["section"] == "stability"))
        def cell(m: str, dt: str) -> str:
            frac = _value(records, section="stability", mode=m, dtype=dt, metric="nonfinite_fraction")
            norm = _value(records, section="stability", mode=m, dtype=dt, metric="max_grad_norm")
            return f"{_fmt(frac, '.0%')} / {_fmt(norm, '.1e')}"

        rows = [[m] + [cell(m, dt) for dt in dts] for m in stab_modes]
        parts += ["## 2. Stability", "",
                  "Degenerate suite: identity, rotated repeated eigenvalues, a rank-deficient covariance "
                  "(n < d), scales 1e-6 and 1e6. Cells: fraction of inputs with a non-finite gradient / largest "
                  "finite gradient norm ÷ incoming gradient norm.", "", _table(["mode"] + dts, rows), ""]
    speed_modes = _modes(records, "speed")
    if speed_modes:
        cases = _cases(records, "speed")
        dt = next(r["dtype"] for r in records if r["section"] == "speed")
        def cell(m: str, c: str) -> str:
            q = {k: _value(records, section="speed", mode=m, case=c, metric=k)
                 for k in ("fwd_over_eigh", "fwd_bwd_over_eigh", "fwd_bwd_over_eigh_min", "fwd_bwd_over_eigh_max")}
            spread = (f" ({_fmt(q['fwd_bwd_over_eigh_min'], '.2f')}–{_fmt(q['fwd_bwd_over_eigh_max'], '.2f')})"
                      if q["fwd_bwd_over_eigh_min"] is not None else "")
            return f"{_fmt(q['fwd_over_eigh'], '.2f')} / {_fmt(q['fwd_bwd_over_eigh'], '.2f')}{spread}"

        rows = [[m] + [cell(m, c) for c in cases] for m in speed_modes]
        parts += ["## 3. Speed", "",
                  f"Forward / forward+backward time of a batch of {dt} covariances as a multiple of "
                  "`torch.linalg.eigh` forward, measured in the same interleaved rounds: median, and in "
                  "brackets the lowest and highest forward+backward ratio over the rounds. Modes whose "
                  "ranges overlap are not distinguishable by this measurement. The pooling heads that are not "
                  "a square root (gap, bcnn, cbp) are timed from the (B, d, 196) features to their "
                  "representation, the routes from the covariance to its square root.", "",
                  _table(["mode"] + cases, rows), ""]
    summary = training_summary(records)
    if summary:
        best, pvals = compare_to_best({m: s["finals"] for m, s in summary.items()})
        rows = [[m, f"{s['final_mean']:.2f} ± {s['final_std']:.2f} (n={len(s['finals'])})",
                 "best mean" if m == best else _p(pvals[m]) + (" (noise)" if (pvals[m] or 0) >= ALPHA else ""),
                 f"{s['best']:.2f}", f"{s['sec_per_epoch']:.2f}", f"{int(s['nonfinite'])}"]
                for m, s in summary.items()]
        shape = regime(records)
        rank = (f"measured rank ≤ {shape['cov_rank']} of d = {shape['dim']} over {shape['positions']} positions"
                if shape else "rank-deficient by construction")
        sd, mdd, n = detectable(summary)
        epochs = max(len(s["curve"]) for s in summary.values())
        parts += ["## 4. Training in the GCP regime", "",
                  "A small CNN on scikit-learn's `load_digits` (1797 real 8×8 handwritten digits shipped in the "
                  "wheel: offline and reproducible; 80/20 split, 360 test images). Its second block has stride 2, so "
                  "the head sees a 4×4 map; a 1×1 reduction to 32 channels gives covariances of 32 channels over 16 "
                  f"positions ({rank}): more channels than positions, as in GCP on ImageNet (256 channels over 196 "
                  "positions), where the exact gradient of the square root is large at the null eigenvalues. "
                  "`gap`: global average pooling of the same 32 channels (the baseline); `hybrid`: Newton–Schulz "
                  "for the first half of the epochs, then SVD-Padé (Song et al., ICCV 2021). SGD with a cosine "
                  f"schedule to 0 over {epochs} epochs, so the last epoch is converged. Steps with a non-finite "
                  "gradient are skipped and counted. Final top-1: mean ± sample std over seeds; `p`: Welch's "
                  "t-test against the best mean, Holm-adjusted over the arms; p ≥ "
                  f"{ALPHA} means the difference is within the seed-to-seed noise.", "",
                  _table(["arm", "final top-1 (%)", "p vs best", "best top-1 (%)", "s / epoch",
                          "non-finite steps"], rows), ""]
        if math.isfinite(mdd):
            parts += [f"**Smallest detectable difference: {mdd:.2f} points** of top-1 between two arms "
                      f"({n} seeds each, pooled seed std {sd:.2f}, two-sided t-test at p < {ALPHA}). Learning "
                      "curves (mean ± std over seeds): `training_accuracy.png`.", ""]
        said = verdicts(summary, mdd)
        parts += ["**The papers' claims at this scale** (generated by `gcp.compare.claims` from the table):", ""]
        parts += [f"- {v.line()}." for v in said] + [""]
    zca = zca_summary(records)
    if zca:
        dims = list(zca)
        zca_modes = list(dict.fromkeys(m for cells in zca.values() for m in cells))
        converged = {d: zca_converged(zca[d]) for d in dims}
        rows = []
        for m in zca_modes:
            cells = []
            for d in dims:
                c = zca[d].get(m)
                if c is None:
                    cells.append("—")
                    continue
                mean, sd = mean_std(c["finals"])
                mark = "✓" if c["finite_runs"] == c["runs"] else f"✗ {c['nonfinite']} NaN steps"
                accuracy = f", {_fmt(mean, '.1f')} ± {_fmt(sd, '.1f')}%" if converged[d][0] else ""
                cells.append(f"{c['finite_runs']}/{c['runs']} {mark}{accuracy}")
            rows.append([m] + cells)
        unconverged = [d for d in dims if not converged[d][0]]
        parts += ["## 5. ZCA whitening vs. group dimension", "",
                  "Scaled-down reproduction of Wang et al. (NeurIPS 2019): ZCA whitening of 32 pooled features "
                  "in groups of d, eigendecomposition in float32 as in the paper, batch 16 (so groups with d ≥ 16 "
                  "have clusters of numerically repeated eigenvalues), cosine schedule to 0. Cells: runs with "
                  "every step finite / runs, then final top-1 mean ± std over seeds where the run converged: "
                  f"the finite modes' seeds agree within a std of {CONVERGED_STD:g} points."
                  + (f" Not converged, so shown as finite/non-finite only: {', '.join(unconverged)} (largest seed "
                     "std " + ", ".join(f"{converged[d][1]:.1f}" for d in unconverged) + " points)."
                     if unconverged else ""), "",
                  _table(["mode"] + dims, rows), ""]
    if reference is not None:
        parts += ["## Against the reference run", ""] + against_reference(records, reference[1], reference[0]) + [""]
    said = conclusions(records)
    if said:
        parts += ["## What this says", "",
                  "Generated from the numbers above by `gcp.compare.report.conclusions` (nothing here is "
                  "written in advance):", ""] + [f"- {line}" for line in said] + [""]
    parts += ["Plots: `grad_error_vs_gap.png`, `time_vs_d.png`, `training_accuracy.png`.", ""]
    return "\n".join(parts)


def terminal_summary(records: list[Record]) -> str:
    """One line per mode: gradient error at the smallest gap, non-finite fraction, speed, accuracy."""
    modes = list(dict.fromkeys(r["mode"] for r in records if r["section"] != "zca" and r["case"] != "regime"))
    gaps = [c for c in _cases(records, "accuracy") if c.startswith("ratio=")]
    tight = gaps[-1] if gaps else None
    speed_cases = _cases(records, "speed")
    big = speed_cases[-1] if speed_cases else None
    summary = training_summary(records)
    rows = []
    for m in modes:
        rows.append([
            m,
            _fmt(_value(records, section="accuracy", mode=m, dtype="float64", case=tight, metric="grad_rel_err")),
            _fmt(_value(records, section="stability", mode=m, dtype="float32", metric="nonfinite_fraction"), ".0%"),
            _fmt(_value(records, section="speed", mode=m, case=big, metric="fwd_bwd_over_eigh"), ".2f"),
            f"{summary[m]['final_mean']:.1f}" if m in summary else "—",
        ])
    return _table(["mode", f"grad err ({tight}, f64)", "non-finite (f32 suite)", f"fwd+bwd ÷ eigh ({big})",
                   "GCP-regime top-1 (%)"], rows)


def _finish(fig: Any, ax: Any, path: str) -> str:
    """Legend, layout, save, close; returns ``path``."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plots(records: list[Record], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    cmap = plt.get_cmap("tab20")
    colour = {m: cmap(i % 20) for i, m in enumerate(dict.fromkeys(r["mode"] for r in records))}

    gaps = [c for c in _cases(records, "accuracy") if c.startswith("ratio=")]
    if gaps:
        dts = list(dict.fromkeys(r["dtype"] for r in records if r["section"] == "accuracy"))
        fig, axes = plt.subplots(1, len(dts), figsize=(6 * len(dts), 4.5), dpi=110, squeeze=False)
        xs = [1 - float(c.split("=")[1]) for c in gaps]
        for ax, dt in zip(axes[0], dts):
            for m in _modes(records, "accuracy"):
                ys = [_value(records, section="accuracy", mode=m, dtype=dt, case=c, metric="grad_rel_err")
                      for c in gaps]
                ys = [max(y, 1e-17) if y is not None and math.isfinite(y) else float("nan") for y in ys]
                ax.plot(xs, ys, marker="o", ms=3, color=colour[m], label=m)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.invert_xaxis()
            ax.set_xlabel("relative eigengap 1 − λ₍ᵢ₊₁₎/λᵢ (log; smaller = closer eigenvalues)")
            ax.set_ylabel("gradient relative error vs float64 exact")
            ax.set_title(f"Gradient error vs eigengap ({dt} input)")
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=8, title="mode\n(0 plotted at 1e-17)",
                   title_fontsize=7)
        fig.tight_layout(rect=(0, 0, 0.88, 1))
        path = os.path.join(out, "grad_error_vs_gap.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    sizes = _cases(records, "speed")
    if sizes:
        fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=110)
        ds = [int(c.split("=")[1]) for c in sizes]
        for m in _modes(records, "speed"):
            ax.plot(ds, [_value(records, section="speed", mode=m, case=c, metric="fwd_bwd_ms") for c in sizes],
                    marker="o", ms=3, color=colour[m], label=m)
        ax.plot(ds, [_value(records, section="speed", mode=_modes(records, "speed")[0], case=c, metric="eigh_ms")
                     for c in sizes], "k--", label="eigh forward")
        ax.set_yscale("log")
        ax.set_xlabel("matrix size d")
        ax.set_ylabel("forward+backward time per batch (ms, log)")
        ax.set_title("Time vs matrix size")
        ax.set_xticks(ds)
        ax.grid(True, which="both", alpha=0.3)
        written.append(_finish(fig, ax, os.path.join(out, "time_vs_d.png")))

    summary = training_summary(records)
    if summary:
        fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=110)
        finals = [s["final_mean"] for s in summary.values() if math.isfinite(s["final_mean"])]
        # zoom on the converged end, where the arms differ; an arm that failed is named in the legend
        floor = max(0.0, min(f for f in finals if f > 50) - 15) if finals and max(finals) > 50 else 0.0
        for m, s in summary.items():
            xs = range(1, len(s["curve"]) + 1)
            notes = [f"n={len(s['finals'])}"]
            if s["nonfinite"]:
                notes.append(f"{int(s['nonfinite'])} non-finite steps")
            if s["final_mean"] < floor:
                notes.append(f"final {s['final_mean']:.0f}%, below the axis")
            ax.plot(xs, s["curve"], marker="o", ms=3, color=colour[m], label=f"{m} ({', '.join(notes)})")
            lo = [c - e for c, e in zip(s["curve"], s["curve_std"])]
            hi = [c + e for c, e in zip(s["curve"], s["curve_std"])]
            ax.fill_between(xs, lo, hi, color=colour[m], alpha=0.12, linewidth=0)
        ax.set_ylim(floor, 100)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1 accuracy (%), mean ± std over seeds")
        ax.set_title("GCP regime (32 channels over 16 positions), load_digits")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        written.append(_finish(fig, ax, os.path.join(out, "training_accuracy.png")))
    return written


def write_all(records: list[Record], config: dict[str, Any], out: str,
              reference: Optional[tuple[str, list[Record]]] = None) -> list[str]:
    os.makedirs(out, exist_ok=True)
    paths = []
    path = os.path.join(out, "results.csv")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["section", "mode", "dtype", "case", "metric", "value"])
        writer.writeheader()
        writer.writerows(records)
    paths.append(path)
    path = os.path.join(out, "results.json")
    with open(path, "w") as fh:
        json.dump(dict(config=config, records=records), fh, indent=1, default=str)
    paths.append(path)
    path = os.path.join(out, "report.md")
    with open(path, "w") as fh:
        fh.write(markdown(records, config, reference))
    paths.append(path)
    return paths + plots(records, out)
