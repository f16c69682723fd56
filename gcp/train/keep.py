"""What a run folder keeps of its epochs: ``--checkpoint-hist N`` full checkpoints of the N best
epochs (``best.pth`` is the best one; with N > 1 the others are ``checkpoint-<epoch>.pth``, epochs
counted from 1, and ``best.pth`` is a hard link to one of them, so it costs no space), and with
``--export-best`` the best model as a :func:`gcp.zoo.save_pretrained` folder (``best_model/``)
that ``gcp.zoo.load_pretrained`` and timm's ``local-dir:`` read.

Kill-safety: each file is written atomically; the export is written beside the folder and swapped
in by two renames; :func:`repair` (run when a run claims its folder) finishes or undoes a swap a
kill interrupted and rewrites the kept checkpoints a kill prevented. Files of epochs that left the
N best are removed after the new ones are written.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any, Optional

from torch import nn

from .checkpoint import save_checkpoint

BEST = "best.pth"
EXPORT = "best_model"
_HISTORY = re.compile(r"checkpoint-(\d+)\.pth")


def _epoch_of(path: str) -> Optional[int]:
    from .checkpoint import load_checkpoint
    from .errors import CheckpointError

    if not os.path.isfile(path):
        return None
    try:
        return int(load_checkpoint(path)["epoch"])
    except CheckpointError:
        return None


def history_name(epoch: int) -> str:
    """The file of 0-based ``epoch`` (named from 1, as the logs count epochs)."""
    return f"checkpoint-{epoch + 1}.pth"


def ranked(history: list[dict[str, Any]]) -> list[int]:
    """Epochs from best to worst top-1 (an earlier epoch first among equals)."""
    return [int(r["epoch"]) for r in sorted(history, key=lambda r: (-float(r["top1"]), int(r["epoch"])))]


def keep_epoch(output: str, ckpt: dict[str, Any], history: list[dict[str, Any]], hist: int) -> bool:
    """Write what ``hist`` keeps of the epoch in ``ckpt`` (its row is the last of ``history``) and
    remove what it no longer keeps. Returns whether the epoch is now the best one."""
    epoch = int(ckpt["epoch"])
    order = ranked(history)
    top = order[:hist]
    best_path = os.path.join(output, BEST)
    if epoch in top:
        if hist > 1:
            save_checkpoint(os.path.join(output, history_name(epoch)), ckpt)
        if epoch == top[0]:
            if hist > 1:
                _link(os.path.join(output, history_name(epoch)), best_path)
            else:
                save_checkpoint(best_path, ckpt)
    for name in os.listdir(output):
        m = _HISTORY.fullmatch(name)
        if m and (hist <= 1 or int(m.group(1)) - 1 not in top):
            os.remove(os.path.join(output, name))
    if hist == 0 and os.path.exists(best_path):
        os.remove(best_path)
    return bool(order) and order[0] == epoch


def _link(source: str, target: str) -> None:
    """``target`` becomes ``source``'s file, atomically: a hard link (no copy) where the file
    system has them, else a copy."""
    tmp = target + ".tmp-link"
    if os.path.exists(tmp):
        os.remove(tmp)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def export_best(model: nn.Module, output: str, provenance: Any = None) -> str:
    """``model`` as ``output/best_model`` (:func:`gcp.zoo.save_pretrained`, its model card saying
    where the weights come from: ``provenance``), replacing the last export only once the new one
    is complete."""
    import gcp.zoo

    final = os.path.join(output, EXPORT)
    tmp, old = final + ".tmp", final + ".old"
    for path in (tmp, old):
        if os.path.exists(path):
            shutil.rmtree(path)
    gcp.zoo.save_pretrained(model, tmp, provenance=provenance)
    if os.path.exists(final):
        os.rename(final, old)
    os.rename(tmp, final)
    if os.path.exists(old):
        shutil.rmtree(old)
    return final


def repair(output: str, resume: Optional[dict[str, Any]] = None, hist: int = 1) -> None:
    """After a kill between writes: the kept checkpoints of the resumed epoch when it is the best
    and ``best.pth`` on disk is older or missing (the kill came before they were written); an
    export finished or undone (a complete old export comes back when the new one was not swapped
    in; a half-written new one goes)."""
    if resume is not None and resume.get("history"):
        history = list(resume["history"])
        best = ranked(history)[0]
        if hist >= 1 and best == int(resume["epoch"]) and _epoch_of(os.path.join(output, BEST)) != best:
            keep_epoch(output, resume, history, hist)
    final = os.path.join(output, EXPORT)
    tmp, old = final + ".tmp", final + ".old"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    if os.path.exists(old):
        if os.path.exists(final):
            shutil.rmtree(old)
        else:
            os.rename(old, final)
    link_tmp = os.path.join(output, BEST + ".tmp-link")
    if os.path.exists(link_tmp):
        os.remove(link_tmp)
