"""The mechanisms the training tables rest on: skipped non-finite steps, the fp16 GradScaler path,
gradient clipping and cosine-with-warmup, each checked against what it must do by definition."""

import copy
import math

import pytest
import torch
from torch import nn

import gcp
from gcp.train import DistInfo, make_scheduler, train_one_epoch
from gcp.train.optim import ScheduleSettings

INFO = DistInfo()


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def _batches(n=3, nan_at=None):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        x = torch.randn(4, 3, 2, 2, generator=g)
        if i == nan_at:
            x[0, 0, 0, 0] = float("nan")
        out.append((x, torch.tensor([0, 1, 2, 0])))
    return out


def _sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr)


def test_a_nan_step_is_skipped_counted_and_leaves_the_weights_alone():
    with_nan, clean = _tiny_model(), _tiny_model()
    batches = _batches(3, nan_at=1)
    stats = train_one_epoch(with_nan, batches, _sgd(with_nan), INFO, progress=False)
    assert stats.nonfinite_steps == 1 and stats.images == 12
    # the same training without the poisoned batch gives bit-identical weights
    train_one_epoch(clean, [batches[0], batches[2]], _sgd(clean), INFO, progress=False)
    for a, b in zip(with_nan.parameters(), clean.parameters()):
        assert torch.equal(a, b)
    assert math.isfinite(stats.loss)


class _GCPNet(nn.Module):
    """A per-channel scale (1 at start, so Σ stays I) before the head: a parameter the gradient
    has to reach through the matrix square root."""

    def __init__(self, backward):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.head = gcp.GCPHead(3, 2, reduced_dim=None, method="svd", backward=backward)

    def forward(self, x):
        return self.head(x * self.scale.view(1, 3, 1, 1))


def _identity_covariance_batch():
    """3 channels × 4 positions whose rows are zero-mean, orthogonal ±1 patterns: Σ = I exactly,
    every eigenvalue repeated — where the standard ED gradient divides by zero."""
    rows = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, 1.0]])
    x = rows.view(1, 3, 2, 2).expand(2, 3, 2, 2).clone()
    return [(x, torch.tensor([0, 1]))]


@pytest.mark.parametrize("backward,skips", [("ed", 1), ("exact", 0)])
def test_ed_on_a_degenerate_batch_is_a_counted_skip(backward, skips):
    model = _GCPNet(backward)
    before = copy.deepcopy(model.state_dict())
    stats = train_one_epoch(model, _identity_covariance_batch(), _sgd(model), INFO, progress=False)
    assert stats.nonfinite_steps == skips
    changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed == (skips == 0)


def test_fp16_grad_scaler_path_trains_and_skips_overflow():
    model = _tiny_model()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    stats = train_one_epoch(model, _batches(3), _sgd(model), INFO, amp=torch.float16, scaler=scaler,
                            progress=False)
    assert stats.nonfinite_steps == 0 and math.isfinite(stats.loss)
    # a scale of 2^120 overflows the float16 backward: the step is skipped and the scale backs off
    overflow = torch.amp.GradScaler("cpu", init_scale=2.0**120)
    before = copy.deepcopy(model.state_dict())
    stats = train_one_epoch(model, _batches(1), _sgd(model), INFO, amp=torch.float16, scaler=overflow,
                            progress=False)
    assert stats.nonfinite_steps == 1
    assert overflow.get_scale() == 2.0**119  # backoff factor 0.5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_grad_clip_bounds_the_update():
    """Plain SGD with lr 1: the update is −g scaled to norm min(‖g‖, clip)."""
    clip = 1e-3
    clipped, free = _tiny_model(), _tiny_model()
    w0 = torch.cat([p.detach().flatten().clone() for p in clipped.parameters()])
    batch = _batches(1)
    train_one_epoch(clipped, batch, _sgd(clipped, lr=1.0), INFO, grad_clip=clip, progress=False)
    train_one_epoch(free, batch, _sgd(free, lr=1.0), INFO, progress=False)
    step_clipped = torch.cat([p.detach().flatten() for p in clipped.parameters()]) - w0
    step_free = torch.cat([p.detach().flatten() for p in free.parameters()]) - w0
    assert step_free.norm() > 10 * clip  # the case is real: clipping has to act
    assert step_clipped.norm() == pytest.approx(clip, rel=1e-5)
    assert torch.nn.functional.cosine_similarity(step_clipped, step_free, dim=0) > 1 - 1e-6


def test_cosine_with_warmup_follows_the_formula():
    base, warm_lr, min_lr, epochs, warm = 0.1, 1e-4, 1e-5, 10, 2
    opt = torch.optim.SGD(_tiny_model().parameters(), lr=base)
    sched = make_scheduler(opt, ScheduleSettings(epochs, "cosine", warmup_epochs=warm, warmup_lr=warm_lr,
                                                 min_lr=min_lr))
    for t in range(epochs):
        sched.step(t)
        if t < warm:  # linear warmup from warmup_lr towards the base lr
            expect = warm_lr + t * (base - warm_lr) / warm
        else:  # cosine from the base lr down to min_lr over the run
            expect = min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t / epochs))
        assert opt.param_groups[0]["lr"] == pytest.approx(expect, rel=1e-9), t
