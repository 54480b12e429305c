"""IB at its real limits: 50 requests open at once, across bar types and within one, on the simulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from ibsim import IBSimulator, Scenario
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict

END = "2024-03-04T21:00:00Z"  # a Monday close
L = 0.3  # the simulator answers each historical request after this long


@pytest.fixture(autouse=True)
def pacing_state(tmp_path, monkeypatch):
    monkeypatch.setenv("NAUTILUS_BACKFILL_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def sim():
    with IBSimulator(Scenario(slow_s=L)) as sim:
        yield sim


def _fetch(registry, sim, requests, **source):
    ib = {
        "name": "ib",
        "plugin": "ib",
        "port": sim.port,
        "use_rth": False,
        "timeout": "30s",
        **source,
    }
    doc = {"backfill": {"deadline": "60s", "requests": requests, "sources": [ib]}}
    started = time.monotonic()
    result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    for r in result.report.requests:
        assert r.accounted(), r.to_dict()
    return result, time.monotonic() - started


def test_120_requests_over_two_bar_types_go_50_at_a_time_with_one_lookup_per_contract(
    registry, sim
):
    symbols = [f"S{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(60)]
    requests = [
        {"bar_type": f"{s}.NASDAQ-{step}-MINUTE-LAST-EXTERNAL", "bars": 100, "end": END}
        for s in symbols
        for step in (1, 5)
    ]
    result, elapsed = _fetch(registry, sim, requests)
    assert all(r.injected == 100 for r in result.report.requests)
    assert len(sim.requests) == 120 and sim.violations == []
    assert sim.max_open == 50  # IB's limit, reached and never passed
    assert len(sim.contract_requests) == 60  # one lookup per contract, not per bar type
    # 3 rounds of 50 x 0.3 s; 8 at a time, as before, took 15 rounds (4.5 s).
    assert elapsed < 2.5, elapsed


def test_the_chunks_of_one_bar_type_are_open_together(registry, sim):
    week = {
        "bar_type": "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL",
        "start": "2024-02-26T21:00:00Z",
        "end": END,
    }
    result, elapsed = _fetch(registry, sim, [week])
    assert len(sim.requests) == 7 and sim.max_open == 7  # 7 days of "1 D", all at once
    assert result.report.requests[0].injected == 7 * 1440
    assert elapsed < 3 * L, elapsed  # one answer latency, not seven


def test_max_in_flight_holds_the_open_requests(registry, sim):
    requests = [
        {"bar_type": f"S{chr(65 + i)}.NASDAQ-1-MINUTE-LAST-EXTERNAL", "bars": 10, "end": END}
        for i in range(12)
    ]
    result, _ = _fetch(registry, sim, requests, max_in_flight=4)
    assert all(r.injected == 10 for r in result.report.requests)
    assert sim.max_open == 4


def test_contracts_are_reused_from_the_store_while_young_and_a_refused_or_old_one_is_replaced(
    registry, tmp_path
):
    from nautilus_backfill.store import BarStore
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    store = str(tmp_path / "store")
    symbols = ["AAPL", "SQQQ", "SXYZ"]

    def run(end, bar="1-MINUTE", **ib):
        requests = [{"bar_type": f"{s}.NASDAQ-{bar}-LAST-EXTERNAL", "bars": 60, "end": end} for s in symbols]
        ib = {"name": "ib", "plugin": "ib", "port": sim.port, "use_rth": False, "timeout": "10s", **ib}
        doc = {"backfill": {"deadline": "30s", "store": store, "requests": requests, "sources": [ib]}}
        result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
        for r in result.report.requests:
            assert r.accounted() and r.status == "ok" and r.injected == 60, r.to_dict()
        return result

    def stored_aapl():
        (found,) = ParquetDataCatalog(store).instruments(instrument_ids=["AAPL.NASDAQ"])
        return found

    def restore_aapl(**change):
        # Replace the stored AAPL as another run (or an older contract) would have left it.
        data = type(stored_aapl()).to_dict(stored_aapl())
        info = dict(data["info"], contract=dict(data["info"]["contract"]))
        for key, value in change.items():
            if key == "conId":
                info["contract"]["conId"] = value
            else:
                data[key] = value
        data["info"] = info
        folder = f"{store}/data/equity/AAPL.NASDAQ"
        for f in Path(folder).glob("*.parquet"):
            f.unlink()
        BarStore(store).write_instruments([_from_dict(data)])

    def _from_dict(data):
        from nautilus_trader.model.instruments import Equity

        return Equity.from_dict(data)

    with IBSimulator(Scenario()) as sim:
        first = run("2024-03-04T18:00:00Z")
        assert len(sim.contract_requests) == 3
        # An hour later: IB is asked for the new bars with the stored contracts, no lookup.
        later = run("2024-03-04T19:00:00Z")
        assert len(sim.contract_requests) == 3 and len(sim.requests) == 6
        assert {r.con_id for r in sim.requests[3:]} == {r.con_id for r in sim.requests[:3]} != {0}
        for bar_type, bars in later.bars.items():
            assert bars[0].ts_init > first.bars[bar_type][0].ts_init and len(bars) == 60
        good = stored_aapl()

        # A stored contract IB no longer knows (its conId changed since): IB answers 200, the
        # contract is looked up again once, and the fresh instrument replaces the stored one.
        restore_aapl(conId=1, ts_event=time.time_ns(), ts_init=time.time_ns())
        result = run("2024-03-04T20:00:00Z")
        assert len(sim.contract_requests) == 4  # AAPL only
        assert [r.con_id for r in sim.requests[6:]].count(1) == 1
        assert stored_aapl().info["contract"]["conId"] == good.info["contract"]["conId"]
        (aapl,) = [i for i in result.instruments if str(i.id) == "AAPL.NASDAQ"]
        assert aapl.info["contract"]["conId"] != 1  # the node gets the fresh one
        run("2024-03-04T20:30:00Z")
        assert len(sim.contract_requests) == 4  # repaired: no lookup, no refused request

        # An instrument older than contract_max_age is looked up again, whatever it says
        # (here a tick size that would round the new 5-minute bars to whole dollars).
        old = time.time_ns() - 8 * 86_400 * 10**9
        restore_aapl(price_precision=0, price_increment="1", ts_event=old, ts_init=old)
        fresh = run("2024-03-04T20:00:00Z", bar="5-MINUTE")
        assert len(sim.contract_requests) == 5
        aapl_5m = fresh.bars[next(b for b in fresh.bars if str(b).startswith("AAPL"))]
        assert aapl_5m[-1].close.precision == 2 and fresh.report.requests[0].rounded == 0
        assert stored_aapl().price_precision == 2
        # With contract_max_age = "off" every run asks IB.
        run("2024-03-04T20:30:00Z", bar="5-MINUTE", contract_max_age="off")
        assert len(sim.contract_requests) == 8
