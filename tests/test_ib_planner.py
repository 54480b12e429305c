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
        1800, 3600, 14400, 28800, DAY, 2 * DAY, 7 * DAY, 30 * DAY, 30 * DAY, 365 * DAY]
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
