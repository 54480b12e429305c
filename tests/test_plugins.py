"""Plugins: a real third-party package through its entry point, switches, clear failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from nautilus_backfill import BarSource, hookimpl
from nautilus_backfill.errors import PluginError
from nautilus_backfill.registry import build_registry

PLUGIN = '''
import numpy as np
import pyarrow as pa
from nautilus_backfill import BarSource, SourceConfig, SourceResult, hookimpl


class ConstantConfig(SourceConfig, frozen=True, kw_only=True):
    price: float = 1.25


class ConstantSource(BarSource):
    config_type = ConstantConfig

    def fetch(self, request, span):
        n = span.limit or 10
        ts = span.end - request.step_ns * np.arange(n, 0, -1, dtype=np.int64)
        p = np.full(n, self.config.price)
        return SourceResult(pa.table({"ts": ts, "open": p, "high": p, "low": p, "close": p,
                                      "volume": np.ones(n)}), price_precision=2, size_precision=0)


@hookimpl
def register_sources(register):
    register("constant", ConstantSource)
'''


BAD_HOOK = """
from nautilus_backfill import hookimpl


@hookimpl
def register_sources(reg):  # pluggy rejects the parameter name
    reg("badhook", object)
"""

RAISER = """
from nautilus_backfill import hookimpl


@hookimpl
def register_sources(register):
    raise RuntimeError("licence server unreachable")
"""

# A source whose fetch returns whatever its `give` key names: each a wrong answer.
JUNK = """
import numpy as np
import pyarrow as pa
from nautilus_backfill import BarSource, SourceConfig, SourceResult, hookimpl


class JunkConfig(SourceConfig, frozen=True, kw_only=True):
    give: str = "none"


def _table(n, **override):
    ts = 1_704_067_200_000_000_000 + 60_000_000_000 * np.arange(n, dtype=np.int64)
    cols = {"ts": ts, "open": np.ones(n), "high": np.ones(n), "low": np.ones(n),
            "close": np.ones(n), "volume": np.ones(n)}
    cols.update(override)
    return pa.table({k: v for k, v in cols.items() if v is not None})


class JunkSource(BarSource):
    config_type = JunkConfig

    def fetch(self, request, span):
        give = self.config.give
        if give == "none":
            return None
        if give == "string":
            return "bars"
        if give == "dict":
            return {"ts": [1], "open": [1.0]}
        if give == "table":
            return _table(5)
        if give == "pandas":
            return SourceResult(_table(5).to_pandas())
        if give == "string_prices":
            return SourceResult(_table(5, close=np.array(["1"] * 5)), price_precision=2,
                                size_precision=0)
        if give == "float_ts":
            return SourceResult(_table(5, ts=np.arange(5) * 1.5), price_precision=2, size_precision=0)
        if give == "no_close":
            return SourceResult(_table(5, close=None), price_precision=2, size_precision=0)
        if give == "precision":
            return SourceResult(_table(5), price_precision=40, size_precision=0)
        if give == "edge":
            return SourceResult(_table(5), timestamp_is="middle", price_precision=2, size_precision=0)
        raise ValueError(give)


@hookimpl
def register_sources(register):
    register("junk", JunkSource)
"""

WRONG_ANSWERS = {
    "none": ("fetch returned NoneType, not a SourceResult", 0),
    "string": ("fetch returned str, not a SourceResult", 0),
    "dict": ("fetch returned dict, not a SourceResult", 0),
    "table": ("fetch returned Table, not a SourceResult (wrap the table", 5),
    "pandas": ("SourceResult.table is DataFrame, not a pyarrow Table", 5),
    "string_prices": ("column 'close' is string; it must be numeric", 5),
    "float_ts": ("column 'ts' is double; it must be int64 UNIX nanoseconds", 5),
    "no_close": ("its table has no 'close' column", 5),
    "precision": ("price_precision is 40; NautilusTrader takes 0 to 16", 5),
    "edge": ("timestamp_is is 'middle'; it must be 'open' or 'close'", 5),
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src = tmp_path_factory.mktemp("pkg")
    for name, code in (("nb_constant", PLUGIN), ("nb_badhook", BAD_HOOK), ("nb_raiser", RAISER),
                       ("nb_junk", JUNK)):
        (src / name).mkdir()
        (src / name / "__init__.py").write_text(code)
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "nb-constant"
        version = "0.3.1"
        [project.entry-points.nautilus_backfill]
        constant = "nb_constant"
        broken = "nb_missing_module"
        badhook = "nb_badhook"
        raiser = "nb_raiser"
        junk = "nb_junk"
        [tool.setuptools]
        packages = ["nb_constant", "nb_badhook", "nb_raiser", "nb_junk"]
    '''))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return target


BUILT_IN = build_registry(entry_points=False).names()


def _cli(installed, *args, **env):
    # Only this test's third-party plugins load, whatever else is installed in the venv.
    full = {**os.environ, "PYTHONPATH": str(installed),
            "NAUTILUS_BACKFILL_LOAD_PLUGINS": "constant,broken,badhook,raiser,junk", **env}
    return subprocess.run([sys.executable, "-m", "nautilus_backfill.cli", *args],
                          capture_output=True, text=True, env=full)


def test_third_party_plugin_is_listed_with_package_and_version(installed):
    out = _cli(installed, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {p["name"]: p for p in data["plugins"]}
    assert rows["constant"]["package"] == "nb-constant" and rows["constant"]["version"] == "0.3.1"
    assert {"csv", "parquet"} <= set(rows)
    broken = {b["name"]: b["error"] for b in data["broken"]}
    assert "nb_missing_module" in broken["broken"]


def test_third_party_plugin_serves_bars(installed, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent('''
        [backfill]
        [[backfill.requests]]
        bar_type = "XYZ.SIM-1-MINUTE-LAST-EXTERNAL"
        bars = 7
        end = "2024-01-01T00:00:00Z"
        [[backfill.sources]]
        name = "const"
        plugin = "constant"
        price = 2.5
    '''))
    out = _cli(installed, "fetch", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    req = json.loads(out.stdout)["requests"][0]
    assert req["injected"] == 7 and req["sources"][0]["used"] == 7
    assert req["last"] == "2023-12-31T23:59:00Z"


def test_allow_list_and_block_list(installed, tmp_path):
    out = _cli(installed, "plugins", "--json", NAUTILUS_BACKFILL_LOAD_PLUGINS="")
    assert "constant" not in {p["name"] for p in json.loads(out.stdout)["plugins"]}
    out = _cli(installed, "plugins", "--json", NAUTILUS_BACKFILL_BLOCK_PLUGINS="csv,constant")
    names = {p["name"] for p in json.loads(out.stdout)["plugins"]}
    assert names == (set(BUILT_IN) - {"csv"}) | {"junk"}


def test_missing_plugin_names_it_and_the_installed_ones(installed, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[backfill]\n[[backfill.requests]]\nbar_type = "X.Y-1-MINUTE-LAST-EXTERNAL"\nbars = 1\n'
                   '[[backfill.sources]]\nname = "a"\nplugin = "broken"\n')
    out = _cli(installed, "check", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    installed_names = ", ".join(sorted([*BUILT_IN, "constant", "junk"]))
    assert "plugin 'broken' failed to load" in out.stderr and f"installed: {installed_names}" in out.stderr
    cfg.write_text(cfg.read_text().replace('"broken"', '"ibkr"'))
    out = _cli(installed, "check", str(cfg))
    assert "no plugin 'ibkr'" in out.stderr and out.returncode == 2


def test_duplicate_source_name_is_refused_loudly_and_fails_only_that_plugin():
    class Dup:
        @hookimpl
        def register_sources(self, register):
            register("csv", BarSource)

    registry = build_registry(entry_points=False, extra=[("dup", Dup())])
    assert "already registered by plugin 'csv'" in registry.broken["dup"]
    assert registry.entries["csv"].plugin == "csv"
    with pytest.raises(PluginError, match=r"plugin 'dup' failed to load.*already registered"):
        registry.get("dup")


def test_misspelled_hook_fails_at_start_up_as_a_broken_plugin():
    class Typo:
        @hookimpl
        def register_source(self, register):
            pass

    registry = build_registry(entry_points=False, extra=[("typo", Typo())])
    assert "unknown hook" in registry.broken["typo"] and "register_source" in registry.broken["typo"]
    assert set(BUILT_IN) <= set(registry.names())


def test_validate_bars_hook_adds_a_named_reason(tmp_path):
    import numpy as np
    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict

    class NoFlat:
        @hookimpl
        def validate_bars(self, request, source, table):
            high = table.column("high").to_numpy()
            low = table.column("low").to_numpy()
            return {"flat_bar": np.asarray(high == low)}

    registry = build_registry(entry_points=False, extra=[("noflat", NoFlat())])
    p = tmp_path / "b.csv"
    p.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,1,1,1\n2024-01-01T00:01:00Z,1,2,1,1\n")
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": "X.Y-1-MINUTE-LAST-EXTERNAL",
        "start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "price_precision": 2, "size_precision": 0}],
        "sources": [{"name": "f", "plugin": "csv", "path": str(p)}]}}, registry=registry)
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert report.dropped == {"flat_bar": 1} and report.injected == 1 and report.accounted()


def test_broken_third_party_plugins_fail_only_themselves(installed, tmp_path):
    out = _cli(installed, "plugins", "--json")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    data = json.loads(out.stdout)
    broken = {b["name"]: b["error"] for b in data["broken"]}
    assert "register_sources(reg) Argument(s) {'reg'} are declared in the hookimpl but can not be found" in broken["badhook"]
    assert broken["raiser"] == "register_sources failed: RuntimeError: licence server unreachable"
    assert {"constant", "junk", *BUILT_IN} <= {p["name"] for p in data["plugins"]}
    text = _cli(installed, "plugins")
    assert "badhook" in text.stdout and "BROKEN" in text.stdout and text.returncode == 0

    cfg = tmp_path / "c.toml"
    cfg.write_text("""[backfill]
[[backfill.requests]]
bar_type = "XYZ.SIM-1-MINUTE-LAST-EXTERNAL"
bars = 7
end = "2024-01-01T00:00:00Z"
[[backfill.sources]]
name = "const"
plugin = "constant"
""")
    assert _cli(installed, "check", str(cfg)).returncode == 0
    out = _cli(installed, "fetch", str(cfg), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["requests"][0]["injected"] == 7
    cfg.write_text(cfg.read_text().replace('"constant"', '"raiser"'))
    out = _cli(installed, "check", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "plugin 'raiser' failed to load: register_sources failed: RuntimeError" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def junk_registry():
    import types

    module = types.ModuleType("nb_junk")
    exec(JUNK, module.__dict__)
    return build_registry(entry_points=False, extra=[("junk", module)])


@pytest.mark.parametrize("give", sorted(WRONG_ANSWERS))
def test_a_wrong_fetch_answer_fails_the_source_and_the_fallback_is_asked(junk_registry, tmp_path, give):
    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict

    message, rows = WRONG_ANSWERS[give]
    csv = tmp_path / "b.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"2023-12-31T23:{m:02d}:00Z,1,1,1,1,1\n" for m in range(50, 60)))
    cfg = config_from_dict({"backfill": {
        "requests": [{"bar_type": "XYZ.SIM-1-MINUTE-LAST-EXTERNAL", "bars": 7, "end": "2024-01-01T00:00:00Z",
                      "price_precision": 2, "size_precision": 0}],
        "sources": [{"name": "primary", "plugin": "junk", "give": give},
                    {"name": "file", "plugin": "csv", "path": str(csv)}]}}, registry=junk_registry)
    report = Backfill(cfg, registry=junk_registry).fetch().report
    req = report.to_dict()["requests"][0]
    junk, fallback = req["sources"]
    assert junk["status"] == "error" and message in junk["error"], junk
    assert "plugin 'junk'" in junk["error"]
    assert junk["received"] == rows and req["dropped"].get("bad_answer", 0) == rows
    assert fallback["status"] == "ok" and req["injected"] == 7 and req["status"] == "ok"
    assert junk["used"] == 0 and fallback["used"] == 7
    assert report.requests[0].accounted()


@pytest.mark.parametrize(
    ("answer", "note"),
    [
        (lambda n: {"one": np.array([True])}, "mask 'one' must be a boolean array of 2 values (one per bar), was bool of shape (1,)"),
        (lambda n: {"ints": np.ones(n, dtype=np.int64)}, "mask 'ints' must be a boolean array of 2 values (one per bar), was int64"),
        (lambda n: 1 / 0, "validate_bars of plugin 'checker' raised ZeroDivisionError: division by zero; its checks were skipped"),
        (lambda n: [True] * n, "validate_bars of plugin 'checker' returned list, not a dict of masks; skipped"),
    ],
)
def test_a_faulty_validate_bars_hook_is_skipped_with_a_note_naming_it(tmp_path, answer, note):
    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict

    class Checker:
        @hookimpl
        def validate_bars(self, request, source, table):
            return answer(table.num_rows)

    class Good:
        @hookimpl
        def validate_bars(self, table):
            return {"flat_bar": table.column("high").to_numpy() == table.column("low").to_numpy()}

    registry = build_registry(entry_points=False, extra=[("checker", Checker()), ("good", Good())])
    p = tmp_path / "b.csv"
    p.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,1,1,1\n2024-01-01T00:01:00Z,1,2,1,1\n")
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": "X.Y-1-MINUTE-LAST-EXTERNAL",
        "start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "price_precision": 2, "size_precision": 0}],
        "sources": [{"name": "f", "plugin": "csv", "path": str(p)}]}}, registry=registry)
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    # The faulty plugin's reasons are skipped, never broadcast; the good plugin still counts.
    assert report.dropped == {"flat_bar": 1} and report.injected == 1 and report.accounted()
    assert any(note in n for n in report.sources[0].notes), report.sources[0].notes


def test_inject_into_a_cache_works_beside_a_broken_plugin(tmp_path):
    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict
    from nautilus_trader.cache.cache import Cache
    from nautilus_trader.model.data import BarType

    class Raiser:
        @hookimpl
        def register_sources(self, register):
            raise RuntimeError("boom")

    registry = build_registry(entry_points=False, extra=[("raiser", Raiser())])
    assert "boom" in registry.broken["raiser"]
    p = tmp_path / "b.csv"
    p.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,1,1,1\n2024-01-01T00:01:00Z,1,2,1,1\n")
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": "X.Y-1-MINUTE-LAST-EXTERNAL",
        "start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "price_precision": 2, "size_precision": 0}],
        "sources": [{"name": "f", "plugin": "csv", "path": str(p)}]}}, registry=registry)
    cache = Cache()
    report = Backfill(cfg, registry=registry).inject(cache)
    assert report.requests[0].injected == 2
    assert len(cache.bars(BarType.from_str("X.Y-1-MINUTE-LAST-EXTERNAL"))) == 2
