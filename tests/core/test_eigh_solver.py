"""The eigh forward's solver selection and cuSOLVER's batched solver (``gcp.eigh_solver``).

The batched solver is checked against float64 references computed by numpy (LAPACK) on the CPU,
never against itself: eigenvalues, the reconstruction ``V diag(λ) Vᵀ`` and ``VᵀV = I``, on
separated, clustered, tied and rank-deficient spectra. Tests marked ``cuda`` skip without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gcp
from gcp import _cusolver, eigh_solver
from gcp.errors import EighFailedError, InvalidOptionError, SolverUnavailableError


def spectrum_batch(kind: str, batch: int, n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Symmetric matrices ``Q diag(λ) Qᵀ`` with a chosen spectrum, built in float64."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(batch, n, n, generator=g, dtype=torch.float64))
    if kind == "separated":
        lam = torch.linspace(0.1, 10.0, n, dtype=torch.float64).expand(batch, n)
    elif kind == "clustered":
        lam = 1.0 + 1e-6 * torch.rand(batch, n, generator=g, dtype=torch.float64)
    elif kind == "tied":
        lam = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).repeat_interleave(n // 3 + 1)[:n].expand(batch, n)
    elif kind == "rank_deficient":
        lam = torch.cat([torch.zeros(n - n // 4, dtype=torch.float64),
                         torch.linspace(1.0, 5.0, n // 4, dtype=torch.float64)]).expand(batch, n)
    else:
        raise ValueError(kind)
    x = (q * lam.unsqueeze(-2)) @ q.mT
    return ((x + x.mT) / 2).to(dtype)


def check_against_reference(x: torch.Tensor, lam: torch.Tensor, vecs: torch.Tensor) -> None:
    ref = np.linalg.eigvalsh(x.double().cpu().numpy())
    scale = np.abs(ref).max()
    tol = 1e-12 if x.dtype == torch.float64 else 1e-5
    lam64, v64 = lam.double().cpu(), vecs.double().cpu()
    assert np.abs(lam64.numpy() - ref).max() <= tol * scale * x.shape[-1] ** 0.5
    recon = (v64 * lam64.unsqueeze(-2)) @ v64.mT
    assert (recon - x.double().cpu()).abs().max() <= 10 * tol * scale * x.shape[-1] ** 0.5
    eye = torch.eye(x.shape[-1], dtype=torch.float64)
    assert (v64.mT @ v64 - eye).abs().max() <= 10 * tol * x.shape[-1] ** 0.5


def test_backend_names_are_checked():
    with pytest.raises(InvalidOptionError, match="eigh backend 'lapack'"):
        gcp.set_eigh_backend("lapack")
    assert gcp.eigh_backend() == eigh_solver.DEFAULT_EIGH_BACKEND
    with gcp.using_eigh_backend("cusolver"):
        assert gcp.eigh_backend() == "cusolver"
    assert gcp.eigh_backend() == eigh_solver.DEFAULT_EIGH_BACKEND


def test_environment_variable_is_checked(monkeypatch):
    monkeypatch.setenv("GCP_EIGH_BACKEND", "fastest")
    with pytest.raises(InvalidOptionError, match="GCP_EIGH_BACKEND='fastest'"):
        eigh_solver._from_environment()
    monkeypatch.setenv("GCP_EIGH_BACKEND", "torch")
    assert eigh_solver._from_environment() == "torch"


def test_cpu_tensors_always_use_torch():
    x = spectrum_batch("separated", 4, 40, torch.float64)
    for name in gcp.EIGH_BACKENDS:
        with gcp.using_eigh_backend(name):
            assert not eigh_solver.uses_batched_solver(x)
            lam, vecs = eigh_solver.symmetric_eigh(x)
            check_against_reference(x, lam, vecs)


def test_library_is_found_and_reports_its_version():
    """The CUDA wheel of torch installs libcusolver; loading it and asking its version needs no GPU."""
    loaded = _cusolver._load()
    if loaded.library is None:
        pytest.skip(loaded.reason)
    major, minor, patch = (int(p) for p in loaded.library.version().split("."))
    assert major >= 11 and minor >= 0 and patch >= 0


def test_forced_solver_without_cuda_is_a_typed_error(monkeypatch):
    monkeypatch.setattr(_cusolver, "_loaded", _cusolver._Loaded(None, "no libcusolver (test)"))
    with pytest.raises(SolverUnavailableError, match="no libcusolver"):
        _cusolver.syev_batched(torch.eye(3))


cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["separated", "clustered", "tied", "rank_deficient"])
@pytest.mark.parametrize("n", [33, 64, 256])
def test_batched_solver_matches_float64_reference(kind, n, dtype):
    x = spectrum_batch(kind, 6, n, dtype).cuda()
    with gcp.using_eigh_backend("cusolver"):
        assert eigh_solver.uses_batched_solver(x)
        lam, vecs = eigh_solver.symmetric_eigh(x)
    assert lam.dtype == dtype and vecs.dtype == dtype and lam.shape == (6, n) and vecs.shape == (6, n, n)
    check_against_reference(x, lam, vecs)
    # and agrees with torch's eigenvalues on the same device
    ref_lam = torch.linalg.eigh(x)[0]
    assert (lam - ref_lam).abs().max() <= (1e-12 if dtype == torch.float64 else 1e-5) * ref_lam.abs().max() * n


@cuda
def test_batched_solver_reads_the_lower_triangle_like_torch():
    x = spectrum_batch("separated", 3, 48, torch.float64).cuda()
    skewed = x.tril() + 5.0 * x.triu(1)  # the upper triangle is garbage; torch's UPLO='L' ignores it
    with gcp.using_eigh_backend("cusolver"):
        lam, _ = eigh_solver.symmetric_eigh(skewed)
    assert torch.allclose(lam, torch.linalg.eigh(skewed)[0], atol=1e-10)


@cuda
def test_batch_shapes_chunks_and_streams(monkeypatch):
    x = spectrum_batch("separated", 12, 40, torch.float64).cuda().reshape(3, 4, 40, 40)
    # a small int32 limit forces several calls (cuSOLVER's n·lda·batch <= INT32_MAX)
    monkeypatch.setattr(_cusolver, "_INT32_MAX", 5 * 40 * 40)
    stream = torch.cuda.Stream()
    with gcp.using_eigh_backend("cusolver"), torch.cuda.stream(stream):
        lam, vecs = eigh_solver.symmetric_eigh(x)
    stream.synchronize()
    assert lam.shape == (3, 4, 40) and vecs.shape == (3, 4, 40, 40)
    check_against_reference(x.reshape(12, 40, 40), lam.reshape(12, 40), vecs.reshape(12, 40, 40))


@cuda
def test_nonfinite_input_never_returns_a_finite_guess():
    x = spectrum_batch("separated", 4, 40, torch.float64).cuda()
    x[2, 5, 7] = x[2, 7, 5] = float("nan")
    with gcp.using_eigh_backend("cusolver"):
        try:
            lam, vecs = eigh_solver.symmetric_eigh(x)
        except EighFailedError as exc:
            assert "did not converge" in str(exc)
        else:
            assert not torch.isfinite(lam[2]).all() or not torch.isfinite(vecs[2]).all()


@cuda
@pytest.mark.parametrize("backward", ["exact", "pade", "ed"])
def test_routes_agree_across_backends(backward):
    """gcp.sqrtm's forward and gradient are the same whichever solver ran the forward."""
    x = spectrum_batch("separated", 8, 64, torch.float64).cuda()
    g = torch.randn_like(x)
    results = {}
    for name in ("torch", "cusolver"):
        xi = x.clone().requires_grad_()
        with gcp.using_eigh_backend(name):
            y = gcp.sqrtm(xi, backward=backward)
            (gx,) = torch.autograd.grad(y, xi, g)
        results[name] = (y.detach(), gx)
    assert torch.allclose(results["torch"][0], results["cusolver"][0], atol=1e-10)
    assert torch.allclose(results["torch"][1], results["cusolver"][1], atol=1e-8)
    # and against an independent float64 reference: scipy's sqrtm on the CPU
    scipy_linalg = pytest.importorskip("scipy.linalg")
    ref = np.stack([np.real(scipy_linalg.sqrtm(m)) for m in x.cpu().numpy()])
    assert np.abs(results["cusolver"][0].cpu().numpy() - ref).max() < 1e-9


@cuda
def test_vmap_and_head_use_the_batched_solver():
    x = spectrum_batch("separated", 6, 40, torch.float64).cuda().reshape(2, 3, 40, 40)
    with gcp.using_eigh_backend("cusolver"):
        y = torch.vmap(lambda m: gcp.sqrtm(m, backward="exact"))(x)
    with gcp.using_eigh_backend("torch"):
        ref = gcp.sqrtm(x, backward="exact")
    assert torch.allclose(y, ref, atol=1e-10)
    head = gcp.GCPHead(64, 10, reduced_dim=40).cuda().eval()
    feats = torch.randn(4, 64, 7, 7, device="cuda")
    with gcp.using_eigh_backend("cusolver"):
        a = head(feats)
    with gcp.using_eigh_backend("torch"):
        b = head(feats)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@cuda
def test_auto_rule_follows_the_declared_crossover():
    small = torch.zeros(8, eigh_solver.BATCHED_FROM_N - 1, eigh_solver.BATCHED_FROM_N - 1, device="cuda")
    large = torch.zeros(8, eigh_solver.BATCHED_FROM_N, eigh_solver.BATCHED_FROM_N, device="cuda")
    single = torch.zeros(1, eigh_solver.BATCHED_FROM_N, eigh_solver.BATCHED_FROM_N, device="cuda")
    with gcp.using_eigh_backend("auto"):
        assert not eigh_solver.uses_batched_solver(small)
        assert eigh_solver.uses_batched_solver(large) == (eigh_solver.BATCHED_FROM_BATCH <= 8)
        assert eigh_solver.uses_batched_solver(single) == (eigh_solver.BATCHED_FROM_BATCH <= 1)
