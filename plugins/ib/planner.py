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
    Return the longest duration IB's step-size table allows for a bar length.

    Parameters
    ----------
    step_s : int
        The bar length in seconds.

    Returns
    -------
    int

    """
    return max(d for d, lo, hi in STEP_TABLE if lo <= step_s <= hi)


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
    longest = max_duration_s(step_s)
    chunks = []
    end = end_s
    while end > start_s:
        seconds = min(longest, end - start_s)
        seconds = max(seconds, min(step_s, longest))
        if seconds > DAY and seconds % DAY:
            seconds = min(longest, math.ceil(seconds / DAY) * DAY)
        chunks.append(Chunk(end, seconds))
        end -= seconds
    return chunks
