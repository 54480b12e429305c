"""
A replay data client: plays bars from a file into a live node as if they were live.

The demo and the tests use it to show what a strategy sees after the backfill, without a
broker. It is a real ``LiveMarketDataClient`` registered through ``TradingNodeConfig.data_clients``
and a factory, as any adapter is; every log line it writes says it is a replay.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import InstrumentProviderConfig, LiveDataClientConfig
from nautilus_trader.data.messages import SubscribeBars, UnsubscribeBars
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.model.data import Bar
from nautilus_trader.model.identifiers import ClientId

REPLAY = "REPLAY"


class ReplayDataClientConfig(LiveDataClientConfig, frozen=True):
    """
    Configuration for ``ReplayDataClient``.

    Parameters
    ----------
    path : str
        A CSV file (or a path template with ``{symbol}``, ``{venue}``, ``{step}``, as the csv
        source takes) holding the bars to replay.
    start : str
        The open time of the first bar to replay (ISO 8601).
    count : int, default 5
        How many bars to replay per subscribed bar type.
    interval_ms : int, default 100
        Wall-clock pause between two replayed bars.
    timestamp_is : str, default "open"
        Which edge of the bar the file's timestamps label.
    price_precision : int, default 5
        Price precision of the replayed bars.
    size_precision : int, default 0
        Size precision of the replayed bars.
    shutdown_when_done : bool, default True
        Ask the node to shut down once every subscription has been replayed.

    """

    path: str = ""
    start: str = ""
    count: int = 5
    interval_ms: int = 100
    timestamp_is: str = "open"
    price_precision: int = 5
    size_precision: int = 0
    shutdown_when_done: bool = True


class ReplayDataClient(LiveMarketDataClient):
    """
    Emit bars read from a file as live bars, for every bar subscription it receives.

    Parameters
    ----------
    loop, client_id, msgbus, cache, clock
        As for any ``LiveMarketDataClient``.
    config : ReplayDataClientConfig
        What to replay.

    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_id: ClientId,
        msgbus: Any,
        cache: Any,
        clock: Any,
        config: ReplayDataClientConfig,
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
        self._pending = 0
        self.replayed: list[Bar] = []

    async def _connect(self) -> None:
        self._log.info(f"REPLAY feed (not live market data) from {self._replay.path}")

    async def _disconnect(self) -> None:
        pass

    async def _subscribe_bars(self, command: SubscribeBars) -> None:
        bars = self.load(str(command.bar_type))
        self._log.info(f"REPLAY: {len(bars)} bars for {command.bar_type}")
        self._pending += 1
        self.create_task(self._play(bars))

    async def _unsubscribe_bars(self, command: UnsubscribeBars) -> None:
        pass

    def load(self, bar_type: str) -> list[Bar]:
        """
        Read the bars to replay for one bar type, through the csv source.

        Parameters
        ----------
        bar_type : str
            The bar type.

        Returns
        -------
        list[Bar]

        """
        from nautilus_backfill.config import config_from_dict
        from nautilus_backfill.orchestrator import Backfill
        from nautilus_backfill.timeutil import bar_step_ns, format_ns, parse_time
        from nautilus_trader.model.data import BarType

        cfg = self._replay
        step = bar_step_ns(BarType.from_str(bar_type))
        end = parse_time(cfg.start) + cfg.count * step
        doc = {
            "backfill": {
                "requests": [
                    {
                        "bar_type": bar_type,
                        "bars": cfg.count,
                        "end": format_ns(end),
                        "price_precision": cfg.price_precision,
                        "size_precision": cfg.size_precision,
                    },
                ],
                "sources": [
                    {
                        "name": "replay",
                        "plugin": "csv",
                        "path": cfg.path,
                        "timestamp_is": cfg.timestamp_is,
                    },
                ],
            },
        }
        result = Backfill(config_from_dict(doc)).fetch()
        return next(iter(result.bars.values()), [])

    async def _play(self, bars: list[Bar]) -> None:
        for bar in bars:
            await asyncio.sleep(self._replay.interval_ms / 1000)
            self.replayed.append(bar)
            self._handle_data(bar)
        self._pending -= 1
        if self._pending == 0 and self._replay.shutdown_when_done:
            await asyncio.sleep(self._replay.interval_ms / 1000)
            self._log.info("REPLAY finished, shutting the node down")
            self.shutdown_system("replay finished")


class ReplayDataClientFactory(LiveDataClientFactory):
    """
    Factory for ``ReplayDataClient``; register it under the client's name with
    ``node.add_data_client_factory``.
    """

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: ReplayDataClientConfig,
        msgbus: Any,
        cache: Any,
        clock: Any,
    ) -> ReplayDataClient:
        """
        Create the client.

        Returns
        -------
        ReplayDataClient

        """
        return ReplayDataClient(loop, ClientId(name), msgbus, cache, clock, config)
