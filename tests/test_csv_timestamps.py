"""Timestamps are read by a stated or unambiguous format, never guessed (issue 10, issue 11 #10)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime

import pytest

DAY = "ORCL.XNAS-1-DAY-LAST-EXTERNAL"
MIN = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"


def _req(bar_type=MIN, **kw):
    base = {"bar_type": bar_type, "price_precision": 5, "size_precision": 0}
    if "bars" not in kw and "start" not in kw:
        kw["start"] = "1990-01-01T00:00:00Z"
    kw.setdefault("end", "2030-01-01T00:00:00Z")
    return {**base, **kw}


def _src(path, **kw):
    return [{"name": "file", "plugin": "csv", "path": str(path), **kw}]


def _write(tmp_path, text, name="bars.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


def test_lean_minute_ms_since_midnight_is_refused_not_read_as_1971(shared, run, tmp_path):
    # LEAN minute rows count milliseconds from midnight; the date is only in the file name.
    raw = zipfile.ZipFile(shared / "lean/equity/usa/minute/spy/20131007_trade.zip")
    p = tmp_path / "spy.csv"
    p.write_bytes(raw.read(raw.namelist()[0]))
    result = run([_req("SPY.ARCA-1-MINUTE-LAST-EXTERNAL", bars=500)], _src(p))
    report = result.report.requests[0]
    assert report.injected == 0 and result.bars == {}
    error = report.sources[0].error
    assert report.sources[0].status == "error"
    assert "spy.csv" in error and "column '0'" in error and "'14400000'" in error
    # The fix is the LEAN source, not an epoch format (which would date the bars in 1970).
    assert "milliseconds since midnight" in error and 'plugin = "lean"' in error
    assert 'set timestamp_format = "epoch_s"' not in error


def test_lean_daily_integer_prices_scaled_and_compact_dates(shared, run, tmp_path):
    raw = zipfile.ZipFile(shared / "lean/equity/usa/daily/spy.zip")
    text = raw.read(raw.namelist()[0]).decode()
    p = tmp_path / "spy-daily.csv"
    p.write_text(text)
    rows = list(csv.reader(io.StringIO(text)))
    result = run(
        [
            _req(
                "SPY.ARCA-1-DAY-LAST-EXTERNAL",
                bars=20,
                end="2030-01-01T00:00:00Z",
                price_precision=4,
            )
        ],
        _src(p, price_scale=0.0001),
    )
    (bars,) = result.bars.values()
    assert len(bars) == 20
    last = rows[-1]
    day = datetime.strptime(last[0], "%Y%m%d %H:%M").replace(tzinfo=UTC)
    assert bars[-1].ts_event == int(day.timestamp()) * 10**9
    # Independent reading: integer deci-cents / 10,000, exactly.
    assert str(bars[-1].close) == f"{int(last[4]) / 10_000:.4f}"
    assert str(bars[-1].open) == f"{int(last[1]) / 10_000:.4f}"
    assert result.report.requests[0].rounded == 0


def test_lean_daily_without_price_scale_is_not_scaled(shared, run, tmp_path):
    # price_scale is never inferred: the raw integers are what the file says.
    raw = zipfile.ZipFile(shared / "lean/equity/usa/daily/spy.zip")
    p = tmp_path / "spy-daily.csv"
    p.write_bytes(raw.read(raw.namelist()[0]))
    result = run([_req("SPY.ARCA-1-DAY-LAST-EXTERNAL", bars=1, price_precision=0)], _src(p))
    (bars,) = result.bars.values()
    assert bars[-1].close.as_double() > 100_000


def test_integer_yyyymmdd_with_explicit_format_is_honoured(tmp_path, run):
    p = _write(
        tmp_path,
        "date,open,high,low,close,volume\n20190829,1,2,0.5,1.5,10\n20190830,1,2,0.5,1.5,10\n",
    )
    for fmt in ("%Y%m%d", "auto"):
        (bars,) = run([_req(DAY)], _src(p, timestamp_format=fmt)).bars.values()
        assert [b.ts_event for b in bars] == [_ns("2019-08-29"), _ns("2019-08-30")]


@pytest.mark.parametrize(
    ("rows", "fmt", "expected"),
    [
        (["01/02/2021", "27/11/2021"], "auto", ["2021-02-01", "2021-11-27"]),  # settled: day first
        (
            ["01/02/2021", "11/27/2021"],
            "auto",
            ["2021-01-02", "2021-11-27"],
        ),  # settled: month first
        (["01/02/2021", "03/04/2021"], "%d/%m/%Y", ["2021-02-01", "2021-04-03"]),
        (["01/02/2021", "03/04/2021"], "%m/%d/%Y", ["2021-01-02", "2021-03-04"]),
        (["01.02.2021", "03.04.2021"], "%d.%m.%Y", ["2021-02-01", "2021-04-03"]),
        (["2021/01/02", "2021/03/04"], "auto", ["2021-01-02", "2021-03-04"]),
    ],
)
def test_day_month_orders(tmp_path, run, rows, fmt, expected):
    body = "".join(f"{r},1,2,0.5,1.5,1\n" for r in rows)
    p = _write(tmp_path, "date,open,high,low,close,volume\n" + body)
    (bars,) = run([_req(DAY)], _src(p, timestamp_format=fmt)).bars.values()
    assert sorted(b.ts_event for b in bars) == [_ns(e) for e in expected]


def test_unsettled_day_month_order_is_refused_with_both_formats(tmp_path, run):
    p = _write(
        tmp_path,
        "date,open,high,low,close,volume\n01/02/2021,1,2,0.5,1.5,1\n03/04/2021,1,2,0.5,1.5,1\n",
    )
    report = run([_req(DAY)], _src(p)).report.requests[0]
    assert report.injected == 0
    error = report.sources[0].error
    assert "'01/02/2021'" in error and '"%d/%m/%Y"' in error and '"%m/%d/%Y"' in error


def test_day_month_with_times_explicit(tmp_path, run):
    p = _write(
        tmp_path,
        "Gmt time,Open,High,Low,Close,Volume\n01.02.2021 09:30:00.000,1,2,0.5,1.5,1\n01.02.2021 09:31:00.000,1,2,0.5,1.5,1\n",
    )
    result = run(
        [_req()],
        _src(p, timestamp_format="%d.%m.%Y %H:%M:%S.%f", columns={"timestamp": "Gmt time"}),
    )
    (bars,) = result.bars.values()
    assert [b.ts_event for b in bars] == [_ns("2021-02-01T09:30:00"), _ns("2021-02-01T09:31:00")]


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        (["1637971200", "1637971260"], 10**9),
        (["1637971200000", "1637971260000"], 10**6),
        (["1637971200000000", "1637971260000000"], 10**3),
        (["1637971200000000000", "1637971260000000000"], 1),
    ],
)
def test_epoch_units_by_magnitude(tmp_path, run, values, unit):
    p = _write(tmp_path, "".join(f"{v},1,2,0.5,1.5,1\n" for v in values))
    (bars,) = run([_req()], _src(p)).bars.values()
    assert [b.ts_event for b in bars] == [int(v) * unit for v in values]


def test_epoch_numbers_in_two_units_are_refused(tmp_path, run):
    p = _write(tmp_path, "1637971200,1,2,0.5,1.5,1\n1637971260000,1,2,0.5,1.5,1\n")
    report = run([_req()], _src(p)).report.requests[0]
    assert report.injected == 0 and "more than one unit" in report.sources[0].error


def test_small_numbers_fit_no_unit(tmp_path, run):
    p = _write(tmp_path, "86400,1,2,0.5,1.5,1\n86460,1,2,0.5,1.5,1\n")
    report = run([_req()], _src(p)).report.requests[0]
    assert report.injected == 0 and "'86400'" in report.sources[0].error
    # ... unless the unit is stated: then 1970 is what the file says (and dropped: 1970 is
    # inside what a Bar holds, so it is simply outside the window).
    report = run(
        [_req(start="1970-01-01T00:00:00Z")],
        _src(tmp_path / "bars.csv", timestamp_format="epoch_s"),
    ).report.requests[0]
    assert report.injected == 2


def test_offset_first_then_naive_is_refused_naming_lines(tmp_path, run):
    p = _write(
        tmp_path,
        "timestamp,open,high,low,close,volume\n2024-01-01 00:00:00+00:00,1,2,0.5,1.5,1\n2024-01-01 00:01:00,1,2,0.5,1.5,1\n",
    )
    report = run([_req()], _src(p, timezone="America/New_York")).report.requests[0]
    assert report.injected == 0
    error = report.sources[0].error
    assert "mixed zone-aware and naive" in error and "line 2" in error and "line 3" in error


def test_nat_in_first_data_row_is_one_unparseable_row(tmp_path, run):
    p = _write(
        tmp_path,
        "timestamp,open,high,low,close,volume\nNaT,1,2,0.5,1.5,1\n2024-01-01T00:01:00Z,1,2,0.5,1.5,1\n",
    )
    report = run([_req()], _src(p)).report.requests[0]
    assert report.injected == 1 and report.dropped == {"unparseable": 1}
    assert any("line 2 (NaT)" in e for e in report.examples)


@pytest.mark.parametrize("count_mode", [False, True])
def test_out_of_range_years_are_bad_timestamp_drops_with_lines(tmp_path, run, count_mode):
    body = (
        "1969-12-31,1,2,0.5,1.5,1\n"
        "1600-01-01,1,2,0.5,1.5,1\n"
        "2300-01-01,1,2,0.5,1.5,1\n"
        "1970-01-02,1,2,0.5,1.5,1\n"
        "1970-01-03,1,2,0.5,1.5,1\n"
    )
    p = _write(tmp_path, "date,open,high,low,close,volume\n" + body)
    req = _req(DAY, bars=2) if count_mode else _req(DAY, start="1970-01-01T00:00:00Z")
    result = run([req], _src(p))
    report = result.report.requests[0]
    (bars,) = result.bars.values()
    # The two 1970 bars are kept; 1969, 1600 and 2300 never become wrapped uint64 stamps.
    assert [b.ts_event for b in bars] == [_ns("1970-01-02"), _ns("1970-01-03")]
    assert report.dropped == {"bad_timestamp": 3}
    lines = sorted(
        e.split("line ")[1].split(" ")[0] for e in report.examples if "bad_timestamp" in e
    )
    assert lines == ["2", "3", "4"]


def test_epoch_past_int64_is_a_drop_not_a_rejected_file(tmp_path, run):
    p = _write(tmp_path, "99999999999999999999,1,2,0.5,1.5,1\n1704067200,1,2,0.5,1.5,1\n")
    report = run([_req()], _src(p, timestamp_format="epoch_s")).report.requests[0]
    assert report.injected == 1 and report.dropped == {"bad_timestamp": 1}


def test_metatrader_export_split_date_time_headerless(tmp_path, run):
    # MetaTrader 4 "Export" of history: no header; YYYY.MM.DD,HH:MM,O,H,L,C,V.
    rows = [
        "2021.01.04,09:30,1.22450,1.22480,1.22440,1.22470,120",
        "2021.01.04,09:31,1.22470,1.22490,1.22460,1.22460,95",
    ]
    p = _write(tmp_path, "\n".join(rows) + "\n", "EURUSD1.csv")
    columns = {"date": 0, "time": 1, "open": 2, "high": 3, "low": 4, "close": 5, "volume": 6}
    (bars,) = run([_req()], _src(p, columns=columns)).bars.values()
    for bar, row in zip(bars, csv.reader(rows), strict=True):
        assert (
            bar.ts_event
            == int(
                datetime.strptime(f"{row[0]} {row[1]}", "%Y.%m.%d %H:%M")
                .replace(tzinfo=UTC)
                .timestamp()
            )
            * 10**9
        )
        assert [str(bar.open), str(bar.close), str(int(bar.volume))] == [row[2], row[5], row[6]]


def test_ninjatrader_export_is_iso_basic_format(tmp_path, run):
    # NinjaTrader's "yyyyMMdd HHmmss;O;H;L;C;V" is ISO 8601's basic format: one meaning.
    p = _write(
        tmp_path,
        "20210104 093000;1.2245;1.2248;1.2244;1.2247;120\n20210104 093100;1.2247;1.2249;1.2246;1.2246;95\n",
    )
    want = [_ns("2021-01-04T09:30:00"), _ns("2021-01-04T09:31:00")]
    for fmt in ("auto", "%Y%m%d %H%M%S"):
        (bars,) = run([_req()], _src(p, timestamp_format=fmt)).bars.values()
        assert [b.ts_event for b in bars] == want


def test_an_unsettled_us_style_date_names_both_orders_never_one(tmp_path, run):
    p = tmp_path / "ts.csv"
    p.write_text("Date,Time,Open,High,Low,Close,Vol\n01/04/2021,0930,1,1,1,1,1\n01/04/2021,0931,1,1,1,1,1\n")
    req = {"bar_type": "X.Y-1-MINUTE-LAST-EXTERNAL", "start": "2021-01-01T00:00:00Z",
           "end": "2021-05-01T00:00:00Z", "price_precision": 2, "size_precision": 0}
    error = run([req], [{"name": "f", "plugin": "csv", "path": str(p)}]).report.requests[0].sources[0].error
    assert '"%m/%d/%Y ..." (month first' in error and '"%d/%m/%Y ..." (day first)' in error
