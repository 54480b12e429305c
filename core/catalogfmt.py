"""NautilusTrader's bar parquet layout: fixed-point columns, and time-filtered scans."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from nautilus_backfill.errors import SourceError

if TYPE_CHECKING:  # source imports config, which may import modules that import this one
    from nautilus_backfill.source import Span

# NautilusTrader's fixed-point scales: 9 decimals in 64-bit builds, 16 in 128-bit ones.
_SCALE = {8: 1e9, 16: 1e16}
_DIGITS = {8: 9, 16: 16}
FIELDS = ("open", "high", "low", "close", "volume")


# What NautilusTrader's catalog writes for prices and sizes: fixed-point binary (16 bytes in
# 128-bit builds, 8 in 64-bit ones); catalogs before fixed-size binary wrote int64 prices and
# uint64 sizes at 10**9, always with precision metadata.
EXPECTED = (
    "fixed_size_binary[16] or fixed_size_binary[8] (NautilusTrader's fixed-point), or "
    "int64/uint64 with price_precision and size_precision in the schema metadata (older catalogs)"
)


def fixed_type_problem(kind: pa.DataType, declared: bool) -> str | None:
    """
    Say why a column of Arrow type `kind` is not a NautilusTrader fixed-point column.

    Parameters
    ----------
    kind : pa.DataType
        The column's type.
    declared : bool
        Whether the file's schema metadata declares the precision (integer columns need it).

    Returns
    -------
    str | None
        None when the type is one the catalog writes.

    """
    if pa.types.is_fixed_size_binary(kind) and kind.byte_width in _SCALE:
        return None
    if (pa.types.is_int64(kind) or pa.types.is_uint64(kind)) and declared:
        return None
    return f"type {kind}, expected {EXPECTED}"


def check_bar_schema(schema: pa.Schema, where: str, bar_type: str | None = None) -> None:
    """
    Refuse a file that is not in NautilusTrader's bar layout, or holds another bar type.

    Parameters
    ----------
    schema : pa.Schema
        The file's schema (with its metadata).
    where : str
        The file, named in the message.
    bar_type : str, optional
        The bar type the file must hold (its folder's; ``/`` may be left out, as in folder
        names); a file whose metadata names another is refused.

    Raises
    ------
    SourceError
        Naming the file, the column, the type found and what was expected.

    """
    meta = schema.metadata or {}
    declared = b"price_precision" in meta and b"size_precision" in meta
    named = meta.get(b"bar_type", b"").decode(errors="replace")
    if bar_type is not None and named and named.replace("/", "") != bar_type.replace("/", ""):
        raise SourceError(f"{where}: holds bars of {named}, not {bar_type}: not read")
    for name in FIELDS:
        if name not in schema.names:
            raise SourceError(f"{where}: not a NautilusTrader bar file: no column '{name}'")
        problem = fixed_type_problem(schema.field(name).type, declared)
        if problem:
            raise SourceError(f"{where}: column '{name}' has {problem}: not read")
    for name in ("ts_event", "ts_init"):
        if name not in schema.names:
            raise SourceError(f"{where}: not a NautilusTrader bar file: no column '{name}'")
        kind = schema.field(name).type
        if not (pa.types.is_uint64(kind) or pa.types.is_int64(kind)):
            raise SourceError(
                f"{where}: column '{name}' has type {kind}, expected uint64 (UNIX ns): not read"
            )


def check_bar_files(dataset: ds.FileSystemDataset) -> None:
    """
    Run `check_bar_schema` on every file of `dataset` (each file's own footer).

    Raises
    ------
    SourceError
        For the first file not in NautilusTrader's bar layout.

    """
    for fragment in dataset.get_fragments():
        check_bar_schema(fragment.physical_schema, fragment.path)


def decode_fixed(
    column: pa.ChunkedArray | pa.Array,
    precision: int | None = None,
    *,
    name: str = "",
    where: str = "",
) -> np.ndarray:
    """
    Decode a NautilusTrader fixed-point column (``fixed_size_binary[8|16]``) to float64.

    Only the layouts the catalog writes are accepted: a float column decoded as fixed-point
    would give values off by factors of billions.

    Parameters
    ----------
    column : pa.ChunkedArray | pa.Array
        The column.
    precision : int, optional
        The decimals the file declares. Values that really have at most that many decimals
        then decode to exactly the float a parser gives for the same decimal text, so
        rounding them to the precision later changes nothing. Integer columns (older
        catalogs) are only accepted when it is given, as those catalogs always declared it.
    name, where : str, optional
        The column and the file, for the message.

    Returns
    -------
    np.ndarray

    Raises
    ------
    SourceError
        If the column's type is not one NautilusTrader's catalog writes.

    """
    problem = fixed_type_problem(column.type, precision is not None)
    if problem:
        prefix = f"{where}: " if where else ""
        raise SourceError(f"{prefix}column '{name or '?'}' has {problem}: not read")
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = np.empty(len(column), dtype=np.float64)
    at = 0
    # Chunk by chunk into one array: joining the chunks first would copy the raw bytes.
    for chunk in chunks:
        _decode_into(chunk, out[at : at + len(chunk)], precision)
        at += len(chunk)
    return out


# From this many rows the five columns decode on two threads (numpy releases the GIL).
PARALLEL_ROWS = 200_000


def decode_bars(
    table: pa.Table, price: int | None, size: int | None, where: str = ""
) -> dict[str, np.ndarray]:
    """
    Decode the five price columns of a NautilusTrader bar table with `decode_fixed`.

    Parameters
    ----------
    table : pa.Table
        The rows, with the columns of `FIELDS`.
    price, size : int | None
        The declared price and size precisions.
    where : str, optional
        The file or path, for messages.

    Returns
    -------
    dict[str, np.ndarray]
        float64 per field.

    """

    def one(name: str) -> np.ndarray:
        declared = size if name == "volume" else price
        return decode_fixed(table.column(name), declared, name=name, where=where)

    if table.num_rows < PARALLEL_ROWS:
        return {name: one(name) for name in FIELDS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(FIELDS, pool.map(one, FIELDS), strict=True))


def _decode_into(arr: pa.Array, out: np.ndarray, precision: int | None) -> None:
    width = arr.type.byte_width
    raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[
        arr.offset * width : (arr.offset + len(arr)) * width
    ]
    words = raw.view("<u8").reshape(-1, width // 8)
    low = words[:, 0].view(np.int64)
    exact = precision is not None and 0 <= precision <= _DIGITS[width]
    fits = width == 8 or bool((words[:, 1].view(np.int64) == (low >> np.int64(63))).all())
    if exact and fits:
        # units = raw / 10**(scale - precision), exact when the file keeps its precision;
        # units / 10**precision is then the correctly rounded float of the decimal value.
        assert precision is not None
        units, rest = np.divmod(low, np.int64(10 ** (_DIGITS[width] - precision)))
        if not rest.any() and bool((np.abs(units) < 2**53).all()):
            np.divide(units, 10.0**precision, out=out)
            return
    if width == 8:
        out[:] = low
    else:
        out[:] = words[:, 1].view(np.int64)
        out *= 18446744073709551616.0
        out += words[:, 0]
    out /= _SCALE[width]
    if exact and not fits:
        # Past int64 (a volume of 1,000 or more at 10**16): the float is within an ulp, so
        # its units are right if encoding them back gives the raw words exactly.
        assert precision is not None
        units_f = np.rint(out * 10.0**precision)
        back = units_to_words(units_f, 10 ** (_DIGITS[width] - precision), width)
        if back is not None and np.array_equal(back, words):
            np.divide(units_f, 10.0**precision, out=out)


def units_to_words(units: np.ndarray, factor: int, width: int) -> np.ndarray | None:
    """
    Return ``units * factor`` as NautilusTrader's raw fixed-point words, exactly.

    Parameters
    ----------
    units : np.ndarray
        Whole numbers, as float64.
    factor : int
        ``10 ** (scale - precision)``.
    width : int
        16 (128-bit build) or 8.

    Returns
    -------
    np.ndarray | None
        uint64 words, shape ``(n, width // 8)``, little end first; None when a unit reaches
        2**53, where floats stop being exact.

    """
    top = float(np.abs(units).max()) if len(units) else 0.0
    if top >= 2.0**53:
        return None
    low = units.astype(np.int64).view(np.uint64) * np.uint64(factor)  # wraps mod 2**64
    if width == 8:
        return low.reshape(-1, 1)
    if top * factor < 2.0**63:
        high = (low.view(np.int64) >> np.int64(63)).view(np.uint64)
    else:
        # The float product is within 2**54 of the exact one and `low` is exact, so the
        # high word is the nearest integer to (product - low) / 2**64.
        high_f = np.rint((units * float(factor) - low.astype(np.float64)) * 2.0**-64)
        high = high_f.astype(np.int64).view(np.uint64)
    return np.stack([low, high], axis=1)


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
    top = bound(span.end - step + shift)
    if span.start is not None:
        return _read(dataset, column, bound(span.start + shift), top)
    if span.limit is None:
        return _read(dataset, column, None, top)
    # Count mode: widen the window backwards until it holds `limit` rows or the data ends.
    width = max(span.limit, 1) * step * 2
    while True:
        lower = span.end - width
        table = _read(dataset, column, bound(max(lower + shift, 0)), top)
        if table.num_rows >= span.limit or lower <= 0:
            break
        older = dataset.count_rows(filter=field < bound(max(lower + shift, 0)))
        if older == 0:
            break
        width *= 4
    return newest(table, span.limit, column)


def _read(dataset: ds.Dataset, column: str, lower: Any, upper: Any) -> pa.Table:
    field = ds.field(column)
    wanted = field <= upper if lower is None else (field <= upper) & (field >= lower)
    if _all_inside(dataset, column, lower, upper):
        return dataset.to_table()  # filtering rows that all pass costs a copy of every column
    return dataset.to_table(filter=wanted)


def _all_inside(dataset: ds.Dataset, column: str, lower: Any, upper: Any) -> bool:
    # From the row-group statistics alone; anything unexpected means "filter to be sure".
    try:
        low = None if lower is None else lower.as_py()
        high = upper.as_py()
        if not isinstance(high, int) or not isinstance(low, int | None):
            return False  # only integer times compare exactly (datetimes stop at microseconds)
        for fragment in dataset.get_fragments():
            for group in fragment.row_groups:
                stats = group.statistics.get(column)
                if not stats or not isinstance(stats.get("min"), int):
                    return False
                if not isinstance(stats.get("max"), int):
                    return False
                if stats["max"] > high or (low is not None and stats["min"] < low):
                    return False
        return True
    except Exception:  # unknown layouts and stats types: filter to be sure
        return False


def read_window(
    opened: list[pq.ParquetFile], column: str, span: Span, shift: int, step: int
) -> pa.Table:
    """
    Read the rows of `span` from bar files, picking row groups by their statistics.

    The same rows as `scan` over a dataset of the files with `uint64_bound` (in count mode the
    newest ``limit``), without building a dataset: for many small files (one per bar type of a
    portfolio) that costs more than reading them.

    Parameters
    ----------
    opened : list[pq.ParquetFile]
        From `open_bar_files`, oldest first.
    column : str
        The timestamp column (``ts_init`` or ``ts_event``).
    span : Span
        The span.
    shift : int
        ``step`` when the column labels the close, else 0.
    step : int
        The bar length (ns).

    Returns
    -------
    pa.Table
        The price columns and `column`.

    """
    top = _clamp(span.end - step + shift)
    low = _clamp(span.start + shift) if span.start is not None else None
    # (max, min, rows, file, group) of each row group that may hold rows in the window.
    groups: list[tuple[int, int, int, int, int]] = []
    for k, pf in enumerate(opened):
        at = pf.schema_arrow.get_field_index(column)
        meta = pf.metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            stats = group.column(at).statistics
            lo, hi = 0, 2**64 - 1
            known = stats is not None and stats.has_min_max
            if known and isinstance(stats.min, int) and isinstance(stats.max, int):
                lo, hi = stats.min, stats.max
            if lo > top or (low is not None and hi < low):
                continue
            groups.append((hi, lo, group.num_rows, k, g))
    if low is None and span.limit is not None:
        # Newest groups first, from the statistics alone, until `limit` rows lie in groups
        # wholly inside the window that are all newer than any group left out.
        groups.sort(reverse=True)
        wanted: list[tuple[int, int, int, int, int]] = []
        held, floor = 0, 2**64
        for group in groups:
            if held >= span.limit and group[0] < floor:
                break
            wanted.append(group)
            floor = min(floor, group[1])
            if group[0] <= top:
                held += group[2]
        groups = wanted
    groups.sort(key=lambda g: (g[3], g[4]))  # the files' own order, as a dataset scan reads
    pieces = []
    for k, pf in enumerate(opened):
        mine = [g[4] for g in groups if g[3] == k]
        if mine:
            # One small group reads faster on this thread than through Arrow's pool.
            # Only the prices and the one time column: the other is never used.
            names = [*FIELDS, column]
            pieces.append(pf.read_row_groups(mine, columns=names, use_threads=len(mine) > 1))
    if not pieces:
        return opened[0].schema_arrow.empty_table().select([*FIELDS, column])
    table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
    ts = table.column(column)
    upper = pa.scalar(top, pa.uint64())
    keep = pc.less_equal(ts, upper)
    if low is not None:
        keep = pc.and_(keep, pc.greater_equal(ts, pa.scalar(low, pa.uint64())))
    if not (ts.null_count == 0 and pc.all(keep).as_py()):
        table = table.filter(keep)  # every row inside: no copy of every column
    return table if low is not None else newest(table, span.limit, column)


def _clamp(ns: int) -> int:
    return min(max(int(ns), 0), 2**64 - 1)


def uint64_bound(ns: int) -> pa.Scalar:
    """
    Return a UNIX-ns bound as a ``uint64`` scalar for `scan`, clamped, never wrapped.

    A window that starts before 1970 (or ends past uint64) would otherwise raise, or wrap to
    a bound on the far side of the data.
    """
    return pa.scalar(min(max(int(ns), 0), 2**64 - 1), pa.uint64())


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
