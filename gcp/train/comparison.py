"""Comparison of training runs across arms (heads, backward modes) and seeds: CSV, markdown and a plot."""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from typing import Any, Optional

from gcp.zoo.io import atomic_write


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


Failures = dict[str, list[Optional[dict[str, Any]]]]


def _first_failure(failed: list[dict[str, Any]]) -> str:
    if not failed:
        return ""
    first = min(failed, key=lambda f: (int(f["epoch"]), int(f["step"])))
    return f"epoch {first['epoch']}, step {first['step']}"


def summarise(results: dict[str, list[list[dict[str, Any]]]], failures: Optional[Failures] = None
              ) -> list[dict[str, Any]]:
    """One row per arm: runs that finished (no run stopped at a non-finite step, ``--on-nonfinite
    stop``) out of its runs, final and best top-1 over the finished runs (mean ± std), the best
    single run, the first failure (epoch, step), time per epoch, non-finite steps."""
    rows = []
    for arm, all_runs in results.items():
        stops = list((failures or {}).get(arm) or [None] * len(all_runs))
        runs = [h for h, f in zip(all_runs, stops) if f is None]
        failed = [f for f in stops if f is not None]
        finals = [float(h[-1]["top1"]) for h in runs if h]
        bests = [max(float(r["top1"]) for r in h) for h in runs if h]
        times = [float(r["epoch_time_s"]) for h in all_runs for r in h]
        final_mean, final_std = _mean_std(finals)
        best_mean, best_std = _mean_std(bests)
        rows.append(dict(
            arm=arm, seeds=len(all_runs), finished=len(runs), epochs=max((len(h) for h in all_runs), default=0),
            final_top1_mean=final_mean, final_top1_std=final_std, best_top1_mean=best_mean, best_top1_std=best_std,
            best_top1=max(bests, default=float("nan")), first_failure=_first_failure(failed),
            epoch_time_s=statistics.fmean(times) if times else float("nan"),
            nonfinite_steps=sum(int(r["nonfinite_steps"]) for h in all_runs for r in h),
            final_train_loss=_mean_std([float(h[-1]["train_loss"]) for h in runs if h])[0],
        ))
    return rows


def _write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)

    atomic_write(path, write)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]], title: str) -> str:
    lines = [f"# Comparison: {title}", "",
             "Top-1 over the runs that finished; a run stopped at a non-finite step (`--on-nonfinite stop`) "
             "counts as failed.", "",
             "| arm | finished / runs | epochs | final top-1 (%) | best top-1 (%) | best run (%) | first failure | "
             "s / epoch | non-finite steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arm']} | {r['finished']} / {r['seeds']} | {r['epochs']} | {r['final_top1_mean']:.2f} ± "
                     f"{r['final_top1_std']:.2f} | {r['best_top1_mean']:.2f} ± {r['best_top1_std']:.2f} | "
                     f"{r['best_top1']:.2f} | {r['first_failure'] or '–'} | {r['epoch_time_s']:.1f} | "
                     f"{r['nonfinite_steps']} |")
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
                     failures: Optional[Failures] = None) -> list[str]:
    """Write ``comparison.csv``, ``comparison.md``, ``epochs.csv`` and ``accuracy.png`` to ``output``;
    ``failures`` holds, per arm and run, where a stopped run failed (``None``: it finished)."""
    os.makedirs(output, exist_ok=True)
    rows = summarise(results, failures)
    names = ("comparison.csv", "comparison.md", "epochs.csv", "accuracy.png")
    paths = {name: os.path.join(output, name) for name in names}
    _write_text(paths["comparison.csv"], _csv(rows))
    _write_text(paths["comparison.md"], to_markdown(rows, title))
    # the seed's value as the run used it (histories written before rows carried it: empty)
    epochs = [dict(arm=a, seed=r.get("seed", ""), **{k: v for k, v in r.items() if k != "seed"})
              for a, runs in results.items() for h in runs for r in h]
    _write_text(paths["epochs.csv"], _csv(epochs))
    plot_accuracy(results, paths["accuracy.png"], title)
    print(to_markdown(rows, title))
    return list(paths.values())
