"""
The ``ib`` plugin: bars from Interactive Brokers over the TWS API (TWS or IB Gateway).

Needs the ``[ib]`` extra (``nautilus_trader[ib]``, which pins the ``ibapi`` client it is
tested with). Without it the plugin still registers, and using it fails with one line saying
what to install.
"""

from __future__ import annotations

from collections.abc import Callable

from nautilus_backfill.hookspecs import hookimpl
from nautilus_backfill.plugins.ib.config import IBSourceConfig
from nautilus_backfill.plugins.ib.source import IBBarSource

__all__ = ["IBBarSource", "IBSourceConfig"]


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    register("ib", IBBarSource)
