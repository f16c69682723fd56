"""Checkpoints, ``summary.csv`` and the run folder: nothing torn, nothing mixed, nothing lost.

A run folder holds one run: ``run.json`` records its id, and every checkpoint carries it. Files
are written atomically (temporary file + rename) in the order ``best.pth`` → ``last.pth`` →
``summary.csv``, so a kill at any instant leaves a state a resume repairs: ``best.pth`` is never
older than the best epoch ``last.pth`` knows of, and ``summary.csv`` is rewritten from the
checkpoint's history (every epoch exactly once) when a run resumes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from gcp.zoo.io import atomic_write, load_state_dict_strict

from .distributed import unwrap
from .errors import CheckpointError, ConfigError, RunFolderError
from .record import RunRecord

CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "record")
RUN_FILE = "run.json"
SUMMARY_FIELDS = ("epoch", "seed", "method", "backward", "lr", "train_loss", "eval_loss", "top1", "top5",
                  "epoch_time_s", "images_per_s", "nonfinite_steps")


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a torn file."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a training checkpoint written by this package; a typed error naming the file otherwise.

    Files are read with ``weights_only=True`` and never unpickled otherwise: a file that is not a
    checkpoint (random bytes, text, a pickle of other objects) is refused, whatever torch suggests.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(
            f"{path} is not a training checkpoint written by train_imagenet.py or finegrained "
            f"(reading it safely failed: {type(exc).__name__}); untrusted files are never unpickled") from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a training checkpoint (missing {', '.join(missing)})")
    return state


def restore(state: dict[str, Any], model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
            scheduler: Any = None, scaler: Any = None, ema: Any = None, source: str = "checkpoint") -> None:
    """Load a checkpoint into the training objects; the model strictly, with listed key errors."""
    load_state_dict_strict(unwrap(model), state["model"], source)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"optimizer state of {source} does not fit: {exc}") from exc
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("ema") is not None:
        load_state_dict_strict(ema.module, state["ema"], source + " (EMA)")


def write_summary(path: str, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``summary.csv`` atomically from the full history (it survives resumes).

    Not ``timm.utils.update_summary``: it appends one row per call, so a run resumed after a
    kill between ``last.pth`` and the summary would list an epoch twice or miss one."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(buf.getvalue())

    atomic_write(path, write)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a kill leaves the old file or the new one)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_write(path, write)


@dataclass
class FitState:
    start_epoch: int = 0
    best_top1: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = ""
    saved_epochs: int = 0  # epochs that last.pth holds
    failed: Optional[dict[str, Any]] = None  # --on-nonfinite stop: where the run stopped (FAILURE_FILE)


FAILURE_FILE = "failure.json"


def read_failure(output: str) -> Optional[dict[str, Any]]:
    """The failure a stopped run recorded in ``output`` (epoch, step, reason, history), or ``None``."""
    path = os.path.join(output, FAILURE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fh:
            failure = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a failure record this package wrote ({exc})") from None
    if not isinstance(failure, dict) or not {"epoch", "step", "history"} <= set(failure):
        raise CheckpointError(f"{path}: not a failure record this package wrote (needs epoch, step, history)")
    return failure


def resume_state(ckpt: dict[str, Any]) -> FitState:
    return FitState(start_epoch=int(ckpt["epoch"]) + 1, best_top1=float(ckpt.get("best_top1", -math.inf)),
                    history=list(ckpt.get("history", [])), run_id=str(ckpt.get("run_id", "")),
                    saved_epochs=int(ckpt["epoch"]) + 1)


def stored_record(ckpt: dict[str, Any], source: str) -> RunRecord:
    """The :class:`RunRecord` a checkpoint stores; a typed error naming the file otherwise."""
    try:
        return RunRecord.from_dict(ckpt["record"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{source} does not hold a valid run record ({exc}); it was not written by this "
                              "version of gcp.train") from None


def check_output_outside_data(output: str, data_root: str) -> None:
    """A run folder inside the dataset would be read as data (an extra class folder) or mix
    checkpoints into the images."""
    out, data = os.path.realpath(output), os.path.realpath(data_root)
    if out == data or out.startswith(data + os.sep):
        raise RunFolderError(f"--output {output} is inside --data-dir {data_root}; choose a folder outside the dataset")


def resumable_hint(output: str, state: FitState) -> str:
    last = os.path.join(output, "last.pth")
    if state.saved_epochs and os.path.isfile(last):
        return f"{last} holds {state.saved_epochs} completed epoch(s): continue with --resume {last}"
    return f"no epoch was saved; rerun the same command to start again in {output}"


def _run_id_of(output: str) -> Optional[str]:
    path = os.path.join(output, RUN_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as fh:
                return str(json.load(fh)["run_id"])
        except (ValueError, KeyError, OSError) as exc:
            raise RunFolderError(f"{path} is damaged ({exc}); move the folder aside or choose another "
                                 "--output") from exc
    foreign = [n for n in ("last.pth", "best.pth", "summary.csv") if os.path.exists(os.path.join(output, n))]
    if foreign:  # run files without the record of whose they are: never overwritten
        raise RunFolderError(f"{output} holds {', '.join(foreign)} but no {RUN_FILE}: it is not a run folder "
                             "this tool can continue or reuse; choose another --output")
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class RunFolder:
    """Exclusive use of a run folder for the lifetime of a run.

    A lock file created with ``O_EXCL`` claims the folder atomically before anything in it is
    touched: a second command aimed at a folder in use is refused and never removes or writes
    a file of the running run. A lock whose process is gone (a killed run) is taken over.
    Only the holder removes leftover temporary files, which are then its own predecessors'.
    """

    LOCK = ".lock"

    def __init__(self, output: str, enabled: bool = True) -> None:
        self.output = output
        self.enabled = enabled
        self._held = False

    def __enter__(self) -> "RunFolder":
        if not self.enabled:
            return self
        if os.path.exists(self.output) and not os.path.isdir(self.output):
            raise RunFolderError(f"--output {self.output} is a file, not a folder")
        try:
            os.makedirs(self.output, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot create the run folder {self.output}: {exc.strerror or exc}") from None
        path = os.path.join(self.output, self.LOCK)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder(path)
                if holder is not None and holder != os.getpid() and _pid_alive(holder):
                    raise RunFolderError(f"{self.output} is in use by another run (process {holder}); wait for it "
                                         f"to end or choose another --output (if no such run exists, delete "
                                         f"{path})") from None
                try:  # the holder is gone: a killed run's lock
                    os.remove(path)
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:
                raise RunFolderError(f"cannot write to the run folder {self.output}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            self._held = True
            return self
        raise RunFolderError(f"{self.output} is being claimed by another run at the same moment; retry")

    @staticmethod
    def _holder(path: str) -> Optional[int]:
        try:
            with open(path) as fh:
                return int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def __exit__(self, *exc: Any) -> None:
        if self._held:
            try:
                os.remove(os.path.join(self.output, self.LOCK))
            except OSError:
                pass
            self._held = False

    def claim(self, resume: Optional[dict[str, Any]], resume_path: str = "") -> str:
        """Make the locked folder this run's and return the run id; refuse to mix two runs or to
        let an older checkpoint replace newer epochs. Repairs what a kill between writes left."""
        output = self.output
        for name in os.listdir(output):  # temporary files of writes a kill interrupted
            if name.startswith(".tmp-"):
                os.remove(os.path.join(output, name))
        existing = _run_id_of(output)
        last = os.path.join(output, "last.pth")
        if resume is None:
            if existing is not None and os.path.isfile(os.path.join(output, FAILURE_FILE)):
                raise RunFolderError(f"{output} holds a run that stopped at a non-finite step ({FAILURE_FILE}); "
                                     "choose another --output")
            if existing is not None and os.path.isfile(last):
                raise RunFolderError(
                    f"{output} already holds a run; pass --resume {last} to continue it, or choose another --output")
            # a run that never finished an epoch leaves nothing to continue: start again
            for name in ("best.pth", "summary.csv"):
                if existing is not None and os.path.exists(os.path.join(output, name)):
                    os.remove(os.path.join(output, name))
            run_id = uuid.uuid4().hex
        else:
            run_id = str(resume.get("run_id") or "")
            if existing is not None and existing != run_id:
                raise RunFolderError(
                    f"{output} holds another run than {resume_path or 'the checkpoint'} (run {existing} vs "
                    f"{run_id or 'an unnamed run'}); resume into the checkpoint's own folder or an empty one")
            if existing is not None and os.path.isfile(last) and os.path.realpath(last) != os.path.realpath(
                    resume_path or last):
                newest = int(load_checkpoint(last)["epoch"])
                if newest > int(resume["epoch"]):
                    raise RunFolderError(
                        f"{resume_path} is epoch {int(resume['epoch']) + 1} of this run, but {last} already holds "
                        f"epoch {newest + 1}: resuming here would replace the newer epochs. Resume from {last}, or "
                        f"fork the older checkpoint into a new, empty --output")
            run_id = run_id or uuid.uuid4().hex

        def write(tmp: str) -> None:
            with open(tmp, "w") as fh:
                json.dump(dict(run_id=run_id, updated=time.strftime("%Y-%m-%dT%H:%M:%S")), fh)

        atomic_write(os.path.join(output, RUN_FILE), write)
        if resume is not None:
            repair_after_resume(output, resume)
        return run_id


def repair_after_resume(output: str, ckpt: dict[str, Any]) -> None:
    """After a kill between writes: ``summary.csv`` from the checkpoint's history (each epoch
    once). The kept checkpoints are repaired by :func:`gcp.train.keep.repair`."""
    write_summary(os.path.join(output, "summary.csv"), list(ckpt.get("history", [])))
