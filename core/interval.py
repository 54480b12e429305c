"""Whether an answer's rows have the bar type's interval: 5-minute rows are no 1-minute bars."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from nautilus_backfill.bararrays import column_i64
from nautilus_backfill.source import BarRequest

# Below this many distinct bar times an answer says too little about its interval.
MIN_TIMES = 10
_UNITS = (
    ("DAY", 86_400 * 10**9),
    ("HOUR", 3_600 * 10**9),
    ("MINUTE", 60 * 10**9),
    ("SECOND", 10**9),
)


def interval_mismatch(table: pa.Table, request: BarRequest, timestamp_is: str) -> str | None:
    """
    Return why an answer's rows are not bars of the request's bar type, or None.

    Judged on answers of at least `MIN_TIMES` distinct times, by the gaps between them:

    - coarser: at least half the gaps are one and the same multiple of the bar type's step,
      longer than it (a 5-minute file asked for as 1-minute bars, with any strays; daily bars
      asked for as hourly, across daylight saving changes);
    - finer: more than half the gaps are shorter than a bar, or three in a row are (a
      1-minute file, or a 1-minute part of one, asked for as 5-minute bars).

    Sparse bars of an illiquid market have gaps of many lengths and pass; so do the odd
    off-grid rows of a right file (IB's hourly bars from a 09:30 session open).

    Parameters
    ----------
    table : pa.Table
        The answer (its ``ts`` column).
    request : BarRequest
        The request.
    timestamp_is : str
        ``"open"`` or ``"close"``: what the answer's times stamp (the gaps do not depend on
        it).

    Returns
    -------
    str | None
        What the rows look like and what to use instead.

    """
    ts, nulls = column_i64(table, "ts")
    if nulls.any():
        ts = ts[~nulls]
    if len(ts) < MIN_TIMES:
        return None
    if not bool((ts[1:] > ts[:-1]).all()):
        ts = np.unique(ts)
        if len(ts) < MIN_TIMES:
            return None
    step = request.step_ns
    diffs = np.diff(ts)
    # Counts first: a right file (most gaps one step) costs two passes, not a sort.
    if np.count_nonzero(diffs == step) * 2 <= len(diffs):
        lengths, counts = np.unique(diffs, return_counts=True)
        most = int(lengths[np.argmax(counts)])
        if most > step and most % step == 0 and counts.max() * 2 >= len(diffs):
            return _advice("apart for most of them:", most, request, len(ts))
    short = diffs < step
    n_short = int(np.count_nonzero(short))
    if n_short * 2 > len(diffs) or (n_short >= 3 and _longest_run(short) >= 3):
        fine = diffs[short]
        values, n = np.unique(fine, return_counts=True)
        return _advice("apart for many of them:", int(values[np.argmax(n)]), request, len(ts))
    return None


def _longest_run(flags: np.ndarray) -> int:
    if not flags.any():
        return 0
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _advice(how: str, spacing: int, request: BarRequest, times: int) -> str:
    bar_type = request.bar_type
    own = _step_text(request.step_ns) or f"{request.step_ns} ns"
    text = (
        f"its {times:,} bar times are {_step_text(spacing) or f'{spacing} ns'} {how} these are "
        f"not {own} bars ({bar_type})"
    )
    fitting = _with_step(str(bar_type), spacing)
    if fitting is None:
        return text
    if spacing < request.step_ns:
        composite = f"{bar_type.instrument_id}-{_spec(request.step_ns)}-"
        composite += f"{bar_type.spec.price_type.name}-INTERNAL@{_spec(spacing)}-EXTERNAL"
        return (
            f"{text}; request {fitting} for this data, or the composite bar type {composite} "
            f"to get {own} bars built from it"
        )
    return f"{text}; request {fitting} for this data, or point the source at {own} bars"


def _spec(ns: int) -> str | None:
    for unit, size in _UNITS:
        if ns % size == 0:
            return f"{ns // size}-{unit}"
    return None


def _step_text(ns: int) -> str | None:
    spec = _spec(ns)
    return spec.lower() if spec else None


def _with_step(bar_type: str, ns: int) -> str | None:
    # The same bar type with another step: AAPL.XNAS-1-MINUTE-LAST-EXTERNAL -> ...-5-MINUTE-...
    spec = _spec(ns)
    head, _, rest = bar_type.partition("@")
    parts = head.rsplit("-", 4)
    if spec is None or len(parts) != 5 or rest:
        return None
    return f"{parts[0]}-{spec}-{parts[3]}-{parts[4]}"
