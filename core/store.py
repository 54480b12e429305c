"""
The write-through store: a NautilusTrader ``ParquetDataCatalog`` that keeps what the network
sources returned, so the next start asks them only for what it lacks.

Layout (NautilusTrader's own): ``<root>/data/bar/<bar type without "/">/<ts_init first>_<ts_init
last>.parquet``, bars in the catalog's fixed-point schema with ``ts_event`` = open and
``ts_init`` = close. Next to the files, ``_backfill.json`` remembers the intervals sources have
answered, bars or not, so nights and holidays are not asked for again.

Crash safety: a file is written under a temporary name, flushed and fsynced, then renamed into
place (on object stores a single PUT, which is atomic). A file whose interval another file's
interval contains is superseded (what a merge leaves if killed before it deletes the old
files): readers skip it and the next write removes it. Writers take a lock per bar type around
read-modify-write (`storelock`: fcntl locally, a conditional PUT on S3), so two processes
backfilling into one store lose nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import fsspec
import numpy as np
import portion as P
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from nautilus_backfill.catalogfmt import (
    FIELDS,
    decode_fixed,
    encode_fixed,
    nautilus_bar_schema,
    newest,
    scan,
)
from nautilus_backfill.config import SourceConfig
from nautilus_backfill.errors import BackfillError
from nautilus_backfill.source import (
    BAR_SCHEMA,
    BarRequest,
    BarSource,
    SourceContext,
    SourceResult,
    Span,
)
from nautilus_backfill.storelock import store_lock
from nautilus_backfill.timeutil import format_ns

META = "_backfill.json"
# A short read (the usual few hundred bars) decodes one small row group, not the whole file;
# 1M-bar reads lose little to the extra groups (measured: 200 bars in 11 ms, not 50-100 ms).
ROWS_PER_GROUP = 20_000
_NAME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{9}Z)_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{9}Z)"
    r"\.parquet$"
)


def _file_stamp(ns: int) -> str:
    # NautilusTrader names files by ISO times with ":" and "." replaced by "-".
    return format_iso(ns).replace(":", "-").replace(".", "-")


def _file_name(first_ts_init: int, last_ts_init: int) -> str:
    return f"{_file_stamp(first_ts_init)}_{_file_stamp(last_ts_init)}.parquet"


def format_iso(ns: int) -> str:
    """Return ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` for UNIX nanoseconds."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    base = np.datetime64(seconds, "s").astype(str)
    return f"{base}.{nanos:09d}Z"


def _parse_stamp(stamp: str) -> int:
    date, time_ = stamp[:10], stamp[11:-1]
    hh, mm, ss, nanos = time_.split("-")
    seconds = np.datetime64(f"{date}T{hh}:{mm}:{ss}", "s").astype(np.int64)
    return int(seconds) * 1_000_000_000 + int(nanos)


@dataclass(frozen=True)
class StoredFile:
    """One bar file: its path and the ``ts_init`` interval its name states."""

    path: str
    first: int
    last: int


class BarStore:
    """
    A store of bars at a local path or an fsspec URL (``s3://bucket/prefix``, ...).

    Parameters
    ----------
    url : str
        The catalog root.
    storage_options : dict, optional
        Passed to fsspec (endpoint, credentials).

    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.lock_wait_s: float | None = None  # how long a write waits for another writer

    # -- layout --------------------------------------------------------------------------------

    def folder(self, bar_type: str) -> str:
        """Return the folder of a bar type (the catalog drops ``/`` from the name)."""
        return f"{self.root}/data/bar/{bar_type.replace('/', '')}"

    def bar_types(self) -> list[str]:
        """Return the folder names of the bar types held."""
        base = f"{self.root}/data/bar"
        if not self.fs.exists(base):
            return []
        return sorted(p.rstrip("/").split("/")[-1] for p in self.fs.ls(base, detail=False))

    def files(self, bar_type: str, live_only: bool = True) -> list[StoredFile]:
        """
        Return the bar files of a bar type, oldest first.

        Parameters
        ----------
        bar_type : str
            The bar type (or its folder name).
        live_only : bool, default True
            Leave out superseded files (interval inside another file's).

        Returns
        -------
        list[StoredFile]

        """
        folder = self.folder(bar_type)
        if not self.fs.exists(folder):
            return []
        everything = _parse_files(self.fs.ls(folder, detail=False))
        return _live(everything) if live_only else everything

    def answered(self, bar_type: str) -> P.Interval:
        """Return the intervals (bar opens, UNIX ns) sources have answered for."""
        path = f"{self.folder(bar_type)}/{META}"
        if not self.fs.exists(path):
            return P.empty()
        try:
            doc = json.loads(self.fs.cat_file(path))
        except (ValueError, OSError) as e:
            raise BackfillError(f"store metadata {path} is unreadable: {e}") from None
        out = P.empty()
        for a, b in doc.get("answered", []):
            out |= P.closedopen(int(a), int(b))
        return out

    # -- reading -------------------------------------------------------------------------------

    def read(self, bar_type: str, step_ns: int, span: Span) -> tuple[pa.Table, int, int]:
        """
        Read the stored bars of `span` (``ts`` = open) with the precisions the files state.

        Returns
        -------
        tuple[pa.Table, int, int]
            The rows (`BAR_SCHEMA`), price precision and size precision (-1 when empty).

        """
        files = self.files(bar_type)
        if span.start is not None:
            files = [f for f in files if f.last >= span.start + step_ns]
        files = [f for f in files if f.first <= span.end]
        if not files:
            return pa.table({n: [] for n in BAR_SCHEMA.names}, schema=BAR_SCHEMA), -1, -1
        dataset = ds.dataset([f.path for f in files], format="parquet", filesystem=self.fs)
        table = scan(
            dataset, "ts_init", span, step_ns, step_ns, lambda v: pa.scalar(v, pa.uint64())
        )
        meta = dataset.schema.metadata or {}
        price = int(meta.get(b"price_precision", b"-1"))
        size = int(meta.get(b"size_precision", b"-1"))
        ts_init = table.column("ts_init").to_numpy().view(np.int64)
        data = {"ts": pa.array(np.subtract(ts_init, step_ns))}
        for name in FIELDS:
            declared = size if name == "volume" else price
            data[name] = pa.array(
                decode_fixed(table.column(name), declared if declared >= 0 else None)
            )
        out = newest(pa.table(data, schema=BAR_SCHEMA), span.limit)
        return out, price, size

    # -- writing -------------------------------------------------------------------------------

    def write(
        self,
        bar_type: str,
        step_ns: int,
        ts_open: np.ndarray,
        values: np.ndarray,
        price_precision: int,
        size_precision: int,
        answered: P.Interval,
    ) -> int:
        """
        Add bars not yet stored and remember the answered intervals.

        Parameters
        ----------
        bar_type : str
            The bar type.
        step_ns : int
            The bar length.
        ts_open : np.ndarray
            Bar opens (UNIX ns), sorted.
        values : np.ndarray
            ``(n, 5)``: open, high, low, close, volume.
        price_precision, size_precision : int
            The instrument's precisions.
        answered : P.Interval
            Intervals of bar opens the sources answered for (with bars or without).

        Returns
        -------
        int
            The number of bars written.

        """
        folder = self.folder(bar_type)
        self.fs.makedirs(folder, exist_ok=True)
        with self._lock(folder):
            self._drop_superseded(bar_type)
            written = 0
            if len(ts_open):
                written = self._merge_in(
                    bar_type, step_ns, ts_open, values, price_precision, size_precision
                )
            self._save_answered(folder, self.answered(bar_type) | answered)
        return written

    def _merge_in(
        self,
        bar_type: str,
        step_ns: int,
        ts_open: np.ndarray,
        values: np.ndarray,
        price_precision: int,
        size_precision: int,
    ) -> int:
        ts_init = ts_open.astype(np.int64) + step_ns
        first, last = int(ts_init[0]), int(ts_init[-1])
        # Files whose intervals meet the new bars' are merged with them, keeping the catalog's
        # intervals disjoint; the stored bar wins over a new one at the same time.
        touched = [f for f in self.files(bar_type) if f.first <= last and f.last >= first]
        old_ts: list[np.ndarray] = []
        old_vals: list[np.ndarray] = []
        if touched:
            table = pa.concat_tables([pq.read_table(f.path, filesystem=self.fs) for f in touched])
            old_ts.append(table.column("ts_init").to_numpy().astype(np.int64))
            old_vals.append(np.column_stack([decode_fixed(table.column(n)) for n in FIELDS]))
        fresh = ~np.isin(ts_init, old_ts[0]) if old_ts else np.ones(len(ts_init), bool)
        if not fresh.any():
            return 0
        all_ts = np.concatenate([*old_ts, ts_init[fresh]])
        all_vals = np.concatenate([*old_vals, values[fresh]])
        order = np.argsort(all_ts, kind="stable")
        all_ts, all_vals = all_ts[order], all_vals[order]
        schema = nautilus_bar_schema(bar_type, price_precision, size_precision)
        width = schema.field("open").type.byte_width
        columns = [
            encode_fixed(all_vals[:, i], price_precision if i < 4 else size_precision, width)
            for i in range(5)
        ]
        columns += [pa.array(all_ts - step_ns, pa.uint64()), pa.array(all_ts, pa.uint64())]
        name = _file_name(int(all_ts[0]), int(all_ts[-1]))
        self._put_table(
            f"{self.folder(bar_type)}/{name}", pa.Table.from_arrays(columns, schema=schema)
        )
        for f in touched:
            if f.path.rstrip("/").split("/")[-1] != name:
                self.fs.rm(f.path)
        return int(fresh.sum())

    def _drop_superseded(self, bar_type: str) -> None:
        for path in self._debris_of(bar_type):
            with contextlib.suppress(OSError):  # another writer may have swept it already
                self.fs.rm(path)

    def trim(self, bar_type: str, step_ns: int, before_ns: int) -> int:
        """
        Remove bars that open before `before_ns` (retention).

        Returns
        -------
        int
            Bars removed.

        """
        folder = self.folder(bar_type)
        removed = 0
        with self._lock(folder):
            for f in self.files(bar_type):
                if f.first - step_ns < before_ns:
                    table = pq.read_table(f.path, filesystem=self.fs)
                    keep = table.filter(
                        pa.compute.greater_equal(
                            table["ts_event"], pa.scalar(before_ns, pa.uint64())
                        )
                    )
                    removed += table.num_rows - keep.num_rows
                    if keep.num_rows:
                        ts = keep.column("ts_init").to_numpy()
                        name = _file_name(int(ts[0]), int(ts[-1]))
                        self._put_table(f"{folder}/{name}", keep)
                    self.fs.rm(f.path)
            if self.fs.exists(f"{folder}/{META}"):
                self._save_answered(
                    folder, self.answered(bar_type) - P.closedopen(-P.inf, before_ns)
                )
        return removed

    # -- instruments ---------------------------------------------------------------------------

    def _catalog(self) -> Any:
        from nautilus_trader.persistence.catalog import ParquetDataCatalog

        if self.local:
            return ParquetDataCatalog(self.root)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return ParquetDataCatalog(
            self.root, fs_protocol=protocol, fs_storage_options=self.options or None
        )

    def write_instruments(self, instruments: list[Any]) -> int:
        """
        Store instruments not stored yet, in the catalog's own layout.

        Returns
        -------
        int
            The number written.

        """
        catalog = self._catalog()
        written = 0
        for instrument in instruments:
            folder = catalog._make_path(type(instrument), str(instrument.id))
            self.fs.makedirs(folder, exist_ok=True)
            with self._lock(folder):
                if self.fs.glob(f"{folder}/*.parquet"):
                    continue
                table = catalog._objects_to_table([instrument], type(instrument))
                name = _file_name(instrument.ts_init, instrument.ts_init)
                self._put_table(f"{folder}/{name}", table)
                written += 1
        return written

    def instrument(self, instrument_id: str) -> Any:
        """Return the stored instrument with this id, or None."""
        try:
            found = self._catalog().instruments(instrument_ids=[instrument_id])
        except Exception:  # no instruments stored yet, or none of this type
            return None
        return found[-1] if found else None

    # -- atomic puts ---------------------------------------------------------------------------

    def _put_table(self, path: str, table: pa.Table) -> None:
        if self.local:
            tmp = f"{path}.{uuid.uuid4().hex}.part"
            with open(tmp, "wb") as f:
                pq.write_table(table, f, row_group_size=ROWS_PER_GROUP)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(os.path.dirname(path))
        else:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, row_group_size=ROWS_PER_GROUP)
            self.fs.pipe_file(path, sink.getvalue().to_pybytes())  # one PUT: all or nothing

    def _save_answered(self, folder: str, known: P.Interval) -> None:
        self._put_json(f"{folder}/{META}", {"answered": [[i.lower, i.upper] for i in known]})

    def _put_json(self, path: str, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        if self.local:
            tmp = f"{path}.{uuid.uuid4().hex}.part"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(os.path.dirname(path))
        else:
            self.fs.pipe_file(path, data)

    def _lock(self, folder: str) -> contextlib.AbstractContextManager[None]:
        return store_lock(self.fs, folder, self.local, self.lock_wait_s)

    # -- inspection ----------------------------------------------------------------------------

    def info(self) -> list[dict[str, Any]]:
        """Return, per bar type: files, bars, first and last bar, answered intervals, holes."""
        rows = []
        for name in self.bar_types():
            files = self.files(name)
            bars = sum(pq.ParquetFile(f.path, filesystem=self.fs).metadata.num_rows for f in files)
            answered = self.answered(name)
            stored = P.empty()
            for f in files:
                stored |= P.closed(f.first, f.last)
            first = files[0].first if files else None
            last = files[-1].last if files else None
            holes = []
            if first is not None and last is not None:
                holes = [
                    [format_ns(i.lower), format_ns(i.upper)]
                    for i in P.closed(first, last) - stored - answered
                    if not i.empty
                ]
            rows.append(
                {
                    "bar_type": name,
                    "files": len(files),
                    "bars": bars,
                    "first_close": format_ns(first),
                    "last_close": format_ns(last),
                    "answered": [[format_ns(i.lower), format_ns(i.upper)] for i in answered],
                    "holes": holes,
                },
            )
        return rows

    def debris(self) -> list[str]:
        """
        Return what interrupted writes left: superseded files and temporary files.

        They are harmless (readers skip them) and the next write of the bar type removes them.

        Returns
        -------
        list[str]

        """
        return [path for name in self.bar_types() for path in self._debris_of(name)]

    def _debris_of(self, bar_type: str) -> list[str]:
        folder = self.folder(bar_type)
        if not self.fs.exists(folder):
            return []
        listing = self.fs.ls(folder, detail=False)
        everything = _parse_files(listing)
        live = set(_live(everything))
        stale = [f.path for f in everything if f not in live]
        return stale + [p for p in listing if p.endswith(".part")]  # killed before its rename

    def verify(self) -> list[str]:
        """
        Read every file and check it; return the problems found (empty when all is well).

        Returns
        -------
        list[str]

        """
        problems = []
        for name in self.bar_types():
            all_files = self.files(name, live_only=False)
            live = self.files(name)
            for f in all_files:
                if f not in live:
                    continue  # debris of an interrupted merge: readers skip it (see `debris`)
                try:
                    table = pq.read_table(f.path, filesystem=self.fs)
                except Exception as e:  # any unreadable file is the finding
                    problems.append(f"{f.path}: unreadable: {e}")
                    continue
                ts = table.column("ts_init").to_numpy().astype(np.int64)
                if not len(ts):
                    problems.append(f"{f.path}: empty")
                elif int(ts[0]) != f.first or int(ts[-1]) != f.last:
                    problems.append(f"{f.path}: name does not match its first/last ts_init")
                elif (np.diff(ts) <= 0).any():
                    problems.append(f"{f.path}: ts_init not strictly increasing")
            for a, b in itertools.pairwise(live):
                if b.first <= a.last:
                    problems.append(f"{b.path}: interval overlaps {a.path}")
            try:
                self.answered(name)
            except BackfillError as e:
                problems.append(str(e))
        return problems


def _parse_files(listing: list[str]) -> list[StoredFile]:
    out = []
    for path in listing:
        m = _NAME.match(path.rstrip("/").split("/")[-1])
        if m:
            out.append(StoredFile(path, _parse_stamp(m[1]), _parse_stamp(m[2])))
    return sorted(out, key=lambda f: (f.first, -f.last))


def _live(files: list[StoredFile]) -> list[StoredFile]:
    # A file whose interval another file's contains is superseded: a merge killed before it
    # removed the files it replaced.
    return [f for f in files if not any(_contains(g, f) for g in files if g is not f)]


def _contains(outer: StoredFile, inner: StoredFile) -> bool:
    return outer.first <= inner.first and inner.last <= outer.last


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StoreSource(BarSource):
    """
    The store as the first layer of every request: what it holds, and what sources answered.

    Parameters
    ----------
    store : BarStore
        The store.
    context : SourceContext
        Paths and the cache.

    """

    config_type: ClassVar[type] = SourceConfig

    def __init__(self, store: BarStore, context: SourceContext) -> None:
        super().__init__(SourceConfig(name="store", plugin="store", timeout="3600s"), context)
        self.store = store

    def fetch(self, request: BarRequest, span: Span) -> SourceResult:
        """
        Read the stored bars of `span`.

        Returns
        -------
        SourceResult

        """
        table, pp, sp = self.store.read(str(request.bar_type), request.step_ns, span)
        instrument = self.store.instrument(str(request.bar_type.instrument_id))
        return SourceResult(
            table,
            timestamp_is="open",
            price_precision=pp if pp >= 0 else None,
            size_precision=sp if sp >= 0 else None,
            instruments=[instrument] if instrument is not None else [],
        )

    def answered(self, request: BarRequest) -> P.Interval:
        """Return the intervals sources have answered for this bar type, up to its end."""
        return self.store.answered(str(request.bar_type)) & P.closedopen(-P.inf, request.end_ns)
