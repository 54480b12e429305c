"""Store writers for the crash and concurrency tests, light enough to fork by the hundred."""

from __future__ import annotations

import os
import random

import numpy as np
import portion as P
from nautilus_backfill.source import Span
from nautilus_backfill.store import CRASH_ENV, BarStore

BAR_TYPE = "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
T = 1_735_810_800

STEP = 60 * 10**9


def bars(start_min: int, count: int):
    ts = (T + 60 * np.arange(start_min, start_min + count, dtype=np.int64)) * 10**9
    values = np.column_stack([1.1 + 0.00001 * (ts // STEP % 100)] * 4 + [np.full(count, 1000.0)])
    return ts, np.round(values, 5)


def writer(url: str, seed: int, rounds: int, log: str | None = None) -> None:
    """
    Write random blocks and now and then trim, logging each operation before and after.

    ``log`` gets ``begin write START COUNT`` / ``begin trim CUTOFF_MIN`` before an operation
    and ``done`` after it returns, so a test that kills this process knows what was reported
    stored and which operation the kill interrupted.
    """
    rng = random.Random(seed)
    store = BarStore(url)
    out = open(log, "a", buffering=1) if log else None  # noqa: SIM115 - a kill closes it
    for _ in range(rounds):
        if rng.random() < 0.15:
            cutoff = rng.randrange(0, 600)
            if out:
                out.write(f"begin trim {cutoff}\n")
            store.trim(BAR_TYPE, STEP, (T + 60 * cutoff) * 10**9)
        else:
            start, count = rng.randrange(0, 2000), rng.randrange(1, 300)
            if out:
                out.write(f"begin write {start} {count}\n")
            ts, values = bars(start, count)
            store.write(
                BAR_TYPE, STEP, ts, values, 5, 0, P.closedopen(int(ts[0]), int(ts[-1]) + STEP)
            )
        if out:
            out.write("done\n")


def replay(log: str, stored: set[int]) -> tuple[set[int], tuple[str, ...] | None]:
    """Apply the finished operations of `log` to `stored` (bar indices); return the rest."""
    pending: tuple[str, ...] | None = None
    if not os.path.exists(log):
        return stored, None  # killed before it began
    with open(log) as f:
        for line in f:
            words = line.split()
            if words[0] == "begin":
                pending = tuple(words[1:])
            elif words == ["done"] and pending is not None:
                stored = _apply(stored, pending)
                pending = None
    return stored, pending


def _apply(stored: set[int], op: tuple[str, ...]) -> set[int]:
    if op[0] == "write":
        return stored | set(range(int(op[1]), int(op[1]) + int(op[2])))
    return {i for i in stored if i >= int(op[1])}


def allowed(stored: set[int], pending: tuple[str, ...] | None, got: set[int]) -> bool:
    """Whether `got` is what a kill during `pending` may leave: all or nothing of a write,
    any per-file part of a trim (never a bar at or after its cutoff, never a bar not stored)."""
    if got == stored or pending is None:
        return got == stored
    if pending[0] == "write":
        return got == _apply(stored, pending)
    keep = _apply(stored, pending)
    return keep <= got <= stored


def indices(ts: np.ndarray) -> set[int]:
    return set(((ts // 10**9 - T) // 60).tolist())


def check(url: str, options: dict | None = None) -> int:
    store = BarStore(url, options)
    assert store.verify() == [], store.verify()
    return len(check_values(url, options))


def check_values(url: str, options: dict | None = None) -> np.ndarray:
    """Read every stored bar; assert each is there once with the values written."""
    store = BarStore(url, options)
    table, _, _ = store.read(BAR_TYPE, STEP, Span(None, (T + 10**6) * 10**9))
    ts = table.column("ts").to_numpy()
    assert len(np.unique(ts)) == len(ts)
    expected = bars(0, 3000)
    lookup = dict(zip(expected[0].tolist(), expected[1][:, 3].tolist(), strict=True))
    closes = table.column("close").to_pylist()
    assert all(lookup[t] == c for t, c in zip(ts.tolist(), closes, strict=True))
    return ts


def read_all(url: str) -> np.ndarray:
    """Bar opens as this tool reads them (checked against the values written)."""
    return check_values(url)


def nautilus_read(url: str) -> np.ndarray:
    """Bar opens as NautilusTrader's own ParquetDataCatalog reads them (all bar types)."""
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    catalog = ParquetDataCatalog(url)
    try:
        found = catalog.bars()
    except Exception as e:  # no data yet
        if "No data" in str(e) or "not found" in str(e).lower():
            return np.empty(0, np.int64)
        raise
    return np.array([b.ts_event for b in found], dtype=np.int64)


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

    stdin: ``writer SEED[:LOG[:CRASH_POINT]]`` or ``blocks SEED`` (prints the child's pid), ``reap PID`` (waits for
    it, prints its status).
    """
    import os
    import sys

    for line in sys.stdin:
        cmd, arg = line.strip().split(maxsplit=1)
        if cmd == "reap":
            _, status = os.waitpid(int(arg), 0)
            print(status, flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                if cmd == "writer":
                    seed, log, point = [*arg.split(":"), "", ""][:3]
                    if point:  # die at exactly this point of a write (store.CRASH_ENV)
                        os.environ[CRASH_ENV] = point
                    writer(url, int(seed), 10**6, log or None)
                else:
                    blocks(url, int(arg))
            finally:
                os._exit(0)
        print(pid, flush=True)


if __name__ == "__main__":
    import sys

    serve(sys.argv[1])
