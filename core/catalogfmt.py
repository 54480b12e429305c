"""NautilusTrader's bar parquet layout: fixed-point columns, and time-filtered scans."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from nautilus_backfill.errors import SourceError
from nautilus_backfill.source import Span

# NautilusTrader's fixed-point scales: 9 decimals in 64-bit builds, 16 in 128-bit ones.
_SCALE = {8: 1e9, 16: 1e16}
FIELDS = ("open", "high", "low", "close", "volume")


def decode_fixed(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """
    Decode a NautilusTrader fixed-point column (``fixed_size_binary[8|16]``) to float64.

    Parameters
    ----------
    column : pa.ChunkedArray | pa.Array
        The column.

    Returns
    -------
    np.ndarray

    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = arr.type.byte_width
    raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[
        arr.offset * width : (arr.offset + len(arr)) * width
    ]
    if width == 8:
        return raw.view("<i8").astype(np.float64) / _SCALE[8]
    if width == 16:
        pairs = raw.view("<u8").reshape(-1, 2)
        high = pairs[:, 1].view(np.int64).astype(np.float64)
        return (high * 18446744073709551616.0 + pairs[:, 0].astype(np.float64)) / _SCALE[16]
    raise SourceError(f"unsupported fixed-point width {width} bytes")


def scan(
    dataset: ds.Dataset, column: str, span: Span, shift: int, step: int, bound: Any
) -> pa.Table:
    """
    Read the rows of `span` with the time filter pushed down into the parquet scan.

    Parameters
    ----------
    dataset : ds.Dataset
        The files.
    column : str
        The timestamp column.
    span : Span
        The span; in count mode the window widens backwards until it holds ``limit`` rows.
    shift : int
        ``step`` when the column labels the close, else 0.
    step : int
        The bar length (ns).
    bound : Callable[[int], Any]
        Turns a UNIX-ns bound into a scalar of the column's type.

    Returns
    -------
    pa.Table

    """
    field = ds.field(column)
    # Timestamps label `open + shift`; a bar is wanted when open >= start and open + step <= end.
    upper = field <= bound(span.end - step + shift)
    if span.start is not None:
        return dataset.to_table(filter=upper & (field >= bound(span.start + shift)))
    if span.limit is None:
        return dataset.to_table(filter=upper)
    # Count mode: widen the window backwards until it holds `limit` rows or the data ends.
    width = max(span.limit, 1) * step * 2
    while True:
        lower = span.end - width
        table = dataset.to_table(filter=upper & (field >= bound(max(lower + shift, 0))))
        if table.num_rows >= span.limit or lower <= 0:
            break
        older = dataset.count_rows(filter=field < bound(max(lower + shift, 0)))
        if older == 0:
            break
        width *= 4
    return newest(table, span.limit, column)


def newest(table: pa.Table, limit: int | None, column: str = "ts") -> pa.Table:
    """Keep the newest `limit` rows by `column` (and every row whose time is null)."""
    if limit is None or table.num_rows <= limit:
        return table
    ts = table.column(column)
    unparsed = table.filter(pc.is_null(ts))
    valid = table.filter(pc.is_valid(ts))
    valid = valid.take(pc.sort_indices(valid, sort_keys=[(column, "ascending")]))
    return pa.concat_tables([unparsed, valid.slice(max(0, valid.num_rows - limit))])


def nautilus_bar_schema(bar_type: str, price_precision: int, size_precision: int) -> pa.Schema:
    """
    Return the schema NautilusTrader's catalog writes bars with, in this build's precision.

    Parameters
    ----------
    bar_type : str
        The bar type.
    price_precision : int
        Price decimals.
    size_precision : int
        Size decimals.

    Returns
    -------
    pa.Schema

    """
    from nautilus_trader.core import nautilus_pyo3

    width = 16 if nautilus_pyo3.HIGH_PRECISION else 8
    fixed = pa.binary(width)
    fields = [pa.field(name, fixed, nullable=False) for name in FIELDS]
    fields += [pa.field("ts_event", pa.uint64(), False), pa.field("ts_init", pa.uint64(), False)]
    instrument_id = bar_type.split("-")[0]
    meta = {
        "bar_type": bar_type,
        "instrument_id": instrument_id,
        "price_precision": str(price_precision),
        "size_precision": str(size_precision),
    }
    return pa.schema(fields, metadata=meta)


def _times_pow10_128(units: np.ndarray, factor: int) -> np.ndarray:
    # units * factor as little-endian 128-bit two's complement, in 32-bit limbs of uint64
    # arithmetic (|units| < 2**53 and factor <= 10**16 < 2**54, so nothing is lost).
    a = np.abs(units).astype(np.uint64)
    a_lo, a_hi = a & np.uint64(0xFFFFFFFF), a >> np.uint64(32)
    m_lo, m_hi = np.uint64(factor & 0xFFFFFFFF), np.uint64(factor >> 32)
    mid = a_lo * m_hi + a_hi * m_lo
    p0 = a_lo * m_lo
    lo = p0 + ((mid & np.uint64(0xFFFFFFFF)) << np.uint64(32))
    hi = a_hi * m_hi + (mid >> np.uint64(32)) + (lo < p0).astype(np.uint64)
    negative = units < 0
    neg_lo = ~lo + np.uint64(1)
    neg_hi = ~hi + (neg_lo == 0).astype(np.uint64)
    lo = np.where(negative, neg_lo, lo)
    hi = np.where(negative, neg_hi, hi)
    return np.stack([lo, hi], axis=1).astype("<u8", copy=False)


def encode_fixed(values: np.ndarray, precision: int, width: int) -> pa.Array:
    """
    Encode floats as NautilusTrader fixed-point values of `precision` decimals.

    Parameters
    ----------
    values : np.ndarray
        The values (already rounded to `precision`).
    precision : int
        Decimals.
    width : int
        8 (64-bit build) or 16 (128-bit build).

    Returns
    -------
    pa.Array
        ``fixed_size_binary[width]``.

    """
    units = np.rint(values * 10.0**precision).astype(np.int64)
    raw: np.ndarray
    if width == 8:
        raw = (units * 10 ** (9 - precision)).astype("<i8", copy=False)
    else:
        raw = _times_pow10_128(units, 10 ** (16 - precision))
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(values), [None, pa.py_buffer(raw)]
    )
