"""Vectorized checks on one source answer: every rejected row gets exactly one named reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from nautilus_backfill.bararrays import BarArrays, column_f64, column_i64
from nautilus_backfill.source import BarRequest, SourceResult, Span
from nautilus_backfill.timeutil import alignment_step_ns, now_ns
from nautilus_trader.model.objects import PRICE_MAX, PRICE_MIN, QUANTITY_MAX

# The order is the precedence: a row is counted under the first reason that applies.
REASONS = (
    "unparseable",
    "bad_timestamp",
    "non_finite",
    "non_positive_price",
    "out_of_range",
    "ohlc_inconsistent",
    "negative_volume",
    "misaligned",
    "incomplete",
    "outside_window",
    "ambiguous",
    "duplicate",
)
# Reasons that say a bar's data is bad, not that the row is no bar of this request: the bar's
# time is then left for the next source (and, if none has it, is a hole in the series).
BAD_DATA = frozenset(
    {
        "unparseable",
        "non_finite",
        "non_positive_price",
        "out_of_range",
        "ohlc_inconsistent",
        "negative_volume",
    }
)
MAX_EXAMPLES = 5
CHUNK = 65_536


@dataclass
class Validated:
    """
    The bars of one source answer that passed, and the count of each drop reason.

    Parameters
    ----------
    bars : BarArrays
        The valid bars, sorted by open time, prices rounded to the precision.
    dropped : Counter[str]
        Rows dropped per reason.
    rounded : int
        Valid bars with at least one value changed by rounding.
    examples : list[str]
        Up to a few ``reason: file:row`` lines per reason, for the report.
    rounded_at : np.ndarray
        The open times of the rounded valid bars, so a report can count those injected.
    ambiguous_at : np.ndarray
        The open times of bars the answer gave more than once with different values: none of
        those rows is used, and the time is left for the next source.
    invalid_at : np.ndarray
        The open times (on the bar grid) of rows dropped for bad data (`BAD_DATA`, or a
        plugin's reason) with no valid row at that time: left for the next source too.

    """

    bars: BarArrays
    dropped: Counter[str] = field(default_factory=Counter)
    rounded: int = 0
    examples: list[str] = field(default_factory=list)
    rounded_at: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    ambiguous_at: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    invalid_at: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def invalid(self) -> int:
        """
        Return the count of rows that failed a check on the data itself.

        Returns
        -------
        int

        """
        return sum(n for r, n in self.dropped.items() if r not in {"outside_window"})


def _where(table: pa.Table, positions: np.ndarray) -> list[str]:
    names = table.column_names
    index = pa.array(positions)

    def column(name: str) -> list[Any] | None:
        return table.column(name).take(index).to_pylist() if name in names else None

    rows, files, raws = column("_row"), column("_file"), column("_raw")
    out = []
    for i, pos in enumerate(positions):
        where = f"line {rows[i]}" if rows is not None else f"bar {int(pos)}"
        if files is not None and files[i] is not None:
            where = f"{files[i]}: {where}"
        if raws is not None and raws[i] is not None:
            where = f"{where} ({raws[i]})"
        out.append(where)
    return out


def _step_name(step: int) -> str:
    for unit, ns in (("day", 86_400 * 10**9), ("hour", 3_600 * 10**9), ("minute", 60 * 10**9)):
        if step % ns == 0:
            return f"{step // ns}-{unit}"
    if step % 10**9 == 0:
        return f"{step // 10**9}-second"
    return f"{step // 10**6}-millisecond" if step % 10**6 == 0 else f"{step}-nanosecond"


def _explain(reason: str, request: BarRequest) -> str:
    # What a row should have been, where the row alone does not say.
    if reason == "misaligned":
        grid = alignment_step_ns(request.step_ns) or request.step_ns
        utc = (
            " (bars open at whole multiples of it from 00:00 UTC)" if grid >= 3_600 * 10**9 else ""
        )
        return f": not on the {_step_name(grid)} grid{utc}"
    if reason == "bad_timestamp":
        return ": outside what a Bar holds (1970 to 2262)"
    return ""


def _round_into(values: np.ndarray, decimals: int, out: np.ndarray) -> None:
    # What np.round does (scale, rint, unscale), written straight into `out`.
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are judged elsewhere
        np.multiply(values, 10.0**decimals, out=out)
        np.rint(out, out=out)
        out /= 10.0**decimals


def _check_chunk(
    reason: np.ndarray,
    ts: np.ndarray,
    raw: list[np.ndarray],
    rounded: list[np.ndarray],
    changed: np.ndarray,
    unparseable: np.ndarray,
    bad_ts: np.ndarray,
    request: BarRequest,
    precisions: tuple[int, int],
    allow_non_positive_prices: bool,
) -> None:
    # The row checks on one slice, in REASONS order; only the first failing check counts.
    def flag(name: str, mask: np.ndarray) -> None:
        if mask.any():
            reason[(reason == 0) & mask] = REASONS.index(name) + 1

    o, h, lo, c, v = raw
    step = request.step_ns
    flag("unparseable", unparseable)
    flag("bad_timestamp", bad_ts)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 + 1e308: judged just below
        total = o + h
        total += lo
        total += c
        total += v
    if not np.isfinite(total).all():  # a sum of finite values can overflow: then look closer
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo)
        finite &= np.isfinite(c) & np.isfinite(v)
        flag("non_finite", ~finite)
    lowest = np.minimum(o, h)
    np.minimum(lowest, lo, out=lowest)
    np.minimum(lowest, c, out=lowest)
    if not allow_non_positive_prices:
        flag("non_positive_price", lowest <= 0)
    highest = np.maximum(o, h, out=total)
    np.maximum(highest, lo, out=highest)
    np.maximum(highest, c, out=highest)
    # Beyond what NautilusTrader's Price/Quantity can hold (they would raise on conversion).
    flag("out_of_range", (highest > PRICE_MAX) | (lowest < PRICE_MIN) | (v > QUANTITY_MAX))
    for x, out in zip(raw[:4], rounded[:4], strict=True):
        _round_into(x, precisions[0], out)
    _round_into(v, precisions[1], rounded[4])
    ro, rh, rl, rc, rv = rounded
    for x, r in zip(raw, rounded, strict=True):
        changed |= (r != x) & ~np.isnan(x)
    edge = np.maximum(ro, rc, out=highest)
    bad = rh < edge
    np.minimum(ro, rc, out=edge)
    bad |= rl > edge
    bad |= rh < rl
    flag("ohlc_inconsistent", bad)
    flag("negative_volume", rv < 0)
    grid = alignment_step_ns(step)
    if grid is not None:
        flag("misaligned", ts % grid != 0)
    # A bar closing after now is still forming, whatever `end` says.
    flag("incomplete", ts > min(request.end_ns, now_ns()) - step)
    if request.start_ns is not None:
        flag("outside_window", ts < request.start_ns)


def validate(
    result: SourceResult,
    request: BarRequest,
    span: Span,
    price_precision: int,
    size_precision: int,
    allow_non_positive_prices: bool = False,
    extra_checks: Callable[[pa.Table], list[dict[str, Any]]] | None = None,
) -> Validated:
    """
    Check a source answer and return its valid bars.

    Parameters
    ----------
    result : SourceResult
        The source answer.
    request : BarRequest
        The request.
    span : Span
        The span the source was asked for (bars outside it are judged when merging).
    price_precision : int
        Prices are rounded to this many decimals.
    size_precision : int
        Volumes are rounded to this many decimals.
    allow_non_positive_prices : bool, default False
        Skip the ``non_positive_price`` check.
    extra_checks : Callable, optional
        Returns plugin masks (the ``validate_bars`` hook).

    Returns
    -------
    Validated

    """
    table = result.table
    n = table.num_rows
    if n == 0:
        return Validated(BarArrays.empty())
    step = request.step_ns
    ts, ts_null = column_i64(table, "ts")
    # Bar opens and closes must fit in 0..int64 max ns; sources mark worse ones BAD_TS.
    shift = step if result.timestamp_is == "close" else 0
    bad_ts = ~ts_null & ((ts < shift) | (ts > np.iinfo(np.int64).max - (step - shift)))
    if bad_ts.any():
        ts = np.where(bad_ts, shift, ts)
    if shift:
        ts = ts - shift
    raw = []
    unparseable = ts_null
    for name in ("open", "high", "low", "close", "volume"):
        values, nulls = column_f64(table, name)
        raw.append(values)
        if nulls.any():
            unparseable = unparseable | nulls

    reason = np.zeros(n, dtype=np.int16)  # 0 = valid, else 1 + index into `names`
    names: list[str] = list(REASONS)
    changed = np.zeros(n, dtype=bool)
    # Rounding writes into small scratch arrays; whole rounded columns are made only once a
    # value really changes. Most sources give values already at the precision, and fresh
    # column-sized memory is what costs most here (the kernel faults it in page by page).
    scratch = [np.empty(min(n, CHUNK), dtype=np.float64) for _ in range(5)]
    rounded: list[np.ndarray] | None = None
    # In slices: the temporaries of each check stay small, cached and reused.
    for start in range(0, n, CHUNK):
        rows = slice(start, start + CHUNK)
        size = min(n, start + CHUNK) - start
        parts = [x[:size] for x in scratch]
        _check_chunk(
            reason[rows],
            ts[rows],
            [x[rows] for x in raw],
            parts,
            changed[rows],
            unparseable[rows],
            bad_ts[rows],
            request,
            (price_precision, size_precision),
            allow_non_positive_prices,
        )
        if rounded is None and changed[rows].any():
            rounded = [np.array(x) for x in raw]
        if rounded is not None:
            for full, part in zip(rounded, parts, strict=True):
                full[rows] = part
    if rounded is None:
        rounded = raw
    ro, rh, rl, rc, rv = rounded

    def flag(name: str, mask: np.ndarray) -> None:
        if name not in names:
            names.append(name)
        if mask.any():
            reason[(reason == 0) & mask] = names.index(name) + 1

    if extra_checks is not None:
        ok = np.flatnonzero(reason == 0)
        view = pa.table(
            {
                "ts_open": ts[ok],
                "open": ro[ok],
                "high": rh[ok],
                "low": rl[ok],
                "close": rc[ok],
                "volume": rv[ok],
            },
        )
        for masks in extra_checks(view):
            for name, mask in masks.items():
                full = np.zeros(n, dtype=bool)
                full[ok] = np.asarray(mask, dtype=bool)
                flag(str(name), full)

    bars = BarArrays(ts, ro, rh, rl, rc, rv)
    valid = reason == 0
    ambiguous_at = ts[:0]
    if valid.all() and (n < 2 or bool((ts[1:] > ts[:-1]).all())):
        n_rounded = int(changed.sum())  # all valid and already in order: nothing to select
        rounded_at = ts[changed] if n_rounded else ts[:0]
    else:
        # Sort valid rows by open time (stable, so file order breaks ties).
        ok = np.flatnonzero(valid)
        ok = ok[np.argsort(ts[ok], kind="stable")]
        if len(ok) > 1:
            sorted_ts = ts[ok]
            repeat = np.zeros(len(ok), dtype=bool)
            repeat[1:] = sorted_ts[1:] == sorted_ts[:-1]
            # A bar given twice with the same values is a duplicate: the first row is kept.
            # Given with other values, which is right is unknown: no row of it is used.
            first = ok[np.maximum.accumulate(np.where(repeat, 0, np.arange(len(ok))))]
            differs = repeat & np.any([x[ok] != x[first] for x in rounded], axis=0)
            if differs.any():
                ambiguous_at = np.unique(sorted_ts[differs])
                torn = np.isin(sorted_ts, ambiguous_at)
                mask = np.zeros(n, dtype=bool)
                mask[ok[torn]] = True
                flag("ambiguous", mask)
                repeat &= ~torn
                ok = ok[~torn]
                repeat = repeat[~torn]
            dup = np.zeros(n, dtype=bool)
            dup[ok[repeat]] = True
            flag("duplicate", dup)
            ok = ok[~repeat]
        bars = bars.take(ok)
        n_rounded = int(changed[ok].sum())
        rounded_at = ts[ok][changed[ok]] if n_rounded else ts[:0]
    invalid_at = ts[:0]
    bad_codes = [i + 1 for i, name in enumerate(names) if name in BAD_DATA or name not in REASONS]
    bad = np.isin(reason, bad_codes) & ~ts_null & ~bad_ts if not valid.all() else None
    if bad is not None and bad.any():
        grid = alignment_step_ns(step) or step
        times = ts[bad]
        invalid_at = np.setdiff1d(times[times % grid == 0], bars.ts_open)
    dropped: Counter[str] = Counter()
    examples: list[str] = []
    codes, counts = np.unique(reason[reason > 0], return_counts=True)
    for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
        name = names[code - 1]
        dropped[name] = count
        if name != "outside_window":
            first = np.flatnonzero(reason == code)[:MAX_EXAMPLES]
            why = _explain(name, request)
            examples.extend(f"{name}: {w}{why}" for w in _where(table, first))
    return Validated(bars, dropped, n_rounded, examples, rounded_at, ambiguous_at, invalid_at)
