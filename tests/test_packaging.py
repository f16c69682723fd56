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
    code = ("import sys, gcp; heavy = ('timm', 'torchvision', 'scipy', 'matplotlib', 'sklearn', 'gcp.zoo', "
            "'gcp.train', 'gcp.compare', 'safetensors', 'huggingface_hub'); "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_one_top_level_package():
    """The distribution installs ``gcp`` and nothing else: no generic top-level names."""
    cfg = _setup_cfg()
    include = [line.strip() for line in cfg["options.packages.find"]["include"].splitlines() if line.strip()]
    assert include == ["gcp", "gcp.*"]
    from setuptools import find_packages

    assert {p.split(".")[0] for p in find_packages(str(ROOT), include=include)} == {"gcp"}
    assert not [p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                and p.name not in ("gcp", "tests")]


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
_DIST = {"sklearn": "scikit-learn", "PIL": "pillow", "huggingface_hub": "huggingface-hub", "yaml": "pyyaml"}
_PROVIDED = {"PIL": "torchvision"}  # Pillow comes with torchvision
SUBPACKAGES = ("zoo", "train", "finegrained", "compare", "bench")


def _files(folder: str, exclude: tuple[str, ...] = ()) -> list[pathlib.Path]:
    if folder.endswith(".py"):
        return [ROOT / folder]
    paths = sorted((ROOT / folder).rglob("*.py"))
    return [p for p in paths if not any(part in exclude for part in p.relative_to(ROOT / folder).parts)]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Absolute names of every import in ``path`` (relative imports resolved, lazy ones included)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # ``from gcp import zoo``
    return found


def _imports(folder: str, exclude: tuple[str, ...] = ()) -> set[str]:
    """Top-level names of the absolute imports in every .py file under ``folder``."""
    return {m.split(".")[0] for path in _files(folder, exclude) for m in _imported_modules(path)}


def _third_party(names: set[str]) -> set[str]:
    return {m for m in names if m not in set(sys.stdlib_module_names) | {"gcp", "__future__"}}


@pytest.mark.parametrize("package,extras,exclude", [
    ("gcp", (), SUBPACKAGES),
    ("gcp/zoo", ("zoo",), ("export.py",)),
    ("gcp/zoo/export.py", ("zoo", "export"), ()),  # ONNX export: the zoo plus the [export] extra
    ("gcp/train", ("train",), ()),
    ("gcp/finegrained", ("train",), ()),
    ("gcp/compare", ("compare",), ()),
    ("gcp/bench", (), ()),
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


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "gcp":
        return "external"
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return "train-cli" if parts[1:3] == ["train", "imagenet"] else parts[1]
    return "core"


# what each layer may import: core <- zoo <- train <- finegrained / the ImageNet command <- compare
ALLOWED = {
    "core": {"core"},
    "bench": {"core", "bench"},
    "zoo": {"core", "zoo"},
    "train": {"core", "zoo", "train"},
    "train-cli": {"core", "zoo", "train"},
    "finegrained": {"core", "zoo", "train", "finegrained"},
    "compare": {"core", "bench", "zoo", "train", "compare"},
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_dependencies_point_one_way(layer):
    """No module imports a layer above its own (lazy imports included), and no layer reaches into
    another package's private module (``gcp.zoo._pretrained``)."""
    wrong, private = [], []
    for path in _files("gcp"):
        module = _module_name(path)
        if _layer(module) != layer:
            continue
        for target in _imported_modules(path):
            target_layer = _layer(target)
            if target_layer == "external":
                continue
            if target_layer not in ALLOWED[layer]:
                wrong.append(f"{module} -> {target}")
            if target_layer != layer and any(p.startswith("_") and p != "__future__" for p in target.split(".")[1:]):
                private.append(f"{module} -> {target}")
    assert wrong == [] and private == []


def test_no_module_outside_gcp_is_importable_after_install(tmp_path):
    """``pip install .`` puts one name on sys.path: the old top-level names are gone."""
    code = "import importlib.util as u; print([n for n in ('zoo', 'gcptrain', 'finegrained') if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"


def test_one_version_source():
    assert _setup_cfg()["metadata"]["version"].strip() == "attr: gcp.__version__"
    assert gcp.__version__.count(".") == 2


@pytest.mark.cuda
def test_sqrtm_on_cuda_matches_cpu():
    x = gcp.covariance(torch.randn(4, 32, 100, dtype=torch.float64))
    assert torch.allclose(gcp.sqrtm(x.cuda()).cpu(), gcp.sqrtm(x), atol=1e-10)


def test_the_package_ships_its_type_hints_and_a_citation():
    import yaml

    assert (ROOT / "gcp" / "py.typed").is_file()
    assert "py.typed" in (ROOT / "setup.cfg").read_text()
    with open(ROOT / "CITATION.cff") as fh:
        cff = yaml.safe_load(fh)
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    titles = {r["title"] for r in cff["references"]}
    assert {"Backpropagation-Friendly Eigendecomposition", "Fast Differentiable Matrix Square Root",
            "Compact Bilinear Pooling"} <= titles
    assert all(r["authors"] and r["year"] for r in cff["references"])
