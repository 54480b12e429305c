"""Fitting bars to a NautilusTrader cache: bars already there, and the bar capacity."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.errors import BackfillError
from nautilus_backfill.source import BarRequest
from nautilus_trader.cache.cache import Cache


def cache_of(target: Any) -> Cache:
    """
    Return the cache of a `Cache` or a built `TradingNode`.

    Parameters
    ----------
    target : Cache | TradingNode
        The target.

    Returns
    -------
    Cache

    Raises
    ------
    BackfillError
        If `target` is neither.

    """
    if isinstance(target, Cache):
        return target
    cache = getattr(target, "cache", None)
    if isinstance(cache, Cache):
        return cache
    kernel = getattr(target, "kernel", None)
    if kernel is not None and isinstance(getattr(kernel, "cache", None), Cache):
        return kernel.cache
    raise BackfillError(
        f"inject() takes a Cache or a built TradingNode, was {type(target).__name__} "
        "(call node.build() first)",
    )


def fit_to_cache(
    cache: Cache,
    request: BarRequest,
    bars: BarArrays,
    ts_event: str,
    on_capacity: str,
) -> tuple[np.ndarray, Counter[str], str | None, str | None]:
    """
    Select the bars `Cache.add_bars` will really keep, naming why the others are dropped.

    ``add_bars`` skips bars older than the newest cached one and keeps only the newest
    ``bar_capacity``; both would lose bars silently, so they are decided here instead.

    Parameters
    ----------
    cache : Cache
        The cache.
    request : BarRequest
        The request.
    bars : BarArrays
        The merged bars.
    ts_event : str
        ``"open"`` or ``"close"``.
    on_capacity : str
        ``"fail"`` or ``"truncate"``.

    Returns
    -------
    tuple[np.ndarray, Counter[str], str | None, str | None]
        Positions of the bars to inject, drops per reason, an error for the report (nothing
        injected), and a note (the newest kept under ``"truncate"``).

    """
    drops: Counter[str] = Counter()
    keep = np.arange(len(bars))
    latest = cache.bar(request.bar_type)
    if latest is not None:
        ts = bars.ts_open + (request.step_ns if ts_event == "close" else 0)
        fresh = ts > latest.ts_event
        drops["already_cached"] = int((~fresh).sum())
        keep = keep[fresh]
    capacity = cache.bar_capacity
    error = note = None
    if len(keep) > capacity:
        if on_capacity == "truncate":
            drops["over_capacity"] = len(keep) - capacity
            keep = keep[len(keep) - capacity :]
            # Asked for: no error, the request is SHORT and the drop line says why.
            note = (
                f"over_capacity: kept the newest {capacity} of "
                f'{drops["over_capacity"] + capacity} bars (on_capacity = "truncate"): '
                f"CacheConfig.bar_capacity is {capacity}"
            )
        else:
            drops["over_capacity"] = len(keep)
            error = (
                f"{len(keep)} bars exceed CacheConfig.bar_capacity={capacity}: nothing injected; "
                f'raise bar_capacity to at least {len(keep)} or set on_capacity = "truncate"'
            )
            keep = keep[:0]
    return keep, +drops, error, note
