"""From validated arrays to NautilusTrader `Bar` objects, in one compiled call per request."""

from __future__ import annotations

import numpy as np
from nautilus_backfill.bararrays import BarArrays
from nautilus_trader.model.data import Bar, BarType


def to_bars(
    bars: BarArrays,
    bar_type: BarType,
    step_ns: int,
    price_precision: int,
    size_precision: int,
    ts_event: str = "open",
) -> list[Bar]:
    """
    Convert arrays to `Bar` objects; ``ts_init`` is the bar close.

    Parameters
    ----------
    bars : BarArrays
        Sorted, validated bars.
    bar_type : BarType
        The bar type.
    step_ns : int
        The bar length.
    price_precision : int
        The price precision.
    size_precision : int
        The size precision.
    ts_event : str, default "open"
        ``"open"`` or ``"close"``: the edge ``ts_event`` carries.

    Returns
    -------
    list[Bar]

    """
    if not len(bars):
        return []
    ts_init = (bars.ts_open + step_ns).astype(np.uint64)
    ts_ev = ts_init if ts_event == "close" else bars.ts_open.astype(np.uint64)
    return Bar.from_raw_arrays_to_list(
        bar_type,
        price_precision,
        size_precision,
        np.ascontiguousarray(bars.open),
        np.ascontiguousarray(bars.high),
        np.ascontiguousarray(bars.low),
        np.ascontiguousarray(bars.close),
        np.ascontiguousarray(bars.volume),
        np.ascontiguousarray(ts_ev),
        np.ascontiguousarray(ts_init),
    )
