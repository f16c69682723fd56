"""Bad input raises a typed gcp.GCPError (a ValueError) that says what was wrong."""

import pytest
import torch

import gcp

X = torch.eye(4, dtype=torch.float64).expand(2, 4, 4)


def test_error_family():
    for err in (gcp.ShapeError, gcp.NonSquareError, gcp.DTypeError, gcp.NonFiniteError,
                gcp.UnknownBackwardError, gcp.InvalidOptionError):
        assert issubclass(err, gcp.GCPError) and issubclass(err, ValueError)


@pytest.mark.parametrize("fn", [gcp.sqrtm, gcp.inv_sqrtm, gcp.eigh, gcp.isqrtm, gcp.mpa_sqrtm, gcp.mtp_sqrtm])
def test_shape_dtype_and_finiteness(fn):
    with pytest.raises(gcp.NonSquareError, match=r"square matrices.*\(2, 3, 4\)"):
        fn(torch.zeros(2, 3, 4))
    with pytest.raises(gcp.ShapeError, match="batch of matrices"):
        fn(torch.zeros(4))
    with pytest.raises(gcp.DTypeError, match="floating dtype"):
        fn(torch.eye(3, dtype=torch.int64))
    bad = X.clone()
    bad[0, 1, 1] = float("nan")
    with pytest.raises(gcp.NonFiniteError, match="1 non-finite"):
        fn(bad)


def test_finite_check_can_be_disabled():
    bad = X.clone()
    bad[0, 0, 0] = float("inf")
    with gcp.finite_checks(False):
        gcp.isqrtm(bad, 2)  # no error: the caller opted out
    with pytest.raises(gcp.NonFiniteError):
        gcp.isqrtm(bad, 2)


def test_unknown_backward_lists_valid_modes_and_suggests():
    with pytest.raises(gcp.UnknownBackwardError, match=r"did you mean 'pade'.*valid backward modes: exact, ed"):
        gcp.sqrtm(X, "padé")


@pytest.mark.parametrize(
    "backward, opts, pattern",
    [
        ("taylor", {"degre": 9}, r"unknown option\(s\) degre; valid options: degree"),
        ("taylor", {"degree": -1}, r"'degree' must be an integer >= 0"),
        ("pi", {"iters": 0}, r"'iters' must be an integer >= 1"),
        ("pade", {"degree": (5,)}, r"pair \(m, n\)"),
        ("trunc", {"threshold": 0.0}, r"positive number"),
        ("ed", {"rtol": 1e-3}, r"valid options: none"),
    ],
)
def test_invalid_options(backward, opts, pattern):
    with pytest.raises(gcp.InvalidOptionError, match=pattern):
        gcp.sqrtm(X, backward, **opts)


def test_square_root_only_modes():
    with pytest.raises(gcp.InvalidOptionError, match=r"p = 0.5 or -0.5.*got p = 2.0"):
        gcp.powm(X, 2.0, "ns")
    with pytest.raises(gcp.InvalidOptionError, match="not eigenvectors; use one of: exact"):
        gcp.eigh(X, "lyap")


@pytest.mark.parametrize("kwargs, pattern", [
    ({"eps": 0.0}, "eps must be"), ({"eps": 2.0}, "eps must be"),
    ({"compute_dtype": torch.int32}, "compute_dtype must be torch.float32 or torch.float64"),
    ({"compute_dtype": torch.float16}, "compute_dtype must be torch.float32 or torch.float64"),
    ({"compute_dtype": torch.bfloat16}, "compute_dtype must be torch.float32 or torch.float64"),
])
def test_invalid_forward_options(kwargs, pattern):
    with pytest.raises(gcp.GCPError, match=pattern):
        gcp.sqrtm(X, **kwargs)


def test_invalid_power_and_iterations():
    with pytest.raises(gcp.InvalidOptionError, match="finite real number"):
        gcp.powm(X, float("nan"))
    with pytest.raises(gcp.InvalidOptionError, match="iters must be an integer >= 1"):
        gcp.isqrtm(X, 0)
    with pytest.raises(gcp.InvalidOptionError, match="degree must be a pair"):
        gcp.mpa_sqrtm(X, (5, 0))
    with pytest.raises(gcp.InvalidOptionError, match="lyap_iters"):
        gcp.mtp_sqrtm(X, lyap_iters=0)
