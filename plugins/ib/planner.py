"""
Chunk planning for ``reqHistoricalData`` under IB's step-size table.

IB documents two tables. The API guide's older "Valid Duration and Bar Size Settings" lists
combinations as guidelines (and a 2000-bar cap). The TWS API "Historical Data Limitations"
page gives the step sizes TWS enforces (error 321 beyond them); that is the table enforced
here, because it is the one the gateway checks and it allows the longest requests:

    duration   allowed bar sizes        duration   allowed bar sizes
    60 S       1 secs - 1 min           1 D        1 min - 1 day
    120 S      1 secs - 2 mins          2 D        2 mins - 1 day
    1800 S     1 secs - 30 mins         1 W        3 mins - 1 week
    3600 S     5 secs - 1 hour          1 M        30 mins - 1 month
    14400 S    10 secs - 3 hours        1 Y        1 day - 1 month
    28800 S    30 secs - 8 hours

So each bar size has a longest allowed duration L, and a window of length W needs at least
ceil(W / L) requests: the planner issues exactly that many, newest first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

DAY = 86_400
# (duration seconds, smallest bar, largest bar), from the table above; 1 M and 1 Y as
# 30 and 365 days.
STEP_TABLE = (
    (60, 1, 60),
    (120, 1, 120),
    (1800, 1, 1800),
    (3600, 5, 3600),
    (14400, 10, 10800),
    (28800, 30, 28800),
    (DAY, 60, DAY),
    (2 * DAY, 120, DAY),
    (7 * DAY, 180, 7 * DAY),
    (30 * DAY, 1800, 30 * DAY),
    (365 * DAY, DAY, 30 * DAY),
)
BAR_SIZES = {
    1: "1 secs",
    5: "5 secs",
    10: "10 secs",
    15: "15 secs",
    30: "30 secs",
    60: "1 min",
    120: "2 mins",
    180: "3 mins",
    300: "5 mins",
    600: "10 mins",
    900: "15 mins",
    1200: "20 mins",
    1800: "30 mins",
    3600: "1 hour",
    7200: "2 hours",
    10800: "3 hours",
    14400: "4 hours",
    28800: "8 hours",
    DAY: "1 day",
    7 * DAY: "1 week",
}


@dataclass(frozen=True)
class Chunk:
    """
    One ``reqHistoricalData`` call.

    Parameters
    ----------
    end_s : int
        ``endDateTime`` as UNIX seconds.
    seconds : int
        The length the duration string covers.

    """

    end_s: int
    seconds: int

    @property
    def start_s(self) -> int:
        """The start of the covered window (UNIX seconds)."""
        return self.end_s - self.seconds

    @property
    def duration(self) -> str:
        """The ``durationStr``: seconds up to a day, whole days above, ``1 Y`` for a year."""
        if self.seconds <= DAY:
            return f"{self.seconds} S"
        if self.seconds == 365 * DAY:
            return "1 Y"
        return f"{math.ceil(self.seconds / DAY)} D"

    @property
    def end_date_time(self) -> str:
        """``endDateTime`` in IB's UTC form."""
        return datetime.fromtimestamp(self.end_s, UTC).strftime("%Y%m%d-%H:%M:%S")


def bar_size_setting(step_s: int) -> str:
    """
    Return IB's ``barSizeSetting`` for a bar length.

    Parameters
    ----------
    step_s : int
        The bar length in seconds.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If IB has no such bar size.

    """
    try:
        return BAR_SIZES[step_s]
    except KeyError:
        sizes = ", ".join(BAR_SIZES.values())
        raise ValueError(f"IB has no {step_s}-second bars (bar sizes: {sizes})") from None


def max_duration_s(step_s: int) -> int:
    """
    Return the longest duration IB's step-size table allows for a bar length, in whole bars.

    Parameters
    ----------
    step_s : int
        The bar length in seconds.

    Returns
    -------
    int

    """
    longest = max(d for d, lo, hi in STEP_TABLE if lo <= step_s <= hi)
    if step_s > DAY:
        # Whole bars (weeks: 1 Y is 52 weeks and a day), so consecutive requests meet on a
        # bar's edge and no bar straddles two of them (it would be lost from both).
        longest = longest // step_s * step_s
    return longest


def allowed(seconds: int, step_s: int) -> bool:
    """
    Return whether a duration of `seconds` is allowed for bars of `step_s`.

    Parameters
    ----------
    seconds : int
        The requested duration.
    step_s : int
        The bar length.

    Returns
    -------
    bool

    """
    return any(seconds <= d and lo <= step_s <= hi for d, lo, hi in STEP_TABLE)


def plan(start_s: int, end_s: int, step_s: int) -> list[Chunk]:
    """
    Cover ``[start_s, end_s)`` with the fewest requests IB allows, newest first.

    `iter_plan` gives the same chunks one at a time, for windows too long to list.

    Parameters
    ----------
    start_s : int
        The window start (UNIX seconds).
    end_s : int
        The window end (UNIX seconds).
    step_s : int
        The bar length in seconds.

    Returns
    -------
    list[Chunk]

    """
    return list(iter_plan(start_s, end_s, step_s))


def iter_plan(start_s: int, end_s: int, step_s: int) -> Iterator[Chunk]:
    """
    Yield the chunks of `plan`, newest first, without holding them all.

    Parameters
    ----------
    start_s : int
        The window start (UNIX seconds).
    end_s : int
        The window end (UNIX seconds).
    step_s : int
        The bar length in seconds.

    Yields
    ------
    Chunk

    """
    longest = max_duration_s(step_s)
    end = end_s
    while end > start_s:
        seconds = min(longest, end - start_s)
        seconds = max(seconds, min(step_s, longest))
        if seconds > DAY and seconds % DAY:
            seconds = min(longest, math.ceil(seconds / DAY) * DAY)
        yield Chunk(end, seconds)
        end -= seconds


def request_count(seconds: int, step_s: int) -> int:
    """
    Return how many requests `plan` makes for a window, without building them.

    Parameters
    ----------
    seconds : int
        The window length.
    step_s : int
        The bar length.

    Returns
    -------
    int

    """
    if seconds <= 0:
        return 0
    return -(-seconds // max_duration_s(step_s))


def least_pacing_s(requests: int, step_s: int, cost: int = 1, contracts: int = 1) -> float:
    """
    Return the least time IB's pacing rules allow for sending `requests` historical requests.

    For bars of 30 s or less: at most 60 requests (BID_ASK counting twice) in any 10 minutes,
    and fewer than 6 for one contract and tick type in 2 s. Larger bars have no time rule.
    Answer latency comes on top.

    Parameters
    ----------
    requests : int
        The number of requests.
    step_s : int
        The bar length.
    cost : int, default 1
        2 for BID_ASK.
    contracts : int, default 1
        Contracts the requests spread over (the 2-second rule is per contract).

    Returns
    -------
    float
        Seconds.

    """
    from nautilus_backfill.plugins.ib.pacing import (
        BURST_MAX,
        BURST_S,
        SMALL_BAR_S,
        WINDOW_MAX,
        WINDOW_S,
    )

    if requests <= 0 or step_s > SMALL_BAR_S:
        return 0.0
    window = (-(-(requests * cost) // WINDOW_MAX) - 1) * WINDOW_S
    per_contract = -(-requests // max(1, contracts))
    burst = (-(-per_contract // BURST_MAX) - 1) * BURST_S
    return float(max(window, burst))


def format_span(seconds: float) -> str:
    """
    Return a length of time as people say it: ``1 year``, ``3 days``, ``2 h 5 min``, ``40 s``.

    Parameters
    ----------
    seconds : float
        The length.

    Returns
    -------
    str

    """
    s = round(seconds)
    if s >= 2 * 365 * DAY and s % (365 * DAY):
        return f"{s / (365 * DAY):,.0f} years"
    if s >= 365 * DAY and s % (365 * DAY) == 0:
        n = s // (365 * DAY)
        return f"{n} year" + ("s" if n > 1 else "")
    if s >= 2 * DAY:
        days, rest = divmod(s, DAY)
        return f"{days:,} days" + (f" {rest // 3600} h" if rest >= 3600 else "")
    if s >= 3600:
        hours, rest = divmod(s, 3600)
        return f"{hours} h" + (f" {rest // 60} min" if rest >= 60 else "")
    if s >= 60:
        minutes, rest = divmod(s, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    return f"{s} s"


def format_step(step_s: int) -> str:
    """
    Return a bar length as ``5-second``, ``1-minute``, ``1-day``.

    Parameters
    ----------
    step_s : int
        The bar length.

    Returns
    -------
    str

    """
    for unit, name in ((7 * DAY, "week"), (DAY, "day"), (3600, "hour"), (60, "minute")):
        if step_s % unit == 0:
            return f"{step_s // unit}-{name}"
    return f"{step_s}-second"


@dataclass(frozen=True)
class Estimate:
    """
    What IB would be asked for one window, worked out without connecting.

    Parameters
    ----------
    seconds : int
        The window length (count mode: the count times the bar length, the least it takes).
    step_s : int
        The bar length.
    requests : int
        ``reqHistoricalData`` calls.
    duration : str
        The ``durationStr`` of the longest of them.
    bar_size : str
        The ``barSizeSetting``.
    least_s : float
        The least time IB's pacing allows for them.

    """

    seconds: int
    step_s: int
    requests: int
    duration: str
    bar_size: str
    least_s: float

    def describe(self, what: str, subject: str, count: int | None = None) -> str:
        """
        Return the estimate as one line.

        Parameters
        ----------
        what : str
            The ``whatToShow``.
        subject : str
            The symbol, for the sentence.
        count : int, optional
            The bar count of a count-mode request.

        Returns
        -------
        str

        """
        from nautilus_backfill.plugins.ib.pacing import SMALL_BAR_S

        pacing = (
            f"at least {format_span(self.least_s)} under IB's pacing"
            if self.step_s <= SMALL_BAR_S
            else "no pacing wait (bars over 30 s)"
        )
        n = self.requests
        head = f"{format_span(self.seconds)} of {format_step(self.step_s)} {subject} bars"
        if count is not None:
            head = (
                f"{count:,} {format_step(self.step_s)} {subject} bars "
                f"({format_span(self.seconds)} back to back)"
            )
        at_least = "at least " if count is not None else ""
        return (
            f"{head}: {at_least}{n:,} request{'s' if n != 1 else ''} of up to {self.duration} "
            f"({self.bar_size}, {what}), {pacing}"
        )


def estimate(seconds: int, step_s: int, cost: int = 1) -> Estimate:
    """
    Return the requests and the least pacing time for a window, without building chunks.

    Parameters
    ----------
    seconds : int
        The window length.
    step_s : int
        The bar length.
    cost : int, default 1
        2 for BID_ASK.

    Returns
    -------
    Estimate

    Raises
    ------
    ValueError
        If IB has no such bar size.

    """
    bar_size = bar_size_setting(step_s)
    n = request_count(seconds, step_s)
    longest = Chunk(0, min(max_duration_s(step_s), max(seconds, step_s)))
    return Estimate(seconds, step_s, n, longest.duration, bar_size, least_pacing_s(n, step_s, cost))
