"""The "exact" backward: gradcheck in float64, repeated eigenvalues, agreement with "ed"."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.autograd import gradcheck

import gcp
from tests._reference import spd_with_spectrum

F64 = torch.float64


def _random_spd(b: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, d, 2 * d, generator=g, dtype=F64)
    return a @ a.transpose(-1, -2) / (2 * d) + 0.1 * torch.eye(d, dtype=F64)


def _sym_input(fn):
    return lambda a: fn(0.5 * (a + a.transpose(-1, -2)))


@pytest.mark.parametrize("p", [0.5, -0.5, 1.0, 2.0, 0.3])
def test_gradcheck_random_spd(p):
    x = _random_spd(2, 5).requires_grad_()
    assert gradcheck(_sym_input(lambda a: gcp.powm(a, p)), (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


def _repeated_inputs():
    d = 6
    eye = torch.eye(d, dtype=F64)
    block = torch.tensor([1.0, 1.0, 1.0, 2.5, 2.5, 4.0], dtype=F64)
    return {
        "identity": eye.unsqueeze(0).clone(),
        "block_identity": torch.diag(block).unsqueeze(0),
        "rotated_repeated": spd_with_spectrum(block.unsqueeze(0), seed=3),
    }


@pytest.mark.parametrize("name", ["identity", "block_identity", "rotated_repeated"])
@pytest.mark.parametrize("p", [0.5, -0.5, 1.0, 2.0])
def test_gradcheck_repeated_eigenvalues(name, p):
    x = _repeated_inputs()[name].requires_grad_()
    assert gradcheck(_sym_input(lambda a: gcp.powm(a, p)), (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("p", [0.5, -0.5, 2.0])
def test_exact_equals_ed_on_separated_spectra(p):
    lam = torch.logspace(-1, 1, 12, dtype=F64).expand(3, 12)
    x = spd_with_spectrum(lam, seed=1)
    g = torch.randn(3, 12, 12, dtype=F64)
    grads = {}
    for mode in ("exact", "ed"):
        xi = x.clone().requires_grad_()
        gcp.powm(xi, p, mode).backward(g)
        grads[mode] = xi.grad
    err = (grads["exact"] - grads["ed"]).abs().max() / grads["exact"].abs().max()
    assert err < 1e-8


@pytest.mark.parametrize("p", [0.5, -0.5, 2.0, 0.3, -1.0])
def test_divided_difference_against_mpmath(p):
    """K_ab = (λa^p − λb^p)/(λa − λb), K_aa = p λa^(p−1), in 50-digit arithmetic: an independent
    oracle (no closed form shared with the code), on separated, close (1e-12 apart) and tied
    eigenvalues and across 9 decades."""
    import mpmath

    from gcp.backward.exact import power_divided_difference

    lam = [1e-8, 1e-3, 0.5, 0.5 + 1e-12, 0.5 + 1e-12, 2.0, 7.0]
    got = power_divided_difference(torch.tensor([lam], dtype=F64), p)[0]
    with mpmath.workdps(50):
        for a, la in enumerate(lam):
            for b, lb in enumerate(lam):
                x, y = mpmath.mpf(la), mpmath.mpf(lb)
                ref = p * x ** (p - 1) if x == y else (x**p - y**p) / (x - y)
                assert abs(got[a, b].item() - float(ref)) <= 1e-12 * abs(float(ref)), (a, b)


@pytest.mark.parametrize("p", [0.5, -0.5, 2.0, 0.25])
def test_forward_matches_scipy(p):
    x = _random_spd(3, 7)
    y = gcp.powm(x, p)
    for i in range(3):
        ref = scipy.linalg.fractional_matrix_power(x[i].numpy(), p).real
        assert abs(y[i].numpy() - ref).max() < 1e-11 * abs(ref).max()


def test_sqrt_and_inverse_sqrt_identities():
    x = _random_spd(4, 10)
    r = gcp.sqrtm(x)
    ir = gcp.inv_sqrtm(x)
    eye = torch.eye(10, dtype=F64)
    assert torch.allclose(r @ r, x, atol=1e-12)
    assert torch.allclose(ir @ x @ ir, eye.expand(4, 10, 10), atol=1e-11)


def test_eigh_exact_gradcheck_separated():
    x = spd_with_spectrum(torch.tensor([[0.2, 0.7, 1.5, 3.0, 5.5]], dtype=F64), seed=2)
    w = torch.randn(5, 5, dtype=F64)

    def fn(a):
        lam, v = gcp.eigh(0.5 * (a + a.transpose(-1, -2)))
        return lam, (v * v) * w  # squares: invariant to the eigenvectors' signs

    assert gradcheck(fn, (x.clone().requires_grad_(),), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_eigh_exact_zeroes_coupling_of_repeated_pairs_only():
    x = _repeated_inputs()["rotated_repeated"]
    xi = x.clone().requires_grad_()
    lam, v = gcp.eigh(xi)
    ((v * v) * torch.arange(36, dtype=F64).view(6, 6)).sum().backward()
    assert torch.isfinite(xi.grad).all()
    state_lam = torch.linalg.eigvalsh(x)[0]
    k = gcp.get_backward("exact").coupling(
        gcp.backward.SpectralState(lam=state_lam.unsqueeze(0), vecs=None, floor=None),  # type: ignore[arg-type]
        gcp.get_backward("exact").parse_options({}),
    )[0]
    # pairs inside the clusters {0,1,2} and {3,4} are zeroed; the others are 1/(λ_b − λ_a)
    assert k[0, 1] == 0 and k[3, 4] == 0 and k[1, 2] == 0
    assert torch.isclose(k[0, 5], 1.0 / (state_lam[5] - state_lam[0]))


# --- the eigenvalue floor: only where λ^p or a coupling would divide by zero -------------------


def _rank_deficient(d: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return gcp.covariance(torch.randn(1, d, n, generator=g, dtype=F64))[0]


@pytest.mark.parametrize("d", [64, 256])
def test_sqrtm_of_rank_deficient_covariance_matches_scipy(d):
    """GCP's normal case: d channels, n < d positions (rank n − 1). A zero eigenvalue perturbed by
    round-off ε‖X‖ moves the root by √(ε‖X‖), so two correct methods agree to ~1e-8 relative
    (measured 1.6e-8 / 2.1e-8 at d = 64 / 256); the old floor eps·λmax = 1e-10 cost √1e-10 = 1e-5."""
    x = _rank_deficient(d, d * 196 // 256)
    ref = np.real(scipy.linalg.sqrtm(x.numpy()))
    got = gcp.sqrtm(x).numpy()
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 2e-7
    assert np.linalg.norm(got @ got - x.numpy()) / np.linalg.norm(x.numpy()) < 1e-12


def test_positive_powers_of_rank_deficient_input_are_not_floored():
    """λ^p of a null eigenvalue perturbed by round-off δ ~ d·ε·λmax is δ^p: two correct methods
    agree to ~(d·ε·λmax)^p there, far below the floor's (1e-10·λmax)^p."""
    x = _rank_deficient(32, 12)
    lam, v = np.linalg.eigh(x.numpy())
    lam_max = lam[-1]
    for p in (0.5, 0.75, 2.0):
        ref = (v * np.clip(lam, 0, None) ** p) @ v.T  # independent: numpy, no floor
        got = gcp.powm(x, p).numpy()
        noise = 10 * (32 * np.finfo(np.float64).eps * lam_max) ** p + 1e-12 * lam_max**p
        assert np.abs(got - ref).max() < noise, p
        if p < 1:  # the bound is tight enough to catch the old floor
            assert noise < 0.1 * (1e-10 * lam_max) ** p


def test_non_positive_powers_keep_the_floor():
    """X^{-1/2} of a singular matrix is infinite; the floor eps·λmax makes it finite and bounded."""
    x = _rank_deficient(32, 12)
    lam_max = torch.linalg.eigvalsh(x)[-1]
    for eps in (1e-10, 1e-6):
        y = gcp.inv_sqrtm(x, eps=eps)
        assert torch.isfinite(y).all()
        top = torch.linalg.eigvalsh(y)[-1]
        assert torch.isclose(top, (eps * lam_max) ** -0.5, rtol=1e-6)
