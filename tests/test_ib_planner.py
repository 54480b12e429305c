"""The chunk planner: the fewest requests IB's step-size table allows, and the pacing limiter."""

from __future__ import annotations

import itertools
import math

import pytest
from nautilus_backfill.errors import SourceError
from nautilus_backfill.plugins.ib.pacing import PacingLimiter
from nautilus_backfill.plugins.ib.planner import BAR_SIZES, DAY, allowed, max_duration_s, plan

END = 1_735_689_600  # 2025-01-01T00:00:00Z
WINDOWS_IN_BARS = [1, 2, 59, 60, 61, 500, 1439, 1440, 1441, 10_000]


@pytest.mark.parametrize("step", sorted(BAR_SIZES))
@pytest.mark.parametrize("window", [*WINDOWS_IN_BARS, "day", "week", "month", "year"])
def test_request_count_is_the_lower_bound(step, window):
    seconds = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY, "year": 365 * DAY}.get(window)
    seconds = seconds if seconds is not None else window * step
    if seconds < step:
        pytest.skip("shorter than one bar")
    chunks = plan(END - seconds, END, step)
    longest = max_duration_s(step)
    assert len(chunks) == math.ceil(seconds / longest)
    # Contiguous, newest first, every chunk legal and together covering the window.
    assert chunks[0].end_s == END
    for newer, older in itertools.pairwise(chunks):
        assert older.end_s == newer.start_s
    assert chunks[-1].start_s <= END - seconds
    for c in chunks:
        assert allowed(c.seconds, step), (c.duration, step)
        assert c.duration.endswith((" S", " D", " Y"))


def test_the_table_enforced():
    assert [max_duration_s(s) for s in (1, 5, 10, 30, 60, 120, 180, 1800, 3600, DAY)] == [
        1800,
        3600,
        14400,
        28800,
        DAY,
        2 * DAY,
        7 * DAY,
        30 * DAY,
        30 * DAY,
        365 * DAY,
    ]
    assert not allowed(3601, 5) and allowed(3600, 5)


def _limiter():
    t = [0.0]
    limiter = PacingLimiter(scale=1.0, clock=lambda: t[0])
    limiter._lock.wait = lambda s: t.__setitem__(0, t[0] + s)  # a clock that moves as it waits
    return limiter, t


def _send(limiter, ident, key="AAPL", step=5, deadline=1e9):
    limiter.acquire(ident, key, step, 1, deadline)
    limiter.release()


def test_pacing_limiter_keeps_ibs_rules():
    limiter, t = _limiter()
    _send(limiter, "same")
    _send(limiter, "same")
    assert t[0] >= 15.0  # no identical request within 15 s

    limiter, t = _limiter()
    for i in range(5):
        _send(limiter, i)
    assert t[0] == 0.0  # five for one contract may go at once
    _send(limiter, 5)
    assert t[0] >= 2.0  # the sixth waits for the 2 s window
    _send(limiter, 6, key="MSFT")  # another contract is not held up by AAPL's burst

    limiter, t = _limiter()
    for i in range(60):
        _send(limiter, i, key=i)
    assert t[0] == 0.0
    _send(limiter, 60, key=60)
    assert t[0] >= 600.0  # the 61st waits for the 10-minute window
    with pytest.raises(SourceError, match="after the deadline"):
        _send(limiter, "x", deadline=t[0] + 1) or _send(limiter, "x", deadline=t[0] + 1)


def test_pacing_rules_do_not_apply_to_one_minute_bars():
    limiter, t = _limiter()
    for _ in range(100):
        _send(limiter, "same", step=60)
    assert t[0] == 0.0


# -- estimates, offline checks and the plan ---------------------------------------------------

from pathlib import Path  # noqa: E402

from nautilus_backfill.config import BarRequestConfig  # noqa: E402
from nautilus_backfill.orchestrator import build_request  # noqa: E402
from nautilus_backfill.plugins.ib.planner import least_pacing_s, request_count  # noqa: E402


def _source(**kw):
    pytest.importorskip("ibapi")
    from nautilus_backfill.plugins.ib import IBBarSource, IBSourceConfig
    from nautilus_backfill.source import SourceContext

    return IBBarSource(IBSourceConfig(name="ib", plugin="ib", **kw), SourceContext(Path(".")))


def _request(index=0, **kw):
    return build_request(BarRequestConfig(**kw), index)


@pytest.mark.parametrize("n", [1, 5, 6, 30, 60, 61, 130])
def test_least_pacing_time_is_what_the_limiter_really_takes(n):
    # The estimate is a lower bound the limiter meets within its safety margins.
    limiter, t = _limiter()
    for i in range(n):
        _send(limiter, i)
    least = least_pacing_s(n, 5)
    assert least <= t[0] <= least * 1.06 + 0.25 * math.ceil(n / 5)
    assert least_pacing_s(n, 60) == 0.0  # no time rule above 30-second bars


def test_request_count_matches_the_plan_without_building_it():
    for step in (1, 5, 60, 3600, DAY):
        for seconds in (step, 7 * DAY, 365 * DAY):
            assert request_count(seconds, step) == len(plan(END - seconds, END, step))


def test_check_reports_each_bad_key_offline():
    problems = _source(port=-1, host="", client_id=2**31 - 2).check([])
    assert "port: must be 1..65535, was -1" in problems
    assert "host: must be a host name or address, was ''" in problems
    assert any(p.startswith("client_id: ids 2147483646..2147483650") for p in problems)
    assert len(problems) == 3
    assert _source().check([]) == []


def test_check_refuses_a_billion_bars_at_once_without_planning_them():
    import time
    import tracemalloc

    source = _source()
    requests = [
        _request(0, bar_type="AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL", bars=1_000_000_000),
        _request(
            1,
            bar_type="AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL",
            start="2025-01-01T00:00:00Z",
            end="2026-01-01T00:00:00Z",
        ),
        _request(2, bar_type="EUR/USD.IDEALPRO-1-MINUTE-LAST-EXTERNAL", bars=500),
        _request(3, bar_type="AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL", bars=500),
    ]
    tracemalloc.start()
    started = time.perf_counter()
    problems = source.check(requests)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.05 and peak < 1_000_000, (elapsed, peak)
    assert len(problems) == 3, problems
    billion, year, forex = problems
    assert billion.startswith(
        "plugin: backfill.requests[0] (AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL): "
        "the window reaches back before 1970"
    )
    assert "1,388,889 requests" in billion
    assert year.startswith("timeout: backfill.requests[1]")
    assert "8,760 requests of up to 3600 S (5 secs, TRADES), at least 24 h 10 min" in year
    assert forex.startswith("what_to_show: backfill.requests[2]") and "-MID-" in forex


def test_plan_says_the_requests_and_the_least_time_without_connecting():
    source = _source(port=1)  # nothing listens there: plan never connects
    year = _request(
        bar_type="AAPL.NASDAQ-5-SECOND-LAST-EXTERNAL",
        start="2025-01-01T00:00:00Z",
        end="2026-01-01T00:00:00Z",
    )
    lines = source.plan(year)
    assert lines[0] == (
        "1 year of 5-second AAPL bars: 8,760 requests of up to 3600 S "
        "(5 secs, TRADES), at least 24 h 10 min under IB's pacing"
    )
    assert "endDateTime 20260101-00:00:00 UTC, durationStr 3600 S" in lines[1]
    bid_ask = _source(port=1, what_to_show="BID_ASK")
    count = bid_ask.plan(_request(bar_type="EUR/USD.IDEALPRO-5-SECOND-MID-EXTERNAL", bars=100_000))
    # BID_ASK counts twice: 139 requests weigh 278 against 60 per 10 minutes.
    assert count[0] == (
        "100,000 5-second EUR/USD bars (5 days 18 h back to back): at least "
        "139 requests of up to 3600 S (5 secs, BID_ASK), at least 40 min under "
        "IB's pacing"
    )
    assert source.limiter.sent == 0 and source._conn is None


def _free_the_slot_to(limiter, first, second):
    # `first` then `second` wait for the limiter's one slot (first in line); then it is freed.
    import threading
    import time

    b = threading.Thread(target=first)
    b.start()
    time.sleep(0.2)
    c = threading.Thread(target=second)
    c.start()
    time.sleep(0.2)
    freed = time.monotonic()
    limiter.release()
    b.join(6)
    c.join(6)
    return freed


def test_a_free_slot_goes_to_a_request_that_may_be_sent_when_the_first_waiter_may_not():
    # One slot. B waits for it with a request IB's 15 s identical-request rule holds back;
    # C waits behind B with one that may go. Freeing the slot wakes one waiter: B must hand
    # it on, or C would sit until its deadline with the slot free.
    import time

    limiter = PacingLimiter(scale=1.0, max_open=1)
    limiter.acquire("x", "K", 5, 1, time.monotonic() + 5)
    limiter.release()  # "x" was just sent: the same request waits 15 s
    limiter.acquire("hold", "K2", 60, 1, time.monotonic() + 5)
    outcome = {}

    def ask(name, ident, key, step, wait_s):
        try:
            limiter.acquire(ident, key, step, 1, time.monotonic() + wait_s)
            outcome[name] = ("sent", time.monotonic())
        except SourceError as e:
            outcome[name] = (e.status, time.monotonic())

    freed = _free_the_slot_to(limiter, lambda: ask("B", "x", "K", 5, 5.0), lambda: ask("C", "y", "K3", 60, 5.0))
    assert outcome["B"][0] == "pacing"  # 15 s would pass its deadline: told at once
    assert outcome["C"][0] == "sent" and outcome["C"][1] - freed < 2.0


def test_a_waiter_that_fails_hands_the_free_slot_on(monkeypatch):
    # B (5-second bars) is woken first but its pacing check fails with an error of its own;
    # C (hourly bars, no pacing) must get the slot then, not at its deadline.
    import time

    limiter = PacingLimiter(scale=1.0, max_open=1)
    limiter.acquire("hold", "K", 3600, 1, time.monotonic() + 5)

    def broken(*args):
        raise TypeError("a damaged pacing entry")

    monkeypatch.setattr(limiter, "_small_bar_wait", broken)
    outcome = {}

    def ask(name, step):
        try:
            limiter.acquire(name, name, step, 1, time.monotonic() + 4)
            outcome[name] = ("sent", time.monotonic())
        except Exception as e:
            outcome[name] = (type(e).__name__, time.monotonic())

    freed = _free_the_slot_to(limiter, lambda: ask("B", 5), lambda: ask("C", 3600))
    assert outcome["B"][0] == "TypeError"
    assert outcome["C"][0] == "sent" and outcome["C"][1] - freed < 2.0


def test_pacing_history_entries_of_another_shape_are_skipped(tmp_path):
    import json
    import time

    from nautilus_backfill.plugins.ib.pacing import PacingHistory

    path = tmp_path / "ib-pacing.json"
    now = time.time()
    path.write_text(json.dumps([["not-a-time", "i", "k", 1], [now, "i", "k", "1"], [True, "i", "k", 1],
                                [now, ["AAPL", "x"], ["AAPL"], 1]]))
    limiter = PacingLimiter(scale=1.0)
    limiter.history = PacingHistory(path)
    limiter.acquire("new", "K", 5, 1, time.monotonic() + 5)  # no TypeError from the bad ones
    limiter.release()
    entries = json.loads(path.read_text())
    assert [e[3] for e in entries] == [1, 1] and entries[0][0] == now
