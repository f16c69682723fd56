"""The README is a short user's guide whose links all resolve; the reference pages' links too."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: pathlib.Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return out


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) < 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (anchor and dest.is_file() and anchor not in _anchors(dest)):
            broken.append(target)
    assert broken == []


def test_readme_links_to_every_reference_page():
    text = (ROOT / "README.md").read_text()
    assert [p.name for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in text] == []


def test_no_page_narrates_history_outside_the_changelog():
    """History lives in CHANGELOG.md; the guide and the reference describe what is."""
    phrases = ("this release", "before →", "before, ", "issue #")
    found = [(p.name, ph) for p in PAGES if p.name != "CHANGELOG.md" for ph in phrases if ph in p.read_text()]
    assert found == []


def test_no_code_cites_an_issue():
    """Comments and docstrings say why, not which ticket: no ``issue 12`` / ``(#12)`` in the code."""
    pattern = re.compile(r"\bissues? \d+|\(#\d+\)", re.I)
    files = [*(ROOT / "gcp").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").rglob("*.py")]
    cited = [str(f.relative_to(ROOT)) for f in files if f.name != "test_docs.py" and pattern.search(f.read_text())]
    assert cited == []


def test_readme_quotes_the_generated_comparison_report():
    """The README's findings are the full run's generated lines, not prose written in advance."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## What the comparison shows at this scale")[1].split("\n## ")[0]
    report_path = re.search(r"\((results/compare-[\d-]+/report\.md)\)", section).group(1)
    report = (ROOT / report_path).read_text()
    quoted = [line for line in section.splitlines()
              if line.startswith(("- **", "**Significance threshold", "- Mechanism", "- GCP against GAP", "- Texture"))]
    assert len(quoted) >= 8 and [line for line in quoted if line not in report] == []
    assert any(line.startswith("- Mechanism") for line in quoted) and any("80%-power difference" in line for line in quoted)
    makefile = (ROOT / "Makefile").read_text()
    assert f"--reference {report_path.rsplit('/', 1)[0]}" in makefile  # the demo is checked against that run


def _table(text: str, first_column: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose header starts with ``first_column``, by first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_readme_zoo_numbers_are_the_generated_sweep_and_audit():
    text = (ROOT / "README.md").read_text()
    sweep_path = re.search(r"\((results/sweep_zoo-[\d-]+\.md)\)", text).group(1)
    sweep = _table((ROOT / sweep_path).read_text(), "backbone output")
    readme = _table(text, "backbone output")
    for layout in ("NCHW", "NHWC", "tokens"):
        row = next(v for k, v in readme.items() if k.startswith(layout))
        assert row[:2] == sweep[layout], layout
    assert readme["refused by name"][:2] == [sweep["(not built)"][0], "0"]
    audit_path = re.search(r"\((results/audit_zoo-[\d-]+\.md)\)", text).group(1)
    audit = _table((ROOT / audit_path).read_text(), "backbone output")
    claim = re.search(r"(\d+) NCHW, (\d+) NHWC and (\d+) token models are consistent, (\d+) are refused by name, "
                      r"none is wrong", text.replace("\n", " "))
    assert claim is not None
    assert [audit[k] for k in ("NCHW", "NHWC", "tokens")] == [[n, n] for n in claim.groups()[:3]]
    assert audit["refused"][0] == claim.group(4)


def test_readme_method_table_is_the_registry():
    import gcp.methods

    assert gcp.methods.methods_table() in (ROOT / "README.md").read_text()
