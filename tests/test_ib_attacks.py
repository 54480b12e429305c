"""Hostile gateways: repeated bars, failures mid-download, a closed socket, unreadable frames."""

from __future__ import annotations

import re
import threading
import time

import pytest
from ibsim import source_config
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_trader.model.data import BarType

AAPL = "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"
END = "2021-01-05T21:00:00Z"  # 16:00 New York, the close of the recorded AAPL session


@pytest.fixture(autouse=True)
def pacing_state(tmp_path, monkeypatch):
    # The pacing history of these runs must not reach the user's own state folder.
    monkeypatch.setenv("NAUTILUS_BACKFILL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _fetch(registry, requests, sources, **kw):
    cfg = config_from_dict(
        {"backfill": {"requests": requests, "sources": sources, **kw}}, registry=registry
    )
    started = time.monotonic()
    result = Backfill(cfg, registry=registry).fetch()
    for r in result.report.requests:
        assert r.accounted(), r.to_dict()
    return result, time.monotonic() - started


def _five_second(symbol="AAPL", hours=5):
    # `hours` requests of 3600 S, IB's longest for 5-second bars, on a day with bars every hour.
    return {
        "bar_type": f"{symbol}.NASDAQ-5-SECOND-LAST-EXTERNAL",
        "start": "2024-03-04T00:00:00Z",
        "end": f"2024-03-04T{hours:02d}:00:00Z",
    }


def test_bars_a_gateway_repeats_with_the_same_values_are_counted_as_duplicates(registry, simulator):
    sim = simulator(repeat="identical")
    result, _ = _fetch(registry, [{"bar_type": AAPL, "bars": 100, "end": END}], [source_config(sim)])
    report = result.report.requests[0]
    # 100 bars, every 10th sent twice: all 110 rows reach the report, 10 counted as duplicates.
    assert sim.bars_sent == 110
    assert report.sources[0].received == 110 and report.dropped == {"duplicate": 10}, report.to_dict()
    assert report.injected == 100 and report.status == "ok"
    assert any("10 bars twice with the same values" in n for n in report.sources[0].notes)


def test_bars_a_gateway_repeats_with_other_values_are_refused_and_asked_of_the_next_source(
    registry, simulator
):
    torn = simulator(repeat="conflicting")  # every 10th bar again, its close a cent higher
    result, _ = _fetch(registry, [{"bar_type": AAPL, "bars": 100, "end": END}], [source_config(torn)])
    report = result.report.requests[0]
    ib = report.sources[0]
    # Which of the two is right is unknown: neither row is used, and nothing fills the ten.
    assert ib.received == 110 and report.dropped == {"ambiguous": 20}, report.to_dict()
    assert ib.used == 90 and report.injected == 90 and report.status == "short"
    assert any("10 bars twice with other values" in n and "ambiguous" in n for n in ib.notes)
    assert any(e.startswith("ib: ambiguous: ") for e in report.examples), report.examples

    good = simulator()
    sources = [source_config(torn), source_config(good, name="backup", client_id=2)]
    result, _ = _fetch(registry, [{"bar_type": AAPL, "bars": 100, "end": END}], sources)
    report = result.report.requests[0]
    first, backup = report.sources
    assert first.used == 90 and report.dropped["ambiguous"] == 20, report.to_dict()
    # The backup is asked for the nine refused minutes inside the window, one request each,
    # and, as the window then held 90 bars, for 10 before its first sure bar (of which the
    # refused 14:20 is used, the older 9 are outside the 100 wanted).
    assert sorted(r.duration for r in good.requests) == ["60 S"] * 9 + ["600 S"]
    assert backup.used == 10 and report.dropped == {"ambiguous": 20, "outside_window": 9}
    assert report.injected == 100 and report.status == "ok"
    bars = result.bars[BarType.from_str(AAPL)]
    assert str(bars[0].close) == "221.81", bars[0]  # 14:20 New York, as recorded


def test_a_bar_with_an_unreadable_date_is_dropped_alone_and_the_download_goes_on(
    registry, simulator
):
    # Every answer's first bar is dated "<epoch>.5": no bar opens there. Each such row is
    # dropped as bad_timestamp; the rest of every answer, and every later request, is used.
    sim = simulator(bad_date=True)
    request = {"bar_type": "AAPL.NASDAQ-1-HOUR-LAST-EXTERNAL", "start": "2023-01-02T00:00:00Z",
               "end": "2024-03-01T00:00:00Z"}
    result, _ = _fetch(registry, [request], [source_config(sim, use_rth=False, timeout="20s")],
                       deadline="30s")
    report = result.report.requests[0]
    ib = report.sources[0]
    assert len(sim.requests) >= 2 and ib.status == "ok", report.to_dict()
    assert report.dropped["bad_timestamp"] == len(sim.requests)
    assert ib.received == sim.bars_sent and ib.used == sim.bars_sent - len(sim.requests)
    assert report.injected == ib.used


@pytest.mark.parametrize(
    ("fail_with", "status"), [("stall", "timeout"), ("pacing", "pacing"), ("close", "disconnected")]
)
def test_bars_that_arrived_before_a_failure_mid_download_are_kept(
    registry, simulator, fail_with, status
):
    sim = simulator(fail_after=2, fail_with=fail_with, time_scale=0.01)
    result, elapsed = _fetch(
        registry, [_five_second()], [source_config(sim, use_rth=False, pacing_scale=0.01)], deadline="6s"
    )
    report = result.report.requests[0]
    ib = report.sources[0]
    assert ib.status == status, ib.to_dict()
    # Two answered requests of an hour of 5-second bars each: 1,440 bars, all counted and used.
    assert sim.bars_sent == 1440
    assert ib.received == 1440 and ib.used == 1440 and report.injected == 1440, report.to_dict()
    assert elapsed < 5.0


def test_a_socket_closed_during_contract_lookup_is_disconnected(registry, simulator):
    sim = simulator(close_on_contract=True)
    result, _ = _fetch(
        registry,
        [{"bar_type": AAPL, "bars": 10, "end": END, "price_precision": 2, "size_precision": 0}],
        [source_config(sim)],
    )
    ib = result.report.requests[0].sources[0]
    assert ib.status == "disconnected", ib.to_dict()
    assert "closed the connection" in ib.error


def test_an_unreadable_frame_is_the_attempts_error_not_a_thread_traceback(
    registry, simulator, monkeypatch
):
    crashed = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args))
    sim = simulator(bad_frame=True)
    result, _ = _fetch(
        registry,
        [{"bar_type": AAPL, "bars": 10, "end": END, "price_precision": 2, "size_precision": 0}],
        [source_config(sim)],
    )
    ib = result.report.requests[0].sources[0]
    assert crashed == []
    assert ib.status == "bad_message", ib.to_dict()
    assert "could not read a message" in ib.error and "1.2.3" in ib.error


def test_two_starts_in_a_row_keep_to_60_requests_per_10_minutes(registry, simulator, pacing_state):
    scale = 0.005  # 10 minutes become 3 s
    sim = simulator(time_scale=scale)
    for _ in range(2):
        # 40 requests of an hour of 5-second bars: 80 in all, more than one window allows.
        requests = [
            _five_second(symbol, hours=8) for symbol in ("AAPL", "MSFT", "AMZN", "GOOG", "META")
        ]
        result, _ = _fetch(
            registry,
            requests,
            [source_config(sim, use_rth=False, pacing_scale=scale, timeout="20s")],
            deadline="30s",
        )
        assert all(r.injected == 8 * 720 for r in result.report.requests)
    assert len(sim.requests) == 80
    assert sim.violations == []
    assert list(pacing_state.glob("ib-pacing-*.json")), "the history was not kept"


def test_two_processes_at_once_share_one_pacing_history(registry, simulator, pacing_state):
    scale = 0.005
    sim = simulator(time_scale=scale)
    results = []

    def start(symbols):
        requests = [_five_second(symbol, hours=8) for symbol in symbols]
        results.append(
            _fetch(
                registry,
                requests,
                [source_config(sim, use_rth=False, pacing_scale=scale, timeout="20s")],
                deadline="30s",
            )[0]
        )

    # Two backfills with their own connections and limiters: only the state file links them.
    threads = [
        threading.Thread(target=start, args=(s,))
        for s in (("AAPL", "MSFT", "AMZN", "GOOG", "META"), ("NVDA", "TSLA", "NFLX", "INTC", "AMD"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sim.requests) == 80 and sim.violations == []
    assert all(r.injected == 8 * 720 for res in results for r in res.report.requests)


def test_a_stalled_download_returns_what_came_before_the_spans_deadline(simulator):
    from pathlib import Path

    from nautilus_backfill.config import BarRequestConfig
    from nautilus_backfill.orchestrator import build_request
    from nautilus_backfill.plugins.ib import IBBarSource, IBSourceConfig
    from nautilus_backfill.source import SourceContext, Span

    sim = simulator(fail_after=2, fail_with="stall")
    source = IBBarSource(
        IBSourceConfig(name="ib", plugin="ib", port=sim.port, use_rth=False, timeout="60s"),
        SourceContext(Path(".")),
    )
    request = build_request(BarRequestConfig(**_five_second()), 0)
    started = time.monotonic()
    try:
        # The source's own timeout is a minute; the span's deadline, 1.5 s away, comes first.
        result = source.fetch(
            request, Span(request.start_ns, request.end_ns, deadline=started + 1.5)
        )
    finally:
        source.close()
    elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 1.5, elapsed
    assert result.table.num_rows == 1440 == sim.bars_sent
    assert result.failure is not None and result.failure.status == "timeout"
    assert "did not answer 3 of 5 requests" in str(result.failure)


def test_a_billion_bars_are_refused_at_once_without_asking_ib(registry, simulator):
    sim = simulator()
    request = {
        "bar_type": "AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL",
        "bars": 1_000_000_000,
        "price_precision": 2,
        "size_precision": 0,
    }
    result, elapsed = _fetch(registry, [request], [source_config(sim)])
    ib = result.report.requests[0].sources[0]
    assert elapsed < 1.0 and sim.requests == []
    assert ib.status == "config" and "reaches back before 1970" in ib.error
    assert "1,388,889 requests" in ib.error


def test_a_year_of_5_second_bars_keeps_the_newest_pacing_lets_through(registry, simulator):
    scale = 0.01  # 10 minutes become 6 s, more than the 5 s timeout
    sim = simulator(time_scale=scale)
    year = {
        "bar_type": "AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL",
        "start": "2023-03-04T00:00:00Z",
        "end": "2024-03-04T00:00:00Z",
    }
    result, elapsed = _fetch(
        registry, [year], [source_config(sim, use_rth=False, pacing_scale=scale, timeout="5s")]
    )
    ib = result.report.requests[0].sources[0]
    # The 5-per-2-seconds rule (with its quarter-second margin) spaces the 60 over ~3 s.
    assert elapsed < 4.5 and sim.violations == []
    # 60 requests in the first window, the newest hours; all their bars kept and counted.
    assert len(sim.requests) == 60 and ib.received == sim.bars_sent == 60 * 720
    assert ib.status == "pacing" and ib.used == 60 * 720
    assert "8,784 requests of up to 3600 S (5 secs, TRADES), at least 24 h 20 min" in ib.error
    assert "60 sent in this run" in ib.error


def test_a_gateway_that_never_answers_the_handshake_prints_nothing_but_the_report(
    simulator, tmp_path
):
    import subprocess
    import sys

    sim = simulator(silent=True)
    config = tmp_path / "ib.toml"
    config.write_text(
        '[[backfill.requests]]\nbar_type = "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"\nbars = 10\n'
        f'[[backfill.sources]]\nname = "ib"\nplugin = "ib"\nport = {sim.port}\nconnect_timeout = "1s"\n'
    )
    cli = [sys.executable, "-m", "nautilus_backfill.cli", "fetch", str(config)]
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert "no answer to the API handshake within 1s" in proc.stdout
    assert proc.stderr == ""  # ibapi's "Disconnected; resetting connection" stays in its logger


def test_each_whole_chunk_is_handed_over_as_it_is_collected(simulator):
    from pathlib import Path

    from nautilus_backfill.config import BarRequestConfig
    from nautilus_backfill.orchestrator import build_request
    from nautilus_backfill.plugins.ib import IBBarSource, IBSourceConfig
    from nautilus_backfill.source import SourceContext, Span

    sim = simulator(fail_after=2, fail_with="stall")
    config = IBSourceConfig(name="ib", plugin="ib", port=sim.port, use_rth=False, timeout="60s")
    source = IBBarSource(config, SourceContext(Path(".")))
    request = build_request(BarRequestConfig(**_five_second()), 0)
    pieces = []
    started = time.monotonic()
    span = Span(
        request.start_ns,
        request.end_ns,
        deadline=started + 1.5,
        partial=lambda result, start, end: pieces.append((result.table.num_rows, start, end)),
    )
    try:
        result = source.fetch(request, span)
    finally:
        source.close()
    hour = 3600 * 10**9
    # The two answered hours went to the host before the call ended, each with its window;
    # the final answer holds no row twice and says what is missing.
    assert pieces == [
        (720, request.end_ns - hour, request.end_ns),
        (720, request.end_ns - 2 * hour, request.end_ns - hour),
    ]
    assert result.table.num_rows == 0 and sim.bars_sent == 1440
    assert result.failure is not None and "did not answer 3 of 5 requests" in str(result.failure)


def test_two_real_processes_at_once_share_one_pacing_history(simulator, pacing_state, tmp_path):
    import os
    import subprocess
    import sys

    scale = 0.005
    sim = simulator(time_scale=scale)
    procs = []
    for i, symbols in enumerate(
        (("AAPL", "MSFT", "AMZN", "GOOG", "META"), ("NVDA", "TSLA", "NFLX", "INTC", "AMD"))
    ):
        lines = ['[backfill]\ndeadline = "40s"\n']
        for s in symbols:
            r = _five_second(s, hours=8)
            lines.append(
                f'[[backfill.requests]]\nbar_type = "{r["bar_type"]}"\nstart = "{r["start"]}"\nend = "{r["end"]}"\n'
            )
        lines.append(
            f'[[backfill.sources]]\nname = "ib"\nplugin = "ib"\nport = {sim.port}\nclient_id = {901 + 10 * i}\n'
            f'use_rth = false\npacing_scale = {scale}\ntimeout = "30s"\n'
        )
        config = tmp_path / f"p{i}.toml"
        config.write_text("\n".join(lines))
        env = {**os.environ, "NAUTILUS_BACKFILL_STATE_DIR": str(pacing_state)}
        cli = [sys.executable, "-m", "nautilus_backfill.cli", "fetch", "--json", str(config)]
        procs.append(
            subprocess.Popen(
                cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert len(sim.requests) == 80 and {r.client_id for r in sim.requests} == {901, 911}
    assert sim.violations == []


def test_answers_are_handed_over_while_later_requests_still_wait_for_pacing(simulator, tmp_path):
    # 70 requests of 5-second bars: 60 go out, the other 10 wait for IB's 10-minute window
    # (scaled to 3 s). The 60 answered ones must reach the host before that wait ends, or a
    # kill during hours of pacing would lose them all.
    from pathlib import Path

    from nautilus_backfill.config import BarRequestConfig
    from nautilus_backfill.orchestrator import build_request
    from nautilus_backfill.plugins.ib import IBBarSource, IBSourceConfig
    from nautilus_backfill.source import SourceContext, Span

    scale = 3 / 600
    sim = simulator(time_scale=scale)
    config = IBSourceConfig(name="ib", plugin="ib", port=sim.port, use_rth=False, timeout="60s",
                            pacing_scale=scale, pacing_state=str(tmp_path / "pacing"))
    source = IBBarSource(config, SourceContext(Path(".")))
    request = build_request(BarRequestConfig(bar_type="AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL",
                                             start="2024-03-01T00:00:00Z", end="2024-03-03T22:00:00Z"), 0)
    started = time.monotonic()
    pieces = []
    span = Span(request.start_ns, request.end_ns, deadline=started + 30,
                partial=lambda result, start, end: pieces.append(time.monotonic() - started))
    try:
        source.fetch(request, span)
    finally:
        source.close()
    assert len(sim.requests) == 70
    last_sent = max(r.received for r in sim.requests) - started
    assert last_sent > 2.5  # the pacing wait happened
    early = [t for t in pieces if t < last_sent]
    assert len(early) >= 50, (len(early), last_sent)


def test_a_host_that_does_not_resolve_is_named_as_such_not_as_a_refused_connection(registry):
    source = {"name": "ib", "plugin": "ib", "host": "tws.invalid", "port": 7497, "timeout": "3s"}
    result, elapsed = _fetch(registry, [{"bar_type": AAPL, "bars": 10, "end": END}], [source])
    ib = result.report.requests[0].sources[0]
    assert ib.status == "refused" and elapsed < 3
    assert "cannot resolve the host 'tws.invalid'" in ib.error and "check `host`" in ib.error


def test_a_handshake_cut_short_by_the_deadline_says_so(registry, simulator):
    sim = simulator(silent=True)
    source = source_config(sim, connect_timeout="5s", timeout="1.5s")
    result, _ = _fetch(registry, [{"bar_type": AAPL, "bars": 10, "end": END}], [source])
    ib = result.report.requests[0].sources[0]
    assert ib.status == "timeout", ib
    assert re.search(r"no answer to the API handshake within 1\.\ds \(", ib.error), ib.error
    assert "left no more of connect_timeout = 5s" in ib.error


@pytest.mark.parametrize(("step", "end"), [("1-DAY", "2024-03-05T15:00:00Z"), ("1-WEEK", "2024-03-06T12:00:00Z")])
def test_daily_and_weekly_windows_ending_mid_bar_lose_no_bar_between_requests(
    registry, simulator, step, end
):
    # The window spans several yearly requests; each must end on a bar edge, or the bar
    # straddling two requests is outside both and lost (one a year, [OK] all the same).
    from datetime import datetime, timedelta

    sim = simulator()
    start = "2020-01-06T00:00:00Z"
    request = {"bar_type": f"AAPL.NASDAQ-{step}-LAST-EXTERNAL", "start": start, "end": end}
    result, _ = _fetch(registry, [request], [source_config(sim, timeout="10s")])
    report = result.report.requests[0]
    days = 7 if step == "1-WEEK" else 1
    first = datetime.fromisoformat(start)
    last_close = datetime.fromisoformat(end).replace(hour=0, minute=0)
    if days == 7:
        last_close -= timedelta(days=last_close.weekday())  # weeks run Monday to Monday
    expected = (last_close - first).days // days
    assert len(sim.requests) >= 4 and report.status == "ok", report.to_dict()
    assert report.injected == expected and report.gaps == [] and not report.dropped
