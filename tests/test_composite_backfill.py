"""Composite requests end to end: sources asked for the source bars, both kinds injected, equal to NautilusTrader's aggregator."""

from __future__ import annotations

import pytest
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.orchestrator import Backfill
from nautilus_trader.cache.cache import Cache
from nautilus_trader.config import DataEngineConfig
from nautilus_trader.model.data import BarType
from test_aggregate_reference import Dataset, fields, nautilus_bars

COMPOSITE = "BTCUSDT.SIM-5-MINUTE-LAST-INTERNAL@1-MINUTE-EXTERNAL"
SOURCE = "BTCUSDT.SIM-1-MINUTE-LAST-EXTERNAL"


def _config(registry, shared, request, **backfill):
    return config_from_dict({"backfill": {
        "requests": [{"bar_type": COMPOSITE, "price_precision": 1, "size_precision": 4, **request}],
        "sources": [{"name": "btc", "plugin": "csv", "path": str(shared / "csv" / "btc-perp-20211231-20220201-1m.csv")}],
        **backfill}}, registry=registry)


def test_a_composite_request_injects_what_nautilus_aggregates_from_the_same_source_bars(registry, shared):
    cfg = _config(registry, shared, {"start": "2022-01-03T00:00:00Z", "end": "2022-01-04T00:00:00Z"})
    cache = Cache()
    report = Backfill(cfg, registry=registry).inject(cache)
    r = report.requests[0]
    assert r.status == "ok" and r.accounted() and r.injected == 1440
    assert r.composite.built == 288 and r.composite.bar_type == "BTCUSDT.SIM-5-MINUTE-LAST-INTERNAL"
    source = cache.bars(BarType.from_str(SOURCE))[::-1]
    ours = cache.bars(BarType.from_str(COMPOSITE).standard())[::-1]
    assert len(source) == 1440 and len(ours) == 288
    # The reference: the same source bars through NautilusTrader's TimeBarAggregator.
    data = Dataset(shared / "csv" / "btc-perp-20211231-20220201-1m.csv", "BTCUSDT", "LAST", 1, 4, slice(0, 1))
    data.bars = lambda skip: source
    start, end = source[0].ts_event + 1, source[-1].ts_init
    theirs = nautilus_bars(data, 0, BarType.from_str(COMPOSITE), DataEngineConfig(), start, end)
    assert fields(ours) == fields(theirs)


def test_count_mode_counts_composite_bars_and_asks_for_enough_source_bars(registry, shared):
    cfg = _config(registry, shared, {"bars": 200, "end": "2022-01-03T12:00:00Z"})
    result = Backfill(cfg, registry=registry).fetch()
    r = result.report.requests[0]
    assert r.wanted == 1009 and r.injected == 1009  # (200 + 1) * 5 + 4 source bars
    assert r.composite.wanted == 200 and r.composite.built == 200 and r.status == "ok"
    bars = result.bars[BarType.from_str(COMPOSITE).standard()]
    assert len(bars) == 200 and bars[-1].ts_init == 1_641_211_200 * 10**9  # closes at end
    doc = result.report.to_dict()["requests"][0]
    assert doc["composite"]["built"] == 200 and "composite 200 of 200" in result.report.render()


@pytest.mark.parametrize("skip_first", [False, True])
def test_aggregation_keys_under_backfill_are_used(registry, shared, skip_first):
    # The window starts 3 minutes into an interval: a partial first bar, kept or skipped.
    cfg = _config(registry, shared, {"start": "2022-01-03T00:03:00Z", "end": "2022-01-03T01:00:00Z"},
                  aggregation={"time_bars_skip_first_non_full_bar": skip_first,
                               "time_bars_timestamp_on_close": False})
    result = Backfill(cfg, registry=registry).fetch()
    c = result.report.requests[0].composite
    bars = result.bars[BarType.from_str(COMPOSITE).standard()]
    assert c.built == (11 if skip_first else 12) and c.dropped.get("incomplete", 0) == (1 if skip_first else 0)
    assert bars[-1].ts_event == bars[-1].ts_init - 5 * 60 * 10**9  # stamped on open


def test_a_composite_and_its_source_type_requested_together_is_a_clear_error(registry, shared):
    from nautilus_backfill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"requests\[1\]\.bar_type: .* also requested by requests\[0\]"):
        config_from_dict({"backfill": {"requests": [{"bar_type": SOURCE, "bars": 5}, {"bar_type": COMPOSITE, "bars": 5}],
                                       "sources": [{"name": "a", "plugin": "csv", "path": "x.csv"}]}}, registry=registry)
    with pytest.raises(ConfigError, match="WEEK bars are not supported"):
        config_from_dict({"backfill": {"requests": [{"bar_type": "X.Y-1-WEEK-LAST-INTERNAL@1-MINUTE-EXTERNAL", "bars": 5}],
                                       "sources": [{"name": "a", "plugin": "csv", "path": "x.csv"}]}}, registry=registry)


def test_composite_bars_stop_at_now_and_flat_ones_are_counted(registry, shared):
    import time

    # The file ends 2022-02-01; an `end` years ahead builds flat bars up to now, never past it.
    cfg = _config(registry, shared, {"bars": 5, "end": "2262-01-01T00:00:00Z"})
    result = Backfill(cfg, registry=registry).fetch()
    c = result.report.requests[0].composite
    bars = result.bars[BarType.from_str(COMPOSITE).standard()]
    assert max(b.ts_init for b in bars) <= time.time_ns()
    assert c.built == 5 and c.synthetic == 5 and "5 of them flat" in result.report.render()
    # A window of real trading: no flat bar.
    cfg = _config(registry, shared, {"start": "2022-01-03T00:00:00Z", "end": "2022-01-03T01:00:00Z"})
    assert Backfill(cfg, registry=registry).fetch().report.requests[0].composite.synthetic == 0
