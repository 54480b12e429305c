"""The ``lean`` plugin: bars from a QuantConnect LEAN ``Data/`` folder."""

from __future__ import annotations

from collections.abc import Callable

from nautilus_backfill.hookspecs import hookimpl
from nautilus_backfill.plugins.lean.config import LeanSourceConfig
from nautilus_backfill.plugins.lean.source import LeanBarSource

__all__ = ["LeanBarSource", "LeanSourceConfig"]


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    register("lean", LeanBarSource)
