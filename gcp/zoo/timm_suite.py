"""Run timm's own model tests (``tests/test_models.py`` of the installed timm's source release) on
``gcp_<timm name>`` models, and tabulate module × test → pass / fail / skipped / not selected.

timm's test file is its contract's client: it is not copied here. :func:`timm_tests` fetches the
source release of the installed timm version from the package index once (``pip download``, cached
under ``~/.cache/gcp``) and runs its ``test_models.py`` in a pytest subprocess with
:mod:`gcp.zoo.timm_suite_plugin`, which makes timm's ``list_models`` answer with the GCP names of the
chosen timm models. Every filter timm's tests apply (non-standard models, TorchScript and FX
exclusions, the modules with ``forward_intermediates``) is applied to the *timm* name, as for timm's
own models. The tests that download weights (``list_models(pretrained=True)`` and
``list_pretrained``) select nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

from .errors import CheckpointError

#: timm's tests parametrised by ``list_models``: the contract every model is held to (downloads excluded)
MODEL_TESTS: tuple[str, ...] = (
    "test_model_forward", "test_model_backward", "test_model_default_cfgs", "test_model_default_cfgs_non_std",
    "test_model_forward_torchscript", "test_model_forward_features", "test_model_forward_intermediates_features",
    "test_model_forward_intermediates", "test_model_forward_fx", "test_model_backward_fx",
    "test_model_forward_fx_torchscript",
)
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "gcp")

def _triangular_width(failure: str) -> bool:
    """``assert W == C`` where ``W = d(d+1)/2``: a GCP representation's width against num_features."""
    match = re.fullmatch(r"assert (\d+) == (\d+)", failure.strip())
    if match is None:
        return False
    width = int(match.group(1))
    d = int(((8 * width + 1) ** 0.5 - 1) / 2)
    return d * (d + 1) // 2 == width and width != int(match.group(2))


#: tests a GCP model cannot pass: (fnmatch pattern of the timm name, test) → (reason, what the failure
#: must be: a regular expression it matches, or a predicate). A failure of another kind stays a
#: failure; the table shows the matching ones as refused
REFUSED: dict[tuple[str, str], tuple[str, Union[str, Callable[[str], bool]]]] = {
    **{(pattern, "test_model_default_cfgs_non_std"): (
        "asserts that the output of a model built with num_classes=0 has num_features channels; a GCP "
        "head's representation has d(d+1)/2 (head_hidden_size, which timm's other tests check), by design",
        _triangular_width)
       for pattern in ("vit_*", "test_vit*", "deit*", "beit*", "cait_*", "eva_*", "*mixer_*", "gmlp_*", "twins_*",
                       "convit_*", "levit*", "visformer*", "xcit_*", "volo_*", "samvit_*", "tiny_vit_*", "hiera_*",
                       "vitamin*", "mvitv2*", "gcvit*", "efficientformer*", "efficientvit_m*", "sequencer2d_*",
                       "swiftformer_*", "tnt_*", "qwen3_vit*", "gemma4_vit*", "deepseek_vit*", "naflexvit*",
                       "sam_hiera*", "poolformer_*")},
    **{(pattern, "test_model_forward_features"): (
        "timm's test exempts inception_v3, inception_v4 and inception_resnet_v2 by name from its lower bound on "
        "feature sizes (unpadded convolutions shrink small inputs below input / reduction); the exemption "
        "matches the timm name, not gcp_<name>",
        r"feature reduction \d+ too small")
       for pattern in ("inception_v3*", "inception_v4*", "inception_resnet_v2*")},
}


def refusal(model: str, test: str, failure: str = "") -> Optional[str]:
    """Why timm's ``test`` cannot pass on ``gcp_<model>`` when it fails with ``failure``, or ``None``."""
    import fnmatch

    return next((why for (pattern, t), (why, match) in REFUSED.items()
                 if t == test and fnmatch.fnmatch(model, pattern)
                 and (match(failure) if callable(match) else re.search(match, failure))), None)
_ID = re.compile(r"\[(?:.*?-)?gcp_([\w.]+?)(?:-.*)?\]$")


class TimmTestsUnavailableError(CheckpointError):
    """timm's source release (with its tests) cannot be fetched or read."""


def timm_test_file(cache: str = CACHE) -> str:
    """The path of ``tests/test_models.py`` of the installed timm version's source release,
    downloaded from the package index on first use."""
    import timm

    folder = os.path.join(cache, f"timm-{timm.__version__}-tests")
    path = os.path.join(folder, "test_models.py")
    if os.path.isfile(path):
        return path
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"timm=={timm.__version__}", "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as exc:
            raise TimmTestsUnavailableError(f"fetching timm {timm.__version__}'s source release timed out") from exc
        archives = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
        if done.returncode or not archives:
            raise TimmTestsUnavailableError(
                f"cannot fetch timm {timm.__version__}'s source release (its tests): {done.stderr.strip()[-300:]}")
        with tarfile.open(os.path.join(tmp, archives[0])) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/tests/test_models.py")), None)
            if member is None:
                raise TimmTestsUnavailableError(f"timm {timm.__version__}'s source release has no tests/test_models.py")
            os.makedirs(folder, exist_ok=True)
            with tar.extractfile(member) as src, open(path + ".part", "wb") as dst:  # type: ignore[union-attr]
                dst.write(src.read())
            os.replace(path + ".part", path)
    return path


@dataclass(frozen=True)
class Outcome:
    model: str  # the timm name
    test: str
    status: str  # "pass", "fail", "skipped"
    reason: str = ""


def _reason(node: ET.Element) -> str:
    text = (node.get("message") or node.text or "").strip().splitlines()
    last = [line for line in text if line.strip()]
    return (last[0] if node.get("message") else last[-1] if last else "")[:300]


def parse_junit(path: str) -> list[Outcome]:
    """The outcome of every GCP test case in a junit XML report."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        test, match = name.split("[")[0], _ID.search(name)
        if match is None or test not in MODEL_TESTS:
            continue
        failed = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if failed is not None:
            out.append(Outcome(match.group(1), test, "fail", _reason(failed)))
        elif skipped is not None:
            out.append(Outcome(match.group(1), test, "skipped", _reason(skipped)))
        else:
            out.append(Outcome(match.group(1), test, "pass"))
    return out


def timm_tests(models: Sequence[str], timeout: int = 3600, junit: Optional[str] = None,
               extra_args: Sequence[str] = ()) -> list[Outcome]:
    """Run timm's model tests on ``gcp_<m>`` for each timm name ``m`` in ``models``; one outcome per
    test that selected the model."""
    test_file = timm_test_file()
    with tempfile.TemporaryDirectory() as tmp:
        report = junit or os.path.join(tmp, "junit.xml")
        env = dict(os.environ, GCP_TIMM_SUITE_MODELS=",".join(models), PYTHONWARNINGS="ignore")
        cmd = [sys.executable, "-m", "pytest", test_file, "-p", "gcp.zoo.timm_suite_plugin", "-q", "-p",
               "no:cacheprovider", "-o", "addopts=", "-k", " or ".join(MODEL_TESTS), f"--junitxml={report}",
               "--rootdir", os.path.dirname(test_file), *extra_args]
        subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(test_file))
        if not os.path.isfile(report):
            raise TimmTestsUnavailableError("timm's tests did not run (no junit report)")
        return parse_junit(report)


def table(outcomes: Sequence[Outcome], modules: dict[str, str]) -> str:
    """Markdown: one row per module (its model), one column per test; a cell is pass, fail,
    refused (a failure :data:`REFUSED` explains), skipped (timm's own size limits) or — (the test
    does not select that model, as for timm's own)."""
    by = {(o.model, o.test): o for o in outcomes}

    def cell(model: str, test: str) -> str:
        o = by.get((model, test))
        if o is None:
            return "—"
        return "refused" if o.status == "fail" and refusal(model, test, o.reason) else o.status

    tests = [t for t in MODEL_TESTS if any(o.test == t for o in outcomes)]
    short = {t: t.replace("test_model_", "") for t in tests}
    lines = ["| module | model | " + " | ".join(short[t] for t in tests) + " |", "|---|---|" + "---|" * len(tests)]
    for module, model in modules.items():
        cells = [cell(model, t) for t in tests]
        lines.append(f"| {module} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
