"""The IB bar source: contract resolution, chunked requests under pacing, conversion."""

from __future__ import annotations

import calendar
import threading
import time
from concurrent.futures import Future
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from nautilus_backfill.errors import SourceError
from nautilus_backfill.plugins.ib.config import IBSourceConfig
from nautilus_backfill.plugins.ib.pacing import PacingLimiter
from nautilus_backfill.plugins.ib.planner import DAY, Chunk, bar_size_setting, max_duration_s, plan
from nautilus_backfill.source import (
    BAR_SCHEMA,
    BarRequest,
    BarSource,
    SourceContext,
    SourceResult,
    Span,
)
from nautilus_backfill.timeutil import format_ns
from nautilus_trader.model.enums import PriceType

NS = 1_000_000_000
WHAT_TO_SHOW = {
    PriceType.LAST: "TRADES",
    PriceType.MID: "MIDPOINT",
    PriceType.BID: "BID",
    PriceType.ASK: "ASK",
}
# How far back count mode looks for enough bars (nights, weekends, holidays) before it stops.
COUNT_LOOKBACK_FACTOR = 8
COUNT_LOOKBACK_MIN_S = 10 * DAY
COUNT_EXTRA_CHUNKS = 60  # one pacing window's worth, for small bars across a long weekend


class IBBarSource(BarSource):
    """
    Bars from TWS / IB Gateway, on a connection of the source's own.

    One connection serves every request of a backfill; requests for different instruments run
    concurrently (the orchestrator runs requests in parallel), all under one pacing limiter.

    Parameters
    ----------
    config : IBSourceConfig
        The source config.
    context : SourceContext
        Paths and the cache.

    """

    config_type: ClassVar[type] = IBSourceConfig

    def __init__(self, config: IBSourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        try:
            import ibapi  # noqa: F401
        except ImportError:
            raise SourceError(
                "the ib plugin needs the TWS API client: pip install 'nautilus-backfill[ib]'"
            ) from None
        self.config: IBSourceConfig = config
        self.limiter = PacingLimiter(config.pacing_scale)
        self._conn: Any = None
        self._conn_error: SourceError | None = None
        self._lock = threading.Lock()
        self._resolved: dict[Any, tuple[Any, Any, int]] = {}
        self._notices_seen = 0
        self.requests_sent = 0

    # -- connection ----------------------------------------------------------------------------

    def _connection(self, deadline: float) -> Any:
        from nautilus_backfill.plugins.ib.connection import IBConnection

        with self._lock:
            if self._conn_error is not None:
                raise SourceError(str(self._conn_error), self._conn_error.status)
            if self._conn is None:
                from nautilus_backfill.timeutil import parse_duration

                timeout = min(
                    parse_duration(self.config.connect_timeout), deadline - time.monotonic()
                )
                try:
                    conn = IBConnection.open(
                        self.config.host,
                        self.config.port,
                        self.config.client_id,
                        self.config.client_id_attempts,
                        timeout,
                    )
                except SourceError as e:
                    self._conn_error = e
                    raise
                self._conn = conn
            return self._conn

    def close(self) -> None:
        """Disconnect; pending requests fail at once and the client's threads end."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- fetch ---------------------------------------------------------------------------------

    def fetch(self, request: BarRequest, span: Span) -> SourceResult:
        """
        Return the bars of `span`, asking IB with the fewest requests its rules allow.

        Parameters
        ----------
        request : BarRequest
            The request.
        span : Span
            The part of the window wanted.

        Returns
        -------
        SourceResult

        Raises
        ------
        SourceError
            ``refused``, ``timeout``, ``client_id_in_use``, ``no_contract``,
            ``no_subscription``, ``disconnected``, ``pacing`` or ``error``.

        """
        # A little inside the orchestrator's timeout, so the report gets IB's own reason.
        deadline = time.monotonic() + max(0.0, self.config.timeout_s - 0.1)
        step_s = request.step_ns // NS
        try:
            bar_size = bar_size_setting(step_s)
        except ValueError as e:
            raise SourceError(f"{request.bar_type}: {e}") from None
        conn = self._connection(deadline)
        contract, instrument, magnifier = self._resolve(conn, request, deadline)
        what = self._what_to_show(request, contract)
        rows: list[tuple] = []
        notes: list[str] = []
        failure: SourceError | None = None
        try:
            for chunk in self._chunks(request, span, step_s):
                got = self._historical(conn, contract, chunk, bar_size, what, step_s, deadline)
                rows.extend(got)
                if span.limit is not None and self._count_in_span(rows, span, step_s) >= span.limit:
                    break
        except _Partial as p:
            rows.extend(p.rows)
            if not rows:
                raise p.error from None
            failure = p.error
        notes.extend(self._new_notices(conn))
        # Every row IB sent goes back, repeats and bars outside the span included: the host
        # counts each one as used or dropped under a named reason.
        table = self._table(rows, magnifier)
        notes.extend(self._repeat_notes(rows))
        return SourceResult(
            table,
            timestamp_is="open",
            price_precision=instrument.price_precision,
            size_precision=instrument.size_precision,
            instruments=[instrument],
            notes=notes,
            failure=failure,
        )

    def _chunks(self, request: BarRequest, span: Span, step_s: int) -> Any:
        # Never past the last whole bar: the bar still forming is not asked for.
        end_s = min(-(-span.end // NS), _last_close(time.time(), step_s))
        if span.start is not None:
            yield from plan(span.start // NS, end_s, step_s)
            return
        # Count mode: first the window the count fills without gaps, then further back in the
        # longest steps IB allows until enough bars came or the lookback is exhausted.
        limit = span.limit or 1
        first = plan(end_s - limit * step_s, end_s, step_s)
        yield from first
        start = first[-1].start_s
        lookback = max(COUNT_LOOKBACK_FACTOR * limit * step_s, COUNT_LOOKBACK_MIN_S)
        longest = max_duration_s(step_s)
        for _ in range(COUNT_EXTRA_CHUNKS):
            if end_s - start >= lookback:
                break
            yield Chunk(start, longest)
            start -= longest

    def _new_notices(self, conn: Any) -> list[str]:
        # Every code TWS sent reaches the report once: farm status, warnings, stray errors.
        with self._lock:
            fresh = conn.notices[self._notices_seen :]
            self._notices_seen = len(conn.notices)
        return [f"{self.config.name}: IB message {n.code}: {n.text}" for n in fresh]

    @staticmethod
    def _count_in_span(rows: list[tuple], span: Span, step_s: int) -> int:
        end = span.end // NS
        now = time.time()
        return len({r[0] for r in rows if r[0] + step_s <= end and r[0] + step_s <= now})

    def _historical(
        self,
        conn: Any,
        contract: Any,
        chunk: Chunk,
        bar_size: str,
        what: str,
        step_s: int,
        deadline: float,
    ) -> list[tuple]:
        from nautilus_backfill.plugins.ib.connection import RequestFailed

        ident = (contract.conId, chunk.end_date_time, chunk.duration, bar_size, what)
        key = (contract.conId, contract.exchange, what)
        cost = 2 if what == "BID_ASK" else 1
        daily = step_s >= DAY
        weekly = step_s == 7 * DAY
        while True:
            self.limiter.acquire(ident, key, step_s, cost, deadline)
            req_id = conn.next_id()
            try:
                future: Future = conn.send_historical(
                    req_id,
                    contract,
                    chunk.end_date_time,
                    chunk.duration,
                    bar_size,
                    what,
                    self.config.use_rth,
                    1 if daily else 2,
                )
                self.requests_sent += 1
                bars = future.result(timeout=max(0.0, deadline - time.monotonic()))
                return [_row(b, daily, weekly) for b in bars]
            except TimeoutError:
                conn.cancel(req_id)
                raise SourceError(
                    f"IB did not answer {bar_size} {what} for "
                    f"{contract.localSymbol or contract.symbol} "
                    f"within the source timeout ({self.config.timeout})",
                    status="timeout",
                ) from None
            except RequestFailed as e:
                outcome = self._on_error(e, contract, step_s, deadline)
                if outcome == "retry":
                    continue
                if outcome == "empty":
                    return [_row(b, daily, weekly) for b in e.partial]
                raise _Partial([_row(b, daily, weekly) for b in e.partial], outcome) from None
            finally:
                self.limiter.release()

    def _on_error(self, e: Any, contract: Any, step_s: int, deadline: float) -> Any:
        code, text = e.error.code, e.error.text
        name = contract.localSymbol or contract.symbol
        if code == 162 and "pacing violation" in text.lower():
            wait = 15 * self.limiter.scale
            if time.monotonic() + wait >= deadline:
                return SourceError(
                    f"IB pacing violation for {name}, no time left to retry: {e}", "pacing"
                )
            time.sleep(wait)
            return "retry"
        if code == 162 and "no data" in text.lower():
            return "empty"
        if code == 200:
            return SourceError(f"IB has no contract for {name}: {e}", status="no_contract")
        if code in (354, 10167, 10089, 10090):
            return SourceError(f"no IB market data subscription for {name}: {e}", "no_subscription")
        if code in (504, 1100, 1300):
            return SourceError(f"IB connection lost: {e}", status="disconnected")
        return SourceError(f"{name}: {e}", status="error")

    # -- contracts -----------------------------------------------------------------------------

    def _resolve(self, conn: Any, request: BarRequest, deadline: float) -> tuple[Any, Any, int]:
        from nautilus_backfill.plugins.ib.connection import RequestFailed
        from nautilus_trader.adapters.interactive_brokers.common import (
            IBContract,
            IBContractDetails,
        )
        from nautilus_trader.adapters.interactive_brokers.config import SymbologyMethod
        from nautilus_trader.adapters.interactive_brokers.parsing.instruments import (
            instrument_id_to_ib_contract,
            parse_instrument,
            possible_exchanges_for_venue,
        )

        iid = request.bar_type.instrument_id
        key = (iid, tuple(sorted((request.contract or {}).items())))
        if key in self._resolved:
            return self._resolved[key]
        symbology = SymbologyMethod(self.config.symbology)
        venue = iid.venue.value
        if request.contract:
            try:
                candidates = [IBContract(**request.contract)]
            except (TypeError, ValueError) as e:
                raise SourceError(f"backfill.requests[{request.index}].contract: {e}") from None
        else:
            try:
                candidates = [
                    instrument_id_to_ib_contract(iid, exchange, symbology)
                    for exchange in possible_exchanges_for_venue(venue)
                ]
            except Exception as e:  # the adapter's parser raises plain exceptions
                raise SourceError(
                    f"{iid}: the IB adapter's {self.config.symbology} symbology cannot express it "
                    f"({e}); give the contract in backfill.requests[{request.index}].contract",
                    status="no_contract",
                ) from None
        errors = []
        for contract in candidates:
            try:
                details = conn.contract_details(contract, deadline - time.monotonic())
            except RequestFailed as e:
                errors.append(str(e))
                if e.error.code == 200:
                    continue
                raise SourceError(f"{iid}: {e}", status="error") from None
            if not details:
                continue
            ib_details = IBContractDetails.from_contract_details(details[0])
            instrument = parse_instrument(ib_details, venue, symbology)
            if instrument.id != iid and not request.contract:
                raise SourceError(
                    f"IB resolved {iid} to {instrument.id}; set backfill.requests[{request.index}]"
                    ".contract to the contract you mean",
                    status="no_contract",
                )
            if instrument.id != iid:
                instrument = _with_id(instrument, iid)
            resolved = (ib_details.contract, instrument, ib_details.priceMagnifier or 1)
            self._resolved[key] = resolved
            return resolved
        why = "; ".join(errors) or "no contract details"
        raise SourceError(f"IB has no contract for {iid}: {why}", status="no_contract")

    def _what_to_show(self, request: BarRequest, contract: Any) -> str:
        if self.config.what_to_show:
            return self.config.what_to_show
        price_type = request.bar_type.spec.price_type
        if contract.secType == "CASH" and price_type == PriceType.LAST:
            mid = str(request.bar_type).replace("-LAST-", "-MID-")
            raise SourceError(
                f"backfill.requests[{request.index}].bar_type: IB has no TRADES for forex "
                f"({request.bar_type}); use {mid}, or set what_to_show on the source",
                status="config",
            )
        return WHAT_TO_SHOW[price_type]

    @staticmethod
    def _table(rows: list[tuple], magnifier: int) -> pa.Table:
        ts = np.fromiter((r[0] for r in rows), np.int64, len(rows)) * NS
        values = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 5)
        if magnifier > 1:  # as the adapter's ib_price_to_nautilus_price divides
            values[:, :4] /= magnifier
        arrays = [pa.array(ts), *(pa.array(values[:, i]) for i in range(5))]
        return pa.Table.from_arrays(arrays, schema=BAR_SCHEMA)

    def _repeat_notes(self, rows: list[tuple]) -> list[str]:
        # Repeats stay in the table, so the host counts them as `duplicate` and keeps the first
        # of each; the report says whether a repeat said something else.
        seen: dict[int, tuple] = {}
        same = other = 0
        example = ""
        for row in rows:
            first = seen.setdefault(row[0], row)
            if first is row:
                continue
            if first == row:
                same += 1
                continue
            other += 1
            if not example:
                example = (
                    f"first at {format_ns(row[0] * NS)}: OHLCV {list(first[1:])} then "
                    f"{list(row[1:])}"
                )
        name = self.config.name
        notes = []
        if other:
            notes.append(
                f"{name}: IB sent {other} bars twice with other values ({example}); the first of "
                "each is used and the repeats are counted as duplicate"
            )
        if same:
            notes.append(f"{name}: IB sent {same} bars twice with the same values (duplicate)")
        return notes


class _Partial(Exception):
    def __init__(self, rows: list[tuple], error: SourceError) -> None:
        super().__init__(str(error))
        self.rows = rows
        self.error = error


def _row(bar: Any, daily: bool, weekly: bool = False) -> tuple:
    ts = _utc_midnight(bar.date[:8]) if daily else int(bar.date)
    if weekly:
        # IB dates a weekly bar by its last day; it opens on that week's Monday, as the
        # adapter's `_ib_bar_to_ts_event` has it.
        ts -= time.gmtime(ts).tm_wday * 86_400
    volume = float(bar.volume)
    # IB sends -1 for the volume of quote bars; the adapter makes it 0.
    return ts, bar.open, bar.high, bar.low, bar.close, 0.0 if volume == -1 else volume


def _last_close(now_s: float, step_s: int) -> int:
    # The close of the last whole bar before `now_s`; weekly bars run Monday to Monday (the
    # epoch was a Thursday).
    shift = 4 * DAY if step_s == 7 * DAY else 0
    return int((now_s - shift) // step_s * step_s + shift)


def _utc_midnight(yyyymmdd: str) -> int:
    return calendar.timegm(time.strptime(yyyymmdd, "%Y%m%d"))


def _with_id(instrument: Any, iid: Any) -> Any:
    # An explicit contract may be requested under the bar type's own id.
    data = type(instrument).to_dict(instrument)
    data["id"] = iid.value
    return type(instrument).from_dict(data)
