"""Every file in ../shared/data/csv loads with a few lines of config, values intact."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import pytest


def _rows(path, header=True):
    with open(path) as fh:
        reader = csv.reader(fh)
        if header:
            next(reader)
        return list(reader)


def test_fxcm_gbpusd_bid_with_offset_and_no_volume(shared, run):
    path = shared / "csv" / "fxcm-gbpusd-m1-bid-2012.csv"
    result = run(
        [
            {
                "bar_type": "GBP/USD.FXCM-1-MINUTE-BID-EXTERNAL",
                "bars": 500,
                "end": "2012-02-03T00:00:00Z",
                "price_precision": 5,
                "size_precision": 0,
            }
        ],
        [{"name": "fx", "plugin": "csv", "path": str(path)}],
    )
    (bars,) = result.bars.values()
    report = result.report.requests[0]
    assert report.injected == 500 and report.satisfied
    rows = [r for r in _rows(path) if r[0] < "2012-02-03"]
    last = rows[-1]
    assert bars[-1].ts_event == int(datetime.fromisoformat(last[0]).timestamp() * 1e9)
    assert [str(bars[-1].open), str(bars[-1].high), str(bars[-1].low), str(bars[-1].close)] == last[
        1:5
    ]
    assert float(bars[-1].volume) == 0
    assert bars[-1].ts_init - bars[-1].ts_event == 60 * 10**9


def test_btc_perp_naive_microseconds_and_large_volumes(shared, run):
    path = shared / "csv" / "btc-perp-20211231-20220201-1m.csv"
    result = run(
        [
            {
                "bar_type": "BTC-PERP.EXCH-1-MINUTE-LAST-EXTERNAL",
                "start": "2021-12-01T00:00:00Z",
                "end": "2022-03-01T00:00:00Z",
                "price_precision": 1,
                "size_precision": 4,
            }
        ],
        [{"name": "btc", "plugin": "csv", "path": str(path)}],
    )
    (bars,) = result.bars.values()
    rows = _rows(path)
    assert len(bars) == len(rows)
    first = rows[0]
    assert bars[0].ts_event == int(
        datetime.fromisoformat(first[0]).replace(tzinfo=UTC).timestamp() * 1e9
    )
    assert float(bars[0].volume) == pytest.approx(float(first[5]))
    assert str(bars[0].volume) == first[5]


def test_binance_headerless_epoch_ms(shared, run):
    path = shared / "csv" / "binance-adabtc-1m-2021-11-27-noheader.csv"
    result = run(
        [
            {
                "bar_type": "ADABTC.BINANCE-1-MINUTE-LAST-EXTERNAL",
                "start": "2021-11-27T00:00:00Z",
                "end": "2021-11-28T00:00:00Z",
                "price_precision": 8,
                "size_precision": 1,
            }
        ],
        [{"name": "bn", "plugin": "csv", "path": str(path)}],
    )
    (bars,) = result.bars.values()
    rows = _rows(path, header=False)
    assert len(bars) == len(rows) == 10
    for bar, row in zip(bars, rows, strict=True):
        assert bar.ts_event == int(row[0]) * 1_000_000
        assert (
            bar.ts_init == int(row[6]) * 1_000_000 + 1_000_000
        )  # kline close time is open + 59.999s
        assert str(bar.close) == row[4]


def test_backtrader_split_date_time_stamped_at_close(shared, run):
    path = shared / "csv" / "backtrader-2006-min-005-date-time-split.csv"
    result = run(
        [
            {
                "bar_type": "IDX.BT-5-MINUTE-LAST-EXTERNAL",
                "start": "2006-01-01T00:00:00Z",
                "end": "2007-01-01T00:00:00Z",
                "price_precision": 2,
                "size_precision": 0,
            }
        ],
        [
            {
                "name": "bt",
                "plugin": "csv",
                "path": str(path),
                "timestamp_is": "close",
                "columns": {"date": "Date", "time": "Time"},
            }
        ],
    )
    (bars,) = result.bars.values()
    rows = _rows(path)
    assert len(bars) == len(rows)
    close = datetime.fromisoformat(f"{rows[0][0]}T{rows[0][1]}+00:00")
    assert bars[0].ts_init == int(close.timestamp() * 1e9)
    assert bars[0].ts_event == bars[0].ts_init - 300 * 10**9


def test_yahoo_daily_session_dates_ignore_adj_close(shared, run):
    path = shared / "csv" / "yahoo-orcl-1995-2014-daily.csv"
    result = run(
        [
            {
                "bar_type": "ORCL.XNAS-1-DAY-LAST-EXTERNAL",
                "bars": 100,
                "end": "2015-01-01T00:00:00Z",
                "price_precision": 6,
                "size_precision": 0,
            }
        ],
        [{"name": "yahoo", "plugin": "csv", "path": str(path)}],
    )
    (bars,) = result.bars.values()
    rows = _rows(path)
    assert len(bars) == 100
    assert str(bars[-1].close) == f"{float(rows[-1][4]):.6f}"  # Close, not Adj Close
    assert bars[-1].ts_event == int(
        datetime.fromisoformat(rows[-1][0] + "T00:00:00+00:00").timestamp() * 1e9
    )


def test_gzip_and_zip_read_like_plain(shared, run, tmp_path):
    import gzip
    import zipfile

    src = shared / "csv" / "fxcm-gbpusd-m1-bid-2012.csv"
    gz = tmp_path / "fx.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    zp = tmp_path / "fx.zip"
    with zipfile.ZipFile(zp, "w") as z:
        z.write(src, "fx.csv")
    req = [
        {
            "bar_type": "GBP/USD.FXCM-1-MINUTE-BID-EXTERNAL",
            "bars": 300,
            "end": "2012-02-10T00:00:00Z",
            "price_precision": 5,
            "size_precision": 0,
        }
    ]
    out = [
        next(iter(run(req, [{"name": "f", "plugin": "csv", "path": str(p)}]).bars.values()))
        for p in (src, gz, zp)
    ]
    assert out[0] == out[1] == out[2]
    assert len(out[0]) == 300
