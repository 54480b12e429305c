"""IB at its real limits: 50 requests open at once, across bar types and within one, on the simulator."""

from __future__ import annotations

import time

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


def test_contracts_are_reused_from_the_stores_instruments_and_looked_up_again_when_ib_refuses_them(
    registry, tmp_path
):
    from nautilus_trader.cache.cache import Cache
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    store = str(tmp_path / "store")
    symbols = ["AAPL", "SQQQ", "SXYZ"]

    def run(end, cache=None):
        requests = [{"bar_type": f"{s}.NASDAQ-1-MINUTE-LAST-EXTERNAL", "bars": 60, "end": end} for s in symbols]
        ib = {"name": "ib", "plugin": "ib", "port": sim.port, "use_rth": False, "timeout": "10s"}
        doc = {"backfill": {"deadline": "30s", "store": store, "requests": requests, "sources": [ib]}}
        result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch(cache=cache)
        for r in result.report.requests:
            assert r.accounted() and r.status == "ok" and r.injected == 60, r.to_dict()
        return result

    with IBSimulator(Scenario()) as sim:
        first = run("2024-03-04T18:00:00Z")
        assert len(sim.contract_requests) == 3
        # An hour later: IB is asked for the new bars with the stored contracts, no lookup.
        later = run("2024-03-04T19:00:00Z")
        assert len(sim.contract_requests) == 3 and len(sim.requests) == 6
        assert {r.con_id for r in sim.requests[3:]} == {r.con_id for r in sim.requests[:3]} != {0}
        for bar_type, bars in later.bars.items():
            stored = next(b for k, b in first.bars.items() if k == bar_type)
            assert bars[0].ts_init > stored[0].ts_init and len(bars) == 60

        # A contract IB no longer knows (its conId changed since it was stored): IB answers
        # 200, the contract is looked up again once, and the bars come.
        instrument = ParquetDataCatalog(store).instruments(instrument_ids=["AAPL.NASDAQ"])[0]
        data = type(instrument).to_dict(instrument)
        data["info"]["contract"]["conId"] = 1
        cache = Cache()
        cache.add_instrument(type(instrument).from_dict(data))
        run("2024-03-04T20:00:00Z", cache=cache)
        assert len(sim.contract_requests) == 4  # AAPL only
        assert [r.con_id for r in sim.requests[6:]].count(1) == 1
