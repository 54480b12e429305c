"""The plugin's bars equal the IB adapter's own; the simulator serves NautilusTrader's own IB client."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal

import pytest
from ibapi.common import BarData
from ibsim import RECORDING_TZ, IBSimulator, Scenario
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_trader.adapters.interactive_brokers.client import InteractiveBrokersClient
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.model.data import BarType
from nautilus_trader.model.identifiers import TraderId

AAPL = "AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"


def _recorded(shared) -> list[BarData]:
    out = []
    with gzip.open(shared / "ib" / "aapl-1min-2021-01-05.bardata.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            bar = BarData()
            # formatDate=2: the date arrives as epoch seconds of the bar start.
            bar.date = str(
                int(datetime.fromisoformat(row["date"]).replace(tzinfo=RECORDING_TZ).timestamp())
            )
            bar.open, bar.high, bar.low, bar.close = (
                row["open"],
                row["high"],
                row["low"],
                row["close"],
            )
            bar.volume, bar.wap, bar.barCount = (
                Decimal(str(row["volume"])),
                Decimal(str(row["average"])),
                row["barCount"],
            )
            out.append(bar)
    return out


def _adapter_bars(recorded, instrument) -> list:
    loop = asyncio.new_event_loop()
    clock = LiveClock()
    cache = Cache()
    cache.add_instrument(instrument)
    client = InteractiveBrokersClient(loop, MessageBus(TraderId("TESTER-001"), clock), cache, clock)
    bar_type = BarType.from_str(AAPL)

    async def convert():
        out = []
        for bar in recorded:
            ts_init = await client._ib_bar_to_ts_init(bar, bar_type)
            out.append(await client._ib_bar_to_nautilus_bar(bar_type, bar, ts_init))
        return out

    try:
        return loop.run_until_complete(convert())
    finally:
        loop.close()


def test_plugin_bars_equal_the_adapters_conversion_of_the_real_recording(shared, registry):
    recorded = _recorded(shared)
    with IBSimulator(Scenario(), recordings=shared / "ib") as sim:
        doc = {
            "backfill": {
                "requests": [
                    {
                        "bar_type": AAPL,
                        "start": "2021-01-05T12:00:00Z",
                        "end": "2021-01-06T03:00:00Z",
                    }
                ],
                "sources": [{"name": "ib", "plugin": "ib", "port": sim.port, "use_rth": False}],
            }
        }
        result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    ours = result.bars[BarType.from_str(AAPL)]
    theirs = _adapter_bars(recorded, result.instruments[0])
    assert len(theirs) == len(recorded) == 405
    assert len(ours) == 405 and result.report.requests[0].accounted()
    for a, b in zip(ours, theirs, strict=True):
        assert a == b and a.ts_init == b.ts_init and a.is_revision == b.is_revision
        assert (a.open, a.high, a.low, a.close, a.volume) == (
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
        )


HISTORIC_CLIENT = """
import asyncio, json, sys
from datetime import datetime
from nautilus_trader.adapters.interactive_brokers.historical.client import HistoricInteractiveBrokersClient

async def download(port):
    client = HistoricInteractiveBrokersClient(port=port, client_id=7, log_level="ERROR")
    await client.connect()
    instruments = await client.request_instruments(instrument_ids=["AAPL.NASDAQ"])
    bars = await client.request_bars(
        bar_specifications=["1-MINUTE-LAST"], start_date_time=datetime(2021, 1, 5, 19, 0),
        end_date_time=datetime(2021, 1, 5, 21, 0), tz_name="UTC", instrument_ids=["AAPL.NASDAQ"],
        use_rth=True, timeout=10,
    )
    client._client.stop()
    return instruments, bars

instruments, bars = asyncio.run(asyncio.wait_for(download(int(sys.argv[1])), 30))
print(json.dumps({"instruments": [[str(i.id), i.price_precision] for i in instruments],
                  "bars": [[b.ts_event, b.ts_init, str(b.close)] for b in bars]}))
"""


def test_nautilus_historic_ib_client_downloads_bars_and_an_instrument_from_the_simulator(shared):
    # NautilusTrader's own client, in a process of its own: it initializes logging, which a
    # process may do only once.
    with IBSimulator(Scenario(), recordings=shared / "ib") as sim:
        proc = subprocess.run(
            [sys.executable, "-c", HISTORIC_CLIENT, str(sim.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["instruments"] == [["AAPL.NASDAQ", 2]]
    bars = out["bars"]
    assert len(bars) == 120
    assert bars[0][0] == 1609873200 * 10**9 and bars[-1][1] == 1609880400 * 10**9
    assert {r.client_id for r in sim.requests} == {7} and sim.violations == []


def test_one_pass_reading_of_historical_answers_equals_ibapis_decoder():
    # Message 17 as TWS 196..200 sends it, with the values ibapi treats specially.
    from ibapi.decoder import Decoder
    from ibapi.wrapper import EWrapper
    from nautilus_backfill.plugins.ib.connection import _historical_data_msg

    rows = [
        ("1709510400", "150.25", "150.5", "150", "150.3", "1200", "150.31", "17"),
        ("1709510460", "Infinity", "1e3", "", "0.1", "", "-1", "-1"),
        ("20240304", "1.08", "1.09", "1.07", "1.085", "-1", "-1", "-1"),
        ("1709510520", "2", "3", "1", "2", "2147483647", "2", "1"),
        ("1709510580", "2", "3", "1", "2", "9223372036854775807", "2", "1"),
        ("1709510640", "2", "3", "1", "2", "0.5", "2", "1"),
    ]
    fields = [b"7", str(len(rows)).encode(), *(v.encode() for row in rows for v in row)]

    class Collect(EWrapper):
        def __init__(self):
            super().__init__()
            self.bars = []

        def historicalData(self, reqId, bar):
            self.bars.append((reqId, bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume))

        def historical_bars(self, req_id, bars):
            self.bars.extend((req_id, *b) for b in bars)

    theirs, ours = Collect(), Collect()
    Decoder(theirs, 200).processHistoricalDataMsg(iter(fields))
    _historical_data_msg(Decoder(ours, 200), iter(fields))
    assert len(theirs.bars) == len(rows)
    for a, b in zip(theirs.bars, ours.bars, strict=True):
        assert a[:6] == b[:6]
        assert float(a[6]) == float(b[6])  # the source reads volumes as float


@pytest.mark.parametrize("daily, weekly", [(False, False), (True, False), (True, True)])
def test_column_wise_reading_of_an_all_numeric_answer_equals_ibapis_decoder(daily, weekly):
    # The usual answer (every field a number) is read column-wise into one block; the bars
    # must be those ibapi's own decoder gives, converted bar by bar.
    import numpy as np
    from ibapi.decoder import Decoder
    from ibapi.wrapper import EWrapper
    from nautilus_backfill.plugins.ib.connection import BarBlock, _historical_data_msg
    from nautilus_backfill.plugins.ib.source import _Bars, _row

    dates = ["20240304", "20240305", "20240308"] if daily else ["1709510400", "1709510460", "1709510520"]
    rows = [
        (dates[0], "150.25", "150.5", "150", "150.3", "1200", "150.31", "17"),
        (dates[1], "Infinity", "1e3", "0.5", "0.1", "2147483647", "-1", "-1"),
        (dates[2], "1.08", "1.09", "1.07", "1.085", "-1", "-1", "-1"),
        (dates[0], "2", "3", "1", "2", "9223372036854775807", "2", "1"),
        (dates[1], "2", "3", "1", "2", "1.7976931348623157E308", "2", "1"),
        (dates[2], "2", "3", "1", "2", "0.5", "2", "1"),
    ]
    fields = [b"7", str(len(rows)).encode(), *(v.encode() for row in rows for v in row)]

    class Collect(EWrapper):
        def __init__(self):
            super().__init__()
            self.items = []

        def historicalData(self, reqId, bar):
            self.items.append(bar)

        def historical_bars(self, req_id, bars):
            self.items.extend(bars)

    theirs, ours = Collect(), Collect()
    Decoder(theirs, 200).processHistoricalDataMsg(iter(fields))
    _historical_data_msg(Decoder(ours, 200), iter(fields))
    assert len(ours.items) == 1 and isinstance(ours.items[0], BarBlock)  # no object per bar
    expected = [_row(bar, daily, weekly) for bar in theirs.items]
    got = _Bars.of(ours.items, daily, weekly)
    assert got.ts.tolist() == [r[0] for r in expected]
    np.testing.assert_array_equal(got.values, np.array([r[1:] for r in expected], dtype=np.float64))
