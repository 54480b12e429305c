"""Reading freqtrade's OHLCV files: json, json.gz, feather and parquet, spot and futures."""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq
from nautilus_backfill.catalogfmt import FIELDS, newest
from nautilus_backfill.errors import SourceError
from nautilus_backfill.plugins.freqtrade.config import FreqtradeSourceConfig
from nautilus_backfill.source import BAR_SCHEMA, BarRequest, BarSource, SourceResult, Span, within
from nautilus_trader.model.data import BarType
from nautilus_trader.model.enums import BarAggregation, PriceType
from nautilus_trader.model.identifiers import InstrumentId
from pyarrow import csv as pacsv

# freqtrade's timeframe letters for the bar aggregations it has (ccxt's names).
_UNITS = {
    BarAggregation.SECOND: "s",
    BarAggregation.MINUTE: "m",
    BarAggregation.HOUR: "h",
    BarAggregation.DAY: "d",
    BarAggregation.WEEK: "w",
}
# freqtrade's storage formats and their file extensions (IDataHandler._get_file_extension).
EXTENSIONS = {"json": "json", "jsongz": "json.gz", "feather": "feather", "parquet": "parquet"}
# Quote currencies a symbol without a separator (BTCUSDT) is split on, longest first. When
# several fit (BTCFDUSD: FDUSD or USD), the one whose file exists decides; if none or more
# than one does, the source asks for `pairs`.
KNOWN_QUOTES = (
    "FDUSD",
    "USDT",
    "USDC",
    "BUSD",
    "TUSD",
    "USDP",
    "BIDR",
    "IDRT",
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "AUD",
    "TRY",
    "BRL",
    "DAI",
    "BTC",
    "ETH",
    "BNB",
)
_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_MS = 1_000_000
# 1990-01-01 in epoch ms: freqtrade writes ms; values below this are seconds or garbage.
_MS_1990 = 631_152_000_000


def _problem(key: str, message: str, status: str = "error") -> SourceError:
    # The config key a problem concerns travels with it, for `check`.
    return SourceError(message, status=status, key=key)


def timeframe(bar_type: BarType) -> str:
    """
    Return freqtrade's timeframe for a bar type (``1-MINUTE`` -> ``1m``, ``1-WEEK`` -> ``1w``).

    Parameters
    ----------
    bar_type : BarType
        The bar type.

    Returns
    -------
    str

    Raises
    ------
    SourceError
        If freqtrade has no name for the step.

    """
    unit = _UNITS.get(bar_type.spec.aggregation)
    if unit is None:
        step = str(bar_type.spec).rsplit("-", 1)[0]
        raise _problem(
            "plugin",
            f"freqtrade has no timeframe for {step} bars ({bar_type}); it names seconds, "
            "minutes, hours, days and weeks (1s, 1m, 5m, 1h, 1d, 1w, ...)",
        )
    return f"{bar_type.spec.step}{unit}"


def pair_to_filename(pair: str) -> str:
    """
    Return the file name stem freqtrade uses for a pair (``misc.pair_to_filename``).

    Parameters
    ----------
    pair : str
        The pair, e.g. ``BTC/USDT:USDT``.

    Returns
    -------
    str

    """
    for ch in ("/", " ", ".", "@", "$", "+", ":"):
        pair = pair.replace(ch, "_")
    return pair


def pair_candidates(instrument_id: InstrumentId, pairs: dict[str, str] | None) -> list[str]:
    """
    Return the freqtrade pairs an instrument id may stand for, by the documented rule.

    ``pairs[instrument_id]`` when set; ``BTC/USDT`` as is; ``BTC/USDT:USDT`` as is (futures);
    ``BTCUSDT`` split on each known quote currency it ends with (spot); ``BTCUSDT-PERP``
    likewise, as a futures pair settled in its quote currency (``BTC/USDT:USDT``).

    Parameters
    ----------
    instrument_id : InstrumentId
        The instrument.
    pairs : dict[str, str], optional
        The source's ``pairs`` table.

    Returns
    -------
    list[str]

    """
    override = (pairs or {}).get(str(instrument_id))
    if override is not None:
        return [override]
    symbol = instrument_id.symbol.value
    if "/" in symbol:
        return [symbol]
    futures = symbol.upper().endswith("-PERP")
    core = symbol[: -len("-PERP")] if futures else symbol
    out = []
    for quote in KNOWN_QUOTES:
        if core.upper().endswith(quote) and len(core) > len(quote):
            base = core[: -len(quote)]
            out.append(f"{base}/{quote}:{quote}" if futures else f"{base}/{quote}")
    return out


def pair_file(root: Path, pair: str, tf: str, fmt: str) -> Path:
    """
    Return where freqtrade stores a pair's candles (``IDataHandler._pair_data_filename``).

    Parameters
    ----------
    root : Path
        The exchange's data folder.
    pair : str
        The pair; with ``:SETTLE`` it is a futures pair, under ``futures/``.
    tf : str
        The timeframe.
    fmt : str
        The format (a key of `EXTENSIONS`).

    Returns
    -------
    Path

    """
    stem = pair_to_filename(pair)
    if ":" in pair:
        return root / "futures" / f"{stem}-{tf}-futures.{EXTENSIONS[fmt]}"
    return root / f"{stem}-{tf}.{EXTENSIONS[fmt]}"


class FreqtradeBarSource(BarSource):
    """
    Bars from a freqtrade data folder, as freqtrade's own data handlers load them.
    """

    config_type: ClassVar[type[FreqtradeSourceConfig]] = FreqtradeSourceConfig
    config: FreqtradeSourceConfig

    def fetch(self, request: BarRequest, span: Span) -> SourceResult:
        """
        Read the candle file of the request's pair and timeframe and return the bars in `span`.

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
        path, fmt, pair = self._locate(request)
        table = read_candles(path, fmt)
        table = within(table, span, request.step_ns)
        notes = [f"{path.name}: freqtrade pair {pair}, {fmt}"]
        return SourceResult(newest(table, span.limit), timestamp_is="open", notes=notes)

    def check(self, requests: list[BarRequest]) -> list[str]:
        """
        Report, offline, requests this folder cannot serve: missing folder or file, a step
        freqtrade has no timeframe for, a price type other than LAST, an ambiguous pair.

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
                self._locate(request)
            except SourceError as e:
                problems.append(f"{e.key or 'path'}: {e}")
        return list(dict.fromkeys(problems))

    def _shown(self, path: Path) -> str:
        # A path as the config wrote it: a relative one stays relative to the TOML's folder.
        if Path(self.config.path).expanduser().is_absolute():
            return str(path)
        return os.path.relpath(path, self.context.base_dir)

    def _locate(self, request: BarRequest) -> tuple[Path, str, str]:
        bar_type = request.bar_type
        if bar_type.spec.price_type != PriceType.LAST:
            raise _problem(
                "plugin",
                f"freqtrade candles are trade (LAST) bars; {bar_type} asks for "
                f"{bar_type.spec.price_type.name} bars",
            )
        tf = timeframe(bar_type)
        root = Path(os.path.normpath(self.context.resolve(self.config.path)))
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise _problem(
                "path",
                f"freqtrade data folder {self._shown(root)} {what} (use user_data/data/<exchange>)",
                status="empty",
            )
        candidates = pair_candidates(bar_type.instrument_id, self.config.pairs)
        if not candidates:
            raise _problem(
                "pairs",
                f"cannot tell the freqtrade pair of {bar_type.instrument_id}: its symbol ends "
                f"with none of the known quote currencies ({', '.join(KNOWN_QUOTES)}); set "
                f'pairs = {{"{bar_type.instrument_id}" = "BASE/QUOTE"}}',
            )
        formats = list(EXTENSIONS) if self.config.format == "auto" else [self.config.format]

        def find(folder: Path) -> list[tuple[Path, str, str]]:
            return [
                (pair_file(folder, pair, tf, fmt), fmt, pair)
                for pair in candidates
                for fmt in formats
                if pair_file(folder, pair, tf, fmt).is_file()
            ]

        found = find(root)
        exchange = root / bar_type.instrument_id.venue.value.lower()
        if not found and exchange.is_dir():
            # `path` is user_data/data, one folder per exchange: the venue's, in lower case.
            root, found = exchange, find(exchange)
        if len(found) == 1:
            return found[0]
        if not found:
            tried = ", ".join(
                str(pair_file(root, p, tf, f).relative_to(root))
                for p in candidates
                for f in formats
            )
            others = sorted(
                p.name
                for p in {*root.glob("*"), *root.glob("futures/*")}
                if any(p.name.startswith(pair_to_filename(c) + "-") for c in candidates)
            )
            hint = f"; files of this pair: {', '.join(others)}" if others else ""
            raise _problem(
                "path",
                f"no freqtrade candles for {bar_type} in {self._shown(root)} "
                f"(looked for {tried}){hint}",
                status="empty",
            )
        files = ", ".join(str(f.relative_to(root)) for f, _, _ in found)
        if len({pair for _, _, pair in found}) > 1:
            raise _problem(
                "pairs",
                f"{bar_type.instrument_id} fits more than one freqtrade pair with files in "
                f"{self._shown(root)} ({files}); set "
                f'pairs = {{"{bar_type.instrument_id}" = "BASE/QUOTE"}}',
            )
        raise _problem(
            "format",
            f"{bar_type} has candles in more than one format in {self._shown(root)} ({files}); set "
            "format to the one freqtrade uses (its dataformat_ohlcv)",
        )


def read_candles(path: Path, fmt: str) -> pa.Table:
    """
    Read a freqtrade candle file into bar columns, as freqtrade's data handler does.

    Parameters
    ----------
    path : Path
        The file.
    fmt : str
        ``json``, ``jsongz``, ``feather`` or ``parquet``.

    Returns
    -------
    pa.Table
        `BAR_SCHEMA` columns (``ts`` the open, UNIX ns) with ``_row`` (1-based position in the
        file) and ``_file``.

    Raises
    ------
    SourceError
        If the file is not what the format says.

    """
    if fmt in ("json", "jsongz"):
        ts, values = _read_json(path, gz=fmt == "jsongz")
    else:
        ts, values = _read_arrow(path, fmt)
    n = len(ts)
    data: dict[str, Any] = {"ts": ts}
    data.update(zip(FIELDS, values, strict=True))
    table = pa.table(data, schema=BAR_SCHEMA)
    files = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([path.name])
    )
    return table.append_column("_row", pa.array(np.arange(1, n + 1, dtype=np.int64))).append_column(
        "_file", files
    )


def _read_json(path: Path, gz: bool) -> tuple[pa.Array, list[pa.Array]]:
    # JsonDataHandler: read_json(orient="values"), the first column epoch ms, the rest float.
    try:
        raw = path.read_bytes()
        if gz:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise SourceError(f"{path}: cannot read: {e}") from None
    fast = _json_numbers(raw)
    if fast is not None:
        ms = fast.column(0).to_numpy(zero_copy_only=False).astype(np.float64)
        ts = _ms_to_ns(ms, ~np.isnan(ms), path)
        # null is NaN, as pandas reads it (and as the row-by-row path gives it).
        values = [pc.fill_null(fast.column(i), np.nan).combine_chunks() for i in range(1, 6)]
        return ts, values
    try:
        rows = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise SourceError(
            f"{path}: not JSON ({e}); freqtrade's json format is an array of "
            "[epoch ms, open, high, low, close, volume] arrays"
        ) from None
    if not isinstance(rows, list):
        raise SourceError(
            f"{path}: a JSON {type(rows).__name__}, not freqtrade's array of "
            "[epoch ms, open, high, low, close, volume] arrays"
        )
    n = len(rows)
    bad = np.zeros(n, dtype=bool)
    try:
        arr = np.array(rows, dtype=np.float64)  # null -> nan, as pandas reads it
        if arr.ndim != 2 or arr.shape[1] != 6:
            raise ValueError
    except (ValueError, TypeError):
        arr = np.full((n, 6), np.nan)
        for i, row in enumerate(rows):
            try:
                if not isinstance(row, list) or len(row) != 6:
                    raise ValueError
                arr[i] = np.array(row, dtype=np.float64)
            except (ValueError, TypeError):
                bad[i] = True
        if n and bad.all():
            first = rows[0]
            shown = f"{len(first)} values" if isinstance(first, list) else repr(first)[:40]
            raise SourceError(
                f"{path}: rows are not [epoch ms, open, high, low, close, volume] (row 1 has "
                f"{shown}); is this a freqtrade OHLCV file?"
            ) from None
    ts = _ms_to_ns(arr[:, 0], ~bad, path)
    values = [pa.array(arr[:, i], mask=bad if bad.any() else None) for i in range(1, 6)]
    return ts, values


def _json_numbers(raw: bytes) -> pa.Table | None:
    # The common case, an array of six-number arrays, read as CSV text (many times faster
    # than building Python lists). Anything else (strings, nesting, other widths, a time
    # that is no integer) returns None and takes the exact row-by-row path.
    body = raw.translate(None, b" \t\r\n")
    if not (body.startswith(b"[[") and body.endswith(b"]]")):
        return None
    body = body[2:-2].replace(b"],[", b"\n")
    if not body or b"[" in body or b"]" in body or b'"' in body:
        return None
    names = [f"c{i}" for i in range(6)]
    types: dict[str, Any] = {k: pa.float64() for k in names}
    types["c0"] = pa.int64()
    bad: list[int] = []

    def skip(_: Any) -> str:
        bad.append(1)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(
                column_types=types, null_values=["null"], strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid:
        return None
    if bad or table.num_rows != body.count(b"\n") + 1:
        return None
    return table


def _ms_to_ns(ms: np.ndarray, ok: np.ndarray, path: Path) -> pa.Array:
    finite = ok & np.isfinite(ms)
    if finite.any() and float(np.median(ms[finite])) >= 9.2e12:
        raise SourceError(
            f"{path}: dates after 2262 (first {ms[finite][0]:.0f}); freqtrade stores the candle "
            "open in epoch milliseconds: is this file in epoch microseconds or nanoseconds?"
        )
    ok = finite & (np.abs(ms) < 9.2e12)  # beyond that, no int64 ns exists
    whole = np.where(ok, ms, 0.0)
    if ok.any() and float(np.median(whole[ok])) < _MS_1990:
        raise SourceError(
            f"{path}: dates before 1990 (first {ms[ok][0]:.0f}); freqtrade stores the candle "
            "open in epoch milliseconds: is this file in epoch seconds?"
        )
    ints = whole.astype(np.int64)
    ns = ints * _MS
    frac = whole - ints
    if frac.any():  # fractions of a millisecond, as pandas' unit="ms" keeps them
        ns += np.rint(frac * _MS).astype(np.int64)
    return pa.array(ns, mask=~ok if not ok.all() else None)


def _read_arrow(path: Path, fmt: str) -> tuple[pa.Array, list[pa.Array]]:
    # Feather/ParquetDataHandler: columns taken by position as date, open, high, low, close,
    # volume; prices cast to float; date via to_datetime(unit="ms", utc=True).
    try:
        with warnings.catch_warnings():  # pyarrow deprecates feather V1: not the user's fault
            warnings.simplefilter("ignore", DeprecationWarning)
            table = pq.read_table(path) if fmt == "parquet" else feather.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        kind = "parquet" if fmt == "parquet" else "feather (Arrow IPC)"
        raise SourceError(f"{path}: not a {kind} file: {e}") from None
    names = table.column_names
    if len(names) < 6:
        raise SourceError(
            f"{path}: {len(names)} columns ({', '.join(names)}); freqtrade candles have date, "
            "open, high, low, close, volume"
        )
    lower = [n.lower() for n in names[:6]]
    if set(lower) == set(_COLUMNS) and lower != list(_COLUMNS):
        # freqtrade would assign the names by position and load wrong bars: refuse.
        raise SourceError(
            f"{path}: columns in the order {', '.join(names[:6])}; freqtrade reads them by "
            f"position as {', '.join(_COLUMNS)}, which would swap prices"
        )
    date = table.column(0)
    kind = date.type
    try:
        if pa.types.is_timestamp(kind):
            ts = pc.cast(pc.cast(date, pa.timestamp("ns", kind.tz)), pa.int64())
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            numbers = date.to_numpy(zero_copy_only=False).astype(np.float64)
            ts = _ms_to_ns(numbers, ~np.asarray(pc.is_null(date)), path)
        else:
            raise SourceError(
                f"{path}: column '{names[0]}' is {kind}; freqtrade's date column is a UTC "
                "timestamp or epoch milliseconds"
            )
        values = [pc.cast(table.column(i), pa.float64()) for i in range(1, 6)]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SourceError(f"{path}: cannot read the candle columns as numbers: {e}") from None
    ts = ts.combine_chunks() if isinstance(ts, pa.ChunkedArray) else ts
    return ts, [v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v for v in values]
