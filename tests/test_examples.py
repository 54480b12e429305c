"""examples/: the live IB script, its TOML (every key, valid), and the example source plugin."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest
from nautilus_backfill import Backfill, BackfillConfig, BarRequestConfig, SourceConfig
from nautilus_backfill.registry import build_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_run_live_builds_a_node_with_ib_clients_and_two_strategies(shared):
    from ibsim import ACCOUNT, IBSimulator

    spec = importlib.util.spec_from_file_location("run_live", EXAMPLES / "run_live.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # NautilusTrader's IB factories connect while building, so the simulator stands in for TWS.
    sim = IBSimulator(recordings=shared / "ib")
    sim.start()
    node = module.build_node(port=sim.port, account=ACCOUNT)  # built, never run
    try:
        assert {str(s.id) for s in node.trader.strategies()} == {
            "EMACrossSignal-AAPL",
            "EMACrossSignal-EURUSD",
        }
        assert {str(c) for c in node.kernel.data_engine.registered_clients} == {
            "INTERACTIVE_BROKERS"
        }
    finally:
        # The IB client's tasks were started while building; end them before dispose() closes
        # the loop, or they are reported as destroyed while pending when the process exits.
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        node.dispose()
        sim.stop()


def test_example_backfill_toml_is_valid_and_lists_ib_then_parquet_then_csv():
    backfill = Backfill.from_toml(EXAMPLES / "backfill.toml")
    assert [s.plugin for s in backfill.config.sources] == ["ib", "parquet", "csv"]
    assert [r.bar_type for r in backfill.config.requests] == [
        "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL",
        "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL",
    ]


# -- examples/backfill.toml shows every key -----------------------------------------------------

_HEADER = re.compile(r"^#?\s*(\[\[?backfill(?:\.\w+)?\]\]?)\s*(?:#.*)?$")
_spec = importlib.util.spec_from_file_location("docs_hooks", EXAMPLES.parent / "docs" / "hooks.py")
ref = importlib.util.module_from_spec(_spec)
sys.modules["docs_hooks"] = ref
_spec.loader.exec_module(ref)


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split a TOML file into its tables, commented-out ones included: (header, lines)."""
    blocks: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        match = _HEADER.match(line.strip())
        if match:
            blocks.append((match.group(1), []))
        else:
            blocks[-1][1].append(line)
    return blocks


def _mentions(path: str, lines: list[str]) -> bool:
    first, _, sub = path.partition(".")
    pattern = rf"^\s*#?\s*{first}\s*=" + (rf".*\b{sub}\s*=" if sub else "")
    return any(re.search(pattern, line) for line in lines)


def _example_tables() -> dict[str, list[str]]:
    blocks = _blocks((EXAMPLES / "backfill.toml").read_text())
    sources = [lines for header, lines in blocks if header == "[[backfill.sources]]"]
    tables = {
        "[backfill]": [line for h, ls in blocks if h == "[backfill]" for line in ls]
        + [f"{h.strip('[]').split('.')[-1]} = ..." for h, _ in blocks if h.startswith("[[")],
        "[[backfill.requests]]": [
            line for h, ls in blocks if h == "[[backfill.requests]]" for line in ls
        ],
        "[[backfill.sources]]: every source": [line for ls in sources for line in ls],
    }
    for header, lines in blocks:  # [backfill.x] sub-tables
        if header.startswith("[backfill.") and not header.startswith("[["):
            tables[header] = lines
            tables["[backfill]"].append(f"{header.strip('[]').split('.')[-1]} = ...")
    for lines in sources:
        plugin = next(
            (m.group(1) for line in lines if (m := re.match(r'^#?\s*plugin = "(\w+)"', line))),
            None,
        )
        tables.setdefault(f'plugin = "{plugin}"', []).extend(lines)
    return tables


def test_example_backfill_toml_shows_every_key_of_every_struct():
    # Keys come from the structs of core and every built-in plugin, as the reference has them.
    tables = _example_tables()

    def shown(heading: str, path: str) -> bool:
        first, _, sub = path.partition(".")
        table = f"[backfill.{first}]"
        if heading == "[backfill]" and sub and table in tables:
            return _mentions(sub, tables[table])
        return _mentions(path, tables.get(heading, []))

    missing = [
        f"{heading}: {k.path}"
        for heading, _, keys in ref.config_tables()
        for k in keys
        if not shown(heading, k.path)
    ]
    assert missing == []


def test_the_key_check_sees_a_key_that_is_missing():
    lines = ['path = "x"', "# columns = { date = 'Date' }"]
    assert _mentions("path", lines) and _mentions("columns.date", lines)
    assert not _mentions("columns.time", lines) and not _mentions("timezone", lines)


def test_commented_out_values_in_the_example_have_the_keys_types():
    # A commented-out line must work when uncommented: its value converts to the field's type.
    registry = build_registry(entry_points=False)
    structs = {
        "[backfill]": BackfillConfig,
        "[[backfill.requests]]": BarRequestConfig,
        "[[backfill.sources]]: every source": SourceConfig,
        **{f'plugin = "{n}"': registry.get(n).config_type for n in registry.names()},
        **{
            f"[backfill.{f.name}]": struct
            for f in msgspec.structs.fields(BackfillConfig)
            for struct in ref.nested_structs(f.type)
            if struct not in (BarRequestConfig, SourceConfig)
        },
    }
    checked, wrong = 0, []
    for heading, lines in _example_tables().items():
        fields = {f.name: f.type for f in msgspec.structs.fields(structs[heading])}
        for line in lines:
            match = re.match(r"^#\s*(\w+\s*=.*)$", line.strip())
            if not match or match.group(1).split("=")[0].strip() not in fields:
                continue
            try:
                doc = tomllib.loads(match.group(1))
            except tomllib.TOMLDecodeError:
                doc = tomllib.loads(re.sub(r"\s+#[^\"']*$", "", match.group(1)))
            ((key, value),) = doc.items()
            checked += 1
            try:
                msgspec.convert(value, fields[key])
            except msgspec.ValidationError as e:
                wrong.append(f"{heading} {key}: {e}")
    assert checked > 20 and wrong == []


# -- the example plugin -------------------------------------------------------------------------

PLUGIN = EXAMPLES / "plugin"


def _code_lines(path: Path) -> int:
    # Lines that hold code: not blank, not a comment, not part of a docstring.
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings |= set(range(value.lineno, value.end_lineno + 1))
    return sum(
        1
        for n, line in enumerate(source.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and n not in docstrings
    )


def test_example_plugin_is_under_60_lines_of_code():
    assert _code_lines(PLUGIN / "nb_jsonl.py") < 60


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    # The example installed as a user would, from its own pyproject (into a target folder, so
    # the project's venv is left alone; .ci/run also installs it into a fresh venv).
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "nautilus_backfill.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PLUGIN / "example",
    )


def test_example_plugin_is_listed_checked_and_fetches_through_its_entry_point(plugin_site):
    listed = json.loads(_cli(plugin_site, "plugins", "--json").stdout)
    row = next(p for p in listed["plugins"] if p["name"] == "jsonl")
    assert (row["package"], row["version"], row["hooks"]) == (
        "nb-jsonl",
        "0.1.0",
        ["register_sources"],
    )
    check = _cli(plugin_site, "check", "backfill.toml")
    assert check.returncode == 0 and check.stdout == "backfill.toml: ok (1 request, 1 source)\n", (
        check.stderr
    )
    out = _cli(plugin_site, "fetch", "backfill.toml", "--json")
    assert out.returncode == 0, out.stderr
    (req,) = json.loads(out.stdout)["requests"]
    assert (req["status"], req["injected"], req["first"], req["last"]) == (
        "ok",
        20,
        "2025-01-02T09:00:00Z",
        "2025-01-02T09:19:00Z",
    )
    # The truncated line 13 is refused and located; the 10 older bars fall outside the 20 wanted.
    assert req["dropped"] == {"outside_window": 10, "unparseable": 1}
    assert any(e.endswith("EURUSD-1-MINUTE.jsonl: line 13") for e in req["examples"])


def test_example_plugin_check_names_a_missing_file(plugin_site, tmp_path):
    config = (PLUGIN / "example" / "backfill.toml").read_text().replace("{symbol}", "{raw_symbol}")
    (tmp_path / "c.toml").write_text(config)
    out = _cli(plugin_site, "check", str(tmp_path / "c.toml"))
    assert out.returncode == 2
    assert (
        "backfill.sources[0].path: no file matches {raw_symbol}-{step}.jsonl for EUR/USD.SIM"
        in out.stderr
    )
