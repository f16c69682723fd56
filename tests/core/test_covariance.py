"""Covariance pooling and triu vectorisation."""

import numpy as np
import pytest
import torch

import gcp


def test_covariance_matches_numpy():
    x = torch.randn(3, 8, 5, 6, dtype=torch.float64)
    cov = gcp.covariance(x)
    assert cov.shape == (3, 8, 8)
    for i in range(3):
        ref = np.cov(x[i].reshape(8, -1).numpy(), bias=True)
        assert np.abs(cov[i].numpy() - ref).max() < 1e-13


def test_covariance_feature_sets_and_gradient():
    x = torch.randn(2, 4, 30, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gcp.covariance, (x,))


def test_covariance_autocast_and_half_inputs_give_float32():
    x = torch.randn(2, 16, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cov = gcp.covariance(x)
    assert cov.dtype == torch.float32
    assert torch.allclose(cov, gcp.covariance(x), atol=1e-6)
    assert gcp.covariance(x.bfloat16()).dtype == torch.float32


def test_covariance_rank_is_bounded_by_samples():
    cov = gcp.covariance(torch.randn(1, 32, 10, dtype=torch.float64))
    assert torch.linalg.matrix_rank(cov).item() == 9


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 4, 5, 6)])
def test_covariance_rejects_bad_shapes(shape):
    with pytest.raises(gcp.ShapeError, match="covariance expects"):
        gcp.covariance(torch.randn(*shape))


def test_triu_vec_row_major_and_size():
    x = torch.arange(9.0).view(1, 3, 3)
    assert gcp.triu_vec(x).tolist() == [[0.0, 1.0, 2.0, 4.0, 5.0, 8.0]]
    assert gcp.triu_vec(torch.zeros(2, 256, 256)).shape == (2, 32896)


def test_triu_vec_rejects_non_square():
    with pytest.raises(gcp.NonSquareError):
        gcp.triu_vec(torch.zeros(2, 3, 4))
