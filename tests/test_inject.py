"""Injection into a real NautilusTrader Cache: ordering, capacity, bars already cached."""

from __future__ import annotations

from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_trader.cache.cache import Cache
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.model.data import BarType

BT = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"


def _file(tmp_path, n):
    lines = ["timestamp,open,high,low,close"]
    for i in range(n):
        lines.append(f"{1704067200 + 60 * i},1.1,1.2,1.0,1.1")
    p = tmp_path / "bars.csv"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def _backfill(registry, path, n, **kw):
    cfg = config_from_dict({"backfill": {**kw, "requests": [{"bar_type": BT, "bars": n, "end": "2024-02-01T00:00:00Z",
        "price_precision": 5, "size_precision": 0}], "sources": [{"name": "f", "plugin": "csv", "path": path}]}},
        registry=registry)
    return Backfill(cfg, registry=registry)


def test_inject_adds_sorted_bars_to_the_cache(tmp_path, registry):
    cache = Cache(config=CacheConfig(bar_capacity=1000))
    report = _backfill(registry, _file(tmp_path, 300), 200).inject(cache)
    bt = BarType.from_str(BT)
    assert cache.bar_count(bt) == 200 == report.requests[0].injected
    assert cache.bar(bt).ts_event == 1704067200 * 10**9 + 299 * 60 * 10**9
    assert report.requests[0].accounted()


def test_over_capacity_fails_clearly_by_default(tmp_path, registry):
    cache = Cache(config=CacheConfig(bar_capacity=100))
    report = _backfill(registry, _file(tmp_path, 300), 250).inject(cache).requests[0]
    assert cache.bar_count(BarType.from_str(BT)) == 0
    assert report.dropped == {"over_capacity": 250} and report.accounted()
    assert "bar_capacity=100" in report.error and "at least 250" in report.error


def test_over_capacity_truncate_says_so(tmp_path, registry):
    cache = Cache(config=CacheConfig(bar_capacity=100))
    report = _backfill(registry, _file(tmp_path, 300), 250, on_capacity="truncate").inject(cache).requests[0]
    assert cache.bar_count(BarType.from_str(BT)) == 100 == report.injected
    assert report.dropped == {"over_capacity": 150} and report.error is None
    assert report.status == "short"  # asked for: fewer bars, not a failure
    assert any("kept the newest 100 of 250 bars" in e for e in report.examples)


def test_bars_already_cached_are_not_added_twice(tmp_path, registry):
    cache = Cache(config=CacheConfig(bar_capacity=1000))
    path = _file(tmp_path, 300)
    _backfill(registry, path, 100).inject(cache)
    report = _backfill(registry, path, 150).inject(cache).requests[0]
    assert report.dropped == {"already_cached": 150} and report.injected == 0
    assert cache.bar_count(BarType.from_str(BT)) == 100


def test_instrument_precision_wins(tmp_path, registry):
    from nautilus_trader.test_kit.providers import TestInstrumentProvider

    cache = Cache(config=CacheConfig())
    instrument = TestInstrumentProvider.default_fx_ccy("EUR/USD")
    cache.add_instrument(instrument)
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": BT, "bars": 5, "end": "2024-02-01T00:00:00Z"}],
        "sources": [{"name": "f", "plugin": "csv", "path": _file(tmp_path, 10)}]}}, registry=registry)
    Backfill(cfg, registry=registry).inject(cache)
    assert cache.bar(BarType.from_str(BT)).open.precision == instrument.price_precision


def test_no_precision_is_a_clear_error(tmp_path, registry):
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": BT, "bars": 5, "end": "2024-02-01T00:00:00Z"}],
        "sources": [{"name": "f", "plugin": "csv", "path": _file(tmp_path, 10)}]}}, registry=registry)
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert "backfill.requests[0].price_precision" in report.error
    assert report.dropped == {"no_precision": 5} and report.accounted()
