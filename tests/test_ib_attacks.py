"""Hostile gateways: repeated bars, failures mid-download, a closed socket, unreadable frames."""

from __future__ import annotations

import threading
import time

import pytest
from ibsim import IBSimulator, Scenario
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_trader.model.data import BarType

AAPL = "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"
END = "2021-01-05T21:00:00Z"  # 16:00 New York, the close of the recorded AAPL session


@pytest.fixture(autouse=True)
def pacing_state(tmp_path, monkeypatch):
    # The pacing history of these runs must not reach the user's own state folder.
    monkeypatch.setenv("NAUTILUS_BACKFILL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def simulator(shared):
    sims = []

    def start(**scenario):
        sim = IBSimulator(Scenario(**scenario), recordings=shared / "ib")
        sim.start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


def _ib(sim, **kw):
    return {"name": "ib", "plugin": "ib", "port": sim.port, "timeout": "3s", "connect_timeout": "1s", **kw}


def _fetch(registry, requests, sources, **kw):
    cfg = config_from_dict({"backfill": {"requests": requests, "sources": sources, **kw}}, registry=registry)
    started = time.monotonic()
    result = Backfill(cfg, registry=registry).fetch()
    for r in result.report.requests:
        assert r.accounted(), r.to_dict()
    return result, time.monotonic() - started


def _five_second(symbol="AAPL", hours=5):
    # `hours` requests of 3600 S, IB's longest for 5-second bars, on a day with bars every hour.
    return {"bar_type": f"{symbol}.NASDAQ-5-SECOND-LAST-EXTERNAL", "start": "2024-03-04T00:00:00Z",
            "end": f"2024-03-04T{hours:02d}:00:00Z"}


@pytest.mark.parametrize("kind", ["identical", "conflicting"])
def test_a_gateway_repeating_bars_has_every_repeat_counted_and_the_first_kept(registry, simulator, kind):
    sim = simulator(repeat=kind)
    result, _ = _fetch(registry, [{"bar_type": AAPL, "bars": 100, "end": END}], [_ib(sim)])
    report = result.report.requests[0]
    ib = report.sources[0]
    # 100 bars, every 10th sent twice: all 110 rows reach the report, 10 counted as duplicates.
    assert sim.bars_sent == 110
    assert ib.received == 110 and report.dropped["duplicate"] == 10, report.to_dict()
    assert report.injected == 100
    if kind == "conflicting":
        notes = [*report.examples, *getattr(ib, "notes", [])]
        assert any("10 bars twice with other values" in e for e in notes), notes
        # The first of each pair is the one kept: the recorded close, not the cent-higher repeat.
        bars = result.bars[BarType.from_str(AAPL)]
        assert str(bars[0].close) == "221.81", bars[0]  # 14:20 New York, as recorded
