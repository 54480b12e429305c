"""Store writers for the crash and concurrency tests, light enough to fork by the hundred."""

from __future__ import annotations

import random

import numpy as np
import portion as P
from nautilus_backfill.source import Span
from nautilus_backfill.store import BarStore

BAR_TYPE = "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
T = 1_735_810_800

STEP = 60 * 10**9


def bars(start_min: int, count: int):
    ts = (T + 60 * np.arange(start_min, start_min + count, dtype=np.int64)) * 10**9
    values = np.column_stack([1.1 + 0.00001 * (ts // STEP % 100)] * 4 + [np.full(count, 1000.0)])
    return ts, np.round(values, 5)


def writer(url: str, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    store = BarStore(url)
    for _ in range(rounds):
        start = rng.randrange(0, 2000)
        ts, values = bars(start, rng.randrange(1, 300))
        store.write(BAR_TYPE, STEP, ts, values, 5, 0, P.closedopen(int(ts[0]), int(ts[-1]) + STEP))


def check(url: str, options: dict | None = None) -> int:
    store = BarStore(url, options)
    assert store.verify() == [], store.verify()
    table, _, _ = store.read(BAR_TYPE, STEP, Span(None, (T + 10**6) * 10**9))
    ts = table.column("ts").to_numpy()
    assert len(np.unique(ts)) == len(ts)
    expected = bars(0, 3000)
    lookup = dict(zip(expected[0].tolist(), expected[1][:, 3].tolist(), strict=True))
    assert all(lookup[t] == c for t, c in zip(ts.tolist(), table.column("close").to_pylist(), strict=True))
    return len(ts)




def blocks(url: str, seed: int, options: dict | None = None) -> None:
    rng = random.Random(seed)
    store = BarStore(url, options)
    for start in rng.sample(range(0, 3000, 50), 60):
        ts, values = bars(start, 50)
        store.write(BAR_TYPE, STEP, ts, values, 5, 0, P.empty())


def overlapping(url: str, seed: int, options: dict | None = None) -> None:
    """Write all 3000 bars in 75-bar blocks 50 apart: each write overlaps and merges."""
    rng = random.Random(seed)
    store = BarStore(url, options)
    for start in rng.sample(range(0, 3000, 50), 60):
        ts, values = bars(start, min(75, 3000 - start))
        store.write(BAR_TYPE, STEP, ts, values, 5, 0, P.empty())


def serve(url: str) -> None:
    """
    Fork writers on request, from a process whose only thread is this loop.

    stdin: ``writer SEED`` or ``blocks SEED`` (prints the child's pid), ``reap PID`` (waits for
    it, prints its status).
    """
    import os
    import sys

    for line in sys.stdin:
        cmd, arg = line.split()
        if cmd == "reap":
            _, status = os.waitpid(int(arg), 0)
            print(status, flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                if cmd == "writer":
                    writer(url, int(arg), 10**6)
                else:
                    blocks(url, int(arg))
            finally:
                os._exit(0)
        print(pid, flush=True)


if __name__ == "__main__":
    import sys

    serve(sys.argv[1])
