"""Config mistakes a user makes get the key, what is wrong and what was meant."""

from __future__ import annotations

import pytest
from nautilus_backfill.config import load_config
from nautilus_backfill.errors import BackfillError

BASE = """[backfill]
{backfill}
[[backfill.requests]]
bar_type = "{bar_type}"
bars = 5
{request}
[[backfill.sources]]
name = "f"
plugin = "{plugin}"
path = "a.csv"
"""


def _error(tmp_path, registry, backfill="", request="", plugin="csv",
           bar_type="EURUSD.SIM-1-MINUTE-MID-EXTERNAL"):
    path = tmp_path / "c.toml"
    path.write_text(BASE.format(backfill=backfill, request=request, plugin=plugin, bar_type=bar_type))
    with pytest.raises(BackfillError) as e:
        load_config(path, registry=registry)
    return str(e.value)


@pytest.mark.parametrize(
    ("where", "text", "expected"),
    [
        ("backfill", 'deadlin = "5s"', "unknown field `deadlin` (did you mean `deadline`?)"),
        ("request", "price_precison = 5", "unknown field `price_precison` (did you mean `price_precision`?)"),
        ("request", "end = 2025-01-02T09:00:00Z", 'write times as quoted ISO 8601 strings, e.g. "2024-01-02T15:30:00Z"'),
        ("request", 'end = "02/01/2025 09:00"', "invalid time, was '02/01/2025 09:00' (use ISO 8601, year first"),
        ("request", 'end = "Jan 2 2025"', "invalid time, was 'Jan 2 2025'"),
    ],
)
def test_a_mistyped_key_or_a_time_that_is_not_iso_8601_is_named_with_the_fix(
    tmp_path, registry, where, text, expected
):
    kw = {"backfill": text} if where == "backfill" else {"request": text}
    message = _error(tmp_path, registry, **kw)
    assert message.startswith(f"{tmp_path / 'c.toml'}: backfill") and expected in message, message


def test_a_mistyped_plugin_and_a_bar_type_without_venue_are_named_with_the_fix(tmp_path, registry):
    message = _error(tmp_path, registry, plugin="cvs")
    assert message.startswith(str(tmp_path / "c.toml")) and "did you mean 'csv'?" in message
    message = _error(tmp_path, registry, bar_type="EURUSD-1-MINUTE-MID")
    assert "the form is SYMBOL.VENUE-STEP-AGGREGATION-PRICE-SOURCE" in message


def test_iso_8601_times_in_every_common_form_are_read(tmp_path, registry):
    from nautilus_backfill.timeutil import parse_time

    base = parse_time("2024-01-02T15:30:00Z")
    assert parse_time("2024-01-02 15:30") == base
    assert parse_time("2024-01-02T17:30:00+02:00") == base
    assert parse_time("20240102T153000Z") == base
    assert parse_time("2024-01-02T15:30:00.000000001Z") == base + 1
    assert parse_time("2024-01-02") == base - (15 * 60 + 30) * 60 * 10**9
