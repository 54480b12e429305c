"""Reading bars from parquet with predicate pushdown on the timestamp column."""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq
from nautilus_backfill.catalogfmt import (
    FIELDS,
    check_bar_files,
    check_bar_schema,
    decode_bars,
    newest,
    read_window,
    scan,
    uint64_bound,
)
from nautilus_backfill.errors import SourceError
from nautilus_backfill.paths import fill_template
from nautilus_backfill.plugins.parquet.config import ParquetColumns, ParquetSourceConfig
from nautilus_backfill.source import BAR_SCHEMA, BarRequest, BarSource, SourceResult, Span, in_span
from nautilus_backfill.timestamps import to_epoch_ns
from nautilus_trader.model.data import BarType

# Extensions a folder or glob is searched for. A .parquet file is read as parquet; any other
# is told by its first bytes (feather V1, IPC file and IPC stream all go by .feather/.arrow).
EXTENSIONS = ("parquet", "feather", "arrow", "ipc")
# A plain file's timestamp column when `columns` does not name one (freqtrade calls it date).
TIMESTAMP_NAMES = ("timestamp", "date", "datetime", "ts", "open_time", "time")


class ParquetBarSource(BarSource):
    """
    Bars from a NautilusTrader ``ParquetDataCatalog`` or plain OHLCV parquet files.
    """

    config_type: ClassVar[type[ParquetSourceConfig]] = ParquetSourceConfig
    config: ParquetSourceConfig

    def fetch(self, request: BarRequest, span: Span) -> SourceResult:
        """
        Read the bars of `span`, filtering by time in the scan.

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
        files, catalog, fs = self._files(request)
        return self._answer(files, catalog, fs, request, span)

    def fetch_many(self, calls: list[tuple[BarRequest, Span]]) -> list[Any]:
        """
        Answer many requests with one listing of the catalog.

        A catalog root is listed once for all bar types (not once per request, which costs
        the square of their number), and each bar type's files are then read exactly as
        `fetch` reads them. Other layouts are fetched per request.

        Parameters
        ----------
        calls : list[tuple[BarRequest, Span]]
            The ``(request, span)`` pairs.

        Returns
        -------
        list[SourceResult | Exception]
            One answer per pair: what `fetch` returns, or the exception it raises.

        """
        try:
            index = self._catalog_index()
        except Exception as e:  # the listing failed: every pair fails the same way
            return [e] * len(calls)
        stop_at = _stop_at(calls)

        def one(call: tuple[BarRequest, Span]) -> Any:
            request, span = call
            if stop_at is not None and time.monotonic() >= stop_at:
                # Stop short of the timeout: the answers so far are kept, not abandoned.
                return SourceError("not read before the source's timeout", status="timeout")
            try:
                if index is None:
                    return self.fetch(request, span)
                by_folder, fs = index
                files = by_folder.get(str(request.bar_type).replace("/", ""), [])
                return self._answer(files, True, fs, request, span)
            except Exception as e:  # one pair's failure is that pair's answer only
                return e

        if index is not None or len(calls) == 1:
            return [one(c) for c in calls]
        # Plain files: one file (or template) per request, read as the host would, in parallel.
        with ThreadPoolExecutor(max_workers=min(len(calls), self.max_parallel)) as pool:
            return list(pool.map(one, calls))

    def check(self, requests: list[BarRequest]) -> list[str]:
        """
        Return what is wrong with this source's path for `requests`, without reading bars.

        A local path that does not exist, a template or glob that matches nothing, and a
        catalog that holds no bars of a requested bar type are named; URLs are not checked
        (that needs the network).

        Parameters
        ----------
        requests : list[BarRequest]
            The configured requests (they fill the path template).

        Returns
        -------
        list[str]
            One line per problem, starting with the key it concerns.

        """
        if "://" in self.config.path:
            return []
        problems: list[str] = []
        for request in requests:
            try:
                files, _, _ = self._files(request)
            except Exception as e:  # an unreadable folder: the message names it
                problems.append(f"path: {e}")
                continue
            if not files:
                problems.append(f"path: {self._nothing_for(request)}")
        return list(dict.fromkeys(problems))

    def _nothing_for(self, request: BarRequest) -> str:
        fs, root = self._root()
        if fs.isdir(f"{root.rstrip('/')}/data/bar"):
            return f"the catalog {root} holds no bars of {request.bar_type}"
        filled = fill_template(root, request.bar_type)
        if any(ch in filled for ch in "*?[") or filled != root:
            return f"no file matches {filled} (for {request.bar_type})"
        if not fs.exists(root):
            return f"{root} does not exist"
        return f"no parquet, feather or arrow file under {root} (for {request.bar_type})"

    def _answer(
        self, files: list[str], catalog: bool, fs: Any, request: BarRequest, span: Span
    ) -> SourceResult:
        if not files:
            raise SourceError(self._nothing_for(request), status="empty")
        try:
            if catalog and self.config.layout != "plain":
                # A catalog's bar files: their footers, then only the row groups in the window.
                return self._catalog_files(files, fs, request, span)
            dataset = _dataset(files, fs)
            meta = dataset.schema.metadata or {}
            is_catalog = self.config.layout == "catalog" or (
                self.config.layout == "auto" and (catalog or b"bar_type" in meta)
            )
            if is_catalog:
                return self._catalog(dataset, meta, request, span)
            return self._plain(dataset, request, span)
        except (OSError, pa.ArrowException, UnicodeDecodeError) as e:
            # A damaged file surfaces while scanning: name it, as the other file errors do.
            where = files[0] if len(files) == 1 else f"{len(files)} files under {self.config.path}"
            raise SourceError(f"{where}: cannot read: {e}") from None

    def _root(self) -> tuple[Any, str]:
        path = self.config.path
        if "://" in path:  # an fsspec URL: s3://, gs://, memory://, ...
            fs, root = fsspec.core.url_to_fs(path, **dict(self.config.storage_options or {}))
        else:
            fs, root = fsspec.filesystem("file"), str(self.context.resolve(path))
        return fs, root

    def _catalog_index(self) -> tuple[dict[str, list[str]], Any] | None:
        # Every bar type's files from one recursive listing; None when not a catalog root.
        fs, root = self._root()
        bar_dir = f"{root.rstrip('/')}/data/bar"
        if not fs.isdir(bar_dir):
            return None
        found: dict[str, list[str]] = {}
        prefix = len(bar_dir.rstrip("/")) + 1
        for f in fs.find(bar_dir):
            if f.endswith(".parquet") and "/" in f[prefix:]:
                found.setdefault(f[prefix:].split("/", 1)[0], []).append(f)
        return {k: sorted(v) for k, v in found.items()}, fs

    def _files(self, request: BarRequest) -> tuple[list[str], bool, Any]:
        fs, root = self._root()
        bar_dir = f"{root.rstrip('/')}/data/bar"
        if fs.isdir(bar_dir):
            # The catalog names folders after the bar type without "/" (EURUSD.SIM-...).
            wanted = str(request.bar_type).replace("/", "")
            for folder in sorted(fs.ls(bar_dir, detail=False)):
                if folder.rstrip("/").split("/")[-1] == wanted:
                    return sorted(fs.glob(f"{folder.rstrip('/')}/**/*.parquet")), True, fs
            return [], True, fs
        filled = fill_template(root, request.bar_type)
        found = fs.glob(filled) if any(ch in filled for ch in "*?[") else [filled]
        out: list[str] = []
        for f in sorted(found):
            if fs.isdir(f):
                for ext in EXTENSIONS:
                    out.extend(sorted(fs.glob(f"{f.rstrip('/')}/**/*.{ext}")))
            elif fs.exists(f):
                out.append(f)
        return out, False, fs

    def _catalog_files(
        self, files: list[str], fs: Any, request: BarRequest, span: Span
    ) -> SourceResult:
        opened = [pq.ParquetFile(f, filesystem=fs) for f in files]
        schema = opened[0].schema_arrow  # as a dataset of the files takes the first one's
        self._same_bar_type(schema.metadata or {}, request)
        column, edge, shift = self._edge(request)
        self._has_columns(schema.names, column)
        for f, pf in zip(files, opened, strict=True):
            check_bar_schema(pf.schema_arrow, f)
        table = read_window(opened, column, span, shift, request.step_ns)
        return self._decoded(table, schema.metadata or {}, column, edge)

    def _same_bar_type(self, meta: dict[bytes, bytes], request: BarRequest) -> None:
        declared = meta.get(b"bar_type", b"").decode("utf-8", errors="replace")
        try:
            theirs: BarType | None = BarType.from_str(declared) if declared else None
        except ValueError:
            theirs = None
        wanted = request.bar_type
        if theirs is not None and (
            theirs.instrument_id != wanted.instrument_id or theirs.spec != wanted.spec
        ):
            # A NautilusTrader bar file says what it holds: never serve it as other bars.
            raise SourceError(
                f"{self.config.path} holds {declared} bars, not {wanted}; point path at that "
                "bar type's files (a catalog root, or a template such as "
                "'bars/{instrument_id}-{spec}.parquet')"
            )

    def _edge(self, request: BarRequest) -> tuple[str, str, int]:
        column = self.config.timestamp_column or "ts_init"
        edge = self.config.timestamp_is or ("close" if column == "ts_init" else "open")
        return column, edge, request.step_ns if edge == "close" else 0

    def _has_columns(self, names: list[str], column: str) -> None:
        missing = [c for c in (*FIELDS, column) if c not in names]
        if missing:
            raise SourceError(
                f"not a NautilusTrader bar file: missing columns {', '.join(missing)}"
            )

    def _catalog(
        self, dataset: ds.Dataset, meta: dict[bytes, bytes], request: BarRequest, span: Span
    ) -> SourceResult:
        self._same_bar_type(meta, request)
        column, edge, shift = self._edge(request)
        self._has_columns(dataset.schema.names, column)
        if isinstance(dataset, ds.FileSystemDataset):
            check_bar_files(dataset)  # a float column read as fixed-point would be off by 1e9
        table = scan(dataset, column, span, shift, request.step_ns, uint64_bound)
        return self._decoded(table, meta, column, edge)

    def _decoded(
        self, table: pa.Table, meta: dict[bytes, bytes], column: str, edge: str
    ) -> SourceResult:
        pp = meta.get(b"price_precision")
        sp = meta.get(b"size_precision")
        price = int(pp) if pp is not None else None
        size = int(sp) if sp is not None else None
        data = {"ts": pc.cast(table.column(column), pa.int64())}
        decoded = decode_bars(table, price, size, str(self.config.path))
        data.update({name: pa.array(values) for name, values in decoded.items()})
        out = pa.table(data, schema=BAR_SCHEMA)
        return SourceResult(out, timestamp_is=edge, price_precision=price, size_precision=size)

    def _plain(self, dataset: ds.Dataset, request: BarRequest, span: Span) -> SourceResult:
        names = dataset.schema.names
        cols = self.config.columns or ParquetColumns(
            timestamp=next((n for n in TIMESTAMP_NAMES if n in names), "timestamp")
        )
        for key in ("timestamp", "open", "high", "low", "close"):
            name = getattr(cols, key)
            if name not in names:
                raise SourceError(
                    f"column '{name}' (columns.{key}) not found; the file has: {', '.join(names)}",
                )
        edge = self.config.timestamp_is or "open"
        shift = request.step_ns if edge == "close" else 0
        ts_type = dataset.schema.field(cols.timestamp).type
        if pa.types.is_timestamp(ts_type) and (
            ts_type.tz is not None or self.config.timezone == "UTC"
        ):

            def bound(v: int) -> Any:
                return pa.scalar(v, pa.timestamp("ns", ts_type.tz)).cast(ts_type)

            table = scan(dataset, cols.timestamp, span, shift, request.step_ns, bound)
        else:  # no safe pushdown for other layouts: filter after parsing
            table = dataset.to_table()
        ts = to_epoch_ns(table.column(cols.timestamp), "auto", self.config.timezone)
        data: dict[str, Any] = {"ts": ts}
        for key in FIELDS:
            name = getattr(cols, key)
            if key == "volume" and (name is None or name not in names):
                data[key] = pa.array(np.zeros(table.num_rows))
            else:
                data[key] = pc.cast(table.column(name), pa.float64())
        out = pa.table(data, schema=BAR_SCHEMA)
        out = out.filter(in_span(out.column("ts"), span, shift, request.step_ns))
        return SourceResult(newest(out, span.limit), timestamp_is=edge)


def _stop_at(calls: list[tuple[BarRequest, Span]]) -> float | None:
    # A little before the call's deadline, so what was read is returned in time.
    deadlines = [s.deadline for _, s in calls if s.deadline is not None]
    if not deadlines:
        return None
    deadline = min(deadlines)
    return deadline - min(0.5, 0.1 * max(0.0, deadline - time.monotonic()))


def _dataset(files: list[str], fs: Any) -> ds.Dataset:
    """
    Open parquet and Arrow IPC (feather) files as one dataset.

    A file named ``.parquet`` is read as parquet; any other is told by its first 8 bytes,
    fetched alone (a plain ``open`` reads ahead a whole block: over S3, the whole file).

    Parameters
    ----------
    files : list[str]
        The files.
    fs : fsspec.AbstractFileSystem
        Their filesystem.

    Returns
    -------
    ds.Dataset

    Raises
    ------
    SourceError
        If a file is neither, or the files' columns differ.

    """
    kinds: dict[str, list[str]] = {}
    tables: list[pa.Table] = []
    for f in files:
        if f.lower().endswith(".parquet"):
            kinds.setdefault("parquet", []).append(f)
            continue
        try:
            head = bytes(fs.cat_file(f, start=0, end=8))
        except OSError as e:
            raise SourceError(f"{f}: cannot read: {e}") from None
        if head[:4] == b"PAR1":
            kinds.setdefault("parquet", []).append(f)
        elif head[:6] == b"ARROW1":
            kinds.setdefault("ipc", []).append(f)
        elif head[:4] in (b"FEA1", b"\xff\xff\xff\xff"):  # feather v1, or an IPC stream
            tables.append(_read_ipc_other(f, fs, head))
        else:
            raise SourceError(
                f"{f}: neither parquet nor Arrow IPC/feather (it starts with {head[:8]!r})"
            )
    parts = []
    for kind, paths in kinds.items():
        try:
            parts.append(ds.dataset(paths, format=kind, filesystem=fs))
        except (pa.ArrowInvalid, OSError) as e:
            name = "parquet" if kind == "parquet" else "Arrow IPC/feather"
            raise SourceError(f"not a readable {name} file: {e}") from None
    parts += [ds.dataset(t) for t in tables]
    if len(parts) == 1:
        return parts[0]
    try:
        return ds.dataset(parts)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SourceError(f"files with different columns cannot be read as one: {e}") from None


def _read_ipc_other(path: str, fs: Any, head: bytes) -> pa.Table:
    try:
        with fs.open(path, "rb") as fh:
            if head[:4] == b"FEA1":
                with warnings.catch_warnings():  # pyarrow's deprecation of V1: not the user's
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return feather.read_table(fh)
            return pa.ipc.open_stream(fh).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise SourceError(f"{path}: not a readable Arrow IPC/feather file: {e}") from None
