"""
Composite demo: an EMA on a composite bar type, warm at the first bar the live aggregator builds.

A real ``TradingNode`` runs a strategy on ``EUR/USD.SIM-5-SECOND-MID-INTERNAL@1-SECOND-EXTERNAL``:
NautilusTrader's own ``TimeBarAggregator`` builds its bars, live, on the node's clock, from
1-second source bars. Before ``node.run()`` the source bars are backfilled, aggregated with
`aggregate` and both kinds are put in the cache; the warm-up feeds the composite bars to the EMAs.

Seconds, not minutes, so a run takes seconds: the bundled sample's minute bars are played as
1-second bars stamped on the wall clock by `ClockReplayDataClient` (labelled a replay, not market
data). The aggregation is the same for any unit. This is what a request for a composite bar type
does once the orchestrator asks for its source bars; the demo does those steps itself.
"""

from __future__ import annotations

import asyncio
import csv
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from nautilus_backfill.aggregate import (
    AggregationOptions,
    aggregate,
    composite_bars,
    interval_ns,
    options_of,
    source_bar_type,
)
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.convert import to_bars
from nautilus_backfill.demo import EMACrossSignal, EMACrossSignalConfig
from nautilus_backfill.warmup import WarmUp
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import (
    InstrumentProviderConfig,
    LiveDataClientConfig,
    LiveDataEngineConfig,
    LoggingConfig,
    TradingNodeConfig,
)
from nautilus_trader.data.messages import SubscribeBars, UnsubscribeBars
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.currencies import EUR, USD
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.identifiers import ClientId, Symbol
from nautilus_trader.model.instruments import CurrencyPair
from nautilus_trader.model.objects import Price, Quantity

CLOCK_REPLAY = "CLOCKREPLAY"
COMPOSITE = "EUR/USD.SIM-5-SECOND-MID-INTERNAL@1-SECOND-EXTERNAL"
SECOND = 1_000_000_000


def sample_path() -> str:
    """
    Return the bundled sample CSV (EUR/USD 1-minute mid bars, 2,000 rows).

    Returns
    -------
    str

    """
    return str(resources.files("nautilus_backfill.sample") / "eurusd-1-minute-mid.csv")


def read_values(path: str) -> np.ndarray:
    """
    Read the open, high, low, close and volume of each row of a CSV, in file order.

    Parameters
    ----------
    path : str
        A CSV with ``open,high,low,close,volume`` columns.

    Returns
    -------
    np.ndarray
        Shape (rows, 5), float64.

    """
    with open(path, newline="") as f:
        rows = [
            [float(r[k]) for k in ("open", "high", "low", "close", "volume")]
            for r in csv.DictReader(f)
        ]
    return np.array(rows, dtype=np.float64)


def restamped(values: np.ndarray, origin_ns: int, step_ns: int) -> BarArrays:
    """
    Return `values` as bars opening at `origin_ns`, one every `step_ns`.

    Parameters
    ----------
    values : np.ndarray
        Shape (rows, 5): open, high, low, close, volume.
    origin_ns : int
        The first bar's open.
    step_ns : int
        The bar length.

    Returns
    -------
    BarArrays

    """
    ts = origin_ns + step_ns * np.arange(len(values), dtype=np.int64)
    return BarArrays(ts, *(np.ascontiguousarray(values[:, i]) for i in range(5)))


class ClockReplayDataClientConfig(LiveDataClientConfig, frozen=True):
    """
    Configuration for ``ClockReplayDataClient``.

    Parameters
    ----------
    path : str
        The CSV whose rows are played, in order.
    origin_ns : int
        The open time the first row is given; row k opens ``k`` steps later.
    step_ms : int, default 1000
        The source bar length.
    after_ns : int
        Only bars that close after this are played (the earlier ones are the backfill's).
    count : int, default 12
        How many bars to play.
    latency_ms : int, default 50
        How long after its close each bar is sent, as a feed delivers a closed bar.
    price_precision : int, default 5
        Price precision.
    size_precision : int, default 0
        Size precision.

    """

    path: str = ""
    origin_ns: int = 0
    step_ms: int = 1000
    after_ns: int = 0
    count: int = 12
    latency_ms: int = 50
    price_precision: int = 5
    size_precision: int = 0


class ClockReplayDataClient(LiveMarketDataClient):
    """
    Send a CSV's rows as bars that close on the wall clock, each just after its close.

    A replay, not market data: every log line says so. Unlike ``ReplayDataClient`` it stamps the
    bars with the node's clock, so NautilusTrader's live time bar aggregators, whose timers run
    on that clock, build composite bars from them. It shuts the node down when done.

    Parameters
    ----------
    loop, client_id, msgbus, cache, clock
        As for any ``LiveMarketDataClient``.
    config : ClockReplayDataClientConfig
        What to play.

    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_id: ClientId,
        msgbus: Any,
        cache: Any,
        clock: Any,
        config: ClockReplayDataClientConfig,
    ) -> None:
        super().__init__(
            loop=loop,
            client_id=client_id,
            venue=None,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=InstrumentProvider(InstrumentProviderConfig()),
            config=config,
        )
        self._replay = config
        self.played: list[Bar] = []

    async def _connect(self) -> None:
        self._log.info(f"CLOCK REPLAY feed (not live market data) from {self._replay.path}")

    async def _disconnect(self) -> None:
        pass

    async def _subscribe_bars(self, command: SubscribeBars) -> None:
        self._log.info(f"CLOCK REPLAY: {self._replay.count} bars for {command.bar_type}")
        self.create_task(self._play(command.bar_type))

    async def _unsubscribe_bars(self, command: UnsubscribeBars) -> None:
        pass

    async def _play(self, bar_type: BarType) -> None:
        cfg = self._replay
        step = cfg.step_ms * 1_000_000
        bars = restamped(read_values(cfg.path), cfg.origin_ns, step)
        first = int(np.searchsorted(bars.ts_open + step, cfg.after_ns, side="right"))
        bars = bars.take(slice(first, first + cfg.count))
        for bar in to_bars(bars, bar_type, step, cfg.price_precision, cfg.size_precision):
            wait = (bar.ts_init + cfg.latency_ms * 1_000_000 - self._clock.timestamp_ns()) / 1e9
            await asyncio.sleep(max(wait, 0.0))
            self.played.append(bar)
            self._handle_data(bar)
        # One more interval, so the aggregator's timer builds the last composite bar.
        await asyncio.sleep(5 + cfg.latency_ms / 1000)
        self._log.info("CLOCK REPLAY finished, shutting the node down")
        self.shutdown_system("replay finished")


class ClockReplayDataClientFactory(LiveDataClientFactory):
    """Factory for ``ClockReplayDataClient``."""

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: ClockReplayDataClientConfig,
        msgbus: Any,
        cache: Any,
        clock: Any,
    ) -> ClockReplayDataClient:
        """
        Create the client.

        Returns
        -------
        ClockReplayDataClient

        """
        return ClockReplayDataClient(loop, ClientId(name), msgbus, cache, clock, config)


class CompositeEMA(EMACrossSignal):
    """The demo's EMA cross, keeping each live bar too; it stops the node after a minute."""

    def __init__(self, config: EMACrossSignalConfig) -> None:
        super().__init__(config)
        self.live_bars: list[Bar] = []

    def on_start(self) -> None:
        super().on_start()
        # A demo that cannot subscribe must still end.
        self.clock.set_time_alert_ns(
            "demo-watchdog", self.clock.timestamp_ns() + 60 * SECOND, self._watchdog
        )

    def _watchdog(self, event: Any) -> None:
        self.log.error("composite demo: no end of replay within 60 s, shutting the node down")
        self.shutdown_system("watchdog")

    def on_bar(self, bar: Bar) -> None:
        self.live_bars.append(bar)
        super().on_bar(bar)


@dataclass
class CompositeDemoResult:
    """
    What the composite demo saw.

    Parameters
    ----------
    options : AggregationOptions
        The node's time bar settings the backfill followed.
    source : list[Bar]
        The source bars injected.
    composite : list[Bar]
        The composite bars injected (the standard bar type, as the live aggregator's).
    strategy : CompositeEMA
        The strategy, after the node stopped.
    values : BarArrays
        The source bars, backfilled and then played live, as the replay stamped them.
    end_ns : int
        The backfill end.

    """

    options: AggregationOptions
    source: list[Bar]
    composite: list[Bar]
    strategy: CompositeEMA
    values: BarArrays
    end_ns: int


def _instrument(bar_type: BarType) -> CurrencyPair:
    iid = bar_type.instrument_id
    return CurrencyPair(
        iid,
        Symbol(iid.symbol.value),
        EUR,
        USD,
        5,
        0,
        Price.from_str("0.00001"),
        Quantity.from_int(1),
        0,
        0,
    )


def run_composite_demo(
    warm_bars: int = 40,
    live_source_bars: int = 12,
    build_delay_us: int = 300_000,
    log_level: str = "ERROR",
) -> CompositeDemoResult:
    """
    Backfill a composite bar type into a real TradingNode, then let its live aggregator run.

    Parameters
    ----------
    warm_bars : int, default 40
        Composite bars to backfill (5 source bars each).
    live_source_bars : int, default 12
        Source bars the replay sends live.
    build_delay_us : int, default 300_000
        ``DataEngineConfig.time_bars_build_delay``: the live aggregator builds each bar this
        long after its close, after the source bar closing with it has arrived.
    log_level : str, default "ERROR"
        The node's console log level.

    Returns
    -------
    CompositeDemoResult

    """
    composite = BarType.from_str(COMPOSITE)
    source_type = source_bar_type(composite)
    period, step = interval_ns(composite), interval_ns(source_type)
    path = sample_path()
    n_back = warm_bars * (period // step)
    # The backfill ends just after an interval closes, a few seconds ahead: time to build.
    grid = -(-(time.time_ns() + 3 * SECOND) // period) * period
    end = grid + 100_000_000
    origin = grid - n_back * step
    data_engine = LiveDataEngineConfig(time_bars_build_delay=build_delay_us)
    replay = ClockReplayDataClientConfig(
        path=path, origin_ns=origin, after_ns=end, count=live_source_bars
    )
    config = TradingNodeConfig(
        trader_id="DEMO-002",
        logging=LoggingConfig(log_level=log_level),
        data_engine=data_engine,
        data_clients={CLOCK_REPLAY: replay},
        timeout_connection=5.0,
        timeout_disconnection=2.0,
        timeout_post_stop=0.1,
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node = TradingNode(config=config, loop=loop)
    node.add_data_client_factory(CLOCK_REPLAY, ClockReplayDataClientFactory)
    node.build()
    strategy = CompositeEMA(EMACrossSignalConfig(bar_type=COMPOSITE))
    node.trader.add_strategy(strategy)
    try:
        time.sleep(max(end - time.time_ns(), 0) / 1e9)
        # The backfill: source bars closed by `end`, aggregated under the node's settings.
        options = options_of(node)
        arrays = restamped(read_values(path)[:n_back], origin, step)
        source = to_bars(arrays, source_type, step, 5, 0)
        agg, _ = aggregate(arrays, step, composite, options, end, size_precision=0)
        built = composite_bars(agg, composite, 5, 0)
        node.cache.add_instrument(_instrument(composite))
        node.cache.add_bars(source)
        node.cache.add_bars(built)
        WarmUp.of(node).add([source_type, composite.standard()])
        with warnings.catch_warnings():
            # NautilusTrader's aggregator floors with freq="d", which pandas 3 deprecates.
            warnings.filterwarnings("ignore", message="'d' is deprecated")
            node.run()
    finally:
        node.dispose()
    values = read_values(path)[: n_back + live_source_bars]
    return CompositeDemoResult(
        options, source, built, strategy, restamped(values, origin, step), end
    )
