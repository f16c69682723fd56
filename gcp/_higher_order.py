"""Derivatives of a backward pass: the exact second order of ``X^p``, and refusals elsewhere.

A custom backward that is not itself differentiable must never let a second derivative come out
as 0. torch's ``once_differentiable`` does not guarantee that: it raises only when its node runs,
and ``torch.autograd.grad`` prunes a node whose inputs are detached copies. Here a backward that
cannot be differentiated returns its result through :class:`Refuse`, an identity whose inputs
include the original input and incoming gradient: the node lies on every path a higher
derivative takes, and running it raises :class:`~gcp.UnsupportedDerivativeError`. A first derivative that
only *builds* a graph (``create_graph=True``, as ``torch.func.grad`` always does) is unaffected.

Second derivative of a spectral function (Daleckii–Krein, second order). For
``F(X) = V diag(f(λ)) Vᵀ`` the first derivative is ``Df(X)[E] = V (K ∘ Ê) Vᵀ`` with
``Ê = Vᵀ E V`` and the first divided differences ``K_ab = f[λ_a, λ_b]``; the second is

    D²f(X)[E₁, E₂] = V (T(Ê₁, Ê₂) + T(Ê₂, Ê₁)) Vᵀ,   T(A, B)_ab = Σ_c f[λ_a, λ_c, λ_b] A_ac B_cb.

The backward computes ``∂L/∂X = Df(X)[G]`` (``Df`` is self-adjoint); differentiating
``⟨H, Df(X)[G]⟩`` gives ``Df(X)[H]`` for ``G`` and ``V (T(Ĝ, Ĥ) + T(Ĝ, Ĥ)ᵀ) Vᵀ`` for ``X``
(``T(B, A) = T(A, B)ᵀ`` because divided differences are symmetric in their arguments).

For the powers GCP uses, the second divided differences factor into first ones, so ``T`` costs
one or two batched matmuls instead of a ``d³`` tensor (``s = √λ``, ``k_ab = 1/(s_a + s_b)``):

- ``p = ½``:  ``f[a, c, b] = −k_ac k_cb k_ab``, so ``T = −k ∘ ((k∘A)(k∘B))``;
- ``p = −½``: ``f[a, c, b] = k_ac k_cb k_ab (1/(s_a s_c) + 1/(s_c s_b) + 1/(s_a s_b))``, so with
  ``D = diag(1/s)``, ``A' = k∘A``, ``B' = k∘B``: ``T = k ∘ (D A'DB' + A'DB' D + D A'B' D)``;
- ``p = 1``: ``f[a, c, b] = 0``; ``p = 2``: ``f[a, c, b] = 1``, ``T = AB``.

All are free of cancellation and continuous at repeated eigenvalues (``f[a, a, a] = f''(λ_a)/2``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .backward._base import conjugate, power_divided_difference, rotate_in, sym
from .errors import UnsupportedDerivativeError

SUPPORTED = ("gcp.sqrtm / gcp.inv_sqrtm / gcp.powm with backward='exact' and p in {0.5, -0.5, 1, 2} "
             "(second order), gcp.isqrtm (any order), and the layers built on them: "
             "GCPHead(method='svd', backward='exact', alpha=0.5) or method='isqrt'")


FORWARD_OVER_REVERSE = (
    "forward-over-reverse second derivatives (torch.func.hessian = jacfwd(jacrev)) of the 'exact' matrix "
    "power are not supported; use torch.func.jacrev(torch.func.jacrev(f)), torch.autograd.grad(..., "
    "create_graph=True) or torch.autograd.functional.hvp")


def refuse_forward_mode(route: str) -> None:
    raise UnsupportedDerivativeError(
        f"forward-mode derivatives (torch.func.jvp, jacfwd) of {route} are not computed; "
        "gcp.sqrtm / gcp.inv_sqrtm / gcp.powm with backward='exact' and gcp.isqrtm support them")


def refusal(route: str, order: int = 2) -> str:
    return (f"{route} does not compute derivatives of order {order}: its backward is not differentiable. "
            f"Supported: {SUPPORTED}.")


class Refuse(torch.autograd.Function):
    """Identity on ``value`` whose backward raises :class:`UnsupportedDerivativeError` with ``message``.

    ``anchors`` (the original input and incoming gradient) make the node an ancestor of the
    value in the graph, so a higher derivative cannot bypass it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(value: Tensor, message: str, *anchors: Tensor) -> Tensor:  # type: ignore[override]
        return value.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.message = inputs[1]

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Any:  # type: ignore[override]
        raise UnsupportedDerivativeError(ctx.message)

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Any:  # type: ignore[override]
        # forward mode over the backward (torch.func.hessian = jacfwd(jacrev), jvp(grad(f))) asks
        # for the same second derivative: refused the same way, not with torch's NotImplementedError
        raise UnsupportedDerivativeError(ctx.message)


def refuse_higher(value: Tensor, route: str, *anchors: Any, order: int = 2) -> Tensor:
    """``value`` unchanged; differentiating it raises. A no-op when no graph is being built."""
    tensors = [a for a in anchors if isinstance(a, Tensor) and a.requires_grad]
    if not torch.is_grad_enabled() or not tensors:
        return value
    return Refuse.apply(value, refusal(route, order), *tensors)


def second_divided_product(lam: Tensor, p: float, a: Tensor, b: Tensor) -> Tensor:
    """``T(A, B)_ij = Σ_c f[λ_i, λ_c, λ_j] A_ic B_cj`` for ``f = λ^p``, ``p`` in
    :data:`SECOND_ORDER_POWERS`, positive ``λ``."""
    if p == 1.0:
        return torch.zeros_like(a)
    if p == 2.0:
        return a @ b
    s = lam.sqrt()
    k = (s.unsqueeze(-1) + s.unsqueeze(-2)).reciprocal()
    ka, kb = k * a, k * b
    if p == 0.5:
        return -(k * (ka @ kb))
    inv = s.reciprocal()
    p1 = ka @ (inv.unsqueeze(-1) * kb)  # A' D B'
    p2 = ka @ kb  # A' B'
    return k * (inv.unsqueeze(-1) * p1 + p1 * inv.unsqueeze(-2) + inv.unsqueeze(-1) * p2 * inv.unsqueeze(-2))


def exact_power_grad(lam: Tensor, vecs: Tensor, p: float, grad: Tensor) -> Tensor:
    """``Df(X)[G] = V (K ∘ Vᵀ sym(G) V) Vᵀ`` for ``f = λ^p`` (the first-order ``exact`` backward)."""
    return conjugate(vecs, sym(rotate_in(vecs, grad)) * power_divided_difference(lam, p))


class ExactPowerGrad(torch.autograd.Function):
    """The ``exact`` backward of ``X^p`` as a differentiable function of ``(X, G)``.

    ``lam`` (floored) and ``vecs`` come from the forward's eigendecomposition and are constants
    here: the derivative with respect to ``X`` is the closed form above, not autograd through
    ``eigh`` (whose eigenvector gradient is infinite at repeated eigenvalues)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, grad: Tensor, lam: Tensor, vecs: Tensor, p: float) -> Tensor:  # type: ignore[override]
        return exact_power_grad(lam, vecs, p, grad.to(lam.dtype)).to(grad.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, grad, lam, vecs, p = inputs
        ctx.save_for_backward(x, grad, lam, vecs)
        ctx.p = p

    @staticmethod
    def backward(ctx: Any, h: Tensor) -> Any:  # type: ignore[override]
        x, grad, lam, vecs = ctx.saved_tensors
        hc = h.to(lam.dtype)
        g_hat = sym(rotate_in(vecs, grad.to(lam.dtype)))
        h_hat = sym(rotate_in(vecs, hc))
        t = second_divided_product(lam, ctx.p, g_hat, h_hat)
        gx = conjugate(vecs, t + t.transpose(-1, -2)).to(x.dtype)
        ggrad = exact_power_grad(lam, vecs, ctx.p, hc).to(grad.dtype)
        route = "the second derivative of the 'exact' matrix power"
        return (refuse_higher(gx, route, x, grad, h, order=3), refuse_higher(ggrad, route, x, grad, h, order=3),
                None, None, None)
