"""
A TWS gateway simulator on loopback that speaks the real TWS wire protocol (server version 200).

Version 200 is the last one whose messages are all text: above it the client switches to
protobuf. The simulator answers the handshake, START_API, reqContractDetails,
reqHistoricalData and cancelHistoricalData as TWS does, serves the real recorded AAPL bars in
``../shared/data/ib/`` and a generated series for any other contract, enforces IB's pacing and
step-size rules (recording every violation it sees), and injects faults per scenario.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import socket
import struct
import threading
import time
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVER_VERSION = 200
ACCOUNT = "DU1234567"

# IB's step-size table (TWS API "Historical Data Limitations"): duration -> allowed bar sizes.
STEP_TABLE = [
    (60, 1, 60),
    (120, 1, 120),
    (1800, 1, 1800),
    (3600, 5, 3600),
    (14400, 10, 10800),
    (28800, 30, 28800),
    (86400, 60, 86400),
    (2 * 86400, 120, 86400),
    (7 * 86400, 180, 7 * 86400),
    (30 * 86400, 1800, 30 * 86400),
    (365 * 86400, 86400, 30 * 86400),
]
BAR_SIZES = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
    "1 day": 86400,
    "1 week": 7 * 86400,
    "1 month": 30 * 86400,
}
UNITS = {"S": 1, "D": 86400, "W": 7 * 86400, "M": 30 * 86400, "Y": 365 * 86400}

# The recording's `date` has no zone. Its dense block runs 11:30-18:00, which is NYSE's
# 09:30-16:00 New York session two hours later: the recorder's clock was at UTC-3.
RECORDING_TZ = zoneinfo.ZoneInfo("America/Sao_Paulo")

CONTRACTS = {
    ("STK", "AAPL"): dict(
        symbol="AAPL",
        secType="STK",
        exchange="SMART",
        primaryExchange="NASDAQ",
        currency="USD",
        localSymbol="AAPL",
        conId=265598,
        minTick=0.01,
        longName="APPLE INC",
        isin="US0378331005",
        tz="US/Eastern",
    ),
    ("CASH", "EUR.USD"): dict(
        symbol="EUR",
        secType="CASH",
        exchange="IDEALPRO",
        primaryExchange="",
        currency="USD",
        localSymbol="EUR.USD",
        conId=12087792,
        minTick=0.00005,
        longName="European Monetary Union Euro",
        isin="",
        tz="US/Eastern",
    ),
}


@dataclass
class Scenario:
    """Faults to inject; the defaults behave like a healthy gateway."""

    refuse: bool = False  # nobody listens on the port
    silent: bool = False  # accept, then never answer the handshake
    close_mid_stream: bool = False  # close the socket after the first historical request
    slow_s: float = 0.0  # delay before each historical answer
    pacing_violation_first: int = 0  # answer the first N historical requests with 162 pacing
    no_data: bool = False  # 162 "HMDS query returned no data"
    unknown_symbols: set[str] = field(default_factory=set)  # 200 for these
    no_subscription: bool = False  # 354 on historical requests
    connectivity_lost: bool = False  # 1100 during the first historical request
    client_ids_in_use: set[int] = field(default_factory=set)  # 326 for these
    partial_then_error: bool = False  # half the bars, then an error (no end message)
    forming_bar: bool = True  # include the bar still forming when the window reaches now
    time_scale: float = 1.0  # scales IB's pacing windows (test-only)
    repeat: str = ""  # "identical" or "conflicting": every 10th bar of an answer sent twice
    fail_after: int = -1  # answer this many historical requests, then fail the rest with ...
    fail_with: str = ""  # ... "stall" (never answer), "pacing" (162) or "close" (the socket)
    close_on_contract: bool = False  # close the socket on the first contract lookup
    bad_frame: bool = False  # a historical answer with a price the client cannot parse
    bad_date: bool = False  # the first bar of each answer dated half a second off (1709510400.5)
    now: float | None = None  # the simulator's clock, epoch seconds (default: real time)


@dataclass
class HistRequest:
    """One historical request as the simulator received it."""

    req_id: int
    client_id: int
    symbol: str
    sec_type: str
    end: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: int
    format_date: int
    received: float
    con_id: int = 0


def _fields(*fields: Any) -> bytes:
    return "".join(f"{f}\0" for f in fields).encode()


def _frame(fields: list[Any]) -> bytes:
    payload = _fields(*fields)
    return struct.pack("!I", len(payload)) + payload


class _Conn:
    def __init__(self, sim: IBSimulator, sock: socket.socket) -> None:
        self.sim, self.sock = sim, sock
        self.lock = threading.Lock()
        self.client_id = -1
        self.closed = False
        self.cancelled: set[int] = set()

    def send(self, *fields: Any) -> None:
        with self.lock:
            if not self.closed:
                try:
                    self.sock.sendall(_frame(list(fields)))
                except OSError:
                    self.closed = True

    def send_payload(self, payload: bytes) -> None:
        with self.lock:
            if not self.closed:
                try:
                    self.sock.sendall(struct.pack("!I", len(payload)) + payload)
                except OSError:
                    self.closed = True

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(4, req_id, code, text, "", int(time.time() * 1000))

    def close(self) -> None:
        with self.lock:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()

    def recv_exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_msg(self) -> list[str] | None:
        head = self.recv_exact(4)
        if head is None:
            return None
        body = self.recv_exact(struct.unpack("!I", head)[0])
        if body is None:
            return None
        return body.decode(errors="replace").split("\0")[:-1]

    def serve(self) -> None:
        prefix = self.recv_exact(4)
        if prefix != b"API\0":
            self.close()
            return
        if self.read_msg() is None:  # "v100..max"
            return
        if self.sim.scenario.silent:
            while self.read_msg() is not None:
                pass
            return
        # The version and connection time go out as their own write, before anything else.
        when = datetime.now(UTC).strftime("%Y%m%d %H:%M:%S UTC")
        self.send(SERVER_VERSION, when)
        while True:
            fields = self.read_msg()
            if fields is None:
                break
            try:
                self.sim.dispatch(self, fields)
            except Exception as e:  # a simulator bug must show in the test, not hang it
                self.sim.violations.append(f"simulator error on {fields[:3]}: {e!r}")
        self.closed = True


class IBSimulator:
    """
    The gateway: start() binds a free loopback port, stop() closes everything.

    ``requests`` logs every historical request, ``contract_requests`` every contract lookup,
    ``violations`` every rule the clients broke.
    """

    def __init__(self, scenario: Scenario | None = None, recordings: Path | None = None) -> None:
        self.scenario = scenario or Scenario()
        self.recorded = _load_recording(recordings) if recordings else {}
        self.requests: list[HistRequest] = []
        self.contract_requests: list[tuple[int, str]] = []
        self.violations: list[str] = []
        self.bars_sent = 0  # bar rows sent in historical answers, repeats included
        self._bar_cache: dict[tuple, list[tuple]] = {}
        self._body_cache: dict[tuple, tuple[int, bytes]] = {}
        self.answered = 0  # historical requests answered with bars or an end
        self.open_requests: dict[tuple[int, int], float] = {}
        self.max_open = 0
        self._recent: deque[tuple[float, tuple, int]] = deque()
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        if self.scenario.refuse:
            with socket.socket() as s:  # a port nobody listens on
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            return self.port
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True, name="ibsim-accept")
        t.start()
        self._threads.append(t)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
            self._server.close()
        for conn in list(self._conns):
            conn.close()
        for t in self._threads:
            t.join(timeout=0.5)

    def __enter__(self) -> IBSimulator:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            # Each answer goes out at once, not after the client's delayed ACK (Nagle).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, sock)
            self._conns.append(conn)
            t = threading.Thread(target=conn.serve, daemon=True, name="ibsim-conn")
            t.start()
            self._threads.append(t)

    def now(self) -> float:
        return self.scenario.now if self.scenario.now is not None else time.time()

    # -- messages ----------------------------------------------------------------------------

    def dispatch(self, conn: _Conn, f: list[str]) -> None:
        msg_id = int(f[0])
        if msg_id == 71:  # START_API
            conn.client_id = int(f[2])
            if conn.client_id in self.scenario.client_ids_in_use:
                conn.error(
                    -1,
                    326,
                    "Unable to connect as the client id is already in use. "
                    "Retry with a unique client id.",
                )
                conn.close()
                return
            conn.send(15, 1, ACCOUNT)
            conn.send(9, 1, 1)
            conn.error(-1, 2104, "Market data farm connection is OK:usfarm")
            conn.error(-1, 2106, "HMDS data farm connection is OK:ushmds")
            conn.error(-1, 2158, "Sec-def data farm connection is OK:secdefil")
        elif msg_id == 9:  # REQ_CONTRACT_DATA
            self._contract_details(conn, f)
        elif msg_id == 20:  # REQ_HISTORICAL_DATA
            req = HistRequest(
                req_id=int(f[1]),
                client_id=conn.client_id,
                symbol=f[12] or f[3],
                sec_type=f[4],
                end=f[15],
                duration=f[17],
                bar_size=f[16],
                what_to_show=f[19],
                use_rth=int(f[18]),
                format_date=int(f[20]),
                received=time.monotonic(),
                con_id=int(f[2] or 0),
            )
            with self._lock:  # in arrival order, as the gateway sees them
                self.requests.append(req)
                self.open_requests[(conn.client_id, req.req_id)] = req.received
                self.max_open = max(self.max_open, len(self.open_requests))
                if len(self.open_requests) > 50:
                    self.violations.append(
                        f"more than 50 open requests ({len(self.open_requests)})"
                    )
                violation = self._pacing(req)
            t = threading.Thread(target=self._historical, args=(conn, req, violation), daemon=True)
            t.start()
            self._threads.append(t)
        elif msg_id == 25:  # CANCEL_HISTORICAL_DATA
            conn.cancelled.add(int(f[2]))
            with self._lock:
                self.open_requests.pop((conn.client_id, int(f[2])), None)
        # Anything else (reqMarketDataType, reqCurrentTime, ...) is ignored, as the issue allows.

    def _lookup(self, sec_type: str, local_symbol: str, symbol: str) -> dict | None:
        key = local_symbol or (
            f"{symbol}.USD" if sec_type == "CASH" and "." not in symbol else symbol
        )
        if key in self.scenario.unknown_symbols or symbol in self.scenario.unknown_symbols:
            return None
        if (sec_type, key) in CONTRACTS:
            return CONTRACTS[(sec_type, key)]
        if sec_type == "STK":
            return dict(
                CONTRACTS[("STK", "AAPL")],
                symbol=key,
                localSymbol=key,
                conId=_stable_id(key),
                longName=f"{key} INC",
                isin=f"US{_stable_id(key):010d}",
            )
        if sec_type == "CASH" and "." in key:
            base, quote = key.split(".")
            tick = 0.005 if quote == "JPY" else 0.00005
            return dict(
                CONTRACTS[("CASH", "EUR.USD")],
                symbol=base,
                currency=quote,
                localSymbol=key,
                conId=_stable_id(key),
                minTick=tick,
                longName=key,
            )
        return None

    def _contract_details(self, conn: _Conn, f: list[str]) -> None:
        req_id, sec_type, symbol, local = int(f[2]), f[5], f[4], f[13]
        self.contract_requests.append((req_id, local or symbol))
        if self.scenario.close_on_contract:
            conn.close()
            return
        c = self._lookup(sec_type, local, symbol)
        if c is None:
            conn.error(req_id, 200, "No security definition has been found for the request")
            return
        stk = c["secType"] == "STK"
        sec_ids = [1, "ISIN", c["isin"]] if c["isin"] else [0]
        conn.send(
            10,
            req_id,
            c["symbol"],
            c["secType"],
            "",
            "",
            0,
            "",
            c["exchange"],
            c["currency"],
            c["localSymbol"],
            c["localSymbol"],
            c["localSymbol"],
            c["conId"],
            c["minTick"],
            "",
            "LMT,MKT",
            "SMART,NASDAQ" if stk else "IDEALPRO",
            1,
            0,
            c["longName"],
            c["primaryExchange"],
            "",
            "Technology" if stk else "",
            "",
            "",
            c["tz"],
            "",
            "",
            "",
            "",
            *sec_ids,
            1,
            "",
            "",
            "26" if stk else "239",
            "",
            "COMMON" if stk else "",
            "1",
            "1",
            "100" if stk else "1",
            0,
        )
        conn.send(52, 1, req_id)

    def _historical(self, conn: _Conn, req: HistRequest, violation: bool) -> None:
        sc = self.scenario
        key = (conn.client_id, req.req_id)
        try:
            step = BAR_SIZES.get(req.bar_size)
            seconds = _duration_s(req.duration)
            # The answer is looked up while the latency runs, so each request is answered L
            # after it arrived, as a gateway with its own CPU would, however many are open.
            plain = self._plain_answer(req, step, seconds) if sc.slow_s and not violation else None
            if sc.slow_s:
                time.sleep(max(0.0, req.received + sc.slow_s - time.monotonic()))
            if req.req_id in conn.cancelled:
                return
            if step is None or seconds is None or not _step_ok(seconds, step):
                self.violations.append(f"step size: {req.duration} of {req.bar_size}")
                conn.error(
                    req.req_id,
                    321,
                    "Error validating request.-'bP' : cause - Historical data "
                    f"bar size/duration combination is invalid: {req.duration}, {req.bar_size}",
                )
                return
            if (
                violation
                or len([r for r in self.requests if r.client_id == conn.client_id])
                <= sc.pacing_violation_first
            ):
                conn.error(
                    req.req_id,
                    162,
                    "Historical Market Data Service error message:"
                    "Historical data request pacing violation",
                )
                return
            if sc.close_mid_stream:
                conn.close()
                return
            with self._lock:
                late = 0 <= sc.fail_after <= self.answered
                self.answered += not late
            if late and sc.fail_with == "stall":
                return
            if late and sc.fail_with == "pacing":
                conn.error(
                    req.req_id,
                    162,
                    "Historical Market Data Service error message:"
                    "Historical data request pacing violation",
                )
                return
            if late and sc.fail_with == "close":
                # Let the answers already sent be read: closing with unread input resets the
                # connection, and the client would lose them in its own buffers.
                time.sleep(0.2)
                conn.close()
                return
            if sc.connectivity_lost:
                conn.error(
                    -1, 1100, "Connectivity between IB and Trader Workstation has been lost."
                )
                return
            if sc.no_subscription:
                conn.error(req.req_id, 354, "Requested market data is not subscribed.")
                return
            if sc.no_data:
                conn.error(
                    req.req_id,
                    162,
                    "Historical Market Data Service error message:"
                    "HMDS query returned no data: AAPL@NASDAQ Trades",
                )
                return
            c = self._lookup(req.sec_type, req.symbol, req.symbol)
            if c is None or req.con_id not in (0, c["conId"]):  # IB knows a contract by its id
                conn.error(req.req_id, 200, "No security definition has been found for the request")
                return
            end = _parse_end(req.end) if req.end else self.now()
            if (
                plain is not None
                and plain[0] == end
                and not (sc.partial_then_error or sc.repeat or sc.bad_frame or sc.bad_date)
            ):
                _, count, body = plain
                if count:
                    with self._lock:
                        self.bars_sent += count
                    conn.send_payload(_fields(17, req.req_id, count) + body)
                self._end(conn, req, key, end, seconds)
                return
            rows = self._bars(c, req, step, end - seconds, end)
            if sc.partial_then_error:
                rows = rows[: len(rows) // 2]
            if sc.repeat:
                rows = _with_repeats(rows, sc.repeat == "conflicting")
            if sc.bad_frame and rows:
                rows[0] = (rows[0][0], "1.2.3", *rows[0][2:])
            if sc.bad_date and rows:
                rows[0] = (f"{rows[0][0]}.5", *rows[0][1:])
            if rows:
                with self._lock:
                    self.bars_sent += len(rows)
                conn.send(17, req.req_id, len(rows), *[v for row in rows for v in row])
            if sc.partial_then_error:
                conn.error(
                    req.req_id,
                    1100,
                    "Connectivity between IB and Trader Workstation has been lost.",
                )
                return
            self._end(conn, req, key, end, seconds)
        finally:
            with self._lock:
                self.open_requests.pop(key, None)

    def _end(self, conn: _Conn, req: HistRequest, key: tuple, end: float, seconds: int) -> None:
        fmt = "%Y%m%d %H:%M:%S"
        with self._lock:  # closed once its end goes out: the client may send the next now
            self.open_requests.pop(key, None)
        conn.send(
            108,
            req.req_id,
            datetime.fromtimestamp(end - seconds, UTC).strftime(fmt),
            datetime.fromtimestamp(end, UTC).strftime(fmt),
        )

    def _plain_answer(
        self, req: HistRequest, step: int | None, seconds: int | None
    ) -> tuple[float, int, bytes] | None:
        # (end, bar count, encoded bars) of a valid request's answer, or None.
        if step is None or seconds is None or not _step_ok(seconds, step):
            return None
        c = self._lookup(req.sec_type, req.symbol, req.symbol)
        if c is None or req.con_id not in (0, c["conId"]):
            return None
        end = _parse_end(req.end) if req.end else self.now()
        key = (c["localSymbol"], c["conId"], req.what_to_show, step, end - seconds, end)
        key += (req.use_rth,)
        cached = self._body_cache.get(key)
        if cached is not None:
            return end, *cached
        rows = self._bars(c, req, step, end - seconds, end)
        body = _fields(*[v for row in rows for v in row])
        if end <= self.now():
            self._body_cache[key] = (len(rows), body)
        return end, len(rows), body

    def _pacing(self, req: HistRequest) -> bool:
        step = BAR_SIZES.get(req.bar_size, 0)
        if step > 30:  # IB's hard limits are for bars of 30 seconds or less
            return False
        now, s = req.received, self.scenario.time_scale
        ident = (
            req.symbol,
            req.sec_type,
            req.end,
            req.duration,
            req.bar_size,
            req.what_to_show,
            req.use_rth,
        )
        same = (req.symbol, req.sec_type, req.what_to_show)
        cost = 2 if req.what_to_show == "BID_ASK" else 1
        while self._recent and now - self._recent[0][0] > 600 * s:
            self._recent.popleft()
        found = []
        if any(k == ident and now - t < 15 * s for t, k, _ in self._recent):
            found.append("identical request within 15 s")
        if sum(1 for t, k, _ in self._recent if (*k[0:2], k[5]) == same and now - t < 2 * s) >= 5:
            found.append("6 or more requests for one contract/tick type within 2 s")
        if sum(c for _, _, c in self._recent) + cost > 60:
            found.append("more than 60 requests within 10 minutes")
        self._recent.append((now, ident, cost))
        self.violations.extend(
            f"pacing: {v} ({req.symbol} {req.bar_size} {req.end})" for v in found
        )
        return bool(found)

    # -- data --------------------------------------------------------------------------------

    def _bars(self, c: dict, req: HistRequest, step: int, start: float, end: float) -> list[tuple]:
        # A gateway serves stored bars; the same answer is generated once (benchmarks ask
        # the same windows again, and must time the client, not this generator).
        key = (c["localSymbol"], c["conId"], req.what_to_show, step, start, end, req.use_rth)
        cached = self._bar_cache.get(key)
        if cached is None:
            cached = self._make_bars(c, req, step, start, end)
            if end <= self.now():
                self._bar_cache[key] = cached
        return list(cached)

    def _make_bars(
        self, c: dict, req: HistRequest, step: int, start: float, end: float
    ) -> list[tuple]:
        daily = step >= 86400
        # Weekly bars run Monday to Sunday (the epoch was a Thursday: Mondays are 4 days on).
        shift = 4 * 86400 if step == 7 * 86400 else 0
        first = math.floor((start - shift) / step) * step + shift
        now = self.now()
        recorded = (
            self.recorded.get(c["localSymbol"])
            if step == 60 and req.what_to_show == "TRADES"
            else None
        )
        span = (min(recorded) - 86400, max(recorded) + 86400) if recorded else (0, 0)
        out = []
        t = first
        while t < end:
            forming = t + step > now
            if forming and not self.scenario.forming_bar:
                break
            if t >= start - step + 1 and (daily or not req.use_rth or _in_rth(c, t)):
                if recorded is not None and span[0] <= t <= span[1]:
                    bar = recorded.get(int(t))
                else:
                    bar = _generate(c, req.what_to_show, step, t)
                if bar is not None:
                    # IB dates a weekly bar by its last trading day (Friday).
                    dated = t + 4 * 86400 if shift else t
                    date = (
                        datetime.fromtimestamp(dated, UTC).strftime("%Y%m%d")
                        if daily
                        else str(int(t))
                    )
                    out.append((date, *bar))
            if forming:
                break
            t += step
        return out


def _with_repeats(rows: list[tuple], conflicting: bool) -> list[tuple]:
    # Every 10th bar again right after itself: as sent, or with a close one cent higher (and
    # the high raised with it, so the repeat is a valid bar on its own).
    out = []
    for i, row in enumerate(rows):
        out.append(row)
        if i % 10 == 0:
            if conflicting:
                date, o, h, lo, c, *rest = row
                c2 = f"{float(c) + 0.01:.2f}"
                h2 = f"{max(float(h), float(c2)):.2f}"
                row = (date, o, h2, lo, c2, *rest)
            out.append(row)
    return out


def _stable_id(text: str) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(text)) * 7919 % 10**8 + 10**6


def _in_rth(c: dict, t: float) -> bool:
    if c["secType"] != "STK":
        return True
    local = datetime.fromtimestamp(t, zoneinfo.ZoneInfo("America/New_York"))
    minutes = local.hour * 60 + local.minute
    return local.weekday() < 5 and 570 <= minutes < 960


def _generate(c: dict, what: str, step: int, t: float) -> tuple | None:
    tick = c["minTick"]
    base = 150.0 if c["secType"] == "STK" else 1.08
    i = t / step
    seed = c["conId"] % 997
    mid = base * (1 + 0.01 * math.sin(i / 37.0 + seed) + 0.004 * math.sin(i / 5.3 + seed / 7))
    prev = base * (
        1 + 0.01 * math.sin((i - 1) / 37.0 + seed) + 0.004 * math.sin((i - 1) / 5.3 + seed / 7)
    )
    half = {"BID": -1, "ASK": 1}.get(what, 0) * tick
    o, cl = round((prev + half) / tick) * tick, round((mid + half) / tick) * tick
    h = max(o, cl) + tick * (1 + int(t) % 3)
    lo = min(o, cl) - tick * (1 + int(t) % 2)
    digits = max(0, -math.floor(math.log10(tick) + 1e-9))
    fmt = f"{{:.{digits}f}}"
    volume = -1 if what in ("MIDPOINT", "BID", "ASK") else 100 + int(t) % 900
    wap = -1 if volume == -1 else cl
    count = -1 if volume == -1 else 1 + int(t) % 50
    return (
        fmt.format(o),
        fmt.format(h),
        fmt.format(lo),
        fmt.format(cl),
        volume,
        fmt.format(wap) if wap != -1 else -1,
        count,
    )


def _duration_s(text: str) -> int | None:
    try:
        n, unit = text.split()
        return int(n) * UNITS[unit]
    except (ValueError, KeyError):
        return None


def _step_ok(seconds: int, step: int) -> bool:
    # Valid when some row of IB's table allows this bar size for a duration at least this long.
    return any(seconds <= d and lo <= step <= hi for d, lo, hi in STEP_TABLE)


def _parse_end(text: str) -> float:
    text = text.strip()
    if text.endswith(" UTC"):
        text = text[:-4]
    if "-" in text:
        return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return datetime.strptime(text, "%Y%m%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def _load_recording(folder: Path) -> dict[str, dict[int, tuple]]:
    bars: dict[int, tuple] = {}
    path = folder / "aapl-1min-2021-01-05.bardata.jsonl.gz"
    if not path.exists():
        return {}
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            t = datetime.fromisoformat(row["date"]).replace(tzinfo=RECORDING_TZ).timestamp()
            bars[int(t)] = (
                repr(row["open"]),
                repr(row["high"]),
                repr(row["low"]),
                repr(row["close"]),
                int(row["volume"]),
                repr(row["average"]),
                int(row["barCount"]),
            )
    return {"AAPL": bars}


def source_config(sim: IBSimulator, **kw: Any) -> dict[str, Any]:
    """An `ib` source block for `sim`, with short timeouts for tests."""
    return {
        "name": "ib",
        "plugin": "ib",
        "port": sim.port,
        "timeout": "3s",
        "connect_timeout": "1s",
        **kw,
    }


if __name__ == "__main__":
    # A gateway on a fixed port for trying the CLI by hand (and for the docs' transcripts):
    #   python tests/ibsim.py 7497 '{"fail_after": 2, "fail_with": "stall"}'
    import sys

    scenario = Scenario(**json.loads(sys.argv[2])) if len(sys.argv) > 2 else Scenario()
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "ib"
    sim = IBSimulator(scenario, recordings=data if data.is_dir() else None)
    print(f"IB gateway simulator on 127.0.0.1:{sim.start(int(sys.argv[1]))}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
