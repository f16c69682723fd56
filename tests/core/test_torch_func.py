"""torch.func transforms on the routes: vmap over a batch of batches, grad, jacrev, jvp, and the
typed refusals where a transform cannot be supported. References: the same routes called on the
batch directly, and torch.autograd on the plain call (independent of functorch's machinery)."""

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import gcp
from tests._reference import spd_with_spectrum

D = 5
X = spd_with_spectrum(torch.tensor([[0.6**k for k in range(D)], [0.9**k for k in range(D)]], dtype=torch.float64))

ROUTES = {f"sqrtm[{m}]": (lambda m_: lambda x: gcp.sqrtm(x, m_))(m) for m in gcp.BACKWARDS}
ROUTES.update({
    "inv_sqrtm[exact]": gcp.inv_sqrtm,
    "isqrtm": gcp.isqrtm,
    "mpa_sqrtm": gcp.mpa_sqrtm,
    "mtp_sqrtm": gcp.mtp_sqrtm,
    "eigh[exact] values": lambda x: gcp.eigh(x)[0],
})


def _autograd_grad(fn, x):
    x = x.clone().requires_grad_()
    return torch.autograd.grad(fn(x).pow(2).sum(), x)[0]


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_vmap_over_a_batch_of_batches(name):
    fn = ROUTES[name]
    stacked = torch.stack([X, X.flip(0)])  # (2, 2, d, d)
    assert torch.allclose(vmap(fn)(stacked), fn(stacked), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_grad_and_jacrev_equal_autograd(name):
    fn = ROUTES[name]
    expected = _autograd_grad(fn, X)
    assert torch.allclose(grad(lambda x: fn(x).pow(2).sum())(X), expected, rtol=1e-10, atol=1e-12)
    jac = jacrev(fn)(X[0])  # (out..., d, d)
    cot = torch.randn_like(fn(X[0]))
    x0 = X[0].clone().requires_grad_()
    (vjp,) = torch.autograd.grad((fn(x0) * cot).sum(), x0)
    assert torch.allclose(torch.tensordot(cot, jac, dims=cot.dim()), vjp, rtol=1e-10, atol=1e-12)


def test_vmap_skips_the_value_checks_that_branch_on_values():
    """Under vmap the PSD check cannot branch on values (documented); in eager mode it refuses."""
    indefinite = -X
    with pytest.raises(gcp.IndefiniteError):
        gcp.sqrtm(indefinite)
    assert vmap(lambda x: gcp.powm(x, 2.0))(indefinite.unsqueeze(0)).shape == (1, 2, D, D)


def test_jvp_of_exact_is_the_frechet_derivative():
    dx = torch.randn(D, D, dtype=torch.float64)
    dx = dx + dx.T
    eps = 1e-6
    fd = (gcp.sqrtm(X[0] + eps * dx) - gcp.sqrtm(X[0] - eps * dx)) / (2 * eps)
    _, tangent = jvp(gcp.sqrtm, (X[0],), (dx,))
    assert torch.allclose(tangent, fd, rtol=1e-7, atol=1e-9)
    assert torch.allclose(jacfwd(gcp.sqrtm)(X[0]), jacrev(gcp.sqrtm)(X[0]), rtol=1e-10, atol=1e-12)


def test_jacrev_of_jacrev_is_the_exact_hessian():
    f = lambda x: gcp.sqrtm(x).pow(3).sum()  # noqa: E731
    h = jacrev(jacrev(f))(X[0])
    direction = torch.randn(D, D, dtype=torch.float64)
    direction = direction + direction.T
    x = X[0].clone().requires_grad_()
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * direction).sum(), x)
    assert torch.allclose(torch.tensordot(h, direction, dims=2), hv, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("transform, pattern", [
    (lambda: jvp(lambda x: gcp.sqrtm(x, "pade"), (X[0],), (X[0],)), "forward-mode.*backward='pade'"),
    (lambda: jvp(gcp.mpa_sqrtm, (X[0],), (X[0],)), "forward-mode.*mpa_sqrtm"),
    (lambda: jacfwd(lambda x: gcp.eigh(x)[0])(X[0]), "forward-mode.*gcp.eigh"),
    (lambda: hessian(lambda x: gcp.sqrtm(x).pow(3).sum())(X[0]), "jacrev\\(torch.func.jacrev"),
    (lambda: jacrev(jacrev(lambda x: gcp.sqrtm(x, "taylor").sum()))(X[0]), "backward='taylor'"),
])
def test_unsupported_transforms_raise_typed_errors(transform, pattern):
    with pytest.raises(gcp.UnsupportedDerivativeError, match=pattern):
        transform()
