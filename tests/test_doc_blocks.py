"""Every python block of README.md and docs/ runs (the blocks are written to run as they stand).

Two things a test machine lacks are supplied, and only those: the network (``backbone_pretrained=True``
reads timm's ImageNet weights from a local file made here instead of the Hub) and the weight file
a block names (``gcp_r50.safetensors``, written here from a fresh model). Each block runs in its own
namespace in a temporary working directory. Every block compiles in the default run; they run
under ``-m slow`` (ResNet-50s, an ONNX export)."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, text[: m.start()].count("\n") + 1, m.group(1))
          for page in PAGES for text in [page.read_text()] for m in re.finditer(r"```python\n(.*?)```", text, re.S)]
IDS = [f"{p.relative_to(ROOT)}:{line}" for p, line, _ in BLOCKS]


@pytest.mark.parametrize("page, line, code", BLOCKS, ids=IDS)
def test_every_block_compiles(page, line, code):
    compile(code, f"{page.name}:{line}", "exec")


@pytest.mark.slow
@pytest.mark.parametrize("page, line, code", BLOCKS, ids=IDS)
def test_every_block_runs(page, line, code, tmp_path, monkeypatch):
    import timm
    import torch
    from safetensors.torch import save_file

    import gcp.zoo

    monkeypatch.chdir(tmp_path)
    if "backbone_pretrained=True" in code:
        weights = tmp_path / "resnet50_imagenet.safetensors"
        save_file({k: v.contiguous() for k, v in timm.create_model("resnet50").state_dict().items()}, str(weights))
        code = code.replace("backbone_pretrained=True", f"backbone_pretrained={str(weights)!r}")
    if "gcp_r50.safetensors" in code:
        torch.manual_seed(0)
        gcp.zoo.save_weights(gcp.zoo.create_model("gcp_resnet50"), str(tmp_path / "gcp_r50.safetensors"))
    exec(compile(code, f"{page.name}:{line}", "exec"), {"__name__": "__doc_block__"})
