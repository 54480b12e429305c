"""
The demo: a real TradingNode warm-started from the bundled sample, then fed a few replayed bars.

``nautilus-backfill demo`` runs it. The backfill config lists IB first (on 127.0.0.1, where
no gateway runs on a fresh machine, so it is refused) and the bundled CSV second, which is the
fallback a real deployment has when the gateway is down.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nautilus_backfill.orchestrator import Backfill
from nautilus_backfill.replay import REPLAY, ReplayDataClientConfig, ReplayDataClientFactory
from nautilus_backfill.report import BackfillReport
from nautilus_trader.config import CacheConfig, LoggingConfig, StrategyConfig, TradingNodeConfig
from nautilus_trader.indicators import ExponentialMovingAverage
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.trading.strategy import Strategy

# The replay starts one bar before the backfill ends, as a live feed that re-sends the
# last closed interval would, to show that bar is not applied twice.
REPLAY_START = "2025-01-02T08:59:00Z"
REPLAY_BARS = 6


class EMACrossSignalConfig(StrategyConfig, frozen=True):
    """
    Configuration for ``EMACrossSignal``.

    Parameters
    ----------
    bar_type : str
        The bar type to trade on.
    fast_ema_period : int, default 10
        The fast EMA period.
    slow_ema_period : int, default 20
        The slow EMA period.

    """

    bar_type: str
    fast_ema_period: int = 10
    slow_ema_period: int = 20


class EMACrossSignal(Strategy):
    """
    An EMA cross written as any NautilusTrader user writes one; it records its signals
    instead of trading, so the demo needs no venue.

    Parameters
    ----------
    config : EMACrossSignalConfig
        The configuration.

    """

    def __init__(self, config: EMACrossSignalConfig) -> None:
        super().__init__(config)
        self.bar_type = BarType.from_str(config.bar_type)
        self.fast_ema = ExponentialMovingAverage(config.fast_ema_period)
        self.slow_ema = ExponentialMovingAverage(config.slow_ema_period)
        self.historical: list[Bar] = []
        self.live: list[dict[str, Any]] = []

    def on_start(self) -> None:
        self.register_indicator_for_bars(self.bar_type, self.fast_ema)
        self.register_indicator_for_bars(self.bar_type, self.slow_ema)
        self.subscribe_bars(self.bar_type)

    def on_historical_data(self, data: Any) -> None:
        if isinstance(data, Bar):
            self.historical.append(data)

    def on_bar(self, bar: Bar) -> None:
        warm = self.fast_ema.initialized and self.slow_ema.initialized
        signal = None
        if warm:
            signal = "BUY" if self.fast_ema.value > self.slow_ema.value else "SELL"
        self.live.append(
            {
                "ts_event": bar.ts_event,
                "close": float(bar.close),
                "warm": warm,
                "fast_ema": self.fast_ema.value,
                "fast_count": self.fast_ema.count,
                "slow_ema": self.slow_ema.value,
                "slow_count": self.slow_ema.count,
                "signal": signal,
            },
        )

    def on_stop(self) -> None:
        self.unsubscribe_bars(self.bar_type)


@dataclass
class DemoResult:
    """
    What the demo saw.

    Parameters
    ----------
    report : BackfillReport
        The backfill report.
    strategy : EMACrossSignal
        The strategy, after the node stopped.
    skipped : int
        Replayed bars not passed on because their interval was already backfilled.
    elapsed_s : float
        Wall time of the whole demo.

    """

    report: BackfillReport
    strategy: EMACrossSignal
    skipped: int = 0
    elapsed_s: float = 0.0


def build_node(
    replay: ReplayDataClientConfig,
    log_level: str = "ERROR",
    cache: CacheConfig | None = None,
) -> TradingNode:
    """
    Build a TradingNode whose only data client is a replay.

    Parameters
    ----------
    replay : ReplayDataClientConfig
        What the replay client plays.
    log_level : str, default "ERROR"
        The node's console log level.
    cache : CacheConfig, optional
        The node's cache config.

    Returns
    -------
    TradingNode

    """
    config = TradingNodeConfig(
        trader_id="DEMO-001",
        logging=LoggingConfig(log_level=log_level),
        cache=cache,
        data_clients={REPLAY: replay},
        timeout_connection=5.0,
        timeout_disconnection=2.0,
        timeout_post_stop=0.1,
    )
    # A loop of its own: a closed loop left current by an earlier node cannot be reused.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node = TradingNode(config=config, loop=loop)
    node.add_data_client_factory(REPLAY, ReplayDataClientFactory)
    node.build()
    return node


def run_demo(config: Path, replay_path: str, log_level: str = "ERROR") -> DemoResult:
    """
    Build the node, backfill it from `config`, run it until the replay ends.

    Parameters
    ----------
    config : Path
        The backfill TOML.
    replay_path : str
        The CSV the replay feed plays.
    log_level : str, default "ERROR"
        The node's console log level.

    Returns
    -------
    DemoResult

    """
    started = time.monotonic()
    backfill = Backfill.from_toml(config)
    bar_type = backfill.config.requests[0].bar_type
    replay = ReplayDataClientConfig(
        path=replay_path, start=REPLAY_START, count=REPLAY_BARS, interval_ms=50
    )
    node = build_node(replay, log_level)
    strategy = EMACrossSignal(EMACrossSignalConfig(bar_type=bar_type))
    node.trader.add_strategy(strategy)
    try:
        report = backfill.inject(node)
        node.run()
    finally:
        node.dispose()
    guard = strategy.__dict__.get("handle_bar")
    return DemoResult(
        report,
        strategy,
        getattr(guard, "skipped", 0),
        time.monotonic() - started,
    )
