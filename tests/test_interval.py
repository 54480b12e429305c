"""Rows of another interval than the bar type's are refused, never injected as its bars."""

from __future__ import annotations

import numpy as np
import pytest
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict

MIN = 60


def _csv(path, step_s, n, start=1_700_000_400, every=None):
    # `n` bars `step_s` apart (or at the given offsets), as a plain OHLCV file.
    times = start + (np.asarray(every) if every is not None else np.arange(n) * step_s)
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{int(t)},1.5,1.6,1.4,1.55,10" for t in times]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _fetch(registry, bar_type, *paths, bars=100):
    sources = [
        {"name": f"f{i}", "plugin": "csv", "path": p, "timestamp_format": "epoch_s"}
        for i, p in enumerate(paths)
    ]
    doc = {"backfill": {"requests": [{"bar_type": bar_type, "bars": bars, "end": "2023-11-20T00:00:00Z",
                                       "price_precision": 2, "size_precision": 0, "max_age": "off"}],
                        "sources": sources}}
    report = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch().report
    (request,) = report.requests
    assert request.accounted()
    return request


def test_five_minute_rows_asked_for_as_one_minute_bars_are_refused_and_the_next_source_asked(
    registry, tmp_path
):
    five = _csv(tmp_path / "five.csv", 5 * MIN, 300)
    one = _csv(tmp_path / "one.csv", MIN, 300)
    r = _fetch(registry, "EURUSD.SIM-1-MINUTE-MID-EXTERNAL", five, one)
    first, second = r.sources
    assert first.status == "invalid" and r.dropped["wrong_interval"] == first.received > 50
    assert "5-minute apart for most of them" in first.error and "not 1-minute bars" in first.error
    assert "request EURUSD.SIM-5-MINUTE-MID-EXTERNAL for this data" in first.error
    assert second.used == 100 and r.injected == 100 and r.status == "ok"


@pytest.mark.parametrize("bar", ["5-MINUTE", "1-HOUR"])
def test_one_minute_rows_asked_for_as_longer_bars_are_refused_with_the_composite_to_use(
    registry, tmp_path, bar
):
    one = _csv(tmp_path / "one.csv", MIN, 600)
    r = _fetch(registry, f"EURUSD.SIM-{bar}-MID-EXTERNAL", one)
    received = r.sources[0].received
    assert r.injected == 0 and r.dropped == {"wrong_interval": received} and r.status == "failed"
    assert "1-minute apart for many of them" in r.sources[0].error
    assert f"EURUSD.SIM-{bar}-MID-INTERNAL@1-MINUTE-EXTERNAL" in r.sources[0].error


def test_sparse_bars_of_an_illiquid_market_and_short_answers_are_not_refused(registry, tmp_path):
    rng = np.random.default_rng(7)
    # 1-minute bars with random holes: no two adjacent, but no common spacing beyond a minute.
    offsets = np.cumsum(rng.integers(2, 9, size=200)) * MIN
    sparse = _csv(tmp_path / "sparse.csv", MIN, 200, every=offsets)
    r = _fetch(registry, "EURUSD.SIM-1-MINUTE-MID-EXTERNAL", sparse, bars=200)
    assert r.injected == 200 and "wrong_interval" not in r.dropped
    # 9 rows 5 minutes apart say too little to refuse them; a 20-bar warm-up does not.
    short = _csv(tmp_path / "short.csv", 5 * MIN, 9)
    r = _fetch(registry, "EURUSD.SIM-1-MINUTE-MID-EXTERNAL", short, bars=9)
    assert r.injected == 9
    twenty = _csv(tmp_path / "twenty.csv", 5 * MIN, 20)
    r = _fetch(registry, "EURUSD.SIM-1-MINUTE-MID-EXTERNAL", twenty, bars=20)
    assert r.injected == 0 and r.dropped == {"wrong_interval": 20}
    # Hourly bars with the half-hour session open (IB's RTH hours): a few off-grid rows only.
    days = [d * 86_400 + np.array([0, 1800, 5400, 9000, 12600, 16200, 19800]) for d in range(10)]
    session = _csv(tmp_path / "rth.csv", 3600, 70, start=1_699_920_000 - 5 * 86_400 + 34_200,
                   every=np.concatenate(days))
    r = _fetch(registry, "AAPL.SIM-1-HOUR-LAST-EXTERNAL", session, bars=70)
    assert r.sources[0].received >= 51  # enough rows for the check to judge
    assert "wrong_interval" not in r.dropped and r.dropped["misaligned"] == r.sources[0].received // 7
    assert r.injected == r.sources[0].received - r.dropped["misaligned"]


def test_strays_mixed_resolutions_and_a_factor_of_two_are_refused_too(registry, tmp_path):
    # A 5-minute file with one stray row a minute after a bar: still 5-minute rows.
    offsets = np.concatenate([np.arange(100) * 5 * MIN, [50 * 5 * MIN + MIN]])
    stray = _csv(tmp_path / "stray.csv", MIN, 101, every=np.sort(offsets))
    r = _fetch(registry, "EURUSD.SIM-1-MINUTE-MID-EXTERNAL", stray)
    assert r.injected == 0 and "5-minute apart for most of them" in r.sources[0].error
    # 5-minute history, then the recent part in 1-minute rows, asked for as 5-minute bars.
    mixed_at = np.concatenate([np.arange(200) * 5 * MIN, 200 * 5 * MIN + np.arange(30) * MIN])
    mixed = _csv(tmp_path / "mixed.csv", MIN, 230, every=mixed_at)
    r = _fetch(registry, "EURUSD.SIM-5-MINUTE-MID-EXTERNAL", mixed, bars=100)
    assert r.injected == 0 and "1-minute apart for many of them" in r.sources[0].error
    # 30-minute rows asked for as hourly bars: half of them on the hour grid.
    halves = _csv(tmp_path / "halves.csv", 30 * MIN, 200)
    r = _fetch(registry, "EURUSD.SIM-1-HOUR-MID-EXTERNAL", halves, bars=50)
    assert r.injected == 0 and "30-minute apart for many of them" in r.sources[0].error
    assert "EURUSD.SIM-1-HOUR-MID-INTERNAL@30-MINUTE-EXTERNAL" in r.sources[0].error


def test_daily_bars_stamped_in_new_york_time_are_daily_bars_across_dst(registry, tmp_path):
    # Midnight in New York is 04:00 or 05:00 UTC: gaps of 23, 24, 25 and 72 hours. Asked for
    # as hourly bars they are refused as daily ones, not taken for hourly bars.
    from zoneinfo import ZoneInfo

    days = np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-11-17"))
    days = [d for d in days.astype(object) if d.weekday() < 5]
    import datetime as dt

    stamps = [int(dt.datetime(d.year, d.month, d.day, tzinfo=ZoneInfo("America/New_York")).timestamp())
              for d in days]
    path = _csv(tmp_path / "daily.csv", 86_400, len(stamps), start=0, every=np.array(stamps))
    r = _fetch(registry, "ORCL.XNAS-1-HOUR-LAST-EXTERNAL", path, bars=200)
    assert r.injected == 0 and "1-day apart for most of them" in r.sources[0].error
    assert "request ORCL.XNAS-1-DAY-LAST-EXTERNAL" in r.sources[0].error


def test_a_bar_refused_as_ambiguous_inside_a_window_makes_it_short_unless_another_source_has_it(
    registry, tmp_path
):
    # 60 one-minute bars in a window; the 30th is in the file twice with two closes.
    start = 1_700_000_400
    rows = ["timestamp,open,high,low,close,volume"]
    rows += [f"{start + i * MIN},1.5,1.6,1.4,1.55,10" for i in range(60)]
    rows.insert(31, f"{start + 29 * MIN},1.5,1.6,1.4,1.58,10")
    torn = tmp_path / "torn.csv"
    torn.write_text("\n".join(rows) + "\n")
    doc = {"backfill": {"requests": [{"bar_type": "EURUSD.SIM-1-MINUTE-MID-EXTERNAL",
                                       "start": "2023-11-14T22:20:00Z", "end": "2023-11-14T23:20:00Z",
                                       "price_precision": 2, "size_precision": 0}],
                        "sources": [{"name": "torn", "plugin": "csv", "path": str(torn),
                                     "timestamp_format": "epoch_s"}]}}
    report = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch().report
    (r,) = report.requests
    assert r.injected == 59 and r.dropped == {"ambiguous": 2} and r.holes == 1
    assert r.status == "short" and r.to_dict()["holes"] == 1
    # A second source with that minute fills the hole.
    good = _csv(tmp_path / "good.csv", MIN, 60, start=start)
    doc["backfill"]["sources"].append({"name": "good", "plugin": "csv", "path": good,
                                       "timestamp_format": "epoch_s"})
    report = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch().report
    (r,) = report.requests
    assert r.injected == 60 and r.holes == 0 and r.status == "ok"
    assert r.sources[1].used == 1


def test_a_bar_with_bad_data_is_asked_of_the_next_source_and_a_hole_if_none_has_it(
    registry, tmp_path
):
    start = 1_700_000_400
    rows = ["timestamp,open,high,low,close,volume"]
    rows += [f"{start + i * MIN},1.5,1.6,1.4,1.55,10" for i in range(60)]
    rows[31] = f"{start + 30 * MIN},1.5,1.3,1.4,1.55,10"  # high below low: ohlc_inconsistent
    rows[41] = f"{start + 40 * MIN},1.5,1.6,1.4,n/a,10"  # a junk close: unparseable
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows) + "\n")
    src = {"name": "bad", "plugin": "csv", "path": str(bad), "timestamp_format": "epoch_s"}
    doc = {"backfill": {"requests": [{"bar_type": "EURUSD.SIM-1-MINUTE-MID-EXTERNAL",
                                       "start": "2023-11-14T22:20:00Z", "end": "2023-11-14T23:20:00Z",
                                       "price_precision": 2, "size_precision": 0}],
                        "sources": [src]}}
    (r,) = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch().report.requests
    assert r.injected == 58 and r.holes == 2 and r.status == "short"
    assert r.dropped == {"ohlc_inconsistent": 1, "unparseable": 1}
    assert [(b - a) // 10**9 for a, b in r.gaps] == [60, 60]
    good = _csv(tmp_path / "good.csv", MIN, 60, start=start)
    doc["backfill"]["sources"].append({**src, "name": "good", "path": good})
    (r,) = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch().report.requests
    assert r.injected == 60 and r.holes == 0 and r.status == "ok" and r.sources[1].used == 2
