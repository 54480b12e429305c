"""`aggregate`'s edges one by one: refusals, exact volumes, count mode, the forming interval."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from nautilus_backfill.aggregate import (
    AggregationOptions,
    aggregate,
    composite_bars,
    from_data_engine_config,
    source_bar_type,
    source_bars_needed,
)
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.errors import ConfigError
from nautilus_trader.config import DataEngineConfig
from nautilus_trader.model.data import BarType
from nautilus_trader.model.enums import BarAggregation

MINUTE = 60_000_000_000
T0 = 1_700_006_400_000_000_000  # 2023-11-15 00:00 UTC, a day start
TARGET = BarType.from_str("AAPL.NASDAQ-5-MINUTE-LAST-INTERNAL@1-MINUTE-EXTERNAL")


def minutes(opens: list[int], volume: float = 1.0) -> BarArrays:
    ts = T0 + np.array(opens, dtype=np.int64) * MINUTE
    price = 100.0 + np.arange(len(opens), dtype=np.float64)
    return BarArrays(ts, price, price + 0.5, price - 0.5, price + 0.25, np.full(len(ts), volume))


def test_source_bar_type_is_the_part_after_the_at():
    assert source_bar_type(TARGET) == BarType.from_str("AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL")
    with pytest.raises(ConfigError, match="not a composite bar type"):
        source_bar_type(BarType.from_str("AAPL.NASDAQ-5-MINUTE-LAST-EXTERNAL"))


def test_composite_bars_carry_the_standard_type_the_live_aggregator_publishes():
    bars, _ = aggregate(
        minutes(list(range(10))), MINUTE, TARGET, AggregationOptions(), T0 + 10 * MINUTE
    )
    out = composite_bars(bars, TARGET, 2, 0)
    assert [str(b.bar_type) for b in out] == ["AAPL.NASDAQ-5-MINUTE-LAST-INTERNAL"] * 2
    assert [b.ts_init for b in out] == [T0 + 5 * MINUTE, T0 + 10 * MINUTE]


def test_interval_forming_at_end_is_never_built():
    # 00:00..00:06 closed by 00:07:30: 00:05-00:10 is still forming.
    bars, drops = aggregate(
        minutes(list(range(7))), MINUTE, TARGET, AggregationOptions(), T0 + 450 * 10**9
    )
    assert len(bars) == 1
    assert drops["incomplete"] == 1
    assert bars.close[0] == 104.25  # the fifth source bar's close: 00:04-00:05 closes the interval


def test_flat_bars_run_to_end_after_the_last_source_bar():
    # Source bars stop at 00:05; end at 00:30: five flat bars at the last close.
    bars, drops = aggregate(
        minutes(list(range(5))), MINUTE, TARGET, AggregationOptions(), T0 + 30 * MINUTE
    )
    assert len(bars) == 6 and not drops
    assert np.all(bars.volume[1:] == 0)
    assert np.all(bars.open[1:] == bars.close[0]) and np.all(bars.high[1:] == bars.close[0])
    sparse = AggregationOptions(time_bars_build_with_no_updates=False)
    bars, _ = aggregate(minutes(list(range(5))), MINUTE, TARGET, sparse, T0 + 30 * MINUTE)
    assert len(bars) == 1


def test_volume_is_the_exact_fixed_point_sum():
    # 1,440 volumes of 1234567890.1234: a float64 running sum is off in the fourth decimal
    # (1777777761777.6956), NautilusTrader's fixed-point sum is not.
    source = minutes(list(range(1440)), volume=1234567890.1234)
    target = BarType.from_str("AAPL.NASDAQ-1-DAY-LAST-INTERNAL@1-MINUTE-EXTERNAL")
    exact = Decimal("1234567890.1234") * 1440
    end = T0 + 1440 * MINUTE
    rough, _ = aggregate(source, MINUTE, target, AggregationOptions(), end)
    assert composite_bars(rough, target, 2, 4)[0].volume.as_decimal() != exact
    bars, _ = aggregate(source, MINUTE, target, AggregationOptions(), end, size_precision=4)
    assert composite_bars(bars, target, 2, 4)[0].volume.as_decimal() == exact


def test_count_keeps_the_last_bars_and_source_bars_needed_covers_them():
    wanted = 20
    needed = source_bars_needed(wanted, 5 * MINUTE, MINUTE)
    assert needed == 21 * 5 + 4
    # The last `needed` minutes before 10:03 (mid-interval, three bars forming), no gaps.
    end = T0 + 603 * MINUTE
    source = minutes(list(range(603 - needed, 603)))
    skip = AggregationOptions(time_bars_skip_first_non_full_bar=True)
    bars, drops = aggregate(source, MINUTE, TARGET, skip, end, count=wanted)
    assert len(bars) == wanted
    assert bars.ts_init[-1] == T0 + 600 * MINUTE
    assert drops["incomplete"] == 2  # the partial first interval and the forming one
    assert drops["outside_window"] == 1  # 21 full intervals from 08:15 to 10:00
    assert np.all(np.diff(bars.ts_open) == 5 * MINUTE)


def test_refusals_name_the_key():
    source = minutes([0, 1])
    with pytest.raises(ConfigError, match="time_bars_build_delay"):
        aggregate(
            source,
            MINUTE,
            TARGET,
            AggregationOptions(time_bars_build_delay=60_000_000),
            T0 + MINUTE * 5,
        )
    with pytest.raises(ConfigError, match="time_bars_interval_type"):
        aggregate(source, MINUTE, TARGET, AggregationOptions(time_bars_interval_type="closed"), T0)
    with pytest.raises(ConfigError, match=r"time_bars_origin_offset\.MINUTE"):
        aggregate(
            source,
            MINUTE,
            TARGET,
            AggregationOptions(time_bars_origin_offset={"MINUTE": "soon"}),
            T0,
        )
    weekly = BarType.from_str("AAPL.NASDAQ-1-WEEK-LAST-INTERNAL@1-MINUTE-EXTERNAL")
    with pytest.raises(ConfigError, match="WEEK bars are not supported"):
        aggregate(source, MINUTE, weekly, AggregationOptions(), T0)


def test_data_engine_config_offsets_become_named_durations():
    config = DataEngineConfig(
        time_bars_origin_offset={BarAggregation.DAY: pd.Timedelta(hours=22)},
        time_bars_build_delay=500,
    )
    options = from_data_engine_config(config)
    assert options.origin_offset_ns(BarAggregation.DAY) == 22 * 3_600_000_000_000
    assert options.origin_offset_ns(BarAggregation.MINUTE) == 0
    assert options.time_bars_build_delay == 500
    calendar = DataEngineConfig(
        time_bars_origin_offset={BarAggregation.MONTH: pd.DateOffset(days=1)}
    )
    with pytest.raises(ConfigError, match="calendar offset"):
        from_data_engine_config(calendar)


def test_options_decode_from_toml_keys():
    import msgspec

    options = msgspec.convert(
        {"time_bars_origin_offset": {"DAY": "22h"}, "time_bars_timestamp_on_close": False},
        AggregationOptions,
    )
    assert options.origin_offset_ns(BarAggregation.DAY) == 22 * 3_600_000_000_000
    assert options.time_bars_timestamp_on_close is False
