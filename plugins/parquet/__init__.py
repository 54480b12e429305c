"""The ``parquet`` plugin: bars from a NautilusTrader catalog or plain OHLCV parquet."""

from __future__ import annotations

from collections.abc import Callable

from nautilus_backfill.hookspecs import hookimpl
from nautilus_backfill.plugins.parquet.config import ParquetColumns, ParquetSourceConfig
from nautilus_backfill.plugins.parquet.source import ParquetBarSource

__all__ = ["ParquetBarSource", "ParquetColumns", "ParquetSourceConfig"]


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    register("parquet", ParquetBarSource)
