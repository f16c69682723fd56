"""The mechanism section of the comparison's report: each route's gradient with respect to Σ and to
the features, as multiples of Newton–Schulz's, and a verdict generated from them."""

from __future__ import annotations

import math
from typing import Any

from .mechanism import REFERENCE
from .text import table

Record = dict[str, Any]
Key = tuple[str, str, str, str]  # mode, dtype, case, metric
#: a ratio of feature gradients within this factor of 1 is "the same order"
SAME_ORDER = 3.0
#: a ratio of Σ gradients at least this large is "far larger"
FAR_LARGER = 10.0


def _values(records: list[Record]) -> dict[Key, float]:
    return {(r["mode"], r["dtype"], r["case"], r["metric"]): r["value"] for r in records
            if r["section"] == "mechanism"}


def _order(records: list[Record], field: str) -> list[str]:
    return list(dict.fromkeys(r[field] for r in records if r["section"] == "mechanism"))


def _ratio(v: dict[Key, float], mode: str, dt: str, case: str, metric: str) -> float:
    mine, ref = v.get((mode, dt, case, metric)), v.get((REFERENCE, dt, case, metric))
    if mine is None or ref is None or not math.isfinite(mine) or not ref:
        return float("nan")
    return mine / ref


def _d(case: str) -> str:
    return case.split(",")[0]


def _has_null(v: dict[Key, float], dt: str, case: str) -> bool:
    rank = v.get((REFERENCE, dt, case, "rank"))
    return rank is not None and rank < int(_d(case).split("=")[1])


def mechanism_markdown(records: list[Record], number: int) -> list[str]:
    v = _values(records)
    if not v:
        return []
    modes, dtypes, cases = _order(records, "mode"), _order(records, "dtype"), _order(records, "case")
    parts = [f"## {number}. What reaches the backbone", "",
             "`L = ⟨G, route(Σ)⟩` for a fixed random symmetric `G`, with `Σ` the covariance of the features the "
             "noisy-digits network computes at initialisation (8 test images, n = 16 positions). Cells: "
             "‖∂L/∂Σ‖ · its null–null block ‖U₀ᵀ(∂L/∂Σ)U₀‖ · ‖∂L/∂F‖ (the gradient the backbone receives), "
             f"each as a multiple of Newton–Schulz's (`{REFERENCE}`, whose row gives its own norms). Since "
             "`∂L/∂F = (X + Xᵀ) F Ĩ` and the centred features `F Ĩ` lie in range(Σ), the null–null block cannot "
             "reach `F`; the last table measures how much does, through round-off.", "",
             "Rank of the covariances (float64): " + ", ".join(
                 f"{_d(c)}: {int(v[(REFERENCE, dtypes[0], c, 'rank')])}" for c in cases
                 if (REFERENCE, dtypes[0], c, "rank") in v) + ".", ""]

    def cell(m: str, dt: str, c: str) -> str:
        if m == REFERENCE:
            return " · ".join(f"{v[(m, dt, c, k)]:.2g}" for k in ("sigma_grad", "null_grad", "feature_grad"))
        ratios = [_ratio(v, m, dt, c, k) for k in ("sigma_grad", "null_grad", "feature_grad")]
        if any(math.isnan(r) for r in ratios[::2]):
            return "non-finite"
        null = "—" if not _has_null(v, dt, c) else f"{ratios[1]:.1e}×"
        return f"{ratios[0]:.1e}× · {null} · {ratios[2]:.2f}×"

    for dt in dtypes:
        rows = [[m] + [cell(m, dt, c) for c in cases] for m in modes]
        parts += [f"**{dt}**", "", table(["route"] + [_d(c) for c in cases], rows), ""]
    rows = [[m] + [" / ".join(f"{v[(m, dt, c, 'null_to_features')]:.0e}" for dt in dtypes) if _has_null(v, dtypes[0], c)
                   else "—" for c in cases] for m in modes]
    parts += ["Share of ‖∂L/∂F‖ that comes from the null–null block, `‖P₀(X + Xᵀ)P₀ F Ĩ‖ / ‖(X + Xᵀ) F Ĩ‖` "
              f"({' / '.join(dtypes)}):", "", table(["route"] + [_d(c) for c in cases], rows), ""]
    return parts


def mechanism_conclusions(records: list[Record]) -> list[str]:
    """The generated verdict: how much larger the exact gradient is with respect to Σ, and how much of
    that reaches the features."""
    v = _values(records)
    if not v:
        return []
    modes, dtypes, cases = _order(records, "mode"), _order(records, "dtype"), _order(records, "case")
    out = []
    broken = [m for m in modes if any(not math.isfinite(v.get((m, dt, c, "feature_grad"), 0.0))
                                      for dt in dtypes for c in cases)]
    if "exact" in modes:
        sig = [_ratio(v, "exact", dt, c, "sigma_grad") for dt in dtypes for c in cases]
        feat = [_ratio(v, "exact", dt, c, "feature_grad") for dt in dtypes for c in cases]
        null_share = [v[("exact", dt, c, "null_grad")] / v[("exact", dt, c, "sigma_grad")] for dt in dtypes
                      for c in cases if _has_null(v, dt, c)]
        leak = {dt: max((v[("exact", dt, c, "null_to_features")] for c in cases if _has_null(v, dt, c)), default=0.0)
                for dt in dtypes}
        text = (f"Mechanism (exact against Newton–Schulz, {', '.join(_d(c) for c in cases)} over n = 16 positions, "
                f"{' and '.join(dtypes)}): ‖∂L/∂Σ‖ is {min(sig):.1e}–{max(sig):.1e}× Newton–Schulz's"
                + (f", {100 * min(null_share):.0f}–{100 * max(null_share):.0f}% of it in the null–null block where "
                   "Σ has one" if null_share else "")
                + f"; ‖∂L/∂F‖, all the backbone receives, is {min(feat):.2f}–{max(feat):.2f}×. The null–null block's "
                  "share of ∂L/∂F is at most " + ", ".join(f"{leak[dt]:.0e} in {dt}" for dt in dtypes) + ". ")
        if max(sig) >= FAR_LARGER and all(1 / SAME_ORDER <= f <= SAME_ORDER for f in feat):
            text += ("Verdict: the exact gradient's large values stay in Σ's null space and small eigendirections; "
                     f"what reaches the backbone is within {max(max(feat), 1 / min(feat)):.2f}× of Newton–Schulz's, "
                     "so the mechanism that would make Newton–Schulz train better does not act here.")
        elif max(sig) < FAR_LARGER:
            text += f"Verdict: the exact gradient with respect to Σ is not far larger than Newton–Schulz's here " \
                    f"(less than {FAR_LARGER:g}×)."
        else:
            text += (f"Verdict: the gradient that reaches the backbone differs from Newton–Schulz's by up to "
                     f"{max(max(feat), 1 / min(feat)):.2f}×, so the routes feed the backbone different gradients.")
        out.append(text)
    finite = [m for m in modes if m not in broken and m != REFERENCE]
    if finite:
        feat = [_ratio(v, m, dt, c, "feature_grad") for m in finite for dt in dtypes for c in cases]
        out.append(f"Mechanism, every route with a finite gradient ({', '.join(finite)}): ‖∂L/∂F‖ is "
                   f"{min(feat):.2f}–{max(feat):.2f}× Newton–Schulz's at every d and dtype"
                   + (f"; non-finite: {', '.join(broken)}." if broken else "."))
    return out
