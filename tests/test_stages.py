"""The pipeline runs one stage per source: batch answers, parallel calls, deadlines."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
from nautilus_backfill import BarSource, SourceResult, hookimpl
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.errors import SourceError
from nautilus_backfill.orchestrator import Backfill
from nautilus_backfill.registry import build_registry

MIN = 60_000_000_000
END = "2024-01-02T00:00:00Z"


def _answer(span, n=10):
    last = span.end - MIN
    ts = last - MIN * np.arange(n - 1, -1, -1, dtype=np.int64)
    p = np.full(n, 1.5)
    return SourceResult(pa.table({"ts": ts, "open": p, "high": p, "low": p, "close": p, "volume": np.ones(n)}),
                        price_precision=2, size_precision=0)


class Batch(BarSource):
    batches: list[int] = []  # noqa: RUF012
    broken = False

    def fetch(self, request, span):
        raise AssertionError("a batch source is asked through fetch_many")

    def fetch_many(self, calls):
        Batch.batches.append(len(calls))
        if Batch.broken:
            return [_answer(span) for _, span in calls[:-1]]  # one answer short
        return [SourceError("no such bar type", status="empty") if "GBP" in str(r.bar_type) else _answer(s)
                for r, s in calls]


class Slow(BarSource):
    max_parallel = 50
    inside = 0
    most = 0
    lock = threading.Lock()

    def fetch(self, request, span):
        with Slow.lock:
            Slow.inside += 1
            Slow.most = max(Slow.most, Slow.inside)
        time.sleep(0.3)
        with Slow.lock:
            Slow.inside -= 1
        return _answer(span)


class Hang(BarSource):
    def fetch(self, request, span):
        time.sleep(60)


class Plugin:
    @hookimpl
    def register_sources(self, register):
        register("batch", Batch)
        register("slow", Slow)
        register("hang", Hang)


REGISTRY = build_registry(entry_points=False, extra=[("stages", Plugin())])


def _run(bar_types, sources, **backfill):
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": b, "bars": 10, "end": END} for b in bar_types],
                                         "sources": sources, **backfill}}, registry=REGISTRY)
    report = Backfill(cfg, registry=REGISTRY).fetch().report
    assert all(r.accounted() for r in report.requests)
    return report


def _types(n, venue="SIM"):
    return [f"S{i:03d}.{venue}-1-MINUTE-LAST-EXTERNAL" for i in range(n)]


def test_a_batch_source_answers_every_request_in_one_call():
    Batch.batches, Batch.broken = [], False
    report = _run([*_types(30), "GBP/USD.SIM-1-MINUTE-MID-EXTERNAL"], [{"name": "b", "plugin": "batch"}])
    assert Batch.batches == [31]
    assert [r.status for r in report.requests] == ["ok"] * 30 + ["failed"]
    assert report.requests[-1].sources[0].status == "empty"


def test_a_batch_with_the_wrong_number_of_answers_fails_that_source_and_the_next_is_asked():
    Batch.batches, Batch.broken = [], True
    report = _run(_types(5), [{"name": "b", "plugin": "batch"}, {"name": "s", "plugin": "slow"}])
    for r in report.requests:
        assert r.sources[0].status == "error" and "fetch_many returned 4 answers for 5 calls" in r.sources[0].error
        assert r.sources[1].used == 10 and r.status == "ok"


def test_a_source_is_asked_as_many_calls_at_once_as_it_allows():
    Slow.most = 0
    started = time.monotonic()
    report = _run(_types(100), [{"name": "s", "plugin": "slow"}])
    elapsed = time.monotonic() - started
    assert all(r.status == "ok" for r in report.requests)
    assert Slow.most == 50 and elapsed < 100 * 0.3 / 8  # 2 rounds of 50, not 13 rounds of 8


def test_a_hung_source_costs_its_timeout_and_the_fallback_still_runs_within_the_deadline():
    started = time.monotonic()
    report = _run(_types(3), [{"name": "h", "plugin": "hang", "timeout": "1s"}, {"name": "s", "plugin": "slow"}],
                  deadline="3s")
    assert time.monotonic() - started < 3
    for r in report.requests:
        assert r.sources[0].status == "timeout" and r.sources[1].used == 10


class Chunky(BarSource):
    """Reports rows as they arrive, like a long broker download."""

    def fetch(self, request, span):
        for _ in range(4):
            span.progress(5)
            time.sleep(0.02)
        return _answer(span, n=20)


class ChunkyPlugin:
    @hookimpl
    def register_sources(self, register):
        register("chunky", Chunky)


def test_progress_moves_during_a_call_and_counts_every_row_once():
    registry = build_registry(entry_points=False, extra=[("chunky", ChunkyPlugin())])
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": b, "bars": 20, "end": END} for b in _types(3)],
                                         "sources": [{"name": "c", "plugin": "chunky"}]}}, registry=registry)
    seen = []
    Backfill(cfg, registry=registry).fetch(on_progress=seen.append)
    assert seen[-1].calls_done == 3 and seen[-1].calls_total == 3 and seen[-1].bars == 60
    during = [p for p in seen if p.calls_done == 0]
    assert during and during[-1].bars > 0  # rows counted before any call had returned
    assert all(p.eta_s is not None for p in seen if p.calls_done)


def test_plan_lists_each_source_without_asking_any(tmp_path):
    (tmp_path / "S000.csv").write_text("timestamp,open,high,low,close\n")
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": b, "bars": 10} for b in _types(2)],
                                         "store": str(tmp_path / "store"),
                                         "sources": [{"name": "h", "plugin": "hang"},
                                                     {"name": "f", "plugin": "csv", "path": str(tmp_path / "{symbol}.csv")}]}},
                           registry=REGISTRY)
    started = time.monotonic()
    plan = Backfill(cfg, registry=REGISTRY).plan()
    assert time.monotonic() - started < 5  # the hanging source was never asked
    first, second = plan
    assert first["window"] == "the 10 newest bars until now"
    lines = {s["name"]: s["lines"] for s in first["sources"]}
    assert lines["store"] == ["the sources are asked for what it lacks of the newest bars"]
    assert lines["h"] == [] and lines["f"] == [f"reads {tmp_path / 'S000.csv'}"]
    assert {s["name"]: s["lines"] for s in second["sources"]}["f"] == [f"no file matches {tmp_path / '{symbol}.csv'}"]


def test_the_network_sources_estimate_is_printed_before_fetch_starts(tmp_path):
    import pytest

    pytest.importorskip("ibapi")
    from click.testing import CliRunner
    from nautilus_backfill.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text("""[backfill]
deadline = "1s"
[[backfill.requests]]
bar_type = "AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL"
start = "2024-01-01T00:00:00Z"
end = "2024-02-01T00:00:00Z"
[[backfill.sources]]
name = "ib"
plugin = "ib"
port = 1
connect_timeout = "0.5s"
""")
    lines = Backfill.from_toml(cfg).remote_plan()
    assert len(lines) == 1 and lines[0].startswith("AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL: ib: ")
    assert "under IB's pacing" in lines[0]
    # Scripts (stderr not a terminal) get the report alone.
    out = CliRunner().invoke(main, ["fetch", "--json", str(cfg)])
    assert "plan:" not in out.output


class Gate(BarSource):
    """S000 answers at once; the others wait until its bars are finished (or 5 s)."""

    max_parallel = 4
    first_done = threading.Event()
    waited_out = False

    def fetch(self, request, span):
        name = str(request.bar_type)
        if name.startswith("S000"):
            return _answer(span)
        if name.startswith("S003"):
            raise SourceError("not here", status="empty")
        if not Gate.first_done.wait(5):
            Gate.waited_out = True
        return _answer(span)


class GatePlugin:
    @hookimpl
    def register_sources(self, register):
        register("gate", Gate)
        register("slow", Slow)


def test_a_complete_request_is_finished_while_other_calls_still_wait():
    registry = build_registry(entry_points=False, extra=[("gate", GatePlugin())])
    Gate.first_done.clear()
    Gate.waited_out = False
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": b, "bars": 10, "end": END} for b in _types(4)],
                                         "sources": [{"name": "g", "plugin": "gate"},
                                                     {"name": "s", "plugin": "slow"}]}}, registry=registry)
    done = []

    def on_done(report):
        done.append(report.bar_type)
        if report.bar_type.startswith("S000"):
            Gate.first_done.set()

    result = Backfill(cfg, registry=registry).fetch(on_request_done=on_done)
    assert not Gate.waited_out  # S000's bars were built before S001..S002 had their answers
    assert done[0].startswith("S000") and sorted(done) == sorted(_types(4))
    reports = {r.bar_type: r for r in result.report.requests}
    for name in _types(4):
        r = reports[name]
        assert r.status == "ok" and r.injected == 10 and r.accounted()
        first, fallback = r.sources
        if name.startswith("S003"):  # the gate had nothing: the fallback filled it
            assert first.status == "empty" and fallback.status == "ok" and fallback.used == 10
        else:
            assert first.status == "ok" and first.used == 10 and fallback.status == "not_needed"
    assert len(result.bars) == 4 and all(len(bars) == 10 for bars in result.bars.values())
