r"""What each route's gradient does in the rank-deficient regime, and what of it reaches the backbone.

The argument of Song et al. (ICCV 2021) for smoothed and Newton–Schulz gradients is that the exact
gradient of the square root, ``K_ij = 1/(√λi + √λj)`` in the eigenbasis, is huge on the null
eigenvalues of a rank-deficient covariance. This section measures it per route, and measures the
part of it that the backbone receives.

With ``Σ = F Ĩ Fᵀ`` (``Ĩ = (I − 11ᵀ/n)/n``, ``n`` positions) and ``X = ∂L/∂Σ``, the chain rule gives

.. math::
    \frac{\partial L}{\partial F} = (X + X^\top)\, F \tilde I ,

and the centred features ``F Ĩ`` lie in ``range(Σ)``. Write ``P₀`` for the projector on the null
space of ``Σ``: ``P₀ F Ĩ = 0``, so the null–null block ``P₀ X P₀`` contributes ``P₀ (X + Xᵀ) P₀ F Ĩ
= 0`` to the features' gradient. However large a route makes it, it reaches the backbone only through
round-off (or where ``Σ`` is not the features' own covariance).

For each route, dtype and ``d`` (``n = 16`` positions, the training section's map), on the features
that the training section's network computes at initialisation on noisy test digits:

- ``rank``: the covariances' numerical rank (float64; at most ``n − 1 = 15``, lower where a channel
  is constant);
- ``sigma_grad``: ``‖∂L/∂Σ‖``; ``null_grad``: ``‖U₀ᵀ (∂L/∂Σ) U₀‖``, ``U₀`` the eigenvectors of the
  ``d − rank`` smallest eigenvalues;
- ``feature_grad``: ``‖∂L/∂F‖`` through the route (autograd);
- ``null_to_features``: ``‖P₀(X + Xᵀ)P₀ F Ĩ‖ / ‖(X + Xᵀ) F Ĩ‖``, the null–null block's share of the
  features' gradient, computed in the route's dtype (in float32, round-off lets a little through).

``L = ⟨G, route(Σ)⟩`` for a fixed random symmetric ``G`` of unit norm per matrix. The report divides
each norm by Newton–Schulz's (the ``isqrt`` route of iSQRT-COV).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from ..covariance import covariance
from .routes import route

Record = dict[str, object]
#: the reference route of the ratios: the Newton–Schulz iteration of iSQRT-COV
REFERENCE = "isqrt"
#: head sizes measured (n = 16 positions): d = 8 has no null space (the control), the others do
DIMS: tuple[int, ...] = (8, 16, 32, 64)
METRICS = ("sigma_grad", "null_grad", "feature_grad", "null_to_features", "rank")


def head_features(d: int, batch: int = 8) -> Tensor:
    """``(batch, d, 16)`` float64 features of the training section's network at initialisation (seed
    0) on the first noisy test digits: what its head pools."""
    from .tasks import noisy_digits
    from .training import RegimeNet

    task = noisy_digits()
    torch.manual_seed(0)
    model = RegimeNet("exact", d).eval()
    with torch.no_grad():
        return model.head.reduce(model.features(task.x_test[:batch])).flatten(2).double()


def upstream(d: int, batch: int, seed: int = 0) -> Tensor:
    """A fixed random symmetric ``(batch, d, d)`` float64 gradient of unit Frobenius norm per matrix."""
    g = torch.randn(batch, d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g + g.transpose(-1, -2)
    return g / g.flatten(1).norm(dim=1).view(-1, 1, 1)


def null_rank(feats: Tensor) -> int:
    """The largest numerical rank (relative tolerance 1e-10) of the float64 covariances of ``feats``:
    at most ``n − 1``, and lower where a channel is constant (a ReLU that never fires)."""
    lam = torch.linalg.eigvalsh(covariance(feats.double()))
    return int((lam > 1e-10 * lam[..., -1:]).sum(-1).max())


def null_basis(sigma: Tensor, rank: int) -> Tensor:
    """Eigenvectors of the ``d − rank`` smallest eigenvalues of each ``Σ``, in its dtype (the null
    space as that precision's eigensolver sees it)."""
    _, vecs = torch.linalg.eigh(sigma)
    return vecs[..., : sigma.shape[-1] - rank]


def measure(name: str, feats: Tensor, grad_out: Tensor, dtype: torch.dtype) -> dict[str, float]:
    """The four norms of the module docstring for one route on ``feats`` ``(B, d, n)`` in ``dtype``."""
    fn: Callable[[Tensor], Tensor] = route(name)
    f = feats.to(dtype)
    g = grad_out.to(dtype)
    sigma = covariance(f).detach().requires_grad_()
    (fn(sigma) * g).sum().backward()
    x = sigma.grad.double()
    f_leaf = f.clone().requires_grad_()
    (fn(covariance(f_leaf)) * g).sum().backward()
    n, rank = f.shape[-1], null_rank(feats)
    u0 = null_basis(sigma.detach(), rank)
    # the chain rule of the module docstring, in the route's dtype: what that precision lets leak
    xs = sigma.grad + sigma.grad.transpose(-1, -2)
    centred = f - f.mean(-1, keepdim=True)
    p0 = u0 @ u0.transpose(-1, -2)
    full = (xs @ centred / n).norm()
    return dict(sigma_grad=float(x.norm()), null_grad=float((u0.transpose(-1, -2).double() @ x @ u0.double()).norm()),
                feature_grad=float(f_leaf.grad.double().norm()),
                null_to_features=float((p0 @ xs @ p0 @ centred / n).norm() / full), rank=float(rank))


def mechanism(routes: Iterable[str], dtypes: Iterable[str], tick: Callable[[], None],
              dims: Iterable[int] = DIMS, batch: int = 8) -> list[Record]:
    """Every route (and ``isqrt``, the reference) at every ``d`` and dtype."""
    names = list(dict.fromkeys([*routes, REFERENCE]))
    out: list[Record] = []
    for d in dims:
        feats, g = head_features(d, batch), upstream(d, batch)
        for dt in dtypes:
            for name in names:
                for metric, value in measure(name, feats, g, getattr(torch, dt)).items():
                    out.append(dict(section="mechanism", mode=name, dtype=dt, case=f"d={d},n={feats.shape[-1]}",
                                    metric=metric, value=value))
            tick()
    return out
