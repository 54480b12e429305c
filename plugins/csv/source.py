"""Reading bars from CSV files with pyarrow's streaming reader."""

from __future__ import annotations

import codecs
import csv as pycsv
import gzip
import io
import os
import re
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from nautilus_backfill.errors import SourceError
from nautilus_backfill.paths import expand, fill_template
from nautilus_backfill.plugins.csv.config import CsvColumns, CsvSourceConfig
from nautilus_backfill.source import (
    BAR_SCHEMA,
    BarRequest,
    BarSource,
    SourceResult,
    Span,
    in_span,
)
from nautilus_backfill.timestamps import (
    TimestampError,
    TimestampFormat,
    join_date_time,
    parse_timestamps,
    resolve_format,
    with_awareness,
)
from pyarrow import csv as pacsv

_NAMES = {
    "timestamp": ("timestamp", "datetime", "date_time", "time_stamp", "ts", "open_time", "time"),
    "date": ("date", "day"),
    "time": ("time",),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c", "last"),
    "volume": ("volume", "vol", "v", "tickvol", "tick_volume"),
}
_VALUES = ("open", "high", "low", "close", "volume")
_POSITIONAL = {"timestamp": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
_CLOCK = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$")
_BLOCK = 1 << 22
_HEAD = 1 << 16
# Count mode reads plain files at least this large from the end (when they are sorted).
TAIL_MIN_BYTES = 1 << 20
_PROBES = 32
_OUT_SCHEMA = pa.schema([*BAR_SCHEMA, ("_row", pa.int64()), ("_raw", pa.string())])


def _header_key(name: str) -> str:
    # MetaTrader writes <OPEN>, <TICKVOL>; others " Open ": all match "open", "tickvol".
    return name.strip().strip("<>").strip().lower()


@dataclass
class _Layout:
    delimiter: str
    skip: int  # lines before the first data line: blank lines and the header
    width: int  # fields per data row
    names: list[str]  # header names, or positions for a headerless file
    ts: list[int]  # one column, or date + time
    values: dict[str, int | None]
    notes: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[int]:
        return list(dict.fromkeys([*self.ts, *(v for v in self.values.values() if v is not None)]))

    def label(self) -> str:
        return " + ".join(f"'{self.names[i]}'" for i in self.ts)


def _col(i: int) -> str:
    return f"f{i}"


def _check_file(path: str) -> int:
    # Before any open(): opening a FIFO blocks until a writer comes.
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found", status="empty") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(
            f"{path}: is a folder, not a file; set path to the files in it (e.g. {path}/*.csv)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(
            f"{path}: not a regular file (a FIFO, socket or device); point path at a file"
        )
    return st.st_size


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


def _decode_head(path: str, head: bytes, encoding: str) -> str:
    utf8 = codecs.lookup(encoding).name == "utf-8"
    if utf8 and head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    if not wide and head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise SourceError(
            f'{path}: is UTF-16 text (it starts with its mark); set encoding = "utf-16"'
        )
    nul = head.find(b"\x00")
    if nul >= 0 and not wide:
        raise SourceError(
            f"{path}: not a text file (a NUL byte at offset {nul}); point path at CSV files"
        )
    try:
        return codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError as e:
        line = head[: e.start].count(b"\n") + 1
        raise SourceError(
            f"{path}: line {line} is not {encoding} text (byte 0x{head[e.start]:02x}); set "
            'encoding = "latin-1" (or the encoding the file was saved in), or save it as UTF-8',
        ) from None


class _Utf8Checked(io.RawIOBase):
    # A byte stream that refuses bytes that are not UTF-8 as it passes them on, naming the
    # line: pyarrow itself prints "Exception ignored" when a broken row is not UTF-8.
    def __init__(self, raw: IO[bytes], path: str) -> None:
        self.raw, self.path = raw, path
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.lines = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        chunk = bytes(memoryview(buffer)[:n]) if n else b""
        try:
            self.decoder.decode(chunk, final=not n)
        except UnicodeDecodeError as e:
            line = self.lines + chunk[: max(0, e.start)].count(b"\n") + 1
            raise SourceError(
                f'{self.path}: line {line} is not utf-8 text; set encoding = "latin-1" (or the '
                "encoding the file was saved in), or save it as UTF-8",
            ) from None
        self.lines += chunk.count(b"\n")
        return n or 0


def _sniff(lines: list[str]) -> str:
    # The delimiter that splits the first lines into the same number (> 1) of fields most
    # often; ties go to the order below. csv.Sniffer is thrown off by a few odd lines.
    best, best_score = ",", (-1.0, 0)
    for d in (",", ";", "\t", "|"):
        widths = [len(r) for r in pycsv.reader(lines[:20], delimiter=d)]
        if not widths:
            continue
        mode, count = Counter(widths).most_common(1)[0]
        if mode < 2:
            continue
        score = (count / len(widths), mode)
        if score > best_score:
            best, best_score = d, score
    return best


def _line_numbers(index: np.ndarray, skipped: np.ndarray, first: int) -> np.ndarray:
    # The file line of each data row: rows are the lines from `first` on, minus `skipped`.
    if not len(skipped):
        return index + first
    rel = np.sort(skipped - first)
    rel = rel[rel >= 0]
    gaps = rel - np.arange(len(rel))
    return index + first + np.searchsorted(gaps, index, side="right")


# A number written with a decimal comma, as a European locale exports it.
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


def _coerce_float(col: pa.Array, decimal: str = ".") -> pa.Array:
    text = pd.Series(col.to_numpy(zero_copy_only=False), dtype="object")
    if decimal == ",":
        # A "." is then a thousands separator (15.234 is fifteen thousand): never read as a
        # decimal point, the value is unparseable.
        as_text = text.astype(str)
        dotted = text.notna() & as_text.str.contains(".", regex=False)
        text = text.where(text.isna(), as_text.str.replace(",", ".", regex=False))
        text = text.where(~dotted, "junk")
    values = pd.to_numeric(text, errors="coerce")
    # Junk becomes null (unparseable); a literal nan or inf stays (non_finite).
    junk = values.isna() & ~text.astype(str).str.strip().str.lower().isin(["nan", "-nan", "+nan"])
    return pa.array(values.to_numpy(dtype=np.float64), mask=junk.to_numpy())


def _scale(col: pa.Array, scale: float) -> pa.Array:
    # Dividing by 10000 is exact where multiplying by 0.0001 is not (1672500 -> 167.25).
    inverse = 1.0 / scale
    values = col.to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore", invalid="ignore"):
        if abs(inverse - round(inverse)) < 1e-9 * inverse:
            out = values / round(inverse)
        else:
            out = values * scale
    return pa.array(out, mask=pc.is_null(col).to_numpy(zero_copy_only=False))


class _Newest:
    # Count mode: the rows of the newest `limit` distinct timestamps seen so far, plus every
    # row that has no usable timestamp (so it is counted). Bounded by the request, not the file:
    # rows are kept until they pass twice the request, then cut back (amortized, so a request
    # as large as the file costs one pass, not one sort per batch).
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[pa.Table] = []
        self.rows = 0
        self.other: list[pa.Table] = []
        self.threshold: int | None = None

    def add(self, table: pa.Table) -> None:
        ts = table.column("ts")
        usable = pc.fill_null(pc.greater_equal(ts, 0), False)
        if not pc.all(usable).as_py():
            other = table.filter(pc.invert(usable))
            if other.num_rows:
                self.other.append(other)
            table = table.filter(usable)
        if self.threshold is not None:
            table = table.filter(pc.greater_equal(table.column("ts"), self.threshold))
        if not table.num_rows:
            return
        self.parts.append(table)
        self.rows += table.num_rows
        if self.rows > 2 * self.limit:
            self._cut()

    def _cut(self) -> None:
        joined = pa.concat_tables(self.parts) if len(self.parts) > 1 else self.parts[0]
        values = joined.column("ts").to_numpy()
        if len(values) > self.limit:
            unique = np.unique(values)
            if len(unique) > self.limit:
                self.threshold = int(unique[-self.limit])
                joined = joined.filter(pa.array(values >= self.threshold))
        self.parts, self.rows = [joined], joined.num_rows

    def table(self) -> pa.Table | None:
        if self.rows > self.limit:
            self._cut()
        parts = [t for t in self.parts if t.num_rows] + self.other
        return pa.concat_tables(parts) if parts else None


class CsvBarSource(BarSource):
    """
    Bars from CSV files: header or none, any delimiter, unambiguous timestamp layouts.
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
            filled = fill_template(pattern, request.bar_type)
            raise SourceError(f"no file matches {filled}", status="empty")
        for f in files:
            _check_file(f)
        notes: list[str] = []
        tables = [self._read(f, request, span, notes) for f in files]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        table = _limit(table, span.limit)
        return SourceResult(table, timestamp_is=self.config.timestamp_is, notes=notes)

    def check(self, requests: list[BarRequest]) -> list[str]:
        """
        Return what is wrong with this source's files for `requests`, reading only their heads.

        Checks that the path matches files that are regular, text in the configured encoding,
        with the columns the config names, a header as wide as the rows, and timestamps the
        format reads on the first rows.

        Parameters
        ----------
        requests : list[BarRequest]
            The configured requests (they fill the path template).

        Returns
        -------
        list[str]
            One line per problem, starting with the key it concerns (``path: ...``).

        """
        problems: list[str] = []
        seen: set[str] = set()
        pattern = self.context.resolve(self.config.path)
        for request in requests:
            try:
                files = expand(pattern, request.bar_type)
            except SourceError as e:
                problems.append(f"path: {e}")
                continue
            if not files:
                filled = fill_template(pattern, request.bar_type)
                problems.append(f"path: no file matches {filled} (for {request.bar_type})")
            for path in files[:20]:
                if path in seen:
                    continue
                seen.add(path)
                problems.extend(self._check_one(path))
        return list(dict.fromkeys(problems))

    def _check_one(self, path: str) -> list[str]:
        try:
            _check_file(path)
            with _open_bytes(path) as fh:
                head = fh.read(_HEAD + 1)
        except SourceError as e:
            return [f"path: {e}"]
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
            return [f"path: {path}: cannot read: {e}"]
        try:
            text = _decode_head(path, head[:_HEAD], self.config.encoding)
        except SourceError as e:
            return [f"{'encoding' if 'encoding =' in str(e) else 'path'}: {e}"]
        try:
            layout = self._layout(path, text, complete=len(head) <= _HEAD)
        except SourceError as e:
            message = str(e)
            found = re.search(r"columns\.(\w+)", message)
            key = f"columns.{found.group(1)}" if found else "columns"
            return [f"{key}: {message}"]
        if layout is None:
            return []
        return self._check_timestamps(path, head[:_HEAD], layout, len(head) <= _HEAD)

    def _check_timestamps(
        self, path: str, head: bytes, layout: _Layout, complete: bool
    ) -> list[str]:
        if not complete:
            head = head[: head.rfind(b"\n") + 1]
        skipped: list[int] = []
        read, parse, convert = self._options(layout, False, layout.skip, lambda r: "skip")
        try:
            table = pacsv.read_csv(
                io.BytesIO(head), read_options=read, parse_options=parse, convert_options=convert
            )
        except pa.ArrowInvalid as e:
            return [f"path: {path}: cannot parse CSV: {e}"]
        if not table.num_rows:
            return []
        raw = self._raw_timestamps(table.slice(0, 200), layout)
        try:
            fmt = self._resolve(path, layout, raw, 0, skipped, layout.skip + 1)
            ts = parse_timestamps(raw, fmt, self.config.timezone)
        except TimestampError as e:
            return [f"timestamp_format: {self._locate(path, layout, e, 0, [], layout.skip + 1)}"]
        except SourceError as e:
            return [f"timestamp_format: {e}"]
        if ts.null_count == len(ts) and raw.null_count < len(raw):
            first = next(v for v in raw.to_pylist() if v)
            return [
                f"timestamp_format: {path}: '{fmt.describe()}' reads none of the first rows of "
                f"column {layout.label()} (such as '{first}'); set timestamp_format to their "
                "layout",
            ]
        if self.config.decimal == ".":
            for key in _VALUES:
                i = layout.values[key]
                if i is None:
                    continue
                values = table.column(_col(i)).slice(0, 200).to_pylist()
                comma = next((v for v in values if v and _DECIMAL_COMMA.match(str(v))), None)
                if comma is not None:
                    return [_decimal_advice(path, key, comma)]
        return []

    # -- layout --------------------------------------------------------------------------------

    def _layout(self, path: str, text: str, complete: bool) -> _Layout | None:
        cfg = self.config
        lines = text.splitlines()
        if not complete and lines:
            lines = lines[:-1]  # cut at the end of the head: may be partial
        lead = next((i for i, ln in enumerate(lines) if ln.strip()), None)
        if lead is None:
            return None
        window = [ln for ln in lines[lead : lead + 40] if ln.strip()]
        delimiter = cfg.delimiter
        if delimiter is None:
            delimiter = _sniff(window)
        first = next(pycsv.reader([lines[lead]], delimiter=delimiter))
        header = cfg.header
        if header is None:
            header = not any(_is_number(f.strip()) or f.strip()[:1].isdigit() for f in first)
        data = window[1:] if header else window
        widths = Counter(len(r) for r in pycsv.reader(data[:20], delimiter=delimiter))
        width = widths.most_common(1)[0][0] if widths else len(first)
        if header:
            names = [f.strip() for f in first]
            while len(names) > width and not names[-1]:
                names.pop()  # a trailing delimiter on the header line
        else:
            names = [str(i) for i in range(width)]
        layout = _Layout(delimiter, lead + (1 if header else 0), width, names, [], {})
        if not header and cfg.columns is None and len(first) > 5 and _CLOCK.match(first[1]):
            # Date and time in two fields (MetaTrader, NinjaTrader exports): the positional
            # default would read the time as the open price.
            raise SourceError(
                f"{path}: line {lead + 1} has no header and its second field '{first[1]}' is a "
                "time of day: set columns = { date = 0, time = 1, open = 2, high = 3, low = 4, "
                "close = 5, volume = 6 } (MetaTrader's layout), or the positions your file uses"
            )
        self._columns(path, layout, header, lead + 1)
        return layout

    def _columns(self, path: str, layout: _Layout, header: bool, header_line: int) -> None:
        cm = self.config.columns or CsvColumns()
        names, width = layout.names, layout.width
        wanted = {k: getattr(cm, k) for k in ("timestamp", "date", "time", *_VALUES)}
        if header and len(names) != width:
            given = [v for v in wanted.values() if v is not None]
            if (
                given
                and all(isinstance(v, int) for v in given)
                and (cm.timestamp is not None or (cm.date is not None and cm.time is not None))
            ):
                layout.notes.append(
                    f"{Path(path).name}: the header has {len(names)} names for {width} fields "
                    "a row; read by the positions in columns"
                )
                layout.names = [str(i) for i in range(width)]
                header = False
            else:
                raise SourceError(self._width_message(path, names, width, header_line))
        lower: dict[str, list[int]] = {}
        for i, name in enumerate(layout.names if header else []):
            lower.setdefault(_header_key(name), []).append(i)

        def by_name(key: str, name: str) -> int | None:
            hits = lower.get(_header_key(name), [])
            if len(hits) > 1:
                raise SourceError(
                    f"{path}: the header has '{name}' {len(hits)} times (positions "
                    f"{', '.join(map(str, hits))}, counting from 0); set columns.{key} to the "
                    f"position to use, e.g. columns = {{ {key} = {hits[0]} }}",
                )
            return hits[0] if hits else None

        def pick(key: str, given: str | int | None, required: bool) -> int | None:
            if isinstance(given, int):
                if not 0 <= given < width:
                    raise SourceError(
                        f"{path}: columns.{key} = {given} is past the last column (rows have "
                        f"{width} fields: positions 0 to {width - 1})",
                    )
                return given
            if isinstance(given, str):
                if not header:
                    raise SourceError(
                        f"{path}: columns.{key} = '{given}' names a column, but the file has "
                        f"no header line; give a position (0 to {width - 1})",
                    )
                found = by_name(key, given)
                if found is None:
                    raise SourceError(
                        f"{path}: column '{given}' (columns.{key}) not found; the header has: "
                        f"{', '.join(names)}",
                    )
                return found
            if not header:
                idx = _POSITIONAL.get(key)
                return idx if idx is not None and idx < width else None
            for candidate in _NAMES[key]:
                found = by_name(key, candidate)
                if found is not None:
                    return found
            if required:
                missing.append(key)
            return None

        def no_columns() -> SourceError:
            # Every column the header lacks at once, not one per run.
            split = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "'|'"}
            keys = ", ".join(f"'{k}'" for k in missing)
            sets = ", ".join(f"columns.{k}" for k in missing)
            return SourceError(
                f"{path}: no {keys} column{'s' * (len(missing) > 1)} in the header "
                f"({', '.join(names)}; split at "
                f"{split.get(layout.delimiter, repr(layout.delimiter))}); set "
                f"{sets}" + ("" if len(names) > 1 else " or delimiter"),
            )

        missing: list[str] = []
        layout.values = {k: pick(k, wanted[k], k != "volume") for k in _VALUES}
        if missing:
            raise no_columns()
        if cm.date is not None or cm.time is not None:
            if cm.date is None or cm.time is None:
                raise SourceError(
                    f"{path}: set both columns.date and columns.time, or columns.timestamp"
                )
            layout.ts = [pick("date", cm.date, True), pick("time", cm.time, True)]  # type: ignore[list-item]
            if missing:
                raise no_columns()
        elif cm.timestamp is not None:
            layout.ts = [pick("timestamp", cm.timestamp, True)]  # type: ignore[list-item]
            if missing:
                raise no_columns()
        elif not header:
            layout.ts = [0]
        else:
            stamp = None
            for c in _NAMES["timestamp"][:-1]:
                stamp = by_name("timestamp", c)
                if stamp is not None:
                    break
            date = pick("date", None, False)
            time = by_name("time", "time")
            if stamp is None and date is not None and time is not None:
                layout.ts = [date, time]
            else:
                found = stamp if stamp is not None else date if date is not None else time
                if found is None:
                    found = pick("timestamp", None, True)
                    if missing:
                        raise no_columns()
                layout.ts = [found]  # type: ignore[list-item]

    @staticmethod
    def _width_message(path: str, names: list[str], width: int, header_line: int) -> str:
        keys: list[tuple[str, int]] = []
        lower = [n.lower() for n in names]
        for key in ("date", "time", "timestamp", *_VALUES):
            for candidate in _NAMES[key]:
                if candidate in lower and lower.index(candidate) < width:
                    i = lower.index(candidate)
                    if all(i != j for _, j in keys):
                        keys.append((key, i))
                    break
        if any(k == "date" for k, _ in keys) and any(k == "time" for k, _ in keys):
            keys = [(k, i) for k, i in keys if k != "timestamp"]
        else:
            keys = [(k, i) for k, i in keys if k not in ("date", "time")] or keys
        example = ", ".join(f"{k} = {i}" for k, i in keys)
        return (
            f"{path}: line {header_line} (the header) has {len(names)} names but rows have "
            f"{width} fields, so names cannot be matched to fields; fix the header line, or "
            f"give every column by position (counting from 0), e.g. columns = {{ {example} }} "
            "if the names line up from the left; check them against a data row"
        )

    # -- reading -------------------------------------------------------------------------------

    def _read(self, path: str, request: BarRequest, span: Span, notes: list[str]) -> pa.Table:
        size = _check_file(path)
        try:
            with _open_bytes(path) as fh:
                head = fh.read(_HEAD + 1)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
            raise SourceError(f"{path}: cannot read: {e}") from None
        text = _decode_head(path, head[:_HEAD], self.config.encoding)
        layout = self._layout(path, text, complete=len(head) <= _HEAD)
        if layout is None:
            raise SourceError(f"{path}: empty file", status="empty")
        try:
            return self._read_rows(path, request, span, layout, size)
        finally:
            notes.extend(layout.notes)  # what the layout and the reading found, once read

    def _read_rows(
        self, path: str, request: BarRequest, span: Span, layout: _Layout, size: int
    ) -> pa.Table:
        plain = not path.endswith((".gz", ".zip"))
        utf8 = codecs.lookup(self.config.encoding).name == "utf-8"
        attempts = (True, False)
        for typed in attempts:
            try:
                # From the end only when the user says the file is sorted: a row out of order
                # in the part not read would be missed, and probes cannot prove it is not there.
                if (
                    self.config.sorted
                    and span.limit is not None
                    and plain
                    and utf8
                    and size >= TAIL_MIN_BYTES
                ):
                    tail = self._read_tail(path, size, layout, request, span, typed)
                    if tail is not None:
                        return tail
                return self._stream(path, layout, request, span, typed)
            except pa.ArrowInvalid as e:
                if "UTF8" in str(e) or "UTF-8" in str(e):
                    raise SourceError(
                        f"{path}: not UTF-8 text past its first lines; set encoding = "
                        '"latin-1" (or the encoding the file was saved in), or save it as UTF-8',
                    ) from None
                if typed and "conversion error" in str(e).lower():
                    continue  # a stray value in a numeric column: read as text, judge per value
                raise SourceError(f"{path}: cannot parse CSV: {e}") from None
            except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
                raise SourceError(f"{path}: cannot read: {e}") from None
        raise AssertionError("unreachable")

    def _options(
        self, layout: _Layout, typed: bool, skip: int, handler: Callable[[Any], str]
    ) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
        types: dict[str, Any] = {}
        for i in layout.values.values():
            if i is not None:
                types[_col(i)] = pa.float64() if typed else pa.string()
        for i in layout.ts:
            types[_col(i)] = pa.string()  # read as text: the format decides, not inference
        read = pacsv.ReadOptions(
            column_names=[_col(i) for i in range(layout.width)],
            skip_rows=skip,
            block_size=_BLOCK,
            use_threads=False,  # so invalid rows come with their line numbers, in order
            encoding=self.config.encoding,
        )
        parse = pacsv.ParseOptions(
            delimiter=layout.delimiter, invalid_row_handler=handler, ignore_empty_lines=False
        )
        convert = pacsv.ConvertOptions(
            include_columns=[_col(i) for i in layout.used],
            column_types=types,
            decimal_point=self.config.decimal,
            # Only empty fields are null, so a literal "nan" is non_finite, not unparseable.
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        return read, parse, convert

    def _batches(
        self,
        path: str,
        layout: _Layout,
        typed: bool,
        reader: Iterator[pa.RecordBatch],
        skipped: list[int],
        first_line: int,
        fmt: TimestampFormat | None = None,
        resolved: list[TimestampFormat] | None = None,
    ) -> Iterator[pa.Table]:
        # Each batch as bars with `_idx` (data row number from 0) and `_raw`; blank lines gone.
        row = 0
        for batch in reader:
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            raw = self._raw_timestamps(table, layout)
            if fmt is None and raw.null_count < len(raw):
                fmt = self._resolve(path, layout, raw, row, skipped, first_line)
            if fmt is not None and resolved is not None and not resolved:
                resolved.append(fmt)
            try:
                ts = (
                    parse_timestamps(raw, fmt, self.config.timezone)
                    if fmt is not None
                    else pa.nulls(n, pa.int64())
                )
            except TimestampError as e:
                raise self._locate(path, layout, e, row, skipped, first_line) from None
            out: dict[str, Any] = {"ts": ts}
            blank = pc.is_null(raw)
            for key in _VALUES:
                i = layout.values[key]
                if i is None:
                    out[key] = pa.array(np.zeros(n))
                    continue
                col = table.column(_col(i)).combine_chunks()
                blank = pc.and_(blank, pc.is_null(col))
                if not typed:
                    raw_col = col
                    col = _coerce_float(col, self.config.decimal)
                    if col.null_count > raw_col.null_count:
                        self._decimal_note(path, layout, key, raw_col, col)
                if key != "volume" and self.config.price_scale is not None:
                    col = _scale(col, self.config.price_scale)
                out[key] = col
            out["_idx"] = pa.array(np.arange(row, row + n, dtype=np.int64))
            out["_raw"] = raw
            bars = pa.table(out)
            row += n
            if pc.any(blank).as_py():
                bars = bars.filter(pc.invert(blank))  # an empty line, not a bar
            yield bars

    def _decimal_note(
        self, path: str, layout: _Layout, key: str, raw: pa.Array, read: pa.Array
    ) -> None:
        # Values the decimal mark explains: say so once, with what to set or fix.
        if any(n.startswith("decimal:") for n in layout.notes):
            return
        failed = pc.and_(pc.is_null(read), pc.is_valid(raw))
        sample = [str(v) for v in raw.filter(failed).slice(0, 20).to_pylist()]
        if self.config.decimal == ".":
            comma = next((v for v in sample if _DECIMAL_COMMA.match(v)), None)
            if comma is not None:
                layout.notes.append(_decimal_advice(path, key, comma))
            return
        dotted = next((v for v in sample if "." in v), None)
        if dotted is not None:
            layout.notes.append(
                f"decimal: {Path(path).name}: {key} values such as '{dotted}' hold a '.' while "
                'decimal = ","; a thousands separator is not read (15.234 could be 15234 or '
                "15.234): those rows are unparseable; export without thousands separators"
            )

    def _raw_timestamps(self, table: pa.Table, layout: _Layout) -> pa.Array:
        if len(layout.ts) == 2:
            return join_date_time(
                table.column(_col(layout.ts[0])), table.column(_col(layout.ts[1]))
            )
        col = table.column(_col(layout.ts[0]))
        return pc.utf8_trim_whitespace(col.combine_chunks())

    def _resolve(
        self,
        path: str,
        layout: _Layout,
        raw: pa.Array,
        row: int,
        skipped: list[int],
        first_line: int,
    ) -> TimestampFormat:
        try:
            fmt = resolve_format(raw, self.config.timestamp_format)
        except TimestampError as e:
            raise SourceError(f"{e.located(f'{path}: column {layout.label()}', [])}") from None
        return with_awareness(fmt, raw)

    def _locate(
        self,
        path: str,
        layout: _Layout,
        e: TimestampError,
        row: int,
        skipped: list[int],
        first_line: int,
    ) -> SourceError:
        index = np.array([row + p for p in e.positions], dtype=np.int64)
        lines = _line_numbers(index, np.array(skipped, dtype=np.int64), first_line)
        return SourceError(
            e.located(f"{path}: column {layout.label()}", [f"line {n}" for n in lines])
        )

    def _stream(
        self,
        path: str,
        layout: _Layout,
        request: BarRequest,
        span: Span,
        typed: bool,
    ) -> pa.Table:
        skipped: list[int] = []
        bad: list[tuple[int, str]] = []

        def skip(row: Any) -> str:
            number = row.number if row.number is not None else 0
            skipped.append(number)
            if row.text.strip():
                bad.append((number, row.text[:60]))
            return "skip"

        read, parse, convert = self._options(layout, typed, layout.skip, skip)
        step = request.step_ns
        shift = step if self.config.timestamp_is == "close" else 0
        newest = _Newest(span.limit) if span.limit is not None else None
        pieces: list[pa.Table] = []
        first_line = layout.skip + 1
        with _open_bytes(path) as raw:
            fh: IO[bytes] = raw
            if codecs.lookup(self.config.encoding).name == "utf-8":
                fh = io.BufferedReader(_Utf8Checked(raw, path), 1 << 20)
            try:
                reader = pacsv.open_csv(
                    fh, read_options=read, parse_options=parse, convert_options=convert
                )
            except pa.ArrowInvalid as e:
                if "Empty CSV file" in str(e):
                    reader = iter(())  # type: ignore[assignment]
                else:
                    raise
            for bars in self._batches(path, layout, typed, reader, skipped, first_line):
                bars = bars.filter(_wanted(bars.column("ts"), span, shift, step))
                if newest is not None:
                    newest.add(bars)
                elif bars.num_rows:
                    pieces.append(bars)
        if newest is not None:
            kept = newest.table()
            pieces = [kept] if kept is not None else []
        return self._finish(path, pieces, skipped, bad, first_line)

    def _finish(
        self,
        path: str,
        pieces: list[pa.Table],
        skipped: list[int],
        bad: list[tuple[int, str]],
        first_line: int,
        lines: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> pa.Table:
        parts = []
        for piece in pieces:
            index = piece.column("_idx").to_numpy()
            if lines is not None:
                rows = lines(index)
            else:
                rows = _line_numbers(index, np.array(skipped, dtype=np.int64), first_line)
            cols = {f.name: piece.column(f.name) for f in BAR_SCHEMA}
            parts.append(
                pa.table({**cols, "_row": rows, "_raw": piece.column("_raw")}, _OUT_SCHEMA)
            )
        if bad:
            parts.append(
                pa.table(
                    {
                        **{f.name: pa.nulls(len(bad), f.type) for f in BAR_SCHEMA},
                        "_row": pa.array([b[0] for b in bad], pa.int64()),
                        "_raw": pa.array([b[1] for b in bad], pa.string()),
                    },
                    _OUT_SCHEMA,
                ),
            )
        result = pa.concat_tables(parts) if parts else _OUT_SCHEMA.empty_table()
        name = pa.array([Path(path).name] * result.num_rows, pa.string()).dictionary_encode()
        return result.append_column("_file", name)

    def _read_tail(
        self,
        path: str,
        size: int,
        layout: _Layout,
        request: BarRequest,
        span: Span,
        typed: bool,
    ) -> pa.Table | None:
        # Count mode on a sorted plain file: parse blocks from the end until the newest
        # `limit` bars are in hand. None when the file is not sorted (the caller streams it).
        assert span.limit is not None
        limit = span.limit
        step = request.step_ns
        shift = step if self.config.timestamp_is == "close" else 0
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            data_start = _offset_after_lines(head, layout.skip)
            if data_start is None or b"\n" not in head:
                return None  # lines end in a bare CR: the stream counts those
            first = self._parse_block(path, layout, typed, head[data_start:], None, complete=False)
            if first is None:
                return None
            fmt, head_rows, _ = first
            head_ts = _usable(head_rows)
            if not _sorted(head_ts):
                return None
            line_bytes = max(8.0, (len(head) - data_start) / max(1, head_rows.num_rows + 1))
            block = max(1 << 16, int(line_bytes * (limit + 64) * 1.5))
            end = size
            pieces: list[tuple[int, pa.Table]] = []  # (chunk start, rows), newest first
            newer_min: int | None = None
            while True:
                start = max(data_start, end - block)
                fh.seek(start)
                chunk = fh.read(end - start)
                if start > data_start:
                    cut = chunk.find(b"\n")
                    if cut < 0:
                        block *= 2
                        continue
                    start += cut + 1
                    chunk = chunk[cut + 1 :]
                parsed = self._parse_block(path, layout, typed, chunk, fmt, complete=True)
                if parsed is None:
                    return None
                _, rows, skipped = parsed
                ts = _usable(rows)
                if not _sorted(ts) or (newer_min is not None and len(ts) and ts[-1] > newer_min):
                    return None
                if len(ts):
                    newer_min = int(ts[0])
                lines = _line_numbers(
                    rows.column("_idx").to_numpy(), np.array(skipped, dtype=np.int64), 1
                )
                rows = rows.append_column("_line", pa.array(lines))
                rows = rows.filter(_wanted(rows.column("ts"), span, shift, step))
                pieces.append((start, rows))
                if start <= data_start:
                    break
                if len(ts) and self._enough(pieces, int(ts[0]), limit):
                    break
                end = start
                block = min(block * 2, 1 << 26)
            earliest = pieces[-1][0]
            if earliest > data_start and not self._probe_sorted(
                fh, data_start, earliest, layout, fmt, head_ts, newer_min
            ):
                return None
            base = _count_newlines(fh, earliest)
        return self._tail_table(path, pieces, base, limit, earliest, size)

    @staticmethod
    def _enough(pieces: list[tuple[int, pa.Table]], oldest: int, limit: int) -> bool:
        # Every earlier row opens at or before `oldest`: done once `limit` distinct newer
        # timestamps are in hand (ties at `oldest` could still continue above the cut).
        ts = np.concatenate([_usable(t) for _, t in pieces])
        return len(np.unique(ts[ts > oldest])) >= limit

    def _tail_table(
        self,
        path: str,
        pieces: list[tuple[int, pa.Table]],
        base: int,
        limit: int,
        earliest: int,
        size: int,
    ) -> pa.Table:
        newest = _Newest(limit)
        parts = []
        # Oldest first, so each piece's first line follows the newlines counted before it.
        with open(path, "rb") as fh:
            for i, (start, rows) in enumerate(reversed(pieces)):
                rows = rows.set_column(
                    rows.column_names.index("_line"),
                    "_line",
                    pc.add(rows.column("_line"), base),
                )
                parts.append(rows)
                end = pieces[len(pieces) - 2 - i][0] if i < len(pieces) - 1 else size
                base += _count_newlines(fh, end, start)
        for rows in parts:
            newest.add(rows)
        kept = newest.table()
        if kept is None:
            return self._finish(path, [], [], [], 1)
        kept = kept.set_column(kept.column_names.index("_idx"), "_idx", kept.column("_line"))
        return self._finish(path, [kept.drop_columns(["_line"])], [], [], 0, lambda idx: idx)

    def _parse_block(
        self,
        path: str,
        layout: _Layout,
        typed: bool,
        data: bytes,
        fmt: TimestampFormat | None,
        complete: bool,
    ) -> tuple[TimestampFormat, pa.Table, list[int]] | None:
        if not complete:
            data = data[: data.rfind(b"\n") + 1]
        if not data:
            return None
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None  # the stream names the line
        try:
            return self._parse_rows(path, layout, typed, data, fmt)
        except SourceError:
            return None  # the stream says it again, with the file's line numbers

    def _parse_rows(
        self, path: str, layout: _Layout, typed: bool, data: bytes, fmt: TimestampFormat | None
    ) -> tuple[TimestampFormat, pa.Table, list[int]] | None:
        skipped: list[int] = []
        bad: list[tuple[int, str]] = []

        def skip(row: Any) -> str:
            skipped.append(row.number if row.number is not None else 0)
            if row.text.strip():
                bad.append((row.number or 0, row.text[:60]))
            return "skip"

        read, parse, convert = self._options(layout, typed, 0, skip)
        reader = pacsv.open_csv(
            io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert
        )
        resolved: list[TimestampFormat] = []
        tables = list(self._batches(path, layout, typed, reader, skipped, 1, fmt, resolved))
        if bad or not tables or not resolved:
            return None  # broken lines: the stream reports them with their line numbers
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return resolved[0], table, skipped

    def _probe_sorted(
        self,
        fh: IO[bytes],
        data_start: int,
        earliest: int,
        layout: _Layout,
        fmt: TimestampFormat,
        head_ts: np.ndarray,
        newest_min: int | None,
    ) -> bool:
        # Rows never read are trusted to be older only if a sample through the file rises.
        lines = []
        for k in range(1, _PROBES + 1):
            fh.seek(data_start + (earliest - data_start) * k // (_PROBES + 1))
            chunk = fh.read(4096)
            parts = chunk.split(b"\n")
            if len(parts) > 2 and parts[1].strip():
                lines.append(parts[1])
        data = b"\n".join(lines) + b"\n"
        parsed = self._parse_block("", layout, False, data, fmt, complete=True)
        if parsed is None:
            return False
        _, rows, skipped = parsed
        if skipped or rows.num_rows != len(lines):
            return False
        ts = rows.column("ts").to_numpy(zero_copy_only=False)
        chain = np.concatenate(
            [head_ts[:1], ts, [newest_min] if newest_min is not None else []]
        ).astype(np.int64)
        return bool(np.all(np.diff(chain) >= 0))


def _usable(table: pa.Table) -> np.ndarray:
    ts = table.column("ts")
    keep = pc.fill_null(pc.greater_equal(ts, 0), False)
    return pc.filter(ts, keep).to_numpy()


def _sorted(ts: np.ndarray) -> bool:
    return bool(np.all(ts[1:] >= ts[:-1]))


def _offset_after_lines(head: bytes, lines: int) -> int | None:
    offset = 0
    for _ in range(lines):
        nl = head.find(b"\n", offset)
        if nl < 0:
            return None
        offset = nl + 1
    return offset


def _count_newlines(fh: IO[bytes], end: int, start: int = 0) -> int:
    # Line numbers of rows read from the end: count in a small reused buffer (no file-sized
    # memory, and no mmap whose pages would count as resident).
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    fh.seek(start)
    left = end - start
    count = 0
    while left > 0:
        n = fh.readinto(view[: min(len(buf), left)])  # type: ignore[attr-defined]
        if not n:
            break
        count += int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8, count=n) == 10))
        left -= n
    return count


def _wanted(ts: pa.Array | pa.ChunkedArray, span: Span, shift: int, step: int) -> pa.Array:
    # Rows in the span, and rows without a usable timestamp (kept so they are counted).
    keep = in_span(ts, span, shift, step)
    return pc.or_(keep, pc.fill_null(pc.less(ts, 0), True))


def _limit(table: pa.Table, limit: int | None) -> pa.Table:
    """Keep rows without a usable timestamp and the rows of the newest `limit` timestamps."""
    if limit is None or table.num_rows <= limit:
        return table
    newest = _Newest(limit)
    newest.add(table)
    return newest.table() or table.slice(0, 0)


def _decimal_advice(path: str, key: str, value: Any) -> str:
    return (
        f"decimal: {Path(path).name}: {key} values such as '{value}' use a decimal comma; "
        'set decimal = ","'
    )
