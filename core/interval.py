"""Whether an answer's rows have the bar type's interval: 5-minute rows are no 1-minute bars."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from nautilus_backfill.bararrays import column_i64
from nautilus_backfill.source import BarRequest
from nautilus_backfill.timeutil import alignment_step_ns

# Below this many distinct bar times an answer says too little about its interval: sparse
# 1-minute bars of an illiquid market can be minutes apart by chance, but not 50 times over.
MIN_TIMES = 51
_UNITS = (
    ("DAY", 86_400 * 10**9),
    ("HOUR", 3_600 * 10**9),
    ("MINUTE", 60 * 10**9),
    ("SECOND", 10**9),
)


def interval_mismatch(table: pa.Table, request: BarRequest, timestamp_is: str) -> str | None:
    """
    Return why an answer's rows are not bars of the request's bar type, or None.

    Two cases are refused, each only with at least `MIN_TIMES` distinct times:

    - coarser: every gap between the rows' times is a multiple of one interval longer than
      the bar type's step (a 5-minute file asked for as 1-minute bars);
    - finer: most rows lie off the bar type's grid and the rows are closer together than its
      step (a 1-minute file asked for as 5-minute bars: the on-grid rows are 1-minute bars).

    Parameters
    ----------
    table : pa.Table
        The answer (its ``ts`` column).
    request : BarRequest
        The request.
    timestamp_is : str
        ``"open"`` or ``"close"``: what the answer's times stamp.

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
    if not bool((diffs == step).any()):
        spacing = int(np.gcd.reduce(diffs))
        if spacing > step and spacing % step == 0:
            return _advice("apart (or a multiple of it):", spacing, request, len(ts))
    grid = alignment_step_ns(step)
    if grid is None:
        return None
    opens = ts - step if timestamp_is == "close" else ts
    off_grid = float(np.count_nonzero(opens % grid)) / len(opens)
    if off_grid > 0.5:
        spacing = int(np.gcd.reduce(diffs))
        if spacing < step:
            how = "apart, most of them off the bar type's grid:"
            return _advice(how, spacing, request, len(ts))
    return None


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
