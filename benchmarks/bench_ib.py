"""
IB at its real limits: 200 stocks x 500 one-minute bars from the TWS gateway simulator.

The simulator (tests/ibsim.py, the real TWS wire protocol, the real ``ibapi`` client) answers
each historical request after a fixed latency L. IB allows 50 historical requests open at
once and has no time rule for one-minute bars, so the least time the download can take is
ceil(200 / 50) rounds of L plus one contract-details round trip before the first of them.
The simulator runs in a process of its own, as a gateway would. Each run is a full
``Backfill.fetch()`` (connect, contract lookups, requests, validation, merge, conversion to
``Bar``) in this process; best of 5 and median.

    .venv/bin/python benchmarks/bench_ib.py [--stocks 200] [--bars 500] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ibsim import IBSimulator, Scenario  # noqa: E402
from nautilus_backfill import Backfill  # noqa: E402
from nautilus_backfill.config import config_from_dict  # noqa: E402
from nautilus_backfill.registry import build_registry  # noqa: E402

END = "2024-03-04T21:00:00Z"  # a Monday close: 500 minutes back lie on the same day
OPEN_MAX = 50


def _symbols(n: int) -> list[str]:
    # Distinct stock symbols the simulator generates bars for: STKA, STKB, ..., STKAA, ...
    out = []
    for i in range(n):
        name, k = "", i
        while True:
            name = chr(ord("A") + k % 26) + name
            k = k // 26 - 1
            if k < 0:
                break
        out.append(f"S{name}")
    return out


def _config(port: int, symbols: list[str], bars: int, state: str) -> dict:
    return {
        "backfill": {
            "deadline": "120s",
            "requests": [
                {"bar_type": f"{s}.NASDAQ-1-MINUTE-LAST-EXTERNAL", "bars": bars, "end": END}
                for s in symbols
            ],
            "sources": [
                {
                    "name": "ib",
                    "plugin": "ib",
                    "port": port,
                    "use_rth": False,
                    "timeout": "60s",
                    "pacing_state": state,
                }
            ],
        }
    }


class Gateway:
    """The simulator in a child process; `stats` and `reset` ask it over a pipe."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.latency = latency

    def ask(self, command: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def serve(latency: float) -> None:
    with IBSimulator(Scenario(slow_s=latency)) as sim:
        print(sim.port, flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                sim.requests.clear()
                sim.max_open = 0
            stats = {
                "requests": len(sim.requests),
                "max_open": sim.max_open,
                "violations": sim.violations,
            }
            print(json.dumps(stats), flush=True)


def _contract_rtt(port: int) -> float:
    # The least time of one contract lookup on an open connection.
    from nautilus_backfill.plugins.ib.connection import IBConnection
    from nautilus_trader.adapters.interactive_brokers.common import IBContract

    conn = IBConnection.open("127.0.0.1", port, 990, 1, 5.0)
    try:
        best = math.inf
        for i in range(20):
            contract = IBContract(
                secType="STK",
                symbol=f"RTT{i}",
                exchange="SMART",
                primaryExchange="NASDAQ",
                currency="USD",
            )
            started = time.perf_counter()
            conn.contract_details(contract, 5.0)
            best = min(best, time.perf_counter() - started)
        return best
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--stocks", type=int, default=200)
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per answer (L)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--serve", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    registry = build_registry(entry_points=False)
    symbols = _symbols(args.stocks)
    gateway = Gateway(args.latency)
    try:
        with tempfile.TemporaryDirectory() as state:
            rtt = _contract_rtt(gateway.port)
            rounds = math.ceil(args.stocks / OPEN_MAX)
            bound = rounds * args.latency + rtt
            times, cpus = [], []
            for run in range(args.runs + 1):  # the first, untimed, warms both processes up
                gateway.ask("reset")
                cfg = config_from_dict(_config(gateway.port, symbols, args.bars, state), registry)
                started, cpu = time.perf_counter(), time.process_time()
                result = Backfill(cfg, registry=registry).fetch()
                if run:
                    times.append(time.perf_counter() - started)
                    cpus.append(time.process_time() - cpu)
                injected = sum(r.injected for r in result.report.requests)
                assert injected == args.stocks * args.bars, result.report.render()
                stats = gateway.ask("stats")
                assert stats["requests"] == args.stocks and not stats["violations"], stats
    finally:
        gateway.close()
    best, median = min(times), statistics.median(times)
    print(
        f"IB: {args.stocks} stocks x {args.bars} one-minute bars, each answer after "
        f"L = {args.latency * 1000:.0f} ms (simulator in its own process, real ibapi client)"
    )
    print(
        f"  requests {stats['requests']}, most open at once {stats['max_open']}, "
        f"bars injected {injected:,}"
    )
    print(
        f"  lower bound {bound:.2f}s = {rounds} rounds of 50 x L + one contract lookup "
        f"{rtt * 1000:.1f} ms"
    )
    print(
        f"  wall time best {best:.2f}s (ratio {best / bound:.2f}), "
        f"median {median:.2f}s (ratio {median / bound:.2f}); target <= 1.5"
    )
    print(
        f"  CPU of this process (client, validation, Bar objects): median "
        f"{statistics.median(cpus):.2f}s; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
