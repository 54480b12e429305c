"""LEAN data folders: trade and quote bars at every resolution, checked against the files."""

from __future__ import annotations

import csv
import io
import shutil
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
from nautilus_backfill.plugins.lean.source import LeanBarSource, LeanSourceConfig, lean_candidates
from nautilus_backfill.source import BarRequest, SourceContext, Span
from nautilus_backfill.timeutil import bar_step_ns
from nautilus_trader.model.data import BarType
from nautilus_trader.model.identifiers import InstrumentId

NY = ZoneInfo("America/New_York")
SPY_1M = "SPY.ARCA-1-MINUTE-LAST-EXTERNAL"
SPY_1D = "SPY.ARCA-1-DAY-LAST-EXTERNAL"
EURUSD = "EUR/USD.OANDA-1-MINUTE-{}-EXTERNAL"
FAR = 4_000_000_000 * 10**9


def _csv_rows(path: Path) -> list[list[str]]:
    # The independent reading: zipfile + csv, as LEAN's docs describe the files.
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        return list(csv.reader(io.StringIO(archive.read(name).decode())))


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 10**9


def _local_ms_to_utc_ns(day: str, ms: str, zone: ZoneInfo) -> int:
    wall = datetime.strptime(day, "%Y%m%d") + timedelta(milliseconds=int(ms))
    return _ns(wall.replace(tzinfo=zone))


def _source(root: Path, **keys) -> LeanBarSource:
    cfg = LeanSourceConfig(name="lean", plugin="lean", path=str(root), **keys)
    return LeanBarSource(cfg, SourceContext(base_dir=Path.cwd()))


def _request(bar_type: str, end_ns: int = FAR, start_ns: int | None = 0) -> BarRequest:
    bt = BarType.from_str(bar_type)
    return BarRequest(bt, bar_step_ns(bt), end_ns, start_ns, None)


def _fetch(source: LeanBarSource, bar_type: str, span: Span | None = None):
    request = _request(bar_type)
    return source.fetch(request, span or Span(0, request.end_ns))


@pytest.fixture
def lean(shared) -> Path:
    return shared / "lean"


def test_equity_minute_trade_bars_new_york_ms_since_midnight_and_deci_cents(lean):
    path = lean / "equity" / "usa" / "minute" / "spy" / "20131007_trade.zip"
    rows = _csv_rows(path)
    table = _fetch(_source(lean, extended_hours=True), SPY_1M).table
    assert table.num_rows == len(rows) == 828
    assert table.column("ts").to_pylist() == [
        _local_ms_to_utc_ns("20131007", r[0], NY) for r in rows
    ]
    for i, name in enumerate(("open", "high", "low", "close"), start=1):
        assert table.column(name).to_pylist() == [float(Decimal(r[i]) / 10000) for r in rows]
    assert table.column("volume").to_pylist() == [float(r[5]) for r in rows]
    # 14400000 ms is 04:00 in New York (EDT), 08:00 UTC; 167.41 dollars.
    assert table.column("ts")[0].as_py() == _ns(datetime(2013, 10, 7, 8, 0, tzinfo=UTC))
    assert table.column("open")[0].as_py() == 167.41


def test_equity_minute_bars_keep_the_regular_session_as_lean_does_by_default(lean):
    rows = _csv_rows(lean / "equity" / "usa" / "minute" / "spy" / "20131007_trade.zip")
    regular = [r for r in rows if 34_200_000 <= int(r[0]) < 57_600_000]  # 09:30 to 16:00
    result = _fetch(_source(lean), SPY_1M)
    assert result.table.num_rows == len(regular) == 390
    assert result.table.column("_row").to_pylist() == [rows.index(r) + 1 for r in regular]
    assert result.table.column("ts")[0].as_py() == _ns(datetime(2013, 10, 7, 13, 30, tzinfo=UTC))
    assert any(n.startswith("438 extended-hours bar(s)") for n in result.notes)


def test_equity_daily_bars_are_stamped_at_the_session_date_00_utc(lean):
    rows = _csv_rows(lean / "equity" / "usa" / "daily" / "spy.zip")
    table = _fetch(_source(lean), SPY_1D).table
    assert table.num_rows == len(rows) == 5849
    expect = [_ns(datetime.strptime(r[0], "%Y%m%d %H:%M").replace(tzinfo=UTC)) for r in rows]
    assert table.column("ts").to_pylist() == expect
    assert table.column("close").to_pylist() == [float(Decimal(r[4]) / 10000) for r in rows]
    assert table.column("_raw")[0].as_py() == "19980102 00:00"


def test_a_lean_daily_bar_is_the_same_bar_as_a_csv_daily_bar_of_that_day(lean, run, tmp_path):
    (row,) = [
        r
        for r in _csv_rows(lean / "equity" / "usa" / "daily" / "spy.zip")
        if r[0].startswith("20131007")
    ]
    prices = [str(Decimal(v) / 10000) for v in row[1:5]]
    (tmp_path / "spy.csv").write_text(
        f"date,open,high,low,close,volume\n2013-10-07,{','.join(prices)},{row[5]}\n"
    )
    req = {
        "bar_type": SPY_1D,
        "start": "2013-10-07T00:00:00Z",
        "end": "2013-10-08T00:00:00Z",
        "price_precision": 4,
        "size_precision": 0,
    }
    lean_bars = run([req], [{"name": "lean", "plugin": "lean", "path": str(lean)}]).bars
    csv_bars = run(
        [req], [{"name": "csv", "plugin": "csv", "path": str(tmp_path / "spy.csv")}]
    ).bars
    (bars,) = lean_bars.values()
    assert len(bars) == 1 and bars[0].ts_event == _ns(datetime(2013, 10, 7, tzinfo=UTC))
    assert lean_bars == csv_bars  # same open, same close time, same values: the same bar


@pytest.mark.parametrize("side", ["BID", "ASK", "MID"])
def test_forex_quote_bars_bid_ask_and_mid(lean, side):
    rows = _csv_rows(lean / "forex" / "oanda" / "minute" / "eurusd" / "20140501_quote.zip")
    table = _fetch(_source(lean), EURUSD.format(side)).table
    assert table.num_rows == len(rows) == 1363
    assert table.column("ts").to_pylist() == [
        _local_ms_to_utc_ns("20140501", r[0], ZoneInfo("UTC")) for r in rows
    ]
    for k, name in enumerate(("open", "high", "low", "close")):
        bid = [Decimal(r[1 + k]) for r in rows]
        ask = [Decimal(r[6 + k]) for r in rows]
        expect = {
            "BID": bid,
            "ASK": ask,
            "MID": [(b + a) / 2 for b, a in zip(bid, ask, strict=True)],
        }[side]
        assert table.column(name).to_pylist() == [float(x) for x in expect]
    assert table.column("volume").to_pylist() == [0.0] * len(rows)


def test_end_to_end_minute_bars_are_open_stamped(lean, run):
    req = {
        "bar_type": SPY_1M,
        "bars": 390,
        "end": "2013-10-07T20:00:00Z",
        "price_precision": 2,
        "size_precision": 0,
    }
    result = run([req], [{"name": "lean", "plugin": "lean", "path": str(lean)}])
    (bars,) = result.bars.values()
    assert len(bars) == 390
    # The 09:30 New York bar (row 09:30 = 34200000 ms) opens 13:30 UTC and closes 13:31.
    (bar,) = [b for b in bars if b.ts_event == _ns(datetime(2013, 10, 7, 13, 30, tzinfo=UTC))]
    assert bar.ts_init == bar.ts_event + 60 * 10**9
    row = next(
        r
        for r in _csv_rows(lean / "equity/usa/minute/spy/20131007_trade.zip")
        if r[0] == "34200000"
    )
    assert str(bar.open) == str(Decimal(row[1]) / 10000)


# -- files written here in LEAN's documented layout --------------------------------------------


def _zip(path: Path, member: str, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, "\n".join(lines) + "\n")


def _day(
    root: Path, sec: str, market: str, res: str, ticker: str, day: str, tick: str, lines: list[str]
) -> Path:
    path = root / sec / market / res / ticker / f"{day}_{tick}.zip"
    _zip(path, f"{day}_{ticker}_{res}_{tick}.csv", lines)
    return path


def test_equity_dst_switch_uses_each_dates_offset(tmp_path):
    for day in ("20131101", "20131104"):  # EDT (UTC-4), then EST (UTC-5)
        _day(
            tmp_path,
            "equity",
            "usa",
            "minute",
            "spy",
            day,
            "trade",
            ["34200000,1000000,1000000,1000000,1000000,5"],
        )
    ts = _fetch(_source(tmp_path), SPY_1M).table.column("ts").to_pylist()
    assert ts == [
        _ns(datetime(2013, 11, 1, 13, 30, tzinfo=UTC)),
        _ns(datetime(2013, 11, 4, 14, 30, tzinfo=UTC)),
    ]


def test_crypto_second_trade_and_quote_bars_unscaled_utc(tmp_path):
    _day(
        tmp_path,
        "crypto",
        "coinbase",
        "second",
        "btcusd",
        "20200102",
        "trade",
        ["1000,7000.5,7001.25,6999.75,7000.0,0.125"],
    )
    _day(
        tmp_path,
        "crypto",
        "coinbase",
        "second",
        "btcusd",
        "20200102",
        "quote",
        ["1000,7000.5,7000.5,7000.5,7000.5,1.5,7001.5,7001.5,7001.5,7001.5,2"],
    )
    src = _source(tmp_path)
    trade = _fetch(src, "BTC/USD.COINBASE-1-SECOND-LAST-EXTERNAL").table
    assert trade.column("ts").to_pylist() == [_ns(datetime(2020, 1, 2, 0, 0, 1, tzinfo=UTC))]
    assert trade.column("high").to_pylist() == [7001.25] and trade.column("volume").to_pylist() == [
        0.125
    ]
    mid = _fetch(src, "BTC/USD.COINBASE-1-SECOND-MID-EXTERNAL").table
    assert mid.column("close").to_pylist() == [7001.0]


def test_crypto_hour_and_daily_files_carry_the_tick_type(tmp_path):
    _zip(
        tmp_path / "crypto/coinbase/hour/btcusd_trade.zip",
        "btcusd.csv",
        ["20200102 05:00,1,2,0.5,1.5,10", "20200102 06:00,1.5,2,1,1,3"],
    )
    _zip(
        tmp_path / "crypto/coinbase/daily/btcusd_quote.zip",
        "btcusd.csv",
        ["20200102 00:00,1,2,0.5,1.5,1,3,4,2.5,3.5,1"],
    )
    src = _source(tmp_path)
    hour = _fetch(src, "BTC/USD.COINBASE-1-HOUR-LAST-EXTERNAL").table
    assert hour.column("ts").to_pylist() == [
        _ns(datetime(2020, 1, 2, h, tzinfo=UTC)) for h in (5, 6)
    ]
    daily = _fetch(src, "BTC/USD.COINBASE-1-DAY-ASK-EXTERNAL").table
    assert daily.column("ts").to_pylist() == [_ns(datetime(2020, 1, 2, tzinfo=UTC))]
    assert daily.column("open").to_pylist() == [3.0]


def test_equity_hour_file_is_new_york_time(tmp_path):
    _zip(
        tmp_path / "equity/usa/hour/spy.zip",
        "spy.csv",
        ["20130704 10:00,1000000,1000000,1000000,1000000,7"],
    )
    table = _fetch(_source(tmp_path), "SPY.ARCA-1-HOUR-LAST-EXTERNAL").table
    assert table.column("ts").to_pylist() == [_ns(datetime(2013, 7, 4, 14, tzinfo=UTC))]
    assert table.column("open").to_pylist() == [100.0]


def test_cfd_and_forex_under_oanda_are_told_apart_by_the_files(tmp_path):
    _day(
        tmp_path,
        "cfd",
        "oanda",
        "minute",
        "xauusd",
        "20200102",
        "quote",
        ["60000,1500.1,1500.1,1500.1,1500.1,0,1500.3,1500.3,1500.3,1500.3,0"],
    )
    table = _fetch(_source(tmp_path), "XAU/USD.OANDA-1-MINUTE-MID-EXTERNAL").table
    assert table.column("open").to_pylist() == [1500.2]
    assert table.column("ts").to_pylist() == [_ns(datetime(2020, 1, 2, 0, 1, tzinfo=UTC))]


def test_a_500_bar_request_opens_only_the_newest_day_files(tmp_path):
    # A year of minute zips; all but the last three days are not zips at all, so opening
    # any of them would fail the fetch.
    start = date(2023, 1, 1)
    (tmp_path / "equity/usa/minute/spy").mkdir(parents=True)
    lines = [f"{m * 60000},1000000,1000000,1000000,1000000,1" for m in range(1440)]
    for k in range(365):
        day = f"{start + timedelta(days=k):%Y%m%d}"
        if k >= 362:
            _day(tmp_path, "equity", "usa", "minute", "spy", day, "trade", lines)
        else:
            path = tmp_path / "equity/usa/minute/spy" / f"{day}_trade.zip"
            path.write_bytes(b"not a zip")
    end = _ns(datetime(2024, 1, 1, 5, 0, tzinfo=UTC))  # 00:00 New York on the last day
    request = _request(SPY_1M, end_ns=end, start_ns=None)
    result = _source(tmp_path, extended_hours=True).fetch(request, Span(None, end, limit=500))
    assert result.table.num_rows == 500
    assert result.notes[0].startswith("read 1 trade file(s) 20231231 .. 20231231")
    result = _source(tmp_path, extended_hours=True).fetch(request, Span(None, end, limit=3000))
    assert result.table.num_rows == 3000 and "read 3 trade file(s)" in result.notes[0]
    # Time mode opens the days of the window only.
    window = Span(
        _ns(datetime(2023, 12, 30, 12, tzinfo=UTC)), _ns(datetime(2023, 12, 30, 13, tzinfo=UTC))
    )
    assert _source(tmp_path, extended_hours=True).fetch(request, window).table.num_rows == 60
    with pytest.raises(Exception, match="not a readable LEAN zip"):
        _source(tmp_path, extended_hours=True).fetch(request, Span(None, end, limit=5000))


def test_one_sided_quotes_are_refused_for_mid_not_taken_from_one_side(run, tmp_path):
    _day(
        tmp_path,
        "forex",
        "oanda",
        "minute",
        "eurusd",
        "20140501",
        "quote",
        [
            "0,1.1,1.1,1.1,1.1,0,1.2,1.2,1.2,1.2,0",
            "60000,,,,,0,1.2,1.2,1.2,1.2,0",
            "120000,1.1,1.1,1.1,1.1,0,,,,,0",
        ],
    )
    result = _fetch(_source(tmp_path), EURUSD.format("MID"))
    assert result.table.column("close").to_pylist() == [1.15, None, None]
    assert any("2 quote row(s) lack a bid and an ask" in n for n in result.notes)
    req = {
        "bar_type": EURUSD.format("BID"),
        "start": "2014-05-01T00:00:00Z",
        "end": "2014-05-01T00:03:00Z",
        "price_precision": 5,
        "size_precision": 0,
    }
    report = run(
        [req], [{"name": "lean", "plugin": "lean", "path": str(tmp_path)}]
    ).report.requests[0]
    assert report.injected == 2 and report.dropped == {"unparseable": 1}


def test_a_malformed_row_is_counted_with_its_line_and_the_rest_load(run, tmp_path):
    _day(
        tmp_path,
        "equity",
        "usa",
        "minute",
        "spy",
        "20131007",
        "trade",
        [
            "34200000,1000000,1000000,1000000,1000000,5",
            "34260000,1000000,1000000,1000000",
            "34320000,abc,1000000,1000000,1000000,5",
            "",
            "34380000,1000000,1000000,1000000,1000000,5",
        ],
    )
    table = _fetch(_source(tmp_path), SPY_1M).table
    assert table.column("_row").to_pylist() == [1, 2, 3, 5]
    assert table.column("open").to_pylist() == [100.0, None, None, 100.0]
    req = {
        "bar_type": SPY_1M,
        "start": "2013-10-07T00:00:00Z",
        "end": "2013-10-08T00:00:00Z",
        "price_precision": 2,
        "size_precision": 0,
    }
    report = run(
        [req], [{"name": "lean", "plugin": "lean", "path": str(tmp_path)}]
    ).report.requests[0]
    assert report.injected == 2 and report.dropped == {"unparseable": 2}


def test_a_daily_row_not_at_midnight_is_not_given_a_session_date(tmp_path):
    _zip(
        tmp_path / "equity/usa/daily/spy.zip",
        "spy.csv",
        [
            "20131007 00:00,1000000,1000000,1000000,1000000,7",
            "20131008 16:00,1000000,1000000,1000000,1000000,7",
        ],
    )
    result = _fetch(_source(tmp_path), SPY_1D)
    assert result.table.column("ts").to_pylist() == [_ns(datetime(2013, 10, 7, tzinfo=UTC)), None]
    assert any("not stamped 'YYYYMMDD 00:00'" in n for n in result.notes)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a zip", "not a readable LEAN zip"), (None, "2 files in the archive")],
)
def test_broken_zips_are_clear_errors(run, tmp_path, content, message):
    path = tmp_path / "equity/usa/minute/spy/20131007_trade.zip"
    path.parent.mkdir(parents=True)
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.csv", "1,2,3,4,5,6\n")
            archive.writestr("b.csv", "1,2,3,4,5,6\n")
    else:
        path.write_bytes(content)
    req = {
        "bar_type": SPY_1M,
        "bars": 5,
        "end": "2013-10-08T00:00:00Z",
        "price_precision": 2,
        "size_precision": 0,
    }
    report = run(
        [req], [{"name": "lean", "plugin": "lean", "path": str(tmp_path)}]
    ).report.requests[0]
    assert report.injected == 0 and report.sources[0].status == "error"
    assert message in report.sources[0].error and "20131007_trade.zip" in report.sources[0].error


@pytest.mark.parametrize(
    ("instrument_id", "expected"),
    [
        ("SPY.ARCA", [("equity", "usa", "spy")]),
        ("AAPL.NASDAQ", [("equity", "usa", "aapl")]),
        ("EUR/USD.OANDA", [("forex", "oanda", "eurusd"), ("cfd", "oanda", "eurusd")]),
        ("BTC/USD.COINBASE", [("crypto", "coinbase", "btcusd")]),
        ("BTC-USD.COINBASE", [("crypto", "coinbase", "btcusd")]),
        ("ESZ4.CME", []),
    ],
)
def test_symbol_rule(instrument_id, expected):
    assert lean_candidates(InstrumentId.from_str(instrument_id), None) == expected


def test_symbols_table_overrides_the_rule(lean, tmp_path):
    shutil.copytree(lean / "equity", tmp_path / "equity")
    src = _source(tmp_path, symbols={"SPDR.XYZ": "equity/usa/spy"})
    assert _fetch(src, "SPDR.XYZ-1-MINUTE-LAST-EXTERNAL").table.num_rows == 390
    (problem,) = _source(tmp_path).check([_request("SPDR.XYZ-1-MINUTE-LAST-EXTERNAL")])
    assert problem.startswith("symbols: cannot tell where SPDR.XYZ is")


def test_check_names_each_problem_by_key(lean, tmp_path):
    good = [
        _request(SPY_1M, start_ns=None, end_ns=_ns(datetime(2013, 10, 8, tzinfo=UTC))),
        _request(SPY_1D),
        _request(EURUSD.format("MID")),
    ]
    assert _source(lean).check(good) == []
    checks = {
        "SPY.ARCA-5-MINUTE-LAST-EXTERNAL": "plugin: LEAN stores second, minute, hour and daily bars",
        "EUR/USD.OANDA-1-MINUTE-LAST-EXTERNAL": "plugin: LEAN forex data are quotes only",
        "SPY.ARCA-1-DAY-BID-EXTERNAL": "plugin: LEAN keeps US equity daily bars as trades only",
    }
    for bar_type, message in checks.items():
        (problem,) = _source(lean).check([_request(bar_type)])
        assert problem.startswith(message), problem
    (problem,) = _source(lean).check(
        [_request(SPY_1M, start_ns=_ns(datetime(2020, 1, 1, tzinfo=UTC)))]
    )
    assert problem.startswith("path: no LEAN trade files for SPY.ARCA-1-MINUTE-LAST-EXTERNAL")
    assert "the folder has 2013-10-07 .. 2013-10-07" in problem
    (problem,) = _source(tmp_path / "nope").check([_request(SPY_1M)])
    assert problem.startswith("path: LEAN data folder") and "does not exist" in problem
    fxcm = _source(lean, symbols={"EUR/USD.FXCM": "forex/fxcm/eurusd"})
    (problem,) = fxcm.check([_request("EUR/USD.FXCM-1-MINUTE-BID-EXTERNAL")])
    assert problem.startswith("timezones: the data time zone of LEAN market forex/fxcm")


def test_timezones_key_sets_a_markets_data_time_zone(tmp_path):
    _day(
        tmp_path,
        "forex",
        "fxcm",
        "minute",
        "eurusd",
        "20140501",
        "quote",
        ["0,1.1,1.1,1.1,1.1,0,1.2,1.2,1.2,1.2,0"],
    )
    src = _source(
        tmp_path,
        symbols={"EUR/USD.FXCM": "forex/fxcm/eurusd"},
        timezones={"forex/fxcm": "Etc/GMT+5"},
    )
    table = _fetch(src, "EUR/USD.FXCM-1-MINUTE-BID-EXTERNAL").table
    assert table.column("ts").to_pylist() == [_ns(datetime(2014, 5, 1, 5, tzinfo=UTC))]


def test_bar_values_are_columns_of_the_bar_schema(lean):
    table = _fetch(_source(lean), SPY_1M).table
    assert table.schema.field("ts").type == pa.int64()
    assert np.isfinite(table.column("close").to_numpy()).all()


def test_a_time_outside_the_files_day_is_refused_not_overflowed(tmp_path):
    _day(
        tmp_path,
        "equity",
        "usa",
        "minute",
        "spy",
        "20131007",
        "trade",
        [
            "34200000,1000000,1000000,1000000,1000000,5",
            "9000000000000000,1000000,1000000,1000000,1000000,5",
            "-60000,1000000,1000000,1000000,1000000,5",
        ],
    )
    result = _fetch(_source(tmp_path), SPY_1M)
    assert result.table.column("ts").to_pylist() == [
        _ns(datetime(2013, 10, 7, 13, 30, tzinfo=UTC)),
        None,
        None,
    ]
    assert any("2 row(s) with a time outside their file's day" in n for n in result.notes)


def test_a_path_that_is_a_file_says_so(lean, tmp_path):
    (tmp_path / "Data").write_text("")
    (problem,) = _source(tmp_path / "Data").check([_request(SPY_1M)])
    assert problem.startswith("path: LEAN data folder") and "is a file, not a folder" in problem


def test_odd_files_found_by_fuzzing_give_rows_or_errors_never_crashes(tmp_path):
    # A time past int64, and a New York day file holding only blank lines.
    _day(
        tmp_path,
        "equity",
        "usa",
        "minute",
        "spy",
        "20131007",
        "trade",
        [
            "99999999999999999999,1000000,1000000,1000000,1000000,5",
            "34200000,1000000,1000000,1000000,1000000,5",
        ],
    )
    _day(tmp_path, "equity", "usa", "minute", "spy", "20131008", "trade", ["", ""])
    table = _fetch(_source(tmp_path), SPY_1M).table
    assert table.column("ts").to_pylist() == [None, _ns(datetime(2013, 10, 7, 13, 30, tzinfo=UTC))]
    empty = _source(tmp_path).fetch(
        _request(SPY_1M), Span(_ns(datetime(2013, 10, 8, 4, tzinfo=UTC)), FAR)
    )
    assert empty.table.num_rows == 0


def test_a_passed_deadline_returns_what_was_read_as_a_timeout(tmp_path):
    lines = [f"{m * 60000},1,1,1,1,1" for m in range(1440)]
    for day in ("20200101", "20200102", "20200103"):
        _day(tmp_path, "crypto", "coinbase", "minute", "btcusd", day, "trade", lines)
    bt = "BTC/USD.COINBASE-1-MINUTE-LAST-EXTERNAL"
    request = _request(bt)
    seen = []
    ok = _source(tmp_path).fetch(request, Span(0, FAR, progress=seen.append))
    assert ok.failure is None and ok.table.num_rows == 3 * 1440 and sum(seen) == 3 * 1440
    late = _source(tmp_path).fetch(request, Span(0, FAR, deadline=time.monotonic() - 1))
    assert late.table.num_rows == 0
    assert late.failure is not None and late.failure.status == "timeout"
    assert "0 of 3 LEAN files read" in str(late.failure)
