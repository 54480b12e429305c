"""What a request ends with: written through to the store, converted to `Bar` s, aggregated."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import portion as P
from nautilus_backfill.aggregate import AggregationOptions, aggregate, composite_bars, interval_ns
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.config import BackfillConfig, BarRequestConfig
from nautilus_backfill.convert import to_bars
from nautilus_backfill.errors import describe
from nautilus_backfill.inject import fit_to_cache
from nautilus_backfill.source import BarRequest
from nautilus_backfill.store import StoreSource
from nautilus_backfill.timeutil import format_age, format_ns, now_ns, parse_duration
from nautilus_backfill.windows import gaps, trusted
from nautilus_backfill.work import Work
from nautilus_trader.model.data import Bar


def write_through(
    config: BackfillConfig,
    w: Work,
    store: StoreSource,
    deadline_at: float,
    writers: np.ndarray,
) -> None:
    """
    Write what the request's writing sources gave to the store, with the time answered.

    Only whole bars of sources that write back (`writers`) are stored, and only the answered
    time the store can trust (`windows.trusted`). A store that cannot be written costs a report
    line, never the warm start.

    Parameters
    ----------
    config : BackfillConfig
        The backfill config (``keep``).
    w : Work
        The finished request.
    store : StoreSource
        The store.
    deadline_at : float
        The backfill's deadline (``time.monotonic()``); a store lock is not waited for past it.
    writers : np.ndarray
        The indexes of the sources whose bars are stored.

    """
    req, layered, precision, report = w.req, w.layered, w.precision, w.report
    instruments = w.instruments
    # What the sources that write back (not the store) returned and validated, never a
    # bar still forming.
    fresh = np.isin(layered.origin, writers)
    complete = layered.bars.ts_open + req.step_ns <= now_ns()
    keep = np.flatnonzero(fresh & complete)
    if precision.price is None or precision.size is None:
        return
    if not len(keep) and layered.answered.empty:
        return
    answered = trusted(req, layered.answered, layered.bars, fresh)
    if not store_write(w, store, deadline_at, layered.bars.take(keep), answered):
        return
    try:
        if config.keep is not None:
            cutoff = now_ns() - int(parse_duration(config.keep) * 1e9)
            store.store.trim(str(req.bar_type), req.step_ns, cutoff)
        store.store.write_instruments(
            [i for i in instruments if i.id == req.bar_type.instrument_id]
        )
    except Exception as e:  # a store that cannot be written must not cost the warm start
        report.examples.append(store.store.redacted(f"store: not written: {describe(e)}"))
    finally:
        report.sources[0].notes.extend(store.store.take_notes())


def store_write(
    w: Work,
    store: StoreSource,
    deadline_at: float,
    bars: BarArrays,
    answered: P.Interval,
) -> bool:
    """
    Write `bars` of one request and the interval they answer for.

    Parameters
    ----------
    w : Work
        The request.
    store : StoreSource
        The store.
    deadline_at : float
        The backfill's deadline (``time.monotonic()``).
    bars : BarArrays
        The bars to store.
    answered : portion.Interval
        The bar opens the sources answered for, bars or none.

    Returns
    -------
    bool
        Whether they were written; a failure is a line in the request's report.

    """
    precision = w.precision
    if precision.price is None or precision.size is None:
        return False
    # Another node writing the same bar type must not hold this start past its deadline.
    store.store.lock_wait_s = max(0.0, deadline_at - time.monotonic() - 1.0)
    try:
        w.report.stored += store.store.write(
            str(w.req.bar_type),
            w.req.step_ns,
            bars.ts_open,
            bars.values(),
            precision.price,
            precision.size,
            answered,
        )
    except Exception as e:  # a store that cannot be written must not cost the warm start
        w.report.examples.append(store.store.redacted(f"store: not written: {describe(e)}"))
        return False
    finally:
        # What the store found or did while writing (files quarantined, bars not storable).
        w.report.sources[0].notes.extend(store.store.take_notes())
    return True


def finish(config: BackfillConfig, w: Work, cache: Any) -> list[Bar]:
    """
    Trim the merged bars to the window, fit them to the cache and convert them to `Bar` s.

    Fills the request's report: gaps, drops, bars used per source, rounding, staleness.

    Parameters
    ----------
    config : BackfillConfig
        The backfill config (``on_capacity``, ``max_age``).
    w : Work
        The request, after its last stage.
    cache : Cache, optional
        The cache the bars are meant for.

    Returns
    -------
    list[Bar]

    """
    req, cfg, layered, precision, report = w.req, w.cfg, w.layered, w.precision, w.report
    trimmed = layered.trim(req)
    if trimmed:
        report.dropped["outside_window"] += trimmed
    report.gaps = gaps(layered.missing(req), layered.bars, req.step_ns)
    bars, origin = layered.bars, layered.origin
    if cache is not None and len(bars):
        keep, drops, error, note = fit_to_cache(cache, req, bars, cfg.ts_event, config.on_capacity)
        report.dropped.update(drops)
        if error:
            report.error = error
        if note:
            report.examples.append(note)
        if len(keep) < len(bars):
            bars, origin = bars.take(keep), origin[keep]
    out: list[Bar] = []
    if len(bars):
        # Bars only get past validation once both precisions are known.
        assert precision.price is not None and precision.size is not None
        try:
            out = to_bars(
                bars, req.bar_type, req.step_ns, precision.price, precision.size, cfg.ts_event
            )
        except Exception as e:  # validation should prevent it; never count such bars injected
            report.dropped["not_converted"] += len(bars)
            report.error = f"converting to Bar: {type(e).__name__}: {e}"
            bars, origin = bars.take(slice(0, 0)), origin[:0]
    if cfg.end is None and len(bars):
        report.stale = staleness(config, req, cfg, int(bars.ts_open[-1]) + req.step_ns)
    # Rounded bars are counted among those injected only, never among dropped ones.
    for i, parts in w.rounded_at.items():
        mine = bars.ts_open[origin == i]
        report.rounded += int(np.isin(mine, np.concatenate(parts)).sum())
    used = np.bincount(origin.astype(np.int64), minlength=len(report.sources))
    for i, attempt in enumerate(report.sources):
        attempt.used = int(used[i])
    report.injected = len(out)
    if len(bars) and not w.refused.empty:
        # Refused bars no other source gave, inside the series: indicators would skip them.
        # (Nights and weekends between a broker's answers are no holes.)
        opens = np.concatenate(
            [np.arange(int(i.lower), int(i.upper), req.step_ns, dtype=np.int64) for i in w.refused]
        )
        inside = (opens > bars.ts_open[0]) & (opens < bars.ts_open[-1])
        report.holes = int((inside & ~np.isin(opens, bars.ts_open)).sum())
    if not out:
        return []
    report.first, report.last = out[0].ts_event, out[-1].ts_event
    return out


def aggregate_composite(w: Work, options: AggregationOptions, cache: Any) -> list[Bar]:
    """
    Build a composite request's bars from its merged source bars, as the live aggregator would.

    Parameters
    ----------
    w : Work
        The composite request, after its last stage.
    options : AggregationOptions
        The node's (or the config's) time-bar options.
    cache : Cache, optional
        The cache: bars it already holds, and its capacity.

    Returns
    -------
    list[Bar]

    """
    assert w.target is not None and w.report.composite is not None
    report, bars, precision = w.report.composite, w.layered.bars, w.precision
    if not len(bars) or precision.price is None or precision.size is None:
        return []
    try:
        built, drops = aggregate(
            bars,
            w.req.step_ns,
            w.target,
            options,
            min(w.req.end_ns, now_ns()),  # no interval that has not ended yet
            size_precision=precision.size,
            count=w.cfg.bars,
        )
        if cache is not None and len(built):
            standard = w.target.standard()
            latest = cache.bar(standard)
            if latest is not None:  # add_bars would skip these silently
                fresh = built.ts_init > latest.ts_init
                drops["already_cached"] += int((~fresh).sum())
                built = built.take(np.flatnonzero(fresh))
            if len(built) > cache.bar_capacity:
                drops["over_capacity"] += len(built) - cache.bar_capacity
                built = built.take(slice(len(built) - cache.bar_capacity, None))
        out = composite_bars(built, w.target, precision.price, precision.size)
    except Exception as e:  # never expected; the source bars are still injected
        w.report.error = f"aggregating {w.target}: {type(e).__name__}: {e}"
        return []
    report.dropped.update(drops)
    report.built = len(out)
    if out:
        report.first, report.last = out[0].ts_event, out[-1].ts_event
        # Intervals no source bar fell in: flat bars, as the live aggregator builds them.
        closes = bars.ts_open + w.req.step_ns
        period = interval_ns(w.target)
        inside = np.searchsorted(closes, built.ts_open + period, side="right")
        inside -= np.searchsorted(closes, built.ts_open, side="right")
        report.synthetic = int((inside == 0).sum())
    return out


def staleness(
    config: BackfillConfig, req: BarRequest, cfg: BarRequestConfig, close: int
) -> str | None:
    """
    Return why the request's newest bar is too old for a warm start, or None.

    Parameters
    ----------
    config : BackfillConfig
        The backfill config (``max_age``).
    req : BarRequest
        The request.
    cfg : BarRequestConfig
        Its config (its own ``max_age``).
    close : int
        The newest bar's close (UNIX ns).

    Returns
    -------
    str | None

    """
    # Only a request that ends now can be stale: `end` set means the user chose the window.
    limit = config.max_age_s(cfg, req.step_ns)
    if limit is None:
        return None
    age = (req.end_ns - close) / 1e9
    if age <= limit:
        return None
    key = f"backfill.requests[{req.index}].max_age" if cfg.max_age else "backfill.max_age"
    return (
        f"newest bar closed {format_ns(close)}, {format_age(age)} ago, older than "
        f"{key} = {format_age(limit)}; check the sources are current, or raise {key}"
    )
