"""``gcp-compare --recommend``: one route for the user's size, dtype, device and (optionally) data.

Three measurements, in this order, each narrowing the candidates:

1. **stability** — every route but the unguarded ``ed`` control on the degenerate suite (identity,
   repeated eigenvalues, rank-deficient, extreme scales) in the user's dtype: any non-finite
   gradient disqualifies;
2. **accuracy** — the gradient's relative error against the float64 ``exact`` gradient at the
   user's spectrum: covariances built from ``--features`` (a ``.pt`` file of ``(N, C, H, W)`` or
   ``(N, C, M)`` features, or ``(N, d, d)`` covariances), or else Gaussian features with 196
   positions (a 14×14 map) — rank-deficient once ``d > 196``, as in GCP. Routes above ``tol``
   are reported, not recommended;
3. **speed** — forward+backward of a batch at ``(B, d, dtype, device)``, as a ratio to
   ``torch.linalg.eigh`` in interleaved rounds, with the min–max over rounds.

The recommendation is the fastest remaining route by median ratio; routes whose round ranges
overlap its range are named as equally good within the noise.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from gcp.bench.timing import interleaved_ms
from gcp.train.stats import ranges_overlap

from ..covariance import covariance
from ..errors import GCPError, ShapeError
from ..spectral import sqrtm
from .routes import ALL_ROUTES, route
from .suites import F64, degenerate_suite

#: the unguarded standard gradient is the failing control of the comparison, never a recommendation
CANDIDATES = tuple(m for m in ALL_ROUTES if m != "ed")


@dataclass
class RouteEvidence:
    mode: str
    stable: bool = True
    grad_err: float = float("nan")
    ratio: float = float("nan")
    ratio_range: tuple[float, float] = (float("nan"), float("nan"))
    notes: list[str] = field(default_factory=list)


def load_user_matrices(path: str, dtype: torch.dtype) -> Tensor:
    """Covariances from a ``.pt`` file: ``(N, d, d)`` symmetric matrices are used as they are,
    ``(N, C, H, W)`` / ``(N, C, M)`` features go through :func:`gcp.covariance`."""
    if not os.path.isfile(path):
        raise GCPError(f"--features: no such file {path!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle of anything but tensors, or not a torch file at all
        raise GCPError(f"--features: {path!r} is not a tensor saved with torch.save "
                       f"({exc.__class__.__name__})") from exc
    if not isinstance(obj, Tensor) or not obj.is_floating_point():
        raise GCPError(f"--features: {path!r} must hold one floating-point tensor, got {type(obj).__name__}")
    if obj.numel() == 0 or obj.shape[0] == 0:
        raise ShapeError(f"--features: {path!r} holds no matrices (shape {tuple(obj.shape)})")
    if not bool(torch.isfinite(obj).all()):
        raise GCPError(f"--features: {path!r} holds NaN or Inf values")
    x = obj.to(F64)
    if x.dim() == 3 and x.shape[-1] == x.shape[-2]:
        # decided by shape: a square (N, d, d) tensor is a batch of covariances, symmetrised; one
        # that is clearly not symmetric is refused rather than read as features of another spectrum
        asym = float(((x - x.transpose(-1, -2)).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(
            torch.finfo(F64).tiny)).max())
        if asym > 1e-2:
            raise ShapeError(f"--features: {path!r} holds square (N, d, d) matrices, read as covariances, but they "
                             f"are not symmetric (relative asymmetry {asym:.1e}); save features as (N, C, H, W) "
                             "or (N, C, M) with M != C")
        x = 0.5 * (x + x.transpose(-1, -2))
    elif x.dim() in (3, 4):
        if x.shape[2:].numel() < 2:
            raise ShapeError(f"--features: {path!r} has {x.shape[2:].numel()} position(s) per sample; a covariance "
                             "needs at least 2")
        x = covariance(x)
    else:
        raise ShapeError(f"--features: expected (N, d, d) covariances or (N, C, H, W) / (N, C, M) features, "
                         f"got shape {tuple(x.shape)}")
    zero = int((x.flatten(1).abs().amax(1) == 0).sum())
    if zero:
        raise GCPError(f"--features: {zero} of {x.shape[0]} covariances are zero (constant features or a single "
                       "position): they have no spectrum to recommend a route for")
    return x


def _fwd_bwd(fn, x: Tensor, g: Tensor) -> Tensor:
    xi = x.detach().clone().requires_grad_()
    fn(xi).backward(g)
    return xi.grad


def recommend(dim: int, batch: int, dtype: torch.dtype, device: torch.device, features: Optional[str] = None,
              tol: float = 1e-2, repeats: int = 3, progress=None) -> tuple[Optional[str], list[RouteEvidence], str]:
    """Measure and pick one route; returns ``(route, evidence per route, where the spectrum came from)``;
    the route is ``None`` when no stable route is within ``tol``."""
    tick = progress or (lambda: None)
    evidence = {m: RouteEvidence(m) for m in CANDIDATES}
    # the user's spectrum first: a bad --features file fails before any measurement
    if features:
        x64 = load_user_matrices(features, dtype)
        if x64.shape[-1] != dim:
            raise ShapeError(f"--features gives d = {x64.shape[-1]} but --dim is {dim}")
        source = f"{x64.shape[0]} matrices from {features}"
    else:
        gen = torch.Generator().manual_seed(0)
        x64 = covariance(torch.randn(min(batch, 8), dim, 196, generator=gen, dtype=F64))
        source = f"covariances of Gaussian features, d = {dim}, 196 positions"
    # the routes see the input rounded to the user's dtype, and so does the reference: the error
    # measured is the backward's, not the rounding's (which moves the null eigenvalues of a
    # rank-deficient covariance and with them f'(λ) — a property of the input, not of a route)
    x64 = x64[:8].to(dtype).to(F64)  # the error is a property of the spectrum; a few matrices measure it
    g64 = torch.randn(x64.shape, generator=torch.Generator().manual_seed(1), dtype=F64).to(dtype).to(F64)
    ref = _fwd_bwd(sqrtm, x64, g64)  # also refuses non-PSD covariances (IndefiniteError), up front
    # 1. stability on the degenerate suite, in the user's dtype
    for m in CANDIDATES:
        for name, x in degenerate_suite().items():
            g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
            if not torch.isfinite(_fwd_bwd(route(m), x.to(dtype), g.to(dtype))).all():
                evidence[m].stable = False
                evidence[m].notes.append(f"non-finite gradient on {name}")
        tick()
    # 2. accuracy at the user's spectrum
    for m in CANDIDATES:
        if evidence[m].stable:
            got = _fwd_bwd(route(m), x64.to(dtype), g64.to(dtype)).double()
            err = ((got - ref).norm() / ref.norm()).item()
            evidence[m].grad_err = err if math.isfinite(err) else float("inf")
        tick()
    # 3. speed of the stable and accurate routes at the user's batch
    fast = [m for m in CANDIDATES if evidence[m].stable and evidence[m].grad_err <= tol]
    if not fast:
        return None, list(evidence.values()), source
    gen = torch.Generator().manual_seed(3)
    x = covariance(torch.randn(batch, dim, 196, generator=gen, dtype=dtype)).to(device)
    gy = torch.randn(x.shape, generator=gen, dtype=dtype).to(device)
    for m in fast:
        fn = route(m)
        t = interleaved_ms({"eigh": lambda: torch.linalg.eigh(x),
                            "fb": lambda fn=fn: _fwd_bwd(fn, x, gy)}, device, repeats)
        ratios = [a / b for a, b in zip(t["fb"], t["eigh"])]
        evidence[m].ratio = statistics.median(ratios)
        evidence[m].ratio_range = (min(ratios), max(ratios))
        tick()
    best = min(fast, key=lambda m: evidence[m].ratio)
    return best, list(evidence.values()), source


EVIDENCE = (
    "## What this rests on\n\n"
    "The criterion is: no non-finite gradient on the degenerate suite, a gradient within `--tol` of the "
    "float64 `exact` gradient at your spectrum, then speed. Gradient fidelity says how close a route's "
    "gradient is to the true one; it does not say which route trains better. The smoothed routes "
    "(`taylor`, `pi`, `trunc`) and the matmul routes (`isqrt`, `mpa`, `mtp`, `ns`) differ from the "
    "true gradient by design on rank-deficient covariances (d channels over fewer positions, GCP's "
    "normal case), and the SVD-Padé paper (Song et al., ICCV 2021) argues that this smoothing can "
    "help training there. Which route trains better is measured by the training section of "
    "`gcp-compare` (GCP in that rank-deficient regime, over seeds); the training evidence below says what it "
    "found. If you train with a smoothed or matmul route on purpose, raise `--tol` to have it timed and "
    "ranked here.\n")


def load_training_evidence(folder: str) -> dict[str, dict]:
    """The training table of a ``gcp-compare`` output folder (its ``results.json``) at its largest
    head size, per arm; the key ``""`` holds what it was measured on (``d``, seeds, the power)."""
    from .report import read_records
    from .training_report import detectable, training_summaries

    every = training_summaries(read_records(folder, "--evidence"))
    if not every:
        raise GCPError(f"--evidence {folder!r} holds no training section; run gcp-compare --sections training")
    d = max(every)
    summary = dict(every[d])
    _, threshold, eighty, n = detectable(summary)
    summary[""] = dict(d=d, seeds=n, threshold=threshold, eighty=eighty)
    return summary


def training_section(best: Optional[str], summary: Optional[dict[str, dict]], folder: Optional[str]) -> str:
    """The training evidence next to the recommendation, and whether the two agree; where they do not,
    it says why the recommendation stands and which route the training table favours."""
    from gcp.train.stats import ALPHA, compare_to_best, welch_p

    head = "## Training evidence\n\n"
    if summary is None:
        return head + ("No training evidence was given, so this recommendation does not weigh it. Measure it with "
                       "`gcp-compare --quick --sections training --out DIR` (about a minute on 2 cores: GCP in the "
                       "rank-deficient regime, over seeds), then pass `--evidence DIR`.\n")
    about = summary.get("", {})
    summary = {m: s for m, s in summary.items() if m}
    top, _ = compare_to_best({m: s["finals"] for m, s in summary.items()})
    arm = lambda m: f"`{m}` {summary[m]['final_mean']:.2f} ± {summary[m]['final_std']:.2f}%"  # noqa: E731
    where = (f" (noisy digits, d = {about['d']} channels over 16 positions)" if about.get("d") else "")
    lines = [f"From `{folder}`{where}: final top-1 over {len(summary[top]['finals'])} seeds, highest mean {arm(top)}."]
    if about and math.isfinite(about.get("threshold", math.nan)):
        lines.append(f"Its significance threshold is {about['threshold']:.2f} points; a true difference of "
                     f"{about['eighty']:.2f} points is detected with 80% power, so smaller differences between "
                     "routes are not resolved by it.")
    if best is not None and best not in summary:
        lines.append(f"That table has no arm for `{best}`, so it neither supports nor contradicts this choice.")
    elif best is not None:
        p = welch_p(summary[best]["finals"], summary[top]["finals"])
        lower = summary[best]["final_mean"] < summary[top]["final_mean"]
        if best == top or p is None or p >= ALPHA or not lower:
            said = "the best" if best == top else f"within the seed noise of the best (p = {p:.2f})" if p is not None \
                else "not comparable (one seed)"
            lines.append(f"The recommended {arm(best)} is {said}: the training evidence agrees with this choice.")
        else:
            lines.append(
                f"**The training table ranks `{top}` above the recommended `{best}`** ({arm(best)}, Welch p = "
                f"{p:.3f}). The recommendation stands on gradient fidelity and speed at your size; the training "
                "table was measured on a small network and task, and need not transfer. If training accuracy "
                f"matters more to you than fidelity and speed, use `{top}`.")
    return head + " ".join(lines) + "\n"


def render(best: Optional[str], evidence: list[RouteEvidence], source: str, dim: int, batch: int, dtype: torch.dtype,
           device: torch.device, tol: float, training: Optional[dict[str, dict]] = None,
           training_folder: Optional[str] = None) -> str:
    """The recommendation and its evidence as markdown (printed and written to ``--out``), with
    what the criterion does and does not establish, and the training evidence next to it."""
    return (_render(best, evidence, source, dim, batch, dtype, device, tol) + "\n" + EVIDENCE + "\n"
            + training_section(best, training, training_folder))


def _render(best: Optional[str], evidence: list[RouteEvidence], source: str, dim: int, batch: int,
            dtype: torch.dtype, device: torch.device, tol: float) -> str:
    by = {e.mode: e for e in evidence}
    if best is None:
        stable = sorted((e for e in evidence if e.stable), key=lambda e: e.grad_err)
        head = [f"# No recommendation for d = {dim}, batch {batch}, {str(dtype).replace('torch.', '')}, {device}", "",
                f"No stable route is within tol = {tol:g} of the exact gradient at: {source}."
                + (f" The most accurate stable one is `{stable[0].mode}` ({stable[0].grad_err:.1e}); raise "
                   "`--tol` to have the approximate routes timed and ranked." if stable else ""), ""]
        rows = [f"| {e.mode} | {'yes' if e.stable else 'no'} | {e.grad_err:.1e} | {'; '.join(e.notes)} |"
                for e in evidence]
        return "\n".join(head + ["| route | stable | grad error | notes |", "|---|---|---|---|"] + rows) + "\n"
    peers = [e.mode for e in evidence if e.mode != best and not math.isnan(e.ratio)
             and ranges_overlap(e.ratio_range, by[best].ratio_range)]
    lines = [f"# Recommendation for d = {dim}, batch {batch}, {str(dtype).replace('torch.', '')}, {device}", "",
             f"**Use `{best}`**: stable on the degenerate suite, gradient error {by[best].grad_err:.1e} at the "
             f"spectrum below, and the fastest stable route within tol = {tol:g}: {by[best].ratio:.2f}× eigh "
             f"(rounds {by[best].ratio_range[0]:.2f}–{by[best].ratio_range[1]:.2f}).",
             ("Equally good within the measurement's noise (overlapping round ranges): "
              + ", ".join(f"`{p}`" for p in peers) + "." if peers else "No other route's range overlaps it."),
             "", f"Spectrum: {source}. Gradient error: relative (Frobenius) to the float64 `exact` gradient. "
             "Speed: forward+backward ÷ `torch.linalg.eigh` forward, median and min–max over interleaved rounds.",
             "", "| route | stable | grad error | fwd+bwd ÷ eigh | notes |", "|---|---|---|---|---|"]
    timed = lambda e: not math.isnan(e.ratio)  # noqa: E731
    for e in sorted(evidence, key=lambda e: (not e.stable, e.grad_err > tol, e.ratio if timed(e) else math.inf)):
        speed = f"{e.ratio:.2f} ({e.ratio_range[0]:.2f}–{e.ratio_range[1]:.2f})" if timed(e) else "—"
        note = "; ".join(e.notes) or ("above tol: not timed" if e.stable and e.grad_err > tol else "")
        lines.append(f"| {e.mode}{' ←' if e.mode == best else ''} | {'yes' if e.stable else 'no'} | "
                     f"{e.grad_err:.1e} | {speed} | {note} |".replace("nan", "—"))
    return "\n".join(lines) + "\n"
