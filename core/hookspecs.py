"""The hooks a nautilus-backfill plugin can implement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "nautilus_backfill"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_sources(register: Callable[..., None]) -> None:
    """
    Register bar source classes.

    Call ``register(name, source_class)`` once per source; `name` is what a config's
    ``plugin = "..."`` refers to and must be unique across plugins.

    Parameters
    ----------
    register : Callable[[str, type[BarSource]], None]
        The registration callback.

    """


@hookspec
def validate_bars(request: Any, source: str, table: Any) -> dict[str, Any] | None:
    """
    Flag bars a source returned as invalid, in addition to the built-in checks.

    Called once per source answer with rows that passed the built-in checks so far,
    after timestamps were converted to bar opens (column ``ts_open``).

    Parameters
    ----------
    request : BarRequest
        The request.
    source : str
        The source's configured name.
    table : pa.Table
        The bars, with columns ``ts_open``, ``open``, ``high``, ``low``, ``close``, ``volume``.

    Returns
    -------
    dict[str, numpy.ndarray] | None
        A boolean mask per reason name, True where a bar is invalid; None for no opinion.

    """
