"""Run the zoo's sweep: ``gcp_<model>`` for the smallest model of every timm module, checked end to end.

    python scripts/sweep_zoo.py [--workers 2] [--results results/]

Writes ``sweep_zoo-<date>.md`` (a table by output layout and the list of failures with their
stage and reason) through :class:`gcp.bench.Report`, and prints it. The model list is
``tests/zoo/sweep_models.json`` (``scripts/sweep_models.py`` makes it).
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import pathlib
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm import tqdm

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _one(module: str, model: str) -> tuple[str, dict]:
    torch.set_num_threads(1)
    import gcp.zoo  # noqa: F401  (registers the models in this worker)
    from gcp.zoo.sweep import check_model

    return module, check_model(model).__dict__


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--results", default="results", help="folder of the dated table ('' to skip)")
    args = p.parse_args()
    listing = json.loads((ROOT / "tests/zoo/sweep_models.json").read_text())
    modules = listing["modules"]
    results: dict[str, dict] = {}
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_one, m, info["model"]) for m, info in sorted(modules.items())]
        for f in tqdm(as_completed(futures), total=len(futures), desc="sweep", file=sys.stderr):
            module, result = f.result()
            results[module] = result
    from gcp.bench import Report

    report = Report("sweep_zoo", args.results or None)
    ok = [m for m, r in results.items() if not r["stage"]]
    family = collections.defaultdict(lambda: [0, 0])
    for r in results.values():
        layout = r["layout"].split(" (")[0] or "(not built)"
        family[layout][0] += 1
        family[layout][1] += not r["stage"]
    report.line(f"One smallest model per timm module (timm {listing['timm']}): {len(ok)} of {len(results)} modules "
                f"({100 * len(ok) / len(results):.0f}%) build, run forward and backward with every parameter "
                "receiving a finite gradient, and pass the contract checks of `gcp.zoo.sweep.check_model`.")
    report.table(["backbone output", "modules", "pass"], [[k, str(v[0]), str(v[1])] for k, v in sorted(family.items())])
    failing = sorted(m for m in results if results[m]["stage"])
    report.line()
    report.line("Modules that fail, with the stage and reason:" if failing else "No module fails.")
    if failing:
        report.table(["module", "model", "stage", "reason"],
                     [[m, results[m]["model"], results[m]["stage"], results[m]["reason"].replace("|", "/")]
                      for m in failing])
    report.line()
    report.line("Every module: " + ", ".join(f"{m} ({results[m]['model'][4:]})" for m in sorted(results)) + ".")
    report.save(torch.device("cpu"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
