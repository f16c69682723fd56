"""Comparison of training runs across arms (heads, backward modes, ZCA/PCA settings) and seeds:
the statistics a paper can report (:mod:`gcp.train.stats`, the same as ``gcp-compare``'s), as CSV,
markdown and LaTeX, with the setting they come from, and a plot of the learning curves."""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from typing import Any, Mapping, Optional

from gcp.zoo.io import atomic_write

from .checkpoint import write_text
from .stats import (
    ALPHA,
    compare_to_best,
    confidence_interval,
    mean_std,
    pooled_std,
    power_difference,
    significance_threshold,
)

Failures = dict[str, list[Optional[dict[str, Any]]]]


def _first_failure(failed: list[dict[str, Any]]) -> str:
    if not failed:
        return ""
    first = min(failed, key=lambda f: (int(f["epoch"]), int(f["step"])))
    return f"epoch {first['epoch']}, step {first['step']}"


def summarise(results: dict[str, list[list[dict[str, Any]]]], failures: Optional[Failures] = None
              ) -> list[dict[str, Any]]:
    """One row per arm. Over the runs that finished (none stopped at a non-finite step,
    ``--on-nonfinite stop``): the final top-1's n, mean ± std, 95% confidence interval and per-seed
    values, the best top-1 (mean ± std, and the best single run); the final top-1's Welch p-value
    against the arm with the highest mean, Holm-adjusted over the arms (``p_vs_best``); the first
    failure (epoch, step); time per epoch; non-finite steps."""
    finals_of: dict[str, list[float]] = {}
    rows = []
    for arm, all_runs in results.items():
        stops = list((failures or {}).get(arm) or [None] * len(all_runs))
        runs = [h for h, f in zip(all_runs, stops) if f is None]
        failed = [f for f in stops if f is not None]
        finals = [float(h[-1]["top1"]) for h in runs if h]
        finals_of[arm] = finals
        bests = [max(float(r["top1"]) for r in h) for h in runs if h]
        times = [float(r["epoch_time_s"]) for h in all_runs for r in h]
        final_mean, final_std = mean_std(finals)
        best_mean, best_std = mean_std(bests)
        low, high = confidence_interval(finals)
        rows.append(dict(
            arm=arm, seeds=len(all_runs), finished=len(runs), epochs=max((len(h) for h in all_runs), default=0),
            final_top1_mean=final_mean, final_top1_std=final_std, final_top1_ci95_low=low, final_top1_ci95_high=high,
            final_top1_per_seed=" ".join(f"{v:.2f}" for v in finals),
            best_top1_mean=best_mean, best_top1_std=best_std,
            best_top1=max(bests, default=float("nan")), first_failure=_first_failure(failed),
            epoch_time_s=statistics.fmean(times) if times else float("nan"),
            nonfinite_steps=sum(int(r["nonfinite_steps"]) for h in all_runs for r in h),
            final_train_loss=mean_std([float(h[-1]["train_loss"]) for h in runs if h])[0],
        ))
    testable = {k: v for k, v in finals_of.items() if v}
    best, pvalues = compare_to_best(testable) if len(testable) > 1 else (next(iter(testable), ""), {})
    for row in rows:
        p = pvalues.get(row["arm"])
        row["p_vs_best"] = "best" if row["arm"] == best else ("" if p is None else p)
    return rows


def power(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """The significance threshold of final top-1 (the difference a two-sided t-test at ALPHA starts
    calling significant) and the difference detected with 80% power, from the pooled seed-to-seed
    standard deviation and the smallest number of finished runs."""
    groups = [[float(v) for v in r["final_top1_per_seed"].split()] for r in rows]
    sizes = [len(g) for g in groups if len(g) > 1]  # an arm with one finished run estimates no spread
    if not sizes:
        return float("nan"), float("nan")
    sd = pooled_std(groups)
    return significance_threshold(sd, min(sizes)), power_difference(sd, min(sizes))


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _num(v: Any, digits: int = 2) -> str:
    return "–" if not isinstance(v, (int, float)) or not math.isfinite(v) else f"{v:.{digits}f}"


def _p(v: Any) -> str:
    if v == "best":
        return "best"
    if v == "" or v is None:
        return "–"
    return "< 0.001" if v < 1e-3 else f"{v:.3f}"


def to_markdown(rows: list[dict[str, Any]], title: str, setting: Optional[Mapping[str, Any]] = None,
                power: tuple[float, float] = (float("nan"), float("nan"))) -> str:
    lines = [f"# Comparison: {title}", ""]
    if setting:
        lines += [f"- **{k}**: {v}" for k, v in setting.items()] + [""]
    lines += [
        "Final top-1 over the runs that finished (a run stopped at a non-finite step, `--on-nonfinite stop`, "
        f"counts as failed); p: Welch's t-test of the final top-1 against the best arm, Holm-adjusted "
        f"over the arms (a difference is significant below {ALPHA}). Significance threshold of these seeds: "
        f"{_num(power[0])} points; a true difference of {_num(power[1])} points is detected with 80% power.", "",
        "| arm | finished / runs | epochs | final top-1 (%) | 95% CI | per seed | p vs best | best top-1 (%) | "
        "best run (%) | first failure | s / epoch | non-finite steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['finished']} / {r['seeds']} | {r['epochs']} | {_num(r['final_top1_mean'])} ± "
            f"{_num(r['final_top1_std'])} | {_interval(r, ' – ', '–')} | "
            f"{r['final_top1_per_seed'] or '–'} | {_p(r['p_vs_best'])} | {_num(r['best_top1_mean'])} ± "
            f"{_num(r['best_top1_std'])} | {_num(r['best_top1'])} | {r['first_failure'] or '–'} | "
            f"{_num(r['epoch_time_s'], 1)} | {r['nonfinite_steps']} |")
    return "\n".join(lines) + "\n"


def _interval(row: dict[str, Any], dash: str, missing: str) -> str:
    low, high = row["final_top1_ci95_low"], row["final_top1_ci95_high"]
    return f"{_num(low)}{dash}{_num(high)}" if math.isfinite(low) and math.isfinite(high) else missing


def _tex_escape(text: str) -> str:
    return "".join({"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
                    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}.get(c, c)
                   for c in str(text))


def _tex_p(v: Any) -> str:
    text = _p(v)
    return {"–": "--", "< 0.001": "$<0.001$"}.get(text, text)


def to_latex(rows: list[dict[str, Any]], title: str) -> str:
    """A ``tabular`` (booktabs) of the arms: finished runs, final top-1 mean ± std and 95% CI, p
    against the best arm, best top-1."""
    lines = [f"% {_tex_escape(title)}: final top-1 (%) over finished runs; p: Welch, Holm-adjusted, vs the best arm",
             r"\begin{tabular}{lrrrrr}", r"\toprule",
             r"arm & finished & final top-1 & 95\% CI & $p$ vs best & best top-1 \\", r"\midrule"]
    for r in rows:
        lines.append(f"{_tex_escape(r['arm'])} & {r['finished']}/{r['seeds']} & "
                     f"${_num(r['final_top1_mean'])} \\pm {_num(r['final_top1_std'])}$ & "
                     f"{_interval(r, '--', '--')} & {_tex_p(r['p_vs_best'])} & {_num(r['best_top1'])} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot_accuracy(results: dict[str, list[list[dict[str, Any]]]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = plt.get_cmap("tab10")
    for i, (arm, runs) in enumerate(results.items()):
        epochs = max((len(h) for h in runs), default=0)
        if epochs == 0:
            continue
        per_epoch = [[float(h[e]["top1"]) for h in runs if len(h) > e] for e in range(epochs)]
        xs = list(range(1, epochs + 1))
        mean = [statistics.fmean(v) for v in per_epoch]
        label = f"{arm} ({len(runs)} seed{'s' * (len(runs) > 1)})"
        ax.plot(xs, mean, marker="o", ms=3, color=colours(i % 10), label=label)
        if len(runs) > 1:
            ax.fill_between(xs, [min(v) for v in per_epoch], [max(v) for v in per_epoch], color=colours(i % 10),
                            alpha=0.15, lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (lines: mean over seeds, bands: min–max)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(f"Top-1 per epoch — {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png")

    atomic_write(path, write)
    plt.close(fig)


def write_comparison(results: dict[str, list[list[dict[str, Any]]]], output: str, title: str = "",
                     failures: Optional[Failures] = None, setting: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Write ``comparison.csv``, ``comparison.md``, ``comparison.tex``, ``epochs.csv`` and
    ``accuracy.png`` to ``output``; ``failures`` holds, per arm and run, where a stopped run failed
    (``None``: it finished); ``setting`` (dataset, split sizes, model, recipe, epochs, device,
    versions, command) heads the markdown."""
    os.makedirs(output, exist_ok=True)
    rows = summarise(results, failures)
    both = power(rows)
    names = ("comparison.csv", "comparison.md", "comparison.tex", "epochs.csv", "accuracy.png")
    paths = {name: os.path.join(output, name) for name in names}
    write_text(paths["comparison.csv"], _csv(rows))
    write_text(paths["comparison.md"], to_markdown(rows, title, setting, both))
    write_text(paths["comparison.tex"], to_latex(rows, title))
    # the seed's value as the run used it (histories written before rows carried it: empty)
    epochs = [dict(arm=a, seed=r.get("seed", ""), **{k: v for k, v in r.items() if k != "seed"})
              for a, runs in results.items() for h in runs for r in h]
    write_text(paths["epochs.csv"], _csv(epochs))
    plot_accuracy(results, paths["accuracy.png"], title)
    print(to_markdown(rows, title, setting, both))
    return list(paths.values())
