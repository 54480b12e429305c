"""
The write-through store: a NautilusTrader ``ParquetDataCatalog`` that keeps what the network
sources returned, so the next start asks them only for what it lacks.

Layout (NautilusTrader's own): ``<root>/data/bar/<bar type without "/">/<ts_init first>_<ts_init
last>.parquet``, bars in the catalog's fixed-point schema with ``ts_event`` = open and
``ts_init`` = close. Next to the files, ``_backfill.json`` remembers the intervals sources have
answered, bars or not, so nights and holidays are not asked for again, each with the wall time
it was recorded: nothing is trusted past that time, nor past the clock of the reading process.

Crash safety: a file is written under a temporary name (``*.part``, which the catalog ignores),
flushed and fsynced, then renamed into place (on object stores a single PUT, which is atomic).
A merge writes the merged file first and then deletes the files it replaces, so a crash between
the two leaves files whose intervals another file's interval contains: this tool's reader skips
them, and every open (read, write, ``store verify --repair``) removes them under the lock, so
NautilusTrader's own reader reads each bar once again. Writers take a lock per bar type around
read-modify-write (`storelock`: fcntl locally, a conditional PUT on S3). A file that cannot be
read, or is not in the catalog's layout, is moved to ``<folder>/_quarantine/`` (under a name the
catalog does not read) and the store carries on without it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import fsspec
import numpy as np
import portion as P
import pyarrow as pa
import pyarrow.parquet as pq
from nautilus_backfill.catalogfmt import (
    FIELDS,
    check_bar_schema,
    decode_bars,
    decode_fixed,
    encode_fixed,
    nautilus_bar_schema,
    newest,
    read_window,
    uint64_bound,
)
from nautilus_backfill.config import SourceConfig
from nautilus_backfill.errors import BackfillError, SourceError
from nautilus_backfill.source import (
    BAR_SCHEMA,
    BarRequest,
    BarSource,
    SourceContext,
    SourceResult,
    Span,
)
from nautilus_backfill.storelock import StoreLockTimeout, store_lock
from nautilus_backfill.timeutil import format_ns

META = "_backfill.json"
QUARANTINE = "_quarantine"
# A short read (the usual few hundred bars) decodes one small row group, not the whole file;
# 1M-bar reads lose little to the extra groups (measured: 200 bars in 11 ms, not 50-100 ms).
ROWS_PER_GROUP = 20_000
# New bars join a neighbouring file of at most JOIN_ROWS bars instead of starting one more
# file, so restarts that each add a few tail bars do not add a file each (a tail write costs a
# copy of at most that many bars). Past COMPACT_AT files, a write joins runs of neighbouring
# files of up to SMALL_ROWS bars each into one: a store that has seen a year of restarts (or
# was written by a version before this) keeps a handful of files.
JOIN_ROWS = 5_000
SMALL_ROWS = 100_000
COMPACT_AT = 16
# How long a reader waits for the lock to repair what a crash left; it reads right without.
REPAIR_WAIT_S = 0.5
MAX_NS = 2**63 - 1  # the last instant pandas, numpy and the int64 views here hold
# Test hook: a process with this variable set kills itself at the named point of a write.
CRASH_ENV = "NAUTILUS_BACKFILL_CRASH_AT"
_NAME = re.compile(
    r"^(-?\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{9}Z)_(-?\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{9}Z)"
    r"\.parquet$"
)
_SECRET_KEYS = re.compile(r"secret|password|passwd|token|key|credential|signature|auth", re.I)


def _crash_point(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def redact(url: str, options: dict[str, Any] | None = None, known: str | None = None) -> str:
    """
    Return `url` (or any text naming it) with credentials replaced by ``***``.

    Parameters
    ----------
    url : str
        A store URL such as ``s3://KEY:SECRET@bucket/prefix?secret=...``, or a message.
    options : dict, optional
        The store options: the values of secret-looking keys (``key``, ``secret``, ``token``,
        ``password``, ...) are replaced wherever they appear.
    known : str, optional
        The store URL when `url` is a message: its credentials are replaced wherever they
        appear, also where a library repeats them without the URL around them.

    Returns
    -------
    str

    """
    secrets = _secret_values(options or {})
    for text in (url, known or ""):
        for user in re.findall(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://([^/@\s]+)@", text):
            secrets += [user, *user.split(":")]
        for query in re.findall(r"\?(\S*)", text):
            secrets += [v for k, v in parse_qsl(query) if _SECRET_KEYS.search(k)]
    out = url
    for value in sorted({v for v in secrets if len(v) >= 3}, key=len, reverse=True):
        out = out.replace(value, "***")
    return re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", out)


def _secret_values(options: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for k, v in options.items():
        if isinstance(v, dict):
            found += _secret_values(v)
        elif _SECRET_KEYS.search(str(k)) and isinstance(v, str) and len(v) >= 3:
            found.append(v)
    return sorted(found, key=len, reverse=True)


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
    date, time_ = stamp[:-20], stamp[-19:-1]
    hh, mm, ss, nanos = time_.split("-")
    seconds = np.datetime64(f"{date}T{hh}:{mm}:{ss}", "s").astype(np.int64)
    return int(seconds) * 1_000_000_000 + int(nanos)


def _basename(path: str) -> str:
    return path.rstrip("/").split("/")[-1]


@dataclass(frozen=True)
class StoredFile:
    """One bar file: its path and the ``ts_init`` interval its name states."""

    path: str
    first: int
    last: int


@dataclass(frozen=True)
class Answer:
    """One answered interval of bar opens ``[lower, upper)`` and when it was recorded."""

    lower: int
    upper: int
    recorded: int | None  # wall clock (UNIX ns) of the write; None in records before it was kept


class BarStore:
    """
    A store of bars at a local path or an fsspec URL (``s3://bucket/prefix``, ...).

    Parameters
    ----------
    url : str
        The catalog root.
    storage_options : dict, optional
        Passed to fsspec (endpoint, credentials).

    Attributes
    ----------
    notes : list[str]
        What the store found and did on its own (files quarantined, a metadata record it could
        not read); `take_notes` hands them to the report.

    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(storage_options or {})
        # s3://KEY:SECRET@bucket/...: fsspec would take "KEY:SECRET@bucket" for the bucket.
        inline = re.match(r"^(s3a?)://([^/@:]+):([^/@]+)@(.*)$", url)
        if inline:
            self.options.setdefault("key", inline[2])
            self.options.setdefault("secret", inline[3])
            url = f"{inline[1]}://{inline[4]}"
        self.fs, self.root = fsspec.core.url_to_fs(url, **self.options)
        self.root = self.root.rstrip("/") or self.root
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.lock_wait_s: float | None = None  # how long a write waits for another writer
        self.notes: list[str] = []
        # Folder listings taken in one pass for a batch read (`prefetch`): each serves the
        # repair check and the file list of one read, and is dropped as soon as this process
        # changes the folder or finds a listed file gone.
        self._prefetched: dict[str, tuple[list[dict[str, Any]], int]] = {}

    def redacted(self, text: str | None = None) -> str:
        """Return `text` (default: the store's URL) with this store's credentials hidden."""
        return redact(self.url if text is None else text, self.options, self.url)

    def take_notes(self) -> list[str]:
        """Return the notes gathered since the last call, and forget them."""
        out, self.notes = self.notes, []
        return out

    def _note(self, message: str) -> None:
        message = self.redacted(message)
        if message not in self.notes:
            self.notes.append(message)

    # -- layout --------------------------------------------------------------------------------

    def folder(self, bar_type: str) -> str:
        """Return the folder of a bar type (the catalog drops ``/`` from the name)."""
        return f"{self.root}/data/bar/{bar_type.replace('/', '')}"

    def bar_types(self) -> list[str]:
        """Return the folder names of the bar types held."""
        base = f"{self.root}/data/bar"
        if not self.fs.exists(base):
            return []
        return sorted(
            _basename(e["name"])
            for e in self.fs.ls(base, detail=True)
            if e.get("type") == "directory"
        )

    def prefetch(self, bar_types: Iterable[str]) -> None:
        """
        List the folders of many bar types once, for the reads that follow.

        On an object store that is one recursive listing of ``data/bar``; locally, one listing
        per folder that serves both its repair check and its file list.

        Parameters
        ----------
        bar_types : Iterable[str]
            The bar types about to be read.

        """
        wanted = {self.folder(b) for b in bar_types}
        by_folder: dict[str, list[dict[str, Any]]] = {}
        if self.local:
            # Locally a recursive listing walks every folder: list the wanted ones, once each.
            for folder in wanted:
                try:
                    by_folder[folder] = list(self.fs.ls(folder, detail=True))
                except FileNotFoundError:
                    by_folder[folder] = []
                except Exception:  # that read lists its own folder, as without a batch
                    continue
        else:
            # An object store lists every key under a prefix in one paginated request.
            base = f"{self.root}/data/bar"
            try:
                found = self.fs.find(base, detail=True, withdirs=True, maxdepth=2)
            except Exception:  # each read lists its own folder, as without a batch
                return
            for name, entry in found.items():
                parent = name.rstrip("/").rsplit("/", 1)[0]
                if parent in wanted:
                    by_folder.setdefault(parent, []).append(entry)
        # A folder the listing does not hold is listed by its own read (it may be new).
        self._prefetched = {folder: (entries, 2) for folder, entries in by_folder.items()}

    def _listing(self, bar_type: str) -> list[dict[str, Any]]:
        folder = self.folder(bar_type)
        cached = self._prefetched.pop(folder, None)
        if cached is not None:
            entries, uses = cached
            if uses > 1:
                self._prefetched[folder] = (entries, uses - 1)
            return list(entries)
        try:
            return list(self.fs.ls(folder, detail=True, refresh=True))
        except TypeError:  # filesystems without `refresh`
            return list(self.fs.ls(folder, detail=True))
        except FileNotFoundError:
            return []

    def forget_prefetched(self) -> None:
        """Drop the listings `prefetch` took (the next reads list afresh)."""
        self._prefetched = {}

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
        everything = _parse_files(self._listing(bar_type))
        return _live(everything) if live_only else everything

    # -- the answered record -------------------------------------------------------------------

    def _record(self, bar_type: str) -> tuple[list[Answer], str | None]:
        # The record and, when it cannot be used, why (then it counts as empty: sources are
        # asked again, which costs requests but never serves stale bars).
        path = f"{self.folder(bar_type)}/{META}"
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return [], None
        except (OSError, ValueError) as e:
            return [], f"{path}: unreadable ({type(e).__name__}: {e})"
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return [], f"{path}: not JSON ({e})" if raw.strip() else f"{path}: empty"
        problem = None
        out: list[Answer] = []
        entries = doc.get("answered") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            problem = f"{path}: no list of answered intervals"
        else:
            for entry in entries:
                ok = isinstance(entry, list) and len(entry) in (2, 3)
                ok = ok and all(type(v) is int for v in entry[:2])
                ok = ok and (len(entry) == 2 or type(entry[2]) is int)
                if not ok or entry[0] >= entry[1]:
                    problem = f"{path}: answered entry {json.dumps(entry)[:60]} is not [start, end]"
                    break
                out.append(Answer(entry[0], entry[1], entry[2] if len(entry) == 3 else None))
        if problem:
            return [], problem
        return out, None

    def answered(self, bar_type: str, step_ns: int = 0, now_ns: int | None = None) -> P.Interval:
        """
        Return the intervals of bar opens (UNIX ns) sources have answered for.

        Nothing is trusted past the wall time an interval was recorded at, nor past `now_ns`:
        a run with a future end, or on a clock that ran ahead, cannot make later starts skip
        bars that did not exist yet. An unusable record counts as empty (noted in `notes`).

        Parameters
        ----------
        bar_type : str
            The bar type.
        step_ns : int, default 0
            The bar length: only bars that had closed by then count.
        now_ns : int, optional
            The current time (default: the clock).

        Returns
        -------
        P.Interval

        """
        try:
            record, problem = self._record(bar_type)
        except Exception as e:  # a store that cannot be listed answers for nothing
            record, problem = [], f"{self.folder(bar_type)}/{META}: {type(e).__name__}: {e}"
        if problem:
            self._note(
                f"{problem}: what sources answered is treated as unknown, so they are asked "
                "again; the record is rewritten on the next write"
            )
        now = time.time_ns() if now_ns is None else now_ns
        out = P.empty()
        for a in record:
            until = now if a.recorded is None else min(a.recorded, now)
            upper = min(a.upper, until - step_ns + 1)  # opens whose bar had closed by then
            if upper > a.lower:
                out |= P.closedopen(a.lower, upper)
        return out

    def _save_answered(
        self, folder: str, bar_type: str, add: P.Interval, step_ns: int, cut_before: int | None
    ) -> None:
        record, _ = self._record(bar_type)  # an unusable record is replaced
        now = time.time_ns()
        # Each piece only up to when it was recorded, and never past this write's clock: a
        # record from a clock that ran ahead, or without times (older versions), is cut here.
        pieces = []
        for a in record:
            at = now if a.recorded is None else min(a.recorded, now)
            pieces.append((P.closedopen(a.lower, min(a.upper, at - step_ns + 1)), at))
        fresh = add & P.closedopen(-P.inf, now - step_ns + 1)
        if not fresh.empty:
            pieces.append((fresh, now))
        known = P.empty()
        for interval, _ in pieces:
            known |= interval
        if cut_before is not None:
            known &= P.closedopen(cut_before, P.inf)
        entries = []
        for i in known:
            if i.empty or not isinstance(i.lower, int) or not isinstance(i.upper, int):
                continue  # unbounded: never recorded
            # Every piece was cut at its own write time when written, so the joined interval
            # keeps the latest time: reads cap it at min(that, now), which cuts nothing more.
            times = [t for interval, t in pieces if t is not None and interval.overlaps(i)]
            lower = i.lower if i.left == P.CLOSED else i.lower + 1
            upper = i.upper + 1 if i.right == P.CLOSED else i.upper
            entries.append([lower, upper, max(times)] if times else [lower, upper])
        self._put_json(f"{folder}/{META}", {"answered": entries})

    # -- health --------------------------------------------------------------------------------

    def _quarantine(self, path: str, why: str) -> None:
        folder = path.rstrip("/").rsplit("/", 1)[0]
        target = f"{folder}/{QUARANTINE}/{_basename(path)}.{uuid.uuid4().hex[:8]}.quarantined"
        try:
            self.fs.makedirs(f"{folder}/{QUARANTINE}", exist_ok=True)
            if self.local:
                os.replace(path, target)
            else:
                self.fs.mv(path, target, recursive=True)
        except OSError as e:
            self._note(f"{path}: {why}; skipped (could not move it aside: {e})")
            return
        self._note(f"{path}: {why}; moved to {target}, the store carries on without it")

    def _file_problem(self, path: str, full: bool) -> str | None:
        # Why the file cannot be used, or None. `full` reads every page, not only the footer.
        try:
            if self.fs.isdir(path):
                return "a directory, not a parquet file"
            schema = pq.read_schema(path, filesystem=self.fs)
            check_bar_schema(schema, path, _folder_bar_type(path))
            if full:
                table = pq.read_table(path, filesystem=self.fs)
                for name in FIELDS:
                    decode_fixed(table.column(name), 0, name=name, where=path)
        except SourceError as e:
            return str(e).removeprefix(f"{path}: ")
        except FileNotFoundError:
            return None  # removed meanwhile by another writer
        except Exception as e:  # every way a file can fail to read is the finding
            return f"unreadable ({type(e).__name__}: {e})"
        return None

    def _repair(self, bar_type: str, bad: Iterable[tuple[str, str]] = ()) -> None:
        # Under the lock: remove what interrupted writes left and quarantine unusable files.
        self._prefetched.pop(self.folder(bar_type), None)  # this changes the folder
        for path, why in bad:
            if self.fs.exists(path):
                self._quarantine(path, why)
        listing = self._listing(bar_type)
        for entry in listing:
            name = entry["name"]
            if _NAME.match(_basename(name)) and entry.get("type") == "directory":
                self._quarantine(name, "a directory, not a parquet file")
        everything = _parse_files(self._listing(bar_type))
        live = _live(everything)
        if len(live) < len(everything):
            # A superseded file goes only if the file replacing it reads.
            for f in live:
                inside = [g for g in everything if g is not f and _contains(f, g)]
                if not inside:
                    continue
                problem = self._file_problem(f.path, full=False)
                if problem:
                    self._quarantine(f.path, problem)
                    continue
                for g in inside:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm(g.path)
        for entry in listing:
            if entry["name"].endswith(".part"):  # killed before its rename
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(entry["name"])

    def _needs_repair(self, bar_type: str) -> bool:
        listing = self._listing(bar_type)
        if any(e["name"].endswith(".part") for e in listing):
            return True
        if any(e.get("type") == "directory" and _NAME.match(_basename(e["name"])) for e in listing):
            return True
        everything = _parse_files(listing)
        return len(_live(everything)) < len(everything)

    def heal(self, bar_type: str, bad: Iterable[tuple[str, str]] = (), wait_s: float = 0) -> bool:
        """
        Repair what crashes left in a bar type's folder, if the lock is free within `wait_s`.

        Superseded files (a merge killed before it removed them, which NautilusTrader's reader
        would read twice) are removed, temporary files deleted, and unusable files moved to
        ``_quarantine/``.

        Parameters
        ----------
        bar_type : str
            The bar type.
        bad : iterable of (path, reason)
            Files already found unusable.
        wait_s : float, default 0
            How long to wait for another writer's lock.

        Returns
        -------
        bool
            False if the lock was held by another writer or could not be taken (a store this
            process may only read): the repair is left to a later open.

        """
        bad = list(bad)
        if not bad and not self._needs_repair(bar_type):
            return True
        folder = self.folder(bar_type)
        try:
            with store_lock(self.fs, folder, self.local, wait_s):
                self._repair(bar_type, bad)
        except (StoreLockTimeout, OSError):
            # Another writer holds the lock, or the store is read-only to this process: this
            # read still reads right (it skips what it cannot use); a later open repairs.
            return False
        return True

    # -- reading -------------------------------------------------------------------------------

    def read(self, bar_type: str, step_ns: int, span: Span) -> tuple[pa.Table, int, int]:
        """
        Read the stored bars of `span` (``ts`` = open) with the precisions the files state.

        What a crash left is repaired first (when no writer holds the lock); a file that
        cannot be read is quarantined and the rest is read (see `notes`).

        Returns
        -------
        tuple[pa.Table, int, int]
            The rows (`BAR_SCHEMA`), price precision and size precision (-1 when empty).

        """
        self.heal(bar_type, wait_s=REPAIR_WAIT_S)
        skip: set[str] = set()  # unusable files this read leaves out, moved aside or not
        for _ in range(4):
            files = [f for f in self.files(bar_type) if f.path not in skip]
            if span.start is not None:
                files = [f for f in files if f.last >= span.start + step_ns]
            files = [f for f in files if f.first <= span.end]
            if not files or span.end < 0:
                break
            try:
                return self._read_files(files, step_ns, span, bar_type)
            except FileNotFoundError:
                # A writer replaced a file between the listing and the read: list again.
                self._prefetched.pop(self.folder(bar_type), None)
                continue
            except Exception:  # find the file that fails, move it aside, read the rest
                bad = [(f.path, p) for f in files if (p := self._file_problem(f.path, True))]
                if not bad:
                    raise
                skip |= {path for path, _ in bad}
                if not self.heal(bar_type, bad, wait_s=REPAIR_WAIT_S):
                    for path, why in bad:
                        self._note(f"{path}: {why}; skipped (it could not be moved aside now)")
        return pa.table({n: [] for n in BAR_SCHEMA.names}, schema=BAR_SCHEMA), -1, -1

    def _read_files(
        self, files: list[StoredFile], step_ns: int, span: Span, bar_type: str | None = None
    ) -> tuple[pa.Table, int, int]:
        # Footers, then only the row groups in the window (no dataset: for a portfolio of
        # short reads building one costs more than the read).
        opened = [pq.ParquetFile(f.path, filesystem=self.fs) for f in files]
        if bar_type is not None:
            _same_owner(opened[0].schema_arrow, bar_type, self.folder(bar_type))
        for f, pf in zip(files, opened, strict=True):
            check_bar_schema(pf.schema_arrow, f.path, _folder_bar_type(f.path))
        table = read_window(opened, "ts_init", span, step_ns, step_ns)
        meta = opened[0].schema_arrow.metadata or {}
        price = int(meta.get(b"price_precision", b"-1"))
        size = int(meta.get(b"size_precision", b"-1"))
        ts_init = table.column("ts_init").to_numpy()
        # ts_init is uint64: one past int64 (or a bar opening before 1970) would wrap.
        ok = (ts_init <= MAX_NS) & (ts_init >= np.uint64(step_ns))
        if not ok.all():
            self._note(
                f"{files[0].path.rsplit('/', 1)[0]}: {int((~ok).sum())} bar(s) with a ts_init "
                "outside 1970..2262 skipped"
            )
            table = table.filter(pa.array(ok))
            ts_init = ts_init[ok]
        data = {"ts": pa.array(np.subtract(ts_init.astype(np.int64), step_ns))}
        decoded = decode_bars(table, price if price >= 0 else None, size if size >= 0 else None)
        data.update({name: pa.array(values) for name, values in decoded.items()})
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
            Intervals of bar opens the sources answered for (with bars or without). Only the
            part before now is recorded, with the time of this write.

        Returns
        -------
        int
            The number of bars written.

        """
        folder = self.folder(bar_type)
        self.fs.makedirs(folder, exist_ok=True)
        ts_open = np.asarray(ts_open, dtype=np.int64)
        # NautilusTrader's timestamps are uint64 from 1970: earlier bars cannot be stored.
        fits = (ts_open >= 0) & (ts_open <= MAX_NS - step_ns)
        if not fits.all():
            self._note(f"{int((~fits).sum())} bar(s) outside 1970..2262 not stored")
            ts_open, values = ts_open[fits], values[fits]
        with self._lock(folder):
            self._repair(bar_type)
            for f in self.files(bar_type):
                try:
                    schema = pq.read_schema(f.path, filesystem=self.fs)
                except Exception:  # unreadable: the merge below sets it aside
                    continue
                _same_owner(schema, bar_type, folder)
                break
            written = 0
            if len(ts_open):
                written = self._merge_in(
                    bar_type, step_ns, ts_open, values, price_precision, size_precision
                )
            self._compact(bar_type)
            self._save_answered(folder, bar_type, answered, step_ns, None)
        return written

    def _load(
        self, bar_type: str, files: list[StoredFile]
    ) -> tuple[list[StoredFile], list[pa.Table]]:
        # Under the lock: the files that read, with their tables; the others are quarantined,
        # so one bad file never stops the bar type from being written.
        kept, tables, bad = [], [], []
        for f in files:
            try:
                table = self._read_table(f.path)
                check_bar_schema(table.schema, f.path, _folder_bar_type(f.path))
            except Exception:
                bad.append((f.path, self._file_problem(f.path, full=True) or "unreadable"))
                continue
            kept.append(f)
            tables.append(table)
        if bad:
            self._repair(bar_type, bad)
        return kept, tables

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
        live = self.files(bar_type)
        # Files whose intervals meet the new bars' are merged with them, keeping the catalog's
        # intervals disjoint; the stored bar wins over a new one at the same time. A small
        # neighbour joins too, so tail writes grow one file instead of adding files.
        touched = [f for f in live if f.first <= last and f.last >= first]
        before = [f for f in live if f.last < first]
        after = [f for f in live if f.first > last]
        for near in (before[-1:], after[:1]):
            if near and self._rows(near[0]) <= JOIN_ROWS:
                touched += near
        touched, tables = self._load(bar_type, sorted(touched, key=lambda f: f.first))
        old_ts = np.empty(0, np.int64)
        if touched:
            old_ts = np.concatenate(
                [t.column("ts_init").to_numpy().astype(np.int64) for t in tables]
            )
        fresh = ~np.isin(ts_init, old_ts)
        if not fresh.any():
            return 0
        new = _bar_table(
            bar_type, step_ns, ts_init[fresh], values[fresh], price_precision, size_precision
        )
        if all(t.schema.equals(new.schema, check_metadata=True) for t in tables):
            # Same layout and precisions: the stored rows are copied as they are, not decoded
            # and encoded again (a tail write costs its own bars plus one copy of the file).
            joined = pa.concat_tables([*tables, new])
            order = np.argsort(joined.column("ts_init").to_numpy(), kind="stable")
            self._replace(bar_type, touched, joined.take(pa.array(order)), "merge")
            return int(fresh.sum())
        old_vals = np.concatenate([_values(t) for t in tables]) if tables else np.empty((0, 5))
        all_ts = np.concatenate([old_ts, ts_init[fresh]])
        all_vals = np.concatenate([old_vals, values[fresh]])
        order = np.argsort(all_ts, kind="stable")
        table = _bar_table(
            bar_type, step_ns, all_ts[order], all_vals[order], price_precision, size_precision
        )
        self._replace(bar_type, touched, table, "merge")
        return int(fresh.sum())

    def _rows(self, f: StoredFile) -> int:
        try:
            return int(pq.ParquetFile(f.path, filesystem=self.fs).metadata.num_rows)
        except Exception:  # unreadable: counted as big, so it is left to the quarantine
            return SMALL_ROWS + 1

    def _read_table(self, path: str) -> pa.Table:
        return pq.read_table(path, filesystem=self.fs)

    def _replace(self, bar_type: str, old: list[StoredFile], table: pa.Table, what: str) -> None:
        # The new file first, then the old ones go: a crash in between leaves old files whose
        # intervals the new one contains, which readers skip and the next open removes.
        ts = table.column("ts_init").to_numpy()
        name = _file_name(int(ts[0]), int(ts[-1]))
        self._put_table(f"{self.folder(bar_type)}/{name}", table)
        _crash_point(f"{what}_renamed")
        for f in old:
            if _basename(f.path) != name:
                self.fs.rm(f.path)
                _crash_point(f"{what}_removing")

    def _compact(self, bar_type: str) -> None:
        live = self.files(bar_type)
        if len(live) <= COMPACT_AT:
            return
        rows = [self._rows(f) for f in live]
        run: list[StoredFile] = []
        total = 0
        for f, n in [*zip(live, rows, strict=True), (None, SMALL_ROWS + 1)]:
            if f is not None and n <= SMALL_ROWS and total + n <= SMALL_ROWS:
                run.append(f)
                total += n
                continue
            if len(run) > 1:
                self._merge_files(bar_type, run)
            run, total = ([f], n) if f is not None and n <= SMALL_ROWS else ([], 0)

    def _merge_files(self, bar_type: str, run: list[StoredFile]) -> None:
        run, tables = self._load(bar_type, run)
        if len(run) < 2:
            return
        if any(t.schema != tables[0].schema for t in tables[1:]) or any(
            t.schema.metadata != tables[0].schema.metadata for t in tables[1:]
        ):
            return  # other precisions or layouts: left as they are
        self._replace(bar_type, run, pa.concat_tables(tables), "compact")

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
        if not self.fs.exists(folder):
            return 0
        with self._lock(folder):
            self._repair(bar_type)
            old = [f for f in self.files(bar_type) if f.first - step_ns < before_ns]
            for f, table in zip(*self._load(bar_type, old), strict=True):
                keep = table.filter(
                    pa.compute.greater_equal(table["ts_event"], uint64_bound(max(before_ns, 0)))
                )
                removed += table.num_rows - keep.num_rows
                if keep.num_rows:
                    self._replace(bar_type, [f], keep, "trim")
                else:
                    self.fs.rm(f.path)
                    _crash_point("trim_removing")
            if self.fs.exists(f"{folder}/{META}"):
                self._save_answered(folder, bar_type, P.empty(), step_ns, before_ns)
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
        Store instruments, in the catalog's own layout: each replaces an older stored one.

        A source that looked an instrument up again (its stored contract was refused, or had
        grown old) thus leaves the fresh one for the next run; an instrument the source was
        given from this store (the same ``ts_init``) is not written again.

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
                old = self.fs.glob(f"{folder}/*.parquet")
                stamps = [_NAME.match(_basename(f)) for f in old]
                if any(m is None or _parse_stamp(m[2]) >= instrument.ts_init for m in stamps):
                    continue  # as new or newer already stored (or a file not named by us)
                table = catalog._objects_to_table([instrument], type(instrument))
                name = _file_name(instrument.ts_init, instrument.ts_init)
                self._put_table(f"{folder}/{name}", table)
                for f in old:
                    self.fs.rm(f)
                written += 1
        return written

    def instrument(self, instrument_id: str) -> Any:
        """Return the stored instrument with this id, or None."""
        return self.instruments([instrument_id]).get(instrument_id)

    def instruments(self, instrument_ids: list[str]) -> dict[str, Any]:
        """
        Return the stored instruments with these ids (the newest of each), in one query.

        Parameters
        ----------
        instrument_ids : list[str]
            The ids.

        Returns
        -------
        dict[str, Any]
            By id; ids with no stored instrument are left out.

        """
        base = f"{self.root}/data"
        try:
            if not any(
                _basename(e).lower() != "bar" for e in self.fs.ls(base, detail=False)
            ):  # only bars stored: no catalog query (it globs every data class)
                return {}
        except FileNotFoundError:
            return {}
        except Exception:  # a listing that fails: let the catalog say
            pass
        try:
            found = self._catalog().instruments(instrument_ids=list(instrument_ids))
        except Exception:  # no instruments stored yet, or none of this type
            return {}
        out: dict[str, Any] = {}
        for instrument in found:  # oldest first: the newest of each id wins
            out[str(instrument.id)] = instrument
        return out

    # -- atomic puts ---------------------------------------------------------------------------

    def _put_table(self, path: str, table: pa.Table) -> None:
        if self.local:
            self._put_local(path, lambda f: pq.write_table(table, f, row_group_size=ROWS_PER_GROUP))
        else:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, row_group_size=ROWS_PER_GROUP)
            self.fs.pipe_file(path, sink.getvalue().to_pybytes())  # one PUT: all or nothing

    def _put_json(self, path: str, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        if self.local:
            self._put_local(path, lambda f: f.write(data))
        else:
            self.fs.pipe_file(path, data)

    def _put_local(self, path: str, fill: Any) -> None:
        tmp = f"{path}.{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            # A full disk must not stay full of our half-written file.
            with contextlib.suppress(OSError):
                os.remove(tmp)
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                raise BackfillError(f"{path}: no space left on the device; nothing written") from e
            raise
        _fsync_dir(os.path.dirname(path))

    def _lock(self, folder: str) -> contextlib.AbstractContextManager[None]:
        return store_lock(self.fs, folder, self.local, self.lock_wait_s)

    # -- inspection ----------------------------------------------------------------------------

    def info(self) -> list[dict[str, Any]]:
        """Return, per bar type: files, bars, first and last bar, answered intervals, holes."""
        rows = []
        for name in self.bar_types():
            files = self.files(name)
            bars = sum(n for f in files if (n := self._rows(f)) != SMALL_ROWS + 1)
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
                    # The bar type its files name: the folder drops the "/" (EUR/USD -> EURUSD).
                    "bar_type": self._declared(files[0].path) if files else name,
                    "folder": name,
                    "files": len(files),
                    "bars": bars,
                    "first_close": format_ns(first),
                    "last_close": format_ns(last),
                    "answered": [
                        [format_ns(i.lower), format_ns(i.upper)] for i in answered if not i.empty
                    ],
                    "holes": holes,
                },
            )
        return rows

    def _declared(self, path: str) -> str:
        try:
            meta = pq.read_schema(path, filesystem=self.fs).metadata or {}
        except Exception:  # unreadable: the folder's name is all there is
            return _folder_bar_type(path)
        return meta.get(b"bar_type", b"").decode(errors="replace") or _folder_bar_type(path)

    def debris(self) -> list[str]:
        """
        Return what interrupted writes left: superseded files and temporary files.

        The next open of the bar type (read or write) removes them.

        Returns
        -------
        list[str]

        """
        return [path for name in self.bar_types() for path in self._debris_of(name)]

    def _debris_of(self, bar_type: str) -> list[str]:
        listing = self._listing(bar_type)
        everything = _parse_files(listing)
        live = set(_live(everything))
        stale = [f.path for f in everything if f not in live]
        return stale + [e["name"] for e in listing if e["name"].endswith(".part")]

    def verify(self, repair: bool = False) -> list[str]:
        """
        Read every file and check it; return the problems found (empty when all is well).

        Parameters
        ----------
        repair : bool, default False
            Also repair: remove superseded and temporary files, quarantine unusable ones
            (what every read and write does anyway). Problems repaired are still returned.

        Returns
        -------
        list[str]

        """
        problems: list[str] = []
        for name in self.bar_types():
            folder = self.folder(name)
            listing = self._listing(name)
            everything = _parse_files(listing)
            live = _live(everything)
            bad: list[tuple[str, str]] = []
            for e in listing:
                base = _basename(e["name"])
                if base.endswith(".parquet") and not _NAME.match(base):
                    problems.append(
                        f"{e['name']}: not named <first ts_init>_<last ts_init>.parquet: "
                        "NautilusTrader's catalog reads it, this tool does not"
                    )
                elif e["name"].endswith(".part"):
                    self._note(
                        f"{e['name']}: left by an interrupted write; removed on the next open"
                    )
            for f in everything:
                if f not in live:
                    outer = next(g for g in live if _contains(g, f))
                    problems.append(
                        f"{f.path}: superseded by {_basename(outer.path)} (a merge was "
                        "interrupted): NautilusTrader's catalog reads its bars twice; removed "
                        "on the next open or by `store verify --repair`"
                    )
                    continue
                problem = self._file_problem(f.path, full=True)
                if problem:
                    problems.append(f"{f.path}: {problem}")
                    bad.append((f.path, problem))
                    continue
                ts = self._read_table(f.path).column("ts_init").to_numpy().astype(np.int64)
                if not len(ts):
                    problems.append(f"{f.path}: empty")
                elif int(ts[0]) != f.first or int(ts[-1]) != f.last:
                    problems.append(f"{f.path}: name does not match its first/last ts_init")
                elif (np.diff(ts) <= 0).any():
                    problems.append(f"{f.path}: ts_init not strictly increasing")
            for a, b in itertools.pairwise(live):
                if b.first <= a.last:
                    problems.append(f"{b.path}: interval overlaps {a.path}")
            _, meta_problem = self._record(name)
            if meta_problem:
                problems.append(
                    f"{meta_problem}: treated as unknown (sources are asked again); rewritten "
                    "on the next write"
                )
            quarantined = f"{folder}/{QUARANTINE}"
            if self.fs.exists(quarantined):
                for path in self.fs.ls(quarantined, detail=False):
                    self._note(f"{path}: quarantined earlier (not read; delete it when seen)")
            if repair:
                self.heal(name, bad, wait_s=self.lock_wait_s or 5.0)
                if meta_problem:  # what the next write would do: start the record afresh
                    with store_lock(self.fs, folder, self.local, self.lock_wait_s or 5.0):
                        self._save_answered(folder, name, P.empty(), 0, None)
        return [self.redacted(p) for p in problems]


def _values(table: pa.Table) -> np.ndarray:
    meta = table.schema.metadata or {}
    price = int(meta.get(b"price_precision", b"-1"))
    size = int(meta.get(b"size_precision", b"-1"))
    return np.column_stack(
        [
            decode_fixed(
                table.column(n),
                (size if n == "volume" else price) if price >= 0 and size >= 0 else None,
                name=n,
            )
            for n in FIELDS
        ]
    )


def _bar_table(
    bar_type: str,
    step_ns: int,
    ts_init: np.ndarray,
    values: np.ndarray,
    price_precision: int,
    size_precision: int,
) -> pa.Table:
    schema = nautilus_bar_schema(bar_type, price_precision, size_precision)
    width = schema.field("open").type.byte_width
    columns = [
        encode_fixed(values[:, i], price_precision if i < 4 else size_precision, width)
        for i in range(5)
    ]
    columns += [pa.array(ts_init - step_ns, pa.uint64()), pa.array(ts_init, pa.uint64())]
    return pa.Table.from_arrays(columns, schema=schema)


def _parse_files(listing: list[dict[str, Any]] | list[str]) -> list[StoredFile]:
    out = []
    for entry in listing:
        path = entry if isinstance(entry, str) else entry["name"]
        if not isinstance(entry, str) and entry.get("type") == "directory":
            continue  # a directory named like a file: quarantined by the next repair
        m = _NAME.match(_basename(path))
        if m:
            out.append(StoredFile(path, _parse_stamp(m[1]), _parse_stamp(m[2])))
    return sorted(out, key=lambda f: (f.first, -f.last))


def _same_owner(schema: pa.Schema, bar_type: str, folder: str) -> None:
    # NautilusTrader's catalog names a folder by the bar type without "/": EUR/USD.SIM and
    # EURUSD.SIM share one. Whose bars a folder holds is in its files' metadata.
    named = (schema.metadata or {}).get(b"bar_type", b"").decode(errors="replace")
    if named and named != bar_type:
        raise SourceError(
            f"{folder} holds bars of {named}, not {bar_type}: NautilusTrader's catalog keeps "
            "both bar types in one folder (it drops the '/'), so this one cannot use the store"
        )


def _folder_bar_type(path: str) -> str:
    # A store file's bar type is its folder's name (the bar type without "/", as the catalog
    # names folders).
    return path.rstrip("/").rsplit("/", 2)[-2]


def _live(files: list[StoredFile]) -> list[StoredFile]:
    # A file whose interval another file's contains is superseded: a merge killed before it
    # removed the files it replaced. Sorted by (first, -last), a file is contained in an
    # earlier one exactly when an earlier file reaches at least as far (one pass, not n**2).
    out = []
    reach: int | None = None
    for f in files:
        if reach is None or f.last > reach:
            out.append(f)
            reach = f.last
    return out


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
            With notes on what the store repaired or could not use.

        """
        return self._fetch(request, span, None)

    def fetch_many(self, calls: list[tuple[BarRequest, Span]]) -> list[Any]:
        """
        Read the stored bars of many requests, with one instrument query for all of them.

        Parameters
        ----------
        calls : list[tuple[BarRequest, Span]]
            The ``(request, span)`` pairs.

        Returns
        -------
        list[SourceResult | Exception]
            Per pair, what `fetch` returns or the exception it raises.

        """
        ids = sorted({str(r.bar_type.instrument_id) for r, _ in calls})
        instruments = self.store.instruments(ids)
        self.store.prefetch(str(r.bar_type) for r, _ in calls)
        out: list[Any] = []
        try:
            for request, span in calls:
                try:
                    out.append(self._fetch(request, span, instruments))
                except Exception as e:  # one pair's failure is that pair's answer only
                    out.append(e)
        finally:
            self.store.forget_prefetched()
        return out

    def _fetch(
        self, request: BarRequest, span: Span, instruments: dict[str, Any] | None
    ) -> SourceResult:
        try:
            table, pp, sp = self.store.read(str(request.bar_type), request.step_ns, span)
        except Exception as e:  # the store fails as a source: the others are still asked
            kind = "" if isinstance(e, BackfillError) else f"{type(e).__name__}: "
            raise SourceError(self.store.redacted(f"{self.store.url}: {kind}{e}")) from None
        instrument_id = str(request.bar_type.instrument_id)
        instrument = (
            self.store.instrument(instrument_id)
            if instruments is None
            else instruments.get(instrument_id)
        )
        self.store.answered(str(request.bar_type), request.step_ns)  # notes a bad record
        return SourceResult(
            table,
            timestamp_is="open",
            price_precision=pp if pp >= 0 else None,
            size_precision=sp if sp >= 0 else None,
            instruments=[instrument] if instrument is not None else [],
            notes=[f"store: {n}" for n in self.store.take_notes()],
        )

    def answered(self, request: BarRequest) -> P.Interval:
        """
        Return the intervals sources have answered for this bar type, up to its end and now.

        Never raises: a record that cannot be read answers for nothing.
        """
        try:
            known = self.store.answered(str(request.bar_type), request.step_ns)
        except Exception:  # the record is a cache: losing it costs requests, never bars
            return P.empty()
        return known & P.closedopen(-P.inf, request.end_ns)
