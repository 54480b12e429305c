"""Every TOML and Python snippet in README.md and docs/ runs, as a reader would run it.

Each page runs in a fresh folder, its snippets in order (a Python snippet may write the files
a later TOML snippet reads). A ```toml block with a ``[backfill]`` table goes through
``nautilus-backfill check``; a ```python block is executed. A marker comment on the line
before a block changes that:

- ``<!-- skip: why -->``: not run (it needs a TradingNode, a gateway, your strategy);
- ``<!-- fragment -->``: a part of a config; a request and a source are added, then checked
  (a block with ``[backfill]`` keys but no request is taken as a fragment without the marker).
  Only the fragment's keys and values are judged: the added request is not the one its
  source is for, so what the source's offline check says about it is not.

- ``<!-- file: NAME -->``: the block is a file the page shows; it is written as NAME;
- ``<!-- output -->``: a ```text block of ``$ nautilus-backfill ...`` commands and what they
  print; each command is run and its output must be what the page shows (times aside).

Files a config names are the reader's (``data/{symbol}-{step}.csv``), so ``check`` may object
to a source's ``path``, except on the pages in `BUILDS_ITS_FILES`, whose snippets make them.
Each page runs in a folder beside a link to the real data (``../shared/data/...``), as the
tests do.

``--8<-- "path"`` lines (the site's file includes) are replaced by the file, as the site does.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from nautilus_backfill import Backfill, BackfillError, sample
from nautilus_backfill.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"^<!--\s*(skip|fragment|file|output)\s*(?::\s*(.*?))?\s*-->$")
TIME = re.compile(r"\b\d+\.\d+s\b")
BUILDS_ITS_FILES = {"getting-started.md"}
SHARED = ROOT.parent / "shared"
FENCE = re.compile(r"^```(\w*)\s*$")
INCLUDE = re.compile(r'^--8<--\s+"([^"]+)"\s*$', re.M)


@dataclass
class Snippet:
    """One fenced block: its language, text, line in the page and marker."""

    lang: str
    text: str
    line: int
    marker: str | None
    arg: str | None = None


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
        kind, arg = (marker.group(1), marker.group(2)) if marker else (None, None)
        out.append(Snippet(match.group(1), text + "\n", start + 1, kind, arg))
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


def check(text: str, folder: Path, allowed: str | None) -> None:
    """Run ``nautilus-backfill check``; `allowed` names the source problems that may remain."""
    (folder / "backfill.toml").write_text(text)
    try:  # keys and values first: a config that does not load is never excused
        Backfill.from_toml(folder / "backfill.toml")
    except BackfillError as e:
        raise AssertionError(str(e)) from None
    result = CliRunner().invoke(main, ["check", str(folder / "backfill.toml")])
    if result.exit_code == 0:
        return
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    pattern = {"path": r"backfill\.sources\[\d+\]\.path: ", "source": r"backfill\.sources\[\d+\]\."}
    ok = allowed is not None and errors and all(re.search(pattern[allowed], e) for e in errors)
    assert ok, result.output


def same_output(block: str) -> None:
    """Run each ``$ nautilus-backfill ...`` of an output block; compare with what it shows."""
    for command in re.split(r"^(?=\$ )", block, flags=re.M):
        if not command.strip():
            continue
        line, _, shown = command.partition("\n")
        args = shlex.split(line[2:])
        assert args[0] == "nautilus-backfill", line
        result = CliRunner().invoke(main, args[1:])
        actual = [TIME.sub("#.##s", x.rstrip()) for x in result.output.strip().splitlines()]
        expected = [TIME.sub("#.##s", x.rstrip()) for x in shown.strip().splitlines()]
        assert actual == expected, f"{line}\n" + "\n".join(actual)


def run_page(page: Path, folder: Path) -> int:
    """Run a page's snippets in `folder`; return how many ran."""
    namespace: dict = {"__name__": "__snippet__"}
    ran = 0
    for s in snippets(page):
        where = f"{page.name}:{s.line}"
        if s.marker == "file":
            (folder / str(s.arg)).write_text(s.text)
        elif s.marker == "output":
            same_output(s.text)
            ran += 1
        elif s.lang == "toml":
            doc = tomllib.loads(s.text)  # even a skipped one must be valid TOML
            if s.marker == "skip" or ("backfill" not in doc and s.marker != "fragment"):
                continue
            if s.marker == "fragment" or not doc.get("backfill", {}).get("requests"):
                check(complete(s.text), folder, "source")
            else:
                check(s.text, folder, None if page.name in BUILDS_ITS_FILES else "path")
            ran += 1
        elif s.lang == "python" and s.marker != "skip":
            try:
                exec(compile(s.text, where, "exec"), namespace)
            except Exception as e:
                raise AssertionError(
                    f"{where}: the python snippet fails: {type(e).__name__}: {e} (one that is "
                    "not meant to run alone takes <!-- skip: why --> on the line before it)"
                ) from e
            ran += 1
    return ran


def page_folder(tmp_path: Path) -> Path:
    """A fresh folder with ``../shared`` the real data, as beside the checkout."""
    folder = tmp_path / "work"
    folder.mkdir()
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    return folder


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_snippets_run(page, tmp_path, monkeypatch):
    if "../shared/" in page.read_text() and not SHARED.is_dir():
        pytest.skip(f"{page.name} reads the real data in {SHARED}, which is absent")
    folder = page_folder(tmp_path)
    monkeypatch.chdir(folder)
    run_page(page, folder)


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


def test_a_missing_file_fails_only_on_a_page_that_makes_its_files(tmp_path, monkeypatch):
    config = (
        '[backfill]\n[[backfill.requests]]\nbar_type = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"\n'
        'bars = 10\n[[backfill.sources]]\nname = "x"\nplugin = "csv"\npath = "nowhere/*.csv"\n'
    )
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(f"```toml\n{config}```\n")
    assert run_page(page, tmp_path) == 1
    page = tmp_path / "getting-started.md"
    page.write_text(f"```toml\n{config}```\n")
    with pytest.raises(AssertionError, match="nowhere"):
        run_page(page, tmp_path)


def test_a_fragment_is_judged_on_its_own_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text('```toml\n[[backfill.sources]]\nname = "ib"\nplugin = "ib"\nport = 4002\n```\n')
    assert run_page(page, tmp_path) == 1
    page.write_text(
        '```toml\n[[backfill.sources]]\nname = "ib"\nplugin = "ib"\nport = "4002"\n```\n'
    )
    with pytest.raises(AssertionError, match=r"port"):
        run_page(page, tmp_path)


def test_output_a_page_shows_must_be_what_the_command_prints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = (
        '[backfill]\ndeadline = "soon"\n[[backfill.requests]]\n'
        'bar_type = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"\nbars = 10\n'
    )
    shown = (
        "error: bad.toml: backfill.deadline: invalid duration, was 'soon' "
        "(use a number and a unit: ms, s, m, h, d, w)"
    )
    page = tmp_path / "page.md"
    page.write_text(
        f"<!-- file: bad.toml -->\n```toml\n{config}```\n\n"
        f"<!-- output -->\n```text\n$ nautilus-backfill check bad.toml\n{shown}\n```\n"
    )
    assert run_page(page, tmp_path) == 1
    page.write_text(page.read_text().replace("'soon' (use", "'soon' (try"))
    with pytest.raises(AssertionError, match="use a number"):
        run_page(page, tmp_path)


def test_a_failing_python_snippet_fails(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("```python\nfrom nautilus_backfill import NoSuchThing\n```\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match=r"page\.md:1: the python snippet fails: ImportError"):
        run_page(page, tmp_path)
    page.write_text(
        "<!-- skip: needs a node -->\n```python\nfrom nautilus_backfill import NoSuchThing\n```\n"
    )
    assert run_page(page, tmp_path) == 0


def test_readme_shows_what_make_demo_prints():
    # The README's demo transcript, shortened with "...", must be lines the demo prints, in order.
    readme = (ROOT / "README.md").read_text()
    block = next(
        s.text for s in snippets(ROOT / "README.md") if "nautilus-backfill demo:" in s.text
    )
    # In a process of its own: the demo's TradingNode leaves asyncio tasks to the interpreter.
    result = subprocess.run(
        [sys.executable, "-m", "nautilus_backfill.cli", "demo"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    actual = [TIME.sub("#.##s", x.rstrip()) for x in result.stdout.splitlines()]
    position = 0
    for line in block.strip().splitlines():
        if line.strip() == "...":
            continue
        pattern = re.escape(TIME.sub("#.##s", line.rstrip())).replace("<site\\-packages>", ".*")
        found = next(
            (i for i in range(position, len(actual)) if re.fullmatch(pattern, actual[i])), None
        )
        assert found is not None, f"README line not printed by the demo (in order): {line!r}"
        position = found + 1
    assert "make demo" in readme
