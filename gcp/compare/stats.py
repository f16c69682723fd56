"""Uncertainty for the comparison's numbers: mean ± std over seeds, and which differences are noise.

With a handful of seeds a ranking is rarely supported by the data; these helpers say when it is.
Differences are tested with Welch's t-test (unequal variances), two-sided, Holm-adjusted over the
modes compared, at ``ALPHA``; fewer than two values per group means no test is possible, which the
report states instead of ranking.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional, Sequence

ALPHA = 0.05


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p-value of Welch's t-test, or ``None`` when a group has fewer than two values.

    Two groups without any spread are equal (p = 1) when their means agree, and different (p = 0)
    otherwise.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    if sa == 0 and sb == 0:
        return 1.0 if ma == mb else 0.0
    from scipy import stats

    return float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)


def holm(pvalues: dict[str, Optional[float]]) -> dict[str, Optional[float]]:
    """Holm–Bonferroni adjusted p-values: comparing every mode with the best is a family of tests,
    and at 5% each, one in twenty would look "significant" by chance."""
    known = sorted((p, k) for k, p in pvalues.items() if p is not None)
    adjusted: dict[str, Optional[float]] = {k: None for k, p in pvalues.items() if p is None}
    running = 0.0
    for i, (p, k) in enumerate(known):
        running = max(running, min(1.0, (len(known) - i) * p))
        adjusted[k] = running
    return adjusted


def compare_to_best(groups: dict[str, Sequence[float]]) -> tuple[str, dict[str, Optional[float]]]:
    """The group with the highest mean, and each other group's Welch p-value against it,
    Holm-adjusted over the comparisons."""
    best = max(groups, key=lambda k: mean_std(groups[k])[0] if groups[k] else -math.inf)
    return best, holm({k: welch_p(v, groups[best]) for k, v in groups.items() if k != best})


def ranges_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two ``(min, max)`` intervals overlap (then their order is within the noise)."""
    return a[0] <= b[1] and b[0] <= a[1]
