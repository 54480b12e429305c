"""
Store read speed as tail writes pile up: a year of restarts must read as fast as a fresh store.

For each count N, a store is given 10,000 bars and then N tail writes of 5 bars (one per
restart), through ``BarStore.write``; then a 500-bar read (count mode, what a warm start asks)
is timed, best of 15, with the number of files and the time one ``files()`` listing takes.
``--legacy`` instead lays out one file per tail write directly, as versions before compaction
left them, and times the read before and after the next write compacts it.

Run: python benchmarks/bench_store.py [--counts 100,1000,3000] [--legacy]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import portion as P

BAR_TYPE = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"
STEP = 60 * 10**9
START = 1_700_000_040 * 10**9


def _bars(first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    ts = START + STEP * np.arange(first, first + count, dtype=np.int64)
    values = np.column_stack(
        [np.round(1.1 + 0.00001 * (np.arange(count) % 50), 5)] * 4 + [np.ones(count)]
    )
    return ts, values


def _write(store, first: int, count: int) -> None:
    ts, values = _bars(first, count)
    store.write(BAR_TYPE, STEP, ts, values, 5, 0, P.closedopen(int(ts[0]), int(ts[-1]) + STEP))


def _lay_out_legacy(store, writes: int) -> None:
    # One file per tail write, exactly as the store wrote them before compaction.
    import os

    import pyarrow.parquet as pq
    from nautilus_backfill.store import _bar_table, _file_name

    folder = store.folder(BAR_TYPE)
    os.makedirs(folder, exist_ok=True)
    chunks = [(0, 10_000)] + [(10_000 + 5 * i, 5) for i in range(writes)]
    for first, count in chunks:
        ts, values = _bars(first, count)
        table = _bar_table(BAR_TYPE, STEP, ts + STEP, values, 5, 0)
        pq.write_table(table, f"{folder}/{_file_name(int(ts[0] + STEP), int(ts[-1] + STEP))}")


def _time_read(store, end: int) -> tuple[float, float, int]:
    from nautilus_backfill.source import Span

    best = listing = float("inf")
    rows = 0
    for _ in range(15):
        started = time.perf_counter()
        table, _, _ = store.read(BAR_TYPE, STEP, Span(None, end, 500))
        best = min(best, time.perf_counter() - started)
        rows = table.num_rows
        started = time.perf_counter()
        store.files(BAR_TYPE)
        listing = min(listing, time.perf_counter() - started)
    assert rows == 500, rows
    return best, listing, len(store.files(BAR_TYPE))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="100,1000,3000")
    parser.add_argument("--legacy", action="store_true")
    args = parser.parse_args()
    from nautilus_backfill.store import BarStore

    print(
        f"{'tail writes':>11}  {'files':>5}  {'500-bar read':>12}  {'files() listing':>15}  layout"
    )
    for n in (int(c) for c in args.counts.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            store = BarStore(f"{tmp}/store")
            end = START + STEP * (10_000 + 5 * n + 10)
            if args.legacy:
                _lay_out_legacy(store, n)
                read, listing, files = _time_read(store, end)
                print(
                    f"{n:>11}  {files:>5}  {read * 1e3:>9.1f} ms  {listing * 1e3:>12.1f} ms  one file per write"
                )
                _write(store, 10_000 + 5 * n, 5)
                read, listing, files = _time_read(store, end + 5 * STEP)
                print(
                    f"{n:>11}  {files:>5}  {read * 1e3:>9.1f} ms  {listing * 1e3:>12.1f} ms  after one write"
                )
                continue
            _write(store, 0, 10_000)
            started = time.perf_counter()
            for i in range(n):
                _write(store, 10_000 + 5 * i, 5)
            per_write = (time.perf_counter() - started) / max(n, 1)
            read, listing, files = _time_read(store, end)
            print(
                f"{n:>11}  {files:>5}  {read * 1e3:>9.1f} ms  {listing * 1e3:>12.1f} ms  "
                f"written through BarStore.write ({per_write * 1e3:.1f} ms a write)"
            )


if __name__ == "__main__":
    main()
