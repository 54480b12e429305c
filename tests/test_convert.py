"""Arrays to `Bar`s: the capsule path gives exactly what `Bar.from_raw_arrays_to_list` gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nautilus_backfill import convert, cvec
from nautilus_backfill.bararrays import BarArrays
from nautilus_trader.cache.cache import Cache
from nautilus_trader.core import nautilus_pyo3
from nautilus_trader.model.data import Bar, BarType

MINUTE = 60_000_000_000
T0 = 1_700_000_040_000_000_000  # a whole minute


def _series(n: int, precision: int, size_precision: int, seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    mid = np.round(scale * (1 + rng.random(n)), precision)
    spread = np.round(rng.random(n) * scale * 0.01, precision)
    o = np.round(mid + rng.choice([-1, 1], n) * spread / 2, precision)
    c = np.round(mid - rng.choice([-1, 1], n) * spread / 2, precision)
    h = np.round(np.maximum(o, c) + spread, precision)
    low = np.round(np.minimum(o, c) - spread, precision)
    v = np.round(rng.random(n) * 10.0 ** rng.integers(0, 9, n), size_precision)
    ts = T0 + MINUTE * np.arange(n, dtype=np.int64)
    return BarArrays(ts, o, h, low, c, v)


def _reference(bars: BarArrays, bar_type: BarType, p: int, sp: int, ts_event: str) -> list[Bar]:
    ts_init = (bars.ts_open + MINUTE).astype(np.uint64)
    ts_ev = ts_init if ts_event == "close" else bars.ts_open.astype(np.uint64)
    return Bar.from_raw_arrays_to_list(
        bar_type, p, sp, bars.open.copy(), bars.high.copy(), bars.low.copy(),
        bars.close.copy(), bars.volume.copy(), ts_ev, ts_init,
    )  # fmt: skip


def _assert_same(got: list[Bar], want: list[Bar]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert cvec._same(a, b), (a, b)


MAX_PRECISION = 16 if nautilus_pyo3.HIGH_PRECISION else 9


@pytest.mark.parametrize("precision", range(MAX_PRECISION + 1))
def test_capsule_path_equals_reference_at_every_precision(precision):
    bar_type = BarType.from_str("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL")
    # Values whose units at this precision stay below 2**53, where packing is exact.
    scale = min(1.0, 1e15 / 10.0**precision)
    bars = _series(3000 + precision, precision, precision % 4, seed=precision, scale=scale)
    values = [bars.open, bars.high, bars.low, bars.close, bars.volume]
    ts_init = (bars.ts_open + MINUTE).view(np.uint64)
    got = cvec.pack_bars(
        bar_type, precision, precision % 4, values, bars.ts_open.view(np.uint64), ts_init
    )
    assert got is not None, "the layout probe failed on this build"
    _assert_same(got, _reference(bars, bar_type, precision, precision % 4, "open"))


def test_large_and_negative_values_and_close_stamps(monkeypatch):
    # Prices near PRICE_MAX and volumes whose raw value needs the high 64-bit word.
    monkeypatch.setattr(convert, "PACK_THRESHOLD", 1)
    bar_type = BarType.from_str("CL.NYMEX-1-MINUTE-LAST-EXTERNAL")
    bars = _series(20_000, 2, 0, seed=7, scale=1e10)
    bars.open[:100] = -bars.open[:100]  # an instrument that can trade below zero
    bars.low[:100] = -bars.high[:100]
    bars.volume[:50] = 3e13
    ts_init = (bars.ts_open + MINUTE).view(np.uint64)
    values = [bars.open, bars.high, bars.low, bars.close, bars.volume]
    packed = cvec.pack_bars(bar_type, 2, 0, values, ts_init, ts_init)
    assert packed is not None
    _assert_same(packed, _reference(bars, bar_type, 2, 0, "close"))
    _assert_same(convert.to_bars(bars, bar_type, MINUTE, 2, 0, ts_event="close"), packed)


def test_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(convert, "PACK_THRESHOLD", 1)
    monkeypatch.setattr(cvec, "CHUNK", 1000)
    bar_type = BarType.from_str("AAPL.XNAS-1-MINUTE-LAST-EXTERNAL")
    bars = _series(2_501, 2, 0, seed=3, scale=100)
    assert cvec._layout(str(bar_type), 2, 0) is not None  # the probe, before counting
    calls = []
    real = cvec.capsule_to_list
    monkeypatch.setattr(cvec, "capsule_to_list", lambda c: calls.append(1) or real(c))
    got = convert.to_bars(bars, bar_type, MINUTE, 2, 0)
    assert len(calls) == 3  # 1000 + 1000 + 501
    _assert_same(got, _reference(bars, bar_type, 2, 0, "open"))
    cache = Cache()
    cache.add_bars(got)
    assert cache.bar_count(bar_type) == 2_501
    assert cache.bar(bar_type) == got[-1]


def test_values_too_large_for_exact_packing_use_the_reference_path(monkeypatch):
    monkeypatch.setattr(convert, "PACK_THRESHOLD", 1)
    bar_type = BarType.from_str("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL")
    bars = _series(100, 9, 0, seed=1, scale=1e8)  # 1e8 * 1e9 > 2**53 units
    values = [bars.open, bars.high, bars.low, bars.close, bars.volume]
    ts = bars.ts_open.view(np.uint64)
    assert cvec.pack_bars(bar_type, 9, 0, values, ts, ts + np.uint64(MINUTE)) is None
    got = convert.to_bars(bars, bar_type, MINUTE, 9, 0)
    _assert_same(got, _reference(bars, bar_type, 9, 0, "open"))


def test_a_layout_the_probe_cannot_read_falls_back(monkeypatch):
    # A vector whose bytes match nothing expected: the probe refuses, conversion still works.
    monkeypatch.setattr(convert, "PACK_THRESHOLD", 1)
    monkeypatch.setattr(cvec, "_rust_elements", lambda *a: bytes(cvec._PROBE_ROWS * 128))
    cvec._layout.cache_clear()
    try:
        bar_type = BarType.from_str("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL")
        bars = _series(500, 5, 0, seed=2)
        values = [bars.open, bars.high, bars.low, bars.close, bars.volume]
        ts = bars.ts_open.view(np.uint64)
        assert cvec.pack_bars(bar_type, 5, 0, values, ts, ts + np.uint64(MINUTE)) is None
        _assert_same(
            convert.to_bars(bars, bar_type, MINUTE, 5, 0), _reference(bars, bar_type, 5, 0, "open")
        )
    finally:
        cvec._layout.cache_clear()


def test_a_layout_that_packs_wrong_values_is_refused(monkeypatch):
    # Offsets found but wrong (open and close swapped): the self-check compares and refuses.
    real = cvec._measure

    def swapped(*args):
        layout = real(*args)
        o, h, low, c, v = layout.fields
        return cvec._Layout(
            layout.template, layout.width, (c, h, low, o, v), layout.ts_event, layout.ts_init
        )

    monkeypatch.setattr(cvec, "_measure", swapped)
    cvec._layout.cache_clear()
    try:
        assert cvec._layout("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", 5, 0) is None
    finally:
        cvec._layout.cache_clear()


def test_a_large_catalog_read_gives_exactly_nautilus_own_bars(tmp_path, run):
    # End to end over the capsule path: the bars the backfill injects from a catalog are the
    # bars ParquetDataCatalog.bars() returns, field for field.
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    assert convert.PACK_THRESHOLD <= 30_000
    bar_type = BarType.from_str("EUR/USD.SIM-1-MINUTE-BID-EXTERNAL")
    bars = _series(30_000, 5, 0, seed=11)
    bars.volume[:] = np.round(bars.volume)
    reference = _reference(bars, bar_type, 5, 0, "open")
    catalog = ParquetDataCatalog(str(tmp_path / "catalog"))
    catalog.write_data(reference)
    expected = catalog.bars(bar_types=[str(bar_type)])
    end = int(bars.ts_open[-1]) + MINUTE
    result = run(
        [
            {
                "bar_type": str(bar_type),
                "bars": 30_000,
                "end": pd.Timestamp(end, tz="UTC").isoformat(),
            }
        ],
        [{"name": "catalog", "plugin": "parquet", "path": str(tmp_path / "catalog")}],
    )
    (got,) = result.bars.values()
    assert result.report.requests[0].rounded == 0
    _assert_same(got, expected)
