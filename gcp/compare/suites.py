"""Test matrices: controlled eigengaps, real covariances, and the degenerate suite."""

from __future__ import annotations

import torch
from torch import Tensor

from ..covariance import covariance

F64 = torch.float64


def spd_with_spectrum(lam: Tensor, seed: int = 0) -> Tensor:
    """``Q diag(λ) Qᵀ`` with a random orthogonal ``Q`` (float64, batched over ``lam``'s leading dims)."""
    g = torch.Generator().manual_seed(seed)
    d = lam.shape[-1]
    q, _ = torch.linalg.qr(torch.randn(*lam.shape[:-1], d, d, generator=g, dtype=F64))
    x = (q * lam.to(F64).unsqueeze(-2)) @ q.transpose(-1, -2)
    return 0.5 * (x + x.transpose(-1, -2))


def geometric_spectrum(ratio: float, d: int, batch: int = 4, seed: int = 0) -> Tensor:
    """Eigenvalues ``1, r, r², …`` (each ``λ_{i+1}/λ_i = r``) in random bases."""
    lam = ratio ** torch.arange(d, dtype=F64).flip(0)
    return spd_with_spectrum(lam.expand(batch, d), seed)


def random_covariance(d: int, n: int, batch: int = 4, seed: int = 0) -> Tensor:
    """Covariances of ``n`` Gaussian samples in ``d`` dimensions (rank ``min(d, n − 1)``)."""
    g = torch.Generator().manual_seed(seed)
    return covariance(torch.randn(batch, d, n, generator=g, dtype=F64))


def degenerate_suite(d: int = 12) -> dict[str, Tensor]:
    """Inputs on which the standard eigendecomposition gradient is known to break."""
    g = torch.Generator().manual_seed(5)
    rep = torch.tensor(([1.0] * 4 + [3.0] * 4 + [0.5] * 2 + [7.0, 9.0]) * (d // 12 + 1), dtype=F64)[:d]
    base = spd_with_spectrum(torch.logspace(-2, 0, d, dtype=F64).expand(2, d), seed=7)
    return {
        "identity": torch.eye(d, dtype=F64).expand(2, d, d).clone(),
        "repeated": spd_with_spectrum(rep.expand(2, d), seed=6),
        "rank_deficient": covariance(torch.randn(2, 4 * d, d, generator=g, dtype=F64)),
        "scale_1e-6": base * 1e-6,
        "scale_1e+6": base * 1e6,
    }
