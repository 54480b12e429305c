"""Warm start in a real TradingNode: bars injected before run(), indicators warm at the first live bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.demo import EMACrossSignal, EMACrossSignalConfig, build_node
from nautilus_backfill.errors import InsufficientHistoryError
from nautilus_backfill.replay import ReplayDataClientConfig
from nautilus_backfill.warmup import warm_up
from nautilus_trader.common.actor import Actor
from nautilus_trader.config import CacheConfig
from nautilus_trader.model.data import BarType

EUR = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"
GBP = "GBP/USD.SIM-1-MINUTE-MID-EXTERNAL"
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
N = 400
BACKFILL = 200
END = T0 + 300 * 60  # the backfill ends at the close of bar 299; the replay starts at bar 300


def _iso(seconds: int) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat()


def _walk(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 0.0002, N))
    open_ = np.concatenate([[1.1], close[:-1]])
    return pd.DataFrame({
        "timestamp": T0 + 60 * np.arange(N),
        "open": open_.round(5), "high": (np.maximum(open_, close) + 0.0001).round(5),
        "low": (np.minimum(open_, close) - 0.0001).round(5), "close": close.round(5),
        "volume": rng.integers(1, 100, N) * 1000,
    })


@pytest.fixture
def data(tmp_path):
    frames = {"EURUSD": _walk(1), "GBPUSD": _walk(2)}
    for symbol, df in frames.items():
        df.to_csv(tmp_path / f"{symbol}.csv", index=False)
        df.to_parquet(tmp_path / f"{symbol}.parquet")
    return frames


def _ema(values, period: int) -> float:
    alpha, value = 2.0 / (period + 1), values[0]
    for x in values[1:]:
        value = alpha * x + (1 - alpha) * value
    return value


def _backfill(registry, tmp_path, sources, bar_types=(EUR,), bars=BACKFILL, **kw):
    requests = [{"bar_type": bt, "bars": bars, "end": _iso(END), "price_precision": 5, "size_precision": 0}
                for bt in bar_types]
    doc = {"backfill": {"requests": requests, "sources": sources, **kw}}
    return Backfill(config_from_dict(doc, base_dir=tmp_path, registry=registry), registry=registry)


CSV = {"name": "csv", "plugin": "csv", "path": "{symbol}.csv"}
PARQUET = {"name": "pq", "plugin": "parquet", "path": "{symbol}.parquet"}
MISSING = {"name": "gone", "plugin": "csv", "path": "nowhere/{symbol}.csv"}


def _node(tmp_path, start_bar=300, count=5, bar_capacity=10_000):
    replay = ReplayDataClientConfig(
        path=str(tmp_path / "{symbol}.csv"), start=_iso(T0 + 60 * start_bar), count=count, interval_ms=20,
    )
    return build_node(replay, log_level="WARNING", cache=CacheConfig(bar_capacity=bar_capacity))


def _run(node):
    try:
        node.run()
    finally:
        node.dispose()


def _closes(df, first, last):
    return df["close"].to_numpy()[first:last + 1]


@pytest.mark.parametrize("sources", [[CSV], [PARQUET], [MISSING, CSV]], ids=["csv", "parquet", "first-fails"])
def test_ema_cross_is_warm_at_its_first_live_bar(tmp_path, registry, data, sources):
    node = _node(tmp_path)
    strategy = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR))
    node.trader.add_strategy(strategy)
    report = _backfill(registry, tmp_path, sources).inject(node)
    _run(node)

    assert report.requests[0].injected == BACKFILL and report.requests[0].accounted()
    assert len(strategy.historical) == BACKFILL
    assert [b.ts_event for b in strategy.historical] == sorted(b.ts_event for b in strategy.historical)
    first = strategy.live[0]
    assert first["ts_event"] == (T0 + 60 * 300) * 10**9
    assert first["warm"] and first["fast_count"] == BACKFILL + 1
    closes = _closes(data["EURUSD"], 300 - BACKFILL, 300)  # backfilled bars plus the first live one
    assert first["fast_ema"] == pytest.approx(_ema(closes, 10), abs=1e-12)
    assert first["slow_ema"] == pytest.approx(_ema(closes, 20), abs=1e-12)
    if sources[0] is MISSING:
        first_source = report.requests[0].sources[0]
        assert first_source.status == "empty" and "no file matches" in first_source.error


def test_live_bar_for_the_last_backfilled_interval_is_not_applied_twice(tmp_path, registry, data):
    node = _node(tmp_path, start_bar=298, count=5)  # replays bars 298 and 299 again, then 300..302
    strategy = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR))
    node.trader.add_strategy(strategy)
    _backfill(registry, tmp_path, [CSV]).inject(node)
    _run(node)
    assert [r["ts_event"] for r in strategy.live] == [(T0 + 60 * i) * 10**9 for i in (300, 301, 302)]
    assert strategy.live[0]["slow_count"] == BACKFILL + 1
    assert strategy.__dict__["handle_bar"].skipped == 2
    closes = _closes(data["EURUSD"], 300 - BACKFILL, 302)
    assert strategy.live[-1]["slow_ema"] == pytest.approx(_ema(closes, 20), abs=1e-12)


class Quiet(Actor):
    """An actor with no indicators: it must get no historical bars."""

    def __init__(self):
        super().__init__()
        self.historical = 0

    def on_start(self):
        self.subscribe_bars(BarType.from_str(EUR))

    def on_historical_data(self, data):
        self.historical += 1


class OtherBarType(EMACrossSignal):
    """Registers indicators for a bar type nobody backfilled."""


def test_each_component_gets_exactly_its_bar_types(tmp_path, registry, data):
    node = _node(tmp_path)
    eur = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR, order_id_tag="EUR"))
    gbp = EMACrossSignal(EMACrossSignalConfig(bar_type=GBP, order_id_tag="GBP"))
    other = OtherBarType(EMACrossSignalConfig(bar_type="USD/JPY.SIM-1-MINUTE-MID-EXTERNAL"))
    quiet = Quiet()
    node.trader.add_actor(quiet)
    node.trader.add_strategies([eur, gbp, other])
    _backfill(registry, tmp_path, [CSV], bar_types=(EUR, GBP), bars=150).inject(node)
    _run(node)
    assert len(eur.historical) == len(gbp.historical) == 150
    assert {b.bar_type for b in eur.historical} == {BarType.from_str(EUR)}
    assert {b.bar_type for b in gbp.historical} == {BarType.from_str(GBP)}
    assert eur.live[0]["slow_count"] == gbp.live[0]["slow_count"] == 151
    assert gbp.live[0]["slow_ema"] == pytest.approx(_ema(_closes(data["GBPUSD"], 150, 300), 20), abs=1e-12)
    assert quiet.historical == 0
    assert other.historical == [] and other.slow_ema.count == 0


def test_strategy_added_after_inject_is_warmed_too(tmp_path, registry, data):
    node = _node(tmp_path)
    _backfill(registry, tmp_path, [CSV]).inject(node)
    strategy = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR))
    node.trader.add_strategy(strategy)
    _run(node)
    assert strategy.live[0]["warm"] and strategy.live[0]["slow_count"] == BACKFILL + 1


class ExplicitWarmUp(EMACrossSignal):
    def on_start(self):
        self.register_indicator_for_bars(self.bar_type, self.fast_ema)
        self.register_indicator_for_bars(self.bar_type, self.slow_ema)
        self.fed = warm_up(self, self.bar_type)
        self.subscribe_bars(self.bar_type)


def test_warm_up_off_and_the_explicit_helper(tmp_path, registry, data):
    node = _node(tmp_path)
    plain = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR, order_id_tag="PLAIN"))
    explicit = ExplicitWarmUp(EMACrossSignalConfig(bar_type=EUR, order_id_tag="EXPLICIT"))
    node.trader.add_strategies([plain, explicit])
    _backfill(registry, tmp_path, [CSV], warm_up=False).inject(node)
    _run(node)
    assert plain.live[0]["slow_count"] == 1 and not plain.live[0]["warm"]  # cold, as asked
    assert explicit.fed == BACKFILL and explicit.live[0]["slow_count"] == BACKFILL + 1


def test_every_source_failing_still_starts_the_node_cold(tmp_path, registry, data, monkeypatch):
    import nautilus_backfill.report as report_module

    # What goes to the node's log, recorded on its way to NautilusTrader's logger (whose output
    # a BacktestEngine run earlier in the same process may have taken over).
    warnings: list[str] = []

    class Recording(report_module.Logger):
        def warning(self, message, *args):
            warnings.append(message)
            return super().warning(message, *args)

    monkeypatch.setattr(report_module, "Logger", Recording)
    node = _node(tmp_path)
    strategy = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR))
    node.trader.add_strategy(strategy)
    report = _backfill(registry, tmp_path, [MISSING]).inject(node)
    _run(node)
    assert report.requests[0].injected == 0 and report.requests[0].sources[0].status == "empty"
    assert len(strategy.live) == 5 and strategy.live[0]["slow_count"] == 1
    assert any(
        w.startswith("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL starts cold, no bars backfilled: gone: empty (no file matches")
        for w in warnings
    ), warnings


def test_on_insufficient_fail_raises_before_run(tmp_path, registry, data):
    node = _node(tmp_path)
    try:
        with pytest.raises(InsufficientHistoryError, match=r"EUR/USD.SIM-1-MINUTE-MID-EXTERNAL \(failed, 0/200\)"):
            _backfill(registry, tmp_path, [MISSING], on_insufficient="fail").inject(node)
    finally:
        node.dispose()


@pytest.mark.parametrize("on_capacity", ["fail", "truncate"])
def test_bar_capacity_in_a_node(tmp_path, registry, data, on_capacity):
    node = _node(tmp_path, bar_capacity=50)
    strategy = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR))
    node.trader.add_strategy(strategy)
    report = _backfill(registry, tmp_path, [CSV], on_capacity=on_capacity).inject(node).requests[0]
    _run(node)
    assert report.accounted()
    if on_capacity == "fail":
        assert report.injected == 0 and "bar_capacity=50" in report.error
        assert strategy.historical == [] and not strategy.live[0]["warm"]
    else:
        assert report.injected == 50 and report.dropped == {"over_capacity": 150}
        assert len(strategy.historical) == 50 and strategy.live[0]["slow_count"] == 51


def test_restart_and_reset_never_feed_an_indicator_twice(tmp_path, registry, data):
    node = _node(tmp_path)
    strategy = EMACrossSignal(EMACrossSignalConfig(bar_type=EUR))
    node.trader.add_strategy(strategy)
    try:
        _backfill(registry, tmp_path, [CSV]).inject(node)
        strategy.start()  # the node would do this in run(); no live bar is needed here
        assert strategy.slow_ema.count == BACKFILL
        strategy.stop()
        strategy.start()  # a restart keeps its indicators: feeding them again would count twice
        assert strategy.slow_ema.count == BACKFILL and len(strategy.historical) == BACKFILL
        strategy.stop()
        strategy.reset()  # reset() keeps indicator state unless on_reset resets them: no refeed
        strategy.start()
        assert strategy.slow_ema.count == BACKFILL and len(strategy.historical) == BACKFILL
        strategy.stop()
        strategy.reset()
        strategy.fast_ema.reset()  # as an on_reset that resets its indicators would
        strategy.slow_ema.reset()
        strategy.start()  # fresh indicators: warmed up again
        assert strategy.slow_ema.count == BACKFILL and len(strategy.historical) == 2 * BACKFILL
    finally:
        node.dispose()
