"""Reading LEAN's zipped CSV bars: trade and quote files, one a day or one per ticker."""

from __future__ import annotations

import csv as pycsv
import io
import math
import os
import re
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from nautilus_backfill.catalogfmt import newest
from nautilus_backfill.errors import SourceError
from nautilus_backfill.plugins.lean.config import LeanSourceConfig
from nautilus_backfill.plugins.lean.markets import (
    CRYPTO_VENUES,
    DATA_TIME_ZONES,
    OANDA_VENUES,
    REGULAR_HOURS,
    RESOLUTIONS,
    US_EQUITY_VENUES,
)
from nautilus_backfill.source import BAR_SCHEMA, BarRequest, BarSource, SourceResult, Span, within
from nautilus_backfill.timestamps import to_epoch_ns
from nautilus_trader.model.enums import PriceType
from nautilus_trader.model.identifiers import InstrumentId
from pyarrow import csv as pacsv

_MS = 1_000_000
_DAY_NS = 86_400 * 10**9
# LEAN stores US equity prices in 1/10,000 dollars (TradeBar/QuoteBar `_scaleFactor`).
_EQUITY_SCALE = 10_000.0
_BLOCK = 1 << 22
# Day files read at once in time mode, between deadline checks.
_SLICE = 128


def _problem(key: str, message: str, status: str = "error") -> SourceError:
    # The config key a problem concerns travels with it, for `check`.
    return SourceError(message, status=status, key=key)


@dataclass(frozen=True)
class LeanFiles:
    """
    Where one request's bars are in a LEAN data folder, and how to read them.

    Parameters
    ----------
    root : Path
        The ``Data/`` folder.
    security : str
        ``equity``, ``forex``, ``crypto`` or ``cfd``.
    market : str
        ``usa``, ``oanda``, ``coinbase``, ...
    ticker : str
        Lower case, as LEAN names folders.
    resolution : str
        ``second``, ``minute``, ``hour`` or ``daily``.
    tick : str
        ``trade`` or ``quote``.
    tz : str
        The data time zone.
    side : str
        ``LAST``, ``BID``, ``ASK`` or ``MID``.

    """

    root: Path
    security: str
    market: str
    ticker: str
    resolution: str
    tick: str
    tz: str
    side: str
    session: tuple[int, int] | None = None

    @property
    def daily_files(self) -> bool:
        """Whether each file holds one day (second and minute) rather than all history."""
        return self.resolution in ("second", "minute")

    @property
    def folder(self) -> Path:
        """The folder of a ticker's day files."""
        return self.root / self.security / self.market / self.resolution / self.ticker

    @property
    def single(self) -> Path:
        """The one file of an hour or daily resolution."""
        name = f"{self.ticker}_{self.tick}" if self.security == "crypto" else self.ticker
        return self.root / self.security / self.market / self.resolution / f"{name}.zip"

    @property
    def scale(self) -> float | None:
        """The divisor of stored prices (US equities), or None."""
        return _EQUITY_SCALE if self.security == "equity" else None

    @property
    def width(self) -> int:
        """The number of fields in a row."""
        return 11 if self.tick == "quote" else 6

    def day_files(self) -> list[tuple[date, Path]]:
        """Return the ticker's day files, oldest first."""
        pattern = re.compile(rf"^(\d{{8}})_{self.tick}\.zip$")
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        out = []
        for name in names:
            match = pattern.match(name)
            if match:
                try:
                    day = datetime.strptime(match.group(1), "%Y%m%d").date()
                except ValueError:
                    continue
                out.append((day, self.folder / name))
        return sorted(out)


def lean_candidates(
    instrument_id: InstrumentId, symbols: dict[str, str] | None
) -> list[tuple[str, str, str]]:
    """
    Return the ``(security type, market, ticker)`` an instrument may be, by the documented rule.

    ``symbols[instrument_id]`` when set; a US equity venue (ARCA, NASDAQ, NYSE, ...) gives
    ``equity/usa/<symbol>``; OANDA gives ``forex/oanda/<symbol without />`` or
    ``cfd/oanda/...`` (the files decide); COINBASE gives ``crypto/coinbase/<symbol without / or
    ->``. Tickers are lower case.

    Parameters
    ----------
    instrument_id : InstrumentId
        The instrument.
    symbols : dict[str, str], optional
        The source's ``symbols`` table.

    Returns
    -------
    list[tuple[str, str, str]]

    """
    override = (symbols or {}).get(str(instrument_id))
    if override is not None:
        security, market, ticker = override.split("/")
        return [(security, market.lower(), ticker.lower())]
    venue = instrument_id.venue.value.upper()
    symbol = instrument_id.symbol.value
    if venue in US_EQUITY_VENUES and "/" not in symbol:
        return [("equity", "usa", symbol.lower())]
    if venue in OANDA_VENUES:
        ticker = symbol.replace("/", "").replace("_", "").lower()
        return [("forex", "oanda", ticker), ("cfd", "oanda", ticker)]
    if venue in CRYPTO_VENUES:
        ticker = symbol.replace("/", "").replace("-", "").lower()
        return [("crypto", CRYPTO_VENUES[venue], ticker)]
    return []


class LeanBarSource(BarSource):
    """
    Bars from a QuantConnect LEAN data folder, as LEAN's ``TradeBar``/``QuoteBar`` readers
    define them.
    """

    config_type: ClassVar[type[LeanSourceConfig]] = LeanSourceConfig
    config: LeanSourceConfig

    def fetch(self, request: BarRequest, span: Span) -> SourceResult:
        """
        Read the files the span needs and return its bars.

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
        files = self.locate(request)
        notes: list[str] = []
        failure = None
        if files.daily_files:
            table, failure = self._read_days(files, request, span, notes)
        else:
            if not files.single.is_file():
                raise _problem("path", f"no LEAN file {self._shown(files.single)}", status="empty")
            table = read_lean_file(files, files.single, notes)
            table = within(table, span, request.step_ns)
            notes.insert(0, f"read {files.single.relative_to(files.root)}")
        return SourceResult(
            newest(table, span.limit), timestamp_is="open", notes=notes, failure=failure
        )

    def check(self, requests: list[BarRequest]) -> list[str]:
        """
        Report, offline, requests this folder cannot serve: no folder, no files for the
        window, a resolution or price type LEAN does not store, an unknown market time zone.

        Parameters
        ----------
        requests : list[BarRequest]
            The configured requests.

        Returns
        -------
        list[str]

        """
        problems = []
        for request in requests:
            try:
                files = self.locate(request)
                if files.daily_files:
                    self._wanted_days(files, request, Span(request.start_ns, request.end_ns))
                elif not files.single.is_file():
                    raise _problem("path", f"no LEAN file {self._shown(files.single)}")
            except SourceError as e:
                problems.append(f"{e.key or 'path'}: {e}")
        return list(dict.fromkeys(problems))

    def _shown(self, path: Path) -> str:
        # A path as the config wrote it: a relative one stays relative to the TOML's folder.
        if Path(self.config.path).expanduser().is_absolute():
            return str(path)
        return os.path.relpath(path, self.context.base_dir)

    # -- where -------------------------------------------------------------------------------

    def locate(self, request: BarRequest) -> LeanFiles:
        """
        Return where the request's bars are.

        Parameters
        ----------
        request : BarRequest
            The request.

        Returns
        -------
        LeanFiles

        Raises
        ------
        SourceError
            With a ``key`` attribute naming the config key to fix.

        """
        bar_type = request.bar_type
        instrument = bar_type.instrument_id
        resolution = RESOLUTIONS.get(request.step_ns)
        if resolution is None:
            step = str(bar_type.spec).rsplit("-", 1)[0]
            raise _problem(
                "plugin",
                f"LEAN stores second, minute, hour and daily bars; {bar_type} asks for {step}",
            )
        root = Path(os.path.normpath(self.context.resolve(self.config.path)))
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise _problem("path", f"LEAN data folder {self._shown(root)} {what}", status="empty")
        side = bar_type.spec.price_type.name
        if bar_type.spec.price_type not in (
            PriceType.LAST,
            PriceType.BID,
            PriceType.ASK,
            PriceType.MID,
        ):
            raise _problem("plugin", f"LEAN has no {side} bars ({bar_type})")
        tick = "trade" if side == "LAST" else "quote"
        candidates = lean_candidates(instrument, self.config.symbols)
        if not candidates:
            raise _problem(
                "symbols",
                f"cannot tell where {instrument} is in a LEAN data folder; set "
                f'symbols = {{"{instrument}" = "<equity|forex|crypto|cfd>/<market>/<ticker>"}}',
            )
        found = []
        for security, market, ticker in candidates:
            files = LeanFiles(root, security, market, ticker, resolution[0], tick, "", side)
            where = files.folder if files.daily_files else files.single
            if where.exists() or len(candidates) == 1:
                found.append(files)
        if not found:
            tried = ", ".join(
                str(
                    LeanFiles(root, s, m, t, resolution[0], tick, "", side).folder.relative_to(root)
                )
                for s, m, t in candidates
            )
            raise _problem(
                "path", f"no LEAN data for {instrument} in {self._shown(root)} (looked in {tried})"
            )
        if len(found) > 1:
            places = ", ".join(f"{f.security}/{f.market}/{f.ticker}" for f in found)
            raise _problem(
                "symbols",
                f"{instrument} has LEAN data in more than one place ({places}); set "
                f'symbols = {{"{instrument}" = "{found[0].security}/{found[0].market}/'
                f'{found[0].ticker}"}}',
            )
        files = found[0]
        if files.security in ("forex", "cfd") and tick == "trade":
            raise _problem(
                "plugin",
                f"LEAN {files.security} data are quotes only: request BID, ASK or MID bars, "
                f"not {bar_type}",
            )
        if files.security == "equity" and tick == "quote" and not files.daily_files:
            raise _problem(
                "plugin",
                f"LEAN keeps US equity {files.resolution} bars as trades only: request LAST "
                f"bars, not {bar_type}",
            )
        market = f"{files.security}/{files.market}"
        tz = (self.config.timezones or {}).get(market) or DATA_TIME_ZONES.get(market)
        if tz is None:
            raise _problem(
                "timezones",
                f"the data time zone of LEAN market {market} is not known to this plugin; set "
                f'timezones = {{"{market}" = "<IANA zone>"}} from the dataTimeZone of its entry '
                "in LEAN's market-hours database",
            )
        session = None if self.config.extended_hours else REGULAR_HOURS.get(market)
        return LeanFiles(
            root,
            files.security,
            files.market,
            files.ticker,
            files.resolution,
            tick,
            tz,
            side,
            session,
        )

    def _wanted_days(
        self, files: LeanFiles, request: BarRequest, span: Span
    ) -> list[tuple[date, Path]]:
        days = files.day_files()
        zone = ZoneInfo(files.tz)
        # A bar opening before `end` is in the file of its local date.
        last = _local_date(span.end - 1, zone)
        first = _local_date(span.start, zone) if span.start is not None else None
        wanted = [(d, p) for d, p in days if d <= last and (first is None or d >= first)]
        if not wanted:
            window = f"{first} .. {last}" if first is not None else f"up to {last}"
            have = f"{days[0][0]} .. {days[-1][0]}" if days else "none"
            raise _problem(
                "path",
                f"no LEAN {files.tick} files for {request.bar_type} in "
                f"{self._shown(files.folder)} for {window} (local dates; the folder has {have})",
                status="empty",
            )
        return wanted

    def _read_days(
        self, files: LeanFiles, request: BarRequest, span: Span, notes: list[str]
    ) -> tuple[pa.Table, SourceError | None]:
        wanted = self._wanted_days(files, request, span)
        step = request.step_ns
        count_mode = span.start is None and span.limit is not None
        # Newest files first: in count mode only as many as `limit` bars need; in time mode
        # in slices, so a deadline leaves the newest part of the window read.
        tables: list[pa.Table] = []
        got = used = 0
        batch = 1 if count_mode else _SLICE
        failure = None
        while used < len(wanted) and not (count_mode and got >= (span.limit or 0)):
            if span.deadline is not None and time.monotonic() >= span.deadline:
                failure = SourceError(
                    f"deadline reached with {used} of {len(wanted)} LEAN files read "
                    f"(in {files.folder.relative_to(files.root)})",
                    status="timeout",
                )
                break
            take = wanted[max(0, len(wanted) - used - batch) : len(wanted) - used]
            table = within(read_lean_days(files, take, notes), span, step)
            tables.insert(0, table)
            got += table.num_rows - table.column("ts").null_count
            used += len(take)
            if span.progress is not None:
                span.progress(table.num_rows)
            if count_mode:
                batch = math.ceil(((span.limit or 0) - got) / max(got / used, 1.0))
        if used:
            first = wanted[len(wanted) - used][0]
            notes.insert(
                0,
                f"read {used} {files.tick} file(s) {first:%Y%m%d} .. {wanted[-1][0]:%Y%m%d} in "
                f"{files.folder.relative_to(files.root)} ({files.tz})",
            )
        if not tables:
            return BAR_SCHEMA.empty_table(), failure
        return (pa.concat_tables(tables) if len(tables) > 1 else tables[0]), failure


def _local_date(ns: int, zone: ZoneInfo) -> date:
    seconds = max(min(ns // 10**9, 253_402_214_400), -62_135_596_800)
    return datetime.fromtimestamp(seconds, UTC).astimezone(zone).date()


# -- reading -----------------------------------------------------------------------------------


def _member(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise SourceError(
                    f"{path}: {len(names)} files in the archive; LEAN bar zips hold one CSV"
                )
            return archive.read(names[0])
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
        raise SourceError(f"{path}: not a readable LEAN zip: {e}") from None


def _clean(data: bytes) -> tuple[bytes, np.ndarray | None, int]:
    # Returns the rows, each ending in a newline, their 1-based line numbers when blank lines
    # were dropped (the CSV reader would skip them and shift every number after), and a count.
    if not data.strip():
        return b"", None, 0
    if not data.endswith(b"\n"):
        data += b"\n"
    if data[:1] in (b"\n", b"\r") or b"\n\n" in data or b"\n\r\n" in data:
        lines = data.split(b"\n")[:-1]
        keep = [i for i, line in enumerate(lines) if line.strip()]
        cleaned = b"".join(lines[i] + b"\n" for i in keep)
        return cleaned, np.array(keep, dtype=np.int64) + 1, len(keep)
    return data, None, data.count(b"\n")


def _load(path: Path) -> tuple[bytes, np.ndarray | None, int]:
    return _clean(_member(path))


def read_lean_days(files: LeanFiles, batch: list[tuple[date, Path]], notes: list[str]) -> pa.Table:
    """
    Read second or minute files: each row's time is milliseconds since midnight of the file's
    date in the data time zone (LEAN: ``date.Date.AddMilliseconds(csv[0])``).

    Parameters
    ----------
    files : LeanFiles
        Where and what.
    batch : list[tuple[date, Path]]
        The files and their dates.
    notes : list[str]
        Messages for the report are appended here.

    Returns
    -------
    pa.Table
        `BAR_SCHEMA` columns (``ts`` the bar open, UNIX ns), ``_row`` and ``_file``.

    """
    paths = [p for _, p in batch]
    if len(paths) > 8:  # zlib and file reads release the GIL: unzip on every core
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            loaded = list(pool.map(_load, paths))
    else:
        loaded = [_load(p) for p in paths]
    counts = np.array([n for _, _, n in loaded], dtype=np.int64)
    table = _parse(b"".join(data for data, _, _ in loaded), files.width, int(counts.sum()))
    if table is None:  # a malformed row somewhere: read file by file, row by row
        table = pa.concat_tables([_parse_slow(data, files.width) for data, _, _ in loaded])
    rows = [
        numbers if numbers is not None else np.arange(1, n + 1, dtype=np.int64)
        for _, numbers, n in loaded
    ]
    midnights = np.array([(d - date(1970, 1, 1)).days * _DAY_NS for d, _ in batch], dtype=np.int64)
    ms = table.column(0)
    # LEAN adds any number of ms to the date; one outside the day is no time of that file.
    inside = pc.and_(pc.greater_equal(ms, 0), pc.less(ms, _DAY_NS // _MS))
    outside = int(pc.sum(pc.invert(pc.fill_null(inside, True))).as_py() or 0)
    if outside:
        ms = pc.if_else(inside, ms, pa.scalar(None, pa.int64()))
        notes.append(
            f"{outside} row(s) with a time outside their file's day (ms since midnight not in "
            "0 .. 86399999): dropped as unparseable"
        )
    wall = pc.add(pc.multiply(ms, _MS), pa.array(np.repeat(midnights, counts)))
    if files.tz == "UTC":
        ts = wall
    else:  # wall clock to UTC; a time the zone skips or repeats (DST) becomes null
        ts = to_epoch_ns(pc.cast(wall, pa.timestamp("ns")), "auto", files.tz)
    names = [str(p.relative_to(files.root)) for p in paths]
    file_index = pa.array(np.repeat(np.arange(len(batch), dtype=np.int32), counts))
    out = _bars(files, ts, table, notes)
    out = out.append_column(
        "_row", pa.array(np.concatenate(rows) if rows else [], pa.int64())
    ).append_column("_file", pa.DictionaryArray.from_arrays(file_index, pa.array(names)))
    if files.session is not None:
        opens, closes = files.session
        regular = pc.and_(pc.greater_equal(ms, opens), pc.less(ms, closes))
        keep = pc.fill_null(regular, True)  # unparsed rows stay, to be counted
        left = len(keep) - int(pc.sum(keep).as_py() or 0)
        if left:
            out = out.filter(keep)
            notes.append(
                f"{left} extended-hours bar(s) outside the regular session left out, as LEAN "
                "does by default (extended_hours = true keeps them)"
            )
    return out


def read_lean_file(files: LeanFiles, path: Path, notes: list[str]) -> pa.Table:
    """
    Read an hour or daily file: ``YYYYMMDD HH:mm`` in the data time zone; daily bars are
    stamped at 00:00 UTC of their session date, as this project stamps IB and CSV daily bars.

    Parameters
    ----------
    files : LeanFiles
        Where and what.
    path : Path
        The zip.
    notes : list[str]
        Messages for the report are appended here.

    Returns
    -------
    pa.Table
        `BAR_SCHEMA` columns, ``_row``, ``_file`` and ``_raw`` (the time as written).

    """
    data, numbers, n = _clean(_member(path))
    table = _parse(data, files.width, n, time_as_text=True)
    if table is None:
        table = _parse_slow(data, files.width, time_as_text=True)
    raw = table.column(0).combine_chunks()
    if files.resolution == "daily":
        # LEAN writes "YYYYMMDD 00:00"; any other time would make the session date a guess.
        ok = pc.match_substring_regex(raw, r"^\d{8} 00:00$")
        day = pc.utf8_slice_codeunits(raw, 0, 8)
        ts = to_epoch_ns(pc.if_else(ok, day, pa.scalar(None, pa.string())), "%Y%m%d", "UTC")
        odd = int(pc.sum(pc.invert(pc.fill_null(ok, False))).as_py() or 0)
        if odd:
            notes.append(
                f"{path.name}: {odd} daily row(s) not stamped 'YYYYMMDD 00:00': no session date, "
                "dropped as unparseable"
            )
    else:
        ts = to_epoch_ns(raw, "%Y%m%d %H:%M", files.tz)
    out = _bars(files, ts, table, notes)
    row = numbers if numbers is not None else np.arange(1, n + 1, dtype=np.int64)
    name = str(path.relative_to(files.root))
    return (
        out.append_column("_row", pa.array(row, pa.int64()))
        .append_column(
            "_file",
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([name])),
        )
        .append_column("_raw", raw)
    )


def _parse(data: bytes, width: int, n: int, time_as_text: bool = False) -> pa.Table | None:
    names = [f"f{i}" for i in range(width)]
    types: dict[str, Any] = {k: pa.float64() for k in names}
    types["f0"] = pa.string() if time_as_text else pa.int64()
    if n == 0:
        return pa.table({k: pa.array([], types[k]) for k in names})
    bad: list[int] = []
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_BLOCK),
            parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: _skip(bad)),
            convert_options=pacsv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid:
        return None
    if bad or table.num_rows != n:
        return None
    return table


def _skip(bad: list[int]) -> str:
    bad.append(1)
    return "skip"


def _parse_slow(data: bytes, width: int, time_as_text: bool = False) -> pa.Table:
    # Row by row: a row with the wrong number of fields, or a field that is not a number,
    # becomes nulls on that row (counted as unparseable), never a shifted or guessed value.
    text = data.decode("utf-8", errors="replace")
    columns: list[list[Any]] = [[] for _ in range(width)]
    for fields in pycsv.reader(io.StringIO(text)):
        if not fields:
            continue
        ok = len(fields) == width
        for i in range(width):
            value = fields[i].strip() if ok else ""
            if i == 0 and time_as_text:
                columns[0].append(value or None)
                continue
            try:
                number = float(value) if value else None
            except ValueError:
                number = None
            if i == 0 and number is not None:
                whole = number.is_integer() and abs(number) < 2**62
                number = int(number) if whole else None
            columns[i].append(number)
    out = {}
    for i, values in enumerate(columns):
        kind = pa.string() if i == 0 and time_as_text else pa.int64() if i == 0 else pa.float64()
        out[f"f{i}"] = pa.array(values, kind)
    return pa.table(out)


def _decimals(columns: list[pa.Array]) -> int | None:
    # The fewest decimals that write every value exactly (LEAN writes a fixed number).
    values = [c.to_numpy(zero_copy_only=False) for c in columns]
    with np.errstate(over="ignore", invalid="ignore"):  # inf and huge values: judged later
        for k in range(11):
            scale = 10.0**k
            if all(
                bool(np.all(~np.isfinite(v) | (np.rint(v * scale) / scale == v))) for v in values
            ):
                return k
    return None


def _bars(files: LeanFiles, ts: pa.Array, table: pa.Table, notes: list[str]) -> pa.Table:
    def col(i: int) -> pa.ChunkedArray:
        c = table.column(i)
        return pc.divide(c, files.scale) if files.scale else c

    n = table.num_rows
    if files.tick == "trade":
        values = [col(i) for i in range(1, 6)]
        if files.scale:  # volume is not scaled
            values[4] = table.column(5)
    else:
        bid = [table.column(i) for i in range(1, 5)]
        ask = [table.column(i) for i in range(6, 10)]
        if files.side == "BID":
            prices = bid
        elif files.side == "ASK":
            prices = ask
        else:
            # LEAN's QuoteBar OHLC: the mean of bid and ask, field by field. Where a side is
            # missing or zero LEAN uses the other side alone, which is no mid: refused here.
            # In whole units of the file's last decimal the sum is exact, so one division
            # gives the float nearest the decimal mid (1.38676 and 1.38687 -> 1.386815).
            unit = 1.0 if files.scale else 10.0 ** (_decimals([*bid, *ask]) or 0)
            prices = []
            for b, a in zip(bid, ask, strict=True):
                both = pc.and_(pc.greater(b, 0), pc.greater(a, 0))
                units = pc.add(pc.round(pc.multiply(b, unit)), pc.round(pc.multiply(a, unit)))
                mid = pc.divide(units, 2.0 * unit)
                prices.append(pc.if_else(both, mid, pa.scalar(None, pa.float64())))
        if files.scale:
            prices = [pc.divide(p, files.scale) for p in prices]
        missing = pc.and_(pc.is_valid(ts), pc.is_null(prices[3]))
        one_sided = int(pc.sum(missing).as_py() or 0)
        if one_sided > 0:
            what = "a bid and an ask" if files.side == "MID" else f"the {files.side.lower()} side"
            notes.append(
                f"{one_sided} quote row(s) lack {what} (LEAN leaves the side empty without "
                "quotes): dropped as unparseable"
            )
        values = [*prices, pa.array(np.zeros(n))]
    data = {"ts": ts, **dict(zip(("open", "high", "low", "close", "volume"), values, strict=True))}
    return pa.table(data, schema=BAR_SCHEMA)
