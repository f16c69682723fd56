"""Run timm's own model tests on ``gcp_<model>`` for the smallest model of every timm module.

    python scripts/timm_model_tests.py [--workers 2] [--modules resnet,convnext] [--results results/]

timm's ``tests/test_models.py`` comes from the installed timm version's source release (fetched once
from the package index; :mod:`gcp.zoo.timm_suite`). The models are the zoo sweep's
(``tests/zoo/sweep_models.json``); the modules the zoo refuses by name are listed as refused.
Writes ``timm_tests-<date>.md`` (module × test → pass / fail / skipped / —, then every failure
with its reason) through :class:`gcp.bench.Report`, and prints it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

from tqdm import tqdm

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _one(model: str) -> list[dict]:
    from gcp.zoo.timm_suite import timm_tests

    return [o.__dict__ for o in timm_tests([model])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--modules", default="", help="comma-separated timm modules (default: every module)")
    p.add_argument("--results", default="results", help="folder of the dated table ('' to skip)")
    args = p.parse_args()
    listing = json.loads((ROOT / "tests/zoo/sweep_models.json").read_text())
    modules = {m: info["model"] for m, info in sorted(listing["modules"].items())}
    if args.modules:
        unknown = [m for m in args.modules.split(",") if m not in modules]
        if unknown:
            p.error(f"--modules: no timm module {', '.join(unknown)}")
        modules = {m: modules[m] for m in args.modules.split(",")}
    from gcp.zoo._unsupported import UNSUPPORTED
    from gcp.zoo.timm_suite import Outcome, refusal, table, timm_test_file

    timm_test_file()  # fetched once, before the workers start
    refused = {m: model for m, model in modules.items() if m in UNSUPPORTED or model in UNSUPPORTED}
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_one, model) for m, model in modules.items() if m not in refused]
        for f in tqdm(as_completed(futures), total=len(futures), desc="timm tests", file=sys.stderr):
            outcomes += [Outcome(**o) for o in f.result()]
    from gcp.bench import Report

    report = Report("timm_tests", args.results or None)
    passed = {(o.model, o.test) for o in outcomes if o.status == "pass"}
    failed = [o for o in outcomes if o.status == "fail" and not refusal(o.model, o.test, o.reason)]
    refused_tests = sorted({(o.test, str(refusal(o.model, o.test, o.reason))) for o in outcomes
                            if o.status == "fail" and refusal(o.model, o.test, o.reason)})
    skipped = sum(o.status == "skipped" for o in outcomes)
    n_refused = len(outcomes) - len(passed) - len(failed) - skipped
    report.line(f"timm's `tests/test_models.py` (timm {listing['timm']}, the tests parametrised by `list_models`, "
                f"without the two that download weights) on `gcp_<model>` for {len(modules) - len(refused)} timm "
                f"modules: {len(passed)} passed, {len(failed)} failed, {n_refused} refused (reasons below), "
                f"{skipped} skipped by timm's own size limits; "
                f"{len(refused)} modules are refused by name before building ({', '.join(sorted(refused))}). "
                "A cell `—` is a test that does not select the model (timm's own filters: non-standard "
                "models, TorchScript/FX exclusions, the modules with forward_intermediates).")
    report.line(table(outcomes, {m: model for m, model in modules.items() if m not in refused}))
    if refused_tests:
        report.line("Refused, with the reason:")
        report.table(["test", "reason"], [[t, why] for t, why in refused_tests])
    if failed:
        report.line("Failures, with timm's assertion:")
        report.table(["model", "test", "reason"], [[o.model, o.test, o.reason.replace("|", "\\|")] for o in failed])
    import torch

    path = report.save(torch.device("cpu"))
    if path:  # every outcome, with timm's assertion, next to the table
        import csv

        with open(path[:-3] + ".csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["model", "test", "status", "reason"])
            writer.writeheader()
            writer.writerows(o.__dict__ for o in outcomes)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
