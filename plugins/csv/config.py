"""Configuration of the CSV source."""

from __future__ import annotations

import codecs
import math
import zoneinfo

from nautilus_backfill.config import EDGES, SourceConfig
from nautilus_trader.common.config import NautilusConfig

TIMESTAMP_FORMATS = ("auto", "iso", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns")


class CsvColumns(NautilusConfig, frozen=True, kw_only=True):
    """
    Which CSV column holds each field: a header name or a 0-based position.

    Use `timestamp`, or `date` plus `time` when they are split.

    Parameters
    ----------
    timestamp : str | int, optional
        The column with the bar's date and time.
    date : str | int, optional
        The date column, when date and time are in two columns (set `time` too).
    time : str | int, optional
        The time-of-day column that goes with `date`.
    open : str | int, optional
        The open price column.
    high : str | int, optional
        The high price column.
    low : str | int, optional
        The low price column.
    close : str | int, optional
        The close price column.
    volume : str | int, optional
        The volume column; volume is 0 when the file has none.

    """

    timestamp: str | int | None = None
    date: str | int | None = None
    time: str | int | None = None
    open: str | int | None = None
    high: str | int | None = None
    low: str | int | None = None
    close: str | int | None = None
    volume: str | int | None = None


class CsvSourceConfig(SourceConfig, frozen=True, kw_only=True):
    """
    A CSV source.

    Parameters
    ----------
    path : str
        A file, glob or template (``{symbol}``, ``{raw_symbol}``, ``{venue}``, ``{step}``,
        ``{price_type}``, ``{instrument_id}``, ``{bar_type}``); relative to the TOML's folder.
    timestamp_is : str, default "open"
        Which edge of the bar the file's timestamps label: ``"open"`` or ``"close"``.
    timezone : str, default "UTC"
        The zone of naive timestamps (IANA name).
    timestamp_format : str, default "auto"
        ``auto``, ``iso``, ``epoch_s``, ``epoch_ms``, ``epoch_us``, ``epoch_ns`` or a
        ``strftime`` pattern such as ``"%Y%m%d %H:%M:%S"``.
    delimiter : str, optional
        Sniffed when omitted.
    header : bool, optional
        Whether the first line is a header; detected when omitted.
    columns : CsvColumns, optional
        Column map; common names (timestamp, date, time, open, high, low, close, volume)
        are found without one, and headerless files default to ts, O, H, L, C, V positions.
    price_scale : float, optional
        Multiplies open, high, low and close, for files that store scaled integer prices
        (``0.0001`` for LEAN equity files, which store deci-cents). Never inferred.
    encoding : str, default "utf-8"
        The file's text encoding (a Python codec name such as ``"latin-1"``).
    sorted : bool, default False
        The file's rows are in time order: in count mode a large file is then read from its
        end, only as far back as the request needs (seconds instead of minutes for 10M rows).
        Rows out of order in the part not read would not be seen, so it is never assumed;
        otherwise the whole file is streamed through a buffer the size of the request.
    decimal : str, default "."
        The decimal mark of the prices and volumes: ``"."`` or ``","`` (exports with a
        European locale, usually ``;``-separated: ``1,02498``). Never inferred: ``1,024``
        could as well be a thousand.

    """

    path: str
    timestamp_is: str = "open"
    timezone: str = "UTC"
    timestamp_format: str = "auto"
    delimiter: str | None = None
    header: bool | None = None
    columns: CsvColumns | None = None
    price_scale: float | None = None
    encoding: str = "utf-8"
    sorted: bool = False
    decimal: str = "."

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timestamp_is not in EDGES:
            raise ValueError(f"timestamp_is: must be one of open, close, was '{self.timestamp_is}'")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone: unknown time zone '{self.timezone}' (use an IANA name like "
                "'UTC' or 'America/New_York')",
            ) from None
        if self.timestamp_format not in TIMESTAMP_FORMATS and "%" not in self.timestamp_format:
            raise ValueError(
                f"timestamp_format: must be one of {', '.join(TIMESTAMP_FORMATS)} or a strftime "
                f"pattern, was '{self.timestamp_format}'",
            )
        if self.price_scale is not None and not (
            math.isfinite(self.price_scale) and 0 < self.price_scale < 1e12
        ):
            raise ValueError(
                f"price_scale: must be a positive number (e.g. 0.0001), was {self.price_scale}"
            )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(
                f"encoding: unknown encoding '{self.encoding}' (use a Python codec name such "
                "as 'utf-8' or 'latin-1')",
            ) from None
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"delimiter: must be one character, was '{self.delimiter}'")
        if self.decimal not in (".", ","):
            raise ValueError(f"decimal: must be '.' or ',', was '{self.decimal}'")
        if self.decimal == "," and self.delimiter == ",":
            raise ValueError("decimal: ',' needs another delimiter (such as ';')")
