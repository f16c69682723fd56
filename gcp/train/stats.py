"""Uncertainty for comparisons over seeds (``gcp-compare``, and the tables of ``gcp-train`` and
``gcp-finetune``): mean ± std, confidence intervals, and which differences are noise.

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


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of the mean of the finite ``values`` (Student's t with
    n − 1 degrees of freedom); ``(nan, nan)`` for fewer than two values."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return float("nan"), float("nan")
    from scipy import stats

    mean, sd = mean_std(finite)
    half = float(stats.t.ppf(0.5 + level / 2, len(finite) - 1)) * sd / math.sqrt(len(finite))
    return mean - half, mean + half


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


def pooled_std(groups: Sequence[Sequence[float]]) -> float:
    """Root mean of the groups' sample variances (groups of one value carry none): the seed-to-seed
    noise of one arm, estimated from all of them."""
    variances = [mean_std(g)[1] ** 2 for g in groups if len([v for v in g if math.isfinite(v)]) > 1]
    return math.sqrt(statistics.fmean(variances)) if variances else float("nan")


def significance_threshold(sd: float, n: int, alpha: float = ALPHA) -> float:
    """The difference between the means of two arms of ``n`` seeds each, with seed standard deviation
    ``sd``, at which a two-sided t-test at ``alpha`` starts calling it significant:
    ``t_{1−α/2, 2n−2} · sd · √(2/n)``. A true difference of exactly this size reaches significance
    only about half the time; :func:`power_difference` is the size that does so reliably."""
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / 2, 2 * n - 2) * sd * math.sqrt(2 / n))


def power_difference(sd: float, n: int, power: float = 0.8, alpha: float = ALPHA) -> float:
    """The true difference between two arms of ``n`` seeds each (seed std ``sd``) that a two-sided
    t-test at ``alpha`` detects with probability ``power``: the statistic then follows a noncentral t
    with ``2n − 2`` degrees of freedom and noncentrality ``δ / (sd·√(2/n))``, and ``δ`` is solved
    for exactly (no normal approximation, which is optimistic at a handful of seeds)."""
    if n < 2 or not math.isfinite(sd) or not 0 < power < 1:
        return float("nan")
    from scipy import optimize, stats

    df, crit = 2 * n - 2, float(stats.t.ppf(1 - alpha / 2, 2 * n - 2))

    def shortfall(nc: float) -> float:
        # the far tail is below 1e-9 wherever power matters; scipy's nct returns NaN for it at large nc
        far = float(stats.nct.cdf(-crit, df, nc))
        return float(stats.nct.sf(crit, df, nc)) + (far if math.isfinite(far) else 0.0) - power

    upper = crit + 4.0
    while shortfall(upper) < 0:
        upper += 4.0
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-12)) * sd * math.sqrt(2 / n)
