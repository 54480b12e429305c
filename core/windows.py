"""Time in a request's window: what sources answered for, what to trust, where the gaps are."""

from __future__ import annotations

import numpy as np
import portion as P
import pyarrow.compute as pc
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.source import BarRequest, SourceResult, Span
from nautilus_backfill.timeutil import now_ns


def answered_for(span: Span, result: SourceResult, step: int) -> P.Interval:
    """
    Return the time a source answered for in `span`, bars or none, for the store to remember.

    It ends at the last whole bar (the bar still forming at ``span.end`` must be asked for
    again) and never past now: a future ``end``, or a clock running ahead, must not mark time
    no source could have answered for yet.

    Parameters
    ----------
    span : Span
        The span asked for.
    result : SourceResult
        The answer.
    step : int
        The bar length (ns).

    Returns
    -------
    P.Interval

    """
    end = min(span.end, now_ns())
    end -= end % step
    if span.start is not None:
        return P.closedopen(span.start, end) if end > span.start else P.empty()
    if result.timestamp_is == "close":
        return P.empty()  # count-mode answers from close-stamped sources: not worth the care
    ts = result.table.column("ts")
    if not len(ts) or ts.null_count == len(ts):
        return P.empty()
    first = int(pc.min(ts).as_py())
    return P.closedopen(first, end) if end > first else P.empty()


def trusted(req: BarRequest, answered: P.Interval, bars: BarArrays, mine: np.ndarray) -> P.Interval:
    """
    Return the part of `answered` worth remembering as answered.

    Time answered without bars is remembered only up to the newest bar the writing sources
    gave: the end of a file not updated yet, or a gateway that had no data, must not hide the
    bars that arrive later. Holes between bars (nights, weekends) stay remembered; the time
    after the newest bar is asked for again next time (one small request).

    Parameters
    ----------
    req : BarRequest
        The request.
    answered : P.Interval
        What the sources answered for.
    bars : BarArrays
        The merged bars.
    mine : np.ndarray
        True for the bars of the sources that write back.

    Returns
    -------
    P.Interval

    """
    opens = bars.ts_open[mine]
    if not len(opens):
        return P.empty()
    return answered & P.closedopen(-P.inf, int(opens[-1]) + req.step_ns)


def gaps(missing: list[Span], bars: BarArrays, step: int) -> list[tuple[int | None, int]]:
    """
    Return the gaps to report: what no source covered, less runs of bars that are there.

    A store's bars outside its record of answered time are injected all the same, so a gap
    line never spans bars.

    Parameters
    ----------
    missing : list[Span]
        The spans no source covered.
    bars : BarArrays
        The merged bars.
    step : int
        The bar length (ns).

    Returns
    -------
    list[tuple[int | None, int]]
        ``(start, end)`` per gap, UNIX ns; ``None`` for an open start.

    """
    if not missing or not len(bars):
        return [(s.start, s.end) for s in missing]
    opens = bars.ts_open
    breaks = np.flatnonzero(np.diff(opens) != step)
    starts = np.concatenate([opens[:1], opens[breaks + 1]])
    ends = np.concatenate([opens[breaks] + step, opens[-1:] + step])
    out: list[tuple[int | None, int]] = []
    for span in missing:
        lo = -P.inf if span.start is None else span.start
        hole = P.closedopen(lo, span.end)
        first = int(np.searchsorted(ends, -(2**62) if span.start is None else span.start, "right"))
        last = int(np.searchsorted(starts, span.end, "left"))
        for a, b in zip(starts[first:last].tolist(), ends[first:last].tolist(), strict=True):
            hole -= P.closedopen(a, b)
        out += [
            (None if i.lower == -P.inf else int(i.lower), int(i.upper)) for i in hole if not i.empty
        ]
    return out
