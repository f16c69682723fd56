"""The head methods of gcp.methods: each against an independent reference (scipy, numpy literal
loops, finite differences, statistics over seeds), on separated, clustered, tied and rank-deficient
spectra; the registry's declarations; HeadConfig's validation and round trips."""

import dataclasses

import numpy as np
import pytest
import scipy.linalg as sl
import torch

import gcp
from gcp.methods import HeadMethod, MethodOptions


def _spectrum(kind: str, d: int = 6, seed: int = 0) -> torch.Tensor:
    """A float64 SPD (or PSD) matrix with a chosen spectrum, in a random eigenbasis."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = {
        "separated": torch.linspace(0.2, 3.0, d, dtype=torch.float64),
        "clustered": 1.0 + 1e-7 * torch.arange(d, dtype=torch.float64),
        "tied": torch.tensor([0.5, 0.5, 1.5, 1.5, 1.5, 2.5][:d], dtype=torch.float64),
        "rank_deficient": torch.cat([torch.zeros(d // 2, dtype=torch.float64),
                                     torch.linspace(0.5, 2.0, d - d // 2, dtype=torch.float64)]),
    }[kind]
    return (q * lam) @ q.T


def _sym_fd(f, x: torch.Tensor, direction: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


def _check_gradient_by_fd(f, x: torch.Tensor, seed: int = 0, rtol: float = 1e-5) -> None:
    """⟨∇L, E⟩ against the central difference of L = ⟨W, f(X)⟩ along symmetric E."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(x.shape, generator=g, dtype=x.dtype)
    e = torch.randn(x.shape, generator=g, dtype=x.dtype)
    e = e + e.transpose(-1, -2)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((f(xr) * w).sum(), xr)
    analytic = (grad * e).sum()
    numeric = (_sym_fd(f, x, e) * w).sum()
    assert abs(float(analytic - numeric)) <= rtol * max(1.0, abs(float(numeric))), (float(analytic), float(numeric))


SPECTRA = ["separated", "clustered", "tied", "rank_deficient"]


# ----------------------------------------------------------------------------- logm
@pytest.mark.parametrize("kind", SPECTRA)
def test_logm_matches_scipy_and_finite_differences(kind):
    x, eps = _spectrum(kind), 1e-2
    got = gcp.logm(x, eps=eps)
    want = sl.logm(x.numpy() + eps * np.eye(6))
    assert np.abs(got.numpy() - want).max() < 1e-10
    _check_gradient_by_fd(lambda t: gcp.logm(t, eps=eps), x)


def test_logm_divided_difference_has_no_cancellation_at_near_ties():
    """(log a − log b)/(a − b) at b = a(1 − 1e-12) must be 1/a to round-off, not 0 or noise."""
    from gcp.spectral_functions import Log

    a = torch.tensor([3.0, 3.0 * (1 - 1e-12), 3.0 * (1 - 1e-3)], dtype=torch.float64)
    k = Log().divided_difference(a)
    import mpmath

    mpmath.mp.dps = 40
    for i in range(3):
        for j in range(3):
            ai, aj = mpmath.mpf(float(a[i])), mpmath.mpf(float(a[j]))
            ref = 1 / ai if ai == aj else (mpmath.log(ai) - mpmath.log(aj)) / (ai - aj)
            assert abs(float(k[i, j]) - float(ref)) <= 1e-14 * float(ref)


@pytest.mark.parametrize("backward", ["taylor", "pade", "pi", "trunc"])
def test_logm_smoothed_backwards_approach_exact_on_a_separated_spectrum(backward):
    x = _spectrum("separated").requires_grad_(True)
    w = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (exact,) = torch.autograd.grad((gcp.logm(x, eps=1e-2) * w).sum(), x)
    (approx,) = torch.autograd.grad((gcp.logm(x, backward, eps=1e-2) * w).sum(), x)
    assert torch.isfinite(approx).all()
    assert (approx - exact).norm() <= 0.05 * exact.norm()


def test_logm_second_derivative_is_refused_and_forward_mode_is_exact():
    x = _spectrum("separated").requires_grad_(True)
    (g,) = torch.autograd.grad(gcp.logm(x, eps=1e-2).square().sum(), x, create_graph=True)
    with pytest.raises(gcp.UnsupportedDerivativeError, match="matrix logarithm"):
        torch.autograd.grad(g.sum(), x)
    e = torch.randn(6, 6, dtype=torch.float64)
    e = e + e.T
    _, tangent = torch.func.jvp(lambda t: gcp.logm(t, eps=1e-2), (x.detach(),), (e,))
    assert (tangent - _sym_fd(lambda t: gcp.logm(t, eps=1e-2), x.detach(), e)).abs().max() < 1e-7
    with pytest.raises(gcp.UnsupportedDerivativeError, match="forward-mode"):
        torch.func.jvp(lambda t: gcp.logm(t, "pade", eps=1e-2), (x.detach(),), (e,))


def test_logm_under_vmap_of_grad():
    xs = torch.stack([_spectrum("separated", seed=s) for s in range(3)])
    grads = torch.func.vmap(torch.func.grad(lambda t: gcp.logm(t, eps=1e-2).trace()))(xs)
    # d tr log(X + εI) = (X + εI)^{-1}
    want = torch.linalg.inv(xs + 1e-2 * torch.eye(6, dtype=torch.float64))
    assert (grads - want).abs().max() < 1e-10


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan")])
def test_logm_refuses_a_floor_that_leaves_it_infinite(eps):
    with pytest.raises(gcp.InvalidOptionError, match="eps must be a positive number"):
        gcp.logm(_spectrum("rank_deficient"), eps=eps)


def test_logm_refuses_the_square_root_only_backwards():
    for mode in ("ns", "lyap"):
        with pytest.raises(gcp.InvalidOptionError, match="matrix powers only"):
            gcp.logm(_spectrum("separated"), mode)


# ----------------------------------------------------------------------------- topn, seb
def _topn_reference(x: np.ndarray, n: int, eps: float = 1e-10) -> np.ndarray:
    lam, v = np.linalg.eigh(x)
    floor = eps * lam[-1]
    f = np.sqrt(np.where(np.arange(len(lam)) >= len(lam) - n, np.maximum(lam, floor), floor))
    return (v * f) @ v.T


@pytest.mark.parametrize("kind", ["separated", "rank_deficient"])
def test_topn_matches_a_numpy_reference_and_finite_differences(kind):
    x = _spectrum(kind)
    got = gcp.topn_sqrtm(x, 4)
    assert np.abs(got.numpy() - _topn_reference(x.numpy(), 4)).max() < 1e-10
    # all kept: the square root, but for the floor √(1e-10·λ_max) where λ = 0
    assert torch.allclose(gcp.topn_sqrtm(x, 6), gcp.sqrtm(x), atol=3 * (1e-10 * float(torch.linalg.eigvalsh(x)[-1])) ** 0.5)
    if kind == "separated":  # away from the cut's ties the function is smooth
        _check_gradient_by_fd(lambda t: gcp.topn_sqrtm(t, 4), x)


def test_topn_refuses_more_eigenvalues_than_there_are():
    with pytest.raises(gcp.InvalidOptionError, match="top_n"):
        gcp.topn_sqrtm(_spectrum("separated"), 7)
    with pytest.raises(gcp.InvalidOptionError, match="top_n=9 exceeds the 8 eigenvalues"):
        gcp.GCPHead(16, 3, reduced_dim=8, method="topn", top_n=9)


def _seb_reference(x: np.ndarray) -> np.ndarray:
    """DifferentiableSVD's SEB, written from its formula: Q + Q ∘ (A / normalize(A)), A = Q expm(−Σ)ᵀ."""
    q = sl.sqrtm(x).real
    a = q @ sl.expm(-x).T
    normalised = a / np.linalg.norm(a)
    return q + q * (a / normalised)


@pytest.mark.parametrize("kind", ["separated", "tied"])
def test_seb_matches_its_published_formula_and_finite_differences(kind):
    x = _spectrum(kind)
    assert np.abs(gcp.scaled_eigen_branch(x).numpy() - _seb_reference(x.numpy())).max() < 1e-9
    _check_gradient_by_fd(lambda t: gcp.scaled_eigen_branch(t), x)


# ----------------------------------------------------------------------------- bcnn, cbp, gap
def test_bcnn_matches_a_literal_loop():
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    got = gcp.bilinear_pool(x, thresh=1e-8).numpy()
    for b in range(2):
        f = x[b].reshape(5, -1).numpy()
        m = np.zeros((5, 5))
        for i in range(5):
            for j in range(5):
                m[i, j] = sum(f[i, k] * f[j, k] for k in range(12)) / 12
        s = np.sign(m) * np.sqrt(np.abs(m) + 1e-8)
        assert np.abs(got[b] - s / np.linalg.norm(s)).max() < 1e-12
    head = gcp.GCPHead(5, 0, reduced_dim=None, method="bcnn").double()
    assert np.abs(head(x).numpy() - got.reshape(2, 25)).max() < 1e-12


def _count_sketch(v: np.ndarray, h: np.ndarray, s: np.ndarray, d: int) -> np.ndarray:
    out = np.zeros(d)
    for i, value in enumerate(v):
        out[h[i]] += s[i] * value
    return out


def test_cbp_is_tensor_sketch_by_literal_circular_convolution():
    x = torch.randn(1, 4, 3, dtype=torch.float64)
    index, sign = gcp.bilinear.sketch_hashes(4, 7, seed=3)
    got = gcp.compact_bilinear(x, proj_dim=7, seed=3)[0].numpy()
    want = np.zeros(7)
    for m in range(3):
        a = _count_sketch(x[0, :, m].numpy(), index[0].numpy(), sign[0].numpy(), 7)
        b = _count_sketch(x[0, :, m].numpy(), index[1].numpy(), sign[1].numpy(), 7)
        want += np.array([sum(a[i] * b[(k - i) % 7] for i in range(7)) for k in range(7)]) / 3
    assert np.abs(got - want).max() < 1e-12


def test_cbp_inner_product_is_an_unbiased_estimate_of_the_bilinear_one():
    """Over the draw of the hashes, E⟨φ(X), φ(Y)⟩ = ⟨XXᵀ/M, YYᵀ/N⟩_F: the mean over 400 seeds lies
    within 4 standard errors of the exact value (and a biased estimator, the sketch without its
    signs, does not)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 12, 9, generator=g, dtype=torch.float64)
    y = x + 0.5 * torch.randn(1, 12, 9, generator=g, dtype=torch.float64)
    exact = float((x[0] @ x[0].T / 9 * (y[0] @ y[0].T / 9)).sum())
    est = np.array([float((gcp.compact_bilinear(x, 64, s) * gcp.compact_bilinear(y, 64, s)).sum())
                    for s in range(400)])
    stderr = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(est.mean() - exact) < 4 * stderr, (est.mean(), exact, stderr)
    assert stderr < 0.1 * abs(exact)  # the test can tell a bias of 40% or more


def test_cbp_head_keeps_its_projection_in_the_state_dict():
    head = gcp.GCPHead(8, 3, reduced_dim=4, method="cbp", proj_dim=32, seed=5).eval()
    assert {"sketch_index", "sketch_sign"} <= set(head.state_dict())
    other = gcp.GCPHead(8, 3, reduced_dim=4, method="cbp", proj_dim=32, seed=6).eval()
    x = torch.randn(2, 8, 3, 3)
    assert not torch.allclose(other(x), head(x))
    other.load_state_dict(head.state_dict())
    assert torch.equal(other(x), head(x))  # the saved hashes, not the seed, define the sketch
    with pytest.raises(RuntimeError, match="sketch_index"):
        gcp.GCPHead(8, 3, reduced_dim=4, method="isqrt").load_state_dict(head.state_dict())


def test_gap_is_the_mean_of_the_reduced_channels():
    head = gcp.GCPHead(6, 0, reduced_dim=None, method="gap").double()
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    assert torch.allclose(head(x), x.mean((2, 3)), atol=1e-15)
    assert head(torch.randn(2, 6, 1, 1, dtype=torch.float64)).shape == (2, 6)  # one position is fine


# ----------------------------------------------------------------------------- every method in the head
def _kw(method):
    return {"proj_dim": 48} if method == "cbp" else {}


@pytest.mark.parametrize("method", gcp.METHODS)
def test_every_method_declares_its_output_size_and_trains_on_a_rank_deficient_batch(method):
    head = gcp.GCPHead(12, 4, reduced_dim=6, method=method, **_kw(method))
    d, m = 6, gcp.get_method(method)
    assert head.num_features == m.output_size(d, head.config.options()) == head.config.output_size()
    x = torch.randn(3, 12, 2, 2, requires_grad=True)  # 4 positions < 6 channels
    rep = head(x, pre_logits=True)
    assert rep.shape == (3, head.num_features)
    head(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


@pytest.mark.parametrize("method", [m for m in gcp.METHODS if gcp.get_method(m).scriptable])
def test_scriptable_methods_script_to_the_same_output(method):
    head = gcp.GCPHead(12, 4, reduced_dim=6, method=method).eval()
    x = torch.randn(2, 12, 3, 3)
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(head)(x), head(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", [m for m in gcp.METHODS if not gcp.get_method(m).scriptable])
def test_methods_that_cannot_be_scripted_are_refused_by_name(method):
    head = gcp.GCPHead(12, 4, reduced_dim=6, method=method, **_kw(method))
    with pytest.raises(gcp.ExportError, match=f"method='{method}'.*cannot be scripted"):
        torch.jit.script(head)


def test_registry_lists_are_derived_from_the_declarations():
    assert set(gcp.SCRIPTABLE_METHODS) == {m for m in gcp.METHODS if gcp.get_method(m).script_module is not None}
    assert set(gcp.ONNX_METHODS) == {m for m in gcp.METHODS if gcp.get_method(m).onnx}
    assert {"gap", "bcnn", "cbp", "logm", "topn", "seb"} <= set(gcp.METHODS)
    with pytest.raises(gcp.InvalidOptionError, match="did you mean 'bcnn'"):
        gcp.get_method("bcn")


def test_a_new_method_is_one_class_and_one_registration():
    @dataclasses.dataclass(frozen=True)
    class MaxOptions(MethodOptions):
        pass

    class MaxPool(HeadMethod):
        name, summary, source, output_formula, options = "test_max", "max", "test", "d", MaxOptions

        def output_size(self, d, opts):
            return d

        def pool(self, feats, opts, backward, backward_opts, buffers):
            return feats.amax(-1)

    from gcp.methods import _REGISTRY

    gcp.register_method(MaxPool())
    try:
        head = gcp.GCPHead(4, 2, reduced_dim=None, method="test_max")
        x = torch.randn(2, 4, 3, 3)
        assert torch.equal(head(x, pre_logits=True), x.flatten(2).amax(-1))
        assert gcp.HeadConfig.from_dict(head.config.to_dict()).method == "test_max"
    finally:
        _REGISTRY.pop("test_max")


# ----------------------------------------------------------------------------- HeadConfig
def test_head_config_round_trips_and_compares_canonically():
    cfg = gcp.HeadConfig.from_kwargs(method="svd", backward="taylor", degree=9, alpha=0.5, reduced_dim=32)
    assert cfg.method_options == () and cfg.backward_options == (("degree", 9),)  # alpha=0.5 is the default
    assert gcp.HeadConfig.from_dict(cfg.to_dict()) == cfg
    assert gcp.HeadConfig.from_kwargs(**cfg.kwargs()) == cfg
    assert gcp.HeadConfig("isqrt", method_options={"iters": 5}) == gcp.HeadConfig("isqrt")
    assert gcp.HeadConfig("svd") == gcp.HeadConfig("svd", "exact")
    assert cfg.replace(backward="pade").backward_options == ()  # a new backward starts from its defaults
    assert cfg.replace(method="isqrt").backward is None
    assert gcp.HeadConfig("mpa", method_options={"degree": [6, 6]}).to_dict()["method_options"] == {"degree": [6, 6]}


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(method="gap", backward="exact"), "'gap' takes no backward mode"),
    (dict(method="cbp", proj_dim=0), "'proj_dim' must be an integer >= 1"),
    (dict(method="logm", eps=0), "'eps' must be a number > 0"),
    (dict(method="svd", backward="lyap", alpha=0.3), "p = 0.5 or -0.5"),
    (dict(method="seb", backward="ns", iters=0), "'iters' must be an integer >= 1"),
    (dict(method="nope"), "unknown method 'nope'"),
    (dict(reduced_dim=0), "reduced_dim"),
])
def test_head_config_refuses_with_the_name_of_what_is_wrong(kwargs, pattern):
    with pytest.raises(gcp.InvalidOptionError, match=pattern):
        gcp.HeadConfig.from_kwargs(**kwargs)
    assert issubclass(gcp.InvalidOptionError, ValueError)


def test_head_config_from_dict_refuses_unknown_keys():
    with pytest.raises(gcp.InvalidOptionError, match="unknown head configuration key.*iters"):
        gcp.HeadConfig.from_dict({"method": "isqrt", "iters": 3})


def test_a_head_takes_a_config_or_keywords_not_both():
    cfg = gcp.HeadConfig("isqrt", reduced_dim=8)
    assert gcp.GCPHead(16, 2, config=cfg).config == cfg
    with pytest.raises(gcp.InvalidOptionError, match="either config= or the keywords.*method"):
        gcp.GCPHead(16, 2, method="svd", config=cfg)
