"""What `pip install gcp` promises: a light core, one version, declared dependencies."""

import ast
import configparser
import pathlib
import subprocess
import sys

import pytest
import torch

import gcp

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_gcp_is_light():
    """The core must not pull in the zoo, timm or the comparison tool's dependencies (tqdm is not
    in the list: torch itself imports it)."""
    code = ("import sys, gcp; heavy = ('timm', 'torchvision', 'scipy', 'matplotlib', 'sklearn', 'zoo', "
            "'safetensors', 'huggingface_hub'); print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(line.split(">")[0].split("=")[0].split("<")[0].strip().lower().replace("_", "-"))
    return names


# import name -> distribution name, where they differ
_DIST = {"sklearn": "scikit-learn", "PIL": "pillow", "huggingface_hub": "huggingface-hub"}
_PROVIDED = {"PIL": "torchvision"}  # Pillow comes with torchvision
_LOCAL = {"gcp", "zoo", "gcptrain", "finegrained", "train_imagenet"}


def _imports(folder: str, exclude: tuple[str, ...] = ()) -> set[str]:
    """Top-level names of the absolute imports in every .py file under ``folder``."""
    found = set()
    paths = [ROOT / folder] if folder.endswith(".py") else sorted((ROOT / folder).rglob("*.py"))
    for path in paths:
        if path.is_relative_to(ROOT / folder) and any(part in exclude for part in path.relative_to(ROOT / folder).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def _third_party(names: set[str]) -> set[str]:
    return {m for m in names if m not in set(sys.stdlib_module_names) | _LOCAL | {"__future__"}}


@pytest.mark.parametrize("package,extras,exclude", [
    ("gcp", ("compare",), ()),
    ("zoo", ("zoo",), ("export.py",)),
    ("zoo/export.py", ("zoo", "export"), ()),  # ONNX export: the zoo plus the [export] extra
    ("gcptrain", ("train",), ()),
    ("finegrained", ("train",), ()),
])
def test_every_import_is_declared(package, extras, exclude):
    cfg = _setup_cfg()
    declared = _requirement_names(cfg["options"]["install_requires"])
    for extra in extras:
        declared |= _requirement_names(cfg["options.extras_require"][extra])
    missing = [m for m in _third_party(_imports(package, exclude))
               if _DIST.get(m, m).lower().replace("_", "-") not in declared and _PROVIDED.get(m) not in declared]
    assert missing == []
    pinned = _requirement_names((ROOT / "requirements.txt").read_text())
    assert declared - pinned == set()


def test_core_requirements_are_what_the_core_imports():
    core = _third_party(_imports("gcp", exclude=("compare",)))
    assert {m.lower() for m in core} <= _requirement_names(_setup_cfg()["options"]["install_requires"])


@pytest.mark.parametrize("package,above", [("gcp", {"zoo", "gcptrain", "finegrained", "train_imagenet"}),
                                           ("zoo", {"gcptrain", "finegrained", "train_imagenet"}),
                                           ("gcptrain", {"finegrained", "train_imagenet"})])
def test_dependencies_point_one_way(package, above):
    """core <- zoo <- gcptrain <- CLIs: no module imports a layer above its own (lazy imports included)."""
    assert _imports(package) & above == set()


def test_one_version_source():
    assert _setup_cfg()["metadata"]["version"].strip() == "attr: gcp.__version__"
    assert gcp.__version__.count(".") == 2


@pytest.mark.cuda
def test_sqrtm_on_cuda_matches_cpu():
    x = gcp.covariance(torch.randn(4, 32, 100, dtype=torch.float64))
    assert torch.allclose(gcp.sqrtm(x.cuda()).cpu(), gcp.sqrtm(x), atol=1e-10)
