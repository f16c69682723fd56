"""One training run end to end, from its :class:`~gcp.train.record.RunRecord`: optimiser,
schedule, resume, DDP, loaders, the epoch loop and the run folder's files."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

import gcp

from .checkpoint import (
    FAILURE_FILE,
    FitState,
    RunFolder,
    check_output_outside_data,
    read_failure,
    restore,
    resumable_hint,
    resume_state,
    save_checkpoint,
    stored_record,
    write_summary,
    write_text,
)
from .data import make_loader
from .distributed import DistInfo, is_timeout, unwrap
from .errors import ConfigError, NonFiniteStepError, RunFolderError, TrainingError
from .keep import export_best, keep_epoch, repair
from .loop import amp_dtype, evaluate, seed_epoch, train_one_epoch
from .optim import make_optimizer, make_scheduler
from .record import Normalisation, RunRecord, resolve
from .regularisation import training_loss


class HeadSchedule:
    """Which head normalisation runs at each epoch: the record's head, then the hybrid phase's."""

    def __init__(self, record: RunRecord) -> None:
        self.base = record.head.norm
        self.hybrid = record.hybrid

    def at(self, epoch: int) -> Normalisation:
        return self.hybrid.norm if self.hybrid is not None and epoch >= self.hybrid.switch_epoch else self.base


def _apply(model: nn.Module, wanted: Normalisation) -> None:
    """Switch the head to ``wanted`` (its mode options replace the head's own) unless it already
    runs exactly that."""
    if Normalisation.of_head(model.head).canonical() != wanted.canonical():
        model.set_method(**wanted.head_kwargs())


def fit(model: nn.Module, train_loader: Any, val_loader: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
        info: DistInfo, cfg: RunRecord, *, state: FitState, schedule: HeadSchedule, amp: Optional[torch.dtype] = None,
        scaler: Optional[torch.amp.GradScaler] = None, ema: Any = None,
        set_epoch: Optional[Callable[[int], None]] = None) -> FitState:
    """Train from ``state.start_epoch`` to ``cfg.epochs``; rank 0 writes ``best.pth`` (when it is
    the best epoch), then ``last.pth``, then ``summary.csv`` (see :mod:`gcp.train.checkpoint`)."""
    eval_model = ema.module if ema is not None else model
    criterion, mixup = training_loss(cfg, info.world_size)
    for epoch in range(state.start_epoch, cfg.epochs):
        wanted = schedule.at(epoch)
        for m in (unwrap(model), ema.module if ema is not None else None):
            if m is not None:
                _apply(m, wanted)
        seed_epoch(cfg.seed, epoch)
        if set_epoch is not None:
            set_epoch(epoch)
        try:
            stats = train_one_epoch(model, train_loader, optimizer, info, amp=amp, scaler=scaler,
                                    grad_clip=cfg.grad_clip, ema=ema, channels_last=cfg.channels_last,
                                    max_steps=cfg.max_steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                    criterion=criterion, mixup=mixup, accum_steps=cfg.grad_accum_steps,
                                    stop_on_nonfinite=cfg.on_nonfinite == "stop")
        except NonFiniteStepError as exc:
            return _stopped(state, cfg, info, epoch, exc)
        metrics = evaluate(eval_model, val_loader, info, amp=amp, flip_average=cfg.flip_average,
                           channels_last=cfg.channels_last, desc=f"eval {epoch + 1}/{cfg.epochs}")
        scheduler.step(epoch + 1)
        head = unwrap(model).head
        row = dict(epoch=epoch, seed=cfg.seed, method=head.method, backward=head.backward or "", lr=stats.lr,
                   train_loss=stats.loss,
                   eval_loss=metrics["loss"], top1=metrics["top1"], top5=metrics["top5"],
                   epoch_time_s=stats.seconds, images_per_s=stats.images / max(stats.seconds, 1e-9),
                   nonfinite_steps=stats.nonfinite_steps)
        state.history.append(row)
        is_best = metrics["top1"] > state.best_top1
        state.best_top1 = max(state.best_top1, metrics["top1"])
        if info.is_main:
            ckpt = dict(
                model=unwrap(model).state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), scaler=scaler.state_dict() if scaler is not None else None,
                ema=ema.module.state_dict() if ema is not None else None, epoch=epoch, record=cfg.to_dict(),
                run_id=state.run_id, metrics=metrics, best_top1=state.best_top1,
                history=state.history,
            )
            # the kept epochs before last: a kill between the two leaves last.pth one epoch behind,
            # and the resumed run redoes that epoch (bit-identically) and writes them again
            keep_epoch(cfg.output, ckpt, state.history, cfg.checkpoint_hist)
            if is_best and cfg.export_best:
                export_best(unwrap(eval_model), cfg.output, trained_provenance(cfg, epoch, metrics))
            save_checkpoint(os.path.join(cfg.output, "last.pth"), ckpt)
            state.saved_epochs = epoch + 1
            write_summary(os.path.join(cfg.output, "summary.csv"), state.history)
            # numbered from 1, as the progress bars count epochs
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: {head.config.label()} train_loss {stats.loss:.4f} eval_loss "
                       f"{metrics['loss']:.4f} top1 {metrics['top1']:.2f} top5 {metrics['top5']:.2f} "
                       f"({row['images_per_s']:.1f} img/s, {stats.nonfinite_steps} non-finite)")
    return state


def trained_provenance(cfg: RunRecord, epoch: int, metrics: dict[str, float]) -> Any:
    """What an exported model's card says of its weights: the run, its data and its epoch's results."""
    from gcp.zoo import Provenance

    details = {k: v for k, v in cfg.to_dict().items() if k != "class_names"}
    return Provenance(
        "trained", f"by gcp.train in {cfg.output}: {cfg.model} on {cfg.data.dataset} ({cfg.data.root}), the best "
                   f"epoch by top-1, {epoch + 1} of {cfg.epochs}, seed {cfg.seed}; its run record is below",
        results={f"{cfg.data.eval_split} top-1 (%)": metrics["top1"], f"{cfg.data.eval_split} top-5 (%)":
                 metrics["top5"], f"{cfg.data.eval_split} loss": metrics["loss"]}, details=details)


def _stopped(state: FitState, cfg: RunRecord, info: DistInfo, epoch: int, exc: NonFiniteStepError) -> FitState:
    """``--on-nonfinite stop``: the run ends as failed. ``failure.json`` (epoch and step, from 1 as
    the logs count, and the history so far) is written next to the last completed epoch's
    checkpoint, so the folder stays readable and a sweep goes on."""
    import json

    state.failed = dict(epoch=epoch + 1, step=exc.step + 1, reason=str(exc), history=state.history)
    if info.is_main:
        write_text(os.path.join(cfg.output, FAILURE_FILE), json.dumps(state.failed, indent=1))
        tqdm.write(f"run failed: {exc} of epoch {epoch + 1}/{cfg.epochs} (--on-nonfinite stop); recorded in "
                   f"{os.path.join(cfg.output, FAILURE_FILE)}")
    return state


def check_feature_map(model: nn.Module, record: RunRecord, info: DistInfo) -> None:
    """The head pools the backbone's last map; at a small ``--img-size`` a stride-32 backbone
    leaves one position, whose zero covariance the svd/mpa/mtp heads cannot differentiate.
    Found with one forward of a blank image, before any work, rather than mid-epoch."""
    methods = {record.head.norm.method} | ({record.hybrid.norm.method} if record.hybrid else set())
    needy = sorted(m for m in methods if gcp.get_method(m).min_positions >= 2)
    net = unwrap(model)
    if not needy or not hasattr(net, "forward_features"):
        return
    size = record.data.img_size
    was_training = net.training
    net.eval()
    with torch.no_grad():
        feats = net.forward_features(torch.zeros(1, 3, size, size, device=info.device))
    net.train(was_training)
    if feats.dim() == 4 and callable(getattr(net, "head_input", None)):
        feats = net.head_input(feats)  # channels-last maps (Swin, MambaOut) permuted: the positions are H×W
    if feats.dim() == 4 and feats.shape[-2] * feats.shape[-1] < 2:
        raise ConfigError(f"--img-size {size}: {record.model}'s final feature map is {feats.shape[-2]}×"
                          f"{feats.shape[-1]}, one position, whose covariance is zero; method "
                          f"{'/'.join(needy)} has no finite gradient there. Use a larger --img-size (or "
                          "--last-stride 1 on a ResNet), or a method that needs one position: " + ", ".join(
                              m for m in gcp.METHODS if gcp.get_method(m).min_positions < 2))


def run(model: nn.Module, train_set: Any, val_set: Any, info: DistInfo, record: RunRecord,
        resume: Optional[dict[str, Any]] = None, resume_source: str = "checkpoint",
        args_yaml: Optional[str] = None) -> FitState:
    """Train ``model`` (already on ``info.device``) as ``record`` says and return the history.

    With ``resume`` (a loaded checkpoint), the run continues where it stopped; ``record`` must be
    its stored record up to what a resume may change (:func:`gcp.train.record.resolve`). A
    Ctrl-C, a folder that cannot be written and a rank that stops answering end the run with a
    typed error; the folder then holds the last completed epoch, resumable. ``args_yaml`` (the
    run's flags, :func:`gcp.train.cli.record_flags`) is written to the folder as ``args.yaml``.
    """
    failure = read_failure(record.output) if resume is not None else None
    if failure is not None:  # a run that stopped at a non-finite step is finished: nothing to continue
        return FitState(history=list(failure["history"]), failed=failure)
    state = resume_state(resume) if resume is not None else FitState()
    if resume is not None:
        resolve(record.flat(), stored=stored_record(resume, resume_source), start_epoch=state.start_epoch,
                from_flags=False)
    check_output_outside_data(record.output, record.data.root)
    check_feature_map(model, record, info)
    training_loss(record, info.world_size)  # its refusals (an odd batch under mixup) before any work
    # every check that can fail runs before the run folder is touched
    train_loader, set_epoch = make_loader(train_set, record.batch_size, record.workers, info, train=True,
                                          seed=record.seed)
    val_loader, _ = make_loader(val_set, record.batch_size, record.workers, info, train=False)
    amp = amp_dtype(record.amp)
    with RunFolder(record.output, enabled=info.is_main) as folder:
        if info.is_main:
            state.run_id = folder.claim(resume, resume_source)
            repair(record.output, resume, record.checkpoint_hist)
            if args_yaml is not None:
                write_text(os.path.join(record.output, "args.yaml"), args_yaml)
        if record.channels_last:
            model.to(memory_format=torch.channels_last)
        ema = None
        if record.model_ema:
            from timm.utils import ModelEmaV3

            ema = ModelEmaV3(model, decay=record.model_ema_decay)
        optimizer = make_optimizer(model, record.optimizer_settings())
        scheduler = make_scheduler(optimizer, record.schedule_settings())
        scaler = torch.amp.GradScaler(info.device.type) if record.amp == "fp16" else None
        if resume is not None:
            restore(resume, model, optimizer, scheduler, scaler, ema, source=resume_source)
            if info.is_main:
                print(f"resumed {resume_source} at epoch {state.start_epoch}")
        scheduler.step(state.start_epoch)
        train_model: nn.Module = model
        if info.distributed:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
        if record.torchcompile is not None:  # after DDP, as timm's train.py; checkpoints unwrap it
            train_model = torch.compile(train_model, backend=record.torchcompile, mode=record.torchcompile_mode)
        try:
            return fit(train_model, train_loader, val_loader, optimizer, scheduler, info, record, state=state,
                       schedule=HeadSchedule(record), amp=amp, scaler=scaler, ema=ema, set_epoch=set_epoch)
        except KeyboardInterrupt:
            raise TrainingError(f"interrupted; {resumable_hint(record.output, state)}") from None
        except OSError as exc:
            raise RunFolderError(f"cannot write the run folder {record.output}: {exc.strerror or exc}; "
                                 f"{resumable_hint(record.output, state)}") from None
        except RuntimeError as exc:
            if info.distributed and is_timeout(exc):
                raise TrainingError(f"rank {info.rank}: another process did not answer within --dist-timeout "
                                    f"({exc.__class__.__name__}); a rank stopped or hangs. "
                                    f"{resumable_hint(record.output, state)}") from None
            raise


def evaluate_weights(model: nn.Module, dataset: Any, info: DistInfo, record: RunRecord,
                     resume: Optional[dict[str, Any]] = None, source: str = "checkpoint") -> dict[str, float]:
    """``--evaluate-only``: the model (with ``resume``'s weights when given) on ``dataset``, with
    the record's batch size, precision and flip averaging; rank 0 prints the metrics as a JSON line."""
    import json

    if record.channels_last:
        model.to(memory_format=torch.channels_last)
    if resume is not None:
        restore(resume, model, source=source)
    loader, _ = make_loader(dataset, record.batch_size, record.workers, info, train=False)
    metrics = evaluate(model, loader, info, amp=amp_dtype(record.amp), flip_average=record.flip_average,
                       channels_last=record.channels_last)
    if info.is_main:
        print(json.dumps(dict(evaluate=metrics)))
    return metrics
