"""
An EMA on a composite bar type, warm at the first bar NautilusTrader's live aggregator builds.

Runs a real TradingNode whose strategy trades ``EUR/USD.SIM-5-SECOND-MID-INTERNAL@1-SECOND-
EXTERNAL``. Before ``node.run()`` the 1-second source bars are backfilled, aggregated into the
5-second bars the live aggregator would have built, and both go into the cache; the EMAs are fed
the composite bars. Then a replay (labelled so: not market data) sends 1-second bars on the wall
clock and the node's own aggregator takes over. About 20 seconds.

Run: python examples/composite_warm_start.py
"""

from __future__ import annotations

from nautilus_backfill.demo_composite import COMPOSITE, run_composite_demo
from nautilus_trader.core.datetime import unix_nanos_to_iso8601


def main() -> None:
    result = run_composite_demo(warm_bars=40, live_source_bars=12)
    o = result.options
    print(f"composite bar type: {COMPOSITE}")
    print(
        f"node settings: interval_type={o.time_bars_interval_type}, "
        f"timestamp_on_close={o.time_bars_timestamp_on_close}, "
        f"build_delay={o.time_bars_build_delay} us",
    )
    print(
        f"backfill end {unix_nanos_to_iso8601(result.end_ns)}: injected {len(result.source)} "
        f"source bars and {len(result.composite)} composite bars",
    )
    last = result.composite[-1]
    print(f"  last injected  ts_event {unix_nanos_to_iso8601(last.ts_event)}  close {last.close}")
    print("\nlive bars built by NautilusTrader's aggregator (REPLAY: not market data):")
    print("  ts_event                          close    EMA(10)   n  EMA(20)   n  signal")
    for bar, row in zip(result.strategy.live_bars, result.strategy.live, strict=True):
        fast = f"{row['fast_ema']:.5f} {row['fast_count']:3d}"
        slow = f"{row['slow_ema']:.5f} {row['slow_count']:3d}"
        stamp = unix_nanos_to_iso8601(bar.ts_event)
        print(f"  {stamp}  {row['close']:.5f}  {fast}  {slow}  {row['signal']}")
    first = result.strategy.live[0]
    gap = (result.strategy.live_bars[0].ts_init - last.ts_init) / 1e9
    print(
        f"\nfirst live bar {gap:.0f} s after the last injected one; EMAs "
        f"{'warm' if first['warm'] else 'COLD'} at it",
    )


if __name__ == "__main__":
    main()
