"""The papers' claims about training GCP heads, tested on the comparison's training table.

Each claim is a pre-specified comparison of two groups of arms (one Welch t-test on the final top-1
of the seeds), so no multiple-comparison adjustment is applied across arms; every verdict carries its
numbers, and each comparison of two arms with the significance threshold and the difference detected
with 80% power at the seed spread of those two arms, so a "not reproduced" reads as what it is: no
difference that large at this scale, not proof of none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from gcp.train.stats import ALPHA, mean_std, pooled_std, power_difference, significance_threshold, welch_p

from .routes import POOLING

Summary = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Verdict:
    claim: str
    source: str
    status: str  # "reproduced", "not reproduced", "reversed", "not testable", "not run"
    evidence: str

    def line(self) -> str:
        return f"**{self.status.capitalize()}** — {self.claim} ({self.source}): {self.evidence}"


def _arm(summary: Summary, name: str) -> str:
    s = summary[name]
    return f"{name} {s['final_mean']:.2f} ± {s['final_std']:.2f}%"


def _test(summary: Summary, a: str, b: str) -> tuple[float, Optional[float]]:
    """Mean of ``a`` minus mean of ``b`` and Welch's p (None with one seed)."""
    fa, fb = summary[a]["finals"], summary[b]["finals"]
    return mean_std(fa)[0] - mean_std(fb)[0], welch_p(fa, fb)


def _p(p: Optional[float]) -> str:
    return "no test with one seed" if p is None else f"p = {p:.3f}"


def _power(summary: Summary, a: str, b: str) -> str:
    """The significance threshold and the 80%-power difference of ``a`` against ``b``, from the
    spread of those two arms' seeds (another arm's noise says nothing about this comparison)."""
    fa, fb = summary[a]["finals"], summary[b]["finals"]
    sd, n = pooled_std([fa, fb]), min(len(fa), len(fb))
    threshold, eighty = significance_threshold(sd, n), power_difference(sd, n)
    if not math.isfinite(threshold):
        return ""
    return f"; significance threshold {threshold:.2f} points, 80%-power difference {eighty:.2f} points"


def _higher(summary: Summary, a: str, b: str) -> tuple[str, str]:
    """Status and evidence for "``a`` trains better than ``b``"."""
    diff, p = _test(summary, a, b)
    text = f"{_arm(summary, a)} vs {_arm(summary, b)}, difference {diff:+.2f} points, {_p(p)}{_power(summary, a, b)}"
    if p is None:
        return "not testable", text
    if p < ALPHA:
        return ("reproduced" if diff > 0 else "reversed"), text
    return "not reproduced", text


def _ed_unstable(s: Summary) -> tuple[str, str]:
    steps = int(s["ed"]["nonfinite"])
    text = f"ed skipped {steps} steps with a non-finite gradient; {_arm(s, 'ed')}"
    if "exact" in s:
        text += f" vs {_arm(s, 'exact')} with the exact Daleckii–Krein gradient"
    return ("reproduced" if steps > 0 else "not reproduced"), text


def _ns_beats_exact(s: Summary) -> tuple[str, str]:
    return _higher(s, "isqrt", "exact")


def _close_the_gap(s: Summary) -> tuple[str, str]:
    gap, gap_p = _test(s, "isqrt", "exact")
    parts = [f"{_arm(s, m)} ({_p(_test(s, m, 'isqrt')[1])} vs isqrt)" for m in ("pade", "taylor") if m in s]
    text = "; ".join(parts)
    if gap_p is None or not (gap_p < ALPHA and gap > 0):
        return "not testable", f"there is no gap to close: isqrt and exact differ by {gap:+.2f} points " \
                               f"({_p(gap_p)}); {text}"
    closed = all(_test(s, m, "isqrt")[1] >= ALPHA or _test(s, m, "isqrt")[0] >= 0 for m in ("pade", "taylor")
                 if m in s)
    return ("reproduced" if closed else "not reproduced"), text


def _hybrid(s: Summary) -> tuple[str, str]:
    rivals = [m for m in ("isqrt", "pade") if m in s]
    best = max(rivals, key=lambda m: s[m]["final_mean"])
    diff, p = _test(s, "hybrid", best)
    text = f"{_arm(s, 'hybrid')} vs the better of its two halves, {_arm(s, best)}: {diff:+.2f} points, {_p(p)}"
    if p is None:
        return "not testable", text
    if p < ALPHA and diff < 0:
        return "reversed", text
    return "reproduced", text + (" (better)" if p < ALPHA else " (at least as good)")


def _gcp_beats_gap(s: Summary) -> tuple[str, str]:
    heads = [m for m in s if m not in POOLING and s[m]["nonfinite"] == 0]  # covariance heads only
    if not heads:
        return "not testable", "no GCP arm trained without non-finite steps"
    best = max(heads, key=lambda m: s[m]["final_mean"])
    return _higher(s, best, "gap")


@dataclass(frozen=True)
class Claim:
    text: str
    source: str
    needs: tuple[str, ...]
    test: Callable[[Summary], tuple[str, str]]
    any_of: tuple[str, ...] = ()


CLAIMS: tuple[Claim, ...] = (
    Claim("the standard eigendecomposition gradient breaks down in GCP", "Wang et al., NeurIPS 2019; Song et al., "
          "ICCV 2021", ("ed",), _ed_unstable),
    Claim("Newton–Schulz iterations train a GCP head better than SVD with the exact gradient",
          "Song et al., ICCV 2021; Li et al., CVPR 2018", ("isqrt", "exact"), _ns_beats_exact),
    Claim("the Padé and Taylor backward close that gap", "Song et al., ICCV 2021", ("isqrt", "exact"),
          _close_the_gap, any_of=("pade", "taylor")),
    Claim("the hybrid protocol (Newton–Schulz, then SVD-Padé) is at least as good as either alone",
          "Song et al., ICCV 2021", ("hybrid",), _hybrid, any_of=("isqrt", "pade")),
    Claim("a GCP head beats global average pooling", "Li et al., ICCV 2017 and CVPR 2018", ("gap",), _gcp_beats_gap),
)


def verdicts(summary: Summary) -> list[Verdict]:
    """One verdict per claim whose arms were trained (the others say which arms are missing)."""
    out = []
    for c in CLAIMS:
        missing = [a for a in c.needs if a not in summary]
        if c.any_of and not any(a in summary for a in c.any_of):
            missing.append(" or ".join(c.any_of))
        if missing:
            out.append(Verdict(c.text, c.source, "not run", f"needs the arm(s) {', '.join(missing)}"))
            continue
        status, evidence = c.test(summary)
        out.append(Verdict(c.text, c.source, status, evidence))
    return out
