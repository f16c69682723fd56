"""iSQRT-COV Newton–Schulz, MPA/MTP approximants and the Lyapunov sign-iteration solver."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.autograd import gradcheck

import gcp
from tests._reference import newton_schulz_numpy, spd_with_spectrum

F64 = torch.float64


def _well_conditioned(b=3, d=16, seed=0):
    return spd_with_spectrum(torch.linspace(0.5, 2.0, d, dtype=F64).expand(b, d), seed=seed)


def test_isqrtm_20_iterations_matches_sqrtm():
    x = _well_conditioned()
    assert (gcp.isqrtm(x, iters=20) - gcp.sqrtm(x)).abs().max() < 1e-6


def test_isqrtm_inverse_matches_inv_sqrtm():
    x = _well_conditioned()
    assert (gcp.isqrtm(x, iters=20, inverse=True) - gcp.inv_sqrtm(x)).abs().max() < 1e-6


@pytest.mark.parametrize("iters", [1, 2, 5])
def test_isqrtm_matches_plain_reference_iteration(iters):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 64, 196, generator=g, dtype=F64)
    x = gcp.covariance(feats)
    got = gcp.isqrtm(x, iters=iters)
    for i in range(2):
        ref = newton_schulz_numpy(x[i].numpy(), iters)
        assert np.abs(got[i].numpy() - ref).max() < 1e-12 * np.abs(ref).max()


def test_isqrtm_five_iterations_is_a_regularised_root():
    """5 iterations are far from the exact root on real covariances (paper's regime)."""
    g = torch.Generator().manual_seed(2)
    x = gcp.covariance(torch.randn(2, 128, 196, generator=g, dtype=F64))
    rel = ((gcp.isqrtm(x, 5) - gcp.sqrtm(x)).norm() / gcp.sqrtm(x).norm()).item()
    assert 0.1 < rel < 0.6


def test_isqrtm_gradcheck():
    x = _well_conditioned(b=2, d=5).requires_grad_()
    assert gradcheck(lambda a: gcp.isqrtm(a, iters=5), (x,), eps=1e-6, atol=1e-7)


def test_isqrtm_float32_keeps_dtype():
    x = _well_conditioned().float()
    y = gcp.isqrtm(x, iters=20)
    assert y.dtype == torch.float32
    assert (y.double() - gcp.sqrtm(x.double())).abs().max() < 1e-4


def test_approximants_close_to_sqrtm_on_well_conditioned():
    x = _well_conditioned()
    ref = gcp.sqrtm(x)
    rel = lambda y: ((y - ref).norm() / ref.norm()).item()  # noqa: E731
    # measured: MPA[5/5] 3.6e-4, MPA[8/8] 7.2e-6, MTP-10 1.1e-2, MTP-30 3.5e-4 (z up to 0.9)
    assert rel(gcp.mpa_sqrtm(x)) < 1e-3
    assert rel(gcp.mpa_sqrtm(x, (8, 8))) < rel(gcp.mpa_sqrtm(x)) / 10
    assert rel(gcp.mtp_sqrtm(x, 10)) < 3e-2
    assert rel(gcp.mtp_sqrtm(x, 30)) < rel(gcp.mtp_sqrtm(x, 10))


@pytest.mark.parametrize("fn", [gcp.mpa_sqrtm, gcp.mtp_sqrtm])
def test_approximant_backward_is_lyapunov_gradient(fn):
    x = _well_conditioned()
    g = torch.randn_like(x)
    xe = x.clone().requires_grad_()
    gcp.sqrtm(xe).backward(g)
    xa = x.clone().requires_grad_()
    fn(xa).backward(g)
    cos = torch.nn.functional.cosine_similarity(xa.grad.flatten(), xe.grad.flatten(), dim=0)
    assert cos > 0.99
    # with enough sign iterations the backward is the exact Lyapunov solution at the
    # approximate root B = fn(X)/√‖X‖_F: B Y + Y B = sym(G)/√‖X‖_F (independent solver: scipy)
    xb = x.clone().requires_grad_()
    fn(xb, lyap_iters=30).backward(g)
    norm = torch.linalg.matrix_norm(x)
    for i in range(x.shape[0]):
        b = (fn(x[i]) / norm[i].sqrt()).numpy()
        rhs = (0.5 * (g[i] + g[i].T) / norm[i].sqrt()).numpy()
        ref = scipy.linalg.solve_sylvester(b, b, rhs)
        assert np.abs(xb.grad[i].numpy() - ref).max() < 1e-10 * np.abs(ref).max()


def test_lyapunov_solver_residual():
    b = _well_conditioned(d=10) / 3.0  # spectrum in (0, 1]
    c = torch.randn(3, 10, 10, dtype=F64)
    c = c + c.transpose(-1, -2)
    sol = gcp.lyap_sign_solve(b, c, iters=30)
    assert (b @ sol + sol @ b - c).abs().max() < 1e-10
    coarse = gcp.lyap_sign_solve(b, c, iters=3)
    assert (b @ coarse + coarse @ b - c).abs().max() > 1e-3


def test_iterative_finite_on_rank_deficient():
    g = torch.Generator().manual_seed(3)
    x = gcp.covariance(torch.randn(2, 64, 16, generator=g, dtype=F64))
    for fn in (lambda a: gcp.isqrtm(a, 5), gcp.mpa_sqrtm, gcp.mtp_sqrtm):
        xi = x.clone().requires_grad_()
        fn(xi).backward(torch.randn_like(x))
        assert torch.isfinite(xi.grad).all()


def test_isqrtm_gradient_is_symmetric_and_converges_to_exact():
    x = _well_conditioned()
    g = torch.randn_like(x)  # not symmetric on purpose
    xe = x.clone().requires_grad_()
    gcp.sqrtm(xe).backward(g)
    xi = x.clone().requires_grad_()
    gcp.isqrtm(xi, iters=20).backward(g)
    assert torch.equal(xi.grad, xi.grad.transpose(-1, -2))
    assert ((xi.grad - xe.grad).norm() / xe.grad.norm()) < 1e-8


# --- MPA without a batched LU; approximants against independently derived coefficients ---------


def test_mpa_at_d256_with_two_threads_finishes():
    """Some MKL builds hang (or fail in ?LASWP) in a batched LU of 256×256 matrices with 2 threads;
    the Padé denominator is SPD, so MPA uses a Cholesky solve. Run in a fresh process with a
    timeout so a regression fails instead of hanging the suite."""
    import subprocess
    import sys

    code = (
        "import torch, gcp; torch.set_num_threads(2)\n"
        "x = gcp.covariance(torch.randn(32, 256, 196)).requires_grad_()\n"
        "y = gcp.mpa_sqrtm(x); y.sum().backward()\n"
        "head = gcp.GCPHead(64, 10, reduced_dim=256, method='mpa')\n"
        "head(torch.randn(4, 64, 14, 14)).sum().backward()\n"
        "assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_mtp_against_binomial_series():
    """a_k = (−1)^k C(½, k) from scipy, applied on numpy eigenvalues: independent of gcp.series."""
    from scipy.special import binom

    x = _well_conditioned()
    for degree in (1, 4, 10, 17):
        a = [(-1) ** k * binom(0.5, k) for k in range(degree + 1)]
        lam, v = np.linalg.eigh(x.numpy())
        norm = np.linalg.norm(x.numpy(), axis=(-2, -1))[:, None]
        z = 1 - lam / norm
        vals = np.sqrt(norm) * sum(c * z**k for k, c in enumerate(a))
        ref = (v * vals[:, None, :]) @ np.swapaxes(v, -1, -2)
        assert np.abs(gcp.mtp_sqrtm(x, degree).numpy() - ref).max() < 1e-12 * np.abs(ref).max(), degree


@pytest.mark.parametrize("degree", [(5, 5), (3, 4), (8, 8), (6, 2)])
def test_mpa_against_mpmath_pade(degree):
    """The [m/n] approximant from mpmath.pade (its own linear solve), on numpy eigenvalues."""
    import mpmath

    with mpmath.workdps(40):
        taylor = [(-1) ** k * mpmath.binomial(mpmath.mpf(1) / 2, k) for k in range(sum(degree) + 1)]
        p, q = mpmath.pade(taylor, *degree)
        p, q = [float(c) for c in p], [float(c) for c in q]
    x = _well_conditioned()
    lam, v = np.linalg.eigh(x.numpy())
    norm = np.linalg.norm(x.numpy(), axis=(-2, -1))[:, None]
    z = 1 - lam / norm
    vals = np.sqrt(norm) * np.polyval(p[::-1], z) / np.polyval(q[::-1], z)
    ref = (v * vals[:, None, :]) @ np.swapaxes(v, -1, -2)
    assert np.abs(gcp.mpa_sqrtm(x, degree).numpy() - ref).max() < 1e-12 * np.abs(ref).max()


# --- "ns": the eigenbasis backward equals autograd through the matrix iterations ---------------


def _plain_newton_schulz(x, iters, inverse):
    """iSQRT-COV written plainly in torch (full coupled iteration) for autograd to differentiate."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype)
    tr = torch.diagonal(x, dim1=-2, dim2=-1).sum(-1)[..., None, None]
    y, z = x / tr, eye.expand_as(x)
    for _ in range(iters):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return z / tr.sqrt() if inverse else y * tr.sqrt()


@pytest.mark.parametrize("iters", [1, 5, 10])
@pytest.mark.parametrize("p", [0.5, -0.5])
@pytest.mark.parametrize("spectrum", ["separated", "repeated", "spread"])
def test_ns_backward_equals_autograd_through_the_iterations(spectrum, p, iters):
    lam = {
        "separated": 0.8 ** torch.arange(12, dtype=F64),
        "repeated": torch.tensor([1.0] * 4 + [2.5] * 4 + [0.3] * 2 + [4.0, 7.0], dtype=F64),
        "spread": torch.logspace(-4, 0, 12, dtype=F64),
    }[spectrum]
    x = spd_with_spectrum(lam.expand(2, 12), seed=4)
    g = torch.randn(2, 12, 12, dtype=F64)
    xa = x.clone().requires_grad_()
    _plain_newton_schulz(0.5 * (xa + xa.transpose(-1, -2)), iters, p < 0).backward(g)
    xb = x.clone().requires_grad_()
    gcp.powm(xb, p, "ns", iters=iters).backward(g)
    assert ((xb.grad - xa.grad).norm() / xa.grad.norm()).item() < 1e-12


def test_no_product_code_calls_a_batched_lu():
    """The hang above is an LU's; keep every LU-based call out of the package (code, not comments)."""
    import ast
    import pathlib

    lu_names = {"solve", "inv", "inv_ex", "lu", "lu_factor", "lu_factor_ex", "lu_solve", "det", "slogdet", "inverse"}
    root = pathlib.Path(gcp.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in lu_names:
                offenders.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    assert offenders == []
