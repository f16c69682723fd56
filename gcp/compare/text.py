"""Small text helpers shared by the comparison's report modules: numbers, tables, significance."""

from __future__ import annotations

import math
from typing import Optional

from gcp.train.stats import ALPHA, compare_to_best, mean_std


def fmt(v: Optional[float], spec: str = ".1e") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def p_text(p: Optional[float]) -> str:
    return "n/a (1 seed)" if p is None else f"{p:.2f}"


def significance(groups: dict[str, list[float]], what: str) -> list[str]:
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
