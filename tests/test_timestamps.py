"""`nautilus_backfill.timestamps` on its own: formats resolved from data, values read exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from nautilus_backfill.timestamps import BAD_TS, TimestampError, resolve_format, to_epoch_ns


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


@pytest.mark.parametrize(
    ("values", "fmt", "expected"),
    [
        (pa.array([20190829, 20190830]), "%Y%m%d", [_ns("2019-08-29"), _ns("2019-08-30")]),
        (pa.array([20190829.0]), "%Y%m%d", [_ns("2019-08-29")]),
        (pa.array([20190829]), "auto", [_ns("2019-08-29")]),
        (pa.array([1637971200000]), "auto", [1637971200000 * 10**6]),
        (pa.array(["1637971200.5"]), "auto", [1637971200500000000]),
        (pa.array(["19980102 00:00"]), "auto", [_ns("1998-01-02")]),
        (pa.array(["2021-01-04"]), "auto", [_ns("2021-01-04")]),
        (pa.array(["2021-01-04T09:30:00+01:00"]), "auto", [_ns("2021-01-04T08:30:00")]),
        (
            pa.array(["1600-01-01", "2300-01-01", "1969-12-31"]),
            "auto",
            [BAD_TS, BAD_TS, -86400 * 10**9],
        ),
        (pa.array(["1e308", "-5"]), "epoch_s", [BAD_TS, -5 * 10**9]),
        (pa.array([None, "NaT", "2021-01-04"]), "auto", [None, None, _ns("2021-01-04")]),
    ],
)
def test_values_read_exactly(values, fmt, expected):
    assert to_epoch_ns(values, fmt).to_pylist() == expected


def test_a_date_alone_in_a_zone_is_local_midnight():
    # "2021-01-04" ends in "-04": that is a day, not a zone offset.
    assert to_epoch_ns(pa.array(["2021-01-04"]), "auto", "America/New_York").to_pylist() == [
        _ns("2021-01-04T05:00:00")
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["14400000", "14460000"], "'14400000': these look like milliseconds since midnight"),
        (["99999999999999", "99999999999998"], "'99999999999999': it is no epoch time between 1990 and 2100"),
        ([86_400], "'86400'"),
        (["1637971200", "1637971260000"], "more than one unit"),
        (["01/02/2021", "03/04/2021"], 'set timestamp_format = "%d/%m/%Y" or "%m/%d/%Y"'),
        (["27/11/2021", "11/27/2021"], "is day first but '11/27/2021' is month first"),
        (["not a date"], "is not a timestamp auto reads"),
        (
            ["2021-01-01T00:00:00Z", "2021-01-01 00:01:00"],
            "mixed zone-aware and naive timestamps: row 1",
        ),
    ],
)
def test_auto_refuses_what_it_would_have_to_guess(values, message):
    with pytest.raises(TimestampError) as e:
        to_epoch_ns(pa.array(values), "auto")
    assert message in str(e.value)


def test_explicit_epoch_honoured_for_any_magnitude():
    assert resolve_format(pa.array(["14400000"]), "epoch_ms").describe() == "epoch_ms"
    assert to_epoch_ns(pa.array(["14400000"]), "epoch_ms").to_pylist() == [14400000 * 10**6]
