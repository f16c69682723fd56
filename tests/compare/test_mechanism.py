"""The mechanism section: the chain rule it rests on, its norms against finite differences, and the
verdict it generates."""

import pytest
import torch

from gcp.compare.mechanism import head_features, measure, mechanism, null_basis, null_rank, upstream
from gcp.compare.mechanism_report import mechanism_conclusions, mechanism_markdown
from gcp.compare.routes import route
from gcp.covariance import covariance

F64 = torch.float64


def _loss(name: str, feats: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (route(name)(covariance(feats)) * g).sum()


def test_the_feature_gradient_is_the_chain_rule_through_the_covariance():
    """∂L/∂F = (X + Xᵀ) F Ĩ with X = ∂L/∂Σ (autograd both ways, float64)."""
    feats, g = head_features(32, batch=3), upstream(32, 3)
    for name in ("exact", "isqrt", "taylor"):
        sigma = covariance(feats).requires_grad_()
        (route(name)(sigma) * g).sum().backward()
        f = feats.clone().requires_grad_()
        _loss(name, f, g).backward()
        x = sigma.grad
        centred = feats - feats.mean(-1, keepdim=True)
        torch.testing.assert_close((x + x.transpose(-1, -2)) @ centred / feats.shape[-1], f.grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name, rtol", [("exact", 2e-3), ("isqrt", 1e-6)])
def test_the_feature_gradient_norm_matches_finite_differences(name, rtol):
    """Central differences of L(F) in float64 over every entry of F (rank 15 of 16 stays 15 along any
    perturbation of 16 positions, so L is smooth in F even where it is not in Σ)."""
    feats, g = head_features(16, batch=1), upstream(16, 1)
    h, fd = 1e-6, torch.zeros_like(feats)
    for idx in range(feats.numel()):
        e = torch.zeros(feats.numel(), dtype=F64)
        e[idx] = h
        e = e.view_as(feats)
        fd.view(-1)[idx] = (_loss(name, feats + e, g) - _loss(name, feats - e, g)) / (2 * h)
    measured = measure(name, feats, g, F64)
    assert measured["feature_grad"] == pytest.approx(float(fd.norm()), rel=rtol)


def test_the_null_block_is_large_in_sigma_and_absent_from_the_features():
    feats, g = head_features(32, batch=4), upstream(32, 4)
    assert null_rank(feats) == 15  # 16 centred positions
    exact, ns = measure("exact", feats, g, F64), measure("isqrt", feats, g, F64)
    assert exact["sigma_grad"] > 100 * ns["sigma_grad"] and exact["null_grad"] > 0.5 * exact["sigma_grad"]
    assert exact["null_to_features"] < 1e-8 and ns["null_to_features"] < 1e-8
    assert 0.2 < exact["feature_grad"] / ns["feature_grad"] < 5
    # the null basis is orthogonal to the centred features (what the chain rule's argument rests on)
    u0 = null_basis(covariance(feats), 15)
    centred = feats - feats.mean(-1, keepdim=True)
    assert float((u0.transpose(-1, -2) @ centred).norm() / centred.norm()) < 1e-10


def test_a_constant_channel_lowers_the_rank():
    feats = torch.randn(2, 8, 16, dtype=F64)
    assert null_rank(feats) == 8
    feats[:, 3] = 1.5
    assert null_rank(feats) == 7


def test_records_and_report():
    records = mechanism(["exact", "ed"], ["float64"], lambda: None, dims=(8, 32), batch=2)
    modes = {r["mode"] for r in records}
    assert modes == {"exact", "ed", "isqrt"}  # the reference route is always measured
    md = "\n".join(mechanism_markdown(records, 4))
    ed_row = next(line for line in md.splitlines() if line.startswith("| ed |"))
    assert "## 4. What reaches the backbone" in md and ed_row.endswith("| non-finite |")  # d = 32
    said = mechanism_conclusions(records)
    assert "does not act here" in said[0] and "non-finite: ed" in said[1]


def _synthetic(sigma_ratio: float, feature_ratio: float) -> list[dict]:
    out = []
    for mode, s, f in (("isqrt", 1.0, 1.0), ("exact", sigma_ratio, feature_ratio)):
        for metric, v in (("sigma_grad", s), ("null_grad", 0.9 * s), ("feature_grad", f), ("null_to_features", 1e-12),
                          ("rank", 15.0)):
            out.append(dict(section="mechanism", mode=mode, dtype="float64", case="d=32,n=16", metric=metric, value=v))
    return out


def test_the_verdict_follows_the_numbers():
    assert "does not act here" in mechanism_conclusions(_synthetic(1e4, 1.1))[0]
    assert "feed the backbone different gradients" in mechanism_conclusions(_synthetic(1e4, 8.0))[0]
    assert "not far larger" in mechanism_conclusions(_synthetic(2.0, 1.0))[0]
    assert mechanism_conclusions([]) == []
