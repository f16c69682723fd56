"""Compute dtype, casting back, and autocast."""

import pytest
import torch

import gcp
from tests._reference import spd_with_spectrum


def _ill_conditioned():
    lam = torch.logspace(-5, 0, 24, dtype=torch.float64).expand(2, 24)
    return spd_with_spectrum(lam, seed=8)


def test_float32_input_is_solved_in_float64():
    x64 = _ill_conditioned()
    x32 = x64.float()
    ref = gcp.sqrtm(x32.double())  # same (rounded) input, float64 all the way
    got = gcp.sqrtm(x32)
    assert got.dtype == torch.float32
    rel64 = ((got.double() - ref).norm() / ref.norm()).item()
    low = gcp.sqrtm(x32, compute_dtype=torch.float32)
    rel32 = ((low.double() - ref).norm() / ref.norm()).item()
    assert rel64 < 1e-6  # only the final rounding to float32
    assert rel64 < rel32


@pytest.mark.parametrize("mode", ["exact", "pade", "ns"])
def test_autocast_bf16_computes_outside_autocast(mode):
    x = _ill_conditioned().float()
    g = torch.randn_like(x)
    xa = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = gcp.sqrtm(xa, mode)
    assert y.dtype == torch.float32
    y.backward(g)
    xr = x.clone().requires_grad_()
    yr = gcp.sqrtm(xr, mode)
    yr.backward(g)
    assert torch.equal(y, yr)
    assert torch.allclose(xa.grad, xr.grad)


def test_bfloat16_input_round_trips_dtype():
    x = _ill_conditioned().bfloat16().requires_grad_()
    y = gcp.inv_sqrtm(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_eigh_returns_input_dtype_and_float32_grad():
    x = _ill_conditioned().float().requires_grad_()
    lam, v = gcp.eigh(x, "pi")
    assert lam.dtype == v.dtype == torch.float32
    (lam.sum() + (v * v)[..., 0].sum()).backward()
    assert x.grad.dtype == torch.float32
