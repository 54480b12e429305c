"""Messages a user can act on, and CSV edge cases refused clearly (issue 10 #5, issue 11 #14)."""

from __future__ import annotations

import csv
import os
import time
import warnings
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from nautilus_backfill.source import BarRequest, SourceResult, Span
from nautilus_backfill.validate import validate
from nautilus_trader.model.data import BarType

# pyarrow's "Exception ignored" goes to pytest's unraisable hook, not to stderr: fail on it.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

REQ = {
    "bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL",
    "start": "2021-01-04T00:00:00Z",
    "end": "2021-01-05T00:00:00Z",
    "price_precision": 5,
    "size_precision": 0,
}
HEADER = "timestamp,open,high,low,close,volume\n"
OK = ",1.1,1.2,1.0,1.1,10\n"


def _src(path, **kw):
    return [{"name": "file", "plugin": "csv", "path": str(path), **kw}]


def _write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_line_numbers_are_file_lines_past_blank_and_broken_lines(tmp_path, run):
    text = (
        HEADER  # line 1
        + "2021-01-04T09:30:00Z"
        + OK  # 2
        + "\n"  # 3: blank, not a row
        + "2021-01-04T09:31:00Z,1.1\n"  # 4: too few fields
        + "2021-01-04T09:32:00Z"
        + OK  # 5
        + "2021-01-04T09:33:00Z,1.1,1.0,1.2,1.1,1\n"  # 6: high < low
        + "2021-01-04T09:31:30Z"
        + OK  # 7: misaligned
    )
    report = run([REQ], _src(_write(tmp_path, text))).report.requests[0]
    assert report.dropped == {"unparseable": 1, "ohlc_inconsistent": 1, "misaligned": 1}
    assert report.injected == 2
    examples = "\n".join(report.examples)
    assert "unparseable: data.csv: line 4 (2021-01-04T09:31:00Z,1.1)" in examples
    assert "ohlc_inconsistent: data.csv: line 6 (2021-01-04T09:33:00Z)" in examples
    assert (
        "misaligned: data.csv: line 7 (2021-01-04T09:31:30Z): not on the 1-minute grid" in examples
    )


def test_daily_bars_misaligned_in_a_local_zone_say_what_grid(tmp_path, run):
    p = _write(tmp_path, "Date,Open,High,Low,Close,Volume\n2021-01-04,1,2,0.5,1.5,1\n")
    req = dict(
        REQ,
        bar_type="AAPL.XNAS-1-DAY-LAST-EXTERNAL",
        start="2021-01-01T00:00:00Z",
        end="2021-01-10T00:00:00Z",
    )
    report = run([req], _src(p, timezone="America/New_York")).report.requests[0]
    assert report.dropped == {"misaligned": 1}
    assert (
        "line 2 (2021-01-04): not on the 1-day grid (bars open at whole multiples of it from 00:00 UTC)"
        in report.examples[0]
    )


def _backtrader_short_header(shared, tmp_path):
    # The backtrader file with its header one name short (7 names, 8 fields a row).
    src = shared / "csv" / "backtrader-2006-min-005-date-time-split.csv"
    lines = src.read_text().splitlines()
    p = tmp_path / "bt.csv"
    p.write_text("Date,Time,Open,High,Low,Close,Volume\n" + "\n".join(lines[1:]) + "\n")
    return src, p


def test_header_shorter_than_rows_is_refused_with_the_positions_to_give(shared, run, tmp_path):
    _, p = _backtrader_short_header(shared, tmp_path)
    req = {
        "bar_type": "IDX.BT-5-MINUTE-LAST-EXTERNAL",
        "start": "2006-01-01T00:00:00Z",
        "end": "2007-01-01T00:00:00Z",
        "price_precision": 2,
        "size_precision": 0,
    }
    report = run([req], _src(p, timestamp_is="close")).report.requests[0]
    assert report.sources[0].status == "error" and report.received == 0
    error = report.sources[0].error
    assert "bt.csv: line 1 (the header) has 7 names but rows have 8 fields" in error
    assert (
        "columns = { date = 0, time = 1, open = 2, high = 3, low = 4, close = 5, volume = 6 }"
        in error
    )
    assert "row -1" not in error


def test_header_shorter_than_rows_reads_by_the_positions_given(shared, run, tmp_path):
    src, p = _backtrader_short_header(shared, tmp_path)
    req = {
        "bar_type": "IDX.BT-5-MINUTE-LAST-EXTERNAL",
        "start": "2006-01-01T00:00:00Z",
        "end": "2007-01-01T00:00:00Z",
        "price_precision": 2,
        "size_precision": 0,
    }
    columns = {"date": 0, "time": 1, "open": 2, "high": 3, "low": 4, "close": 5, "volume": 6}
    result = run([req], _src(p, timestamp_is="close", columns=columns))
    (bars,) = result.bars.values()
    with open(src) as fh:
        rows = list(csv.reader(fh))[1:]
    assert len(bars) == len(rows)
    last = rows[-1]
    close = datetime.fromisoformat(f"{last[0]}T{last[1]}").replace(tzinfo=UTC)
    assert bars[-1].ts_init == int(close.timestamp()) * 10**9
    assert [f"{float(x):.2f}" for x in last[2:6]] == [
        str(bars[-1].open),
        str(bars[-1].high),
        str(bars[-1].low),
        str(bars[-1].close),
    ]
    assert any("7 names for 8 fields" in n for n in result.report.requests[0].sources[0].notes)


def test_utf8_bom_does_not_hide_the_header(tmp_path, run):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + (HEADER + "2021-01-04T09:30:00Z" + OK).encode())
    result = run([REQ], _src(p))
    assert result.report.requests[0].injected == 1


def test_two_close_columns_are_refused_naming_both(tmp_path, run):
    p = _write(
        tmp_path, "timestamp,open,high,low,close,close\n2021-01-04T09:30:00Z,1,2,0.5,1.5,1.6\n"
    )
    report = run([REQ], _src(p)).report.requests[0]
    error = report.sources[0].error
    assert (
        report.injected == 0
        and "'close' 2 times (positions 4, 5" in error
        and "columns.close" in error
    )
    result = run([REQ], _src(p, columns={"close": 5}))
    (bars,) = result.bars.values()
    assert str(bars[0].close) == "1.60000"


def test_binary_file_is_refused_without_library_noise(tmp_path, run, capfd):
    p = tmp_path / "bars.csv"
    p.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = run([REQ], _src(p)).report.requests[0]
    assert report.sources[0].status == "error"
    err = report.sources[0].error
    assert "bars.csv" in err and ("NUL byte" in err or "not utf-8 text" in err)
    captured = capfd.readouterr()
    assert "Exception ignored" not in captured.err and "Traceback" not in captured.err


def test_huge_values_are_out_of_range_without_numpy_warnings(tmp_path, run):
    p = _write(
        tmp_path,
        HEADER + "2021-01-04T09:30:00Z,1e308,1e308,1e308,1e308,1e308\n2021-01-04T09:31:00Z" + OK,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = run([REQ], _src(p)).report.requests[0]
    assert report.dropped == {"out_of_range": 1} and report.injected == 1


def test_non_utf8_file_is_refused_with_the_encoding_key(tmp_path, run):
    p = tmp_path / "latin.csv"
    p.write_bytes(
        ("Zeit;Eröffnung;Hoch;Tief;Schluß\n2021-01-04T09:30:00Z;1,1;1,2;1,0;1,1\n").encode(
            "latin-1"
        )
    )
    report = run([REQ], _src(p)).report.requests[0]
    error = report.sources[0].error
    assert (
        "latin.csv: line 1 is not utf-8 text (byte 0xf6)" in error
        and 'encoding = "latin-1"' in error
    )
    report = run(
        [REQ],
        _src(
            p,
            encoding="latin-1",
            columns={"timestamp": 0, "open": 1, "high": 2, "low": 3, "close": 4},
        ),
    ).report.requests[0]
    assert report.sources[0].status != "error"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_and_folder_are_refused_up_front(tmp_path, run):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    started = time.monotonic()
    report = run([REQ], _src(fifo, timeout="20s")).report.requests[0]
    assert time.monotonic() - started < 5
    assert "pipe.csv: not a regular file" in report.sources[0].error
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    report = run([REQ], _src(folder)).report.requests[0]
    assert "dir.csv: is a folder, not a file" in report.sources[0].error


def test_rounded_counts_only_the_bars_returned():
    # 3 rows need rounding; 2 of them are dropped (one misaligned, one a duplicate: the same
    # bar as the row before once rounded).
    bar_type = BarType.from_str("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL")
    minute = 60 * 10**9
    t0 = 1_609_750_800 * 10**9
    ts = [t0, t0 + minute // 2, t0 + minute, t0 + minute]
    v = [1.123456, 1.123456, 1.12346, 1.123456]
    table = pa.table(
        {"ts": ts, "open": v, "high": [2.0] * 4, "low": [1.0] * 4, "close": v, "volume": [1.0] * 4}
    )
    req = BarRequest(bar_type, minute, t0 + 10 * minute, t0, None)
    checked = validate(SourceResult(table), req, Span(t0, t0 + 10 * minute), 5, 0)
    assert len(checked.bars) == 2
    assert checked.dropped == Counter({"misaligned": 1, "duplicate": 1})
    assert checked.rounded == 1
    # The same minute with another value once rounded: neither row is used.
    table = table.set_column(1, "open", pa.array([1.123456, 1.123456, 1.1, 1.123456]))
    table = table.set_column(4, "close", pa.array([1.123456, 1.123456, 1.1, 1.123456]))
    checked = validate(SourceResult(table), req, Span(t0, t0 + 10 * minute), 5, 0)
    assert len(checked.bars) == 1 and checked.rounded == 1
    assert checked.dropped == Counter({"misaligned": 1, "ambiguous": 2})
    assert checked.ambiguous_at.tolist() == [t0 + minute]


def test_a_headerless_file_with_a_separate_time_field_is_refused_with_the_columns_to_set(tmp_path, run):
    p = tmp_path / "mt4.csv"
    p.write_text("2021.01.04,09:30,1.2250,1.2260,1.2240,1.2255,100\n2021.01.04,09:31,1.2255,1.2260,1.2240,1.2250,100\n")
    req = {"bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", "start": "2021-01-01T00:00:00Z",
           "end": "2021-02-01T00:00:00Z", "price_precision": 5, "size_precision": 0}
    r = run([req], [{"name": "f", "plugin": "csv", "path": str(p)}]).report.requests[0]
    assert r.injected == 0 and "columns = { date = 0, time = 1, open = 2" in r.sources[0].error
    cols = {"date": 0, "time": 1, "open": 2, "high": 3, "low": 4, "close": 5, "volume": 6}
    r = run([req], [{"name": "f", "plugin": "csv", "path": str(p), "columns": cols}]).report.requests[0]
    assert r.injected == 2 and r.last == 1_609_752_660 * 10**9


def test_a_metatrader_5_export_is_read_by_its_bracketed_header(tmp_path, run):
    # MT5's "Export bars": tab-separated, <DATE> <TIME> ... <TICKVOL> <VOL> <SPREAD>.
    p = tmp_path / "EURUSD_M1.csv"
    rows = [f"2025.01.02\t07:{40 + i}:00\t1.0250{i}\t1.0260{i}\t1.0240{i}\t1.0255{i}\t{100 + i}\t0\t12"
            for i in range(5)]
    p.write_text("<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
                 + "\n".join(rows) + "\n")
    req = {"bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", "bars": 5, "end": "2025-01-02T08:00:00Z",
           "price_precision": 5, "size_precision": 0, "max_age": "off"}
    result = run([req], [{"name": "mt5", "plugin": "csv", "path": str(p), "timestamp_format": "%Y.%m.%d %H:%M:%S"}])
    report = result.report.requests[0]
    assert report.injected == 5, report.to_dict()
    (bars,) = result.bars.values()
    assert str(bars[0].open) == "1.02500" and str(bars[-1].close) == "1.02554"


def test_every_missing_column_is_named_at_once(tmp_path, run):
    p = tmp_path / "few.csv"
    p.write_text("Date,Time,Price\n2025-01-02,07:40,1.0\n")
    report = run([REQ], [{"name": "few", "plugin": "csv", "path": str(p)}]).report.requests[0]
    assert "no 'open', 'high', 'low', 'close' columns in the header (Date, Time, Price" in report.sources[0].error
    assert "set columns.open, columns.high, columns.low, columns.close" in report.sources[0].error
