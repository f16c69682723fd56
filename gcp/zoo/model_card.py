"""The ``README.md`` model card :func:`gcp.zoo.save_pretrained` writes next to the weights: the
architecture and head, where the weights come from, the results a run recorded, the papers to
cite, and the Hub's metadata (license, library, tags)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from torch import nn

LICENSE = "apache-2.0"
PROJECT_CITATION = "gcp (see CITATION.cff in the gcp repository)"
COV_NORM_SOURCE = "ZCA whitening / PCA denoising (Wang et al., NeurIPS 2019, Power-Iteration-SVD)"


@dataclass(frozen=True)
class Provenance:
    """Where a saved model's weights come from: ``kind`` is ``"untrained"``, ``"converted"`` or
    ``"trained"``; ``description`` says from what (a file and its format, a run and its data);
    ``results`` are the metrics a run recorded (name → value); ``details`` any further facts
    (the run record), shown as JSON."""

    kind: str = "untrained"
    description: str = ""
    results: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


def _head_lines(args: Mapping[str, Any]) -> list[str]:
    import gcp

    head = args.get("head") or {}
    method = head.get("method")
    lines = []
    if method:
        entry = gcp.get_method(method)
        lines.append(f"- head: `{method}` ({entry.summary})")
        if head.get("backward"):
            lines.append(f"- backward mode of its eigendecomposition: `{head['backward']}`")
        options = {**(head.get("method_options") or {}), **(head.get("backward_options") or {})}
        if options:
            lines.append(f"- head options: `{json.dumps(options, sort_keys=True)}`")
        lines.append(f"- 1×1 reduction to {head['reduced_dim']} channels" if head.get("reduced_dim")
                     else "- no channel reduction before the head")
    if args.get("cov_norm"):
        norm = args["cov_norm"]
        lines.append(f"- `{norm.get('layer')}` layer in place of the batch normalisation `{norm.get('at')}` "
                     f"(`{json.dumps(norm, sort_keys=True)}`)")
    return lines


def _citations(args: Mapping[str, Any]) -> list[str]:
    import gcp

    out = []
    method = (args.get("head") or {}).get("method")
    if method:
        out.append(gcp.get_method(method).source)
    if args.get("cov_norm"):
        out.append(COV_NORM_SOURCE)
    out.append(PROJECT_CITATION)
    return out


def model_card(model: nn.Module, provenance: Optional[Provenance] = None) -> str:
    """The card of ``model`` (a zoo model: its ``arch_args`` and ``pretrained_cfg``)."""
    provenance = provenance or Provenance()
    args = dict(getattr(model, "arch_args", {}) or {})
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    name = args.get("architecture") or cfg.get("architecture") or type(model).__name__
    lines = ["---", f"license: {LICENSE}", "library_name: timm",
             "tags:", "- image-classification", "- timm", "- gcp", "- global-covariance-pooling", "---", "",
             f"# {name}", "",
             f"A `{args.get('backbone', '?')}` backbone from timm with a global covariance pooling head, built by "
             f"gcp (`gcp.zoo`); {getattr(model, 'num_classes', '?')} classes, input "
             f"{tuple(cfg.get('input_size', ()))}.", "", *_head_lines(args), "",
             "## Use", "", "```python", "import timm", "import gcp.zoo  # registers the gcp models with timm", "",
             'model = timm.create_model("local-dir:<this folder>", pretrained=True)',
             'same = gcp.zoo.load_pretrained("<this folder>")', "```", "",
             "## Where the weights come from", ""]
    if provenance.kind == "untrained":
        lines.append("Untrained, or of an origin not recorded when the folder was saved: the weights are "
                     "what the model held, with no claim about them.")
    else:
        lines.append(f"{provenance.kind.capitalize()}: {provenance.description}".rstrip(": "))
    if provenance.results:
        lines += ["", "## Results", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in provenance.results.items()]
    if provenance.details:
        lines += ["", "<details><summary>Details</summary>", "", "```json",
                  json.dumps(dict(provenance.details), indent=1, sort_keys=True, default=str), "```", "", "</details>"]
    lines += ["", "## Citation", "", *[f"- {c}" for c in _citations(args)], ""]
    return "\n".join(lines)
