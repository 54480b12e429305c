"""Parquet: NautilusTrader's 64- and 128-bit bar files, catalogs, plain OHLCV with pushdown."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ADA = "ADABTC.BINANCE-1-MINUTE-LAST-EXTERNAL"
REQ = {"bar_type": ADA, "start": "2021-11-27T00:00:00Z", "end": "2021-11-28T00:00:00Z"}


@pytest.mark.parametrize("bits", ["64", "128"])
def test_nautilus_bar_files_decode_where_nautilus_own_reader_fails(shared, run, bits):
    from nautilus_trader.serialization.arrow.serializer import ArrowSerializer

    path = shared / "parquet" / f"nautilus-{bits}bit-bars.parquet"
    with pytest.raises(TypeError, match="rows_per_group"):
        ArrowSerializer.deserialize(
            data_cls=__import__("nautilus_trader.model.data", fromlist=["Bar"]).Bar,
            batch=pq.read_table(path),
        )
    result = run(
        [REQ],
        [
            {
                "name": "pq",
                "plugin": "parquet",
                "path": str(path),
                "timestamp_column": "ts_event",
                "timestamp_is": "open",
            }
        ],
    )
    (bars,) = result.bars.values()
    table = pq.read_table(path)
    assert len(bars) == table.num_rows == 10
    scale = 10**9 if bits == "64" else 10**16
    raw = int.from_bytes(table.column("open")[0].as_py(), "little", signed=True)
    assert float(bars[0].open) == pytest.approx(raw / scale)
    assert bars[0].ts_event == table.column("ts_event")[0].as_py()
    assert result.report.requests[0].dropped == {}


def test_both_layouts_give_identical_bars(shared, run):
    out = []
    for bits in ("64", "128"):
        path = shared / "parquet" / f"nautilus-{bits}bit-bars.parquet"
        out.append(
            next(
                iter(
                    run(
                        [REQ], [{"name": "pq", "plugin": "parquet", "path": str(path)}]
                    ).bars.values()
                )
            )
        )
    assert out[0] == out[1]
    # Precision came from the file's metadata: the request set none.
    assert out[0][0].open.precision == 8


def test_catalog_folder_layout_is_found_by_bar_type(shared, run, tmp_path):
    folder = tmp_path / "catalog" / "data" / "bar" / ADA
    folder.mkdir(parents=True)
    shutil.copy(shared / "parquet" / "nautilus-128bit-bars.parquet", folder / "part-0.parquet")
    result = run(
        [dict(REQ, start=None, bars=4)],
        [{"name": "cat", "plugin": "parquet", "path": str(tmp_path / "catalog")}],
    )
    assert result.report.requests[0].injected == 4
    assert result.report.requests[0].sources[0].received == 4


def _plain(tmp_path, n=5000, row_group=500):
    ts = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    price = 100 + np.arange(n) / 100
    table = pa.table(
        {"time": ts, "o": price, "h": price + 1, "l": price - 1, "c": price, "vol": np.ones(n)}
    )
    path = tmp_path / "plain.parquet"
    pq.write_table(table, path, row_group_size=row_group)
    return path


def test_plain_parquet_with_column_map_filters_to_the_window(run, tmp_path):
    path = _plain(tmp_path)
    src = [
        {
            "name": "p",
            "plugin": "parquet",
            "path": str(path),
            "columns": {
                "timestamp": "time",
                "open": "o",
                "high": "h",
                "low": "l",
                "close": "c",
                "volume": "vol",
            },
        }
    ]
    req = {
        "bar_type": "X.Y-1-MINUTE-LAST-EXTERNAL",
        "start": "2024-01-02T00:00:00Z",
        "end": "2024-01-02T01:00:00Z",
        "price_precision": 2,
        "size_precision": 0,
    }
    result = run([req], src)
    report = result.report.requests[0]
    assert report.injected == 60 and report.sources[0].received == 60
    (bars,) = result.bars.values()
    assert bars[0].ts_event == pd.Timestamp("2024-01-02", tz="UTC").value


def test_plain_parquet_missing_column_is_named(run, tmp_path):
    path = _plain(tmp_path)
    req = {
        "bar_type": "X.Y-1-MINUTE-LAST-EXTERNAL",
        "bars": 5,
        "price_precision": 2,
        "size_precision": 0,
        "end": "2024-01-03T00:00:00Z",
    }
    report = run([req], [{"name": "p", "plugin": "parquet", "path": str(path)}]).report.requests[0]
    assert report.sources[0].status == "error"
    # Its timestamp column `time` is found by name; the prices are not.
    assert (
        "column 'open' (columns.open) not found; the file has: time, o, h, l, c, vol"
        in report.sources[0].error
    )


def test_count_mode_reads_only_the_tail_row_groups(tmp_path):
    import pyarrow.dataset as ds
    from nautilus_backfill.catalogfmt import scan
    from nautilus_backfill.source import Span

    path = _plain(tmp_path, n=100_000, row_group=1000)
    dataset = ds.dataset(str(path))
    step = 60 * 10**9
    end = pd.Timestamp("2024-01-01", tz="UTC").value + 100_000 * step

    def bound(v):
        return pa.scalar(v, pa.timestamp("ns", "UTC")).cast(dataset.schema.field("time").type)

    table = scan(dataset, "time", Span(None, end, 50), 0, step, bound)
    assert table.num_rows == 50
    assert table.column("c")[-1].as_py() == pytest.approx(100 + 99_999 / 100)


def test_a_nautilus_bar_file_is_never_served_as_another_bar_type(shared, run):
    path = shared / "parquet" / "nautilus-64bit-bars.parquet"  # ADABTC 1-minute bars
    other = dict(REQ, bar_type="ADABTC.BINANCE-5-MINUTE-LAST-EXTERNAL")
    source = (
        run([other], [{"name": "pq", "plugin": "parquet", "path": str(path)}])
        .report.requests[0]
        .sources[0]
    )
    assert source.status == "error"
    assert (
        "holds ADABTC.BINANCE-1-MINUTE-LAST-EXTERNAL bars, not ADABTC.BINANCE-5-MINUTE-LAST-EXTERNAL"
        in source.error
    )


def test_a_float_column_in_a_catalog_file_is_refused_naming_the_file_and_column(shared, run, tmp_path):
    # Floats decoded as fixed-point would be off by a factor of 10**9: never served.
    folder = tmp_path / "catalog" / "data" / "bar" / ADA
    folder.mkdir(parents=True)
    table = pq.read_table(shared / "parquet" / "nautilus-64bit-bars.parquet")
    table = table.set_column(0, "open", pa.array(np.full(table.num_rows, 0.00002), pa.float64()))
    pq.write_table(table, folder / "part-0.parquet")
    source = (
        run([REQ], [{"name": "cat", "plugin": "parquet", "path": str(tmp_path / "catalog")}])
        .report.requests[0]
        .sources[0]
    )
    assert source.status == "error" and source.received == 0
    assert "part-0.parquet" in source.error and "column 'open' has type double" in source.error


def test_a_catalog_window_that_ends_before_its_first_bar_could_close_is_empty_not_a_crash(shared, run):
    # The catalog's times are uint64: the newest open wanted (end - step) lies before 1970 and
    # is clamped, not an OverflowError reported as a plugin bug.
    path = shared / "parquet" / "nautilus-128bit-bars.parquet"
    req = {"bar_type": ADA, "bars": 5, "end": "1970-01-01T00:00:30Z"}
    src = {"name": "pq", "plugin": "parquet", "path": str(path), "timestamp_column": "ts_event"}
    report = run([req], [src]).report.requests[0]
    assert report.sources[0].status == "empty", report.sources[0].error
    assert report.sources[0].error is None and report.injected == 0
