"""Sources in config order: later ones fill only what earlier ones left, earlier ones win."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
from nautilus_backfill import BarSource, SourceConfig, SourceResult, hookimpl
from nautilus_backfill.registry import build_registry

MIN = 60 * 10**9
T0 = 1704067200 * 10**9  # 2024-01-01T00:00Z


def _csv(path, start_min, n, price=1.0, stamp="open"):
    shift = 1 if stamp == "close" else 0
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(start_min, start_min + n):
        lines.append(f"{(T0 + (i + shift) * MIN) // 10**6},{price},{price},{price},{price},1")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


REQ = {"bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", "end": "2024-01-01T02:00:00Z",
       "price_precision": 5, "size_precision": 0}


def test_count_mode_second_source_fills_the_older_part(tmp_path, run):
    recent = _csv(tmp_path / "recent.csv", 90, 30, price=1.0)   # 01:30..01:59
    older = _csv(tmp_path / "older.csv", 0, 120, price=2.0)     # 00:00..01:59
    result = run([dict(REQ, bars=60)], [
        {"name": "recent", "plugin": "csv", "path": recent},
        {"name": "older", "plugin": "csv", "path": older},
    ])
    report = result.report.requests[0]
    (bars,) = result.bars.values()
    assert report.injected == 60
    assert [s.used for s in report.sources] == [30, 30]
    assert report.sources[1].received == 30  # asked only for the 30 still missing
    assert all(float(b.close) == 1.0 for b in bars[30:]) and all(float(b.close) == 2.0 for b in bars[:30])


def test_time_mode_fills_gap_at_the_tail_and_flags_conflict(tmp_path, run):
    first = _csv(tmp_path / "a.csv", 0, 60, price=1.0)          # 00:00..00:59
    second = _csv(tmp_path / "b.csv", 59, 61, price=1.5)        # 00:59..01:59 (00:59 overlaps)
    result = run([dict(REQ, start="2024-01-01T00:00:00Z")], [
        {"name": "a", "plugin": "csv", "path": first},
        {"name": "b", "plugin": "csv", "path": second},
    ])
    report = result.report.requests[0]
    assert report.injected == 120
    assert report.sources[1].received == 60 and report.dropped.get("outside_window", 0) == 0
    assert report.gaps == []


def test_open_and_close_stamped_sources_never_double_a_bar(tmp_path, run):
    opened = _csv(tmp_path / "open.csv", 0, 60, stamp="open")
    closed = _csv(tmp_path / "close.csv", 0, 120, stamp="close")
    result = run([dict(REQ, start="2024-01-01T00:00:00Z")], [
        {"name": "o", "plugin": "csv", "path": opened},
        {"name": "c", "plugin": "csv", "path": closed, "timestamp_is": "close"},
    ])
    (bars,) = result.bars.values()
    ts = [b.ts_event for b in bars]
    assert len(ts) == len(set(ts)) == 120
    assert ts[0] == T0 and bars[0].ts_init == T0 + MIN


def test_ts_event_close_convention(tmp_path, run):
    path = _csv(tmp_path / "x.csv", 0, 5)
    (bars,) = run([dict(REQ, bars=5, end="2024-01-01T00:05:00Z", ts_event="close")],
                  [{"name": "x", "plugin": "csv", "path": path}]).bars.values()
    assert bars[0].ts_event == bars[0].ts_init == T0 + MIN


class _Cfg(SourceConfig, frozen=True, kw_only=True):
    delay: float = 0.0
    fail: str | None = None
    same_ts_other_value: bool = False


class _ScriptedSource(BarSource):
    """Returns every bar up to the request end (including the forming one), as IB does."""

    config_type = _Cfg

    def fetch(self, request, span):
        if self.config.delay:
            time.sleep(self.config.delay)
        if self.config.fail:
            raise RuntimeError(self.config.fail)
        n = 10
        ts_arr = np.arange(n, dtype=np.int64) * request.step_ns + (request.end_ns - (n - 1) * request.step_ns)
        price = 3.0 if self.config.same_ts_other_value else 1.0
        return SourceResult(pa.table({
            "ts": ts_arr, "open": np.full(n, price), "high": np.full(n, price), "low": np.full(n, price),
            "close": np.full(n, price), "volume": np.ones(n),
        }))


class _Plugin:
    @hookimpl
    def register_sources(self, register):
        register("scripted", _ScriptedSource)


def test_failing_slow_and_forming_sources_are_reported_and_skipped(tmp_path):
    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict

    registry = build_registry(entry_points=False, extra=[("scripted-test", _Plugin())])
    backup = _csv(tmp_path / "backup.csv", 0, 120)
    cfg = config_from_dict({"backfill": {"deadline": "5s", "requests": [dict(REQ, bars=30)], "sources": [
        {"name": "broken", "plugin": "scripted", "fail": "gateway said no"},
        {"name": "slow", "plugin": "scripted", "delay": 3.0, "timeout": "0.2s"},
        {"name": "forming", "plugin": "scripted"},
        {"name": "backup", "plugin": "csv", "path": backup},
    ]}}, registry=registry)
    started = time.monotonic()
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert time.monotonic() - started < 2.0
    statuses = [(s.name, s.status) for s in report.sources]
    assert statuses == [("broken", "error"), ("slow", "timeout"), ("forming", "ok"), ("backup", "ok")]
    assert "gateway said no" in report.sources[0].error
    # The scripted source's last bar closes after `end`: counted as incomplete, never injected.
    assert report.dropped["incomplete"] == 1
    assert report.sources[2].used == 9 and report.sources[3].used == 21
    assert report.injected == 30 and report.accounted()


def test_deadline_bounds_the_whole_backfill(tmp_path):
    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict

    registry = build_registry(entry_points=False, extra=[("scripted-test", _Plugin())])
    cfg = config_from_dict({"backfill": {"deadline": "0.5s", "requests": [dict(REQ, bars=30)], "sources": [
        {"name": "hang", "plugin": "scripted", "delay": 30.0, "timeout": "60s"},
        {"name": "after", "plugin": "scripted"},
    ]}}, registry=registry)
    started = time.monotonic()
    report = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert time.monotonic() - started < 1.5
    assert [s.status for s in report.sources] == ["timeout", "not_asked"]
    assert report.injected == 0 and report.accounted()


def test_later_source_same_bar_other_value_is_a_conflict(tmp_path):
    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict

    registry = build_registry(entry_points=False, extra=[("scripted-test", _Plugin())])
    recent = _csv(tmp_path / "recent.csv", 115, 5, price=1.0)  # 01:55..01:59
    cfg = config_from_dict({"backfill": {"requests": [dict(REQ, bars=10)], "sources": [
        {"name": "recent", "plugin": "csv", "path": recent},
        {"name": "other", "plugin": "scripted", "same_ts_other_value": True},
    ]}}, registry=registry)
    result = Backfill(cfg, registry=registry).fetch()
    report = result.report.requests[0]
    # "other" returns 01:51..02:00: 4 fill the gap, 5 clash with "recent", 1 is still forming.
    assert report.dropped == {"conflict": 5, "incomplete": 1}
    assert report.sources[1].used == 4 and report.injected == 9
    (bars,) = result.bars.values()
    assert [float(b.close) for b in bars[-5:]] == [1.0] * 5  # the earlier source wins
