"""freqtrade data folders: every storage format, spot and futures, checked against the files."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from nautilus_backfill.plugins.freqtrade.source import (
    FreqtradeBarSource,
    FreqtradeSourceConfig,
    pair_candidates,
    timeframe,
)
from nautilus_backfill.source import BarRequest, SourceContext, Span
from nautilus_backfill.timeutil import bar_step_ns
from nautilus_trader.model.data import BarType
from nautilus_trader.model.identifiers import InstrumentId

SPOT_1M = "UNITTEST/BTC.BINANCE-1-MINUTE-LAST-EXTERNAL"
SPOT_5M = "UNITTEST/BTC.BINANCE-5-MINUTE-LAST-EXTERNAL"
PERP_1H = "XRPUSDT-PERP.BINANCE-1-HOUR-LAST-EXTERNAL"
MS = 1_000_000


def _json_rows(path: Path) -> list[list[float]]:
    # The independent reading: the json module, as freqtrade documents the format.
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return json.load(fh)


def _source(folder: Path, **keys) -> FreqtradeBarSource:
    cfg = FreqtradeSourceConfig(name="ft", plugin="freqtrade", path=str(folder), **keys)
    return FreqtradeBarSource(cfg, SourceContext(base_dir=Path.cwd()))


def _request(bar_type: str, end_ns: int = 4_000_000_000 * 10**9) -> BarRequest:
    bt = BarType.from_str(bar_type)
    return BarRequest(bt, bar_step_ns(bt), end_ns, 0, None)


def _everything(source: FreqtradeBarSource, bar_type: str) -> pa.Table:
    request = _request(bar_type)
    return source.fetch(request, Span(0, request.end_ns)).table


def _assert_rows(table: pa.Table, rows: list[list[float]]) -> None:
    assert table.num_rows == len(rows)
    expect = np.array(rows, dtype=np.float64)
    assert table.column("ts").to_pylist() == [int(r[0]) * MS for r in rows]
    for i, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        np.testing.assert_array_equal(table.column(name).to_numpy(), expect[:, i])


@pytest.fixture
def binance(shared) -> Path:
    return shared / "freqtrade" / "binance"


def test_spot_json_bar_for_bar(binance):
    path = binance / "UNITTEST_BTC-1m.json"
    table = _everything(_source(binance), SPOT_1M)
    _assert_rows(table, _json_rows(path))
    assert table.column("_row").to_pylist()[:3] == [1, 2, 3]
    assert table.column("_file")[0].as_py() == path.name


def test_futures_jsongz_from_a_perp_instrument_id(binance):
    path = binance / "futures" / "XRP_USDT_USDT-1h-futures.json.gz"
    table = _everything(_source(binance), PERP_1H)
    _assert_rows(table, _json_rows(path))


def test_feather_bar_for_bar_with_freqtrades_own_reading(binance):
    path = binance / "UNITTEST_BTC-5m.feather"
    frame = pd.read_feather(path)  # what FeatherDataHandler does, then positional columns
    table = _everything(_source(binance), SPOT_5M)
    assert table.num_rows == len(frame) == 5760
    assert table.column("ts").to_pylist() == frame["date"].dt.as_unit("ns").astype("int64").tolist()
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(table.column(name).to_numpy(), frame[name].to_numpy(float))


@pytest.mark.parametrize("fmt", ["json", "jsongz", "feather", "parquet"])
def test_every_format_freqtrade_writes_gives_the_same_bars(binance, tmp_path, fmt):
    # Write the real 1m candles the way each freqtrade data handler's ohlcv_store does.
    rows = _json_rows(binance / "UNITTEST_BTC-1m.json")
    frame = pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "volume"])
    out = tmp_path / "binance"
    out.mkdir()
    if fmt in ("json", "jsongz"):
        name = "UNITTEST_BTC-1m.json" + (".gz" if fmt == "jsongz" else "")
        frame.to_json(out / name, orient="values", compression="gzip" if fmt == "jsongz" else None)
    else:
        frame["date"] = pd.to_datetime(frame["date"], unit="ms", utc=True)
        if fmt == "feather":
            frame.to_feather(
                out / "UNITTEST_BTC-1m.feather", compression_level=9, compression="lz4"
            )
        else:
            frame.to_parquet(out / "UNITTEST_BTC-1m.parquet")
    table = _everything(_source(out), SPOT_1M)
    assert table.num_rows == len(rows)
    assert table.column("ts").to_pylist() == [r[0] * MS for r in rows]
    # pandas' JSON writer keeps 15 significant digits: compare at the file's 8 decimals.
    np.testing.assert_allclose(table.column("close").to_numpy(), [r[4] for r in rows], rtol=1e-12)


def test_end_to_end_bars_are_open_stamped_utc(binance, run):
    rows = _json_rows(binance / "UNITTEST_BTC-1m.json")
    req = {
        "bar_type": SPOT_1M,
        "bars": 10,
        "end": "2017-11-14T22:00:00Z",
        "price_precision": 8,
        "size_precision": 8,
    }
    result = run([req], [{"name": "ft", "plugin": "freqtrade", "path": str(binance)}])
    (bars,) = result.bars.values()
    assert result.report.requests[0].injected == 10
    by_open = {int(r[0]) * MS: r for r in rows}
    for bar in bars:
        row = by_open[bar.ts_event]  # ts_event is the candle's open time, as freqtrade stores
        assert bar.ts_init == bar.ts_event + 60 * 10**9
        assert float(bar.open) == row[1] and float(bar.close) == row[4]
    assert bars[-1].ts_init <= pd.Timestamp("2017-11-14T22:00:00Z").value


@pytest.mark.parametrize(
    ("instrument_id", "expected"),
    [
        ("BTC/USDT.BINANCE", ["BTC/USDT"]),
        ("BTCUSDT.BINANCE", ["BTC/USDT"]),
        ("BTCUSDT-PERP.BINANCE", ["BTC/USDT:USDT"]),
        ("ETHBTC.BINANCE", ["ETH/BTC"]),
        ("BTCFDUSD.BINANCE", ["BTC/FDUSD", "BTCFD/USD"]),
        ("FOO.BINANCE", []),
    ],
)
def test_pair_rule(instrument_id, expected):
    assert pair_candidates(InstrumentId.from_str(instrument_id), None) == expected


def test_pairs_table_overrides_the_rule(binance, tmp_path):
    shutil.copytree(binance, tmp_path / "binance")
    bt = "XRPPERP.BINANCE-1-HOUR-LAST-EXTERNAL"  # the rule would find no pair in this symbol
    source = _source(tmp_path / "binance", pairs={"XRPPERP.BINANCE": "XRP/USDT:USDT"})
    assert _everything(source, bt).num_rows == len(
        _json_rows(binance / "futures" / "XRP_USDT_USDT-1h-futures.json.gz")
    )
    assert "pairs:" in _source(tmp_path / "binance").check([_request(bt)])[0]


def test_an_ambiguous_split_is_settled_by_the_files_or_refused(binance, tmp_path):
    out = tmp_path / "binance"
    out.mkdir()
    shutil.copy(binance / "UNITTEST_BTC-1m.json", out / "BTC_FDUSD-1m.json")
    bt = "BTCFDUSD.BINANCE-1-MINUTE-LAST-EXTERNAL"
    assert _everything(_source(out), bt).num_rows > 0  # only BTC/FDUSD has a file
    shutil.copy(binance / "UNITTEST_BTC-1m.json", out / "BTCFD_USD-1m.json")
    with pytest.raises(Exception, match="more than one freqtrade pair"):
        _everything(_source(out), bt)


@pytest.mark.parametrize(
    ("spec", "tf"),
    [
        ("1-MINUTE", "1m"),
        ("5-MINUTE", "5m"),
        ("1-HOUR", "1h"),
        ("4-HOUR", "4h"),
        ("1-DAY", "1d"),
        ("1-WEEK", "1w"),
        ("1-SECOND", "1s"),
    ],
)
def test_timeframe_names(spec, tf):
    assert timeframe(BarType.from_str(f"BTC/USDT.BINANCE-{spec}-LAST-EXTERNAL")) == tf


def test_a_step_freqtrade_cannot_name_is_a_clear_error(binance):
    request = _request("UNITTEST/BTC.BINANCE-100-MILLISECOND-LAST-EXTERNAL")
    (problem,) = _source(binance).check([request])
    assert problem.startswith("plugin: freqtrade has no timeframe for 100-MILLISECOND")


def test_quote_bar_types_are_refused_not_served_trade_candles(binance):
    (problem,) = _source(binance).check([_request("UNITTEST/BTC.BINANCE-1-MINUTE-MID-EXTERNAL")])
    assert problem.startswith("plugin: freqtrade candles are trade (LAST) bars")


def test_mark_and_funding_rate_files_are_not_bars(binance, tmp_path):
    out = tmp_path / "binance" / "futures"
    out.mkdir(parents=True)
    src = binance / "futures" / "XRP_USDT_USDT-1h-futures.json.gz"
    shutil.copy(src, out / "XRP_USDT_USDT-1h-mark.json.gz")
    shutil.copy(src, out / "XRP_USDT_USDT-1h-funding_rate.json.gz")
    (problem,) = _source(tmp_path / "binance").check([_request(PERP_1H)])
    assert problem.startswith("path: no freqtrade candles for XRPUSDT-PERP.BINANCE-1-HOUR")
    assert "XRP_USDT_USDT-1h-mark.json.gz" in problem  # listed as a file of the pair, not read


def test_check_is_clean_for_a_good_folder_and_names_a_missing_one(binance, tmp_path):
    requests = [_request(SPOT_1M), _request(SPOT_5M), _request(PERP_1H)]
    assert _source(binance).check(requests) == []
    (problem,) = _source(tmp_path / "nope").check([_request(SPOT_1M)])
    assert problem.startswith("path: freqtrade data folder") and "does not exist" in problem


def test_two_formats_of_one_pair_are_refused_until_format_is_set(binance, tmp_path):
    out = tmp_path / "binance"
    out.mkdir()
    shutil.copy(binance / "UNITTEST_BTC-1m.json", out / "UNITTEST_BTC-1m.json")
    feather.write_feather(
        pa.table(
            {
                "date": pa.array([0], pa.timestamp("ms", "UTC")),
                "open": [1.0],
                "high": [1.0],
                "low": [1.0],
                "close": [1.0],
                "volume": [1.0],
            }
        ),
        out / "UNITTEST_BTC-1m.feather",
    )
    (problem,) = _source(out).check([_request(SPOT_1M)])
    assert problem.startswith("format: ") and "more than one format" in problem
    assert _everything(_source(out, format="json"), SPOT_1M).num_rows == len(
        _json_rows(binance / "UNITTEST_BTC-1m.json")
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("UNITTEST_BTC-1m.json", b"not json", "not JSON"),
        ("UNITTEST_BTC-1m.json", b'{"a": 1}', "a JSON dict"),
        ("UNITTEST_BTC-1m.json", b"[[1509836520000, 1, 2]]", "rows are not [epoch ms"),
        ("UNITTEST_BTC-1m.json", b"[[1509836520, 1, 1, 1, 1, 1]]", "epoch seconds"),
        ("UNITTEST_BTC-1m.json.gz", b"not gzip", "cannot read"),
        ("UNITTEST_BTC-1m.feather", b"PAR1 not feather", "not a feather"),
    ],
)
def test_wrong_files_are_clear_errors_never_bars(run, tmp_path, name, content, message):
    out = tmp_path / "binance"
    out.mkdir()
    (out / name).write_bytes(content)
    req = {
        "bar_type": SPOT_1M,
        "bars": 5,
        "end": "2017-11-14T22:00:00Z",
        "price_precision": 8,
        "size_precision": 8,
    }
    result = run([req], [{"name": "ft", "plugin": "freqtrade", "path": str(out)}])
    report = result.report.requests[0]
    assert report.injected == 0 and not result.bars.get(BarType.from_str(SPOT_1M))
    assert report.sources[0].status == "error"
    assert message in report.sources[0].error and name in report.sources[0].error


def test_feather_columns_in_another_order_are_refused(tmp_path):
    out = tmp_path / "binance"
    out.mkdir()
    feather.write_feather(
        pa.table(
            {
                "date": pa.array([1509836520000], pa.int64()),
                "open": [1.0],
                "close": [2.0],
                "high": [3.0],
                "low": [0.5],
                "volume": [1.0],
            }
        ),
        out / "UNITTEST_BTC-1m.feather",
    )
    with pytest.raises(Exception, match="would swap prices"):
        _everything(_source(out), SPOT_1M)


def test_null_and_short_rows_are_counted_not_guessed(run, tmp_path):
    out = tmp_path / "binance"
    out.mkdir()
    base = 1509836520000
    rows = [[base + i * 60000, 1.0, 1.0, 1.0, 1.0, 1.0] for i in range(5)]
    rows[1][4] = None  # freqtrade's writer turns NaN into null
    rows[2] = rows[2][:4]
    (out / "UNITTEST_BTC-1m.json").write_text(json.dumps(rows))
    req = {
        "bar_type": SPOT_1M,
        "start": "2017-11-04T00:00:00Z",
        "end": "2017-11-06T00:00:00Z",
        "price_precision": 8,
        "size_precision": 8,
    }
    report = run([req], [{"name": "ft", "plugin": "freqtrade", "path": str(out)}]).report.requests[
        0
    ]
    assert report.injected == 3
    assert report.dropped == {"non_finite": 1, "unparseable": 1}


@pytest.mark.parametrize("pretty", [False, True])
def test_null_prices_are_non_finite_on_the_fast_path_too(run, tmp_path, pretty):
    out = tmp_path / "binance"
    out.mkdir()
    base = 1509836520000
    rows = [[base + i * 60000, 1.0, 1.0, 1.0, 1.0, 1.0] for i in range(4)]
    rows[2][4] = None
    (out / "UNITTEST_BTC-1m.json").write_text(json.dumps(rows, indent=2 if pretty else None))
    req = {
        "bar_type": SPOT_1M,
        "start": "2017-11-04T00:00:00Z",
        "end": "2017-11-06T00:00:00Z",
        "price_precision": 8,
        "size_precision": 8,
    }
    report = run([req], [{"name": "ft", "plugin": "freqtrade", "path": str(out)}]).report.requests[
        0
    ]
    assert report.injected == 3 and report.dropped == {"non_finite": 1}


def test_the_data_folder_above_the_exchanges_finds_the_venues_folder(shared, run):
    # path = user_data/data: BINANCE bars come from its binance/ folder.
    table = _everything(_source(shared / "freqtrade"), SPOT_1M)
    assert table.num_rows == len(
        _json_rows(shared / "freqtrade" / "binance" / "UNITTEST_BTC-1m.json")
    )
    (problem,) = _source(shared / "freqtrade").check(
        [_request("UNITTEST/BTC.KRAKEN-1-MINUTE-LAST-EXTERNAL")]
    )
    assert problem.startswith("path: no freqtrade candles for UNITTEST/BTC.KRAKEN")


def test_a_json_file_in_epoch_microseconds_is_refused_with_the_reason(tmp_path):
    import json

    from nautilus_backfill.config import config_from_dict
    from nautilus_backfill.orchestrator import Backfill
    from nautilus_backfill.registry import build_registry

    folder = tmp_path / "binance"
    folder.mkdir()
    rows = [[1_700_000_000_000_000 + 60_000_000 * i, 1, 1, 1, 1, 1] for i in range(10)]
    (folder / "BTC_USDT-1m.json").write_text(json.dumps(rows))
    registry = build_registry(entry_points=False)
    cfg = config_from_dict({"backfill": {
        "requests": [{"bar_type": "BTC/USDT.BINANCE-1-MINUTE-LAST-EXTERNAL", "bars": 5, "end": "2024-01-01T00:00:00Z",
                      "price_precision": 2, "size_precision": 0}],
        "sources": [{"name": "ft", "plugin": "freqtrade", "path": str(folder)}]}}, registry=registry)
    r = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert r.sources[0].status == "error" and "epoch microseconds or nanoseconds" in r.sources[0].error
