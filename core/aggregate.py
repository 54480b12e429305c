"""
Composite bar types: 1-minute source bars aggregated as NautilusTrader's live aggregator would.

A strategy that subscribes to ``AAPL.NASDAQ-5-MINUTE-LAST-INTERNAL@1-MINUTE-EXTERNAL`` gets bars
that NautilusTrader's ``TimeBarAggregator`` builds from the ``AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL``
bars, published under the standard type ``AAPL.NASDAQ-5-MINUTE-LAST-INTERNAL``. `aggregate` builds
the same bars from backfilled source bars, with numpy, following ``nautilus_trader/data/
aggregation.pyx`` (``TimeBarAggregator``, ``BarBuilder.update_bar``) edge for edge:

- The timer closes a bar every interval on the grid ``day start + time_bars_origin_offset + k *
  interval``, shifted by ``time_bars_build_delay``. A source bar goes to the bar whose timer fires
  at or after its ``ts_init`` (its close): bar k holds the source bars with ``ts_init`` in
  ``(close_k - interval, close_k]``. ``time_bars_interval_type`` changes only the stamp, not this.
- open is the first source bar's open, high the highest high, low the lowest low, close the last
  close, volume the sum (exact, in the instrument's size precision).
- ``ts_init`` is the timer time, the bar close (plus the build delay). ``ts_event`` is the same
  for ``left-open`` with ``time_bars_timestamp_on_close``; otherwise it is the aggregator's stored
  open: the close of the bar it built before. After an interval with no source bar and
  ``time_bars_build_with_no_updates = False`` that is the close of the last bar built, earlier
  than the bar's own open, exactly as the live aggregator stamps it.
- With ``time_bars_build_with_no_updates`` (the default) an interval with no source bar is a flat
  bar at the last close with zero volume, from the first bar on to the last one closed at ``end``.
- The first bar is one whose source bars start at its open; if they start later, it is the
  partial bar an aggregator started at that moment emits, dropped as ``incomplete`` when
  ``time_bars_skip_first_non_full_bar`` is set. The bar still forming at ``end`` is never built.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.convert import PACK_THRESHOLD
from nautilus_backfill.cvec import pack_bars
from nautilus_backfill.errors import ConfigError
from nautilus_trader.common.config import NautilusConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import BarAggregation, bar_aggregation_to_str

NS_PER_DAY = 86_400_000_000_000

# Aggregations whose bars are a fixed number of nanoseconds, as TimeBarAggregator._get_interval.
_UNIT_NS = {
    BarAggregation.MILLISECOND: 1_000_000,
    BarAggregation.SECOND: 1_000_000_000,
    BarAggregation.MINUTE: 60_000_000_000,
    BarAggregation.HOUR: 3_600_000_000_000,
    BarAggregation.DAY: NS_PER_DAY,
}


class AggregationOptions(NautilusConfig, frozen=True, kw_only=True):
    """
    How NautilusTrader's time bar aggregator builds composite bars: ``DataEngineConfig``'s keys.

    The defaults are NautilusTrader's. With ``inject(node)`` they come from the node's
    ``DataEngineConfig`` (`from_data_engine_config`), otherwise from ``[backfill]``.

    Parameters
    ----------
    time_bars_interval_type : str, default "left-open"
        ``"left-open"`` or ``"right-open"``. In NautilusTrader's aggregator it only decides the
        stamp: ``right-open`` bars are stamped on their open whatever the next key says.
    time_bars_timestamp_on_close : bool, default True
        ``ts_event`` is the bar close (left-open only); otherwise the bar open.
    time_bars_skip_first_non_full_bar : bool, default False
        Drop the first bar when the source bars start after its open.
    time_bars_build_with_no_updates : bool, default True
        Build a flat bar at the last close for an interval with no source bar.
    time_bars_origin_offset : dict[str, str | int], default {}
        Grid origin per aggregation, from the start of the UTC day: ``{"DAY": "22h"}``.
        Keys are aggregation names (``MINUTE``, ``HOUR``, ``DAY``...), values a duration pandas
        reads (``"90s"``, ``"1h"``) or nanoseconds.
    time_bars_build_delay : int, default 0
        Microseconds after the grid time at which the aggregator builds the bar; shifts the
        stamps by as much. Must be shorter than the source bar.

    """

    time_bars_interval_type: str = "left-open"
    time_bars_timestamp_on_close: bool = True
    time_bars_skip_first_non_full_bar: bool = False
    time_bars_build_with_no_updates: bool = True
    time_bars_origin_offset: dict[str, str | int] = {}  # noqa: RUF012 (msgspec copies defaults)
    time_bars_build_delay: int = 0

    def origin_offset_ns(self, aggregation: BarAggregation) -> int:
        """
        Return the grid origin for `aggregation`, nanoseconds from the start of the UTC day.

        Parameters
        ----------
        aggregation : BarAggregation
            The target bar type's aggregation.

        Returns
        -------
        int

        Raises
        ------
        ConfigError
            If the offset is not a duration.

        """
        name = bar_aggregation_to_str(aggregation)
        value = self.time_bars_origin_offset.get(name)
        if value is None:
            return 0
        try:
            return int(pd.Timedelta(value).value)
        except (ValueError, TypeError):
            raise ConfigError(
                f"time_bars_origin_offset.{name}: not a duration, was {value!r} "
                f"(use e.g. '22h', '90s', or nanoseconds)",
            ) from None

    def check(self) -> list[str]:
        """
        Return the problems with these options, each naming its key; empty when valid.

        Returns
        -------
        list[str]

        """
        problems = []
        if self.time_bars_interval_type not in ("left-open", "right-open"):
            problems.append(
                f"time_bars_interval_type: must be 'left-open' or 'right-open', "
                f"was {self.time_bars_interval_type!r}",
            )
        if self.time_bars_build_delay < 0:
            problems.append(
                "time_bars_build_delay: must be >= 0 microseconds, "
                f"was {self.time_bars_build_delay}",
            )
        for name, value in self.time_bars_origin_offset.items():
            try:
                BarAggregation[name]
                pd.Timedelta(value)
            except (KeyError, ValueError, TypeError):
                problems.append(
                    f"time_bars_origin_offset.{name}: must map an aggregation name (MINUTE, HOUR, "
                    f"DAY...) to a duration, was {name!r} = {value!r}",
                )
        return problems


def from_data_engine_config(config: Any) -> AggregationOptions:
    """
    Read the time bar keys of a ``DataEngineConfig``, or of a running ``DataEngine``.

    Parameters
    ----------
    config : DataEngineConfig | DataEngine
        The node's data engine config (``TradingNodeConfig.data_engine``), or its data engine
        (``node.kernel.data_engine``), whose read-only ``_time_bars_*`` attributes are the
        settings its aggregators are built with.

    Returns
    -------
    AggregationOptions

    Raises
    ------
    ConfigError
        If an origin offset is a calendar offset (``pd.DateOffset``), which only month and year
        bars use and `aggregate` does not build.

    """
    prefix = "" if hasattr(config, "time_bars_interval_type") else "_"

    def key(name: str) -> Any:
        return getattr(config, prefix + name)

    offsets: dict[str, str | int] = {}
    for agg, value in (key("time_bars_origin_offset") or {}).items():
        name = agg if isinstance(agg, str) else bar_aggregation_to_str(BarAggregation(agg))
        if isinstance(value, pd.DateOffset):
            raise ConfigError(
                f"data_engine.time_bars_origin_offset.{name}: a calendar offset ({value}) is not "
                f"supported for composite backfill; use a pd.Timedelta",
            )
        offsets[name] = int(pd.Timedelta(value).value)
    return AggregationOptions(
        time_bars_interval_type=key("time_bars_interval_type"),
        time_bars_timestamp_on_close=bool(key("time_bars_timestamp_on_close")),
        time_bars_skip_first_non_full_bar=bool(key("time_bars_skip_first_non_full_bar")),
        time_bars_build_with_no_updates=bool(key("time_bars_build_with_no_updates")),
        time_bars_origin_offset=offsets,
        time_bars_build_delay=int(key("time_bars_build_delay")),
    )


def options_of(node: Any) -> AggregationOptions:
    """
    Return the time bar settings a built ``TradingNode``'s aggregators use.

    Parameters
    ----------
    node : TradingNode
        A built node.

    Returns
    -------
    AggregationOptions

    """
    return from_data_engine_config(node.kernel.data_engine)


@dataclass
class CompositeArrays(BarArrays):
    """
    Composite bars: `BarArrays` keyed by the bar open, plus the stamps the live aggregator gives.

    Parameters
    ----------
    ts_open : np.ndarray
        Bar open times (grid time, without the build delay), int64.
    open, high, low, close, volume : np.ndarray
        float64 values.
    ts_event, ts_init : np.ndarray
        The stamps the live aggregator gives each bar, UNIX ns, int64.

    """

    ts_event: np.ndarray = None  # type: ignore[assignment]
    ts_init: np.ndarray = None  # type: ignore[assignment]

    def take(self, index: np.ndarray | slice) -> CompositeArrays:
        """
        Return the bars at `index`, stamps included.

        Parameters
        ----------
        index : np.ndarray | slice
            The selection.

        Returns
        -------
        CompositeArrays

        """
        names = ("ts_open", "open", "high", "low", "close", "volume", "ts_event", "ts_init")
        return CompositeArrays(*(getattr(self, name)[index] for name in names))


def _empty() -> CompositeArrays:
    i = np.empty(0, dtype=np.int64)
    f = np.empty(0, dtype=np.float64)
    return CompositeArrays(i, f, f, f, f, f, i, i)


def source_bar_type(bar_type: BarType) -> BarType:
    """
    Return the bar type a composite bar type is aggregated from.

    Parameters
    ----------
    bar_type : BarType
        A composite bar type, e.g. ``AAPL.NASDAQ-5-MINUTE-LAST-INTERNAL@1-MINUTE-EXTERNAL``.

    Returns
    -------
    BarType
        e.g. ``AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL``.

    Raises
    ------
    ConfigError
        If `bar_type` is not composite.

    """
    if not bar_type.is_composite():
        raise ConfigError(f"{bar_type} is not a composite bar type (no '@' part)")
    return bar_type.composite()


def interval_ns(bar_type: BarType) -> int:
    """
    Return the length of a time bar type's bars, as NautilusTrader's aggregator times them.

    Parameters
    ----------
    bar_type : BarType
        The bar type (composite or standard: its own spec is used).

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        For week, month, year and non-time aggregations, which `aggregate` does not build.

    """
    spec = bar_type.spec
    unit = _UNIT_NS.get(spec.aggregation)
    if unit is None:
        raise ConfigError(
            f"{bar_type}: composite backfill builds millisecond to day bars; "
            f"{bar_aggregation_to_str(spec.aggregation)} bars are not supported",
        )
    return unit * spec.step


def source_bars_needed(count: int, target_step_ns: int, source_step_ns: int) -> int:
    """
    Return how many source bars give `count` composite bars when none are missing.

    ``count`` full intervals, one more for a partial first bar the options may drop, and all but
    one of the source bars of the bar still forming at ``end``. Across gaps (weekends, closed
    sessions) fewer source bars make up a composite bar, so this is never too few unless sources
    are short; the caller keeps the last `count` (``aggregate(..., count=count)``).

    Parameters
    ----------
    count : int
        Composite bars wanted.
    target_step_ns, source_step_ns : int
        Composite and source bar lengths.

    Returns
    -------
    int

    """
    ratio = -(-target_step_ns // source_step_ns)
    return (count + 1) * ratio + ratio - 1


def live_delay_note(options: AggregationOptions, bar_type: BarType) -> str | None:
    """
    Return a warning for a live node whose composite bars will not match the backfilled ones.

    With ``time_bars_build_delay = 0`` a live ``TimeBarAggregator``'s timer fires at the bar
    close, before the source bar that closes with it can arrive, so that source bar goes into
    the next bar: live bars then hold the source bars closing in ``[open, close)`` instead of
    ``(open, close]`` as in a backtest and in the backfilled bars (a one-source-bar shift).

    Parameters
    ----------
    options : AggregationOptions
        The node's settings.
    bar_type : BarType
        The composite bar type.

    Returns
    -------
    str | None
        The note, or None when a build delay is set.

    """
    if options.time_bars_build_delay > 0:
        return None
    return (
        f"{bar_type}: DataEngineConfig.time_bars_build_delay is 0, so the live aggregator builds "
        f"each bar before the source bar closing with it arrives and puts that source bar in the "
        f"next bar; backfilled bars follow NautilusTrader's left-open intervals (as its backtests "
        f"do). Set time_bars_build_delay (microseconds) above the feed's delivery latency, "
        f"e.g. 2_000_000 for 1-minute bars, and below the source bar length"
    )


def aggregate(
    bars: BarArrays,
    source_step_ns: int,
    target: BarType,
    options: AggregationOptions,
    end_ns: int,
    size_precision: int | None = None,
    count: int | None = None,
) -> tuple[CompositeArrays, Counter[str]]:
    """
    Aggregate source bars into the bars NautilusTrader's ``TimeBarAggregator`` builds from them.

    Parameters
    ----------
    bars : BarArrays
        Validated, sorted, unique source bars keyed by open time, all closed by `end_ns`.
    source_step_ns : int
        The source bar length; a source bar's ``ts_init`` is its open plus this.
    target : BarType
        The composite bar type (its spec sets the interval).
    options : AggregationOptions
        The node's time bar settings.
    end_ns : int
        The backfill end (the node start): the bar still forming then is not built. Also fixes
        the grid's day for intervals that do not divide a day, as the live aggregator started
        then fixes it.
    size_precision : int, optional
        Volume decimals: volumes are summed as integers of that many decimals, so the sum is
        the aggregator's exact fixed-point sum. Without it the float sum is used.
    count : int, optional
        Keep only the last `count` bars; the earlier ones are counted as ``outside_window``.

    Returns
    -------
    tuple[CompositeArrays, Counter[str]]
        The bars, oldest first, and the bars not built by reason (``incomplete``:
        the partial first bar when skipped, the bar forming at `end_ns`).

    Raises
    ------
    ConfigError
        For an unsupported aggregation, invalid options, or a build delay not shorter than the
        source bar.

    """
    problems = options.check()
    if problems:
        raise ConfigError("; ".join(problems))
    period = interval_ns(target)
    delay = options.time_bars_build_delay * 1_000
    if delay >= source_step_ns:
        raise ConfigError(
            f"time_bars_build_delay: {options.time_bars_build_delay} us is not shorter than the "
            f"source bar ({source_step_ns // 1_000} us); the aggregator would mix source bars "
            f"into the wrong interval",
        )
    drops: Counter[str] = Counter()
    if not len(bars):
        return _empty(), drops

    anchor = (end_ns // NS_PER_DAY) * NS_PER_DAY + options.origin_offset_ns(target.spec.aggregation)
    ts_init = bars.ts_open + source_step_ns
    # The first bar is the interval whose timer first fires at or after the first ts_init.
    first_open = anchor + ((int(ts_init[0]) - delay - 1 - anchor) // period) * period
    k = (ts_init - delay - first_open - 1) // period
    last_k = (end_ns - first_open) // period - 1  # last interval whose grid close <= end_ns
    n_in = int(np.searchsorted(k, last_k, side="right"))
    if n_in < len(k):
        drops["incomplete"] += 1  # the bar still forming at end_ns
    if n_in == 0:
        return _empty(), drops
    k = k[:n_in]

    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    ends = np.append(starts[1:], n_in) - 1
    keys = k[starts]
    open_ = bars.open[starts]
    high = np.maximum.reduceat(bars.high[:n_in], starts)
    low = np.minimum.reduceat(bars.low[:n_in], starts)
    close = bars.close[ends]
    volume = _sum_volume(bars.volume[:n_in], starts, size_precision)

    if options.time_bars_build_with_no_updates and len(keys) < last_k + 1:
        # Every interval from the first bar to end_ns is built; empty ones flat at the last close.
        all_keys = np.arange(last_k + 1, dtype=np.int64)
        has = np.zeros(len(all_keys), dtype=bool)
        has[keys] = True
        j = np.cumsum(has) - 1  # the last interval with source bars, at or before each
        flat = ~has
        open_, high, low, close = (
            np.where(flat, close[j], a[j]) for a in (open_, high, low, close)
        )
        volume = np.where(flat, 0.0, volume[j])
        keys = all_keys

    bar_close = first_open + (keys + 1) * period + delay
    if options.time_bars_interval_type == "left-open" and options.time_bars_timestamp_on_close:
        ts_event = bar_close
    else:
        # The aggregator's stored open: the timer time of the bar it built (or skipped) before.
        ts_event = np.concatenate(([first_open + delay], bar_close[:-1]))
    out = CompositeArrays(
        first_open + keys * period, open_, high, low, close, volume, ts_event, bar_close.copy()
    )

    if options.time_bars_skip_first_non_full_bar and int(bars.ts_open[0]) > first_open:
        out = out.take(slice(1, None))
        drops["incomplete"] += 1
    if count is not None and len(out) > count:
        drops["outside_window"] += len(out) - count
        out = out.take(slice(len(out) - count, None))
    return out, drops


def _sum_volume(volume: np.ndarray, starts: np.ndarray, size_precision: int | None) -> np.ndarray:
    if size_precision is not None:
        scale = 10.0**size_precision
        units = np.rint(volume * scale)
        # int64 sums are exact while no total can pass 2**63; float64 ones only to 2**53.
        if len(units) == 0 or float(np.abs(units).max()) * len(units) < 2.0**62:
            sums = np.add.reduceat(units.astype(np.int64), starts)
            return sums / scale
    return np.add.reduceat(volume, starts)


def composite_bars(
    bars: CompositeArrays,
    bar_type: BarType,
    price_precision: int,
    size_precision: int,
) -> list[Bar]:
    """
    Convert aggregated bars to `Bar` objects as the live aggregator publishes them.

    Parameters
    ----------
    bars : CompositeArrays
        The output of `aggregate`.
    bar_type : BarType
        The composite bar type; the bars carry its standard form
        (``...-5-MINUTE-LAST-INTERNAL``), the type the live aggregator's bars carry.
    price_precision, size_precision : int
        The instrument's precisions.

    Returns
    -------
    list[Bar]

    """
    if not len(bars):
        return []
    standard = bar_type.standard()
    ts_event = bars.ts_event.view(np.uint64)
    ts_init = bars.ts_init.view(np.uint64)
    values = [bars.open, bars.high, bars.low, bars.close, bars.volume]
    if len(bars) >= PACK_THRESHOLD:
        packed = pack_bars(standard, price_precision, size_precision, values, ts_event, ts_init)
        if packed is not None:
            return packed
    return Bar.from_raw_arrays_to_list(
        standard,
        price_precision,
        size_precision,
        *(np.ascontiguousarray(a, dtype=np.float64).copy() for a in values),
        ts_event.copy(),
        ts_init.copy(),
    )
