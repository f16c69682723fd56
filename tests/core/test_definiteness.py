"""Square roots need PSD input: clearly indefinite matrices raise IndefiniteError; round-off passes."""

import pytest
import torch

import gcp
from gcp._validation import indefinite_tolerance
from tests._reference import spd_with_spectrum

F64 = torch.float64

EIGH_ROUTES = {
    "sqrtm": gcp.sqrtm,
    "inv_sqrtm": gcp.inv_sqrtm,
    "powm(0.3)": lambda x: gcp.powm(x, 0.3),
    "sqrtm[pade]": lambda x: gcp.sqrtm(x, "pade"),
    "sqrtm[ns]": lambda x: gcp.sqrtm(x, "ns"),
}
MATMUL_ROUTES = {"isqrtm": gcp.isqrtm, "mpa_sqrtm": gcp.mpa_sqrtm, "mtp_sqrtm": gcp.mtp_sqrtm}
ALL_ROUTES = {**EIGH_ROUTES, **MATMUL_ROUTES}


@pytest.mark.parametrize("name", sorted(ALL_ROUTES))
def test_negative_definite_input_raises(name):
    x = -2.0 * torch.eye(4, dtype=F64).expand(2, 4, 4)
    with pytest.raises(gcp.IndefiniteError, match="not positive semi-definite"):
        ALL_ROUTES[name](x)


@pytest.mark.parametrize("name", sorted(EIGH_ROUTES))
def test_indefinite_input_with_positive_diagonal_raises_on_eigh_routes(name):
    """[[1, 2], [2, 1]] has eigenvalues 3 and −1 and a positive diagonal."""
    x = torch.tensor([[[1.0, 2.0], [2.0, 1.0]]], dtype=F64)
    with pytest.raises(gcp.IndefiniteError, match=r"-0.333"):
        EIGH_ROUTES[name](x)


def test_one_bad_matrix_in_a_batch_is_named_with_the_count():
    good = spd_with_spectrum(torch.linspace(0.5, 2.0, 5, dtype=F64).expand(3, 5), seed=1)
    x = good.clone()
    x[1] = -x[1]
    with pytest.raises(gcp.IndefiniteError, match="1 of 3 matrices"):
        gcp.sqrtm(x)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", sorted(set(ALL_ROUTES) - {"inv_sqrtm"}))  # X^(-1/2): test_exact
def test_round_off_negatives_of_rank_deficient_covariances_pass(name, dtype):
    """n = 196 positions, d = 256 channels: rank 195, and round-off makes the rest ±ε‖X‖."""
    g = torch.Generator().manual_seed(0)
    x = gcp.covariance(torch.randn(2, 256, 196, generator=g, dtype=dtype))
    lam = torch.linalg.eigvalsh(x.double())
    assert lam[..., 0].min() < 0  # the case is real: there are round-off negatives
    assert torch.isfinite(ALL_ROUTES[name](x)).all()


def test_tolerance_boundary():
    """λ_min = −0.5·tol·λmax passes (floored), −2·tol·λmax raises; tol = max(1e-3, √d·ε)."""
    d = 6
    tol = indefinite_tolerance(F64, d)
    assert tol == 1e-3
    assert indefinite_tolerance(torch.bfloat16, 256) == pytest.approx(16 * 2**-7)
    for factor, raises in ((0.5, False), (2.0, True)):
        lam = torch.tensor([[-factor * tol, 0.2, 0.4, 0.6, 0.8, 1.0]], dtype=F64)
        x = spd_with_spectrum(lam, seed=2)
        if raises:
            with pytest.raises(gcp.IndefiniteError):
                gcp.sqrtm(x)
        else:
            assert torch.isfinite(gcp.sqrtm(x)).all()


def test_checks_can_be_switched_off_and_eigh_accepts_indefinite_input():
    x = torch.tensor([[[1.0, 2.0], [2.0, 1.0]]], dtype=F64)
    with gcp.finite_checks(False):
        y = gcp.sqrtm(x)  # the user asked for no value checks: negatives are floored
    assert torch.isfinite(y).all()
    lam, _ = gcp.eigh(x)  # eigh is defined for every symmetric matrix
    assert torch.allclose(lam, torch.tensor([[-1.0, 3.0]], dtype=F64))


def test_zero_matrix_is_psd_for_the_matmul_routes():
    x = torch.zeros(1, 4, 4, dtype=F64)
    for fn in MATMUL_ROUTES.values():
        assert torch.isfinite(fn(x)).all()


@pytest.mark.parametrize("method", ["svd", "isqrt", "mpa", "mtp"])
def test_gcp_head_on_low_precision_features_passes_the_check(method):
    """bf16 features with more channels than positions: the covariance (float32) is PSD up to
    round-off, so the check must not fire inside a network."""
    head = gcp.GCPHead(64, 3, reduced_dim=None, method=method)
    x = torch.randn(4, 64, 4, 4).bfloat16().float()
    assert torch.isfinite(head(x)).all()
