"""
Timestamp columns to UNIX nanoseconds: read by a stated or unambiguous format, never guessed.

``auto`` accepts only layouts with one meaning:

- ISO 8601 (``2021-01-04T09:30:00Z``, ``2021-01-04 09:30:00.000000``, ``2021-01-04``), every
  value with a zone offset or none of them;
- ``YYYYMMDD[ HH:MM[:SS]]``, as text or as an integer;
- epoch numbers whose magnitude puts them between 1990 and 2100 in exactly one unit
  (seconds, milliseconds, microseconds or nanoseconds);
- ``DD/MM/YYYY`` or ``MM/DD/YYYY`` (also with ``.`` or ``-``) only when the data itself
  settles the order: some first field above 12 (day first) or some second field above 12
  (month first), never both.

Anything else raises `TimestampError` naming a sample value and the ``timestamp_format`` to
set. An explicit format is always honoured, whatever type the column was read as.

The result is int64 nanoseconds with nulls for values that do not parse. Values that parse
but do not fit in int64 nanoseconds (years before 1678 or after 2262) become `BAD_TS`; values
before 1970 stay negative. Neither fits in a NautilusTrader ``Bar``; the pipeline drops both as
``bad_timestamp``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from nautilus_backfill.errors import SourceError

BAD_TS = np.iinfo(np.int64).min
"""A timestamp that parsed but is outside what int64 nanoseconds hold."""

EPOCH_UNITS = {"epoch_s": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1_000, "epoch_ns": 1}
NAMED_FORMATS = ("auto", "iso", *EPOCH_UNITS)

# 1990-01-01 and 2100-01-01 in seconds: the epoch range `auto` accepts.
_AUTO_LO_S = 631_152_000
_AUTO_HI_S = 4_102_444_800
_INT64_MAX = np.iinfo(np.int64).max
_SAMPLE = 2000

_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})(?:([ T])(\d{2}):(\d{2})(?::(\d{2}))?)?")
_DAY_MONTH = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(.*)")
_YEAR_FIRST = re.compile(r"(\d{4})([/.])(\d{1,2})\2(\d{1,2})(.*)")
_TIME = re.compile(r"([ T]+)(\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?")
# A zone offset after a time of day (a date alone ends in "-04", which is no offset).
_OFFSET = r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$"
_ISO_SHAPE = r"^\d{4}-\d{2}-\d{2}"


class TimestampError(SourceError):
    """
    A timestamp column that cannot be read without guessing.

    Parameters
    ----------
    message : str
        The problem and the fix; ``{0}``, ``{1}``... stand for the rows at `positions`.
    positions : tuple[int, ...]
        0-based positions in the parsed column, for the caller to turn into line numbers.

    """

    def __init__(self, message: str, positions: tuple[int, ...] = ()) -> None:
        super().__init__(message.format(*(f"row {p + 1}" for p in positions)))
        self.template = message
        self.positions = positions

    def located(self, where: str, names: list[str]) -> str:
        """
        Return the message with a location prefix and the positions named.

        Parameters
        ----------
        where : str
            Prefix such as ``"data.csv: column 'Date'"``.
        names : list[str]
            One name per position, such as ``"line 7"``.

        Returns
        -------
        str

        """
        return f"{where}: {self.template.format(*names)}"


@dataclass(frozen=True)
class TimestampFormat:
    """
    A resolved way to read one file's timestamps (see `resolve_format`).

    Parameters
    ----------
    kind : str
        ``epoch``, ``iso`` or ``pattern``.
    scale : int
        Nanoseconds per unit, for ``epoch``.
    pattern : str
        The strftime pattern, for ``pattern``.
    auto : bool
        Chosen by ``auto``: epoch values outside 1990-2100 in the unit are `BAD_TS`.
    aware : bool | None
        For ``iso``: whether values carry an offset (None: not known yet).

    """

    kind: str
    scale: int = 1
    pattern: str = ""
    auto: bool = False
    aware: bool | None = None

    def describe(self) -> str:
        """
        Return the format as a ``timestamp_format`` value.

        Returns
        -------
        str

        """
        if self.kind == "epoch":
            return next(k for k, v in EPOCH_UNITS.items() if v == self.scale)
        return self.pattern if self.kind == "pattern" else "iso"


def _set(fmt: str) -> str:
    return f'set timestamp_format = "{fmt}"'


def _as_text(arr: pa.Array) -> pa.Array:
    # Integers as their digits (20190829), integral floats without ".0", text trimmed.
    t = arr.type
    if pa.types.is_floating(t):
        values = arr.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(values) & (np.abs(values) < 2**53) & (values == np.round(values))
        if integral[~np.isnan(values)].all():
            ints = np.where(integral, values, 0).astype(np.int64)
            return pc.cast(pa.array(ints, mask=~integral), pa.string())
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        arr = pc.cast(arr, pa.string())
    return pc.utf8_trim_whitespace(arr)


def _sample(text: pa.Array) -> list[str]:
    present = pc.drop_null(text.slice(0, 50 * _SAMPLE))
    return [s for s in present.to_pylist() if s][:_SAMPLE]


def _time_pattern(rest: str) -> str | None:
    if not rest.strip():
        return ""
    m = _TIME.fullmatch(rest)
    if m is None:
        return None
    sep = " " if " " in m.group(1) else "T"
    if m.group(4) is None:
        return f"{sep}%H:%M"
    return f"{sep}%H:%M:%S" + (".%f" if m.group(5) else "")


def _epoch_units(values: np.ndarray) -> np.ndarray:
    # For each value, the index into EPOCH_UNITS whose 1990-2100 range holds it, else -1.
    out = np.full(len(values), -1, dtype=np.int8)
    mag = np.abs(values)
    for i, per_s in enumerate((1, 1_000, 1_000_000, 1_000_000_000)):
        out[(mag >= _AUTO_LO_S * per_s) & (mag < _AUTO_HI_S * per_s)] = i
    return out


def _resolve_numbers(sample: list[str]) -> TimestampFormat:
    compact = [s for s in sample if len(s) == 8 and s.isdigit() and _valid_ymd(s)]
    if compact and len(compact) == len(sample):
        return TimestampFormat("pattern", pattern="%Y%m%d", auto=True)
    numbers = np.array([float(s) for s in sample if not (len(s) == 8 and s.isdigit())])
    units = _epoch_units(numbers)
    found = sorted(set(units[units >= 0].tolist()))
    names = list(EPOCH_UNITS)
    if not found:
        first = sample[0]
        every = np.array([float(s) for s in sample])
        if len(every) and bool(((every >= 0) & (every < 86_400_000)).all()):
            # Milliseconds since midnight: the date is in the file's name, not in the file.
            return _refuse(
                f"'{first}': these look like milliseconds since midnight, as in LEAN's minute "
                "and second files, whose date is in the file name: read LEAN data with "
                'plugin = "lean" (an epoch format would date every bar in 1970)'
            )
        hint = "it is no epoch time between 1990 and 2100 in s, ms, us or ns, nor YYYYMMDD"
        return _refuse(f"'{first}': {hint}; {_set('epoch_s')} (or _ms, _us, _ns) or a pattern")
    if len(found) > 1:
        a = sample[int(np.flatnonzero(units == found[0])[0])]
        b = sample[int(np.flatnonzero(units == found[1])[0])]
        return _refuse(
            f"epoch numbers in more than one unit ('{a}' is {names[found[0]]}, '{b}' is "
            f"{names[found[1]]}); {_set(names[found[0]])} or another epoch unit",
        )
    return TimestampFormat("epoch", scale=EPOCH_UNITS[names[found[0]]], auto=True)


def _valid_ymd(s: str) -> bool:
    y, m, d = int(s[:4]), int(s[4:6]), int(s[6:8])
    return 1900 <= y <= 2100 and 1 <= m <= 12 and 1 <= d <= 31


def _refuse(message: str) -> NoReturn:
    raise TimestampError(message.replace("{", "{{").replace("}", "}}"))


def _resolve_day_month(sample: list[str], first: re.Match[str]) -> TimestampFormat:
    sep = first.group(2)
    time = _time_pattern(first.group(5))
    matches = [m for m in (_DAY_MONTH.fullmatch(s) for s in sample) if m and m.group(2) == sep]
    day_first = [m.group(0) for m in matches if int(m.group(1)) > 12]
    month_first = [m.group(0) for m in matches if int(m.group(3)) > 12]
    dmy, mdy = f"%d{sep}%m{sep}%Y", f"%m{sep}%d{sep}%Y"
    suffix = time or ""
    if time is None:
        # Nothing here settles the day/month order either: name both, never one.
        _refuse(
            f"'{first.group(0)}': the time after the date is not HH:MM[:SS[.f]]; "
            f'{_set(mdy + " ...")} (month first, as US tools write it) or "{dmy} ..." '
            "(day first), with the time's own pattern, e.g. %H%M for 0930"
        )
    if day_first and not month_first:
        return TimestampFormat("pattern", pattern=dmy + suffix, auto=True)
    if month_first and not day_first:
        return TimestampFormat("pattern", pattern=mdy + suffix, auto=True)
    if day_first and month_first:
        return _refuse(
            f"'{day_first[0]}' is day first but '{month_first[0]}' is month first; fix the "
            f"file or {_set(dmy + suffix)} (rows in the other order are then dropped)",
        )
    return _refuse(
        f"'{first.group(0)}' can be day/month or month/day and no value settles it; "
        f'{_set(dmy + suffix)} or "{mdy + suffix}"',
    )


def resolve_format(column: pa.Array, fmt: str = "auto") -> TimestampFormat:
    """
    Decide how to read a timestamp column, from `fmt` and (for ``auto``) a sample of values.

    Resolve once per file, on its first rows, and read every batch with the result, so a
    file is never read one way in one part and another way in another.

    Parameters
    ----------
    column : pa.Array
        The first values of the column (any type).
    fmt : str, default "auto"
        ``auto``, ``iso``, ``epoch_s``/``_ms``/``_us``/``_ns`` or a strftime pattern.

    Returns
    -------
    TimestampFormat

    Raises
    ------
    TimestampError
        If ``auto`` cannot read the values without guessing.

    """
    if fmt in EPOCH_UNITS:
        return TimestampFormat("epoch", scale=EPOCH_UNITS[fmt])
    if fmt == "iso":
        return TimestampFormat("iso")
    if fmt != "auto":
        return TimestampFormat("pattern", pattern=fmt)
    t = column.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return TimestampFormat("iso")
    text = _as_text(column)
    sample = _sample(text)
    if not sample:
        return TimestampFormat("iso")  # nothing to go by yet: every value here is null
    first = sample[0]
    numeric = [s for s in sample if _NUMBER.fullmatch(s)]
    if len(numeric) * 2 > len(sample):
        return _resolve_numbers(numeric)
    if (m := _COMPACT.fullmatch(first)) and _valid_ymd(first[:8]):
        clock = "" if m.group(4) is None else f"{m.group(4)}%H:%M"
        clock += ":%S" if m.group(7) else ""
        return TimestampFormat("pattern", pattern="%Y%m%d" + clock, auto=True)
    if m := _DAY_MONTH.fullmatch(first):
        return _resolve_day_month(sample, m)
    if m := _YEAR_FIRST.fullmatch(first):
        rest = _time_pattern(m.group(5))
        sep = m.group(2)
        if rest is not None:
            return TimestampFormat("pattern", pattern=f"%Y{sep}%m{sep}%d{rest}", auto=True)
    strings = pd.Series(sample, dtype="object")
    parsed = pd.to_datetime(strings, format="ISO8601", errors="coerce", utc=True)
    if parsed.isna().all():
        return _refuse(
            f"'{first}' is not a timestamp auto reads (ISO 8601, YYYYMMDD[ HH:MM[:SS]], epoch "
            f'numbers); {_set("...")} with a strftime pattern such as "%d/%m/%Y %H:%M"',
        )
    return TimestampFormat("iso")


def _scale_to_ns(values: np.ndarray, valid: np.ndarray, per_unit: int) -> pa.Array:
    # int64 counts of a unit -> ns; those that overflow int64 ns become BAD_TS.
    values = np.where(valid, values, 0)
    if per_unit != 1:
        fits = np.abs(values) <= _INT64_MAX // per_unit
        values = np.where(fits, values * per_unit, BAD_TS)
    return pa.array(values.astype(np.int64, copy=False), mask=~valid)


def _from_datetimes(values: pd.Series) -> pa.Array:
    arr = values.to_numpy() if values.dt.tz is None else values.dt.tz_convert(None).to_numpy()
    valid = ~np.isnat(arr)
    unit = np.datetime_data(arr.dtype)[0]
    per_unit = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[unit]
    return _scale_to_ns(arr.view(np.int64), valid, per_unit)


def _localize(values: pd.Series, tz: str) -> pd.Series:
    # Naive wall-clock times in `tz`; a time a DST change skips or repeats is left unread.
    if tz == "UTC":
        return values
    local = values.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return local.dt.tz_convert("UTC").dt.tz_localize(None)


def _q(value: object) -> str:
    # A value quoted inside a TimestampError template.
    return repr(str(value)[:40]).replace("{", "{{").replace("}", "}}")


def _mixed(strings: pd.Series, aware: np.ndarray, naive: np.ndarray) -> TimestampError:
    a, n = int(np.flatnonzero(aware)[0]), int(np.flatnonzero(naive)[0])
    first, second = sorted((a, n))
    return TimestampError(
        f"mixed zone-aware and naive timestamps: {{0}} is {_q(strings[first])}, {{1}} is "
        f"{_q(strings[second])}; give every row an offset, or none and set timezone",
        (first, second),
    )


def _iso_parse(text: pa.Array, fmt: TimestampFormat | None, tz: str = "UTC") -> pa.Array:
    # Arrow's ISO parser when every value is alike (fast); pandas value by value otherwise.
    want = None if fmt is None else fmt.aware
    for aware in (want,) if want is not None else (False, True):
        try:
            cast = pc.cast(text, pa.timestamp("us", "UTC" if aware else None))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        series = pd.Series(cast.to_pandas(), copy=False)
        return _from_datetimes(series if aware else _localize(series, tz))
    strings = pd.Series(text.to_numpy(zero_copy_only=False), dtype="object")
    offset = pc.fill_null(pc.match_substring_regex(text, _OFFSET), False)
    # Only values shaped like an ISO date count; junk ("NaT") is left to be unparseable.
    shaped = pc.match_substring_regex(text, _ISO_SHAPE)
    present = pc.fill_null(shaped, False).to_numpy(zero_copy_only=False)
    aware_mask = offset.to_numpy(zero_copy_only=False) & present
    naive_mask = ~offset.to_numpy(zero_copy_only=False) & present
    if fmt is not None and want is not None:
        # Offsets and none in one file: the naive values' zone would be a guess.
        other = naive_mask if want else aware_mask
        if other.any():
            pos = int(np.flatnonzero(other)[0])
            same = aware_mask if want else naive_mask
            if same.any():
                raise _mixed(strings, aware_mask, naive_mask)
            kind, before = (
                ("has no zone offset", "with") if want else ("has a zone offset", "without")
            )
            raise TimestampError(
                f"mixed zone-aware and naive timestamps: {{0}} ({_q(strings[pos])}) {kind}, but "
                f"the file's first rows are {before} one; give every row an offset, or none "
                "and set timezone",
                (pos,),
            )
        aware = want
    else:
        aware = bool(aware_mask.any())
        if aware and naive_mask.any():
            raise _mixed(strings, aware_mask, naive_mask)
    try:
        parsed = pd.to_datetime(strings, format="ISO8601", errors="coerce", utc=aware)
    except (ValueError, TypeError, OverflowError):
        return pa.nulls(len(strings), pa.int64())
    return _from_datetimes(parsed if aware else _localize(parsed, tz))


def _epoch_parse(text: pa.Array, fmt: TimestampFormat) -> pa.Array:
    try:
        ints = pc.cast(text, pa.int64())
        valid = pc.is_valid(ints).to_numpy(zero_copy_only=False)
        values = pc.fill_null(ints, 0).to_numpy(zero_copy_only=False)
        if fmt.auto:
            units = _epoch_units(values.astype(np.float64))
            bad = valid & (units != list(EPOCH_UNITS.values()).index(fmt.scale))
        else:
            bad = np.zeros(len(values), dtype=bool)
        out = _scale_to_ns(values, valid, fmt.scale)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        strings = pd.Series(text.to_numpy(zero_copy_only=False), dtype="object")
        numbers = pd.to_numeric(strings, errors="coerce").to_numpy(dtype=np.float64)
        valid = np.isfinite(numbers)
        clean = np.where(valid, numbers, 0.0)
        if fmt.auto:
            bad = valid & (_epoch_units(clean) != list(EPOCH_UNITS.values()).index(fmt.scale))
        else:
            bad = np.zeros(len(clean), dtype=bool)
        with np.errstate(over="ignore", invalid="ignore"):
            ns = clean * fmt.scale
        fits = np.abs(ns) < 9.2e18
        bad |= valid & ~fits
        out = pa.array(np.where(fits, np.round(ns), 0).astype(np.int64), mask=~valid)
    if bad.any():
        mask = pc.is_null(out).to_numpy(zero_copy_only=False)
        values = np.where(bad, BAD_TS, pc.fill_null(out, 0).to_numpy(zero_copy_only=False))
        out = pa.array(values.astype(np.int64), mask=mask)
    return out


def parse_timestamps(column: pa.Array | pa.ChunkedArray, fmt: TimestampFormat, tz: str) -> pa.Array:
    """
    Read a timestamp column with a resolved format.

    Parameters
    ----------
    column : pa.Array | pa.ChunkedArray
        The values, of any type.
    fmt : TimestampFormat
        From `resolve_format`.
    tz : str
        The zone of naive values (IANA name).

    Returns
    -------
    pa.Array
        int64 UNIX ns: null where a value does not parse, `BAD_TS` where it is out of range.

    Raises
    ------
    TimestampError
        If zone-aware and naive values are mixed.

    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if len(arr) == 0:
        return pa.array([], pa.int64())
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_date(t):
            arr = pc.cast(arr, pa.timestamp("s"))
        series = pd.Series(arr.to_pandas(), copy=False)
        return _from_datetimes(series if arr.type.tz is not None else _localize(series, tz))
    if fmt.kind == "epoch" and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return _epoch_parse(pc.cast(arr, pa.string()) if pa.types.is_floating(t) else arr, fmt)
    text = _as_text(arr)
    if fmt.kind == "epoch":
        return _epoch_parse(text, fmt)
    if fmt.kind == "iso":
        return _iso_parse(text, fmt, tz)
    strings = pd.Series(text.to_numpy(zero_copy_only=False), dtype="object")
    if fmt.auto and fmt.pattern.startswith("%Y%m%d"):
        strings = strings.str.replace(r"\s+", " ", regex=True)
    aware = "%z" in fmt.pattern or "%Z" in fmt.pattern
    try:
        parsed = pd.to_datetime(strings, format=fmt.pattern, errors="coerce", utc=aware)
    except (ValueError, TypeError) as e:
        message = f"timestamp_format '{fmt.pattern}' cannot be used: {e}"
        raise TimestampError(message.replace("{", "{{").replace("}", "}}")) from None
    return _from_datetimes(parsed if aware else _localize(parsed, tz))


def with_awareness(fmt: TimestampFormat, column: pa.Array) -> TimestampFormat:
    """
    Pin down, from a file's first rows, whether its ISO timestamps carry offsets.

    Parameters
    ----------
    fmt : TimestampFormat
        The resolved format.
    column : pa.Array
        The first rows' values.

    Returns
    -------
    TimestampFormat

    """
    if fmt.kind != "iso" or fmt.aware is not None:
        return fmt
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        return fmt
    sample = [s for s in _sample(_as_text(column)) if re.match(_ISO_SHAPE, s)]
    if not sample:
        return fmt
    aware = re.search(_OFFSET, sample[0]) is not None
    return TimestampFormat("iso", aware=aware)


def to_epoch_ns(column: pa.ChunkedArray | pa.Array, fmt: str = "auto", tz: str = "UTC") -> pa.Array:
    """
    Parse a whole timestamp column into UNIX nanoseconds (`resolve_format` on its values).

    Parameters
    ----------
    column : pa.ChunkedArray | pa.Array
        Integers, floats, Arrow timestamps or dates, or strings.
    fmt : str, default "auto"
        ``auto``, ``iso``, ``epoch_s``/``_ms``/``_us``/``_ns`` or a ``strftime`` pattern.
    tz : str, default "UTC"
        The zone of naive values.

    Returns
    -------
    pa.Array
        int64 with nulls (unparseable) and `BAD_TS` (out of range).

    Raises
    ------
    TimestampError
        If ``auto`` would have to guess; the message says which format to set.

    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    resolved = with_awareness(resolve_format(arr, fmt), arr)
    return parse_timestamps(arr, resolved, tz)


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
        _as_text(_one(date)), _as_text(_one(time)), pa.scalar(" ", pa.string())
    )
    return _one(joined)


def _one(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
