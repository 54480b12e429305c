"""
Live handoff on a real TradingNode: the first composite bar NautilusTrader's live aggregator
builds follows the last backfilled one, with no gap and no duplicate, and the EMA on the
composite bar type is warm at that bar.

The node's clock is the wall clock, so the demo plays the bundled sample's bars as 1-second
source bars (5-second composite bars): about 25 s.
"""

from __future__ import annotations

import numpy as np
import pytest
from nautilus_backfill.aggregate import aggregate, composite_bars, live_delay_note
from nautilus_backfill.demo_composite import COMPOSITE, run_composite_demo
from nautilus_trader.model.data import BarType

PERIOD = 5_000_000_000
STEP = 1_000_000_000


@pytest.fixture(scope="module")
def demo():
    return run_composite_demo(warm_bars=40, live_source_bars=12, build_delay_us=300_000)


def stamps(bars):
    return [(b.ts_event, b.ts_init, b.open, b.high, b.low, b.close, b.volume) for b in bars]


def test_first_live_composite_bar_follows_the_last_injected_one(demo):
    live = demo.strategy.live_bars
    assert len(demo.composite) == 40
    assert live, "the live aggregator built no bar"
    last = demo.composite[-1]
    assert str(live[0].bar_type) == str(last.bar_type) == "EUR/USD.SIM-5-SECOND-MID-INTERNAL"
    assert live[0].ts_init == last.ts_init + PERIOD  # no gap, no duplicate
    assert live[0].ts_event == last.ts_event + PERIOD
    assert np.all(np.diff([b.ts_init for b in [*demo.composite, *live]]) == PERIOD)


def test_backfill_and_live_bars_are_one_aggregation(demo):
    # Aggregating every source bar, backfilled and played live, gives the injected bars and
    # then the bars the live aggregator built, value for value.
    composite = BarType.from_str(COMPOSITE)
    played_to = int(demo.values.ts_open[-1]) + STEP
    whole, _ = aggregate(demo.values, STEP, composite, demo.options, played_to, size_precision=0)
    expected = composite_bars(whole, composite, 5, 0)
    live = [b for b in demo.strategy.live_bars if b.ts_init <= played_to + 300_000_000]
    assert len(live) >= 2
    assert stamps([*demo.composite, *live]) == stamps(expected)


def test_ema_on_the_composite_type_is_warm_at_its_first_live_bar(demo):
    assert live_delay_note(demo.options, BarType.from_str(COMPOSITE)) is None
    first = demo.strategy.live[0]
    assert first["warm"]
    assert first["fast_count"] == first["slow_count"] == len(demo.composite) + 1
    assert len(demo.strategy.historical) == len(demo.composite)


def test_without_a_build_delay_the_live_aggregator_shifts_by_one_source_bar():
    # The reason for `live_delay_note`: with time_bars_build_delay = 0 the live timer fires at
    # the close, before the source bar closing with it arrives (50 ms later here), and that
    # bar lands in the next composite bar. The first live bar then lacks its last source bar.
    demo = run_composite_demo(warm_bars=10, live_source_bars=7, build_delay_us=0)
    assert live_delay_note(demo.options, BarType.from_str(COMPOSITE))
    first = demo.strategy.live_bars[0]
    v = demo.values.take(slice(50, 55))  # the five source bars of the first live interval
    assert first.ts_init == demo.composite[-1].ts_init + PERIOD
    assert float(first.volume) == float(np.sum(v.volume[:4]))
    assert float(first.close) == v.close[3]
