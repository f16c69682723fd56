"""Turn comparison records into report.md, results.csv/json, PNG plots and a terminal summary."""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from typing import Any, Iterable, Optional

from gcp.train.stats import mean_std, ranges_overlap

from .claims import verdicts
from .mechanism_report import mechanism_conclusions, mechanism_markdown
from .text import fmt as _fmt
from .text import significance as _significance
from .text import table as _table
from .training_report import (
    power_sentence,
    texture_conclusions,
    texture_markdown,
    training_conclusions,
    training_markdown,
    training_summaries,
    training_summary,
)

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


def _modes(records: list[Record], section: str) -> list[str]:
    return list(dict.fromkeys(r["mode"] for r in records if r["section"] == section))


def _cases(records: list[Record], section: str) -> list[str]:
    return list(dict.fromkeys(r["case"] for r in records if r["section"] == section))


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
    out += mechanism_conclusions(records) + training_conclusions(records) + texture_conclusions(records)
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
    return {v.claim: v.status for v in verdicts(summary)}


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
    timing = [r for r in records if r["section"] == "timing"]
    if timing:
        parts += ["Wall time per section: " + ", ".join(f"{r['case']} {r['value']:.0f} s" for r in timing)
                  + f" (total {sum(r['value'] for r in timing):.0f} s).", ""]
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
    parts += mechanism_markdown(records, 4) + training_markdown(records, 5) + texture_markdown(records, 6)
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
        parts += ["## 7. ZCA whitening vs. group dimension", "",
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
    parts += ["Plots: `grad_error_vs_gap.png`, `time_vs_d.png`, `mechanism.png`, `training_accuracy.png`.", ""]
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
    measured = {r["mode"] for r in records if r["section"] in ("accuracy", "stability", "speed")}
    modes = [m for m in modes if m in summary or m in measured]
    for m in modes:
        rows.append([
            m,
            _fmt(_value(records, section="accuracy", mode=m, dtype="float64", case=tight, metric="grad_rel_err")),
            _fmt(_value(records, section="stability", mode=m, dtype="float32", metric="nonfinite_fraction"), ".0%"),
            _fmt(_value(records, section="speed", mode=m, case=big, metric="fwd_bwd_over_eigh"), ".2f"),
            f"{summary[m]['final_mean']:.1f}" if m in summary else "—",
        ])
    dims = training_summaries(records)
    text = _table(["mode", f"grad err ({tight}, f64)", "non-finite (f32 suite)", f"fwd+bwd ÷ eigh ({big})",
                   f"noisy digits top-1 (%, d = {max(dims) if dims else '—'})"], rows)
    power = power_sentence(summary) if summary else ""
    return text + ("\n\n" + power.replace("**", "") if power else "")


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

    every = training_summaries(records)
    if every:
        written.append(_training_plot(every, colour, os.path.join(out, "training_accuracy.png")))
    if any(r["section"] == "mechanism" for r in records):
        written.append(_mechanism_plot(records, colour, os.path.join(out, "mechanism.png")))
    return written


def _training_plot(every: dict[int, dict[str, dict[str, Any]]], colour: dict[str, Any], path: str) -> str:
    """Final top-1 (mean ± std over seeds) against the head size, and the learning curves at the
    largest size over the evaluated epochs."""
    import matplotlib.pyplot as plt

    dims, dmax = list(every), max(every)
    arms = list(dict.fromkeys(m for s in every.values() for m in s))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    finals = [s["final_mean"] for sd in every.values() for s in sd.values() if math.isfinite(s["final_mean"])]
    # zoom on the converged end, where the arms differ; an arm that failed is named in the legend
    floor = max(0.0, min(f for f in finals if f > 50) - 10) if finals and max(finals) > 50 else 0.0
    for i, m in enumerate(arms):
        shift = (i - (len(arms) - 1) / 2) * 0.12
        xs = [k + shift for k, d in enumerate(dims) if m in every[d]]
        left.errorbar(xs, [every[d][m]["final_mean"] for d in dims if m in every[d]],
                      yerr=[every[d][m]["final_std"] for d in dims if m in every[d]], marker="o", ms=4, capsize=3,
                      color=colour[m], label=m, linestyle="-" if len(xs) > 1 else "none")
        s = every[dmax].get(m)
        if s is None:
            continue
        notes = [f"n={len(s['finals'])}"] + ([f"{int(s['nonfinite'])} non-finite steps"] if s["nonfinite"] else [])
        if s["final_mean"] < floor:
            notes.append(f"final {s['final_mean']:.0f}%, below the axis")
        right.plot(s["epochs"], s["curve"], marker="o", ms=3, color=colour[m], label=f"{m} ({', '.join(notes)})")
        right.fill_between(s["epochs"], [c - e for c, e in zip(s["curve"], s["curve_std"])],
                           [c + e for c, e in zip(s["curve"], s["curve_std"])], color=colour[m], alpha=0.12,
                           linewidth=0)
    left.set_xticks(range(len(dims)), [f"d = {d}" for d in dims])
    left.set_ylim(floor, 100)
    left.set_ylabel("final test top-1 (%), mean ± std over seeds")
    left.set_title("Noisy digits: final top-1 by head size")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7, ncol=2)
    right.set_ylim(floor, 100)
    right.set_xlabel("epoch")
    right.set_ylabel("test top-1 (%), mean ± std over seeds")
    right.set_title(f"Learning curves at d = {dmax} (evaluated epochs)")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.grid(True, alpha=0.3)
    return _finish(fig, right, path)


def _mechanism_plot(records: list[Record], colour: dict[str, Any], path: str) -> str:
    """Each route's ‖∂L/∂Σ‖ and ‖∂L/∂F‖ as multiples of Newton–Schulz's against d (float64)."""
    import matplotlib.pyplot as plt

    from .mechanism import REFERENCE

    mech = [r for r in records if r["section"] == "mechanism"]
    dt = "float64" if any(r["dtype"] == "float64" for r in mech) else mech[0]["dtype"]
    cases = list(dict.fromkeys(r["case"] for r in mech))
    ds = [int(c.split(",")[0].split("=")[1]) for c in cases]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    for ax, metric, what in zip(axes, ("sigma_grad", "feature_grad"), ("‖∂L/∂Σ‖", "‖∂L/∂F‖ (reaches the backbone)")):
        for m in dict.fromkeys(r["mode"] for r in mech):
            ys = [(_value(mech, mode=m, dtype=dt, case=c, metric=metric) or float("nan"))
                  / (_value(mech, mode=REFERENCE, dtype=dt, case=c, metric=metric) or float("nan")) for c in cases]
            ax.plot(ds, [y if math.isfinite(y) else float("nan") for y in ys], marker="o", ms=3, color=colour[m],
                    label=m)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ds, [str(d) for d in ds])
        ax.set_xlabel("head size d (n = 16 positions)")
        ax.set_ylabel(f"{what} ÷ Newton–Schulz's")
        ax.set_title(f"{what}, {dt}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    return _finish(fig, axes[1], path)


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
