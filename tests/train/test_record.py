"""The run record, resolved in one place: precedence, the head spec's rules, what a resume and an
evaluation may change, and the round trip through a checkpoint (unit tests, no training)."""

import pytest

import gcp.train as gcptrain
from gcp.train.config import RECIPES
from gcp.train.record import FLAT_KEYS, Normalisation, RunRecord, resolve, with_class_count

DATA = dict(dataset="imagefolder", data_dir="/data/x")


def _record(**given):
    return resolve({**DATA, "model": "gcp_resnet18", **given})


def test_flag_over_recipe_over_defaults():
    r = resolve({**DATA, "lr": 0.5}, recipe=RECIPES["isqrt-cov-r50"])
    assert (r.lr, r.batch_size, r.epochs, r.model) == (0.5, 160, 65, "gcp_resnet50")
    assert r.momentum == 0.9  # the default where neither says
    assert r.head.norm == Normalisation("isqrt", iters=5)


def test_every_recipe_uses_only_record_keys_and_resolves():
    for name, recipe in RECIPES.items():
        assert set(recipe) <= FLAT_KEYS, name
        resolve({**DATA, "model": "gcp_resnet18"}, recipe=recipe)


def test_unknown_flag_or_recipe_key_is_an_error_not_filtered():
    with pytest.raises(gcptrain.ConfigError, match="unknown flag.*learning_rate"):
        resolve({**DATA, "learning_rate": 0.1})
    with pytest.raises(gcptrain.ConfigError, match="unknown recipe setting.*lr_steps"):
        resolve(DATA, recipe={"lr_steps": (30,)})


@pytest.mark.parametrize("given, pattern", [
    (dict(backward="pade"), r"--backward pade \(with --method isqrt\): method 'isqrt' takes no backward mode.*"
                            "applies to methods svd, logm, topn, seb"),
    (dict(method="mpa", alpha=0.4), r"--alpha 0.4 \(with --method mpa\): option 'alpha' applies to neither method "
                                    "'mpa'.*belongs to method 'svd'"),
    (dict(method="svd", iters=3), r"--iters 3 \(with --method svd\):.*iters belongs to method 'isqrt'"),
    (dict(method="isqrt", head_options=dict(degree=9)), "--head-opt .*'degree' applies to neither method 'isqrt'"),
    (dict(method="svd", backward="taylor", head_options=dict(degree=-1)), "degree"),
    (dict(method="svd", backward="pade", head_options=dict(iters=3)), "iters is a head setting"),
    (dict(method="svd", backward="pade", head_options=dict(order=3)), "'order' applies to neither"),
    (dict(method="gap", backward="exact"), "'gap' takes no backward mode"),
    (dict(method="cbp", head_options=dict(proj_dim=0)), "'proj_dim' must be an integer >= 1"),
])
def test_the_head_spec_refuses_options_of_another_method(given, pattern):
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        _record(**given)


def test_the_default_method_is_the_models_own():
    assert _record().head.norm.method == "isqrt"  # gcp.zoo's ModelSpec default, written once


def test_a_method_given_over_a_recipe_takes_its_own_settings_only():
    """The recipe's iters=5 belongs to its isqrt head; --method svd must not inherit it."""
    r = resolve({**DATA, "method": "svd", "backward": "pade"}, recipe=RECIPES["isqrt-cov-r50"])
    assert r.head.norm == Normalisation("svd", backward="pade")


def test_round_trip_through_plain_values():
    r = _record(method="svd", backward="pade", head_options=dict(degree=(6, 6)), decay_milestones=(1, 3),
                epochs=5, hybrid_switch_epoch=2, hybrid_method="svd", hybrid_backward="taylor",
                hybrid_options=dict(degree=9), resize=(256,), img_size=224)
    plain = r.to_dict()
    assert all(not isinstance(v, tuple) for v in plain.values())  # JSON/pickle friendly
    assert RunRecord.from_dict(plain) == r
    assert r.hybrid.norm.options == (("degree", 9),)


def test_resume_compares_the_whole_record_with_what_may_change_listed():
    stored = _record(epochs=3, decay_milestones=(1,))
    # repeating the run's own values is not a change; workers, device and output may change
    same = resolve({**DATA, "model": "gcp_resnet18", "epochs": 3, "workers": 0, "device": "cpu", "output": "o2"},
                   stored=stored, start_epoch=1)
    assert (same.workers, same.output) == (0, "o2")
    assert resolve({**DATA, "epochs": 5}, stored=stored, start_epoch=2).epochs == 5  # step schedule
    # (the data folder may be spelt otherwise or moved: its fingerprint decides, test_run_safety.py)
    for flag, value in (("img_size", 320), ("model", "gcp_resnet34"), ("lr", 0.3),
                        ("method", "svd"), ("seed", 3), ("crop_pct", 0.9)):
        with pytest.raises(gcptrain.ConfigError, match=f"--{flag.replace('_', '-')}: .* in the checkpoint"):
            resolve({**DATA, flag: value}, stored=stored, start_epoch=1)
    with pytest.raises(gcptrain.ConfigError, match="already run 2 epochs"):
        resolve({**DATA, "epochs": 1}, stored=stored, start_epoch=2)
    cosine = _record(epochs=3, sched="cosine")
    with pytest.raises(gcptrain.ConfigError, match="cosine schedule spans all epochs"):
        resolve({**DATA, "epochs": 4}, stored=cosine, start_epoch=1)


def test_an_evaluation_takes_model_head_and_data_from_the_checkpoint():
    stored = _record(method="svd", backward="pade", last_stride=2, img_size=160)
    r = resolve({**DATA, "batch_size": 8}, stored=stored, evaluation=True)
    assert (r.head.norm.method, r.head.last_stride, r.data.img_size, r.batch_size) == ("svd", 2, 160, 8)
    with pytest.raises(gcptrain.ConfigError, match="evaluated checkpoint keeps its model, head and data.*img-size"):
        resolve({**DATA, "img_size": 224}, stored=stored, evaluation=True)


def test_class_names_are_recorded_and_checked():
    r = with_class_count(_record(), ["a", "b", "c"], from_checkpoint=False)
    assert (r.num_classes, r.class_names) == (3, ("a", "b", "c"))
    with pytest.raises(gcptrain.ConfigError, match="other classes.*label 1: 'b' in the checkpoint, 'x' here"):
        with_class_count(r, ["a", "x", "c"], from_checkpoint=True)
    with pytest.raises(gcptrain.ConfigError, match="3 classes in the checkpoint, 4 here"):
        with_class_count(r, ["a", "b", "c", "d"], from_checkpoint=True)
    with pytest.raises(gcptrain.ConfigError, match="--num-classes 2 is smaller than the 3 classes"):
        with_class_count(_record(num_classes=2), ["a", "b", "c"], from_checkpoint=False)


@pytest.mark.parametrize("given, flag", [(dict(img_size=16), "img-size"), (dict(crop_pct=1.5), "crop-pct"),
                                         (dict(epochs=True), "epochs"),
                                         (dict(epochs=5, hybrid_switch_epoch=9), "hybrid-switch-epoch")])
def test_bad_values_name_the_flag(given, flag):
    with pytest.raises(gcptrain.ConfigError, match=flag):
        _record(**given)


def test_a_hybrid_switch_to_another_output_size_is_refused_before_the_run():
    with pytest.raises(gcptrain.ConfigError, match="hybrid switch keeps the classifier.*36 features.*gives 64"):
        _record(method="isqrt", reduced_dim=8, hybrid_switch_epoch=1, hybrid_method="bcnn", epochs=2)
    assert _record(method="isqrt", reduced_dim=8, hybrid_switch_epoch=1, hybrid_method="logm", epochs=2).hybrid


@pytest.mark.parametrize("given, pattern", [
    (dict(sched="cosine", decay_milestones=(2,)), "--decay-milestones applies with --sched multistep only"),
    (dict(sched="step", decay_milestones=(2,)), "--decay-milestones applies with --sched multistep only"),
    (dict(sched="multistep", decay_epochs=30), "--decay-epochs applies with --sched step only"),
    (dict(sched="cosine", decay_rate=0.5), "--decay-rate applies with --sched multistep or step only"),
    (dict(sched="multistep", min_lr=0.05), "--min-lr applies with --sched cosine only"),
    (dict(warmup_lr=0.01), "--warmup-lr applies with --warmup-epochs > 0 only"),
    (dict(model_ema_decay=0.99), "--model-ema-decay applies with --model-ema only"),
    (dict(model="gcp_vit_tiny_patch16_224", last_stride=2), "--last-stride applies with a curated GCP ResNet"),
])
def test_a_flag_that_applies_to_nothing_in_the_run_is_refused(given, pattern):
    with pytest.raises(gcptrain.ConfigError, match=pattern):
        _record(**given)


def test_a_flag_is_honoured_where_it_applies_and_a_recipe_value_is_inert():
    assert _record(sched="cosine", min_lr=0.001, epochs=4).min_lr == 0.001
    assert _record(warmup_epochs=1, warmup_lr=0.01, epochs=3).warmup_lr == 0.01
    assert _record(model_ema=True, model_ema_decay=0.99).model_ema_decay == 0.99
    # the recipe's milestones are not the user's flags: a cosine run from that recipe is not refused
    r = resolve({**DATA, "sched": "cosine"}, recipe=RECIPES["isqrt-cov-r50"])
    assert r.sched == "cosine"


def test_declarations_give_the_resume_and_evaluation_rules():
    from gcp.train import fields

    assert fields.RESUME_MUTABLE == {"epochs", "workers", "device", "output", "data_dir", "grad_checkpointing", "torchcompile", "torchcompile_mode",
                                      "checkpoint_hist", "export_best"}
    assert {"model", "method", "reduced_dim", "data_fingerprint", "img_size"} <= fields.EVALUATION_FIXED
    assert "lr" not in fields.EVALUATION_FIXED and FLAT_KEYS == fields.FLAT_KEYS
