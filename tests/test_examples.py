"""examples/: the live IB script imports and builds a node; its TOML is a valid config."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from nautilus_backfill import Backfill

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_run_live_builds_a_node_with_ib_clients_and_two_strategies(shared):
    from ibsim import ACCOUNT, IBSimulator

    spec = importlib.util.spec_from_file_location("run_live", EXAMPLES / "run_live.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    asyncio.set_event_loop(asyncio.new_event_loop())
    # NautilusTrader's IB factories connect while building, so the simulator stands in for TWS.
    sim = IBSimulator(recordings=shared / "ib")
    sim.start()
    node = module.build_node(port=sim.port, account=ACCOUNT)  # built, never run
    try:
        assert {str(s.id) for s in node.trader.strategies()} == {"EMACrossSignal-AAPL", "EMACrossSignal-EURUSD"}
        assert {str(c) for c in node.kernel.data_engine.registered_clients} == {"INTERACTIVE_BROKERS"}
    finally:
        node.dispose()
        sim.stop()


def test_example_backfill_toml_is_valid_and_lists_ib_then_parquet_then_csv():
    backfill = Backfill.from_toml(EXAMPLES / "backfill.toml")
    assert [s.plugin for s in backfill.config.sources] == ["ib", "parquet", "csv"]
    assert [r.bar_type for r in backfill.config.requests] == [
        "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL", "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"]
