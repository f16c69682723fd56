"""The training experiments of ``gcp-compare``: GCP against average pooling where the head matters,
a texture control, and ZCA whitening.

**The GCP regime** (:func:`training`). A two-layer CNN maps an 8×8 image to a 4×4 map of 64
channels (16 positions); the head reduces it to ``d`` channels and pools their covariance, whose
rank is at most 15: for ``d = 64``, 49 of its eigenvalues are zero up to round-off, as in GCP on
ImageNet (256 channels over 196 positions in iSQRT-COV), where the exact gradient of the square
root is large at the null eigenvalues (``1/(√λi + √λj)``) and the routes differ most. The task is
:func:`gcp.compare.tasks.noisy_digits` (the clean digits saturate every head). The arms are the
routes of :data:`gcp.compare.routes.HEAD_CONFIG`, the other head methods by name, global average
pooling of the same ``d`` channels (``gap``: the baseline a GCP head must beat) and the hybrid
protocol of Song et al. (ICCV 2021; ``hybrid``: Newton–Schulz for the first half of the epochs, then
SVD with the Padé backward). Optimiser: SGD with a cosine schedule to 0, so the last epoch is a
converged model rather than a snapshot of a noisy trajectory.

**The texture control** (:func:`texture`): the same network on
:func:`gcp.compare.tasks.correlation_textures`, whose classes differ only in cross-channel correlation.

**ZCA whitening** (:func:`zca`): the scaled-down SVD-PI experiment of Wang et al. (NeurIPS 2019), on
the clean digits.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from torch import Tensor, nn

from gcp.head_config import HeadConfig
from gcp.methods import MatrixMethod
from gcp.pooling import GCPHead
from gcp.train.distributed import DistInfo
from gcp.train.loop import evaluate, train_one_epoch
from gcp.whitening import ZCAWhitening

from ..covariance import covariance
from .routes import HEAD_CONFIG, METHOD_ARMS, POOLING
from .tasks import TASKS, Task, digits_split

Record = dict[str, Any]
Progress = Callable[[], None]

#: the backbone's channels and positions (a 4×4 map): a head of d channels has rank <= POSITIONS - 1
WIDTH, POSITIONS = 64, 16
#: the head's default size, and the sizes of the full run (the gap to GAP is measured to grow with d)
DIM, DIMS = 64, (16, 32, 64)
#: arms next to the routes: the first-order baseline and the hybrid protocol
BASELINES: tuple[str, ...] = ("gap", "hybrid")
#: the other pooling heads the papers compare against (bilinear and compact bilinear pooling)
OTHER_HEADS: tuple[str, ...] = tuple(n for n in POOLING if n not in BASELINES)
#: the arms of the texture control: first-order pooling against the Newton–Schulz covariance head
TEXTURE_ARMS: tuple[str, ...] = ("gap", "isqrt")
HYBRID_START, HYBRID_THEN = HeadConfig("isqrt"), HeadConfig("svd", "pade")


def _rec(section: str, mode: str, case: str, metric: str, value: float) -> Record:
    return dict(section=section, mode=mode, dtype="float32", case=case, metric=metric, value=float(value))


def _stem(in_chans: int, width: int, stride: int) -> nn.Sequential:
    half = width // 2
    return nn.Sequential(nn.Conv2d(in_chans, half, 3, padding=1, bias=False), nn.BatchNorm2d(half),
                         nn.ReLU(inplace=True), nn.Conv2d(half, width, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU(inplace=True))


def arm_config(arm: str) -> HeadConfig:
    """The head configuration of a training arm: a route, a head method by name, or ``hybrid``
    (which starts as Newton–Schulz; :func:`hybrid_switch` changes it half-way)."""
    return METHOD_ARMS[arm] if arm in METHOD_ARMS else HYBRID_START if arm == "hybrid" else HEAD_CONFIG[arm]


class RegimeNet(nn.Module):
    """8×8 image → two 3×3 conv blocks (the second of stride 2: a 4×4 map of 64 channels) → a head.

    ``arm`` is a route name (a :class:`gcp.GCPHead` with ``reduced_dim = dim``: a covariance of rank
    at most 15), ``"gap"`` (the same 1×1 reduction, then global average pooling and a linear
    classifier), any other head method, or ``"hybrid"`` (a GCP head that :func:`training` switches
    half-way)."""

    def __init__(self, arm: str, dim: int = DIM, in_chans: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = _stem(in_chans, WIDTH, stride=2)
        self.head = GCPHead(WIDTH, num_classes, config=arm_config(arm).replace(reduced_dim=dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ZCANet(nn.Module):
    """Two 3×3 conv blocks (8×8 maps, 32 channels), global average pooling, ZCA whitening of the 32
    pooled features in groups of ``32 // groups``, and a linear classifier."""

    def __init__(self, backward: str, groups: int) -> None:
        super().__init__()
        self.features = _stem(1, 32, stride=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  ZCAWhitening(32, groups=groups, backward=backward, compute_dtype=torch.float32),
                                  nn.Linear(32, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def fit(model: nn.Module, data: tuple[Tensor, Tensor, Tensor, Tensor], epochs: int, seed: int, *,
        lr: float = 0.05, batch: int = 64, device: torch.device = torch.device("cpu"),
        before_epoch: Optional[Callable[[int], None]] = None, eval_every: int = 1) -> list[dict[str, float]]:
    """SGD (momentum 0.9, weight decay 1e-4) with timm's cosine schedule to 0 over ``epochs``; test
    top-1 after every ``eval_every``-th epoch and always after the last (the other epochs carry no
    ``top1``). The shuffle of each epoch depends on ``(seed, epoch)`` only."""
    from timm.scheduler import CosineLRScheduler
    from torch.utils.data import DataLoader, TensorDataset

    xtr, ytr, xte, yte = data
    info = DistInfo(device=device)
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    schedule = CosineLRScheduler(opt, t_initial=epochs, lr_min=0.0)
    test = DataLoader(TensorDataset(xte, yte), batch_size=256)
    history = []
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        torch.manual_seed(seed * 1000 + epoch)
        train = DataLoader(TensorDataset(xtr, ytr), batch_size=batch, shuffle=True, drop_last=True)
        stats = train_one_epoch(model, train, opt, info, progress=False)
        row = dict(epoch=epoch, train_loss=stats.loss, seconds=stats.seconds, nonfinite_steps=stats.nonfinite_steps)
        if (epoch + 1) % eval_every == 0 or epoch == epochs - 1:
            row["top1"] = evaluate(model, test, info, progress=False)["top1"]
        schedule.step(epoch + 1)
        history.append(row)
    return history


def head_rank(model: RegimeNet, images: Tensor) -> tuple[int, int]:
    """Largest numerical rank (float64, relative tolerance 1e-10) of the head's covariances on
    ``images``, and their size: the measured fact behind "rank-deficient"."""
    head = model.head
    if not isinstance(head, GCPHead) or not isinstance(head.config.head_method, MatrixMethod):
        raise TypeError("head_rank needs a GCP head that pools a covariance")
    with torch.no_grad():
        feats = head.reduce(model.features(images)).double()
        cov = covariance(feats.flatten(2))
        lam = torch.linalg.eigvalsh(cov)
        rank = (lam > 1e-10 * lam[..., -1:]).sum(-1)
    return int(rank.max()), int(cov.shape[-1])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Every training run uses one intra-op thread, in a worker process or not: its numbers then
    do not depend on ``--workers`` (torch's CPU kernels reduce in a thread-count-dependent order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _in_worker() -> None:
    torch.set_num_threads(1)


def run_jobs(jobs: list[tuple[Callable[..., list[Record]], tuple]], workers: int, tick: Progress) -> list[Record]:
    """Run ``fn(*args)`` for each job, in ``workers`` spawned processes (1: in this one), ticking as
    each ends; the records come back in the order of ``jobs`` whatever order they finish in.

    The runs are tiny networks whose kernels a second thread barely speeds up, so two processes of
    one thread each train nearly twice as fast on two cores as one process of two threads."""
    if workers <= 1 or len(jobs) <= 1:
        out: list[Record] = []
        with one_thread():
            for fn, args in jobs:
                out += fn(*args)
                tick()
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: dict[int, list[Record]] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_in_worker) as pool:
        futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            tick()
    return [r for i in range(len(jobs)) for r in results[i]]


@functools.lru_cache(maxsize=None)
def _task(name: str) -> Task:
    return TASKS[name]()


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return digits_split()


def hybrid_switch(model: RegimeNet, epochs: int) -> Callable[[int], None]:
    """The hybrid protocol's schedule: before epoch ``epochs // 2`` (at least 1) the head switches
    from Newton–Schulz to SVD with the Padé backward, keeping its parameters."""
    half = max(1, epochs // 2)

    def before_epoch(epoch: int) -> None:
        if epoch == half:
            model.head.set_method(HYBRID_THEN.method, HYBRID_THEN.backward)

    return before_epoch


def train_arm(section: str, task: str, arm: str, dim: int, seed: int, epochs: int, device: str,
              eval_every: int) -> list[Record]:
    """One arm, head size and seed on ``task``: its records per epoch (``top1`` where evaluated)."""
    data = _task(task)
    torch.manual_seed(seed)
    model = RegimeNet(arm, dim, data.in_chans, data.num_classes)
    switch = hybrid_switch(model, epochs) if arm == "hybrid" else None
    history = fit(model, data.tensors(), epochs, seed, device=torch.device(device), before_epoch=switch,
                  eval_every=eval_every)
    out: list[Record] = []
    for h in history:
        case = f"d={dim},seed={seed},epoch={h['epoch']}"
        out += [_rec(section, arm, case, k, h[k]) for k in ("top1", "train_loss", "seconds", "nonfinite_steps")
                if k in h]
    return out


def _cost(arm: str, dim: int) -> float:
    """The relative cost of an arm's training step, so that the slowest runs start first and two
    workers finish together (eigendecomposition routes cost most, average pooling least)."""
    cheap = arm in POOLING
    return dim ** (1 if cheap else 3) * (1 if cheap else 2 if arm in ("isqrt", "mpa", "mtp") else 3)


def _regime(section: str, task: Task, dims: Iterable[int], arm: str) -> list[Record]:
    """The measured rank of the covariances the head pools at each ``d``, on the test images."""
    out = []
    for d in dims:
        torch.manual_seed(0)  # the bound is structural (16 positions); measured, it is a fact, not a claim
        rank, size = head_rank(RegimeNet(arm, d, task.in_chans, task.num_classes).eval(), task.x_test[:256])
        case = f"d={d}"
        out += [_rec(section, "all", case, "cov_rank", rank), _rec(section, "all", case, "dim", size),
                _rec(section, "all", case, "positions", POSITIONS)]
    return out


def _train(section: str, task: str, arms: list[str], dims: list[int], epochs: int, seeds: list[int], tick: Progress,
           device: torch.device, workers: int, eval_every: int) -> list[Record]:
    jobs = [(train_arm, (section, task, arm, d, seed, epochs, str(device), eval_every))
            for d in dims for arm in arms for seed in seeds]
    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i][1][2], jobs[i][1][3]))
    done = run_jobs([jobs[i] for i in order], workers, tick)
    by_job: dict[tuple, list[Record]] = {}
    for r in done:  # back to the declared order: d, arm, seed
        by_job.setdefault((r["mode"], r["case"].rsplit(",", 1)[0]), []).append(r)
    out = [r for _, (_, _, arm, d, seed, *_) in jobs for r in by_job[(arm, f"d={d},seed={seed}")]]
    gcp_arms = [a for a in arms if a not in POOLING]
    return out + (_regime(section, _task(task), dims, gcp_arms[0]) if gcp_arms else [])


def training(arms: list[str], epochs: int, seeds: list[int], tick: Progress,
             device: torch.device = torch.device("cpu"), workers: int = 1, dims: Iterable[int] = (DIM,),
             eval_every: int = 1) -> list[Record]:
    """Every arm, head size ``d`` and seed on the noisy digits: train loss per epoch, test top-1 where
    evaluated, seconds, the steps skipped because the gradient was not finite; and the measured rank
    of the covariances at each ``d``."""
    return _train("training", "noisy_digits", arms, list(dims), epochs, seeds, tick, device, workers, eval_every)


def texture(arms: list[str], epochs: int, seeds: list[int], tick: Progress, device: torch.device = torch.device("cpu"),
            workers: int = 1, dim: int = DIM, eval_every: int = 1) -> list[Record]:
    """The texture control: the same network and schedule on classes that differ only in
    cross-channel correlation."""
    return _train("texture", "correlation_textures", arms, [dim], epochs, seeds, tick, device, workers, eval_every)


def train_zca(mode: str, d: int, seed: int, epochs: int, batch: int, device: str) -> list[Record]:
    """One ZCA run: its outcome records."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    history = fit(ZCANet(mode, 32 // d), _digits(), epochs, seed, batch=batch, device=torch.device(device),
                  eval_every=epochs)
    skipped = sum(h["nonfinite_steps"] for h in history)
    case = f"d={d},seed={seed}"
    return [_rec("zca", mode, case, "nonfinite_steps", skipped),
            _rec("zca", mode, case, "success", float(skipped == 0)),
            _rec("zca", mode, case, "final_top1", history[-1]["top1"]),
            _rec("zca", mode, case, "seconds", time.perf_counter() - start)]


def zca(modes: list[str], group_dims: Iterable[int], epochs: int, tick: Progress, batch: int = 16,
        seeds: Iterable[int] = (0,), device: torch.device = torch.device("cpu"), workers: int = 1) -> list[Record]:
    """ZCA whitening in groups of ``d`` of 32 pooled features, trained with each backward and seed.
    With a batch of 16, a group's covariance has rank ``<= 15``, so for ``d >= 16`` its spectrum
    holds a cluster of numerically repeated eigenvalues — the near-degeneracy that, in the paper's
    ResNets, grows with ``d``. A run *fails* when any step has a non-finite gradient (the step is
    skipped and counted)."""
    jobs = [(train_zca, (mode, d, seed, epochs, batch, str(device))) for d in group_dims for mode in modes
            for seed in seeds]
    return run_jobs(jobs, workers, tick)
