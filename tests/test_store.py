"""The write-through store: fill, incremental tail, offline start, holes, crash safety, two writers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import portion as P
import pytest
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.store import BarStore
from nautilus_trader.model.data import BarType

pytest.importorskip("ibapi", reason="the store tests use the IB simulator")
import storework
from ibsim import IBSimulator, Scenario

EURUSD = "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
AAPL = "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"
T = 1_735_810_800  # 2025-01-02T09:40:00Z, a Thursday
BAR = "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _run(registry, store, requests, sources):
    doc = {"backfill": {"store": str(store), "requests": requests, "sources": sources, "deadline": "20s"}}
    result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    for r in result.report.requests:
        assert r.accounted(), r.to_dict()
    return result


@pytest.fixture
def sim(shared):
    s = IBSimulator(Scenario(), recordings=shared / "ib")
    s.start()
    yield s
    s.stop()


def _ib(sim):
    return {"name": "ib", "plugin": "ib", "port": sim.port, "timeout": "5s", "connect_timeout": "1s"}


def test_first_run_fills_second_asks_only_the_tail_third_runs_offline(registry, sim, tmp_path):
    store = tmp_path / "store"
    reqs = [{"bar_type": EURUSD, "bars": 200, "end": _iso(T)}, {"bar_type": AAPL, "bars": 200, "end": "2021-01-05T21:00:00Z"}]
    first = _run(registry, store, reqs, [_ib(sim)])
    assert [r.stored for r in first.report.requests] == [200, 200]
    assert [r.sources[0].status for r in first.report.requests] == ["empty", "empty"]
    assert len(sim.requests) == 2

    # A few minutes later: only the tail is asked for, one small request per bar type.
    sim.requests.clear()
    later = [dict(reqs[0], end=_iso(T + 300)), dict(reqs[1], end="2021-01-05T21:05:00Z")]
    second = _run(registry, store, later, [_ib(sim)])
    assert [(r.symbol, r.duration) for r in sim.requests] == [("EUR.USD", "300 S"), ("AAPL", "300 S")] or \
        sorted((r.symbol, r.duration) for r in sim.requests) == [("AAPL", "300 S"), ("EUR.USD", "300 S")]
    eur = second.report.requests[0]
    assert eur.injected == 200 and eur.sources[0].used == 195 and eur.sources[1].used == 5
    assert eur.stored == 5

    # IB down: the store alone gives the warm start.
    sim.stop()
    third = _run(registry, store, later, [_ib(sim)])
    eur = third.report.requests[0]
    assert eur.injected == 200 and eur.sources[0].used == 200 and eur.sources[1].status == "not_needed"
    assert third.bars[BarType.from_str(EURUSD)][-1].ts_init == (T + 300) * 10**9
    # The instruments IB resolved were stored too: the offline start has them for the cache.
    assert {str(i.id): i.price_precision for i in third.instruments} == {"EUR/USD.IDEALPRO": 5, "AAPL.NASDAQ": 2}


def test_store_without_sources_serves_alone_and_nautilus_reads_it(registry, sim, tmp_path):
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    store = tmp_path / "store"
    _run(registry, store, [{"bar_type": EURUSD, "bars": 300, "end": _iso(T)}], [_ib(sim)])
    doc = {"backfill": {"store": str(store), "requests": [{"bar_type": EURUSD, "bars": 100, "end": _iso(T)}]}}
    result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    ours = result.bars[BarType.from_str(EURUSD)]
    assert len(ours) == 100 and result.report.requests[0].sources[0].name == "store"
    theirs = ParquetDataCatalog(str(store)).bars(bar_types=[EURUSD])
    assert len(theirs) == 300 and theirs[-100:] == ours
    assert [b.ts_init for b in theirs[-100:]] == [b.ts_init for b in ours]


def test_sessions_without_bars_are_remembered_and_not_asked_again(registry, sim, tmp_path):
    store = tmp_path / "store"
    # A weekend and two nights of AAPL regular-hours bars: mostly empty time.
    window = {"bar_type": "AAPL.NASDAQ-5-MINUTE-LAST-EXTERNAL", "start": "2024-03-01T00:00:00Z",
              "end": "2024-03-05T00:00:00Z"}
    first = _run(registry, store, [window], [_ib(sim)])
    asked = len(sim.requests)
    assert asked >= 1 and first.report.requests[0].injected == 2 * 78  # Fri and Mon sessions
    sim.requests.clear()
    second = _run(registry, store, [window], [_ib(sim)])
    # The weekend and the nights between bars are remembered; only the time after Monday's
    # last bar (answered without bars: it could be a gateway with no data) is asked again.
    assert [(r.duration, r.end) for r in sim.requests] == [("10800 S", "20240305-00:00:00")]
    assert second.report.requests[0].injected == 156 and second.report.requests[0].sources[1].status == "empty"
    info = BarStore(str(store)).info()[0]
    assert info["bars"] == 156 and info["holes"] == []


def test_a_hole_inside_the_window_is_filled_and_files_stay_disjoint(registry, sim, tmp_path):
    store = tmp_path / "store"
    _run(registry, store, [{"bar_type": EURUSD, "start": _iso(T - 7200), "end": _iso(T - 3600)}], [_ib(sim)])
    _run(registry, store, [{"bar_type": EURUSD, "start": _iso(T - 1800), "end": _iso(T)}], [_ib(sim)])
    sim.requests.clear()
    result = _run(registry, store, [{"bar_type": EURUSD, "start": _iso(T - 7200), "end": _iso(T)}], [_ib(sim)])
    assert [(r.duration, r.end) for r in sim.requests] == [("1800 S", time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(T - 1800)))]
    assert result.report.requests[0].injected == 120
    bs = BarStore(str(store))
    # Small neighbours are merged as they are written: one file, not three.
    assert bs.verify() == [] and len(bs.files(EURUSD)) == 1


def test_retention_trims_old_bars(registry, sim, tmp_path):
    store = tmp_path / "store"
    now = int(time.time()) // 60 * 60
    doc = {"backfill": {"store": str(store), "keep": "1h", "sources": [_ib(sim)],
                        "requests": [{"bar_type": EURUSD, "start": _iso(now - 3 * 3600), "end": _iso(now - 60)}]}}
    result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    assert result.report.requests[0].stored == 179
    info = BarStore(str(store)).info()[0]
    assert 58 <= info["bars"] <= 60


def test_store_cli_info_and_verify(registry, sim, tmp_path):
    store = tmp_path / "store"
    _run(registry, store, [{"bar_type": EURUSD, "bars": 50, "end": _iso(T)}], [_ib(sim)])
    exe = [sys.executable, "-m", "nautilus_backfill.cli", "store"]
    info = subprocess.run([*exe, "info", str(store), "--json"], capture_output=True, text=True)
    rows = json.loads(info.stdout)
    # The bar type as its files name it (what a config must say), and the catalog's folder.
    assert rows[0]["bar_type"] == "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL" and rows[0]["bars"] == 50
    assert rows[0]["folder"] == "EURUSD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
    ok = subprocess.run([*exe, "verify", str(store)], capture_output=True, text=True)
    assert ok.returncode == 0 and "0 problem(s)" in ok.stdout
    victim = BarStore(str(store)).files(EURUSD)[0].path
    with open(victim, "r+b") as f:
        f.truncate(100)
    bad = subprocess.run([*exe, "verify", str(store)], capture_output=True, text=True)
    assert bad.returncode == 1 and "unreadable" in bad.stdout and "Traceback" not in bad.stderr


# -- crash safety and concurrency (the workers live in storework.py) ---------------------------


class Launcher:
    """A process, started once, that forks store writers on request (forking is then cheap
    and safe: the launcher has a single thread, unlike the test process)."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, storework.__file__, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, cwd=os.path.dirname(storework.__file__),
        )

    def ask(self, line: str) -> int:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


POINTS = ["merge_renamed", "trim_renamed", "merge_removing", "trim_removing"]


def test_killed_writers_never_leave_an_unreadable_store(tmp_path):
    # Writers that merge, compact and trim are SIGKILLed at random points. After every kill:
    # `store verify` may flag only what the kill left (superseded or temporary files); this
    # tool's first open repairs it; then both this tool and NautilusTrader's own
    # ParquetDataCatalog read exactly the bars the writers reported stored (all or nothing of
    # the write the kill interrupted, any per-file part of an interrupted trim).
    runs = int(os.environ.get("NB_KILL_RUNS", "150"))
    url = str(tmp_path / "store")
    rng = random.Random(1)
    launcher = Launcher(url)
    stored: set[int] = set()
    flagged = interrupted_trims = 0
    try:
        for i in range(runs):
            log = str(tmp_path / f"log{i}")
            # One run in four dies at an exact point inside a merge or trim; the rest wherever
            # the writer has got to when the kill lands.
            point = POINTS[i // 4 % len(POINTS)] if i % 4 == 3 else ""
            pid = launcher.ask(f"writer {i}:{log}:{point}")
            time.sleep(0.3 if point else rng.uniform(0.0, 0.04))
            os.kill(pid, signal.SIGKILL)
            status = launcher.ask(f"reap {pid}")
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            done, pending = storework.replay(log, stored)
            problems = BarStore(url).verify()
            assert all("superseded by" in p for p in problems), problems
            flagged += bool(problems)
            got = storework.indices(storework.read_all(url))  # this tool's open repairs
            assert storework.allowed(done, pending, got), (pending, sorted(got ^ done)[:10])
            interrupted_trims += bool(pending and pending[0] == "trim" and got != done)
            assert BarStore(url).verify() == []
            theirs = storework.nautilus_read(url)
            assert len(theirs) == len(got) and storework.indices(theirs) == got
            stored = got
    finally:
        launcher.close()
    print(f"\n{runs} kills, {flagged} left files NautilusTrader would read twice until the next "
          f"open, {interrupted_trims} inside a trim, {len(stored)} bars stored")
    assert stored  # the writers did write
    assert flagged > 0 or runs < 50  # kills did land between a merge's rename and its deletes


def test_two_writers_at_once_lose_nothing(tmp_path):
    url = str(tmp_path / "store")
    launcher = Launcher(url)
    try:
        pids = [launcher.ask(f"blocks {seed}") for seed in (1, 2)]
        assert [launcher.ask(f"reap {pid}") for pid in pids] == [0, 0]
    finally:
        launcher.close()
    assert storework.check(url) == 3000  # the union of both writers' bars, each once


def test_the_bar_still_forming_at_the_end_is_asked_for_next_time(registry, sim, tmp_path):
    store = tmp_path / "store"
    _run(registry, store, [{"bar_type": EURUSD, "bars": 50, "end": _iso(T + 30)}], [_ib(sim)])  # mid-bar end
    result = _run(registry, store, [{"bar_type": EURUSD, "bars": 50, "end": _iso(T + 120)}], [_ib(sim)])
    bars = result.bars[BarType.from_str(EURUSD)]
    opens = [b.ts_event // 10**9 for b in bars]
    assert len(bars) == 50 and opens[-3:] == [T - 60, T, T + 60]  # the bar that was forming is there
    assert BarStore(str(store)).info()[0]["holes"] == []


def test_fixed_point_encoding_is_exact_beyond_int64():
    # 128-bit builds scale by 10**16: a volume of 10**7 is far past int64 once scaled.
    from nautilus_backfill.catalogfmt import decode_fixed, encode_fixed

    rng = np.random.default_rng(5)
    for precision in (0, 2, 5, 9):
        for width, scale, bound in ((16, 16, 1e7), (8, 9, 9e3)):
            values = np.round(rng.uniform(-bound, bound, 2000), precision)
            arr = encode_fixed(values, precision, width)
            raw = arr.buffers()[1].to_pybytes()
            got = [int.from_bytes(raw[i * width:(i + 1) * width], "little", signed=True) for i in range(len(values))]
            assert got == [round(v * 10**precision) * 10 ** (scale - precision) for v in values]
            assert np.allclose(decode_fixed(arr), values, rtol=1e-12, atol=0)


def test_decoding_with_the_declared_precision_gives_the_parsers_floats():
    # What a CSV parser gives for "1.10003" is what the store and catalog decode to, so the
    # later rounding changes nothing and equal bars from two sources compare equal.
    import pyarrow as pa
    from nautilus_backfill.catalogfmt import decode_fixed, encode_fixed

    rng = np.random.default_rng(9)
    # Up to 9e6: past int64 once scaled by 10**16 (volumes, index levels), and within it.
    for precision, bound in ((0, 9e6), (2, 9e6), (5, 900), (5, 9e6), (9, 900)):
        for width in (16, 8) if bound < 1e4 else (16,):
            values = np.round(rng.uniform(-bound, bound, 5000), precision)
            parsed = np.array([float(f"{v:.{precision}f}") for v in values])
            arr = encode_fixed(values, precision, width)
            chunked = pa.chunked_array([arr.slice(0, 1234), arr.slice(1234)])
            assert np.array_equal(decode_fixed(chunked, precision), parsed)
            # A file with more decimals than it declares still decodes to its own values.
            assert np.allclose(decode_fixed(arr, max(precision - 1, 0)), values, rtol=1e-12, atol=0)


def test_store_files_are_split_in_row_groups_a_short_read_can_skip(tmp_path):
    import pyarrow.parquet as pq
    from nautilus_backfill import store as store_module
    from nautilus_backfill.source import Span

    n = 2 * store_module.ROWS_PER_GROUP + 10
    ts = (T - 60 * n + 60 * np.arange(n, dtype=np.int64)) * 10**9
    values = np.column_stack([np.full(n, 1.1), np.full(n, 1.2), np.full(n, 1.0), np.full(n, 1.1), np.ones(n)])
    s = BarStore(str(tmp_path / "store"))
    s.write(BAR, 60 * 10**9, ts, values, 5, 0, P.closedopen(int(ts[0]), int(ts[-1]) + 60 * 10**9))
    (path,) = [f.path for f in s.files(BAR)]
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    table, price, size = s.read(BAR, 60 * 10**9, Span(None, int(ts[-1]) + 60 * 10**9, 200))
    assert (price, size, table.num_rows) == (5, 0, 200)
    assert table.column("ts").to_pylist() == ts[-200:].tolist()


def test_a_held_local_lock_makes_a_write_give_up_after_its_wait(tmp_path):
    import storework
    from nautilus_backfill.storelock import StoreLockTimeout, store_lock

    s = BarStore(str(tmp_path / "store"))
    folder = s.folder(storework.BAR_TYPE)
    os.makedirs(folder)
    ts, values = storework.bars(0, 10)
    s.lock_wait_s = 0.3
    with store_lock(s.fs, folder, local=True):
        started = time.monotonic()
        with pytest.raises(StoreLockTimeout, match="another writer held it"):
            s.write(storework.BAR_TYPE, storework.STEP, ts, values, 5, 0, P.empty())
        assert 0.3 <= time.monotonic() - started < 2
    assert s.write(storework.BAR_TYPE, storework.STEP, ts, values, 5, 0, P.empty()) == 10
