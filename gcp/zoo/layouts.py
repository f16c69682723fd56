"""What a weight file is, from its keys: a gcp model's, a published checkpoint that needs the
converter, or a timm backbone's; used to say what to do when a file does not fit."""

from __future__ import annotations

import re
from collections.abc import Iterable

_FAST_MPN_COV = re.compile(r"^(module\.)?(representation\.|layer_reduce|features\.\d)")


def describe(keys: Iterable[str]) -> str:
    """One phrase naming the layout of a state dict with these keys and what loads it."""
    keys = list(keys)
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("head.") for k in keys):
        return ("a gcp model's weights (gcp.zoo.save_weights / save_pretrained): load them as the model's "
                "weights (pretrained_cfg_overlay=dict(file=...), gcp-train --pretrained-path, gcp-finetune "
                "--checkpoint), not as a backbone")
    if any(_FAST_MPN_COV.match(k) for k in keys):
        return ("a published iSQRT-COV / DifferentiableSVD checkpoint (fast-MPN-COV's layout): convert it with "
                "`python -m gcp.zoo.convert SRC DST --format isqrt-cov` (or --format svd-pade) and load DST as the "
                "model's weights")
    if keys and all(k.startswith("module.") for k in keys):
        return "a DataParallel training checkpoint (keys start with module.) of another model"
    return "the weights of another timm model"


def missing_backbone_keys(expected: Iterable[str], present: Iterable[str]) -> list[str]:
    """The backbone's parameters and buffers a file lacks (``num_batches_tracked``, which older
    checkpoints do not store, excepted)."""
    present = set(present)
    return sorted(k for k in expected if k not in present and not k.endswith("num_batches_tracked"))
