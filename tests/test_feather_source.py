"""Arrow IPC / feather files in the parquet source's plain layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

BT = "UNITTEST/BTC.BINANCE-5-MINUTE-LAST-EXTERNAL"
REQ = {
    "bar_type": BT,
    "start": "2018-01-10T00:00:00Z",
    "end": "2018-01-31T00:00:00Z",
    "price_precision": 8,
    "size_precision": 8,
}


def _frame(n=100):
    ts = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    price = 100 + np.arange(n) / 100
    return pa.table(
        {
            "timestamp": ts,
            "open": price,
            "high": price + 1,
            "low": price - 1,
            "close": price,
            "volume": np.ones(n),
        }
    )


def _window(n=100):
    return {
        "bar_type": "X.Y-1-MINUTE-LAST-EXTERNAL",
        "start": "2024-01-01T00:00:00Z",
        "end": f"{pd.Timestamp('2024-01-01', tz='UTC') + pd.Timedelta(minutes=n):%Y-%m-%dT%H:%M:%SZ}",
        "price_precision": 2,
        "size_precision": 0,
    }


def test_freqtrades_feather_file_loads_without_any_column_map(shared, run):
    # Before: "Parquet magic bytes not found". The date column is found by its name.
    path = shared / "freqtrade" / "binance" / "UNITTEST_BTC-5m.feather"
    frame = pd.read_feather(path)
    result = run([REQ], [{"name": "f", "plugin": "parquet", "path": str(path)}])
    report = result.report.requests[0]
    assert report.sources[0].status == "ok", report.sources[0].error
    assert report.sources[0].received == len(frame) == 5760
    (bars,) = result.bars.values()
    by_open = dict(zip(frame["date"].dt.as_unit("ns").astype("int64"), frame["close"], strict=True))
    assert all(round(by_open[b.ts_event], 8) == float(b.close) for b in bars)
    assert bars[0].ts_event == frame["date"].iloc[0].value


@pytest.mark.parametrize("kind", ["ipc_file", "ipc_stream", "feather_v1", "feather_v2_lz4"])
def test_every_arrow_ipc_flavour_reads(run, tmp_path, kind):
    table = _frame()
    path = tmp_path / "bars.arrow"
    if kind == "ipc_file":
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)
    elif kind == "ipc_stream":
        with pa.ipc.new_stream(path, table.schema) as writer:
            writer.write_table(table)
    elif kind == "feather_v1":
        with pytest.warns(DeprecationWarning):
            feather.write_feather(table.to_pandas(), path, version=1)
    else:
        feather.write_feather(table, path, compression="lz4")
    result = run([_window()], [{"name": "f", "plugin": "parquet", "path": str(path)}])
    (bars,) = result.bars.values()
    assert len(bars) == 100
    assert [float(b.close) for b in bars] == table.column("close").to_pylist()
    assert bars[0].ts_event == pd.Timestamp("2024-01-01", tz="UTC").value


def test_a_folder_of_parquet_and_feather_parts_reads_as_one(run, tmp_path):
    table = _frame(200)
    pq.write_table(table.slice(0, 100), tmp_path / "a.parquet")
    feather.write_feather(table.slice(100), tmp_path / "b.feather")
    result = run([_window(200)], [{"name": "f", "plugin": "parquet", "path": str(tmp_path)}])
    assert result.report.requests[0].injected == 200


def test_a_file_that_is_neither_is_named(run, tmp_path):
    (tmp_path / "bars.feather").write_bytes(b"date,open\n1,2\n")
    report = run(
        [_window()], [{"name": "f", "plugin": "parquet", "path": str(tmp_path / "bars.feather")}]
    ).report
    source = report.requests[0].sources[0]
    assert source.status == "error"
    assert (
        "neither parquet nor Arrow IPC/feather" in source.error and "bars.feather" in source.error
    )


def test_a_truncated_feather_file_is_a_clear_error(run, tmp_path):
    path = tmp_path / "bars.feather"
    feather.write_feather(_frame(), path)
    path.write_bytes(path.read_bytes()[:200])
    source = (
        run([_window()], [{"name": "f", "plugin": "parquet", "path": str(path)}])
        .report.requests[0]
        .sources[0]
    )
    assert source.status == "error" and "Arrow IPC/feather" in source.error


def test_a_damaged_feather_body_is_a_clear_error_naming_the_file(run, tmp_path):
    path = tmp_path / "bars.feather"
    feather.write_feather(_frame(), path, compression="lz4")
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64  # inside the compressed buffers
    path.write_bytes(bytes(data))
    source = (
        run([_window()], [{"name": "f", "plugin": "parquet", "path": str(path)}])
        .report.requests[0]
        .sources[0]
    )
    assert source.status == "error"
    assert "bars.feather" in source.error and (
        "cannot read" in source.error or "not a readable" in source.error
    )
