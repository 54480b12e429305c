"""Bad input gets named drops or a clear error naming the file, never a traceback."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest
from nautilus_backfill import finish, validate
from nautilus_backfill.errors import ConfigError

REQ = {
    "bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL",
    "start": "2024-01-01T00:00:00Z",
    "end": "2024-01-02T00:00:00Z",
    "price_precision": 5,
    "size_precision": 0,
}
HEADER = "timestamp,open,high,low,close,volume\n"


def _src(path, **kw):
    return [{"name": "file", "plugin": "csv", "path": str(path), **kw}]


def _write(tmp_path, body, name="bars.csv"):
    p = tmp_path / name
    p.write_text(HEADER + body)
    return p


@pytest.mark.parametrize("chunk", [65_536, 3, 1])
def test_each_bad_row_gets_its_reason(tmp_path, run, monkeypatch, chunk):
    # Checks run in slices of `chunk` rows; a slice edge must not change any verdict.
    monkeypatch.setattr(validate, "CHUNK", chunk)
    body = (
        "2024-01-01T00:00:00Z,1.1,1.2,1.0,1.1,10\n"  # ok
        "2024-01-01T00:01:00Z,nan,1.2,1.0,1.1,10\n"  # non_finite
        "2024-01-01T00:02:00Z,1.1,inf,1.0,1.1,10\n"  # non_finite
        "2024-01-01T00:03:00Z,1.1,1.0,1.2,1.1,10\n"  # ohlc_inconsistent (high < low)
        "2024-01-01T00:04:00Z,1.1,1.2,1.0,1.1,-5\n"  # negative_volume
        "2024-01-01T00:05:00Z,0,1.2,1.0,1.1,1\n"  # non_positive_price
        "2024-01-01T00:06:30Z,1.1,1.2,1.0,1.1,1\n"  # misaligned
        "2024-01-01T00:08:00Z,1.1,1.2,1.0,1.1,1\n"  # ok, out of order below
        "2024-01-01T00:07:00Z,1.1,1.2,1.0,1.1,1\n"  # ok
        "2024-01-01T00:08:00Z,1.1,1.3,1.0,1.1,1\n"  # ambiguous: 00:08 again, another high
        "2024-01-01T00:07:00Z,1.1,1.2,1.0,1.1,1\n"  # duplicate: 00:07 again, the same bar
        "not a timestamp,1.1,1.2,1.0,1.1,1\n"  # unparseable
        "2024-01-01T00:09:00Z,abc,1.2,1.0,1.1,1\n"  # unparseable (junk value)
        "2024-01-01T00:10:00Z,1.1,1.2\n"  # unparseable (junk line)
        "2024-01-01T00:11:00Z,1.100000000001,1.2,1.0,1.1,1\n"  # ok, rounded
        "2024-01-01T00:12:00Z,1e14,1e14,1e14,1e14,1\n"  # out_of_range (over PRICE_MAX)
        "2024-01-01T00:13:00Z,1.1,1.2,1.0,1.1,1e20\n"  # out_of_range (over QUANTITY_MAX)
    )
    result = run([REQ], _src(_write(tmp_path, body)))
    report = result.report.requests[0]
    assert dict(report.dropped) == {
        "non_finite": 2,
        "ohlc_inconsistent": 1,
        "negative_volume": 1,
        "non_positive_price": 1,
        "misaligned": 1,
        "ambiguous": 2,
        "duplicate": 1,
        "unparseable": 3,
        "out_of_range": 2,
    }
    assert report.injected == 3 and report.rounded == 1
    (bars,) = result.bars.values()
    assert [b.ts_event for b in bars] == sorted(b.ts_event for b in bars)
    minutes = [(b.ts_event - bars[0].ts_event) // 60_000_000_000 for b in bars]
    assert minutes == [0, 7, 11]  # neither 00:08 row: which is right is unknown
    assert any("bars.csv: line" in e for e in report.examples)


def test_incomplete_bar_is_never_injected(tmp_path, run):
    body = "2024-01-01T23:58:00Z,1,1,1,1,1\n2024-01-01T23:59:00Z,1,1,1,1,1\n2024-01-01T23:59:30Z,1,1,1,1,1\n"
    req = dict(REQ, end="2024-01-01T23:59:45Z")
    report = run([req], _src(_write(tmp_path, body))).report.requests[0]
    # 23:59 closes at 00:00, after `end`: still forming, so the file source does not return it.
    (bars,) = run([req], _src(_write(tmp_path, body))).bars.values()
    assert report.injected == 1 and bars[-1].ts_init <= 1704153585 * 10**9


def test_non_positive_prices_allowed_when_configured(tmp_path, run):
    body = "2024-01-01T00:00:00Z,-1,0,-2,-1,1\n"
    report = run(
        [dict(REQ, allow_non_positive_prices=True)], _src(_write(tmp_path, body))
    ).report.requests[0]
    assert report.injected == 1


def test_wrong_column_name_names_file_and_header(tmp_path, run):
    p = _write(tmp_path, "2024-01-01T00:00:00Z,1,1,1,1,1\n")
    report = run([REQ], _src(p, columns={"close": "Last"})).report.requests[0]
    assert report.sources[0].status == "error"
    assert "bars.csv" in report.sources[0].error and "columns.close" in report.sources[0].error
    assert "timestamp, open, high, low, close, volume" in report.sources[0].error


def test_empty_file_is_an_empty_answer(tmp_path, run):
    p = tmp_path / "empty.csv"
    p.write_text("")
    report = run([REQ], _src(p)).report.requests[0]
    assert report.sources[0].status == "empty" and report.injected == 0 and not report.satisfied


def test_truncated_gzip_is_a_clear_source_error(tmp_path, run):
    data = gzip.compress((HEADER + "2024-01-01T00:00:00Z,1,1,1,1,1\n" * 5000).encode())
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(data[: len(data) // 2])
    report = run([REQ], _src(p)).report.requests[0]
    assert report.sources[0].status == "error"
    assert "cut.csv.gz" in report.sources[0].error


def test_unknown_timezone_is_a_config_error(tmp_path, run):
    with pytest.raises(
        ConfigError, match=r"backfill.sources\[0\].*unknown time zone 'Mars/Olympus'"
    ):
        run([REQ], _src(tmp_path / "x.csv", timezone="Mars/Olympus"))


def test_naive_timestamps_use_the_configured_zone(tmp_path, run):
    body = "2024-01-01 09:30:00,1,1,1,1,1\n"
    req = dict(REQ, bar_type="AAPL.XNAS-1-MINUTE-LAST-EXTERNAL", end="2024-01-02T00:00:00Z")
    (bars,) = run([req], _src(_write(tmp_path, body), timezone="America/New_York")).bars.values()
    assert bars[0].ts_event == 1704119400 * 10**9  # 14:30 UTC


def test_strict_source_falls_through_to_next(tmp_path, run):
    bad = _write(
        tmp_path, "2024-01-01T00:00:00Z,1,0.5,1,1,1\n2024-01-01T00:01:00Z,1,1,1,1,1\n", "bad.csv"
    )
    good = _write(
        tmp_path, "2024-01-01T00:00:00Z,1,1,1,1,1\n2024-01-01T00:01:00Z,1,1,1,1,1\n", "good.csv"
    )
    result = run(
        [REQ], [*_src(bad, strict=True), {"name": "good", "plugin": "csv", "path": str(good)}]
    )
    report = result.report.requests[0]
    assert report.sources[0].status == "invalid"
    assert report.dropped == {"ohlc_inconsistent": 1, "source_rejected": 1}
    assert report.sources[1].used == 2 and report.injected == 2


def test_cli_reports_bad_config_without_traceback(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[backfill]\ndeadline = "soon"\n[[backfill.requests]]\nbar_type = "X.Y-1-MINUTE-LAST-EXTERNAL"\nbars = 5\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "nautilus_backfill.cli", "check", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "backfill.deadline" in out.stderr and "soon" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_conversion_failure_is_a_named_drop_not_an_injection(tmp_path, run, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(finish, "to_bars", broken)
    body = "2024-01-01T00:00:00Z,1.1,1.2,1.0,1.1,10\n2024-01-01T00:01:00Z,1.1,1.2,1.0,1.1,10\n"
    result = run([REQ], _src(_write(tmp_path, body)))
    report = result.report.requests[0]
    assert report.injected == 0 and report.dropped == {"not_converted": 2}
    assert report.sources[0].used == 0
    assert "converting to Bar: ValueError: boom" in report.error
    assert result.bars == {}
