"""Resume: pieces of a long download are written through as they arrive; the next run asks for the rest."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import portion as P
import resumework as rw
from nautilus_backfill.source import Span
from nautilus_backfill.store import BarStore

HERE = Path(__file__).parent


def _stored(store: str) -> np.ndarray:
    table, _, _ = BarStore(store).read(rw.BAR, rw.MIN, Span(None, rw.END + rw.MIN))
    ts = table.column("ts").to_numpy()
    assert (table.column("close").to_numpy() == rw.price(ts)).all()
    return ts


def _asked_is_exactly_the_rest(store: str, before: np.ndarray) -> None:
    answered = BarStore(store).answered(rw.BAR, rw.MIN) if len(before) else P.empty()
    have = P.empty()
    for t in before.tolist():
        have |= P.closedopen(t, t + rw.MIN)
    # What the store says was answered, it holds: nothing written was lost.
    assert (answered & P.closedopen(rw.START, rw.END)) in have
    rw.Download.asked = []
    result = rw.run(store, chunk=1000)
    r = result.report.requests[0]
    asked = P.empty()
    for a, b in rw.Download.asked:
        asked |= P.closedopen(a, b)
    window = P.closedopen(rw.START, rw.END)
    assert asked == window - answered, "the next run must ask for exactly what is missing"
    assert r.injected == 3000 and r.status == "ok" and r.accounted()


def test_a_download_cut_by_the_deadline_keeps_its_pieces_and_the_next_run_asks_for_the_rest(tmp_path):
    store = str(tmp_path / "store")
    first = rw.run(store, pause=0.05, deadline="0.8s").report.requests[0]
    kept = _stored(store)
    assert 0 < len(kept) < 3000 and first.stored == len(kept)
    assert first.sources[1].status == "timeout" and first.injected == len(kept)
    assert kept[-1] == rw.END - rw.MIN  # newest first, as IB sends them
    _asked_is_exactly_the_rest(store, kept)


def test_random_kills_during_a_download_lose_nothing_that_was_written(tmp_path):
    # One process imports everything once and forks a download per kill, so 100 kills fit in CI.
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    server = subprocess.Popen([sys.executable, str(HERE / "resumework.py"), "0.01"], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    partial = 0
    try:
        for k in range(100):
            store = str(tmp_path / f"store{k}")
            server.stdin.write(store + "\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.8))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            server.stdout.readline()  # the child's exit status
            kept = _stored(store) if BarStore(store).bar_types() else np.empty(0, np.int64)
            assert BarStore(store).verify() == [] if BarStore(store).bar_types() else True
            partial += 0 < len(kept) < 3000
            _asked_is_exactly_the_rest(store, kept)
    finally:
        server.stdin.close()
        server.kill()
    assert partial >= 20  # most kills landed mid-download, not before or after it


def test_a_long_download_reports_its_parts_and_rows_as_they_arrive(tmp_path):
    seen = []
    registry = rw.build_registry(entry_points=False, extra=[("download", rw.Plugin())])
    from nautilus_backfill.config import config_from_dict
    from nautilus_backfill.orchestrator import Backfill

    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": rw.BAR, "start": "2025-01-01T00:00:00Z",
                                                        "end": "2025-01-03T02:00:00Z", "price_precision": 5,
                                                        "size_precision": 0}],
                                         "sources": [{"name": "ib", "plugin": "download"}]}}, registry=registry)
    Backfill(cfg, registry=registry).fetch(on_progress=seen.append)
    during = [(p.bars, p.parts_done, p.parts_total) for p in seen if p.calls_done == 0]
    assert during[:3] == [(100, 1, 30), (200, 2, 30), (300, 3, 30)]
    assert seen[-1].bars == 3000 and seen[-1].calls_done == 1 and seen[-1].parts_done == 30
    assert all(p.eta_s is not None for p in seen)
