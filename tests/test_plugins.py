"""Plugins: a real third-party package through its entry point, switches, clear failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src = tmp_path_factory.mktemp("pkg")
    (src / "nb_constant").mkdir()
    (src / "nb_constant" / "__init__.py").write_text(PLUGIN)
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
        [tool.setuptools]
        packages = ["nb_constant"]
    '''))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return target


def _cli(installed, *args, **env):
    full = {**os.environ, "PYTHONPATH": str(installed), **env}
    return subprocess.run([sys.executable, "-m", "nautilus_backfill.cli", *args],
                          capture_output=True, text=True, env=full)


def test_third_party_plugin_is_listed_with_package_and_version(installed):
    out = _cli(installed, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {p["name"]: p for p in data["plugins"]}
    assert rows["constant"]["package"] == "nb-constant" and rows["constant"]["version"] == "0.3.1"
    assert {"csv", "parquet"} <= set(rows)
    assert data["broken"][0]["name"] == "broken" and "nb_missing_module" in data["broken"][0]["error"]


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
    assert {p["name"] for p in json.loads(out.stdout)["plugins"]} == {"ib", "parquet"}


def test_missing_plugin_names_it_and_the_installed_ones(installed, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[backfill]\n[[backfill.requests]]\nbar_type = "X.Y-1-MINUTE-LAST-EXTERNAL"\nbars = 1\n'
                   '[[backfill.sources]]\nname = "a"\nplugin = "broken"\n')
    out = _cli(installed, "check", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "plugin 'broken' failed to load" in out.stderr and "installed: constant, csv, ib, parquet" in out.stderr
    cfg.write_text(cfg.read_text().replace('"broken"', '"ibkr"'))
    out = _cli(installed, "check", str(cfg))
    assert "no plugin 'ibkr'" in out.stderr and out.returncode == 2


def test_duplicate_source_name_is_refused_loudly():
    class Dup:
        @hookimpl
        def register_sources(self, register):
            register("csv", BarSource)

    with pytest.raises(PluginError, match="already registered by plugin 'csv'"):
        build_registry(entry_points=False, extra=[("dup", Dup())])


def test_misspelled_hook_fails_at_start_up():
    class Typo:
        @hookimpl
        def register_source(self, register):
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        build_registry(entry_points=False, extra=[("typo", Typo())])


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
