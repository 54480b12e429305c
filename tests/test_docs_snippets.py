"""Every TOML and Python snippet in README.md and docs/ runs, as a reader would run it.

Each page runs in a fresh folder, its snippets in order (a Python snippet may write the files
a later TOML snippet reads). A ```toml block with a ``[backfill]`` table goes through
``nautilus-backfill check``; a ```python block is executed. A marker comment on the line
before a block changes that:

- ``<!-- skip: why -->``: not run (it needs a TradingNode, a gateway, your strategy);
- ``<!-- fragment -->``: a part of a config; a request and a source are added, then checked;
- ``<!-- your files -->``: the config names files the reader supplies; ``check`` may only
  object to source ``path`` keys.

``--8<-- "path"`` lines (the site's file includes) are replaced by the file, as the site does.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from nautilus_backfill import sample
from nautilus_backfill.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"^<!--\s*(skip|fragment|your files)\s*(?::\s*(.*?))?\s*-->$")
FENCE = re.compile(r"^```(\w*)\s*$")
INCLUDE = re.compile(r'^--8<--\s+"([^"]+)"\s*$', re.M)


@dataclass
class Snippet:
    """One fenced block: its language, text, line in the page and marker."""

    lang: str
    text: str
    line: int
    marker: str | None


def snippets(page: Path) -> list[Snippet]:
    """Return the fenced blocks of a Markdown page, with the marker before each."""
    lines = page.read_text().splitlines()
    out: list[Snippet] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        before = next((x.strip() for x in reversed(lines[:start]) if x.strip()), "")
        marker = MARKER.match(before)
        text = INCLUDE.sub(
            lambda m: (ROOT / m.group(1)).read_text(), "\n".join(lines[start + 1 : i])
        )
        out.append(
            Snippet(match.group(1), text + "\n", start + 1, marker.group(1) if marker else None)
        )
        i += 1
    return out


def complete(fragment: str) -> str:
    """Add the request and the source a config fragment leaves out."""
    doc = tomllib.loads(fragment)
    backfill = doc.get("backfill", {})
    text = fragment
    if not backfill.get("requests"):
        text += (
            '\n[[backfill.requests]]\nbar_type = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"\nbars = 10\n'
            'end = "2025-01-02T09:00:00Z"\nprice_precision = 5\nsize_precision = 0\n'
        )
    if not backfill.get("sources") and "store" not in backfill:
        csv = (sample.folder() / sample.CSV_NAME).as_posix()
        text += f'\n[[backfill.sources]]\nname = "sample"\nplugin = "csv"\npath = "{csv}"\n'
    return text


def check(text: str, folder: Path, marker: str | None) -> None:
    (folder / "backfill.toml").write_text(text)
    result = CliRunner().invoke(main, ["check", str(folder / "backfill.toml")])
    if result.exit_code == 0:
        return
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    only_paths = errors and all(re.search(r"backfill\.sources\[\d+\]\.path: ", e) for e in errors)
    assert marker == "your files" and only_paths, result.output


def run_page(page: Path, folder: Path) -> int:
    """Run a page's snippets in `folder`; return how many ran."""
    namespace: dict = {"__name__": "__snippet__"}
    ran = 0
    for s in snippets(page):
        where = f"{page.name}:{s.line}"
        if s.lang == "toml":
            doc = tomllib.loads(s.text)  # even a skipped one must be valid TOML
            if s.marker == "skip" or ("backfill" not in doc and s.marker != "fragment"):
                continue
            check(complete(s.text) if s.marker == "fragment" else s.text, folder, s.marker)
            ran += 1
        elif s.lang == "python" and s.marker != "skip":
            exec(compile(s.text, where, "exec"), namespace)
            ran += 1
    return ran


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_page(page, tmp_path)


def test_the_guides_have_snippets_that_run(tmp_path, monkeypatch):
    # The checks above must not pass by skipping: the pages that teach by example run them.
    counts = {}
    for name in ("getting-started.md", "plugins.md"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        counts[name] = run_page(ROOT / "docs" / name, folder)
    assert counts["getting-started.md"] >= 3 and counts["plugins.md"] >= 3, counts


def test_a_broken_toml_snippet_fails(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        '<!-- fragment -->\n```toml\n[[backfill.sources]]\nname = "x"\nplugin = "csv"\n'
        'path = "a.csv"\ndelimeter = ";"\n```\n'
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="unknown field `delimeter`"):
        run_page(page, tmp_path)


def test_a_missing_file_passes_only_where_the_page_says_the_reader_supplies_it(
    tmp_path, monkeypatch
):
    config = (
        '[backfill]\n[[backfill.requests]]\nbar_type = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"\n'
        'bars = 10\n[[backfill.sources]]\nname = "x"\nplugin = "csv"\npath = "nowhere/*.csv"\n'
    )
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(f"<!-- your files -->\n```toml\n{config}```\n")
    assert run_page(page, tmp_path) == 1
    page.write_text(f"```toml\n{config}```\n")
    with pytest.raises(AssertionError, match="nowhere"):
        run_page(page, tmp_path)


def test_a_failing_python_snippet_fails(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("```python\nfrom nautilus_backfill import NoSuchThing\n```\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImportError):
        run_page(page, tmp_path)
    page.write_text(
        "<!-- skip: needs a node -->\n```python\nfrom nautilus_backfill import NoSuchThing\n```\n"
    )
    assert run_page(page, tmp_path) == 0
