"""The ``csv`` plugin: bars from CSV files (plain, .gz or .zip)."""

from __future__ import annotations

from collections.abc import Callable

from nautilus_backfill.hookspecs import hookimpl
from nautilus_backfill.plugins.csv.config import CsvColumns, CsvSourceConfig
from nautilus_backfill.plugins.csv.source import CsvBarSource

__all__ = ["CsvBarSource", "CsvColumns", "CsvSourceConfig"]


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    register("csv", CsvBarSource)
