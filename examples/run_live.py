"""
A live TradingNode on an IB paper account, warm-started by nautilus-backfill.

    python examples/run_live.py                 # TWS paper on 127.0.0.1:7497
    IB_PORT=4002 python examples/run_live.py    # IB Gateway paper

The backfill (examples/backfill.toml) asks IB first, on a client id of its own (the node's
clients connect only inside ``node.run()``), then a local ParquetDataCatalog, then CSV.
Ctrl-C stops the node cleanly.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from nautilus_backfill import Backfill, BackfillError
from nautilus_backfill.demo import EMACrossSignal, EMACrossSignalConfig
from nautilus_trader.adapters.interactive_brokers.common import IB
from nautilus_trader.adapters.interactive_brokers.config import (
    InteractiveBrokersDataClientConfig,
    InteractiveBrokersExecClientConfig,
    InteractiveBrokersInstrumentProviderConfig,
    SymbologyMethod,
)
from nautilus_trader.adapters.interactive_brokers.factories import (
    InteractiveBrokersLiveDataClientFactory,
    InteractiveBrokersLiveExecClientFactory,
)
from nautilus_trader.config import CacheConfig, LoggingConfig, TradingNodeConfig
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.data import BarType

HERE = Path(__file__).parent
BAR_TYPES = ("AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL", "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL")


def build_node(
    host: str = "127.0.0.1", port: int = 7497, account: str | None = None
) -> TradingNode:
    """Build (not run) the node: IB data and execution clients, one EMA cross per bar type."""
    provider = InteractiveBrokersInstrumentProviderConfig(
        symbology_method=SymbologyMethod.IB_SIMPLIFIED,  # the backfill's `symbology` must match
        load_ids=frozenset(BarType.from_str(bt).instrument_id for bt in BAR_TYPES),
    )
    config = TradingNodeConfig(
        trader_id="LIVE-001",
        logging=LoggingConfig(log_level="INFO"),
        cache=CacheConfig(bar_capacity=10_000),
        data_clients={
            IB: InteractiveBrokersDataClientConfig(
                ibg_host=host,
                ibg_port=port,
                ibg_client_id=1,
                instrument_provider=provider,
            ),
        },
        exec_clients={
            IB: InteractiveBrokersExecClientConfig(
                ibg_host=host,
                ibg_port=port,
                ibg_client_id=2,
                account_id=account,
                instrument_provider=provider,
            ),
        },
        timeout_connection=90.0,
    )
    node = TradingNode(config=config)
    node.add_data_client_factory(IB, InteractiveBrokersLiveDataClientFactory)
    node.add_exec_client_factory(IB, InteractiveBrokersLiveExecClientFactory)
    node.build()
    for bar_type in BAR_TYPES:
        tag = bar_type.split(".")[0].replace("/", "")
        node.trader.add_strategy(
            EMACrossSignal(EMACrossSignalConfig(bar_type=bar_type, order_id_tag=tag)),
        )
    return node


def main() -> int:
    port = int(os.environ.get("IB_PORT", "7497"))
    node = build_node(port=port, account=os.environ.get("IB_ACCOUNT"))
    # Between build() and run(): bars into the cache, indicators fed when strategies start.
    try:
        report = Backfill.from_toml(HERE / "backfill.toml").inject(node)
    except BackfillError as e:  # a bad config, or on_insufficient = "fail" and too few bars
        print(f"backfill: {e}", file=sys.stderr)
        node.dispose()
        return 2
    print(report.render())

    def stop(signum: int, frame: object) -> None:
        node.stop()

    signal.signal(signal.SIGTERM, stop)
    try:
        node.run()  # Ctrl-C (SIGINT) is handled by the node itself
    finally:
        node.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
