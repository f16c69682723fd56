"""Audit every timm model's output layout against what the GCP head assumes of it.

    python scripts/audit_zoo.py [--workers 2] [--results results/]

The sweep (``scripts/sweep_zoo.py``) trains one smallest model per timm module; a module's larger
models can differ (a register token, a distillation token, another output format). This builds
``gcp_<name>`` for *every* model in ``timm.list_models()`` on the meta device (no memory, no
weights) and checks its ``forward_features`` output with :func:`gcp.zoo.sweep.audit_layout`:
the channel axis of the declared layout is ``num_features``, tokens, less the declared prefix
tokens, do not outnumber the patch grid, and timm's layer-decay grouping covers every parameter.
Writes ``audit_zoo-<date>.md`` and prints it.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import torch
from tqdm import tqdm


def _one(name: str) -> dict:
    torch.set_num_threads(1)
    import gcp.zoo  # noqa: F401  (registers the models in this worker)
    from gcp.zoo.sweep import audit_layout

    return audit_layout(name).__dict__


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--results", default="results", help="folder of the dated table ('' to skip)")
    args = p.parse_args()
    import timm

    names = [n for n in timm.list_models() if not n.startswith("gcp_")]
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        audits = list(tqdm(pool.map(_one, names, chunksize=8), total=len(names), desc="audit", file=sys.stderr))
    from gcp.bench import Report

    report = Report("audit_zoo", args.results or None)
    by_layout: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for a in audits:
        layout = a["layout"].split(" (")[0]
        by_layout[layout][0] += 1
        by_layout[layout][1] += not a["finding"]
    found = [a for a in audits if a["finding"]]
    checked = [a for a in audits if a["layout"] != "refused"]
    report.line(f"Every model of timm {timm.__version__} ({len(audits)}), as `gcp_<name>` on the meta device: "
                f"{len(audits) - len(checked)} refused by name; of the {len(checked)} others, "
                f"{len(checked) - len(found)} give the output the GCP head assumes (channel axis, prefix tokens) "
                f"and timm's layer-wise lr decay groups (every parameter once, the head at the full rate) "
                f"and {len(found)} do not.")
    report.table(["backbone output", "models", "consistent"],
                 [[k, str(v[0]), str(v[1])] for k, v in sorted(by_layout.items())])
    report.line()
    report.line("Findings (an output the head would pool wrongly):" if found else "No finding.")
    if found:
        report.table(["model", "layout", "finding"], [[a["model"], a["layout"], a["finding"]] for a in found])
    merged = [a for a in audits if a["note"] and a["layout"] != "refused"]
    if merged:
        report.line()
        report.line("Notes (consistent; fewer tokens than the patch grid because the backbone merges or pools them):")
        report.table(["model", "note"], [[a["model"], a["note"]] for a in merged])
    refused = collections.defaultdict(list)
    for a in audits:
        if a["layout"] == "refused":
            refused[a["note"]].append(a["model"][4:])
    report.line()
    report.line(f"Refused by name ({sum(map(len, refused.values()))} models, `UnsupportedBackboneError`):")
    report.table(["reason", "models"], [[r, ", ".join(ms)] for r, ms in sorted(refused.items())])
    report.save(torch.device("cpu"))
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
