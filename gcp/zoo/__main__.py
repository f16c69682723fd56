"""``python -m gcp.zoo`` (``gcp-zoo``): the table of registered GCP models (name, backbone, dims,
params, published top-1)."""

from __future__ import annotations

import torch

from ._registry import SPECS, create_model


def model_rows() -> list[dict]:
    rows = []
    for name, spec in sorted(SPECS.items()):
        with torch.device("meta"):
            model = create_model(name)
        params = sum(p.numel() for p in model.parameters())
        published = "; ".join(
            f"{w.top1:.2f} ({w.tag})" for w in spec.weights if w.top1 is not None
        ) or "—"
        rows.append(dict(name=name, backbone=spec.backbone, channels=model.backbone.num_features,
                         reduced_dim=spec.head.reduced_dim, representation=model.head_hidden_size,
                         params_m=params / 1e6, published_top1=published, note=spec.note))
    return rows


def main() -> int:
    print("| model | timm backbone | backbone channels → d | representation | params (1000 classes) "
          "| published ImageNet top-1 (tag) |")
    print("|---|---|---|---|---|---|")
    for r in model_rows():
        print(f"| `{r['name']}` | {r['backbone']} | {r['channels']} → {r['reduced_dim']} | {r['representation']} "
              f"| {r['params_m']:.1f} M | {r['published_top1']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
