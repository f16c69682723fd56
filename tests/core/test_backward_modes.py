"""Every backward mode against the float64 "exact" reference, and on the degenerate suite."""

import math

import numpy as np
import pytest
import torch

import gcp
from gcp.backward import SpectralState
from tests._reference import power_iteration_eigh, spd_with_spectrum

F64 = torch.float64
APPROX = [m for m in gcp.BACKWARDS if m not in ("exact", "ed")]
EIGH_MODES = [m for m in gcp.BACKWARDS if gcp.get_backward(m).supports_eigh]


def _separated(b=3, d=16, seed=1):
    """Well-separated spectra: geometric spacing, ratio λ_{i}/λ_{i+1} = 0.8, spanning ~1/30."""
    lam = 0.8 ** torch.arange(d, dtype=F64).flip(0)
    return spd_with_spectrum(lam.expand(b, d), seed=seed)


def _grad(fn, x, g):
    xi = x.clone().requires_grad_()
    out = fn(xi)
    out.backward(g)
    return xi.grad


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("p", [0.5, -0.5])
@pytest.mark.parametrize("mode", APPROX)
def test_matrix_function_grad_close_to_exact(mode, p):
    x = _separated()
    g = torch.randn_like(x)
    ref = _grad(lambda a: gcp.powm(a, p), x, g)
    got = _grad(lambda a: gcp.powm(a, p, mode), x, g)
    assert _cos(got, ref) >= 0.99


# Bounds from the mathematics, for the spectrum of _separated (λ_i = 0.8^i, d = 16: every pair
# has r = λ_lo/λ_hi <= 0.8), p = ½ (f = √λ). Orthogonal conjugation keeps Frobenius norms, so the
# gradient's relative error is at most the largest relative error of one pair's term:
#  taylor (K = 100): the coupling is the exact 1/(λ_hi − λ_lo) times (1 − r^(K+1)) → 0.8^101;
#  pi (K = 19): degree 19 on one side, 18 on the other; with f_lo = √r f_hi the pair's term is
#    off by r^19.5 exactly → 0.8^19.5;
#  trunc (threshold 1e-3·λmax): the smallest gap, 0.8^14·0.2 ≈ 9e-3·λmax, is above it, so
#    nothing is clipped → round-off;
#  pade: P/Q = 1/(1−r) in exact arithmetic → round-off of two 51-term Horner sums, amplified by
#    at most 1/(1−r) = 5.
# Round-off allowance: 1e-13 (measured 1.2e-15 for trunc and pade). "ns" and "lyap" are checked
# against independent implementations instead (test_iterative.py and below).
ROUND_OFF = 1e-13
ERROR_BOUNDS = {"trunc": ROUND_OFF, "pade": ROUND_OFF, "taylor": 0.8**101 + ROUND_OFF, "pi": 0.8**19.5 + ROUND_OFF}


@pytest.mark.parametrize("mode", sorted(ERROR_BOUNDS))
def test_error_within_the_truncation_bound(mode):
    x = _separated()
    g = torch.randn_like(x)
    ref = _grad(gcp.sqrtm, x, g)
    got = _grad(lambda a: gcp.sqrtm(a, mode), x, g)
    assert _rel(got, ref) <= ERROR_BOUNDS[mode]


def test_pi_error_is_the_predicted_power():
    """On a 2×2 matrix the bound is attained: the error is exactly r^(K+1/2) (r = 0.8, K = 19)."""
    x = spd_with_spectrum(torch.tensor([[0.8, 1.0]], dtype=F64), seed=0)
    g = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], dtype=F64)
    v = torch.linalg.eigh(x)[1]
    g = v @ g @ v.transpose(-1, -2)  # purely off-diagonal in the eigenbasis
    err = _rel(_grad(lambda a: gcp.sqrtm(a, "pi"), x, g), _grad(gcp.sqrtm, x, g))
    assert math.isclose(err, 0.8**19.5, rel_tol=1e-9)


def _literal_block_sign_lyapunov(b, c, steps):
    """B X + X B = C by the Newton–Schulz sign iteration on the block matrix [[B, C], [0, −B]]
    written out in numpy (Song et al., ICLR 2022): X = ½ · top-right block of the limit."""
    import numpy as np

    d = b.shape[-1]
    h = np.block([[b, c], [np.zeros((d, d)), -b]])
    eye = np.eye(2 * d)
    for _ in range(steps):
        h = 0.5 * h @ (3 * eye - h @ h)
    return 0.5 * h[:d, d:]


@pytest.mark.parametrize("iters", [1, 8, 20])
def test_lyap_equals_the_literal_block_sign_iteration(iters):
    x = _separated(b=2, d=10)
    g = torch.randn_like(x)
    got = _grad(lambda a: gcp.sqrtm(a, "lyap", iters=iters), x, g)
    for i in range(2):
        xi = x[i].numpy()
        scale = np.sqrt(np.linalg.norm(xi))
        lam, v = np.linalg.eigh(xi)
        root = (v * np.sqrt(lam)) @ v.T
        rhs = 0.5 * (g[i].numpy() + g[i].numpy().T)
        ref = _literal_block_sign_lyapunov(root / scale, rhs / scale, iters)
        ref = 0.5 * (ref + ref.T)
        assert np.abs(got[i].numpy() - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("mode", [m for m in EIGH_MODES if m != "exact"])
def test_eigh_grad_close_to_exact(mode):
    x = _separated(b=2, d=10)
    w = torch.randn(10, 10, dtype=F64)
    wl = torch.randn(10, dtype=F64)

    def loss(a, m):
        lam, v = gcp.eigh(a, m)
        return (lam * wl).sum() + ((v * v) * w).sum()

    grads = {}
    for m in ("exact", mode):
        xi = x.clone().requires_grad_()
        loss(xi, m).backward()
        grads[m] = xi.grad
    assert _cos(grads[mode], grads["exact"]) >= 0.99


@pytest.mark.parametrize("iters", [1, 3, 19])
def test_pi_equals_literal_deflation_loop(iters):
    x = _separated(b=1, d=7, seed=4)[0]
    wl = torch.randn(7, dtype=F64)
    wv = torch.randn(7, 7, dtype=F64)

    def loss(lam, v):
        return (lam * wl).sum() + ((v * v) * wv).sum()

    xa = x.clone().requires_grad_()
    loss(*power_iteration_eigh(xa, iters)).backward()
    literal = 0.5 * (xa.grad + xa.grad.T)
    xb = x.clone().requires_grad_()
    loss(*gcp.eigh(xb, "pi", iters=iters)).backward()
    assert _rel(xb.grad, literal) < 1e-10


def test_pi_gradient_is_meaningful_and_converges():
    """More power-iteration steps approach the exact gradient (not round-off, unlike SVD_PI)."""
    x = _separated(b=1, d=8)
    g = torch.randn_like(x)
    ref = _grad(gcp.sqrtm, x, g)
    errs = [_rel(_grad(lambda a: gcp.sqrtm(a, "pi", iters=k), x, g), ref) for k in (5, 19, 200)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-10
    assert _grad(lambda a: gcp.sqrtm(a, "pi"), x, g).norm() > 0.5 * ref.norm()


def test_taylor_coupling_equals_explicit_series():
    lam = torch.tensor([[0.01, 0.3, 0.9, 0.9 + 1e-13, 1.0]], dtype=F64)
    state = SpectralState(lam=lam, vecs=None, floor=torch.full((1, 1), 1e-12, dtype=F64))  # type: ignore[arg-type]
    mode = gcp.get_backward("taylor")
    for degree in (0, 9, 100):
        k = mode.coupling(state, mode.parse_options({"degree": degree}))[0]
        for a in range(5):
            for b in range(a + 1, 5):
                hi, lo = lam[0, b], lam[0, a]
                series = sum((lo / hi) ** j for j in range(degree + 1)) / hi
                assert math.isclose(k[a, b].item(), series.item(), rel_tol=1e-12)
                assert math.isclose(k[b, a].item(), -series.item(), rel_tol=1e-12)


def test_taylor_error_follows_truncation():
    """Error at r = 0.9 for degree 100 is r^101/(1−r)-sized relative to 1/(λi−λj) (paper: ~2e-4)."""
    lam = torch.tensor([[0.9, 1.0]], dtype=F64)
    state = SpectralState(lam=lam, vecs=None, floor=torch.full((1, 1), 1e-12, dtype=F64))  # type: ignore[arg-type]
    mode = gcp.get_backward("taylor")
    k = mode.coupling(state, mode.parse_options({}))[0, 0, 1].item()
    rel = abs(k - 1 / 0.1) * 0.1
    assert math.isclose(rel, 0.9**101, rel_tol=1e-6)


@pytest.mark.parametrize("m,n", [(50, 50), (5, 5), (7, 3), (2, 3)])
def test_pade_coefficients_are_the_minimum_norm_solution(m, n):
    """The [m/n] Padé system of 1/(1−x) (Taylor coefficients all 1) is singular; numpy's lstsq
    gives its minimum-norm solution independently of the code's closed form."""
    from gcp.series import pade_coefficients

    rows = [[1.0 if k - j >= 0 else 0.0 for j in range(1, n + 1)] for k in range(m + 1, m + n + 1)]
    q_tail = np.linalg.lstsq(np.array(rows), -np.ones(n), rcond=None)[0]
    q_ref = np.concatenate([[1.0], q_tail])
    p_ref = [sum(q_ref[j] for j in range(min(k, n) + 1)) for k in range(m + 1)]
    p, q = pade_coefficients("geometric", m, n)
    assert np.abs(np.array(q) - q_ref).max() < 1e-14
    assert np.abs(np.array(p) - np.array(p_ref)).max() < 1e-14
    # and the published property: Q(x) ≈ (1 − x) P(x)
    for x in (0.3, 0.9, 0.999):
        px = sum(c * x**k for k, c in enumerate(p))
        qx = sum(c * x**k for k, c in enumerate(q))
        assert abs(qx - (1 - x) * px) < 1e-13


def _degenerate_suite():
    d = 12
    eye = torch.eye(d, dtype=F64)
    rep = torch.tensor([1.0] * 4 + [3.0] * 4 + [0.5] * 2 + [7.0, 9.0], dtype=F64)
    g = torch.Generator().manual_seed(5)
    few = torch.randn(2, 64, 16, generator=g, dtype=F64)
    many = torch.randn(1, 256, 196, generator=g, dtype=F64)
    suite = {
        "identity": eye.expand(2, d, d).clone(),
        "repeated_rotated": spd_with_spectrum(rep.expand(2, d), seed=6),
        "rank_deficient_n16_d64": gcp.covariance(few),
        "rank_deficient_n196_d256": gcp.covariance(many),
    }
    base = spd_with_spectrum(torch.logspace(-2, 0, d, dtype=F64).expand(2, d), seed=7)
    for s in (1e-6, 1e6):
        suite[f"scale_{s:g}"] = base * s
    return suite


DEGENERATE = _degenerate_suite()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("p", [0.5, -0.5])
@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_degenerate_suite_finite_and_bounded(case, p, dtype):
    x = DEGENERATE[case].to(dtype)
    g = torch.randn(x.shape, dtype=F64).to(dtype)
    # bound: |K_ab| <= max f'(λ̂) for exact; approximate modes may exceed it by their own
    # coupling bound, e.g. (K+1)/λ̂_floor for the series, so use a per-mode bound below.
    lam = torch.linalg.eigvalsh(x.to(F64))
    floor = 1e-10 * lam[..., -1:]
    lam_hat = torch.maximum(lam, floor)
    fprime = (abs(p) * lam_hat.pow(p - 1)).max().item()
    fmax = lam_hat.pow(p).max().item()
    gnorm = g.to(F64).norm().item()
    # coupling bounds from each mode's definition (not from its code), at the floored spectrum
    lam_top = lam_hat.max().item()
    kmax = {
        "taylor": 101 / lam_hat.min().item(),  # |T_K| <= (K+1)/λ_hi, K = 100
        "pi": 20 / lam_hat.min().item(),  # K = 19
        "trunc": 1 / (1e-3 * lam_top),  # gaps floored at threshold·λmax
    }
    for mode in APPROX + ["exact"]:
        grad = _grad(lambda a: gcp.powm(a, p, mode), x, g)
        assert torch.isfinite(grad).all(), f"{mode} on {case}"
        if mode in ("exact", "pade"):  # divided differences of λ^p: |K_ab| <= max f'(λ̂)
            bound = fprime * gnorm
        elif mode in ("ns", "lyap"):
            bound = 10 * fprime * gnorm
        else:
            bound = (2 * kmax[mode] * fmax + fprime) * gnorm
        assert grad.to(F64).norm().item() <= bound * (1 + 1e-3) + 1e-30, f"{mode} on {case}"


@pytest.mark.parametrize("case", ["identity", "repeated_rotated", "rank_deficient_n16_d64"])
@pytest.mark.parametrize("mode", [m for m in EIGH_MODES if m != "ed"])
def test_eigh_degenerate_finite(case, mode):
    x = DEGENERATE[case].clone().requires_grad_()
    lam, v = gcp.eigh(x, mode)
    w = torch.randn(v.shape[-1], v.shape[-1], dtype=F64)
    ((v * v) * w).sum().add(lam.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_ed_control_fails_on_identity():
    """The unguarded standard gradient is non-finite on repeated eigenvalues, as reported."""
    x = DEGENERATE["identity"].clone().requires_grad_()
    lam, v = gcp.eigh(x, "ed")
    ((v * v) * torch.randn(12, 12, dtype=F64)).sum().backward()
    assert not torch.isfinite(x.grad).all()
    y = DEGENERATE["identity"].clone().requires_grad_()
    gcp.sqrtm(y, "ed").backward(torch.randn(2, 12, 12, dtype=F64))
    assert not torch.isfinite(y.grad).all()


# --- Padé on exact ties: the divided difference tends to f'(λ), not 0 --------------------------


@pytest.mark.parametrize("p", [0.5, -0.5])
def test_pade_gradient_at_identity_is_the_derivative(p):
    """d(I + tE)^p/dt = p E at t = 0, so ∂⟨G, X^p⟩/∂X at I is p·sym(G) (no eigen-anything)."""
    x = torch.eye(6, dtype=F64).unsqueeze(0)
    g = torch.randn(1, 6, 6, dtype=F64)
    got = _grad(lambda a: gcp.powm(a, p, "pade"), x, g)
    assert _rel(got, p * 0.5 * (g + g.transpose(-1, -2))) < 1e-13


def test_pade_gradient_on_diagonal_repeated_spectrum():
    """X = diag(λ) with ties: Daleckii–Krein in the standard basis, K_ab = 1/(√λa + √λb)."""
    lam = torch.tensor([1.0, 1.0, 1.0, 2.5, 2.5, 4.0], dtype=F64)
    x = torch.diag(lam).unsqueeze(0)
    g = torch.randn(1, 6, 6, dtype=F64)
    s = lam.sqrt()
    expect = 0.5 * (g + g.transpose(-1, -2)) / (s.unsqueeze(-1) + s.unsqueeze(-2))
    assert _rel(_grad(lambda a: gcp.sqrtm(a, "pade"), x, g), expect) < 1e-13


@pytest.mark.parametrize("p", [0.5, -0.5])
def test_pade_gradcheck_on_rotated_repeated_spectrum(p):
    from torch.autograd import gradcheck

    lam = torch.tensor([[1.0, 1.0, 1.0, 2.5, 2.5, 4.0]], dtype=F64)
    x = spd_with_spectrum(lam, seed=3).requires_grad_()
    fn = lambda a: gcp.powm(0.5 * (a + a.transpose(-1, -2)), p, "pade")  # noqa: E731
    assert gradcheck(fn, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_pade_eigenvector_coupling_of_ties_stays_zero():
    """For eigh the eigenvectors of a repeated eigenvalue are arbitrary: no gradient flows there."""
    lam = torch.tensor([[1.0, 1.0, 3.0]], dtype=F64)
    state = SpectralState(lam=lam, vecs=None, floor=torch.full((1, 1), 1e-12, dtype=F64))  # type: ignore[arg-type]
    mode = gcp.get_backward("pade")
    k = mode.coupling(state, mode.parse_options({}))[0]
    assert k[0, 1] == 0 and k[1, 0] == 0
    assert math.isclose(k[0, 2].item(), 1 / 2.0, rel_tol=1e-13)
