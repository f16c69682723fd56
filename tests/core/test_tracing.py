"""Shape propagation on meta tensors and whole-graph torch.compile of every route."""

import pytest
import torch

import gcp

# by default one configuration per kind of code path (the spectral Function with a closed-form
# backward, with the custom-op recursion of "ns", and the Lyapunov Function with its cached
# coefficients); the others (pade's coefficient table, isqrt's plain autograd, ...) run with -m slow
# every other method and mode (the generic spectral Function of logm, cbp's FFT, ...) with -m slow
DEFAULT_CONFIGS = {("svd", "exact"), ("svd", "ns"), ("mpa", None)}
METHOD_CONFIGS = [
    pytest.param(m, b, marks=() if (m, b) in DEFAULT_CONFIGS else pytest.mark.slow)
    for m, b in [("svd", b) for b in gcp.BACKWARDS if b != "ed"]
    + [(m, "exact" if gcp.get_method(m).takes_backward else None) for m in gcp.METHODS if m != "svd"]
]


@pytest.mark.parametrize(
    "fn",
    [gcp.sqrtm, gcp.inv_sqrtm, gcp.isqrtm, gcp.mpa_sqrtm, gcp.mtp_sqrtm, lambda x: gcp.powm(x, 0.3, "pade")],
)
def test_matrix_functions_propagate_meta_shapes(fn):
    y = fn(torch.empty(3, 8, 8, device="meta"))
    assert y.shape == (3, 8, 8) and y.device.type == "meta"


def test_covariance_and_head_on_meta():
    assert gcp.covariance(torch.empty(2, 8, 5, 5, device="meta")).shape == (2, 8, 8)
    head = gcp.GCPHead(16, 10, reduced_dim=8).to("meta")
    assert head(torch.empty(2, 16, 4, 4, device="meta")).shape == (2, 10)


def test_meta_under_autocast():
    """torch.autocast has no meta backend; the spectral code must not ask it to switch off there."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = gcp.sqrtm(torch.empty(2, 4, 4, device="meta"))
    assert y.shape == (2, 4, 4)


@pytest.mark.parametrize("method,backward", METHOD_CONFIGS)
def test_gcp_head_compiles_as_one_graph(method, backward):
    """fullgraph=True fails on any graph break (e.g. a value check that reads .item())."""
    torch._dynamo.reset()
    extra = {"proj_dim": 64} if method == "cbp" else {}
    head = gcp.GCPHead(16, 3, reduced_dim=8, method=method, backward=backward, **extra)
    x = torch.randn(2, 16, 5, 5)
    compiled = torch.compile(head, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    ref = head(x)
    ref.square().sum().backward()
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    for got, p in zip(grads, head.parameters()):
        assert torch.allclose(got, p.grad, rtol=1e-4, atol=1e-6)


def test_compiled_value_check_still_fires():
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: gcp.sqrtm(x), fullgraph=True, backend="aot_eager")
    good = torch.eye(3).expand(2, 3, 3).clone()
    assert torch.allclose(compiled(good), good)
    with pytest.raises(RuntimeError, match="gcp: input check failed"):
        compiled(-good)


@pytest.mark.slow
def test_gcp_head_compiles_with_inductor():
    torch._dynamo.reset()
    head = gcp.GCPHead(16, 3, reduced_dim=8, method="svd", backward="exact")
    x = torch.randn(2, 16, 5, 5)
    out = torch.compile(head, fullgraph=True)(x)
    assert torch.allclose(out, head(x), rtol=1e-5, atol=1e-6)
