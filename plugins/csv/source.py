"""Reading bars from CSV files with pyarrow's streaming reader."""

from __future__ import annotations

import csv as pycsv
import gzip
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from nautilus_backfill.errors import SourceError
from nautilus_backfill.paths import expand
from nautilus_backfill.plugins.csv.config import CsvColumns, CsvSourceConfig
from nautilus_backfill.source import (
    BAR_SCHEMA,
    BarRequest,
    BarSource,
    SourceResult,
    Span,
    empty_table,
    in_span,
)
from nautilus_backfill.timestamps import join_date_time, to_epoch_ns
from pyarrow import csv as pacsv

_NAMES = {
    "timestamp": ("timestamp", "datetime", "date_time", "time_stamp", "ts", "open_time", "time"),
    "date": ("date", "day"),
    "time": ("time",),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c", "last"),
    "volume": ("volume", "vol", "v"),
}
_VALUES = ("open", "high", "low", "close", "volume")
_BLOCK = 1 << 22


@dataclass
class _Layout:
    delimiter: str
    header: bool
    names: list[str]
    ts: list[str]  # one column, or date + time
    values: dict[str, str | None]


def _open_bytes(path: str) -> IO[bytes]:
    if path.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if not members:
            raise SourceError(f"{path}: the zip archive is empty")
        return archive.open(members[0])
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvBarSource(BarSource):
    """
    Bars from CSV files: header or none, any delimiter, many timestamp layouts.
    """

    config_type: ClassVar[type[CsvSourceConfig]] = CsvSourceConfig
    config: CsvSourceConfig

    def fetch(self, request: BarRequest, span: Span) -> SourceResult:
        """
        Read every file the path expands to and return the rows in `span`.

        Parameters
        ----------
        request : BarRequest
            The request.
        span : Span
            The span to fill.

        Returns
        -------
        SourceResult

        """
        pattern = self.context.resolve(self.config.path)
        files = expand(pattern, request.bar_type)
        if not files:
            raise SourceError(f"no file matches {pattern}", status="empty")
        tables = [self._read(f, request, span) for f in files]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        table = _limit(table, span.limit)
        return SourceResult(table, timestamp_is=self.config.timestamp_is)

    # -- reading -------------------------------------------------------------------------------

    def _layout(self, path: str, head: bytes) -> _Layout:
        cfg = self.config
        text = head.decode("utf-8", errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()][:20]
        if not lines:
            raise SourceError(f"{path}: empty file", status="empty")
        delimiter = cfg.delimiter
        if delimiter is None:
            try:
                delimiter = pycsv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
            except pycsv.Error:
                delimiter = ","
        first = next(pycsv.reader([lines[0]], delimiter=delimiter))
        header = cfg.header
        if header is None:
            header = not any(_is_number(f.strip()) or f.strip()[:1].isdigit() for f in first)
        names = [f.strip() for f in first] if header else [f"f{i}" for i in range(len(first))]
        return _Layout(delimiter, header, names, *self._columns(path, names, header, cfg.columns))

    def _columns(
        self,
        path: str,
        names: list[str],
        header: bool,
        columns: CsvColumns | None,
    ) -> tuple[list[str], dict[str, str | None]]:
        lower = {n.lower(): n for n in names}

        def pick(key: str, given: str | int | None, required: bool) -> str | None:
            if given is not None:
                if isinstance(given, int):
                    if not 0 <= given < len(names):
                        raise SourceError(
                            f"{path}: columns.{key} = {given} is out of range "
                            f"(the file has {len(names)} columns)",
                        )
                    return names[given]
                if given in names:
                    return given
                if given.lower() in lower:
                    return lower[given.lower()]
                raise SourceError(
                    f"{path}: column '{given}' (columns.{key}) not found; the header has: "
                    f"{', '.join(names)}",
                )
            if not header:
                positional = {
                    "timestamp": 0,
                    "open": 1,
                    "high": 2,
                    "low": 3,
                    "close": 4,
                    "volume": 5,
                }
                idx = positional.get(key)
                return names[idx] if idx is not None and idx < len(names) else None
            for candidate in _NAMES[key]:
                if candidate in lower:
                    return lower[candidate]
            if required:
                raise SourceError(
                    f"{path}: no '{key}' column in the header ({', '.join(names)}); "
                    f"set columns.{key}",
                )
            return None

        cm = columns or CsvColumns()
        values = {k: pick(k, getattr(cm, k), k != "volume") for k in _VALUES}
        if cm.date is not None or cm.time is not None:
            if cm.date is None or cm.time is None:
                raise SourceError(
                    f"{path}: set both columns.date and columns.time, or columns.timestamp"
                )
            ts = [str(pick("date", cm.date, True)), str(pick("time", cm.time, True))]
        elif cm.timestamp is not None:
            ts = [str(pick("timestamp", cm.timestamp, True))]
        else:
            date = pick("date", None, False) if header else None
            time = lower.get("time") if header else None
            stamp = (
                next((lower[c] for c in _NAMES["timestamp"][:-1] if c in lower), None)
                if header
                else None
            )
            if stamp is None and date is not None and time is not None:
                ts = [date, time]
            else:
                found = stamp or date or time or pick("timestamp", None, True)
                ts = [str(found)]
        return ts, values

    def _read(self, path: str, request: BarRequest, span: Span) -> pa.Table:
        try:
            with _open_bytes(path) as fh:
                head = fh.read(1 << 16)
        except FileNotFoundError:
            raise SourceError(f"{path}: file not found") from None
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
            raise SourceError(f"{path}: cannot read: {e}") from None
        try:
            layout = self._layout(path, head)
        except SourceError as e:
            if e.status == "empty":
                return empty_table()
            raise
        try:
            return self._stream(path, layout, request, span, typed=True)
        except pa.ArrowInvalid:
            # A stray value in a numeric column: read as text and coerce per value.
            return self._stream(path, layout, request, span, typed=False)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
            raise SourceError(f"{path}: cannot read: {e}") from None

    def _stream(
        self,
        path: str,
        layout: _Layout,
        request: BarRequest,
        span: Span,
        typed: bool,
    ) -> pa.Table:
        used = [c for c in (*layout.ts, *layout.values.values()) if c is not None]
        types: dict[str, Any] = {}
        for name in layout.values.values():
            if name is not None:
                types[name] = pa.float64() if typed else pa.string()
        if not typed:
            for name in layout.ts:
                types[name] = pa.string()
        bad_rows: list[int] = []

        def skip(row: Any) -> str:
            bad_rows.append(row.number if row.number is not None else -1)
            return "skip"

        read = pacsv.ReadOptions(
            column_names=None if layout.header else layout.names,
            block_size=_BLOCK,
            use_threads=True,
        )
        parse = pacsv.ParseOptions(delimiter=layout.delimiter, invalid_row_handler=skip)
        convert = pacsv.ConvertOptions(
            include_columns=list(dict.fromkeys(used)),
            column_types=types,
            # Only empty fields are null, so a literal "nan" is non_finite, not unparseable.
            null_values=[""],
            strings_can_be_null=True,
        )
        pieces = []
        row = 0
        step = request.step_ns
        shift = step if self.config.timestamp_is == "close" else 0
        try:
            with _open_bytes(path) as fh:
                reader = pacsv.open_csv(
                    fh, read_options=read, parse_options=parse, convert_options=convert
                )
                for batch in reader:
                    n = batch.num_rows
                    table = self._to_bars(pa.Table.from_batches([batch]), layout, typed)
                    keep = in_span(table.column("ts"), span, shift, step)
                    rows = pa.array(np.arange(row + 1, row + n + 1, dtype=np.int64))
                    table = table.append_column("_row", rows).filter(keep)
                    pieces.append(table)
                    row += n
        except pa.ArrowInvalid as e:
            if "Empty CSV file" in str(e):
                return empty_table()
            if typed and "conversion error" in str(e).lower():
                raise
            raise SourceError(f"{path}: cannot parse CSV: {e}") from None
        result = (
            pa.concat_tables(pieces)
            if pieces
            else empty_table().append_column("_row", pa.array([], pa.int64()))
        )
        if bad_rows:
            nulls = pa.table(
                {
                    **{f.name: pa.nulls(len(bad_rows), f.type) for f in BAR_SCHEMA},
                    "_row": pa.array(bad_rows, pa.int64()),
                },
            )
            result = pa.concat_tables([result, nulls])
        return result.append_column(
            "_file", pa.array([Path(path).name] * result.num_rows, pa.string()).dictionary_encode()
        )

    def _to_bars(self, table: pa.Table, layout: _Layout, typed: bool) -> pa.Table:
        cfg = self.config
        if len(layout.ts) == 2:
            raw = join_date_time(table.column(layout.ts[0]), table.column(layout.ts[1]))
        else:
            raw = table.column(layout.ts[0])
        ts = to_epoch_ns(raw, cfg.timestamp_format, cfg.timezone)
        out: dict[str, Any] = {"ts": ts}
        n = table.num_rows
        for key in _VALUES:
            name = layout.values[key]
            if name is None:
                out[key] = pa.array(np.zeros(n))
                continue
            col = table.column(name)
            if not typed:
                col = _coerce_float(col)
            out[key] = col
        return pa.table(out, schema=BAR_SCHEMA)


def _coerce_float(col: pa.ChunkedArray) -> pa.Array:
    import pandas as pd

    text = pd.Series(col.to_numpy(zero_copy_only=False), dtype="object")
    values = pd.to_numeric(text, errors="coerce")
    # Junk becomes null (unparseable); a literal nan or inf stays (non_finite).
    junk = values.isna() & ~text.astype(str).str.strip().str.lower().isin(["nan", "-nan", "+nan"])
    return pa.array(values.to_numpy(dtype=np.float64), mask=junk.to_numpy())


def _limit(table: pa.Table, limit: int | None) -> pa.Table:
    """Keep unparseable rows and the rows of the newest `limit` distinct timestamps."""
    if limit is None or table.num_rows <= limit:
        return table
    ts = table.column("ts")
    valid = pc.drop_null(ts).to_numpy()
    unique = np.unique(valid)
    if len(unique) <= limit:
        return table
    threshold = unique[-limit]
    keep = pc.fill_null(pc.greater_equal(ts, threshold), True)
    return table.filter(keep)
