"""What timm's train.py and validate.py call, through timm's public API: save_for_hf, local-dir:,
create_model(pretrained_cfg_overlay=...) with train.py's own checkpoint format."""

import argparse
import json

import pytest
import timm
import torch

import gcp
import gcp.zoo

OPTS = dict(num_classes=5, reduced_dim=8, method="svd", backward="taylor", degree=9)


def _model():
    torch.manual_seed(0)
    return timm.create_model("gcp_resnet18", **OPTS).eval()


def _same(a, b):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(x), b.eval()(x))


def test_save_for_hf_then_local_dir_rebuilds_the_same_model(tmp_path):
    model = _model()
    timm.models.save_for_hf(model, str(tmp_path / "hf"), safe_serialization=True)
    again = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True)
    assert (again.head.method, again.head.backward, again.head.config.backward_kwargs()) == ("svd", "taylor", {"degree": 9})
    assert _same(model, again)


def test_a_zoo_folder_is_in_timms_layout(tmp_path):
    model = _model()
    folder = gcp.zoo.save_pretrained(model, str(tmp_path / "zoo"))
    config = json.load(open(tmp_path / "zoo" / "config.json"))
    assert config["architecture"] == "gcp_resnet18" and config["model_args"]["head"]["backward"] == "taylor"
    assert _same(model, timm.create_model(f"local-dir:{folder}", pretrained=True))
    assert _same(model, gcp.zoo.load_pretrained(folder))


def test_fine_tuning_from_a_timm_train_py_checkpoint(tmp_path):
    """train.py saves {'state_dict', 'args': argparse.Namespace, ...}; timm reads it with
    weights_only=True, and so does the zoo (the Namespace allowed, nothing else unpickled)."""
    model = _model()
    path = tmp_path / "last.pth.tar"
    torch.save({"epoch": 3, "arch": "gcp_resnet18", "state_dict": model.state_dict(),
                "args": argparse.Namespace(lr=0.1, model="gcp_resnet18"), "version": 2}, path)
    loaded = timm.create_model("gcp_resnet18", **OPTS, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert _same(model, loaded)
    fresh_head = timm.create_model("gcp_resnet18", **dict(OPTS, num_classes=3), pretrained=True,
                                   pretrained_cfg_overlay=dict(file=str(path)))
    assert fresh_head.num_classes == 3  # another class count: a fresh classifier, as timm does
    timm.models.load_checkpoint(loaded, str(path))  # validate.py's --checkpoint path


def test_a_model_built_by_hand_is_refused_by_save_pretrained(tmp_path):
    backbone = timm.create_model("resnet18", num_classes=0, global_pool="")
    model = gcp.zoo.GCPNet(backbone, gcp.GCPHead(512, 3, reduced_dim=8))
    with pytest.raises(gcp.zoo.CheckpointError, match="built by hand .*save_weights"):
        gcp.zoo.save_pretrained(model, str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


def test_a_switched_head_is_saved_as_it_is_now(tmp_path):
    """set_method after create_model: the saved folder rebuilds the head the model has, through
    the zoo's writer and through timm's save_for_hf (which reads timm's _model_args record)."""
    torch.manual_seed(0)
    model = timm.create_model("gcp_test_resnet", **OPTS).eval()
    model.set_method("isqrt", iters=3)  # a new method resets the mode options (degree=9 goes)
    folder = gcp.zoo.save_pretrained(model, str(tmp_path / "zoo"))
    for again in (gcp.zoo.load_pretrained(folder), timm.create_model(f"local-dir:{folder}", pretrained=True)):
        assert again.head.config == model.head.config == gcp.HeadConfig("isqrt", method_options={"iters": 3}, reduced_dim=8)
        assert _same(model, again)
    model.head.set_method("svd", "pade")  # on the head itself, not through the model
    timm.models.save_for_hf(model, str(tmp_path / "hf"))  # timm's default: a pickled pytorch_model.bin
    assert (tmp_path / "hf" / "pytorch_model.bin").exists() and not (tmp_path / "hf" / "model.safetensors").exists()
    for again in (timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True),
                  gcp.zoo.load_pretrained(str(tmp_path / "hf"))):
        assert again.head.config == model.head.config and (again.head.method, again.head.backward) == ("svd", "pade")
        assert _same(model, again)
    # a head removed and brought back is the head the model had, not the one it was built with
    model.reset_classifier(0, "")
    model.reset_classifier(5, "gcp")
    assert (model.head.method, model.head.backward, model.head.config.method_options) == ("svd", "pade", ())


def test_a_checkpoint_of_other_head_options_is_refused_by_name(tmp_path):
    """timm's load_checkpoint (validate.py --checkpoint) and create_model(checkpoint_path=...)
    (onnx_export.py --checkpoint) call the model's load_state_dict: a checkpoint trained with
    another reduced_dim is refused before anything is copied, naming the option, with an error
    that is also the RuntimeError torch documents."""
    path = tmp_path / "last.pth.tar"
    torch.save({"epoch": 1, "state_dict": _model().state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    other = timm.create_model("gcp_resnet18", num_classes=5, reduced_dim=16)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(gcp.zoo.StateDictMismatchError, match="reduces to 8 channels .* reduced_dim=8") as exc:
        timm.models.load_checkpoint(other, str(path))
    assert isinstance(exc.value, RuntimeError) and isinstance(exc.value, gcp.GCPError)
    assert "head.reduce.conv.weight: checkpoint (8, 512, 1, 1) vs model (16, 512, 1, 1)" in str(exc.value)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(gcp.zoo.StateDictMismatchError, match="reduced_dim=8"):
        timm.models.load_checkpoint(other, str(path), strict=False)  # torch refuses shapes either way
    with pytest.raises(RuntimeError, match="reduced_dim=8"):
        timm.create_model("gcp_resnet18", num_classes=5, checkpoint_path=str(path))
    # strict=False allows what torch allows: a missing key
    state = _model().state_dict()
    state.pop("head.fc.bias")
    missing = timm.create_model("gcp_resnet18", **OPTS).load_state_dict(state, strict=False).missing_keys
    assert missing == ["head.fc.bias"]
    with pytest.raises(gcp.zoo.StateDictMismatchError, match=r"missing keys: head\.fc\.bias"):
        timm.create_model("gcp_resnet18", **OPTS).load_state_dict(state)


def test_a_so_vit_checkpoint_in_a_plain_head_is_named():
    sovit = timm.create_model("gcp_test_vit", num_classes=3, reduced_dim=8, sovit=True)
    plain = timm.create_model("gcp_test_vit", num_classes=3, reduced_dim=8)
    width = sovit.num_features
    with pytest.raises(gcp.zoo.StateDictMismatchError,
                       match=rf"takes {36 + width} features \(a So-ViT head \(sovit=True\)\), the model's 36 "
                             r"\(a plain GCP head\)"):
        plain.load_state_dict(sovit.state_dict())


def _train_step(task, optimizer, generator):
    x = torch.randn(4, 3, 64, 64, generator=generator)
    y = torch.randint(0, 5, (4,), generator=generator)
    loss = task.criterion(task.get_trainable_module()(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    task.update_ema()


def test_train_py_saves_and_resumes_a_generic_gcp_model_with_ema(tmp_path):
    """What train.py does around --resume, through timm's public API: a ClassificationTask with
    an EMA copy, timm's CheckpointSaver (its args entry an argparse.Namespace), then
    resume_task_checkpoint and load_task_ema_checkpoint into a fresh model and optimizer; and the
    older timm.models.resume_checkpoint. The resumed run continues at the next epoch with the same
    weights, EMA weights and optimizer state."""
    from timm.optim import create_optimizer_v2
    from timm.task import ClassificationTask, load_task_ema_checkpoint, resume_task_checkpoint
    from timm.utils import CheckpointSaver

    def make():
        torch.manual_seed(0)
        model = timm.create_model("gcp_test_vit", num_classes=5, reduced_dim=8, sovit=True, method="svd",
                                  backward="pade")
        task = ClassificationTask(model, verbose=False)
        task.setup_ema(decay=0.5)
        return model, task, create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)

    model, task, optimizer = make()
    saver = CheckpointSaver(model=model, optimizer=optimizer, args=argparse.Namespace(model="gcp_test_vit", lr=1e-3),
                            checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path), task=task, max_history=2)
    generator = torch.Generator().manual_seed(3)
    for epoch in range(2):
        _train_step(task, optimizer, generator)
        saver.save_checkpoint(epoch, metric=float(epoch))
    last = str(tmp_path / "last.pth.tar")

    again, again_task, again_optimizer = make()
    assert not torch.equal(again.head.fc.weight, model.head.fc.weight)  # a fresh model differs
    assert resume_task_checkpoint(again_task, last, optimizer=again_optimizer) == 2
    load_task_ema_checkpoint(again_task, last)
    ema, again_ema = task.get_trainable_module(ema=True).module, again_task.get_trainable_module(ema=True).module
    for mine, theirs in ((model, again), (ema, again_ema)):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert not torch.equal(ema.head.fc.weight, model.head.fc.weight)  # the EMA is its own set of weights
    resumed = again.head.fc.weight.detach().clone()
    step = lambda opt: [s["step"] for s in opt.state_dict()["state"].values()]  # noqa: E731
    assert step(again_optimizer) == step(optimizer) and len(step(optimizer)) > 0
    # the next step of both runs is the same step
    _train_step(task, optimizer, torch.Generator().manual_seed(9))
    _train_step(again_task, again_optimizer, torch.Generator().manual_seed(9))
    assert torch.allclose(again.head.fc.weight, model.head.fc.weight, atol=1e-6)

    legacy, _, legacy_optimizer = make()
    assert timm.models.resume_checkpoint(legacy, last, optimizer=legacy_optimizer, log_info=False) == 2
    assert torch.equal(legacy.head.fc.weight, resumed)
    # a checkpoint of another head is refused by name, not half loaded
    other = ClassificationTask(timm.create_model("gcp_test_vit", num_classes=5, reduced_dim=4, sovit=True),
                               verbose=False)
    with pytest.raises(gcp.zoo.StateDictMismatchError, match="reduced_dim=8"):
        resume_task_checkpoint(other, last)


def test_a_timm_backbone_file_given_as_gcp_weights_says_where_it_goes(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    backbone = timm.create_model("test_resnet")
    path = str(tmp_path / "backbone.safetensors")
    save_file(backbone.state_dict(), path)
    with pytest.raises(gcp.zoo.CheckpointError, match="a timm backbone's weights .* backbone_pretrained=PATH"):
        timm.create_model("gcp_test_resnet", pretrained=True, pretrained_cfg_overlay=dict(file=path))
    model = timm.create_model("gcp_test_resnet", backbone_pretrained=path, num_classes=3)
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.state_dict().items()
               if k in model.backbone.state_dict())


@pytest.mark.parametrize("edit, pattern", [
    (dict(num_classes="3"), "num_classes must be an integer >= 0, got '3'"),
    pytest.param(dict(architecture="resnet18"), "architecture 'resnet18' is not a GCP model", marks=pytest.mark.slow),
    (dict(num_classes=5), "says num_classes=5 but the classifier .* has 3 classes"),
    pytest.param(dict(model_args=[1]), "model_args must be a JSON object", marks=pytest.mark.slow),
])
def test_a_hand_edited_config_is_a_typed_error(edit, pattern, tmp_path):
    model = timm.create_model("gcp_test_resnet", num_classes=3, reduced_dim=8)
    folder = gcp.zoo.save_pretrained(model, str(tmp_path / "m"))
    config = json.load(open(tmp_path / "m" / "config.json"))
    json.dump(dict(config, **edit), open(tmp_path / "m" / "config.json", "w"))
    with pytest.raises(gcp.zoo.CheckpointError, match=pattern):
        gcp.zoo.load_pretrained(folder)
    if "architecture" not in edit and "num_classes" in edit and isinstance(edit["num_classes"], int):
        with pytest.raises(gcp.zoo.CheckpointError, match=pattern):  # through timm's own loader too
            timm.create_model(f"local-dir:{folder}", pretrained=True)
