"""``python -m gcp.selfcheck``: measure every square-root route on this machine, in one table.

For each backward mode of :data:`gcp.BACKWARDS` (forward by ``eigh``) and for the iterative
routes ``isqrtm``, ``mpa_sqrtm``, ``mtp_sqrtm`` it reports, against the float64 ``"exact"``
reference:

* forward and gradient relative error on well-separated spectra (``λ_{i+1}/λ_i = 0.8``, d = 16);
* the fraction of finite gradients over a degenerate suite (identity, rotated repeated
  eigenvalues, rank-deficient covariances, scales 1e-6 and 1e6; float32 and float64);
* forward+backward time for a batch of covariances as a ratio to ``torch.linalg.eigh`` forward.

Prints a markdown table and, with ``--out DIR``, writes ``selfcheck.md`` and ``selfcheck.csv``.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from typing import Callable

import torch
from tqdm import tqdm

import gcp
from gcp._timing import interleaved_ms, median_ratio

F64 = torch.float64
Route = Callable[[torch.Tensor], torch.Tensor]


def _routes() -> dict[str, Route]:
    routes: dict[str, Route] = {f"sqrtm[{m}]": (lambda x, m=m: gcp.sqrtm(x, m)) for m in gcp.BACKWARDS}
    routes["isqrtm(iters=5)"] = lambda x: gcp.isqrtm(x, 5)
    routes["isqrtm(iters=20)"] = lambda x: gcp.isqrtm(x, 20)
    routes["mpa_sqrtm(5,5)"] = gcp.mpa_sqrtm
    routes["mtp_sqrtm(10)"] = gcp.mtp_sqrtm
    return routes


def _spd(lam: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = lam.shape[-1]
    q, _ = torch.linalg.qr(torch.randn(*lam.shape[:-1], d, d, generator=g, dtype=F64))
    x = (q * lam.unsqueeze(-2)) @ q.transpose(-1, -2)
    return 0.5 * (x + x.transpose(-1, -2))


def degenerate_suite() -> dict[str, torch.Tensor]:
    """Inputs on which the standard eigendecomposition gradient is known to break."""
    g = torch.Generator().manual_seed(5)
    d = 12
    rep = torch.tensor([1.0] * 4 + [3.0] * 4 + [0.5] * 2 + [7.0, 9.0], dtype=F64)
    base = _spd(torch.logspace(-2, 0, d, dtype=F64).expand(2, d), seed=7)
    return {
        "identity": torch.eye(d, dtype=F64).expand(2, d, d).clone(),
        "repeated": _spd(rep.expand(2, d), seed=6),
        "rank_deficient_n16_d64": gcp.covariance(torch.randn(2, 64, 16, generator=g, dtype=F64)),
        "scale_1e-06": base * 1e-6,
        "scale_1e+06": base * 1e6,
    }


def _grad(fn: Route, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xi = x.detach().clone().requires_grad_()
    out = fn(xi)
    out.backward(g)
    return out.detach(), xi.grad


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def run(batch: int = 32, d: int = 64, repeats: int = 5) -> list[dict]:
    routes = _routes()
    x = _spd((0.8 ** torch.arange(16, dtype=F64).flip(0)).expand(4, 16), seed=1)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    ref_out, ref_grad = _grad(gcp.sqrtm, x, g)
    suite = degenerate_suite()
    feats = torch.randn(batch, d, 196, generator=torch.Generator().manual_seed(3), dtype=F64)
    cov = gcp.covariance(feats)
    cov_grad = torch.randn(cov.shape, dtype=F64)
    cpu = torch.device("cpu")
    rows = []
    for name, fn in tqdm(routes.items(), desc="selfcheck", file=sys.stderr):
        out, grad = _grad(fn, x, g)
        finite = total = 0
        for case in suite.values():
            for dtype in (torch.float32, F64):
                xc = case.to(dtype)
                _, gc = _grad(fn, xc, torch.ones_like(xc))
                finite += int(torch.isfinite(gc).all())
                total += 1
        t = interleaved_ms(
            {"eigh": lambda: torch.linalg.eigh(cov), "fb": lambda fn=fn: _grad(fn, cov, cov_grad)}, cpu, repeats
        )
        rows.append(dict(
            route=name,
            forward_rel_err=_rel(out, ref_out),
            grad_rel_err=_rel(grad, ref_grad),
            grad_cosine=torch.nn.functional.cosine_similarity(grad.flatten(), ref_grad.flatten(), dim=0).item(),
            degenerate_finite=f"{finite}/{total}",
            fwd_bwd_ms=statistics.median(t["fb"]),
            fwd_bwd_over_eigh=median_ratio(t["fb"], t["eigh"]),
        ))
    return rows


def to_markdown(rows: list[dict], batch: int, d: int) -> str:
    head = ["route", "forward rel. err", "grad rel. err", "grad cosine", "finite on degenerate suite",
            f"fwd+bwd ms (B={batch}, d={d}, f64)", "÷ eigh fwd"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            f"| {r['route']} | {r['forward_rel_err']:.1e} | {r['grad_rel_err']:.1e} | {r['grad_cosine']:.6f} | "
            f"{r['degenerate_finite']} | {r['fwd_bwd_ms']:.1f} | {r['fwd_bwd_over_eigh']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gcp.selfcheck", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="directory for selfcheck.md and selfcheck.csv")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.dim < 2 or args.repeats < 1:
        ap.error("--batch and --repeats must be >= 1 and --dim >= 2")
    rows = run(args.batch, args.dim, args.repeats)
    table = to_markdown(rows, args.batch, args.dim)
    print(f"gcp {gcp.__version__}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print("errors vs float64 'exact' on λ_{i+1}/λ_i = 0.8, d = 16; suite: identity, repeated, "
          "rank-deficient, scales 1e-6/1e6 in f32+f64\n")
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "selfcheck.md"), "w") as fh:
            fh.write(table + "\n")
        with open(os.path.join(args.out, "selfcheck.csv"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"\nwrote {args.out}/selfcheck.md and selfcheck.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
