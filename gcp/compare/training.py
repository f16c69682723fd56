"""The two training experiments of ``gcp-compare``: GCP in its rank-deficient regime, and ZCA whitening.

Both train on scikit-learn's ``load_digits`` (1797 real 8×8 handwritten digits shipped inside the
wheel: offline and reproducible), with SGD and a cosine schedule that decays the learning rate to 0,
so that the last epoch is a converged model rather than a snapshot of a noisy trajectory.

**The GCP regime** (:func:`training`). A two-layer CNN maps the 8×8 digit to a 4×4 map (16
positions); the head reduces it to ``d = 32`` channels and pools their covariance. A covariance of
16 centred positions has rank ≤ 15, so 17 of its 32 eigenvalues are zero up to round-off: the head
works where GCP on ImageNet does (d = 256 channels over 196 positions in iSQRT-COV), where the
exact gradient of the square root is large at the null eigenvalues (``1/(√λi + √λj)``) and the
routes differ most. The arms are the routes of :data:`gcp.compare.routes.HEAD_CONFIG`, global
average pooling of the same ``d`` channels (``gap``: the baseline a GCP head must beat), and the
hybrid protocol of Song et al. (ICCV 2021; ``hybrid``: Newton–Schulz for the first half of the
epochs, then SVD with the Padé backward).

**ZCA whitening** (:func:`zca`): the scaled-down SVD-PI experiment of Wang et al. (NeurIPS 2019).
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

Record = dict[str, Any]
Progress = Callable[[], None]

#: the GCP head's size: d channels over POSITIONS positions (rank <= POSITIONS - 1 < d)
DIM, POSITIONS = 32, 16
#: arms next to the routes: the first-order baseline and the hybrid protocol
BASELINES: tuple[str, ...] = ("gap", "hybrid")
#: the other pooling heads the papers compare against (bilinear and compact bilinear pooling)
OTHER_HEADS: tuple[str, ...] = tuple(n for n in POOLING if n not in BASELINES)
HYBRID_START, HYBRID_THEN = HeadConfig("isqrt"), HeadConfig("svd", "pade")


def _rec(section: str, mode: str, case: str, metric: str, value: float) -> Record:
    return dict(section=section, mode=mode, dtype="float32", case=case, metric=metric, value=float(value))


def load_digits_split(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``load_digits`` scaled to [0, 1], split 80/20 (1437 / 360) with a fixed permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(y))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def _stem(stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         nn.Conv2d(16, 32, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(32),
                         nn.ReLU(inplace=True))


class RegimeNet(nn.Module):
    """8×8 digit → two 3×3 conv blocks (the second of stride 2: a 4×4 map of 32 channels) → a head.

    ``arm`` is a route name (a :class:`gcp.GCPHead` with ``reduced_dim = 32``: a rank-≤15
    covariance), ``"gap"`` (the same 1×1 reduction, then global average pooling and a linear
    classifier) or ``"hybrid"`` (a GCP head that :func:`training` switches half-way)."""

    def __init__(self, arm: str) -> None:
        super().__init__()
        self.features = _stem(stride=2)
        config = METHOD_ARMS[arm] if arm in METHOD_ARMS else HYBRID_START if arm == "hybrid" else HEAD_CONFIG[arm]
        self.head = GCPHead(32, 10, config=config.replace(reduced_dim=DIM))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ZCANet(nn.Module):
    """Two 3×3 conv blocks (8×8 maps, 32 channels), global average pooling, ZCA whitening of the 32
    pooled features in groups of ``32 // groups``, and a linear classifier."""

    def __init__(self, backward: str, groups: int) -> None:
        super().__init__()
        self.features = _stem(stride=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  ZCAWhitening(32, groups=groups, backward=backward, compute_dtype=torch.float32),
                                  nn.Linear(32, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def fit(model: nn.Module, data: tuple[Tensor, Tensor, Tensor, Tensor], epochs: int, seed: int, *,
        lr: float = 0.05, batch: int = 64, device: torch.device = torch.device("cpu"),
        before_epoch: Optional[Callable[[int], None]] = None) -> list[dict[str, float]]:
    """SGD (momentum 0.9, weight decay 1e-4) with timm's cosine schedule to 0 over ``epochs``;
    test top-1 after every epoch. The shuffle of each epoch depends on ``(seed, epoch)`` only."""
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
        metrics = evaluate(model, test, info, progress=False)
        schedule.step(epoch + 1)
        history.append(dict(epoch=epoch, train_loss=stats.loss, top1=metrics["top1"], seconds=stats.seconds,
                            nonfinite_steps=stats.nonfinite_steps))
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


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return load_digits_split()


def hybrid_switch(model: RegimeNet, epochs: int) -> Callable[[int], None]:
    """The hybrid protocol's schedule: before epoch ``epochs // 2`` (at least 1) the head switches
    from Newton–Schulz to SVD with the Padé backward, keeping its parameters."""
    half = max(1, epochs // 2)

    def before_epoch(epoch: int) -> None:
        if epoch == half:
            model.head.set_method(HYBRID_THEN.method, HYBRID_THEN.backward)

    return before_epoch


def train_arm(arm: str, seed: int, epochs: int, device: str) -> list[Record]:
    """One arm and seed of the GCP regime: its records per epoch."""
    torch.manual_seed(seed)
    model = RegimeNet(arm)
    switch = hybrid_switch(model, epochs) if arm == "hybrid" else None
    history = fit(model, _digits(), epochs, seed, device=torch.device(device), before_epoch=switch)
    out: list[Record] = []
    for h in history:
        case = f"seed={seed},epoch={h['epoch']}"
        out += [_rec("training", arm, case, k, h[k]) for k in ("top1", "train_loss", "seconds", "nonfinite_steps")]
    return out


def training(arms: list[str], epochs: int, seeds: list[int], tick: Progress,
             device: torch.device = torch.device("cpu"), workers: int = 1) -> list[Record]:
    """Every arm and seed in the GCP regime: test top-1 and train loss per epoch, seconds, and the
    steps skipped because the gradient was not finite; plus the measured rank of the covariances."""
    out = run_jobs([(train_arm, (arm, seed, epochs, str(device))) for arm in arms for seed in seeds], workers, tick)
    gcp_arms = [a for a in arms if a not in POOLING]
    if gcp_arms:  # the bound is structural (16 positions); measured on the test images, it is a fact, not a claim
        torch.manual_seed(0)
        rank, d = head_rank(RegimeNet(gcp_arms[0]).eval(), _digits()[2][:256])
        out += [_rec("training", "all", "regime", "cov_rank", rank), _rec("training", "all", "regime", "dim", d),
                _rec("training", "all", "regime", "positions", POSITIONS)]
    return out


def train_zca(mode: str, d: int, seed: int, epochs: int, batch: int, device: str) -> list[Record]:
    """One ZCA run: its outcome records."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    history = fit(ZCANet(mode, 32 // d), _digits(), epochs, seed, batch=batch, device=torch.device(device))
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
