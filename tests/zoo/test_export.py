"""Deployment of the zoo models: torch.compile(fullgraph) training steps, torch.export, ONNX.

Every output is compared with the same model run eagerly (a different execution path: eager
runs the Python code and the custom autograd Functions, the compiled/exported graphs their
traces), and ONNX with onnxruntime.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import timm
import torch

import gcp
import gcp.zoo

# (method, backward): every method; the default run keeps one eigendecomposition route and one
# matmul route, the others run with -m slow
CONFIGS = [("svd", "exact"), ("isqrt", None), ("svd", "pade"), ("mpa", None), ("mtp", None), ("none", None)]
DEFAULT = {("svd", "exact"), ("isqrt", None)}
PARAMS = [pytest.param(m, b, marks=() if (m, b) in DEFAULT else pytest.mark.slow) for m, b in CONFIGS]
# compiling the ResNet-18 takes 6-9 s per configuration, so whole-model compiles run with -m slow;
# the default run compiles the GCP head of every code path (test_tracing.py)
COMPILE_PARAMS = [pytest.param(m, b, marks=pytest.mark.slow) for m, b in CONFIGS]


def _model(method: str, backward=None) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("gcp_resnet18", num_classes=5, reduced_dim=8, method=method, backward=backward)


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("method,backward", COMPILE_PARAMS)
def test_compiled_training_step_matches_eager(method, backward):
    torch._dynamo.reset()
    model, x = _model(method, backward), _x()
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss = compiled(x).logsumexp(-1).sum()
    loss.backward()
    ref = eager(x).logsumexp(-1).sum()
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-5)
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("method,backward", PARAMS)
def test_torch_export_matches_eager(method, backward):
    model, x = _model(method, backward).eval(), _x()
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=1e-5, atol=1e-6)


onnxruntime = pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")


def _onnx_run(path: str, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.slow  # ~9 s of onnxscript translation; the refusals below run by default
def test_onnx_export_of_an_isqrt_model_matches_eager(tmp_path):
    model, x = _model("isqrt").eval(), _x()
    path = str(tmp_path / "isqrt.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=True, external_data=False, verbose=False)
    with torch.no_grad():
        assert (_onnx_run(path, x) - model(x)).abs().max() <= 1e-5


@pytest.mark.slow  # exporting the ResNet-18 twice through onnxscript: ~8 s
def test_svd_model_exports_to_onnx_with_a_reported_matmul_root(tmp_path):
    model = _model("svd").eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    path = str(tmp_path / "svd.onnx")
    report = gcp.zoo.export_onnx(model, path, images, tol=1e-3)
    assert report.method == "isqrt" and model.head.method == "svd"  # the model itself is untouched
    assert report.root is not None and report.root.rel_error <= 1e-3
    # the chosen root, measured here with an independent float64 eigendecomposition
    with torch.no_grad():
        cov = gcp.covariance(model.head.reduce(model.forward_features(images)).double())
        lam, vec = torch.linalg.eigh(cov)
        exact = vec @ torch.diag_embed(lam.clamp_min(0).sqrt()) @ vec.transpose(-1, -2)
        ns = gcp.isqrtm(cov, iters=report.root.iters)
        err = (torch.linalg.matrix_norm(ns - exact) / torch.linalg.matrix_norm(exact)).max()
    assert err <= 1.1e-3
    assert report.max_abs_diff <= 1e-5  # onnxruntime vs the exported configuration in eager mode
    # fewer iterations than chosen would not have met the tolerance
    previous = [e for i, e in report.root.tried if i < report.root.iters]
    assert all(e > 1e-3 for e in previous)
    # any batch size runs (dynamic batch dimension)
    one = images[:1]
    exported = copy.deepcopy(model)
    exported.set_method("isqrt", iters=report.root.iters)
    with torch.no_grad():
        assert (_onnx_run(path, one) - exported(one)).abs().max() <= 1e-5
    with pytest.raises(gcp.ExportError, match="exists"):
        gcp.zoo.export_onnx(model, path, images)


def test_onnx_export_refusals_are_typed(tmp_path):
    images = _x()
    model = _model("mpa").eval()
    with pytest.raises(gcp.ExportError, match="mpa. cannot be exported to ONNX"):
        gcp.zoo.export_onnx(model, str(tmp_path / "a.onnx"), images)
    power = _model("svd").eval()
    power.set_method(alpha=0.25)
    with pytest.raises(gcp.ExportError, match="alpha=0.5"):
        gcp.zoo.export_onnx(power, str(tmp_path / "b.onnx"), images)
    for tol in (0, -1e-3):
        with pytest.raises(gcp.ExportError, match="tol must be"):
            gcp.zoo.export_onnx(power, str(tmp_path / "d.onnx"), images, tol=tol)
    with pytest.raises(gcp.ExportError, match="non-empty"):
        gcp.zoo.export_onnx(model, str(tmp_path / "e.onnx"), images[:0])
    with pytest.raises(gcp.ExportError, match="floating-point batch.*torch.uint8"):
        gcp.zoo.export_onnx(model, str(tmp_path / "f.onnx"), (images * 255).to(torch.uint8))
    assert not list(tmp_path.iterdir())  # nothing written by any refusal
    with pytest.raises(gcp.ExportError, match="no Newton–Schulz root within"):
        gcp.zoo.choose_matmul_root(_model("svd").eval(), images, tol=1e-12, candidates=(5, 10))


def test_legacy_onnx_exporter_names_the_way_out_for_svd(tmp_path):
    """The TorchScript-based exporter reaches gcp's own check, which says what works."""
    model = _model("svd").eval()
    with pytest.raises(gcp.ExportError, match="set_method\\('isqrt'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (_x(),), str(tmp_path / "c.onnx"), dynamo=False)


@pytest.mark.slow  # a dynamo export attempt (~5 s)
def test_dynamo_onnx_exporter_of_svd_is_refused_by_gcp(tmp_path):
    """torch.onnx.export(dynamo=True) of an svd head ends in gcp's refusal, with the way out, not in
    a ConversionError on aten._linalg_eigh. torch's exporter wraps every capture error in its own
    TorchExportError; gcp.ExportError is its cause. A plain torch.export still works."""
    model = _model("svd").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as exc:
            torch.onnx.export(model, (_x(),), str(tmp_path / "d.onnx"), dynamo=True, external_data=False,
                              verbose=False)
    # the capture step refused (torch's TorchExportError, step 1/3), not the translation of an aten op
    assert type(exc.value).__name__ == "TorchExportError" and "_linalg_eigh" not in str(exc.value)
    assert isinstance(exc.value.__cause__, gcp.ExportError)
    assert "gcp.zoo.export_onnx" in str(exc.value.__cause__) and "set_method('isqrt'" in str(exc.value.__cause__)
    assert str(exc.value.__cause__) in str(exc.value)  # torch's own message quotes gcp's whole
    assert not (tmp_path / "d.onnx").exists()
    torch.export.export(model, (_x(),))


@pytest.mark.parametrize("name,kwargs", [("gcp_test_vit", dict(sovit=True)), ("gcp_test_mambaout", {})])
def test_the_matmul_root_of_a_token_or_channels_last_model_is_chosen_on_its_own_features(name, kwargs):
    """choose_matmul_root reads the head's input in the backbone's layout (tokens without the
    class token, NHWC maps permuted); checked against an independent float64 eigendecomposition
    of covariances arranged here by hand."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=3, reduced_dim=8, method="svd", **kwargs).eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    choice = gcp.zoo.choose_matmul_root(model, images, tol=1e-3)
    with torch.no_grad():
        feats = model.forward_features(images)
        maps = feats[:, 1:].permute(0, 2, 1).unsqueeze(-1) if feats.dim() == 3 else feats.permute(0, 3, 1, 2)
        x = model.head.reduce(maps).flatten(2).double()
        x = x - x.mean(-1, keepdim=True)
        cov = x @ x.transpose(-1, -2) / x.shape[-1]
        lam, vec = torch.linalg.eigh(cov)
        exact = vec @ torch.diag_embed(lam.clamp_min(0).sqrt()) @ vec.transpose(-1, -2)
        ns = gcp.isqrtm(cov, iters=choice.iters)
        err = (torch.linalg.matrix_norm(ns - exact) / torch.linalg.matrix_norm(exact)).max()
    assert err <= 1.1e-3 and choice.rel_error <= 1e-3


@pytest.mark.slow  # an onnxscript translation of a ViT: ~5 s
def test_export_onnx_of_a_so_vit_svd_model(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("gcp_test_vit", num_classes=3, reduced_dim=8, method="svd", sovit=True).eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    path = str(tmp_path / "sovit.onnx")
    report = gcp.zoo.export_onnx(model, path, images, tol=1e-3)
    assert report.method == "isqrt" and model.head.method == "svd"
    assert report.max_abs_diff <= 1e-5  # onnxruntime vs the exported configuration in eager mode
    with torch.no_grad():
        assert (_onnx_run(path, images) - model(images)).abs().max() <= 1e-2 * model(images).abs().max()


@pytest.mark.slow  # one onnxscript translation per method: ~3 s each
@pytest.mark.parametrize("method", [m for m in gcp.ONNX_METHODS if m not in ("isqrt", "mtp", "none")])
def test_the_pooling_heads_export_to_onnx_and_match_onnxruntime(method, tmp_path):
    torch.manual_seed(0)
    extra = {"proj_dim": 64} if method == "cbp" else {}
    model = gcp.zoo.create_model("gcp_test_resnet", num_classes=3, reduced_dim=8, method=method, **extra).eval()
    report = gcp.zoo.export_onnx(model, str(tmp_path / f"{method}.onnx"), torch.randn(2, 3, 64, 64))
    # cbp: onnxruntime's DFT rounds otherwise than torch's FFT, and the signed square root's slope
    # 1/(2√(|y| + 1e-8)) near y = 0 magnifies that to ~2e-4 on these logits
    assert report.method == method and report.root is None and report.max_abs_diff < (1e-3 if method == "cbp" else 1e-4)


@pytest.mark.parametrize("method", [m if m == "logm" else pytest.param(m, marks=pytest.mark.slow)
                                    for m in gcp.METHODS if m not in gcp.ONNX_METHODS and m != "svd"])
def test_a_method_onnx_cannot_run_is_refused_by_name_before_writing(method, tmp_path):
    model = gcp.zoo.create_model("gcp_test_resnet", num_classes=3, reduced_dim=8, method=method).eval()
    with pytest.raises(gcp.ExportError, match=f"'{method}' cannot be exported to ONNX"):
        gcp.zoo.export_onnx(model, str(tmp_path / "m.onnx"), torch.randn(2, 3, 64, 64))
    assert not list(tmp_path.iterdir())
