"""timm's training features in gcp-train/gcp-finetune: each honoured, refused where it does not
apply, and kept on resume (--opt, --layer-decay, --grad-accum-steps, --smoothing, --mixup,
--cutmix, --aa, --drop-path, --grad-checkpointing)."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.data.auto_augment import RandAugment
from timm.layers import DropPath
from timm.scheduler import CosineLRScheduler, StepLRScheduler
from torch import nn

import gcp.train as gcptrain
from gcp.train import DistInfo, train_one_epoch
from gcp.train.data import transforms_for
from gcp.train.model import create_run_model
from gcp.train.optim import make_optimizer
from gcp.train.record import RunRecord, resolve
from gcp.train.regularisation import training_loss
from tests.train._runs import train as _train

DATA = dict(dataset="imagefolder", data_dir="/data/x")
INFO = DistInfo()


def _record(**given):
    return resolve({**DATA, "model": "gcp_resnet18", **given})


# ----------------------------------------------------------------------------- refused where they mean nothing
@pytest.mark.parametrize("given, pattern", [
    (dict(opt="adamw", momentum=0.8), "--momentum applies with an --opt that has momentum"),
    (dict(opt="sgdd"), "--opt must be an optimizer name timm knows"),
    (dict(layer_decay=1.5), "--layer-decay must be in \\(0, 1\\]"),
    (dict(layer_decay=0), "--layer-decay must be in \\(0, 1\\]"),
    (dict(grad_accum_steps=0), "--grad-accum-steps must be an integer >= 1"),
    (dict(smoothing=1.0), "--smoothing must be in \\[0, 1\\)"),
    (dict(mixup=-0.1), "--mixup must be a number >= 0"),
    (dict(mixup=0.2, batch_size=5), "--batch-size must be even"),
    (dict(cutmix=1.0, batch_size=3), "--batch-size must be even"),
    (dict(aa="autoaug-nonsense"), "--aa must be a RandAugment policy"),
    (dict(aa="rand-mfoo"), "--aa must be a RandAugment policy"),
    (dict(aa="rand-q"), "--aa must be a RandAugment policy"),  # timm itself would skip the section silently
    (dict(aa="rand-m9-mstd0.5-inc2"), "--aa must be a RandAugment policy"),
    (dict(drop_path=1.0), "--drop-path must be in \\[0, 1\\)"),
    (dict(torchcompile="fastest"), "--torchcompile must be a torch.compile backend"),
    (dict(torchcompile_mode="max-autotune"), "--torchcompile-mode applies with --torchcompile only"),
])
def test_bad_or_inapplicable_values_are_refused_by_flag(given, pattern):
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        _record(**given)


def test_mixup_needs_an_even_batch_on_every_process():
    record = _record(mixup=0.2, batch_size=6, num_classes=3)
    training_loss(record, world_size=1)
    with pytest.raises(gcptrain.ConfigError, match="--batch-size 6 over 2 processes gives 3"):
        training_loss(record, world_size=2)


def test_a_record_written_before_these_fields_still_loads_with_their_defaults():
    plain = _record().to_dict()
    for key in ("opt", "layer_decay", "grad_accum_steps", "smoothing", "mixup", "cutmix", "aa", "drop_path",
                "grad_checkpointing"):
        plain.pop(key)
    old = RunRecord.from_dict(plain)
    assert old == _record()
    assert (old.opt, old.grad_accum_steps, old.mixup, old.data.aa) == ("momentum", 1, 0.0, None)


# ----------------------------------------------------------------------------- honoured
def test_opt_builds_timms_optimizer_with_the_three_groups():
    record = _record(opt="adamw", lr=0.002, weight_decay=0.05, classifier_lr_mult=5.0, num_classes=3, reduced_dim=8)
    model = create_run_model(record)
    opt = make_optimizer(model, record.optimizer_settings())
    assert isinstance(opt, torch.optim.AdamW)
    scales = {g["name"]: g["lr_scale"] for g in opt.param_groups}
    assert scales == {"features": 1.0, "reduction": 1.0, "classifier": 5.0}
    assert all(g["lr"] == 0.002 and g["weight_decay"] == 0.05 for g in opt.param_groups)
    # the papers' default stays non-Nesterov SGD with momentum
    sgd = make_optimizer(model, _record(num_classes=3, reduced_dim=8).optimizer_settings())
    assert isinstance(sgd, torch.optim.SGD) and not sgd.param_groups[0]["nesterov"]
    assert sgd.param_groups[0]["momentum"] == 0.9


def test_layer_decay_scales_depth_and_keeps_the_head_multipliers():
    decay, mult = 0.5, 4.0
    record = _record(layer_decay=decay, classifier_lr_mult=mult, reduction_lr_mult=2.0, num_classes=3,
                     reduced_dim=8, weight_decay=1e-4)
    model = create_run_model(record)
    opt = make_optimizer(model, record.optimizer_settings())
    scale_of = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(scale_of) == len(named)  # every parameter in exactly one group
    stem = scale_of[id(named["backbone.conv1.weight"])]
    deep = scale_of[id(named["backbone.layer4.1.conv2.weight"])]
    fc = scale_of[id(named["head.fc.weight"])]
    reduce = [scale_of[id(p)] for n, p in named.items() if n.startswith("head.reduce.")]
    k = round(torch.log(torch.tensor(stem)).item() / torch.log(torch.tensor(decay)).item())
    assert k >= 2 and stem == pytest.approx(decay ** k)  # the stem decays by whole layers
    assert stem < deep <= 1.0
    assert fc == pytest.approx(mult * 1.0)  # the classifier is the last layer, times its multiplier
    assert all(r == pytest.approx(2.0) for r in reduce)
    # timm's rule under layer decay: 1-d parameters (norms, biases) get no weight decay
    assert wd_of[id(named["backbone.bn1.weight"])] == 0.0 and wd_of[id(named["backbone.conv1.weight"])] == 1e-4


def _linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def test_grad_accumulation_equals_one_step_on_the_whole_batch():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 3, 2, 2, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    whole, parts = _linear(), _linear()
    train_one_epoch(whole, [(x[:4], y[:4]), (x[4:], y[4:])], torch.optim.SGD(whole.parameters(), lr=0.5), INFO,
                    progress=False, accum_steps=1)
    # two micro-batches of 2 per step: the mean of their losses is the loss of the 4 together
    stats = train_one_epoch(parts, [(x[0:2], y[0:2]), (x[2:4], y[2:4]), (x[4:6], y[4:6]), (x[6:8], y[6:8])],
                            torch.optim.SGD(parts.parameters(), lr=0.5), INFO, progress=False, accum_steps=2)
    for a, b in zip(whole.parameters(), parts.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert stats.images == 8 and stats.nonfinite_steps == 0


def test_a_last_partial_accumulation_still_steps():
    model = _linear()
    before = copy.deepcopy(model)
    batches = [(torch.randn(2, 3, 2, 2), torch.tensor([0, 1]))] * 3
    train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.5), INFO, progress=False,
                    accum_steps=2)
    # step 1 from batches 0-1, step 2 from batch 2 alone: not the weights after the first step only
    one = copy.deepcopy(before)
    train_one_epoch(one, batches[:2], torch.optim.SGD(one.parameters(), lr=0.5), INFO, progress=False,
                    accum_steps=2)
    assert not torch.equal(model[1].weight, one[1].weight)


def test_smoothing_and_mixup_choose_timms_losses_and_the_loop_mixes():
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    crit, mixer = training_loss(_record(smoothing=0.1, num_classes=3))
    assert isinstance(crit, LabelSmoothingCrossEntropy) and crit.smoothing == 0.1 and mixer is None
    crit, mixer = training_loss(_record(mixup=0.4, cutmix=1.0, smoothing=0.1, num_classes=3))
    assert isinstance(crit, SoftTargetCrossEntropy) and isinstance(mixer, Mixup)
    assert (mixer.mixup_alpha, mixer.cutmix_alpha, mixer.label_smoothing, mixer.num_classes) == (0.4, 1.0, 0.1, 3)
    calls = []

    def spy(x, y):
        calls.append(x.shape[0])
        return mixer(x, y)

    model = _linear()
    train_one_epoch(model, [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))] * 2,
                    torch.optim.SGD(model.parameters(), lr=0.1), INFO, progress=False, criterion=crit, mixup=spy)
    assert calls == [4, 4]


@pytest.mark.parametrize("resize", [(), (40,)])
def test_aa_puts_randaugment_in_the_training_transform_only(resize):
    spec = _record(aa="rand-m9-mstd0.5", img_size=32, resize=resize).data
    train, test = transforms_for(spec)
    assert any(isinstance(t, RandAugment) for t in train.transforms)
    assert not any(isinstance(t, RandAugment) for t in test.transforms)
    plain, _ = transforms_for(_record(img_size=32, resize=resize).data)
    assert not any(isinstance(t, RandAugment) for t in plain.transforms)


def test_drop_path_and_grad_checkpointing_reach_the_backbone():
    model = create_run_model(_record(drop_path=0.2, grad_checkpointing=True, num_classes=3, reduced_dim=8))
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.2)
    assert model.backbone.grad_checkpointing
    plain = create_run_model(_record(num_classes=3, reduced_dim=8))
    assert not any(isinstance(m, DropPath) for m in plain.modules())


def test_drop_path_on_a_backbone_without_it_is_refused_by_name():
    with pytest.raises(gcptrain.ConfigError, match="drop_path_rate|--drop-path"):
        create_run_model(_record(model="gcp_vgg16", drop_path=0.1, num_classes=3, img_size=64))


# ----------------------------------------------------------------------------- end to end, and resume
FEATURES = ["--opt", "adamw", "--layer-decay", "0.8", "--smoothing", "0.1", "--mixup", "0.2", "--cutmix", "0.5",
            "--aa", "rand-m5-mstd0.5", "--drop-path", "0.1", "--grad-accum-steps", "2", "--grad-checkpointing"]


@pytest.mark.slow
def test_every_feature_is_recorded_and_resumes_bit_identically(imagenet, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(imagenet, straight, "--epochs", "2", *FEATURES) == 0
    assert _train(imagenet, split, "--epochs", "1", *FEATURES) == 0
    ckpt = torch.load(split / "last.pth", weights_only=True)
    rec = ckpt["record"]
    assert (rec["opt"], rec["layer_decay"], rec["smoothing"], rec["mixup"], rec["cutmix"], rec["aa"],
            rec["drop_path"], rec["grad_accum_steps"], rec["grad_checkpointing"]) == (
        "adamw", 0.8, 0.1, 0.2, 0.5, "rand-m5-mstd0.5", 0.1, 2, True)
    assert "betas" in ckpt["optimizer"]["param_groups"][0]  # AdamW's state, not SGD's
    # a resume keeps them: a changed optimizer is refused, the same flags continue bit-identically
    with pytest.raises(gcptrain.ConfigError, match="--opt: 'adamw' in the checkpoint, 'lamb' now"):
        _train(imagenet, split, "--epochs", "2", "--resume", str(split / "last.pth"), "--opt", "lamb")
    assert _train(imagenet, split, "--epochs", "2", "--resume", str(split / "last.pth")) == 0
    a = torch.load(straight / "last.pth", weights_only=True)["model"]
    b = torch.load(split / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_torchcompile_compiles_the_training_model_and_checkpoints_keep_their_names(imagenet, tmp_path, monkeypatch):
    calls = []
    real = torch.compile

    def spy(model, **kwargs):
        calls.append(kwargs)
        return real(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    out = tmp_path / "c"
    assert _train(imagenet, out, "--epochs", "1", "--torchcompile", "eager", "--max-steps-per-epoch", "1") == 0
    assert calls == [dict(backend="eager", mode=None)]
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["record"]["torchcompile"] == "eager"
    assert not [k for k in ckpt["model"] if "_orig_mod" in k]


def test_decay_milestones_follow_timms_convention():
    """``--decay-milestones 2 4`` means what it means to timm's train.py: timm's own scheduler,
    stepped the way timm steps it, gives the lr of every epoch."""
    from timm.scheduler import MultiStepLRScheduler

    import gcp.train.imagenet as train_imagenet
    from gcp.train import cli
    from gcp.train.optim import make_scheduler

    args = train_imagenet.build_parser().parse_args(["--data-dir", "/d", "--decay-milestones", "2", "4",
                                                     "--epochs", "6", "--lr", "0.1"])
    record = train_imagenet.resolve_record(args, None, 0)
    assert record.decay_milestones == (1, 3)  # the record's meaning: 0-based epoch indices
    assert cli.record_flags(record, args, train_imagenet.build_parser())["decay_milestones"] == [2, 4]

    ours = _lrs_per_epoch(lambda opt: make_scheduler(opt, record.schedule_settings()))
    timms = _lrs_per_epoch(lambda opt: MultiStepLRScheduler(opt, decay_t=[2, 4], decay_rate=0.1))
    assert ours == pytest.approx(timms) and ours == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001, 0.001])
    with pytest.raises(gcptrain.ConfigError, match="counted from 1"):
        train_imagenet.resolve_record(train_imagenet.build_parser().parse_args(
            ["--data-dir", "/d", "--decay-milestones", "0"]), None, 0)


def _lrs_per_epoch(make, epochs=6):
    """The lr of each epoch, the scheduler stepped as timm's train.py and gcp's engine step it."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make(opt)
    out = []
    for epoch in range(epochs):
        scheduler.step(epoch)
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("sched, extra, make", [
    ("step", ["--decay-epochs", "2", "--decay-rate", "0.5"], lambda opt: StepLRScheduler(opt, 2, 0.5)),
    ("cosine", ["--min-lr", "0.001"], lambda opt: CosineLRScheduler(opt, 6, lr_min=0.001)),
])
def test_sched_names_mean_what_timm_means(sched, extra, make):
    """``--sched step`` is timm's (decay every --decay-epochs), not the milestones one
    (``multistep``); each schedule's lr per epoch equals timm's own scheduler's."""
    import gcp.train.imagenet as train_imagenet
    from gcp.train.optim import make_scheduler

    record = train_imagenet.resolve_record(train_imagenet.build_parser().parse_args(
        ["--data-dir", "/d", "--sched", sched, "--epochs", "6", "--lr", "0.1", *extra]), None, 0)

    assert _lrs_per_epoch(lambda opt: make_scheduler(opt, record.schedule_settings())) == pytest.approx(
        _lrs_per_epoch(make))


def test_a_record_written_with_the_old_step_name_reads_as_multistep():
    plain = _record(decay_milestones=(1,)).to_dict()
    plain.pop("decay_epochs")
    plain["sched"] = "step"  # gcp 0.2's name of the milestones schedule
    old = RunRecord.from_dict(plain)
    assert (old.sched, old.decay_milestones) == ("multistep", (1,))
