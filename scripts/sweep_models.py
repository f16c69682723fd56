"""Pick the smallest model (fewest parameters) of every timm module, for the zoo's sweep test.

    python scripts/sweep_models.py > tests/zoo/sweep_models.json

Models are built on the meta device (no memory, no weights), so counting all of timm takes a minute.
"""

from __future__ import annotations

import collections
import json
import sys
import warnings

import timm
import torch
from tqdm import tqdm


def main() -> int:
    warnings.filterwarnings("ignore")
    by_module: dict[str, list[str]] = collections.defaultdict(list)
    for module in timm.list_modules():
        by_module[module] += [n for n in timm.list_models(module=module) if not n.startswith("gcp_")]
    by_module = {m: names for m, names in by_module.items() if names}
    chosen: dict[str, dict] = {}
    for module, names in tqdm(sorted(by_module.items()), desc="timm modules", file=sys.stderr):
        best = None
        for name in names:
            try:
                with torch.device("meta"):
                    model = timm.create_model(name)
            except Exception:  # a model timm itself cannot build on meta: not a candidate
                continue
            count = sum(p.numel() for p in model.parameters())
            if best is None or count < best[1]:
                best = (name, count)
        chosen[module] = dict(model=best[0], params=best[1]) if best else dict(model=names[0], params=None)
    json.dump(dict(timm=timm.__version__, modules=chosen), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
