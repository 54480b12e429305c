"""`check` finds, offline, what `fetch` would fail on for a CSV source (issue 10 #6)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict

REQ = {
    "bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL",
    "bars": 10,
    "price_precision": 5,
    "size_precision": 0,
}
GOOD = "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1.5,1\n"


def _check(registry, tmp_path, body: str | bytes | None, name="data.csv", **source):
    if body is not None:
        p = tmp_path / name
        p.write_bytes(body if isinstance(body, bytes) else body.encode())
    src = {"name": "csv", "plugin": "csv", "path": str(tmp_path / name), **source}
    cfg = config_from_dict({"backfill": {"requests": [REQ], "sources": [src]}}, registry=registry)
    return Backfill(cfg, registry=registry).check()


def test_a_good_file_has_no_problems(registry, tmp_path):
    assert _check(registry, tmp_path, GOOD) == []


@pytest.mark.parametrize(
    ("body", "source", "expected"),
    [
        (None, {"path_name": "missing-*.csv"}, "backfill.sources[0].path: no file matches"),
        (GOOD, {"columns": {"close": "Last"}}, "backfill.sources[0].columns.close: "),
        (GOOD, {"columns": {"close": 9}}, "backfill.sources[0].columns.close: "),
        (
            "Date,Time,Open,High,Low,Close\n2006-01-02,09:05:00,1,2,0.5,1.5,0\n",
            {},
            "backfill.sources[0].columns: ",
        ),
        (GOOD, {"timestamp_format": "%d/%m/%Y"}, "backfill.sources[0].timestamp_format: "),
        (
            "timestamp,open,high,low,close\n01/02/2021,1,2,0.5,1.5\n",
            {},
            "backfill.sources[0].timestamp_format: ",
        ),
        ("Zeit,Eröffnung\n".encode("latin-1"), {}, "backfill.sources[0].encoding: "),
        (b"\x00\x01\x02binary", {}, "backfill.sources[0].path: "),
        (
            "timestamp,open,high,low,close,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5,1.6\n",
            {},
            "backfill.sources[0].columns.close: ",
        ),
    ],
)
def test_problems_name_the_key(registry, tmp_path, body, source, expected):
    name = source.pop("path_name", "data.csv")
    problems = _check(registry, tmp_path, body, name=name, **source)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_cli_check_exits_2_with_the_key_and_no_traceback(tmp_path):
    (tmp_path / "data.csv").write_text(GOOD)
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        '[[backfill.requests]]\nbar_type = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"\nbars = 5\n'
        '[[backfill.sources]]\nname = "csv"\nplugin = "csv"\npath = "data.csv"\ncolumns = { close = 7 }\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "nautilus_backfill.cli", "check", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out
    assert "backfill.sources[0].columns.close" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_a_template_that_matches_nothing_is_shown_filled(registry, tmp_path):
    src = {"name": "csv", "plugin": "csv", "path": str(tmp_path / "export" / "{symbol}-{step}.csv")}
    cfg = config_from_dict({"backfill": {"requests": [REQ], "sources": [src]}}, registry=registry)
    backfill = Backfill(cfg, registry=registry)
    filled = tmp_path / "export" / "EURUSD-1-MINUTE.csv"
    assert backfill.check() == [
        f"backfill.sources[0].path: no file matches {filled} (for EUR/USD.SIM-1-MINUTE-MID-EXTERNAL)"
    ]
    report = backfill.fetch().report.requests[0]
    assert report.sources[0].error == f"no file matches {filled}"


def test_a_parquet_fallback_whose_path_is_missing_or_lacks_the_bar_type_fails_check(
    registry, tmp_path, shared
):
    missing = {"name": "pq", "plugin": "parquet", "path": str(tmp_path / "catalog")}
    cfg = config_from_dict({"backfill": {"requests": [REQ], "sources": [missing]}}, registry=registry)
    assert Backfill(cfg, registry=registry).check() == [
        f"backfill.sources[0].path: {tmp_path / 'catalog'} does not exist"
    ]
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert report.sources[0].error == f"{tmp_path / 'catalog'} does not exist"
    # A catalog that exists but holds other bar types.
    (tmp_path / "catalog" / "data" / "bar" / "AAPL.XNAS-1-MINUTE-LAST-EXTERNAL").mkdir(parents=True)
    problems = Backfill(cfg, registry=registry).check()
    assert problems == [
        f"backfill.sources[0].path: the catalog {tmp_path / 'catalog'} holds no bars of "
        "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"
    ]


def test_fetch_exits_1_when_a_request_got_no_bar_whatever_on_insufficient_says(tmp_path):
    from click.testing import CliRunner
    from nautilus_backfill.cli import main

    (tmp_path / "data.csv").write_text(GOOD)
    cfg = tmp_path / "c.toml"
    base = """[backfill]
[[backfill.requests]]
bar_type = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"
bars = 10
end = "2024-01-01T00:05:00Z"
price_precision = 5
size_precision = 0
max_age = "off"
[[backfill.sources]]
name = "csv"
plugin = "csv"
path = "{path}"
"""
    cfg.write_text(base.format(path=tmp_path / "data.csv"))
    short = CliRunner().invoke(main, ["fetch", str(cfg)])
    assert "[SHORT]" in short.output and short.exit_code == 0  # one bar of ten: a warning
    cfg.write_text(base.format(path=tmp_path / "missing.csv"))
    failed = CliRunner().invoke(main, ["fetch", str(cfg)])
    assert "[FAILED]" in failed.output and failed.exit_code == 1


def test_a_decimal_comma_file_is_named_by_check_and_fetch_and_read_with_decimal(registry, tmp_path):
    body = "timestamp;open;high;low;close;volume\n" + "".join(
        f"2024-01-01T00:{m:02d}:00Z;1,0{m:02d}5;1,0{m:02d}9;1,0{m:02d}1;1,0{m:02d}7;1200\n"
        for m in range(10)
    )
    problems = _check(registry, tmp_path, body)
    assert problems == [
        "backfill.sources[0].decimal: data.csv: open values such as '1,0005' use a decimal comma; "
        'set decimal = ","'
    ]
    src = {"name": "csv", "plugin": "csv", "path": str(tmp_path / "data.csv")}
    end = {**REQ, "end": "2024-01-01T00:10:00Z", "max_age": "off"}
    cfg = config_from_dict({"backfill": {"requests": [end], "sources": [src]}}, registry=registry)
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert report.dropped == {"unparseable": 10}
    assert any("use a decimal comma" in n for n in report.sources[0].notes)
    cfg = config_from_dict({"backfill": {"requests": [end], "sources": [{**src, "decimal": ","}]}},
                           registry=registry)
    assert Backfill(cfg, registry=registry).check() == []
    result = Backfill(cfg, registry=registry).fetch()
    (bars,) = result.bars.values()
    assert len(bars) == 10 and str(bars[3].close) == "1.00370"
    # A stray word in one row reads the file as text: the decimal comma still applies.
    (tmp_path / "data.csv").write_text(body.replace("1,0047;1200", "1,0047;n/a"))
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert report.injected == 9 and report.dropped == {"unparseable": 1}


def test_a_decimal_comma_needs_another_delimiter(registry, tmp_path):
    from nautilus_backfill.errors import ConfigError

    src = {"name": "csv", "plugin": "csv", "path": "x.csv", "decimal": ",", "delimiter": ","}
    with pytest.raises(ConfigError, match="decimal: ',' needs another delimiter"):
        config_from_dict({"backfill": {"requests": [REQ], "sources": [src]}}, registry=registry)
