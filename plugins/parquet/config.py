"""Configuration of the Parquet source."""

from __future__ import annotations

import zoneinfo

from nautilus_backfill.config import EDGES, SourceConfig
from nautilus_trader.common.config import NautilusConfig

LAYOUTS = ("auto", "catalog", "plain")


class ParquetColumns(NautilusConfig, frozen=True, kw_only=True):
    """
    Column names of a plain OHLCV parquet file.
    """

    timestamp: str = "timestamp"
    open: str = "open"
    high: str = "high"
    low: str = "low"
    close: str = "close"
    volume: str | None = "volume"


class ParquetSourceConfig(SourceConfig, frozen=True, kw_only=True):
    """
    A Parquet source.

    Parameters
    ----------
    path : str
        A ``ParquetDataCatalog`` root, a parquet or Arrow IPC/feather file (``.feather``,
        ``.arrow``, ``.ipc``; told apart by their first bytes), a folder or a glob; templates
        as for CSV.
    layout : str, default "auto"
        ``catalog`` (NautilusTrader's bar files, 64- or 128-bit), ``plain`` (OHLCV columns),
        or ``auto`` to tell from the files.
    timestamp_column : str, optional
        Catalog layout: ``ts_init`` (default) or ``ts_event``.
    timestamp_is : str, optional
        Which bar edge the timestamp labels; defaults to ``close`` for the catalog's
        ``ts_init`` (NautilusTrader's convention) and ``open`` otherwise.
    timezone : str, default "UTC"
        Plain layout: the zone of naive timestamps.
    columns : ParquetColumns, optional
        Plain layout: column names. Without it the timestamp is the first column named
        timestamp, date, datetime, ts, open_time or time, and the prices open, high, low,
        close, volume.
    storage_options : dict, optional
        fsspec options when `path` is a URL (``s3://...``): ``endpoint_url``, ``key``, ...

    """

    path: str
    layout: str = "auto"
    timestamp_column: str | None = None
    timestamp_is: str | None = None
    timezone: str = "UTC"
    columns: ParquetColumns | None = None
    storage_options: dict[str, str | int | float | bool] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout: must be one of {', '.join(LAYOUTS)}, was '{self.layout}'")
        if self.timestamp_is is not None and self.timestamp_is not in EDGES:
            raise ValueError(f"timestamp_is: must be one of open, close, was '{self.timestamp_is}'")
        if self.timestamp_column not in (None, "ts_init", "ts_event"):
            raise ValueError(
                "timestamp_column: must be one of ts_init, ts_event, "
                f"was '{self.timestamp_column}'",
            )
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone '{self.timezone}'") from None
