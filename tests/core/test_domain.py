"""The domain contract of every public matrix function, as a sweep: every route × dtype × scale
(1e-300 … 1e300) × spectrum (separated, clustered, tied, rank-deficient, zero, asymmetric) gives
the right answer within the route's tolerance, or a typed error. Never NaN, never a silently
wrong value. The reference is numpy's float64 eigendecomposition of the unit-scale matrix, scaled
analytically; the iterative routes (whose few iterations are an approximation by design) are
held to their own unit-scale answer, computed in float64, so the sweep checks scale-safety and
the domain, not their truncation error (tests/core/test_iterative.py checks that)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Optional

import numpy as np
import pytest
import torch

import gcp

KINDS = ("separated", "clustered", "tied", "rank_deficient", "zero", "asymmetric")


def _unit_matrix(kind: str, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = {
        "separated": np.linspace(0.1, 1.0, d),
        "clustered": 0.5 + 1e-6 * np.arange(d),
        "tied": np.repeat([0.25, 1.0], [d // 2, d - d // 2]),
        "rank_deficient": np.concatenate([np.zeros(d // 2), np.linspace(0.3, 1.0, d - d // 2)]),
        "zero": np.zeros(d),
        "asymmetric": np.linspace(0.1, 1.0, d),
    }[kind]
    x = (q * lam) @ q.T
    x = 0.5 * (x + x.T)
    if kind == "asymmetric":
        x = x + 0.05 * np.triu(np.ones((d, d)), 1)
    return x


def _eig_function(x: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    lam, v = np.linalg.eigh(x)
    return (v * f(lam)) @ v.T


def _power(p: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(lam: np.ndarray) -> np.ndarray:
        if p > 0:
            return np.clip(lam, 0, None) ** p
        return np.maximum(lam, 1e-10 * lam.max()) ** p
    return f


class Route:
    """A public function, its degree (``f(sX) = s^p f(X)``, or a log shift) and its tolerance."""

    def __init__(self, name: str, fn: Callable, p: Optional[float], reference: Optional[Callable], tol: dict,
                 singular_at_zero: bool = False, log: bool = False) -> None:
        self.name, self.fn, self.p, self.reference, self.tol = name, fn, p, reference, tol
        self.singular_at_zero, self.log = singular_at_zero, log


ROUTES = [
    Route("sqrtm", gcp.sqrtm, 0.5, lambda x: _eig_function(x, _power(0.5)), {torch.float32: 3e-4, torch.float64: 1e-6}),
    Route("inv_sqrtm", gcp.inv_sqrtm, -0.5, lambda x: _eig_function(x, _power(-0.5)),
          {torch.float32: 1e-3, torch.float64: 1e-6}, singular_at_zero=True),
    # λ^0.3 of a zero eigenvalue that round-off (~1e-16 λ_max) moves is ~(1e-16)^0.3 ≈ 2e-5 of the answer:
    # two eigensolvers agree to that on a rank-deficient matrix, not better
    Route("powm(0.3)", lambda x: gcp.powm(x, 0.3), 0.3, lambda x: _eig_function(x, _power(0.3)),
          {torch.float32: 1e-3, torch.float64: 1e-4}),
    Route("powm(-1)", lambda x: gcp.powm(x, -1.0), -1.0, lambda x: _eig_function(x, _power(-1.0)),
          {torch.float32: 1e-3, torch.float64: 1e-6}, singular_at_zero=True),
    Route("eigvals", lambda x: torch.diag_embed(gcp.eigh(x)[0]), 1.0,
          lambda x: np.diag(np.linalg.eigvalsh(x)), {torch.float32: 1e-5, torch.float64: 1e-12}),
    # the cut between the kept and the floored eigenvalues falls between the two groups of the tied
    # spectrum (topn jumps where it splits a tie); a cut inside the 1e-6 cluster is ill-posed in
    # float32, whose round-off is larger than the cluster: the sweep skips that one case
    Route("topn_sqrtm", lambda x: gcp.topn_sqrtm(x, x.shape[-1] // 2), 0.5, None,
          {torch.float32: 1e-4, torch.float64: 1e-9}),
    Route("logm", lambda x: gcp.logm(x, eps=1e-3 * _peak(x)), None,
          lambda x: _eig_function(x, lambda lam: np.log(np.clip(lam, 0, None) + 1e-3 * max(np.abs(x).max(), 0))
                                  if np.abs(x).max() > 0 else np.full_like(lam, math.log(1e-3))),
          {torch.float32: 1e-3, torch.float64: 1e-8}, log=True),
    Route("isqrtm", lambda x: gcp.isqrtm(x, iters=8), 0.5, None, {torch.float32: 1e-4, torch.float64: 1e-9}),
    Route("isqrtm(inverse)", lambda x: gcp.isqrtm(x, iters=8, inverse=True), -0.5, None,
          {torch.float32: 1e-4, torch.float64: 1e-9}, singular_at_zero=True),
    Route("mpa_sqrtm", gcp.mpa_sqrtm, 0.5, None, {torch.float32: 1e-3, torch.float64: 1e-9}),
    Route("mtp_sqrtm", gcp.mtp_sqrtm, 0.5, None, {torch.float32: 1e-4, torch.float64: 1e-9}),
]


def _peak(x: torch.Tensor) -> float:
    """``max|X|`` (1 for a zero matrix): logm's ``eps`` in the units of ``x``."""
    peak = float(x.detach().abs().max())
    return peak if peak > 0 else 1.0


SCALES = {torch.float32: (1e-30, 1e-10, 1.0, 1e10, 1e30), torch.float64: (1e-300, 1e-100, 1.0, 1e100, 1e300)}


def _expected(route: Route, x: torch.Tensor) -> np.ndarray:
    """The answer for the matrix ``x`` as given (its float64 value: rounding a rank-deficient matrix
    to float32 moves its zero eigenvalues to ~1e-8, which a negative power sees), from the float64
    reference at unit scale (or, for the iterative routes, the route itself there), scaled back
    analytically by the power of two ``s`` that took it to unit scale."""
    x64 = x[0].double().numpy()
    peak = np.abs(x64).max()
    s = 2.0 ** round(math.log2(peak)) if peak > 0 else 1.0
    unit = x64 / s  # exact: a power of two
    if route.reference is not None:
        base = route.reference(unit)
    else:
        base = route.fn(torch.from_numpy(unit)[None])[0].numpy()
    if route.log:  # log(s(X + εI)) = log(X + εI) + log s · I, with eps = 1e-3 max|sX|
        return base + math.log(s) * np.eye(unit.shape[0])
    with np.errstate(over="ignore"):  # an answer beyond float64: the caller compares with the dtype's max
        return base * s ** route.p


def check_case(route: Route, kind: str, dtype: torch.dtype, scale: float, d: int, seed: int) -> str:
    """``"right"`` or ``"refused"``; anything else is an error message (a failure)."""
    x = torch.from_numpy(_unit_matrix(kind, d, seed) * scale).to(dtype)[None]
    try:
        y = route.fn(x)
    except gcp.NonSymmetricError:
        return "refused" if kind == "asymmetric" else f"NonSymmetricError on {kind}"
    except gcp.SingularError:
        return "refused" if kind == "zero" and route.singular_at_zero else f"SingularError on {kind}"
    except gcp.NonFiniteError as exc:  # an answer the dtype cannot hold: refused, if it really cannot
        want = _expected(route, x)
        too_big = np.abs(want).max() > torch.finfo(dtype).max
        return "refused" if too_big else f"NonFiniteError on a representable answer: {exc}"
    except gcp.GCPError as exc:
        return f"unexpected {type(exc).__name__}: {exc}"
    if kind == "asymmetric":
        return "accepted an asymmetric matrix"
    if kind == "zero" and route.singular_at_zero:
        return "answered the inverse of a zero matrix"
    got = y[0].double().numpy()
    if not np.isfinite(got).all():
        return "non-finite output"
    want = _expected(route, x)
    norm = np.abs(want).max()
    if norm == 0:
        return "right" if np.abs(got).max() == 0 else f"{np.abs(got).max():.2e} where the answer is 0"
    err = np.abs(got - want).max() / norm
    return "right" if err <= route.tol[dtype] else f"relative error {err:.2e}"


def sweep(d: int, seeds: tuple[int, ...]) -> tuple[Counter, list[str]]:
    counts: Counter = Counter()
    failures = []
    for route in ROUTES:
        for dtype, scales in SCALES.items():
            for scale in scales:
                for kind in KINDS:
                    if route.name == "topn_sqrtm" and kind == "clustered" and dtype == torch.float32:
                        continue
                    for seed in seeds:
                        outcome = check_case(route, kind, dtype, scale, d, seed)
                        counts[outcome if outcome in ("right", "refused") else "wrong"] += 1
                        if outcome not in ("right", "refused"):
                            failures.append(f"{route.name} {dtype} scale={scale:g} {kind} seed={seed}: {outcome}")
    return counts, failures


def test_every_route_is_right_or_refused_across_scales_dtypes_and_spectra():
    counts, failures = sweep(d=4, seeds=(0,))
    print(f"domain sweep (d=4): {dict(counts)}")
    assert failures == [] and counts["right"] > 0 and counts["refused"] > 0


@pytest.mark.slow
def test_every_route_is_right_or_refused_larger_sweep():
    counts, failures = sweep(d=12, seeds=(0, 1, 2))
    print(f"domain sweep (d=12, 3 seeds): {dict(counts)}")
    assert failures == []


def test_the_symmetry_tolerance_accepts_a_float32_covariance_and_refuses_more():
    feats = torch.randn(8, 256, 49)
    cov = feats @ feats.transpose(-1, -2) / 49  # float32 round-off makes it slightly asymmetric
    gcp.sqrtm(cov)  # accepted
    bumped = cov.clone()
    bumped[:, 0, 1] += 1e-2 * float(cov.abs().max())
    with pytest.raises(gcp.NonSymmetricError, match=r"gcp.sqrtm: 8 of 8 matrices are not symmetric"):
        gcp.sqrtm(bumped)


@pytest.mark.parametrize("fn", [gcp.inv_sqrtm, lambda x: gcp.powm(x, -1.0), lambda x: gcp.isqrtm(x, inverse=True)])
def test_a_negative_power_of_a_zero_matrix_is_refused(fn):
    with pytest.raises(gcp.SingularError, match="zero"):
        fn(torch.zeros(2, 3, 3))


@pytest.mark.parametrize("mode", ["pade", "taylor", "exact", "pi"])
def test_vmap_of_grad_matches_the_per_sample_gradient(mode):
    x = torch.randn(3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x @ x.mT + torch.eye(4, dtype=torch.float64)
    for f in (lambda t: gcp.sqrtm(t, mode).sum(), lambda t: gcp.inv_sqrtm(t, mode).sum(),
              lambda t: gcp.eigh(t, mode)[1].abs().sum()):
        batched = torch.func.vmap(torch.func.grad(f))(x)
        for i in range(3):
            xi = x[i].clone().requires_grad_(True)
            f(xi).backward()
            assert torch.allclose(batched[i], xi.grad, atol=1e-12)


@pytest.mark.parametrize("p", [0.3, -1.0])
def test_forward_over_reverse_of_a_power_without_a_second_derivative_is_refused_by_type(p):
    x = torch.randn(4, 4, dtype=torch.float64)
    x = x @ x.mT + torch.eye(4, dtype=torch.float64)

    def f(t):
        return gcp.powm(t, p).sum()

    with pytest.raises(gcp.UnsupportedDerivativeError, match="derivatives of order 2"):
        torch.func.hessian(f)(x)
    with pytest.raises(gcp.UnsupportedDerivativeError, match="derivatives of order 2"):
        torch.func.jvp(torch.func.grad(f), (x,), (torch.eye(4, dtype=torch.float64),))


@pytest.mark.parametrize("layer", [gcp.ZCAWhitening(4, groups=2), gcp.PCADenoising(4, k=2)], ids=["zca", "pca"])
def test_an_empty_batch_passes_in_eval_and_is_refused_in_training(layer):
    layer.eval()
    assert layer(torch.randn(0, 4, 3, 3)).shape == (0, 4, 3, 3)
    layer.train()
    with pytest.raises(gcp.ShapeError, match="at least 2 samples"):
        layer(torch.randn(0, 4, 3, 3))
