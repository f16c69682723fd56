"""GCPHead, ZCAWhitening and PCADenoising: shapes, statistics, gradients, precision, errors."""

import numpy as np
import pytest
import timm
import torch

import gcp

# the covariance methods (d(d+1)/2 features), each backward of svd and the default backward of the others
COV_METHODS = [m for m in gcp.METHODS if isinstance(gcp.get_method(m), gcp.methods.MatrixMethod)]
METHOD_CONFIGS = [("svd", b) for b in gcp.BACKWARDS] + [
    (m, "exact" if gcp.get_method(m).takes_backward else None) for m in COV_METHODS if m != "svd"]
STABLE_CONFIGS = [c for c in METHOD_CONFIGS if c != ("svd", "ed")]


def _head(method="svd", backward=None, **kw):
    kw.setdefault("reduced_dim", 16)
    return gcp.GCPHead(32, 10, method=method, backward=backward, **kw)


# ----------------------------------------------------------------------------- GCPHead
@pytest.mark.parametrize("method, backward", METHOD_CONFIGS)
def test_head_shapes(method, backward):
    head = _head(method, backward)
    x = torch.randn(3, 32, 6, 6)
    assert head.num_features == 136
    assert head(x).shape == (3, 10)
    assert head(x, pre_logits=True).shape == (3, 136)
    assert head.pool(x).shape == (3, 16, 16)


def test_head_classifier_reset_and_no_reduction():
    head = gcp.GCPHead(8, 5, reduced_dim=None)
    x = torch.randn(2, 8, 4, 4)
    assert head.num_features == 36 and head(x).shape == (2, 5)
    head.reset_classifier(0)
    assert head(x).shape == (2, 36) and isinstance(head.get_classifier(), torch.nn.Identity)
    head.reset_classifier(7)
    assert head(x).shape == (2, 7)
    assert gcp.GCPHead(2048, 1000).num_features == 32896


@pytest.mark.parametrize("method, backward", STABLE_CONFIGS)
def test_head_gradients_reach_every_parameter_on_rank_deficient_batch(method, backward):
    head = _head(method, backward)
    x = torch.randn(2, 32, 2, 2, requires_grad=True)  # 4 positions < 16 channels: rank <= 3
    head(x).square().sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert torch.isfinite(x.grad).all()
    assert head.fc.weight.grad.abs().sum() > 0 and head.reduce.conv.weight.grad.abs().sum() > 0


def test_head_ed_control_breaks_on_rank_deficient_batch():
    head = _head("svd", "ed")
    x = torch.randn(2, 32, 2, 2, requires_grad=True)
    head(x).square().sum().backward()
    assert not torch.isfinite(x.grad).all()


def test_head_svd_and_isqrt20_compute_the_same_square_root():
    head = gcp.GCPHead(8, 3, reduced_dim=None).double()
    x = torch.randn(4, 8, 16, 16, dtype=torch.float64)  # 256 positions: well conditioned
    svd = head.pool(x)
    head.set_method("isqrt", iters=20)
    assert (head.pool(x) - svd).abs().max() < 1e-6 * svd.abs().max()


def test_head_state_dict_round_trip_and_set_method_keeps_parameters():
    head = _head("isqrt").eval()
    x = torch.randn(2, 32, 5, 5)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    head.set_method("svd", backward="pade", degree=(10, 10))
    assert head.config == gcp.HeadConfig("svd", "pade", backward_options={"degree": (10, 10)}, reduced_dim=16)
    after = head.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    clone = _head("svd", "pade", degree=(10, 10)).eval()
    clone.load_state_dict(after)
    assert torch.equal(clone(x), head(x))


def test_head_invalid_switch_raises_and_leaves_head_unchanged():
    head = _head("isqrt", iters=3)
    with pytest.raises(gcp.InvalidOptionError, match="p = 0.5 or -0.5"):
        head.set_method("svd", backward="ns", alpha=0.25)
    with pytest.raises(gcp.UnknownBackwardError):
        head.set_method("svd", backward="nope")
    with pytest.raises(gcp.InvalidOptionError, match="unknown method 'sv'"):
        head.set_method("sv")
    with pytest.raises(gcp.InvalidOptionError, match="136 features.*gap.*16 features"):
        head.set_method("gap")
    assert head.config == gcp.HeadConfig("isqrt", method_options={"iters": 3}, reduced_dim=16)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"method": "isqrt", "alpha": 0.25}, "'alpha' applies to neither method 'isqrt'.*belongs to method 'svd'"),
    ({"method": "svd", "backward": "taylor", "degre": 3}, "'degre' applies to neither"),
    ({"method": "isqrt", "backward": "pade"}, "'isqrt' takes no backward mode.*svd, logm, topn, seb"),
    ({"method": "svd", "iters": 3}, "'iters' applies to neither method 'svd'.*belongs to method 'isqrt'"),
    ({"method": "mpa", "backward": "exact"}, "'mpa' takes no backward mode"),
    ({"method": "topn", "top_n": 17}, "top_n=17 exceeds the 16 eigenvalues"),
    ({"method": "logm", "backward": "ns"}, "'ns' differentiates matrix powers only"),
    ({"reduced_dim": 0}, "reduced_dim"),
    ({"drop_rate": 1.0}, "drop_rate"),
])
def test_head_construction_errors(kwargs, pattern):
    with pytest.raises(gcp.GCPError, match=pattern):
        _head(**kwargs)


def test_head_input_shape_error():
    with pytest.raises(gcp.ShapeError, match=r"\(B, 32, H, W\).*\(2, 16, 4, 4\)"):
        _head()(torch.randn(2, 16, 4, 4))


@pytest.mark.parametrize("method", ["svd", "isqrt"])
def test_head_bf16_autocast_matches_float32(method):
    torch.manual_seed(1)
    head = _head(method).eval()
    x = torch.randn(4, 32, 7, 7)
    ref = head(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = head.pool(x)
        out = head(x)
    assert pooled.dtype == torch.bfloat16  # cast back to the features' dtype
    assert torch.isfinite(out.float()).all()
    rel = ((out.float() - ref).norm() / ref.norm()).item()
    assert rel < 5e-2, rel


def test_covariance_pool_matches_head_without_reduction():
    head = gcp.GCPHead(8, 0, reduced_dim=None, method="mpa")
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(gcp.covariance_pool(x, "mpa"), head.pool(x))
    assert torch.equal(gcp.triu_vec(gcp.covariance_pool(x, "mpa")), head(x))


# ----------------------------------------------------------------------------- ZCA
def _group_cov(y, groups):
    n, c = y.shape[:2]
    f = y.reshape(n, groups, c // groups, -1).permute(1, 2, 0, 3).reshape(groups, c // groups, -1)
    f = f - f.mean(-1, keepdim=True)
    return f @ f.transpose(-1, -2) / f.shape[-1]


@pytest.mark.parametrize("groups", [1, 4])
def test_zca_training_output_is_white_per_group(groups):
    x = torch.randn(64, 16, 3, 3, dtype=torch.float64) * torch.linspace(0.1, 5, 16, dtype=torch.float64).view(1, 16, 1, 1)
    x = x + 0.5 * x[:, :1]  # correlated channels
    zca = gcp.ZCAWhitening(16, groups=groups, eps=1e-4, affine=False).double()
    y = zca(x)
    cov_in = _group_cov(x, groups)
    eye = torch.eye(16 // groups, dtype=torch.float64)
    expect = cov_in @ torch.linalg.inv(cov_in + 1e-4 * eye)  # exact covariance of ZCA output
    assert (_group_cov(y, groups) - expect).abs().max() < 1e-10
    assert (_group_cov(y, groups) - eye).abs().max() < 1e-2


def test_zca_running_stats_updated_in_train_and_used_in_eval():
    zca = gcp.ZCAWhitening(8, groups=2, momentum=None, affine=False).double()
    batches = [torch.randn(16, 8, 2, 2, dtype=torch.float64) * 3 + 1 for _ in range(3)]
    for b in batches:
        zca(b)
    assert zca.num_batches_tracked.item() == 3
    covs = torch.stack([_group_cov(b, 2) for b in batches]).mean(0)
    means = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(zca.running_cov, covs, atol=1e-12)
    assert torch.allclose(zca.running_mean, means, atol=1e-12)
    zca.eval()
    x = torch.randn(5, 8, 2, 2, dtype=torch.float64)
    y = zca(x)
    state = {k: v.clone() for k, v in zca.state_dict().items()}
    w = gcp.inv_sqrtm(covs + 1e-4 * torch.eye(4, dtype=torch.float64))
    f = x.reshape(5, 2, 4, 4).permute(1, 2, 0, 3).reshape(2, 4, -1) - means.view(2, 4, 1)
    expect = (w @ f).reshape(2, 4, 5, 4).permute(2, 0, 1, 3).reshape(x.shape)
    assert torch.allclose(y, expect, atol=1e-12)
    zca(x)  # eval does not touch the statistics
    assert all(torch.equal(state[k], v) for k, v in zca.state_dict().items())


def test_zca_state_dict_round_trip_invalidates_cache():
    a = gcp.ZCAWhitening(8, groups=2)
    for _ in range(2):
        a(torch.randn(32, 8, 2, 2) * 2)
    a.eval()
    x = torch.randn(4, 8, 2, 2)
    sd = a.state_dict()
    assert set(sd) == {"running_mean", "running_cov", "num_batches_tracked", "weight", "bias"}
    b = gcp.ZCAWhitening(8, groups=2).eval()
    stale = b(x)  # caches T from the identity running covariance
    b.load_state_dict(sd)
    assert torch.equal(b(x), a(x)) and not torch.equal(b(x), stale)


@pytest.mark.parametrize("backward", [b for b in gcp.BACKWARDS if b != "ed"])
def test_zca_rank_deficient_batch_finite(backward):
    zca = gcp.ZCAWhitening(32, groups=1, backward=backward)
    x = torch.randn(2, 32, 2, 2, requires_grad=True)  # 8 samples < 32 channels
    zca(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(zca.weight.grad).all() and zca.bias.grad.abs().sum() > 0


def test_zca_bf16_autocast():
    zca = gcp.ZCAWhitening(16, groups=2)
    x = torch.randn(32, 16, 3, 3)
    ref = zca(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gcp.ZCAWhitening(16, groups=2)(x)
    assert out.dtype == torch.float32 and torch.allclose(out, ref, atol=1e-4)


def test_replace_batchnorm_in_timm_resnet():
    model = timm.create_model("resnet18", num_classes=4)
    with torch.no_grad():
        model.bn1.weight.fill_(0.5)
    zca = gcp.replace_batchnorm(model, "bn1", groups=8, backward="pi")
    assert model.bn1 is zca and zca.groups == 8 and torch.all(zca.weight == 0.5)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert zca.weight.grad is not None
    with pytest.raises(gcp.InvalidOptionError, match="no submodule 'bn9'"):
        gcp.replace_batchnorm(model, "bn9")
    with pytest.raises(gcp.InvalidOptionError, match="is a Conv2d"):
        gcp.replace_batchnorm(model, "conv1")


@pytest.mark.parametrize("kwargs, pattern", [
    ({"groups": 3}, "positive divisor"), ({"momentum": 0.0}, "momentum"), ({"eps": 0.0}, "eps must be positive"),
    ({"backward": "edd"}, "unknown backward"),
])
def test_zca_construction_errors(kwargs, pattern):
    with pytest.raises(gcp.GCPError, match=pattern):
        gcp.ZCAWhitening(16, **kwargs)


def test_zca_input_errors():
    zca = gcp.ZCAWhitening(8)
    with pytest.raises(gcp.ShapeError, match=r"\(N, 8, \.\.\.\)"):
        zca(torch.randn(4, 6, 2, 2))
    with pytest.raises(gcp.ShapeError, match="at least 2 samples"):
        zca(torch.randn(1, 8))


def test_zca_functional_matches_module_in_training():
    x = torch.randn(16, 12, 3, 3)
    assert torch.allclose(gcp.zca_whiten(x, groups=3), gcp.ZCAWhitening(12, groups=3)(x), atol=1e-6)


# ----------------------------------------------------------------------------- PCA
def test_pca_output_in_span_of_top_k_eigenvectors():
    x = torch.randn(40, 12, 2, 2, dtype=torch.float64) @ torch.randn(2, 2, dtype=torch.float64)
    x = x * torch.linspace(0.5, 3, 12, dtype=torch.float64).view(1, 12, 1, 1)
    pca = gcp.PCADenoising(12, k=4, affine=False).double()
    y = pca(x)
    f = x.permute(1, 0, 2, 3).reshape(12, -1).numpy()
    cov = np.cov(f, bias=True)
    inv_std = 1 / np.sqrt(np.diag(cov) + 1e-5)  # the layer's eps
    corr = cov * np.outer(inv_std, inv_std)
    _, vecs = np.linalg.eigh(corr)
    top = vecs[:, -4:]
    yf = y.permute(1, 0, 2, 3).reshape(12, -1).numpy()
    residual = yf - top @ (top.T @ yf)
    assert np.abs(residual).max() < 1e-8 * np.abs(yf).max()
    assert np.linalg.matrix_rank(yf, tol=1e-8 * np.abs(yf).max()) == 4


def test_pca_eval_uses_running_statistics():
    pca = gcp.PCADenoising(8, k=3, momentum=1.0)
    b = torch.randn(32, 8, 2, 2)
    train_out = pca(b)
    pca.eval()
    assert torch.allclose(pca(b), train_out, atol=1e-5)  # momentum 1: running stats = last batch
    before = pca.running_cov.clone()
    pca(torch.randn(4, 8, 2, 2))
    assert torch.equal(pca.running_cov, before)


@pytest.mark.parametrize("backward", [b for b in gcp.BACKWARDS if gcp.get_backward(b).supports_eigh and b != "ed"])
def test_pca_rank_deficient_batch_finite(backward):
    pca = gcp.PCADenoising(32, k=8, backward=backward)
    x = torch.randn(2, 32, 2, 2, requires_grad=True)  # 8 samples < 32 channels
    pca(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_pca_errors():
    with pytest.raises(gcp.InvalidOptionError, match=r"k must be an integer in \[1, 8\]"):
        gcp.PCADenoising(8, k=9)
    with pytest.raises(gcp.InvalidOptionError, match="not eigenvectors"):
        gcp.PCADenoising(8, k=2, backward="lyap")


@pytest.mark.parametrize("method", [m for m in gcp.METHODS if gcp.get_method(m).min_positions >= 2])
def test_one_position_is_refused_where_the_gradient_would_not_be_finite(method):
    """A 1×1 map has a zero covariance; the square root has no finite gradient there."""
    head = gcp.GCPHead(8, 3, reduced_dim=4, method=method)
    with pytest.raises(gcp.ShapeError, match=r"1 position\(s\).*at least 2 positions"):
        head(torch.randn(2, 8, 1, 1))


def test_one_position_isqrt_has_a_finite_gradient_and_two_positions_work_for_svd():
    x = torch.randn(2, 8, 1, 1, requires_grad=True)
    gcp.GCPHead(8, 3, reduced_dim=4, method="isqrt")(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    y = torch.randn(2, 8, 1, 2, requires_grad=True)
    gcp.GCPHead(8, 3, reduced_dim=4, method="svd")(y).sum().backward()
    assert y.grad.shape == y.shape
