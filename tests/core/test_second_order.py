"""Second derivatives are right or refused, never zero.

The reference is independent of the code: for an analytic ``f`` the block matrix
``[[X, E₁, 0], [0, X, E₂], [0, 0, X]]`` has ``f`` of it holding ``Σ_k f[λ_i, λ_k, λ_j] Ê₁_ik Ê₂_kj``
in its top-right block (Higham, *Functions of Matrices*, thm. 3.6 / 4.12), so scipy's
``sqrtm`` of a 3d×3d matrix gives the second Fréchet derivative ``D²f(X)[E₁, E₂]`` as the sum of
the two orders; its 2d×2d analogue gives the first. Checked on separated, clustered, tied and
rank-deficient spectra, and with torch's own ``gradgradcheck`` (finite differences of the first
derivative).
"""

import numpy as np
import pytest
import scipy.linalg as sl
import torch

import gcp
from tests._reference import spd_with_spectrum

D = 6
SPECTRA = {
    "separated": torch.tensor([0.5**k for k in range(D)], dtype=torch.float64),
    "clustered": torch.tensor([0.999**k for k in range(D)], dtype=torch.float64),
    "tied": torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 3.0], dtype=torch.float64),
}
EPS = 1e-3  # a relative floor large enough that the rank-deficient case is well conditioned


def _f(m: np.ndarray, p: float) -> np.ndarray:
    if p == 0.5:
        return np.real(sl.sqrtm(m))
    if p == -0.5:
        return np.real(np.linalg.inv(sl.sqrtm(m)))
    return m @ m  # p = 2


def _second(x: np.ndarray, p: float, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    d, z = x.shape[0], np.zeros_like(x)
    block = np.block([[x, e1, z], [z, x, e2], [z, z, x]])
    return _f(block, p)[:d, 2 * d:]


def _first(x: np.ndarray, p: float, e: np.ndarray) -> np.ndarray:
    d, z = x.shape[0], np.zeros_like(x)
    return _f(np.block([[x, e], [z, x]]), p)[:d, d:]


def _rank_deficient() -> tuple[torch.Tensor, np.ndarray]:
    """A covariance of 3 samples in 6 dimensions, and (independently, with numpy) the floored
    matrix whose function the backward differentiates (``max(λ, eps·λ_max)``)."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(D, 3, generator=g, dtype=torch.float64)
    x = a @ a.T / 3
    lam, vecs = np.linalg.eigh(x.numpy())
    floored = (vecs * np.maximum(lam, EPS * lam[-1])) @ vecs.T
    return x, floored


def _cases():
    for name, lam in SPECTRA.items():
        x = spd_with_spectrum(lam)
        yield name, x, x.numpy()
    x, floored = _rank_deficient()
    yield "rank-deficient", x, floored


@pytest.mark.parametrize("p", [0.5, -0.5, 2.0])
@pytest.mark.parametrize("case", ["separated", "clustered", "tied", "rank-deficient"])
def test_exact_second_derivative_matches_block_matrix_reference(p, case):
    name, x, ref_x = next(c for c in _cases() if c[0] == case)
    g = torch.Generator().manual_seed(1)
    sym = lambda m: 0.5 * (m + m.T)  # noqa: E731
    G, H, E = (sym(torch.randn(D, D, generator=g, dtype=torch.float64)) for _ in range(3))
    xi = x.clone().requires_grad_()
    Gi = G.clone().requires_grad_()
    (gx,) = torch.autograd.grad((gcp.powm(xi, p, eps=EPS) * Gi).sum(), xi, create_graph=True)
    gxx, gxg = torch.autograd.grad((gx * H).sum(), (xi, Gi))
    # d/dX <H, Df(X)[G]> along E  =  <H, D²f(X)[G, E]>
    e_np, g_np, h_np = E.numpy(), G.numpy(), H.numpy()
    second = _second(ref_x, p, g_np, e_np) + _second(ref_x, p, e_np, g_np)
    ref = float(np.sum(h_np * second))
    assert abs(float((gxx * E).sum()) - ref) <= 1e-10 * abs(ref)  # 1e-14 measured
    # d/dG <H, Df(X)[G]>  =  Df(X)[H]
    ref_g = _first(ref_x, p, h_np)
    assert np.abs(gxg.numpy() - ref_g).max() <= 1e-10 * np.abs(ref_g).max()


def test_second_derivative_is_not_zero():
    """The failure this guards against returned exactly 0."""
    x = spd_with_spectrum(SPECTRA["separated"]).requires_grad_()
    (gx,) = torch.autograd.grad(gcp.sqrtm(x).pow(3).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(gx.pow(2).sum(), x)
    eps = 1e-6
    direction = torch.eye(D, dtype=torch.float64)

    def grad_at(m):
        m = m.clone().requires_grad_()
        return torch.autograd.grad(gcp.sqrtm(m).pow(3).sum(), m)[0]

    fd = ((grad_at(x.detach() + eps * direction).pow(2).sum() - grad_at(x.detach() - eps * direction).pow(2).sum())
          / (2 * eps))
    assert float(h.norm()) > 0.1
    assert float((h * direction).sum()) == pytest.approx(float(fd), rel=1e-6)


@pytest.mark.parametrize("p", [0.5, -0.5])
@pytest.mark.parametrize("case", ["separated", "clustered", "tied"])
def test_gradgradcheck(p, case):
    x = spd_with_spectrum(SPECTRA[case][:4])
    sym = lambda m: 0.5 * (m + m.transpose(-1, -2))  # noqa: E731
    assert torch.autograd.gradgradcheck(lambda m: gcp.powm(sym(m), p), (x.requires_grad_(),), atol=1e-5,
                                        rtol=1e-4)


def test_exact_in_float32_computes_in_float64_and_casts_back():
    x = spd_with_spectrum(SPECTRA["separated"])
    xs = x.float().requires_grad_()
    (gx,) = torch.autograd.grad(gcp.sqrtm(xs).pow(3).sum(), xs, create_graph=True)
    (h,) = torch.autograd.grad(gx.pow(2).sum(), xs)
    xd = x.clone().requires_grad_()
    (gxd,) = torch.autograd.grad(gcp.sqrtm(xd).pow(3).sum(), xd, create_graph=True)
    (hd,) = torch.autograd.grad(gxd.pow(2).sum(), xd)
    assert h.dtype == torch.float32 and torch.allclose(h.double(), hd, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- refusals
def _second_derivative(fn, x):
    x = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(fn(x).pow(3).sum(), x, create_graph=True)
    return torch.autograd.grad(gx.pow(2).sum(), x)


X = spd_with_spectrum(SPECTRA["separated"])


@pytest.mark.parametrize("mode", [m for m in gcp.BACKWARDS if m != "exact"])
def test_other_backward_modes_refuse_second_derivatives(mode):
    with pytest.raises(gcp.UnsupportedDerivativeError, match=f"backward='{mode}'.*Supported: .*exact"):
        _second_derivative(lambda m: gcp.sqrtm(m, mode), X)


@pytest.mark.parametrize("fn, pattern", [
    (lambda m: gcp.powm(m, 0.3), "p=0.3"),
    (lambda m: gcp.eigh(m)[1] @ gcp.eigh(m)[0].diag_embed(), "gcp.eigh"),
    (gcp.mpa_sqrtm, "mpa_sqrtm"),
    (gcp.mtp_sqrtm, "mtp_sqrtm"),
    (lambda m: gcp.covariance_pool(m.unsqueeze(0), "svd", "pade"), "pade"),
    (lambda m: gcp.PCADenoising(D, k=2).double()(m.reshape(1, D, 2, 3)), "gcp.eigh"),
])
def test_routes_without_a_second_derivative_refuse(fn, pattern):
    with pytest.raises(gcp.UnsupportedDerivativeError, match=pattern):
        _second_derivative(fn, X)


def test_third_derivative_of_exact_is_refused():
    x = X.clone().requires_grad_()
    (g1,) = torch.autograd.grad(gcp.sqrtm(x).pow(3).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.pow(2).sum(), x, create_graph=True)
    with pytest.raises(gcp.UnsupportedDerivativeError, match="order 3"):
        torch.autograd.grad(g2.sum(), x)


def test_a_first_derivative_that_builds_a_graph_still_works_for_every_mode():
    """create_graph=True alone (torch.func.grad always asks for it) is not a second derivative."""
    for mode in gcp.BACKWARDS:
        x = X.clone().requires_grad_()
        (with_graph,) = torch.autograd.grad(gcp.sqrtm(x, mode).sum(), x, create_graph=True)
        (plain,) = torch.autograd.grad(gcp.sqrtm(x, mode).sum(), x)
        assert torch.allclose(with_graph, plain, rtol=1e-12, atol=0), mode


# ------------------------------------------------------------------------- layers
def test_gradient_penalty_through_an_exact_gcp_head_and_isqrt():
    """d/dW ‖∂L/∂x‖² through GCPHead equals a central finite difference of the first derivative."""
    torch.manual_seed(0)
    for method in ("svd", "isqrt"):
        head = gcp.GCPHead(8, 3, reduced_dim=4, method=method).double().eval()
        x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
        weight = head.reduce[0].weight

        def penalty():
            xi = x.clone().requires_grad_()
            (gx,) = torch.autograd.grad(head(xi).pow(2).sum(), xi, create_graph=True)
            return gx.pow(2).sum()

        (gw,) = torch.autograd.grad(penalty(), weight)
        direction = torch.randn_like(weight)
        eps = 1e-6
        with torch.no_grad():
            weight += eps * direction
        plus = float(penalty())
        with torch.no_grad():
            weight -= 2 * eps * direction
        minus = float(penalty())
        with torch.no_grad():
            weight += eps * direction
        assert float((gw * direction).sum()) == pytest.approx((plus - minus) / (2 * eps), rel=1e-5), method


def _fd_of_penalty(fn, x, direction, eps=1e-6):
    def penalty(m):
        m = m.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(m).pow(3).sum(), m)
        return float(g.pow(2).sum())

    return (penalty(x + eps * direction) - penalty(x - eps * direction)) / (2 * eps)


def test_zca_whitening_second_derivative_is_exact_and_other_modes_refuse():
    torch.manual_seed(0)
    zca = gcp.ZCAWhitening(4, affine=False).double()  # exact inverse square root of Σ + εI
    x = torch.randn(16, 4, 2, 2, dtype=torch.float64)
    direction = torch.randn_like(x)
    (h,) = _second_derivative(zca, x)
    assert float((h * direction).sum()) == pytest.approx(_fd_of_penalty(zca, x, direction), rel=1e-5)
    with pytest.raises(gcp.UnsupportedDerivativeError, match="'pi'"):
        _second_derivative(gcp.ZCAWhitening(4, backward="pi", affine=False).double(), x)
