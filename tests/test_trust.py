"""Reports that can be trusted: per-request status, freshness, what the store keeps, check."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from nautilus_backfill import BarSource, SourceResult, hookimpl
from nautilus_backfill.cli import main
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.errors import InsufficientHistoryError, SourceError
from nautilus_backfill.orchestrator import Backfill
from nautilus_backfill.registry import build_registry
from nautilus_backfill.store import BarStore
from nautilus_trader.cache.cache import Cache
from nautilus_trader.model.data import BarType

MIN = 60_000_000_000
BAR = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"


class Broker(BarSource):
    """A network-like source: bars on every minute of any span, up to `Broker.up_to`."""

    remote = True
    up = True
    up_to: int | None = None
    asked: list = []  # noqa: RUF012

    def fetch(self, request, span):
        Broker.asked.append(span)
        if not Broker.up:
            raise SourceError("connection refused", status="refused")
        end = span.end if Broker.up_to is None else min(span.end, Broker.up_to)
        last = end // MIN * MIN - MIN
        n = span.limit or max(0, (last - (span.start or last)) // MIN + 1)
        ts = last - MIN * np.arange(n - 1, -1, -1, dtype=np.int64)
        p = np.full(n, 1.25)
        table = pa.table({"ts": ts, "open": p, "high": p, "low": p, "close": p, "volume": np.ones(n)})
        return SourceResult(table, price_precision=5, size_precision=0)


class BrokerPlugin:
    @hookimpl
    def register_sources(self, register):
        register("broker", Broker)


@pytest.fixture
def broker():
    Broker.up, Broker.up_to, Broker.asked = True, None, []
    return build_registry(entry_points=False, extra=[("broker", BrokerPlugin())])


def _csv(path, last_open_ns, n, price=1.5):
    rows = [f"{last_open_ns - MIN * (n - 1 - i)},{price},{price},{price},{price},1" for i in range(n)]
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return str(path)


def _fetch(registry, requests, sources, **backfill):
    cfg = config_from_dict({"backfill": {"requests": requests, "sources": sources, **backfill}},
                           registry=registry)
    result = Backfill(cfg, registry=registry).fetch()
    for r in result.report.requests:
        assert r.accounted(), r.to_dict()
    return result


def test_a_csv_from_2012_is_stale_for_a_live_start_not_ok(registry, tmp_path):
    old = _csv(tmp_path / "old.csv", 1_330_000_000 * 10**9 // MIN * MIN, 600)
    result = _fetch(registry, [{"bar_type": BAR, "bars": 500, "price_precision": 5, "size_precision": 0}],
                    [{"name": "file", "plugin": "csv", "path": old}])
    r = result.report.requests[0]
    assert r.injected == 500 and r.status == "stale" and not r.satisfied
    assert "newest bar closed 2012-02-23T12:" in r.stale and "older than backfill.max_age = 4d" in r.stale
    assert "[STALE]" in result.report.render()
    doc = json.loads(result.report.to_json())
    assert doc["requests"][0]["status"] == "stale" and doc["ok"] is True  # on_insufficient = "warn"


def test_stale_fails_under_on_insufficient_fail_and_the_bars_still_land(registry, tmp_path):
    old = _csv(tmp_path / "old.csv", 1_330_000_000 * 10**9 // MIN * MIN, 50)
    cfg = config_from_dict({"backfill": {
        "requests": [{"bar_type": BAR, "bars": 50, "price_precision": 5, "size_precision": 0}],
        "sources": [{"name": "file", "plugin": "csv", "path": old}], "on_insufficient": "fail"}},
        registry=registry)
    cache = Cache()
    with pytest.raises(InsufficientHistoryError, match="stale"):
        Backfill(cfg, registry=registry).inject(cache)
    assert cache.bar_count(BarType.from_str(BAR)) == 50


def test_max_age_is_set_per_request_or_off_and_ignored_when_end_is_set(registry, tmp_path):
    now = time.time_ns() // MIN * MIN
    recent = _csv(tmp_path / "recent.csv", now - 3 * 3600 * 10**9, 20)
    req = {"bar_type": BAR, "bars": 20, "price_precision": 5, "size_precision": 0}
    src = [{"name": "file", "plugin": "csv", "path": recent}]
    assert _fetch(registry, [req], src).report.requests[0].status == "ok"  # 3 h old, auto allows 4 d
    r = _fetch(registry, [dict(req, max_age="1h")], src).report.requests[0]
    assert r.status == "stale" and "backfill.requests[0].max_age = 1h" in r.stale
    assert _fetch(registry, [req], src, max_age="1h").report.requests[0].status == "stale"
    assert _fetch(registry, [dict(req, max_age="off")], src, max_age="1h").report.requests[0].status == "ok"
    end = {"end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9 - 3 * 3600 + 60))}
    assert _fetch(registry, [dict(req, **end)], src, max_age="1h").report.requests[0].status == "ok"


def test_every_request_has_a_status_and_an_error_is_never_ok(registry, tmp_path):
    f = _csv(tmp_path / "b.csv", 1_704_067_200 * 10**9, 10)
    reqs = [
        {"bar_type": BAR, "bars": 10, "end": "2024-01-02T00:00:00Z", "price_precision": 5, "size_precision": 0},
        {"bar_type": "GBP/USD.SIM-1-MINUTE-MID-EXTERNAL", "bars": 10, "end": "2024-01-02T00:00:00Z",
         "price_precision": 5, "size_precision": 0},
        {"bar_type": "EUR/USD.SIM-1-MINUTE-BID-EXTERNAL", "bars": 20, "end": "2024-01-02T00:00:00Z",
         "price_precision": 5, "size_precision": 0},
        # No precision anywhere: the rows come, the request has an error.
        {"bar_type": "EUR/USD.SIM-1-MINUTE-ASK-EXTERNAL", "bars": 10, "end": "2024-01-02T00:00:00Z"},
    ]
    # One file serves every bar type here.
    src = [{"name": "file", "plugin": "csv", "path": f}]
    result = _fetch(registry, reqs, src)
    doc = result.report.to_dict()
    assert [r["status"] for r in doc["requests"]] == ["ok", "ok", "short", "failed"]
    assert doc["requests"][3]["error"].startswith("no price_precision")


def test_fallback_bars_are_not_written_back_so_the_primary_is_asked_next_time(broker, tmp_path):
    store = tmp_path / "store"
    now = time.time_ns() // MIN * MIN
    fallback = _csv(tmp_path / "f.csv", now - 2 * MIN, 100, price=9.0)
    req = [{"bar_type": BAR, "bars": 50, "price_precision": 5, "size_precision": 0}]
    sources = [{"name": "ib", "plugin": "broker"}, {"name": "file", "plugin": "csv", "path": fallback}]
    Broker.up = False
    first = _fetch(broker, req, sources, store=str(store)).report.requests[0]
    assert first.injected == 50 and first.sources[2].used == 50 and first.stored == 0
    Broker.up = True
    Broker.asked = []
    second = _fetch(broker, req, sources, store=str(store)).report.requests[0]
    # The store did not keep the fallback's bars: the primary serves them now.
    assert second.sources[0].used == 0 and second.sources[1].used == 50 and Broker.asked
    assert second.stored == 50 and second.status == "ok"
    third = _fetch(broker, req, sources, store=str(store)).report.requests[0]
    assert third.sources[0].used >= 48  # now the store holds the primary's bars


def test_write_back_can_be_turned_on_for_a_file_source(registry, tmp_path):
    now = time.time_ns() // MIN * MIN
    f = _csv(tmp_path / "f.csv", now - 2 * MIN, 100)
    req = [{"bar_type": BAR, "bars": 50, "price_precision": 5, "size_precision": 0}]
    src = [{"name": "file", "plugin": "csv", "path": f, "write_back": True}]
    assert _fetch(registry, req, src, store=str(tmp_path / "s")).report.requests[0].stored == 50


def test_a_future_end_does_not_mark_time_nobody_answered_for(broker, tmp_path):
    store = tmp_path / "store"
    now = time.time_ns()
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9 + 1800))
    sources = [{"name": "ib", "plugin": "broker"}]
    Broker.up_to = now
    _fetch(broker, [{"bar_type": BAR, "bars": 50, "end": future}], sources, store=str(store))
    answered = BarStore(str(store)).answered(BAR)
    assert answered.upper <= time.time_ns()
    # The next start without `end` asks the broker for the tail instead of trusting the store.
    Broker.asked = []
    Broker.up_to = None
    r = _fetch(broker, [{"bar_type": BAR, "bars": 50}], sources, store=str(store)).report.requests[0]
    assert r.status == "ok" and r.injected == 50
    assert r.last >= (time.time_ns() // MIN - 2) * MIN


CHECK_CASES = {
    "start after end": ({"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
                        "backfill.requests[0].start: must be before end"),
    "year 3000": ({"bars": 5, "end": "3000-01-02T09:00:00Z"}, "backfill.requests[0].end: invalid time"),
    "year 1500": ({"bars": 5, "end": "1500-01-02T09:00:00Z"}, "backfill.requests[0].end: invalid time"),
    "price precision 17": ({"bars": 5, "price_precision": 17},
                           "backfill.requests[0].price_precision: NautilusTrader's Price and Quantity take 0 to 16"),
    "precision 40": ({"bars": 5, "size_precision": 40}, "backfill.requests[0].size_precision"),
    "absurd bars": ({"bars": 99999999999999999999}, "backfill.requests[0].bars"),
    "bad max_age": ({"bars": 5, "max_age": "soon"}, "backfill.requests[0].max_age: invalid duration"),
}


def _check(tmp_path, text):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    return CliRunner().invoke(main, ["check", str(cfg)])


def _toml(request, extra="", sources=None):
    lines = ["[backfill]", extra, "[[backfill.requests]]", f'bar_type = "{BAR}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in request.items()]
    for s in sources or [{"name": "f", "plugin": "csv", "path": "*.csv"}]:
        lines += ["[[backfill.sources]]"] + [f"{k} = {json.dumps(v)}" for k, v in s.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_check_refuses_what_fetch_would_fail_on(tmp_path, case):
    (tmp_path / "b.csv").write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,1,1,1\n")
    request, message = CHECK_CASES[case]
    out = _check(tmp_path, _toml(request))
    assert out.exit_code == 2 and message in out.output, out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xef\xbb\xbf[backfill]\n", "starts with a UTF-8 byte-order mark"),
        (b"[backfill]\n# caf\xe9\n", "line 2: not UTF-8 (byte 0xe9)"),
        ("[backfill]\nx = " + "[" * 5000 + "]" * 5000 + "\n", "values nested too deeply"),
        (_toml({"bars": 5}, 'deadline = "99999999999999999999999999d"'), "backfill.deadline: duration must be at most"),
        (_toml({"bars": 5}, 'store = "gs://bucket/x"'), "backfill.store: 'gs://' needs a package that is not installed"),
        (_toml({"bars": 5}, 'store = "nope://bucket/x"'), "backfill.store: unknown filesystem 'nope://'"),
        (_toml({"bars": 5}, sources=[{"name": "a", "plugin": "csv", "path": "x"}, {"name": "a", "plugin": "csv", "path": "y"}]),
         "backfill.sources[1].name: source names must be unique, 'a' is also sources[0]"),
        (_toml({"bars": 5}, sources=[{"name": "store", "plugin": "csv", "path": "x"}]),
         "backfill.sources[0].name: 'store' is reserved"),
        (_toml({"bars": 5}) + f'[[backfill.requests]]\nbar_type = "{BAR}"\nbars = 7\n',
         "backfill.requests[1].bar_type: 'EUR/USD.SIM-1-MINUTE-MID-EXTERNAL' is also requests[0]"),
    ],
)
def test_check_gives_one_clear_line_for_bad_files_and_values(tmp_path, text, message):
    out = _check(tmp_path, text)
    assert out.exit_code == 2 and message in out.output, out.output
    assert "Traceback" not in out.output


def test_check_asks_every_source_and_a_faulty_check_names_its_plugin(tmp_path):
    class Picky(BarSource):
        def check(self, requests):
            return [f"path: no file for {requests[0].bar_type}"]

    class Crashy(BarSource):
        def check(self, requests):
            raise KeyError("oops")

    class Plugin:
        @hookimpl
        def register_sources(self, register):
            register("picky", Picky)
            register("crashy", Crashy)

    registry = build_registry(entry_points=False, extra=[("p", Plugin())])
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": BAR, "bars": 5}],
                                         "sources": [{"name": "a", "plugin": "picky"},
                                                     {"name": "b", "plugin": "crashy"}]}}, registry=registry)
    assert Backfill(cfg, registry=registry).check() == [
        f"backfill.sources[0].path: no file for {BAR}",
        "backfill.sources[1]: plugin 'crashy' check failed: KeyError: 'oops'",
    ]


def test_the_node_log_warning_for_a_stale_request_says_why_and_how_to_fix(registry, tmp_path):
    from nautilus_backfill.report import shortfall

    old = _csv(tmp_path / "old.csv", 1_330_000_000 * 10**9 // MIN * MIN, 20)
    r = _fetch(registry, [{"bar_type": BAR, "bars": 20, "price_precision": 5, "size_precision": 0}],
               [{"name": "file", "plugin": "csv", "path": old}]).report.requests[0]
    line = shortfall(r)
    assert line.startswith(f"{BAR} is STALE: newest bar closed 2012-02-23T")
    assert "check the sources are current, or raise backfill.max_age" in line


def test_rounded_counts_injected_bars_only(registry, tmp_path):
    from nautilus_trader.cache.config import CacheConfig

    start = 1_704_067_200 * 10**9
    rows = [f"{start + MIN * i},1.234,1.234,1.234,1.234,1" for i in range(1000)]
    (tmp_path / "a.csv").write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    window = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "price_precision": 2, "size_precision": 0}
    cfg = config_from_dict({"backfill": {"requests": [{"bar_type": BAR, **window}], "on_capacity": "truncate",
                                         "sources": [{"name": "a", "plugin": "csv", "path": str(tmp_path / "a.csv")}]}},
                           registry=registry)
    cache = Cache(config=CacheConfig(bar_capacity=10))
    r = Backfill(cfg, registry=registry).fetch(cache=cache).report.requests[0]
    assert r.injected == 10 and r.dropped["over_capacity"] == 990
    assert r.rounded == 10  # not the 1000 the source gave


def test_bars_a_source_sends_from_the_future_are_incomplete_not_injected(broker, tmp_path):
    now = time.time_ns()
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9 + 1800))
    Broker.up_to = None  # this broker answers up to `end`, future minutes included
    result = _fetch(broker, [{"bar_type": BAR, "bars": 50, "end": future}], [{"name": "ib", "plugin": "broker"}])
    r = result.report.requests[0]
    assert r.dropped["incomplete"] >= 29
    assert max(b.ts_init for b in result.bars[BarType.from_str(BAR)]) <= time.time_ns()


def test_a_file_not_yet_up_to_date_does_not_make_the_store_serve_stale_bars(registry, tmp_path):
    now = time.time_ns() // MIN * MIN
    data = tmp_path / "data.csv"
    _csv(data, now - 120 * MIN, 300)  # ends two hours ago
    req = [{"bar_type": BAR, "bars": 300, "price_precision": 5, "size_precision": 0}]
    src = [{"name": "files", "plugin": "csv", "path": str(data), "write_back": True}]
    store = str(tmp_path / "store")
    _fetch(registry, req, src, store=store)
    assert BarStore(store).answered(BAR, MIN).upper <= now - 119 * MIN  # not past its newest bar
    _csv(data, now - 2 * MIN, 300)  # the file catches up
    r = _fetch(registry, req, src, store=store).report.requests[0]
    assert r.last == now - 2 * MIN and r.sources[1].used >= 118


def test_a_source_with_no_data_at_all_is_not_remembered_as_answered(broker, tmp_path):
    now = time.time_ns() // MIN * MIN
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9 - 86_400))
    req = [{"bar_type": BAR, "start": start}]
    store = str(tmp_path / "store")
    Broker.up_to = 0  # a gateway answering "no data" for a market that trades
    first = _fetch(broker, req, [{"name": "ib", "plugin": "broker"}], store=store).report.requests[0]
    assert first.injected == 0 and first.sources[1].status == "empty"
    assert BarStore(store).answered(BAR, MIN).empty
    Broker.up_to = None
    second = _fetch(broker, req, [{"name": "ib", "plugin": "broker"}], store=store).report.requests[0]
    assert second.injected >= 1438 and second.sources[1].used == second.injected


def test_bars_stored_at_fewer_decimals_are_not_served_for_a_finer_request(registry, shared, tmp_path):
    path = str(shared / "csv" / "btc-perp-20211231-20220201-1m.csv")
    store = str(tmp_path / "store")
    req = {"bar_type": "BTCUSDT.BINANCE-1-MINUTE-LAST-EXTERNAL", "bars": 50, "end": "2022-01-03T12:00:00Z"}
    src = [{"name": "btc", "plugin": "csv", "path": path, "write_back": True}]
    _fetch(registry, [{**req, "price_precision": 0, "size_precision": 0}], src, store=store)
    result = _fetch(registry, [{**req, "price_precision": 2, "size_precision": 4}], src, store=store)
    r = result.report.requests[0]
    assert r.dropped["store_precision"] == 50 and r.sources[0].used == 0 and r.sources[1].used == 50
    assert "and size precision 0 (the request needs 4): not used" in " ".join(r.sources[0].notes)
    bars = result.bars[BarType.from_str(req["bar_type"])]
    assert float(bars[-1].volume) != round(float(bars[-1].volume))  # the file's 4 decimals, not the store's 0


def test_no_gap_line_is_drawn_over_bars_that_were_injected(registry, tmp_path):
    import portion as P

    store = str(tmp_path / "store")
    start = 1_735_810_800 * 10**9  # 2025-01-02T09:40:00Z
    ts = start + MIN * np.arange(100, dtype=np.int64)
    values = np.column_stack([np.full(100, 1.1)] * 4 + [np.ones(100)])
    BarStore(store).write(BAR, MIN, ts, values, 5, 0, P.empty())  # bars, but no answered record
    window = {"bar_type": BAR, "start": "2025-01-02T09:00:00Z", "end": "2025-01-02T12:00:00Z"}
    r = _fetch(registry, [window], [], store=store).report.requests[0]
    assert r.injected == 100
    assert r.gaps == [(start - 40 * MIN, start), (start + 100 * MIN, start + 140 * MIN)]


def test_past_windows_too_remember_no_time_after_the_newest_bar(registry, tmp_path):
    # A window that ended long ago: a file that was behind must not make the store hide the
    # bars it has later.
    end = 1_735_808_400 * 10**9  # 2025-01-02T09:00:00Z
    data = tmp_path / "data.csv"
    _csv(data, end - 31 * MIN, 90)  # ends 08:29
    req = [{"bar_type": BAR, "bars": 60, "end": "2025-01-02T09:00:00Z", "price_precision": 5, "size_precision": 0}]
    src = [{"name": "files", "plugin": "csv", "path": str(data), "write_back": True}]
    store = str(tmp_path / "store")
    _fetch(registry, req, src, store=store)
    _csv(data, end - MIN, 120)  # now runs to 08:59
    r = _fetch(registry, req, src, store=store).report.requests[0]
    assert r.last == end - MIN and r.injected == 60


class Flaky(BarSource):
    """Returns the first hour of the window, then loses the connection."""

    def fetch(self, request, span):
        n = 60
        ts = span.start + MIN * np.arange(n, dtype=np.int64)
        p = np.full(n, 1.25)
        table = pa.table({"ts": ts, "open": p, "high": p, "low": p, "close": p, "volume": np.ones(n)})
        return SourceResult(table, price_precision=5, size_precision=0,
                            failure=SourceError("connection lost", status="disconnected"))


def test_a_window_a_failed_source_left_holes_in_is_short_not_ok():
    class Plugin:
        @hookimpl
        def register_sources(self, register):
            register("flaky", Flaky)

    registry = build_registry(entry_points=False, extra=[("flaky", Plugin())])
    window = {"bar_type": BAR, "start": "2025-01-02T00:00:00Z", "end": "2025-01-02T06:00:00Z"}
    result = _fetch(registry, [window], [{"name": "ib", "plugin": "flaky"}], on_insufficient="fail")
    r = result.report.requests[0]
    assert r.injected == 60 and r.gaps and r.status == "short" and result.report.ok is False
