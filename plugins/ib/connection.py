"""
The backfill's own TWS API connection: ``ibapi``'s ``EClient`` and ``EWrapper`` with
requests answered through futures.

The node's IB data client connects only inside ``node.run()``; the backfill runs before that,
so it opens this connection with a client id of its own and closes it when done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from ibapi.client import EClient
from ibapi.common import UNSET_DECIMAL, BarData
from ibapi.contract import Contract, ContractDetails
from ibapi.decoder import HandleInfo
from ibapi.message import IN
from ibapi.server_versions import MIN_SERVER_VER_HISTORICAL_DATA_END, MIN_SERVER_VER_PROTOBUF
from ibapi.utils import BadMessage
from ibapi.wrapper import EWrapper
from nautilus_backfill.errors import SourceError

# Informational codes TWS sends as "errors" (farm status, warnings).
INFO_CODES = frozenset({2100, 2104, 2106, 2107, 2108, 2119, 2158, 2168, 2169, 2176})
# Codes that end the connection, not one request. 507 and 508 are the TWS API client's own:
# a message it could not read, after which the stream cannot be trusted.
CONNECTION_CODES = {
    326: "client_id_in_use",
    502: "refused",
    504: "disconnected",
    507: "bad_message",
    508: "bad_message",
    1100: "disconnected",
    1300: "disconnected",
}
UNREADABLE = 508


# ibapi logs through `logging` without a handler of its own, so Python's last-resort handler
# printed its warnings ("Disconnected; resetting connection") on the user's terminal; the
# report says what happened. A node's own logging config still receives them.
logging.getLogger("ibapi").addHandler(logging.NullHandler())

# What ibapi's `decode(Decimal, ...)` reads as "no value" (UNSET_DECIMAL).
UNSET_VOLUMES = frozenset(
    {b"", b"2147483647", b"9223372036854775807", b"1.7976931348623157E308", b"-9223372036854775808"}
)
_UNSET_FLOATS = np.array([float(v) for v in UNSET_VOLUMES if v])
_UNSET_VOLUME = float(UNSET_DECIMAL)


class BarBlock(NamedTuple):
    """
    A whole historical answer read column-wise (see `_fast_bars`).

    ``table`` is float64, one row per bar: IB's date field (epoch seconds, or ``yyyymmdd``
    for daily bars), open, high, low, close and volume, with the values ``BarData`` would
    hold (an unset volume is ``float(UNSET_DECIMAL)``).
    """

    table: np.ndarray


class FastBar(NamedTuple):
    """One bar of a historical answer, with the fields and values ``BarData`` would have."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: Any


@dataclass
class IBError:
    """One error message from TWS, as the report shows it."""

    req_id: int
    code: int
    text: str

    def __str__(self) -> str:
        return f"IB error {self.code}: {self.text}"


@dataclass
class _Pending:
    future: Future
    rows: list[Any] = field(default_factory=list)
    errors: list[IBError] = field(default_factory=list)


class RequestFailed(Exception):
    """A request ended with an IB error; `partial` holds what arrived before it."""

    def __init__(self, error: IBError, partial: list[Any]) -> None:
        super().__init__(str(error))
        self.error = error
        self.partial = partial


class IBConnection(EWrapper, EClient):
    """
    One TWS API connection, its reader thread and its message loop thread.

    Use `open` to connect, `contract_details` and `historical_data` to ask, `close` to end.
    Every pending request fails as soon as the connection is lost or closed, so no caller
    waits longer than its own timeout.
    """

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: threading.Thread | None = None
        self.fatal: IBError | None = None
        self.notices: list[IBError] = []
        self.accounts: list[str] = []

    # -- connecting ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls, host: str, port: int, client_id: int, attempts: int, timeout_s: float
    ) -> IBConnection:
        """
        Connect, trying the next client ids while the id is taken (326).

        Each attempt uses a fresh client: a closing socket's late callbacks must not reach
        the next attempt.

        Returns
        -------
        IBConnection

        Raises
        ------
        SourceError
            ``refused``, ``timeout`` or ``client_id_in_use``, with the address in the message.

        """
        deadline = time.monotonic() + timeout_s
        where = f"IB at {host}:{port}"
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:  # ibapi would call it a refused connection
            raise SourceError(
                f"{where}: cannot resolve the host '{host}' ({e}); check `host`", status="refused"
            ) from None
        fatal: IBError | None = None
        for cid in range(client_id, client_id + attempts):
            conn = cls()
            conn._connect_once(host, port, cid, deadline)
            if conn._ready.is_set() and conn.fatal is None:
                return conn
            fatal = conn.fatal
            conn.close()
            if fatal is None or fatal.code != 326:
                break
        if fatal is not None and fatal.code == 326:
            last = client_id + attempts - 1
            raise SourceError(
                f"{where}: client ids {client_id}..{last} are all in use (IB error 326); "
                "set a free client_id",
                status="client_id_in_use",
            )
        if fatal is not None and fatal.code == 502:
            raise SourceError(f"{where}: connection refused (is TWS/Gateway running?)", "refused")
        if fatal is not None:
            raise SourceError(f"{where}: {fatal}", CONNECTION_CODES.get(fatal.code, "error"))
        raise SourceError(
            f"{where}: no answer to the API handshake within {timeout_s:.3g}s", status="timeout"
        )

    def _connect_once(self, host: str, port: int, client_id: int, deadline: float) -> None:
        # EClient.connect blocks on the handshake without a deadline of its own.
        handshake = threading.Thread(
            target=self.connect, args=(host, port, client_id), daemon=True, name="ib-handshake"
        )
        handshake.start()
        handshake.join(max(0.0, deadline - time.monotonic()))
        if handshake.is_alive():
            self._drop()
            handshake.join(2.0)
            return
        self._fast_bars()
        # Run the message loop even if the socket is already gone: it drains what arrived
        # before the close (a 326 right after START_API) and then ends.
        self._loop = threading.Thread(target=self.run, daemon=True, name="ib-message-loop")
        self._loop.start()
        while not self._ready.wait(0.02):
            if self.fatal is not None or time.monotonic() > deadline:
                self._drop()
                return
            if not self.isConnected():
                # Let the message loop deliver what came before the close (a 326, say).
                self._loop.join(1.0)
                if self.fatal is None:
                    self.fatal = IBError(-1, 504, "the gateway closed the connection")
                self._drop()
                return

    def _fast_bars(self) -> None:
        # ibapi decodes a historical answer one field at a time, with two debug-log calls per
        # field: 8 ms per 1,000 bars, the bulk of a portfolio backfill's CPU. For the text
        # protocol's message 17 (server versions 196..200) this reads the same fields into the
        # same values in one pass; other versions keep ibapi's own decoder.
        decoder = self.decoder
        version = self.serverVersion() or 0
        if (
            decoder is None
            or not MIN_SERVER_VER_HISTORICAL_DATA_END <= version < MIN_SERVER_VER_PROTOBUF
        ):
            return
        table = dict(decoder.msgId2handleInfo)
        table[IN.HISTORICAL_DATA] = HandleInfo(proc=_historical_data_msg)
        decoder.msgId2handleInfo = table

    def run(self) -> None:
        """
        The message loop: ``EClient.run``, with a message it cannot read ending the connection.

        ``EClient.run`` lets a decoding error escape its thread (a traceback on stderr, and
        the bars of the message lost without a word). Here it becomes the connection's fatal
        error, so every pending request fails with it and keeps what had arrived.
        """
        crash: IBError | None = None
        try:
            EClient.run(self)
        except Exception as e:  # whatever the decoder raised on a frame it could not read
            crash = IBError(
                -1,
                UNREADABLE,
                f"the TWS API client could not read a message from the gateway "
                f"({type(e).__name__}: {e}); the connection was closed",
            )
            with contextlib.suppress(Exception):
                EClient.disconnect(self)
        finally:
            if crash is not None and (self.fatal is None or self.fatal.code == 504):
                self.fatal = crash
            elif self.fatal is None:
                self.fatal = IBError(-1, 504, "the gateway closed the connection")
            self._fail_all(self.fatal)

    def _drop(self) -> None:
        reader, loop = self.reader, self._loop
        sock = getattr(self.conn, "socket", None)
        if sock is not None:
            # Wakes the reader thread blocked in recv at once, instead of at its 1 s timeout.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self.conn is not None:
            self.conn.disconnect()
        self.setConnState(EClient.DISCONNECTED)
        if loop is not None and loop.is_alive():
            # Message id 0, which ibapi skips: the loop sees the closed state now instead of
            # after its 0.2 s queue timeout.
            wake = b"\0\0\0\0" if (self.serverVersion() or 0) >= MIN_SERVER_VER_PROTOBUF else b"0\0"
            self.msg_queue.put(wake)
        for thread in (loop, reader):
            if thread is not None and thread is not threading.current_thread():
                thread.join(2.0)
        self._loop = None

    def close(self) -> None:
        """Disconnect, fail every pending request, and wait for the threads to end."""
        self._fail_all(IBError(-1, 504, "connection closed by the backfill"))
        self._drop()
        with contextlib.suppress(Exception):  # a half-open socket may already be gone
            self.disconnect()

    # -- requests ------------------------------------------------------------------------------

    def next_id(self) -> int:
        """Return a fresh request id."""
        return next(self._ids)

    def _register(self, req_id: int) -> Future:
        if self.fatal is not None:
            raise SourceError(str(self.fatal), CONNECTION_CODES.get(self.fatal.code, "error"))
        future: Future = Future()
        with self._lock:
            self._pending[req_id] = _Pending(future)
        return future

    def contract_details(self, contract: Contract, timeout_s: float) -> list[ContractDetails]:
        """
        Return the contract details IB has for `contract` (``reqContractDetails``).

        Raises
        ------
        RequestFailed
            On an IB error for this request.

        """
        req_id = self.next_id()
        future = self._register(req_id)
        self.reqContractDetails(req_id, contract)
        return _result(future, timeout_s)

    def send_historical(
        self,
        req_id: int,
        contract: Contract,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        format_date: int,
    ) -> Future:
        """Send ``reqHistoricalData``; the future resolves to the list of ``BarData``."""
        future = self._register(req_id)
        self.reqHistoricalData(
            req_id,
            contract,
            end,
            duration,
            bar_size,
            what_to_show,
            int(use_rth),
            format_date,
            False,
            [],
        )
        return future

    def cancel(self, req_id: int) -> list[Any]:
        """
        Cancel a historical request nobody waits for any more.

        Returns
        -------
        list
            The bars that had arrived for it.

        """
        with self._lock:
            pending = self._pending.pop(req_id, None)
        if pending is not None and self.isConnected():
            with contextlib.suppress(Exception):  # best effort on a dying connection
                self.cancelHistoricalData(req_id)
        return pending.rows if pending is not None else []

    # -- EWrapper ------------------------------------------------------------------------------

    def connectAck(self) -> None:
        # Small requests go out at once, not held back for the gateway's delayed ACK (Nagle).
        sock = getattr(self.conn, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def nextValidId(self, orderId: int) -> None:
        self._ready.set()

    def contractDetails(self, reqId: int, contractDetails: ContractDetails) -> None:
        self._add(reqId, contractDetails)

    def contractDetailsEnd(self, reqId: int) -> None:
        self._finish(reqId)

    def historicalData(self, reqId: int, bar: BarData) -> None:
        self._add(reqId, bar)

    def historical_bars(self, req_id: int, bars: list[Any]) -> None:
        """Take a whole historical answer at once: a `BarBlock` or `FastBar` s (`_fast_bars`)."""
        with self._lock:
            pending = self._pending.get(req_id)
        if pending is not None:
            pending.rows.extend(bars)

    def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
        self._finish(reqId)

    def error(
        self,
        reqId: int,
        errorTime: int,
        errorCode: int,
        errorString: str,
        advancedOrderRejectJson: str = "",
    ) -> None:
        err = IBError(reqId, errorCode, errorString.strip())
        if errorCode in INFO_CODES:
            self.notices.append(err)
            return
        if errorCode in CONNECTION_CODES:
            self.fatal = err
            self._fail_all(err)
            return
        with self._lock:
            pending = self._pending.pop(reqId, None)
        if pending is None:
            self.notices.append(err)
            return
        pending.future.set_exception(RequestFailed(err, pending.rows))

    def managedAccounts(self, accountsList: str) -> None:
        self.accounts = [a for a in accountsList.split(",") if a]

    def connectionClosed(self) -> None:
        if threading.current_thread() is self._loop:
            return  # `run` decides why, once the loop has ended
        if self.fatal is None:
            self.fatal = IBError(-1, 504, "the gateway closed the connection")
        self._fail_all(self.fatal)

    # -- helpers -------------------------------------------------------------------------------

    def _add(self, req_id: int, item: Any) -> None:
        with self._lock:
            pending = self._pending.get(req_id)
        if pending is not None:
            pending.rows.append(item)

    def _finish(self, req_id: int) -> None:
        with self._lock:
            pending = self._pending.pop(req_id, None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(pending.rows)

    def _fail_all(self, err: IBError) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(RequestFailed(err, p.rows))


def _historical_data_msg(decoder: Any, fields: Any) -> None:
    # ibapi's processHistoricalDataMsg for server versions 196..200: reqId, itemCount, then
    # per bar date, open, high, low, close, volume, wap, barCount.
    try:
        req_id = int(next(fields))
        count = int(next(fields))
    except StopIteration:
        raise BadMessage("no more fields") from None
    values = list(fields)
    if count < 0 or len(values) < 8 * count:
        raise BadMessage("no more fields")
    end = 8 * count
    try:
        # Every field of an ordinary answer is a number: one pass, no object per bar.
        numbers = np.array(list(map(float, values[:end])), dtype=np.float64)
    except ValueError:  # an empty field, a date with a time: field by field below
        pass
    else:
        table = numbers.reshape(count, 8)[:, :6].copy()
        table[np.isin(table[:, 5], _UNSET_FLOATS), 5] = _UNSET_VOLUME
        decoder.wrapper.historical_bars(req_id, [BarBlock(table)])
        return

    def price(raw: bytes) -> float:
        return float("inf") if raw == b"Infinity" else float(raw or 0)

    bars = [
        FastBar(
            d.decode("UTF-8", errors="backslashreplace"),
            price(o),
            price(h),
            price(lo),
            price(c),
            UNSET_DECIMAL if v in UNSET_VOLUMES else float(v),
        )
        for d, o, h, lo, c, v in zip(
            values[0:end:8],
            values[1:end:8],
            values[2:end:8],
            values[3:end:8],
            values[4:end:8],
            values[5:end:8],
            strict=True,
        )
    ]
    decoder.wrapper.historical_bars(req_id, bars)


def _result(future: Future, timeout_s: float) -> Any:
    try:
        return future.result(timeout=max(0.0, timeout_s))
    except TimeoutError:
        raise SourceError(f"IB did not answer within {timeout_s:.1f}s", status="timeout") from None
