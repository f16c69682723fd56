"""The matrix measurements of ``python -m gcp.compare`` (accuracy, stability, speed); each returns
flat records. The training experiments are in :mod:`gcp.compare.training`.

A record is ``dict(section, mode, dtype, case, metric, value)``; the report pivots them.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from gcp.bench.timing import interleaved_ms, median_ratio
from gcp.spectral import sqrtm

from .routes import POOLING, route
from .suites import F64, degenerate_suite, geometric_spectrum, random_covariance

Record = dict[str, Any]
Progress = Callable[[], None]


def _rec(section: str, mode: str, dtype: str, case: str, metric: str, value: float) -> Record:
    return dict(section=section, mode=mode, dtype=dtype, case=case, metric=metric, value=float(value))


def _grad(fn: Callable[[Tensor], Tensor], x: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    xi = x.detach().clone().requires_grad_()
    out = fn(xi)
    out.backward(g)
    return out.detach(), xi.grad


def _rel(a: Tensor, b: Tensor) -> float:
    err = ((a.double() - b).norm() / b.norm()).item()
    return err if math.isfinite(err) else float("inf")


DTYPES = {"float32": torch.float32, "float64": F64}


# ----------------------------------------------------------------------------- 1. accuracy
def accuracy(modes: list[str], dtypes: list[str], d: int, ratios: Iterable[float], tick: Progress,
             device: torch.device = torch.device("cpu")) -> list[Record]:
    """Forward and gradient relative error vs the float64 ``exact`` reference, per eigengap and on
    random covariances with fewer (n = d/2) and more (n = 4d) samples than dimensions."""
    cases = {f"ratio={r:g}": geometric_spectrum(r, d) for r in ratios}
    cases["cov n<d"] = random_covariance(d, max(2, d // 2))
    cases["cov n>d"] = random_covariance(d, 4 * d)
    out: list[Record] = []
    for case, x64 in cases.items():
        g64 = torch.randn(x64.shape, generator=torch.Generator().manual_seed(1), dtype=F64).to(device)
        x64 = x64.to(device)
        ref_out, ref_grad = _grad(sqrtm, x64, g64)
        for mode in modes:
            for dt in dtypes:
                y, gx = _grad(route(mode), x64.to(DTYPES[dt]), g64.to(DTYPES[dt]))
                out.append(_rec("accuracy", mode, dt, case, "forward_rel_err", _rel(y, ref_out)))
                out.append(_rec("accuracy", mode, dt, case, "grad_rel_err", _rel(gx, ref_grad)))
            tick()
    return out


# ----------------------------------------------------------------------------- 2. stability
def stability(modes: list[str], dtypes: list[str], tick: Progress,
              device: torch.device = torch.device("cpu")) -> list[Record]:
    """Fraction of degenerate inputs with a non-finite gradient, and the largest finite gradient
    norm relative to the incoming gradient's."""
    suite = degenerate_suite()
    out: list[Record] = []
    for mode in modes:
        for dt in dtypes:
            bad, norms = 0, []
            for x in suite.values():
                xc = x.to(device, DTYPES[dt])
                g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64).to(device, DTYPES[dt])
                _, gx = _grad(route(mode), xc, g)
                if torch.isfinite(gx).all():
                    norms.append((gx.double().norm() / g.double().norm()).item())
                else:
                    bad += 1
            out.append(_rec("stability", mode, dt, "suite", "nonfinite_fraction", bad / len(suite)))
            out.append(_rec("stability", mode, dt, "suite", "max_grad_norm", max(norms) if norms else float("nan")))
        tick()
    return out


# ----------------------------------------------------------------------------- 3. speed
def speed(modes: list[str], sizes: Iterable[int], batch: int, dtype: str, repeats: int, device: torch.device,
          tick: Progress) -> list[Record]:
    """Forward and forward+backward milliseconds per batch of covariances (n = 196 samples), and
    their ratio to ``torch.linalg.eigh`` forward in the same interleaved rounds."""
    out: list[Record] = []
    for d in sizes:
        g = torch.Generator().manual_seed(3)
        feats = torch.randn(batch, d, 196, generator=g, dtype=DTYPES[dtype])
        x = (feats @ feats.transpose(-1, -2) / 196).to(device)
        gy = torch.randn(x.shape, generator=g, dtype=DTYPES[dtype]).to(device)
        for mode in modes:
            fn = route(mode)

            def fwd_bwd(fn: Callable = fn) -> None:
                xi = x.detach().requires_grad_()
                fn(xi).backward(gy)

            t = interleaved_ms({"eigh": lambda: torch.linalg.eigh(x), "fwd": lambda fn=fn: fn(x), "fb": fwd_bwd},
                               device, repeats)
            case = f"d={d}"
            out += [_rec("speed", mode, dtype, case, "eigh_ms", statistics.median(t["eigh"])),
                    _rec("speed", mode, dtype, case, "fwd_ms", statistics.median(t["fwd"])),
                    _rec("speed", mode, dtype, case, "fwd_bwd_ms", statistics.median(t["fb"])),
                    _rec("speed", mode, dtype, case, "fwd_over_eigh", median_ratio(t["fwd"], t["eigh"])),
                    _rec("speed", mode, dtype, case, "fwd_bwd_over_eigh", median_ratio(t["fb"], t["eigh"]))]
            ratios = [a / b for a, b in zip(t["fb"], t["eigh"])]  # per round: the spread of the ratio
            out += [_rec("speed", mode, dtype, case, "fwd_bwd_over_eigh_min", min(ratios)),
                    _rec("speed", mode, dtype, case, "fwd_bwd_over_eigh_max", max(ratios))]
            tick()
    return out


def pooling_speed(heads: list[str], sizes: Iterable[int], batch: int, dtype: str, repeats: int,
                  device: torch.device, tick: Progress) -> list[Record]:
    """The pooling heads (:data:`gcp.compare.routes.POOLING`: average, bilinear, compact bilinear),
    timed from the ``(B, d, 196)`` features to the representation, forward and forward+backward, as
    a ratio to ``torch.linalg.eigh`` of the same ``d`` in the same interleaved rounds (the routes'
    rows time the square root of a covariance already computed)."""
    from gcp.pooling import head_representation, method_buffers

    out: list[Record] = []
    for d in sizes:
        g = torch.Generator().manual_seed(3)
        feats = torch.randn(batch, d, 196, generator=g, dtype=DTYPES[dtype]).to(device)
        x = feats @ feats.transpose(-1, -2) / 196
        for name in heads:
            config = POOLING[name]
            buffers = method_buffers(config, d, device)

            def fn(f: Tensor, config=config, buffers=buffers) -> Tensor:
                return head_representation(f, config, buffers)

            gy = torch.randn(fn(feats).shape, generator=g, dtype=DTYPES[dtype]).to(device)

            def fwd_bwd(fn: Callable = fn, gy: Tensor = gy) -> None:
                fi = feats.detach().requires_grad_()
                fn(fi).backward(gy)

            t = interleaved_ms({"eigh": lambda: torch.linalg.eigh(x), "fwd": lambda fn=fn: fn(feats), "fb": fwd_bwd},
                               device, repeats)
            case = f"d={d}"
            ratios = [a / b for a, b in zip(t["fb"], t["eigh"])]
            out += [_rec("speed", name, dtype, case, "eigh_ms", statistics.median(t["eigh"])),
                    _rec("speed", name, dtype, case, "fwd_ms", statistics.median(t["fwd"])),
                    _rec("speed", name, dtype, case, "fwd_bwd_ms", statistics.median(t["fb"])),
                    _rec("speed", name, dtype, case, "fwd_over_eigh", median_ratio(t["fwd"], t["eigh"])),
                    _rec("speed", name, dtype, case, "fwd_bwd_over_eigh", median_ratio(t["fb"], t["eigh"])),
                    _rec("speed", name, dtype, case, "fwd_bwd_over_eigh_min", min(ratios)),
                    _rec("speed", name, dtype, case, "fwd_bwd_over_eigh_max", max(ratios))]
            tick()
    return out
