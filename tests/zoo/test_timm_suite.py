"""timm's own model tests (tests/test_models.py of the installed timm's source release) on GCP models."""

import textwrap

import pytest

from gcp.zoo.timm_suite import MODEL_TESTS, Outcome, TimmTestsUnavailableError, parse_junit, refusal, table, timm_tests


def test_the_plugin_lists_gcp_names_through_timms_own_filters(monkeypatch):
    monkeypatch.setenv("GCP_TIMM_SUITE_MODELS", "test_resnet,test_vit,resnet18")
    import gcp.zoo.timm_suite_plugin as plugin

    assert plugin.list_models() == ["gcp_resnet18", "gcp_test_resnet", "gcp_test_vit"]
    # timm's filters act on the timm names: the non-standard models, a module, tags
    assert plugin.list_models(filter=["vit_*", "test_vit*"]) == ["gcp_test_vit"]
    assert plugin.list_models(exclude_filters=["test_vit*"], include_tags=True) == ["gcp_resnet18", "gcp_test_resnet"]
    assert plugin.list_models(module="vision_transformer") == ["gcp_test_vit"]
    assert plugin.list_models(pretrained=True) == [] and plugin.list_pretrained("test_*") == []


def test_junit_outcomes_and_the_table(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(textwrap.dedent("""\
        <testsuites><testsuite>
          <testcase name="test_model_forward[gcp_test_resnet-1]"/>
          <testcase name="test_model_backward[2-gcp_test_vit]"><failure message="AssertionError: no grad"/></testcase>
          <testcase name="test_model_default_cfgs_non_std[1-gcp_test_vit]"><failure message="assert 32896 == 64"/></testcase>
          <testcase name="test_model_forward_torchscript[gcp_test_vit-1]"><skipped message="too large"/></testcase>
          <testcase name="test_other[gcp_test_vit]"/>
          <testcase name="test_model_forward[resnet18-1]"/>
        </testsuite></testsuites>"""))
    outcomes = parse_junit(str(report))
    assert outcomes == [Outcome("test_resnet", "test_model_forward", "pass"),
                        Outcome("test_vit", "test_model_backward", "fail", "AssertionError: no grad"),
                        Outcome("test_vit", "test_model_default_cfgs_non_std", "fail", "assert 32896 == 64"),
                        Outcome("test_vit", "test_model_forward_torchscript", "skipped", "too large")]
    md = table(outcomes, {"resnet": "test_resnet", "vision_transformer": "test_vit"})
    assert "| resnet | test_resnet | pass | — | — | — |" in md
    # a failure the refusals explain is shown as refused; another stays a failure
    assert "| vision_transformer | test_vit | — | fail | refused | skipped |" in md
    assert refusal("test_vit", "test_model_forward_fx", "TraceError: control flow") is None
    assert refusal("test_vit", "test_model_default_cfgs_non_std", "assert 32896 == 64")
    assert refusal("test_resnet", "test_model_default_cfgs_non_std", "assert 32896 == 64") is None
    assert refusal("test_vit", "test_model_default_cfgs_non_std", "assert 32895 == 64") is None  # not d(d+1)/2


#: one small model of each output layout: NCHW (ResNet, ConvNeXt, EfficientNet), NHWC (MambaOut), tokens (ViT)
MODELS = ["test_resnet", "test_convnext", "test_efficientnet", "test_mambaout", "test_vit"]


@pytest.mark.slow  # about a minute: timm's tests on five models, in a subprocess
def test_timms_model_tests_pass_or_are_refused_by_name():
    try:
        outcomes = timm_tests(MODELS, timeout=900)
    except TimmTestsUnavailableError as exc:  # no package index: timm's source release cannot be fetched
        pytest.skip(str(exc))
    failed = [o for o in outcomes if o.status == "fail" and not refusal(o.model, o.test, o.reason)]
    assert failed == []
    seen = {(o.model, o.test) for o in outcomes}
    for model in MODELS:  # every model went through forward, backward and a config test
        assert {(model, "test_model_forward"), (model, "test_model_backward")} <= seen
        assert (model, "test_model_default_cfgs") in seen or (model, "test_model_default_cfgs_non_std") in seen
    assert len({o.test for o in outcomes}) >= len(MODEL_TESTS) - 1


def test_construction_and_reset_as_timms_contract_asks():
    """What timm's config test asks, checked here without timm's source release."""
    import timm
    import torch

    import gcp.zoo

    model = timm.create_model("gcp_test_resnet", num_classes=3, reduced_dim=8)
    assert model.in_chans == 3 and timm.create_model("gcp_test_resnet", in_chans=1, reduced_dim=8).in_chans == 1
    for name in ("gcp_test_resnet", "gcp_resnet18"):  # an unexpected keyword is a TypeError, as in timm
        with pytest.raises(TypeError, match="not_a_model_arg"):
            timm.create_model(name, not_a_model_arg=1)
        with pytest.raises(gcp.zoo.UnknownBackboneOptionError):
            timm.create_model(name, not_a_model_arg=1)
    # create_model's device and dtype place the whole model, head included
    meta = timm.create_model("gcp_test_resnet", device="meta", dtype=torch.float64, reduced_dim=8)
    tensors = [*meta.parameters(), *meta.buffers()]
    assert all(t.device.type == "meta" for t in tensors)
    assert all(t.dtype == torch.float64 for t in tensors if t.is_floating_point())
    # a new classifier takes the model's dtype and mode; classes bring a removed head back
    model = model.eval().to(torch.float64)
    model.reset_classifier(0)
    model.reset_classifier(5)
    assert model.head.fc.weight.dtype == torch.float64 and not any(m.training for m in model.modules())
    headless = timm.create_model("gcp_test_resnet", num_classes=0, global_pool="", reduced_dim=8).eval()
    headless.reset_classifier(0)
    assert not any(m.training for m in headless.modules())
    headless.reset_classifier(4)
    assert headless.num_classes == 4 and not any(m.training for m in headless.modules())
    assert headless(torch.randn(2, 3, 64, 64)).shape == (2, 4)
    with pytest.raises(gcp.InvalidOptionError, match="num_classes"):
        headless.reset_classifier(4, global_pool="")


def test_features_only_defaults_to_timms_own_levels():
    import timm
    import torch

    import gcp.zoo  # noqa: F401

    with torch.device("meta"):
        ours = timm.create_model("gcp_tresnet_m", features_only=True)
        theirs = timm.create_model("tresnet_m", features_only=True)
    # TResNet's default skips its space-to-depth stem (a declared reduction of 2 that is really 4)
    assert ours.feature_info.reduction() == theirs.feature_info.reduction() == [4, 8, 16, 32]
    assert ours.feature_info.channels() == theirs.feature_info.channels()
