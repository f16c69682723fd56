"""Independent, deliberately naive reference implementations used only by the tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["newton_schulz_numpy", "power_iteration_eigh", "spd_with_spectrum"]


def spd_with_spectrum(lam: Tensor, seed: int = 0) -> Tensor:
    """``Q diag(λ) Qᵀ`` in float64 with a Haar-random orthogonal ``Q`` (numpy's QR of a Gaussian
    matrix, signs fixed by ``R``'s diagonal), batched over ``lam``'s leading dimensions. Written
    here rather than imported, so that no test input comes from the code under test."""
    lam_np = lam.detach().to(torch.float64).contiguous().numpy()
    d = lam_np.shape[-1]
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal(lam_np.shape[:-1] + (d, d)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    x = (q * lam_np[..., None, :]) @ np.swapaxes(q, -1, -2)
    return torch.from_numpy(0.5 * (x + np.swapaxes(x, -1, -2)))


class _PowerIterationVector(torch.autograd.Function):
    """One eigenvector ``v`` of ``M`` as the fixed point of ``K`` power-iteration steps.

    Backward, literally as in Wang et al. (NeurIPS 2019):
    ``∂L/∂M = [Σ_{k=0}^{K} (M/‖Mv‖)^k] (I − vvᵀ)/‖Mv‖ · (∂L/∂v) vᵀ``.
    """

    @staticmethod
    def forward(ctx, m, v, iters):
        ctx.save_for_backward(m, v)
        ctx.iters = iters
        return v.clone()

    @staticmethod
    def backward(ctx, gv):
        m, v = ctx.saved_tensors
        norm = torch.linalg.vector_norm(m @ v)
        step = m / norm
        series = torch.eye(m.shape[0], dtype=m.dtype)
        power = torch.eye(m.shape[0], dtype=m.dtype)
        for _ in range(ctx.iters):
            power = power @ step
            series = series + power
        proj = gv - v * (v @ gv)
        return torch.outer(series @ proj / norm, v), None, None


def power_iteration_eigh(x: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """Eigenpairs of one symmetric matrix by the deflation loop of SVD-PI, one vector at a time.

    Returns ascending eigenvalues and the matching eigenvectors (columns), like ``eigh``.
    """
    with torch.no_grad():
        _, vecs = torch.linalg.eigh(x)
    m = x
    lams, outs = [], []
    for i in reversed(range(x.shape[0])):
        v = _PowerIterationVector.apply(m, vecs[:, i], iters)
        lams.append(v @ m @ v / (v @ v))
        outs.append(v)
        m = m - m @ torch.outer(v, v)
    return torch.stack(lams[::-1]), torch.stack(outs[::-1], dim=1)


def newton_schulz_numpy(x: np.ndarray, iters: int) -> np.ndarray:
    """iSQRT-COV written out plainly in numpy: full coupled iteration, no shortcuts."""
    d = x.shape[-1]
    eye = np.eye(d)
    tr = np.trace(x)
    y, z = x / tr, eye
    for _ in range(iters):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * np.sqrt(tr)
