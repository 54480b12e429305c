"""The ``freqtrade`` plugin: bars from a freqtrade data folder (``user_data/data/<exchange>``)."""

from __future__ import annotations

from collections.abc import Callable

from nautilus_backfill.hookspecs import hookimpl
from nautilus_backfill.plugins.freqtrade.config import FreqtradeSourceConfig
from nautilus_backfill.plugins.freqtrade.source import FreqtradeBarSource

__all__ = ["FreqtradeBarSource", "FreqtradeSourceConfig"]


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    register("freqtrade", FreqtradeBarSource)
