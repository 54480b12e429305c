"""Durations, timestamps and bar steps, all as integer nanoseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandas as pd
from nautilus_trader.model.data import BarType
from nautilus_trader.model.enums import BarAggregation

_ISO_8601 = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
    r"|^\d{8}(?:T\d{6}(?:\.\d{1,9})?)?(?:Z|[+-]\d{4})?$",
    re.I,
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|min|h|d|w)?\s*$")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
}
_FIXED_STEP_NS = {
    BarAggregation.MILLISECOND: 1_000_000,
    BarAggregation.SECOND: 1_000_000_000,
    BarAggregation.MINUTE: 60_000_000_000,
    BarAggregation.HOUR: 3_600_000_000_000,
    BarAggregation.DAY: 86_400_000_000_000,
    BarAggregation.WEEK: 7 * 86_400_000_000_000,
}
DAY_NS = 86_400_000_000_000
MAX_DURATION_S = 36_500 * 86_400.0
# What NautilusTrader's uint64 nanosecond timestamps (and pandas) can hold.
MIN_TIME_NS = 0
MAX_TIME_NS = int(pd.Timestamp.max.value)


def parse_duration(value: str | int | float) -> float:
    """
    Parse a duration such as ``"60s"``, ``"500ms"``, ``"2m"`` or a bare number of seconds.

    Parameters
    ----------
    value : str | int | float
        The duration.

    Returns
    -------
    float
        The duration in seconds.

    Raises
    ------
    ValueError
        If the value is not a positive duration.

    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"invalid duration, was '{value}' (use a number and a unit: ms, s, m, h, d, w)",
            )
        seconds = float(match.group(1)) * _UNIT_NS[match.group(2) or "s"] / 1e9
    if not seconds > 0:
        raise ValueError(f"duration must be positive, was '{value}'")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration must be at most 36500d (100 years), was '{value}'")
    return seconds


def parse_time(value: str) -> int:
    """
    Parse an ISO 8601 time (UTC when it has no offset) or ``"now"``.

    Parameters
    ----------
    value : str
        The time.

    Returns
    -------
    int
        UNIX nanoseconds.

    Raises
    ------
    ValueError
        If the value cannot be parsed.

    """
    if value.strip().lower() == "now":
        return now_ns()
    if not _ISO_8601.match(value.strip()):
        # pandas would read "02/01/2025" month first without a word: only ISO 8601 is taken.
        raise ValueError(
            f"invalid time, was '{value}' (use ISO 8601, year first, between 1970 and 2262, "
            "e.g. 2024-01-02T15:30:00Z)"
        )
    try:
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            raise ValueError("not a time")
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        ns = int(ts.as_unit("ns").value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(
            f"invalid time, was '{value}' (use ISO 8601 between 1970 and 2262, "
            "e.g. 2024-01-02T15:30:00Z)"
        ) from None
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise ValueError(
            f"time outside what NautilusTrader timestamps hold (1970 to 2262), was '{value}'"
        )
    return ns


def now_ns() -> int:
    """
    Return the current UTC time as UNIX nanoseconds.

    Returns
    -------
    int

    """
    return int(datetime.now(UTC).timestamp() * 1e9)


def format_ns(ts: int | None) -> str | None:
    """
    Format UNIX nanoseconds as an ISO 8601 UTC string.

    Parameters
    ----------
    ts : int | None
        The timestamp.

    Returns
    -------
    str | None

    """
    if ts is None:
        return None
    return pd.Timestamp(ts, unit="ns", tz="UTC").isoformat().replace("+00:00", "Z")


def format_age(seconds: float) -> str:
    """
    Format a duration for people, in its two largest units (``"4d 3h"``, ``"12m 5s"``).

    Parameters
    ----------
    seconds : float
        The duration.

    Returns
    -------
    str

    """
    left = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def bar_step_ns(bar_type: BarType) -> int:
    """
    Return the fixed length of one bar of a time-aggregated bar type.

    Parameters
    ----------
    bar_type : BarType
        The bar type.

    Returns
    -------
    int
        The bar length in nanoseconds.

    Raises
    ------
    ValueError
        If the bar type is not time-aggregated with a fixed step.

    """
    unit = _FIXED_STEP_NS.get(bar_type.spec.aggregation)
    if unit is None:
        raise ValueError(
            f"bar type must be time-aggregated with a fixed step (MILLISECOND to WEEK), "
            f"was '{bar_type}'",
        )
    return unit * bar_type.spec.step


def alignment_step_ns(step_ns: int) -> int | None:
    """
    Return the grid bars of this length start on, or None when there is no fixed grid.

    Weekly bars start on a weekday that differs by venue, so they are not checked.

    Parameters
    ----------
    step_ns : int
        The bar length in nanoseconds.

    Returns
    -------
    int | None

    """
    if step_ns <= DAY_NS and DAY_NS % step_ns == 0:
        return step_ns
    if step_ns < DAY_NS:
        return step_ns
    return None
