"""From validated arrays to NautilusTrader `Bar` objects, without a Python loop over rows."""

from __future__ import annotations

import numpy as np
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.cvec import layout_ready, pack_bars
from nautilus_trader.model.data import Bar, BarType

# Below this many bars the one-off layout probe (a few ms) costs more than it saves; once a
# process has probed the layout for a precision pair (or converted that many bars with it, as
# a portfolio of short requests does), anything from PACK_MIN bars is packed.
PACK_THRESHOLD = 20_000
PACK_MIN = 64
_converted: dict[tuple[int, int], int] = {}


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
    ts_init = (bars.ts_open + step_ns).view(np.uint64)
    ts_ev = ts_init if ts_event == "close" else bars.ts_open.view(np.uint64)
    pair = (price_precision, size_precision)
    seen = _converted[pair] = _converted.get(pair, 0) + len(bars)
    if len(bars) >= PACK_MIN and (seen >= PACK_THRESHOLD or layout_ready(*pair)):
        values = [bars.open, bars.high, bars.low, bars.close, bars.volume]
        packed = pack_bars(bar_type, price_precision, size_precision, values, ts_ev, ts_init)
        if packed is not None:
            return packed
    # Its typed memoryviews need writable arrays; the validated ones may be Arrow's.
    return Bar.from_raw_arrays_to_list(
        bar_type,
        price_precision,
        size_precision,
        *(_writable(a) for a in (bars.open, bars.high, bars.low, bars.close, bars.volume)),
        _writable(ts_ev),
        _writable(ts_init),
    )


def _writable(a: np.ndarray) -> np.ndarray:
    return a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C")
