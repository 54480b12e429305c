"""Vectorized timestamp parsing for file sources: any common layout to UNIX ns."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_EPOCH_UNITS = {"epoch_s": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1_000, "epoch_ns": 1}
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_COMPACT = re.compile(r"^\d{8}(\s+\d{2}:\d{2}(:\d{2})?)?$")


def _epoch_scale(values: np.ndarray) -> int:
    # Guess the unit from magnitude: seconds are ~1e9 today, ns ~1e18.
    sample = np.abs(values[: min(len(values), 1000)])
    magnitude = float(np.median(sample)) if len(sample) else 0.0
    if magnitude >= 1e17:
        return 1
    if magnitude >= 1e14:
        return 1_000
    if magnitude >= 1e11:
        return 1_000_000
    return 1_000_000_000


def _localize(values: pd.Series, tz: str) -> pd.Series:
    if tz == "UTC":
        return values.dt.tz_localize("UTC")
    return values.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")


def _from_pandas(values: pd.Series) -> pa.Array:
    ints = values.astype("datetime64[ns, UTC]").astype("int64")
    return pa.array(ints.to_numpy(), type=pa.int64(), mask=values.isna().to_numpy())


def _parse_strings(strings: pa.Array, fmt: str, tz: str) -> pa.Array:
    series = pd.Series(strings.to_numpy(zero_copy_only=False), dtype="object")
    first = next((s for s in series if isinstance(s, str) and s.strip()), None)
    if first is None:
        return pa.nulls(len(series), pa.int64())
    first = first.strip()
    if fmt == "auto" and re.fullmatch(r"[+-]?\d+(\.\d+)?", first) and not _COMPACT.match(first):
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
        return _epoch(numbers, "auto")
    if fmt in _EPOCH_UNITS:
        return _epoch(pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64), fmt)
    if "%" in fmt:
        pattern = fmt
    elif _COMPACT.match(first):
        pattern = (
            "%Y%m%d %H:%M:%S"
            if first.count(":") == 2
            else "%Y%m%d %H:%M"
            if ":" in first
            else "%Y%m%d"
        )
        series = series.str.strip().str.replace(r"\s+", " ", regex=True)
    else:
        pattern = "ISO8601"
    has_offset = bool(_OFFSET.search(first)) or "%z" in pattern
    parsed = pd.to_datetime(series, format=pattern, errors="coerce", utc=has_offset)
    if not has_offset:
        parsed = _localize(parsed, tz)
    return _from_pandas(parsed)


def _epoch(numbers: np.ndarray, fmt: str) -> pa.Array:
    mask = ~np.isfinite(numbers)
    clean = np.where(mask, 0, numbers)
    scale = _epoch_scale(clean[~mask]) if fmt == "auto" else _EPOCH_UNITS[fmt]
    return pa.array(
        (clean * scale).astype(np.int64) if scale != 1 else clean.astype(np.int64), mask=mask
    )


def to_epoch_ns(column: pa.ChunkedArray | pa.Array, fmt: str = "auto", tz: str = "UTC") -> pa.Array:
    """
    Parse a timestamp column into UNIX nanoseconds; unparseable values become null.

    Parameters
    ----------
    column : pa.ChunkedArray | pa.Array
        Integers (epoch), floats (epoch), Arrow timestamps or dates, or strings.
    fmt : str, default "auto"
        ``auto``, ``iso``, ``epoch_s``/``_ms``/``_us``/``_ns`` or a ``strftime`` pattern.
    tz : str, default "UTC"
        The zone of naive values.

    Returns
    -------
    pa.Array
        int64 with nulls.

    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        numbers = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        if pa.types.is_integer(t) and fmt in ("auto", "epoch_ns") and arr.null_count == 0:
            ints = arr.cast(pa.int64()).to_numpy()
            scale = _epoch_scale(ints) if fmt == "auto" else 1
            return pa.array(ints * scale)
        return _epoch(numbers, fmt if fmt in _EPOCH_UNITS else "auto")
    if pa.types.is_timestamp(t):
        if t.tz is not None or tz == "UTC":
            return pc.cast(pc.cast(arr, pa.timestamp("ns", t.tz)), pa.int64())
        return _from_pandas(_localize(pd.Series(arr.to_pandas()), tz))
    if pa.types.is_date(t):
        days = pc.cast(pc.cast(arr, pa.timestamp("ns")), pa.int64())
        if tz == "UTC":
            return days
        return _from_pandas(_localize(pd.Series(pc.cast(arr, pa.timestamp("ns")).to_pandas()), tz))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _parse_strings(arr, "auto" if fmt == "iso" else fmt, tz)
    return _parse_strings(pc.cast(arr, pa.string()), fmt, tz)


def join_date_time(date: pa.ChunkedArray, time: pa.ChunkedArray) -> pa.Array:
    """
    Join separate date and time columns into ``"date time"`` strings.

    Parameters
    ----------
    date : pa.ChunkedArray
        The dates.
    time : pa.ChunkedArray
        The times.

    Returns
    -------
    pa.Array

    """
    joined = pc.binary_join_element_wise(
        pc.cast(date, pa.string()), pc.cast(time, pa.string()), " "
    )
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
