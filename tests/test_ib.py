"""The IB plugin against a TWS gateway simulator on loopback, driven by the real ibapi client."""

from __future__ import annotations

import threading
import time

import pytest
from ibsim import source_config
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict

AAPL = "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"
EURUSD = "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
END = "2021-01-05T21:00:00Z"  # 16:00 New York, the close of the recorded AAPL session


@pytest.fixture(autouse=True)
def pacing_state(tmp_path, monkeypatch):
    # The pacing history of these runs must not reach the user's own state folder.
    monkeypatch.setenv("NAUTILUS_BACKFILL_STATE_DIR", str(tmp_path / "state"))


def _fetch(registry, requests, sources, **kw):
    cfg = config_from_dict(
        {"backfill": {"requests": requests, "sources": sources, **kw}}, registry=registry
    )
    backfill = Backfill(cfg, registry=registry)
    started = time.monotonic()
    result = backfill.fetch()
    for r in result.report.requests:
        assert r.accounted(), r.to_dict()
    return result, time.monotonic() - started


def _notes(report):
    # Source notes: on the attempt (newer hosts) or among the request's examples.
    return [*report.examples, *(n for s in report.sources for n in getattr(s, "notes", []))]


def _ib_threads():
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("ib-") or "EReader" in type(t).__name__
    ]


def test_200_bars_for_a_stock_and_a_forex_pair_in_one_request_each(registry, simulator):
    sim = simulator()
    result, elapsed = _fetch(
        registry,
        [
            {"bar_type": AAPL, "bars": 200, "end": END},
            {"bar_type": EURUSD, "bars": 200, "end": "2025-01-02T09:00:00Z"},
        ],
        [source_config(sim)],
    )
    assert elapsed < 1.0
    assert [r.injected for r in result.report.requests] == [200, 200]
    assert len(sim.requests) == 2 and sim.violations == []
    assert {(r.symbol, r.what_to_show, r.bar_size, r.format_date) for r in sim.requests} == {
        ("AAPL", "TRADES", "1 min", 2),
        ("EUR.USD", "MIDPOINT", "1 min", 2),
    }
    aapl = result.bars[next(bt for bt in result.bars if str(bt) == AAPL)]
    # The last recorded bar of the session opens 15:59 New York and closes at END.
    assert aapl[-1].ts_event == 1609880340 * 10**9 and aapl[-1].ts_init == 1609880400 * 10**9
    assert {str(i.id) for i in result.instruments} == {"AAPL.NASDAQ", "EUR/USD.IDEALPRO"}
    assert {i.price_precision for i in result.instruments} == {2, 5}
    notes = [e for r in result.report.requests for e in _notes(r)]
    assert any(
        "IB message 2104: Market data farm connection is OK" in n for n in notes
    )  # every code
    assert _ib_threads() == []


@pytest.fixture
def fallback(tmp_path):
    # A local CSV covering the same window, as the next source after IB.
    lines = ["timestamp,open,high,low,close,volume"]
    start = 1609880400 - 300 * 60
    for i in range(300):
        lines.append(f"{start + 60 * i},220.0,220.5,219.5,220.1,100")
    path = tmp_path / "aapl.csv"
    path.write_text("\n".join(lines) + "\n")
    return {"name": "local", "plugin": "csv", "path": str(path)}


FAULTS = [
    ("refuse", {"refuse": True}, "refused", "connection refused"),
    ("silent", {"silent": True}, "timeout", "no answer to the API handshake"),
    ("close", {"close_mid_stream": True}, "disconnected", "closed the connection"),
    ("slow", {"slow_s": 5.0}, "timeout", "did not answer"),
    ("pacing", {"pacing_violation_first": 100}, "pacing", "pacing violation"),
    ("no-data", {"no_data": True}, "empty", None),
    ("unknown", {"unknown_symbols": {"AAPL"}}, "no_contract", "No security definition"),
    ("no-subscription", {"no_subscription": True}, "no_subscription", "354"),
    ("connectivity", {"connectivity_lost": True}, "disconnected", "1100"),
    ("client-id", {"client_ids_in_use": {901, 902, 903, 904, 905}}, "client_id_in_use", "901..905"),
]


@pytest.mark.parametrize(
    ("scenario", "status", "text"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
def test_faults_end_in_time_with_a_named_status_and_the_next_source_used(
    registry, simulator, fallback, scenario, status, text
):
    sim = simulator(**scenario, time_scale=0.01)
    result, elapsed = _fetch(
        registry,
        [{"bar_type": AAPL, "bars": 100, "end": END, "price_precision": 2, "size_precision": 0}],
        [source_config(sim), fallback],
        deadline="8s",
    )
    report = result.report.requests[0]
    ib, local = report.sources
    assert elapsed < 5.0, elapsed
    assert ib.status == status, ib.to_dict()
    if text:
        assert text in ib.error
    assert local.status == "ok" and report.injected == 100 and ib.used + local.used == 100
    assert sim.violations == [] or status == "pacing"
    assert _ib_threads() == []


def test_client_id_in_use_tries_the_next_one(registry, simulator):
    sim = simulator(client_ids_in_use={901, 902})
    result, _ = _fetch(registry, [{"bar_type": AAPL, "bars": 10, "end": END}], [source_config(sim)])
    assert result.report.requests[0].injected == 10, result.report.requests[0].sources[0]
    assert {r.client_id for r in sim.requests} == {903}


def test_partial_data_then_an_error_keeps_the_bars_and_asks_the_next_source(
    registry, simulator, fallback
):
    sim = simulator(partial_then_error=True)
    result, _ = _fetch(
        registry, [{"bar_type": AAPL, "bars": 100, "end": END}], [source_config(sim), fallback]
    )
    report = result.report.requests[0]
    ib, local = report.sources
    assert ib.status == "disconnected" and 0 < ib.used < 100 and ib.used + local.used == 100
    assert "1100" in ib.error


def test_the_bar_still_forming_is_never_asked_for(registry, simulator):
    sim = simulator()
    # An end past now: IB would answer up to now, the bar still forming included.
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
    result, _ = _fetch(registry, [{"bar_type": EURUSD, "bars": 20, "end": end}], [source_config(sim)])
    report = result.report.requests[0]
    assert report.injected == 20 and report.received == 20, report.to_dict()
    assert result.bars[next(iter(result.bars))][-1].ts_init <= time.time_ns()
    # Asked up to the last whole minute, so no row had to be dropped.
    assert all(r.end.endswith(":00") for r in sim.requests), [r.end for r in sim.requests]


def test_forex_last_is_a_config_error_suggesting_mid(registry, simulator):
    sim = simulator()
    result, _ = _fetch(
        registry,
        [
            {
                "bar_type": "EUR/USD.IDEALPRO-1-MINUTE-LAST-EXTERNAL",
                "bars": 5,
                "end": END,
                "price_precision": 5,
                "size_precision": 0,
            }
        ],
        [source_config(sim)],
    )
    ib = result.report.requests[0].sources[0]
    assert ib.status == "config"
    assert "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL" in ib.error and "what_to_show" in ib.error
    assert sim.requests == []
    result, _ = _fetch(
        registry,
        [{"bar_type": "EUR/USD.IDEALPRO-1-MINUTE-LAST-EXTERNAL", "bars": 5, "end": END}],
        [source_config(sim, what_to_show="MIDPOINT")],
    )
    assert result.report.requests[0].injected == 5


def test_explicit_contract_overrides_the_symbology(registry, simulator):
    sim = simulator()
    result, _ = _fetch(
        registry,
        [
            {
                "bar_type": "APPLE.NASDAQ-1-MINUTE-LAST-EXTERNAL",
                "bars": 30,
                "end": END,
                "contract": {
                    "secType": "STK",
                    "symbol": "AAPL",
                    "exchange": "SMART",
                    "primaryExchange": "NASDAQ",
                    "currency": "USD",
                },
            }
        ],
        [source_config(sim)],
    )
    assert result.report.requests[0].injected == 30
    assert [str(i.id) for i in result.instruments] == ["APPLE.NASDAQ"]


def test_200_requests_of_5_second_bars_across_10_instruments_without_a_pacing_violation(
    registry, simulator
):
    scale = 0.002  # IB's 15 s / 2 s / 10 min windows become 30 ms / 4 ms / 1.2 s, in both
    sim = simulator(time_scale=scale)
    symbols = ["AAPL", "MSFT", "AMZN", "GOOG", "META", "NVDA", "TSLA", "NFLX", "INTC", "AMD"]
    # 20 hours of 5-second bars each: 20 requests of 3600 S, IB's longest for that bar size.
    requests = [
        {
            "bar_type": f"{s}.NASDAQ-5-SECOND-LAST-EXTERNAL",
            "start": "2024-03-04T00:00:00Z",
            "end": "2024-03-04T20:00:00Z",
        }
        for s in symbols
    ]
    result, elapsed = _fetch(
        registry,
        requests,
        [source_config(sim, pacing_scale=scale, use_rth=False, timeout="60s")],
        deadline="90s",
    )
    assert sim.violations == []
    assert len(sim.requests) == 200
    assert all(r.injected == 20 * 720 for r in result.report.requests)
    assert {r.duration for r in sim.requests} == {"3600 S"}
    # 60 requests per (scaled) 10 minutes: 200 requests need at least 3 full windows.
    assert elapsed >= 3 * 600 * scale
    print(f"\n200 requests in {elapsed:.2f}s, max open {sim.max_open}")


def test_daily_bars_come_dated_yyyymmdd_and_land_on_utc_midnight(registry, simulator):
    sim = simulator()
    result, _ = _fetch(
        registry,
        [
            {
                "bar_type": "AAPL.NASDAQ-1-DAY-LAST-EXTERNAL",
                "bars": 20,
                "end": "2024-03-05T00:00:00Z",
            }
        ],
        [source_config(sim)],
    )
    bars = result.bars[next(iter(result.bars))]
    assert len(bars) == 20 and [(r.bar_size, r.duration, r.format_date) for r in sim.requests] == [
        ("1 day", "20 D", 1)
    ]
    assert bars[-1].ts_event == 1709510400 * 10**9  # 2024-03-04T00:00:00Z, the last complete day
    assert all(b.ts_event % (86400 * 10**9) == 0 for b in bars)


def test_weekly_bars_open_on_monday_as_the_adapter_dates_them(registry, simulator):
    sim = simulator()
    result, _ = _fetch(
        registry,
        [
            {
                "bar_type": "EUR/USD.IDEALPRO-1-WEEK-MID-EXTERNAL",
                "bars": 8,
                "end": "2024-03-04T00:00:00Z",
            }
        ],
        [source_config(sim)],
    )
    bars = result.bars[next(iter(result.bars))]
    assert len(bars) == 8 and [r.bar_size for r in sim.requests] == ["1 week"]
    assert bars[-1].ts_event == 1708905600 * 10**9  # Monday 2024-02-26, the last complete week
    assert all(time.gmtime(b.ts_event // 10**9).tm_wday == 0 for b in bars)
