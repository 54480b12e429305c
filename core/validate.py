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
from nautilus_backfill.timeutil import alignment_step_ns

# The order is the precedence: a row is counted under the first reason that applies.
REASONS = (
    "unparseable",
    "non_finite",
    "non_positive_price",
    "ohlc_inconsistent",
    "negative_volume",
    "misaligned",
    "incomplete",
    "outside_window",
    "duplicate",
)
MAX_EXAMPLES = 5


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

    """

    bars: BarArrays
    dropped: Counter[str] = field(default_factory=Counter)
    rounded: int = 0
    examples: list[str] = field(default_factory=list)

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
    rows = table.column("_row").take(pa.array(positions)).to_pylist() if "_row" in names else None
    files = (
        table.column("_file").take(pa.array(positions)).to_pylist() if "_file" in names else None
    )
    out = []
    for i, pos in enumerate(positions):
        where = f"row {rows[i]}" if rows is not None else f"bar {int(pos)}"
        if files is not None and files[i] is not None:
            where = f"{files[i]}: {where}"
        out.append(where)
    return out


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
    if result.timestamp_is == "close":
        ts = ts - step
    cols = {}
    unparseable = ts_null.copy()
    for name in ("open", "high", "low", "close", "volume"):
        values, nulls = column_f64(table, name)
        cols[name] = values
        unparseable |= nulls
    o, h, lo, c, v = (cols[k] for k in ("open", "high", "low", "close", "volume"))

    reason = np.zeros(n, dtype=np.int16)  # 0 = valid, else 1 + index into `names`
    names: list[str] = list(REASONS)

    def flag(name: str, mask: np.ndarray) -> None:
        if name not in names:
            names.append(name)
        code = names.index(name) + 1
        reason[(reason == 0) & mask] = code

    flag("unparseable", unparseable)
    stacked = np.column_stack([o, h, lo, c, v])
    flag("non_finite", ~np.isfinite(stacked).all(axis=1))
    if not allow_non_positive_prices:
        flag("non_positive_price", (np.column_stack([o, h, lo, c]) <= 0).any(axis=1))
    ro, rh, rl, rc = (np.round(x, price_precision) for x in (o, h, lo, c))
    rv = np.round(v, size_precision)
    flag(
        "ohlc_inconsistent",
        (rh < rl) | (rh < np.maximum(ro, rc)) | (rl > np.minimum(ro, rc)),
    )
    flag("negative_volume", rv < 0)
    grid = alignment_step_ns(step)
    if grid is not None:
        flag("misaligned", ts % grid != 0)
    flag("incomplete", ts + step > request.end_ns)
    if request.start_ns is not None:
        flag("outside_window", ts < request.start_ns)

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

    # Sort valid rows by open time (stable, so file order breaks ties) and keep the first.
    ok = np.flatnonzero(reason == 0)
    ok = ok[np.argsort(ts[ok], kind="stable")]
    if len(ok) > 1:
        repeat = np.zeros(len(ok), dtype=bool)
        repeat[1:] = ts[ok][1:] == ts[ok][:-1]
        dup = np.zeros(n, dtype=bool)
        dup[ok[repeat]] = True
        flag("duplicate", dup)
        ok = ok[~repeat]

    bars = BarArrays(ts[ok], ro[ok], rh[ok], rl[ok], rc[ok], rv[ok])
    changed = (
        (ro[ok] != o[ok])
        | (rh[ok] != h[ok])
        | (rl[ok] != lo[ok])
        | (rc[ok] != c[ok])
        | (rv[ok] != v[ok])
    )
    dropped: Counter[str] = Counter()
    examples: list[str] = []
    codes, counts = np.unique(reason[reason > 0], return_counts=True)
    for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
        name = names[code - 1]
        dropped[name] = count
        if name != "outside_window":
            first = np.flatnonzero(reason == code)[:MAX_EXAMPLES]
            examples.extend(f"{name}: {w}" for w in _where(table, first))
    return Validated(bars, dropped, int(changed.sum()), examples)
