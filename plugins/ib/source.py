"""The IB bar source: contract resolution, chunked requests under pacing, conversion."""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from nautilus_backfill.errors import SourceError
from nautilus_backfill.plugins.ib.config import IBSourceConfig
from nautilus_backfill.plugins.ib.pacing import (
    SMALL_BAR_S,
    PacingHistory,
    PacingLimiter,
    state_dir,
)
from nautilus_backfill.plugins.ib.planner import (
    DAY,
    Chunk,
    bar_size_setting,
    estimate,
    iter_plan,
    least_pacing_s,
    max_duration_s,
    request_count,
)
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
PACING_RETRY_S = 15.0  # IB's pause after a pacing violation (162), as its identical-request rule
CLIENT_ID_MAX = 2**31 - 1  # the TWS API sends it as a 32-bit int
RETURN_MARGIN_S = 0.2  # stop this long before a span's deadline, to build and return the answer
UNREADABLE_TS = -1  # the open time given to a bar whose date cannot be read (before 1970)


class IBBarSource(BarSource):
    """
    Bars from TWS / IB Gateway, on a connection of the source's own.

    One connection serves every request of a backfill. Spans run concurrently (the host runs
    up to `max_parallel` at once) and so do the chunks of one span, all under one pacing
    limiter that keeps at most ``max_in_flight`` requests open; each contract is looked up
    once per run.

    Parameters
    ----------
    config : IBSourceConfig
        The source config.
    context : SourceContext
        Paths and the cache.

    """

    config_type: ClassVar[type] = IBSourceConfig
    remote: ClassVar[bool] = True
    # Spans the host may fetch at once: twice IB's 50 open historical requests, so that as each
    # answer frees a slot a request with its contract resolved is waiting to go. The limiter,
    # shared by every span, holds them to ``max_in_flight`` open and to the pacing rules.
    max_parallel: ClassVar[int] = 100

    def __init__(self, config: IBSourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        try:
            import ibapi  # noqa: F401
        except ImportError:
            raise SourceError(
                "the ib plugin needs the TWS API client: pip install 'nautilus-backfill[ib]'"
            ) from None
        self.config: IBSourceConfig = config
        self.limiter = PacingLimiter(config.pacing_scale, max_open=config.max_in_flight)
        self._conn: Any = None
        self._conn_error: SourceError | None = None
        self._lock = threading.Lock()
        # One lookup per contract per run, however many requests and threads ask for it.
        self._resolved: dict[Any, Future] = {}
        self._notices_seen = 0
        self._history_noted = False
        self._where = f"{config.host}:{config.port}"
        self.requests_sent = 0

    # -- offline -------------------------------------------------------------------------------

    def check(self, requests: list[BarRequest]) -> list[str]:
        """
        Report, without connecting, what this source's config cannot do for `requests`.

        Checks the address and client ids, the timeouts, the bar sizes IB has, forex bars
        asked as trades, and request sizes: a window before 1970, or more IB requests than
        its pacing lets through within the source timeout (worked out arithmetically, so a
        request for ten billion bars costs nothing to check).

        Parameters
        ----------
        requests : list[BarRequest]
            The configured requests.

        Returns
        -------
        list[str]
            One line per problem, starting with the key it concerns.

        """
        from nautilus_backfill.timeutil import parse_duration

        cfg = self.config
        problems = []
        if not 1 <= cfg.port <= 65535:
            problems.append(f"port: must be 1..65535, was {cfg.port}")
        if not cfg.host.strip() or any(c.isspace() for c in cfg.host):
            problems.append(f"host: must be a host name or address, was '{cfg.host}'")
        last_id = cfg.client_id + cfg.client_id_attempts - 1
        if cfg.client_id < 0 or last_id > CLIENT_ID_MAX:
            problems.append(
                f"client_id: ids {cfg.client_id}..{last_id} (client_id_attempts "
                f"{cfg.client_id_attempts}) must lie in 0..{CLIENT_ID_MAX}"
            )
        for key in ("connect_timeout", "timeout"):
            if parse_duration(getattr(cfg, key)) <= 0:
                problems.append(f"{key}: must be more than 0s, was '{getattr(cfg, key)}'")
        timeout_s = cfg.timeout_s
        for request in requests:
            where = f"backfill.requests[{request.index}] ({request.bar_type})"
            step_s = request.step_ns // NS
            refused = self._refusal(request)
            if refused is not None:
                problems.append(f"{refused[0]}: {where}: {refused[1]}")
                continue
            line = self._estimate_line(request, None, self._what(request), "")
            least = estimate(
                self._window_s(request), step_s, 2 if self._what(request) == "BID_ASK" else 1
            ).least_s
            if step_s <= SMALL_BAR_S and least > timeout_s:
                problems.append(
                    f"timeout: {where}: {line}, more than the source timeout ({cfg.timeout}); "
                    "ask for less, or raise timeout and the backfill deadline (with a store, "
                    "each run keeps what it got and the next asks for the rest)"
                )
        return problems

    def _refusal(self, request: BarRequest) -> tuple[str, str] | None:
        # What makes a request impossible for IB, known offline: (config key, why).
        try:
            bar_size_setting(request.step_ns // NS)
        except ValueError as e:
            return "plugin", str(e)
        venue = request.bar_type.instrument_id.venue.value
        price_type = request.bar_type.spec.price_type
        if venue == "IDEALPRO" and price_type == PriceType.LAST and not self.config.what_to_show:
            mid = str(request.bar_type).replace("-LAST-", "-MID-")
            return "what_to_show", f"IB has no TRADES for forex; use {mid}, or set what_to_show"
        too_old = self._before_1970(request)
        if too_old:
            return "plugin", too_old
        return None

    def plan(self, request: BarRequest) -> list[str]:
        """
        Return, without connecting, what this source would ask IB for `request`.

        Parameters
        ----------
        request : BarRequest
            The request.

        Returns
        -------
        list[str]
            Human lines: the requests with their durations and bar sizes, and the least time
            IB's pacing allows for them.

        """
        step_s = request.step_ns // NS
        refused = self._refusal(request)
        if refused is not None:
            return [f"refused ({refused[0]}): {refused[1]}"]
        what = self._what(request)
        lines = [self._estimate_line(request, None, what, "")]
        if request.count is not None:
            lines.append(
                f"count mode: more requests (up to "
                f"{COUNT_EXTRA_CHUNKS} more, one at a time) when nights, weekends or holidays "
                "leave the first ones short"
            )
        if request.start_ns is not None:
            first = next(iter_plan(request.start_ns // NS, request.end_ns // NS, step_s), None)
            if first is not None:
                lines.append(
                    f"newest first, starting with endDateTime "
                    f"{first.end_date_time} UTC, durationStr {first.duration}"
                )
        lines.append(
            f"up to {self.config.max_in_flight} requests open at once; "
            "contract details asked once per contract"
        )
        return lines

    # -- connection ----------------------------------------------------------------------------

    def _connection(self, deadline: float) -> Any:
        from nautilus_backfill.plugins.ib.connection import IBConnection

        with self._lock:
            if self._conn_error is not None:
                raise SourceError(str(self._conn_error), self._conn_error.status)
            if self._conn is None:
                from nautilus_backfill.timeutil import parse_duration

                configured = parse_duration(self.config.connect_timeout)
                timeout = min(configured, deadline - time.monotonic())
                try:
                    conn = IBConnection.open(
                        self.config.host,
                        self.config.port,
                        self.config.client_id,
                        self.config.client_id_attempts,
                        timeout,
                    )
                except SourceError as e:
                    if e.status == "timeout" and timeout < configured:
                        e = SourceError(
                            f"{e} (the source's timeout or the backfill's deadline left no "
                            f"more of connect_timeout = {self.config.connect_timeout})",
                            status="timeout",
                        )
                    self._conn_error = e
                    raise e from None
                self._conn = conn
                # IB counts a gateway's requests whoever sends them: earlier runs and other
                # processes share this history.
                self.limiter.history = PacingHistory.for_gateway(
                    state_dir(self.config.pacing_state),
                    self.config.host,
                    self.config.port,
                    conn.accounts[0] if conn.accounts else None,
                    self.config.pacing_scale,
                )
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

        The requests of one span go out together, as many open at once as IB allows; bars
        that arrived before a timeout, a pacing stop or a lost connection are returned with
        the failure, so they are counted and used.

        Parameters
        ----------
        request : BarRequest
            The request.
        span : Span
            The part of the window wanted; returns before ``span.deadline`` when it is set.

        Returns
        -------
        SourceResult

        Raises
        ------
        SourceError
            ``refused``, ``timeout``, ``client_id_in_use``, ``no_contract``,
            ``no_subscription``, ``disconnected``, ``bad_message``, ``pacing`` or ``error``,
            when no bar arrived.

        """
        deadline = self._deadline(span)
        step_s = request.step_ns // NS
        try:
            bar_size = bar_size_setting(step_s)
        except ValueError as e:
            raise SourceError(f"{request.bar_type}: {e}") from None
        too_old = self._before_1970(request, span)
        if too_old:
            raise SourceError(f"{request.bar_type}: {too_old}", status="config")
        conn = self._connection(deadline)
        known = getattr(span, "instrument", None)
        contract, instrument, magnifier = self._resolve(conn, request, deadline, known)
        what = self._what_to_show(request, contract)
        download = _Download(self, conn, contract, bar_size, what, step_s, deadline)
        download.progress = span.progress
        if span.start is not None:
            download.expected = request_count((span.end - span.start) // NS, step_s)
        partial = getattr(span, "partial", None)
        carried = [False]
        if partial is not None:
            download.handover = self._handover(partial, instrument, magnifier, carried)
        failure: SourceError | None = None
        try:
            if span.start is not None:
                download.run(self._chunks(span, step_s))
            else:
                first, extra = self._count_chunks(span, step_s)
                download.run(first)
                for chunk in extra:
                    got = download.rows(handed=True)
                    if _count_in_span(got, span, step_s) >= (span.limit or 1):
                        break
                    download.run([chunk])
        except SourceError as e:
            failure = e
            if e.status == "pacing" and step_s <= SMALL_BAR_S:
                failure = SourceError(
                    f"{e}; {self._estimate_line(request, span, what, contract.symbol)}, "
                    f"{download.asked:,} sent in this run (with a store, later runs ask only "
                    "for the rest)",
                    status="pacing",
                )
        rows = download.rows()
        nothing = not len(rows) and not len(download.rows(handed=True))
        stale = _from_instrument(request, known, self.config.contract_max_age_ns)
        if (
            failure is not None
            and failure.status == "no_contract"
            and nothing
            and stale is not None
            and contract.conId == stale[0].conId
        ):
            # A stored contract IB no longer knows (its conId changed): looked up afresh, once.
            self._forget(request, contract.conId)
            return self.fetch(request, dataclasses.replace(span, instrument=None))
        notes = [*self._new_notices(conn), *self._history_notes()]
        if failure is not None and nothing:
            raise failure
        # Every row IB sent goes back, repeats and bars outside the span included: the host
        # counts each one as used or dropped under a named reason.
        table = self._table(rows, magnifier)
        notes.extend(self._repeat_notes(rows))
        return SourceResult(
            table,
            timestamp_is="open",
            price_precision=instrument.price_precision,
            size_precision=instrument.size_precision,
            instruments=[] if carried[0] else [instrument],
            notes=notes,
            failure=failure,
        )

    def _handover(
        self, partial: Callable[..., None], instrument: Any, magnifier: int, carried: list[bool]
    ) -> Callable[[_Bars, Chunk], None]:
        # Each whole chunk goes to the host as it is collected (`Span.partial`), as its own
        # answer for the chunk's window; the final answer then holds only the rest. The
        # instrument travels once: with the first piece, else with the final answer.
        def handover(rows: _Bars, chunk: Chunk) -> None:
            result = SourceResult(
                self._table(rows, magnifier),
                timestamp_is="open",
                price_precision=instrument.price_precision,
                size_precision=instrument.size_precision,
                instruments=[] if carried[0] else [instrument],
                notes=self._repeat_notes(rows),
            )
            partial(result, chunk.start_s * NS, chunk.end_s * NS)
            carried[0] = True

        return handover

    def _deadline(self, span: Span) -> float:
        # A little inside the orchestrator's timeout, so the report gets IB's own reason, and
        # before the span's deadline with time to build the answer.
        deadline = time.monotonic() + max(0.0, self.config.timeout_s - 0.1)
        if span.deadline is not None:
            deadline = min(deadline, span.deadline - RETURN_MARGIN_S)
        return deadline

    def _chunks(self, span: Span, step_s: int) -> Iterator[Chunk]:
        # Lazily: a window of millions of requests costs what is sent before the deadline.
        end_s = self._end_s(span, step_s)
        assert span.start is not None
        start_s = -(-span.start // NS)
        # Whole bars only, so chunks meet on bar edges and repeat none.
        start_s = _on_grid(start_s + step_s - 1, step_s)
        return iter_plan(start_s, end_s, step_s)

    def _count_chunks(self, span: Span, step_s: int) -> tuple[Iterator[Chunk], Iterator[Chunk]]:
        # First the window the count fills without gaps, then further back in the longest
        # steps IB allows until enough bars came or the lookback is exhausted.
        end_s = self._end_s(span, step_s)
        limit = span.limit or 1
        oldest = [end_s - limit * step_s]

        def first() -> Iterator[Chunk]:
            for chunk in iter_plan(end_s - limit * step_s, end_s, step_s):
                oldest[0] = chunk.start_s
                yield chunk

        def extra() -> Iterator[Chunk]:
            start = oldest[0]
            lookback = max(COUNT_LOOKBACK_FACTOR * limit * step_s, COUNT_LOOKBACK_MIN_S)
            longest = max_duration_s(step_s)
            for _ in range(COUNT_EXTRA_CHUNKS):
                if end_s - start >= lookback:
                    return
                yield Chunk(start, longest)
                start -= longest

        return first(), extra()

    @staticmethod
    def _window_s(request: BarRequest, span: Span | None = None) -> int:
        # The least time the window spans: count mode, the count's bars back to back.
        start = span.start if span is not None else request.start_ns
        end = span.end if span is not None else request.end_ns
        limit = span.limit if span is not None else request.count
        if start is not None:
            return max(0, (end - start) // NS)
        return (limit or 1) * (request.step_ns // NS)

    def _before_1970(self, request: BarRequest, span: Span | None = None) -> str | None:
        end = span.end if span is not None else request.end_ns
        seconds = self._window_s(request, span)
        if end // NS - seconds >= 0:
            return None
        return (
            f"the window reaches back before 1970, where IB has no bars "
            f"({self._estimate_line(request, span, self._what(request), '')}); ask for fewer "
            "bars or a later start"
        )

    def _estimate_line(self, request: BarRequest, span: Span | None, what: str, name: str) -> str:
        step_s = request.step_ns // NS
        cost = 2 if what == "BID_ASK" else 1
        subject = name or request.bar_type.instrument_id.symbol.value
        start = span.start if span is not None else request.start_ns
        count = None
        if start is None:
            count = span.limit if span is not None else request.count
        found = estimate(self._window_s(request, span), step_s, cost)
        return found.describe(what, subject, count)

    def _what(self, request: BarRequest) -> str:
        # The whatToShow without the contract (offline): forex LAST shows as TRADES here.
        return self.config.what_to_show or WHAT_TO_SHOW[request.bar_type.spec.price_type]

    @staticmethod
    def _end_s(span: Span, step_s: int) -> int:
        # Never past the last whole bar: the bar still forming is not asked for.
        # On the bar grid (days and weeks too): chunks then meet on bar edges, and no bar
        # straddles two of them (it would be outside both and lost).
        return _on_grid(min(span.end // NS, _last_close(time.time(), step_s)), step_s)

    def _history_notes(self) -> list[str]:
        history = self.limiter.history
        if history is None or history.error is None or self._history_noted:
            return []
        self._history_noted = True
        return [
            f"{self.config.name}: the pacing history could not be kept ({history.error}); "
            "set pacing_state to a writable folder"
        ]

    def _new_notices(self, conn: Any) -> list[str]:
        # Every code TWS sent reaches the report once: farm status, warnings, stray errors.
        with self._lock:
            fresh = conn.notices[self._notices_seen :]
            self._notices_seen = len(conn.notices)
        return [f"{self.config.name}: IB message {n.code}: {n.text}" for n in fresh]

    def _on_error(self, e: Any, contract: Any, step_s: int, deadline: float) -> Any:
        from nautilus_backfill.plugins.ib.connection import CONNECTION_CODES

        code, text = e.error.code, e.error.text
        name = contract.localSymbol or contract.symbol
        if code == 162 and "pacing violation" in text.lower():
            if time.monotonic() + PACING_RETRY_S * self.limiter.scale >= deadline:
                return SourceError(
                    f"IB pacing violation for {name}, no time left to retry: {e}", "pacing"
                )
            return "retry"
        if code == 162 and "no data" in text.lower():
            return "empty"
        if code == 200:
            return SourceError(f"IB has no contract for {name}: {e}", status="no_contract")
        if code in (354, 10167, 10089, 10090):
            return SourceError(f"no IB market data subscription for {name}: {e}", "no_subscription")
        if code in CONNECTION_CODES:
            status = CONNECTION_CODES[code]
            if status == "disconnected":
                return SourceError(f"IB connection lost: {e}", status="disconnected")
            return SourceError(f"IB at {self._where}: {e}", status=status)
        return SourceError(f"{name}: {e}", status="error")

    # -- contracts -----------------------------------------------------------------------------

    @staticmethod
    def _key(request: BarRequest) -> tuple:
        return request.bar_type.instrument_id, tuple(sorted((request.contract or {}).items()))

    def _forget(self, request: BarRequest, con_id: int) -> None:
        # Only the refused contract: another span may already have looked it up afresh.
        with self._lock:
            future = self._resolved.get(self._key(request))
            if future is None or not future.done() or future.exception() is not None:
                return
            if future.result()[0].conId == con_id:
                del self._resolved[self._key(request)]

    def _resolve(
        self, conn: Any, request: BarRequest, deadline: float, known: Any = None
    ) -> tuple[Any, Any, int]:
        key = self._key(request)
        with self._lock:
            future = self._resolved.get(key)
            owner = future is None
            if future is None:
                future = self._resolved[key] = Future()
        if owner:
            try:
                found = _from_instrument(request, known, self.config.contract_max_age_ns)
                future.set_result(found or self._lookup(conn, request, deadline))
            except BaseException as e:
                future.set_exception(e)
                if not (isinstance(e, SourceError) and e.status in ("no_contract", "config")):
                    with self._lock:  # a lost connection or a timeout: the next one asks again
                        self._resolved.pop(key, None)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise SourceError(
                f"IB did not answer the contract lookup for {key[0]} in time", status="timeout"
            ) from None
        except SourceError as e:  # each caller its own error, without the owner's traceback
            raise SourceError(str(e), e.status) from None

    def _lookup(self, conn: Any, request: BarRequest, deadline: float) -> tuple[Any, Any, int]:
        from nautilus_backfill.plugins.ib.connection import CONNECTION_CODES, RequestFailed
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
                if e.error.code in CONNECTION_CODES:
                    status = CONNECTION_CODES[e.error.code]
                    raise SourceError(f"IB at {self._where}: {e}", status=status) from None
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
            return ib_details.contract, instrument, ib_details.priceMagnifier or 1
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
    def _table(rows: _Bars, magnifier: int) -> pa.Table:
        values = rows.values
        if magnifier > 1:  # as the adapter's ib_price_to_nautilus_price divides
            values = values.copy()
            values[:, :4] /= magnifier
        arrays = [pa.array(rows.ts * NS), *(pa.array(values[:, i]) for i in range(5))]
        return pa.Table.from_arrays(arrays, schema=BAR_SCHEMA)

    def _repeat_notes(self, rows: _Bars) -> list[str]:
        # Repeats stay in the table, so the host counts them as `duplicate` and keeps the first
        # of each; the report says whether a repeat said something else.
        order = np.argsort(rows.ts, kind="stable")  # arrival order within one time
        ts = rows.ts[order]
        repeat = np.flatnonzero(ts[1:] == ts[:-1]) + 1
        same = other = 0
        example = ""
        if len(repeat):
            group = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]])
            first = order[group[np.searchsorted(group, repeat, side="right") - 1]]
            at = order[repeat]
            differs = np.any(rows.values[at] != rows.values[first], axis=1)
            other = int(differs.sum())
            same = len(repeat) - other
            if other:
                k = int(np.argmin(np.where(differs, at, len(rows))))  # the first to arrive
                example = (
                    f"first at {format_ns(int(rows.ts[at[k]]) * NS)}: OHLCV "
                    f"{rows.values[first[k]].tolist()} then {rows.values[at[k]].tolist()}"
                )
        name = self.config.name
        notes = []
        if other:
            notes.append(
                f"{name}: IB sent {other} bars twice with other values ({example}); which is "
                "right is unknown, so none of their rows is used (ambiguous) and the next source "
                "is asked for those bars"
            )
        if same:
            notes.append(f"{name}: IB sent {same} bars twice with the same values (duplicate)")
        return notes


class _Download:
    """
    The chunks of one span: sent together under the pacing limiter, collected in order.

    Rows are kept per chunk as they arrive, so whatever ends the download (the deadline, a
    pacing stop, a lost connection), the bars that came are still there.
    """

    def __init__(
        self,
        source: IBBarSource,
        conn: Any,
        contract: Any,
        bar_size: str,
        what: str,
        step_s: int,
        deadline: float,
    ) -> None:
        self.source, self.conn, self.contract = source, conn, contract
        self.bar_size, self.what, self.step_s, self.deadline = bar_size, what, step_s, deadline
        self.daily, self.weekly = step_s >= DAY, step_s == 7 * DAY
        self._rows: list[_Bars] = []
        self.progress: Callable[..., None] | None = None
        self.handover: Callable[[_Bars, Chunk], None] | None = None
        self._handed: set[int] = set()
        self._batches = 0
        self.asked = 0
        self.answered = 0
        self.expected = 0  # the requests the plan makes, for progress displays
        self.late = 0  # requests the deadline cut
        self.started = time.monotonic()

    def rows(self, handed: bool = False) -> _Bars:
        """
        Return the rows received so far, newest chunk first, each in arrival order.

        Parameters
        ----------
        handed : bool, default False
            Include the chunks already handed over to the host (`handover`).

        """
        return _Bars.join(
            [bars for slot, bars in enumerate(self._rows) if handed or slot not in self._handed]
        )

    def _hand_over(self, slot: int, chunk: Chunk) -> None:
        # A whole chunk to the host now (merged and written through before the call ends),
        # so a kill or the deadline cannot cost it; if the host refuses, it stays here.
        assert self.handover is not None
        try:
            self.handover(self._rows[slot], chunk)
        except Exception:  # the host's business: the rows then come with the final answer
            return
        self._handed.add(slot)

    def run(self, chunks: Iterable[Chunk]) -> None:
        """
        Send `chunks` and collect their answers; raise the first failure after collecting.

        Raises
        ------
        SourceError
            When a request failed or the deadline came; the rows stay in `rows`.

        """
        pending: Iterable[Chunk] = chunks
        while True:
            self._batches += 1
            retry, failure = self._send_and_collect(pending)
            if failure is not None:
                raise failure
            if not retry:
                return
            # 162 pacing violation: IB asks for a pause before the same requests.
            time.sleep(PACING_RETRY_S * self.source.limiter.scale)
            pending = retry

    def _send_and_collect(self, chunks: Iterable[Chunk]) -> tuple[list[Chunk], SourceError | None]:
        # Requests go out as the limiter lets them, from a thread of their own, while the
        # answers are collected (and handed over) as they come: under IB's pacing a long
        # download sends for hours, and what arrived must not wait for the last request.
        chunks = iter(chunks)
        first = next(chunks, None)
        second = next(chunks, None) if first is not None else None
        if first is None:
            return [], None
        if second is None:
            # One request (a portfolio's usual span): sent from this thread, as a thread of
            # its own per span would only compete with the answers for the interpreter.
            try:
                one = self._send(first)
            except SourceError as e:
                return [], e
            except Exception as e:
                return [], SourceError(f"sending to IB: {type(e).__name__}: {e}")
            return self._collect([first], [one])
        chunks = itertools.chain([first, second], chunks)
        sent: list[tuple[Chunk, tuple[int, int, Future, _Release]]] = []
        cond = threading.Condition()
        stop = threading.Event()
        state: dict[str, Any] = {"done": False, "failure": None}

        def send() -> None:
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    item = (chunk, self._send(chunk))
                    with cond:
                        sent.append(item)
                        cond.notify_all()
            except SourceError as e:  # the limiter: no slot or pacing window before the deadline
                state["failure"] = e
            except Exception as e:  # a send that fails must not leave the collector waiting
                state["failure"] = SourceError(f"sending to IB: {type(e).__name__}: {e}")
            finally:
                with cond:
                    state["done"] = True
                    cond.notify_all()

        sender = threading.Thread(target=send, name="ib-send", daemon=True)
        sender.start()
        retry: list[Chunk] = []
        failure: SourceError | None = None
        taken = 0
        while True:
            with cond:
                while taken == len(sent) and not state["done"]:
                    cond.wait(0.05)
                batch = sent[taken:]
                taken = len(sent)
                finished = state["done"] and not batch
            if finished:
                break
            if failure is not None:
                # After a failure the rest are still collected (their rows are kept).
                self._collect([c for c, _ in batch], [x for _, x in batch])
                continue
            more, failed = self._collect([c for c, _ in batch], [x for _, x in batch])
            retry += more
            if failed is not None:
                failure = failed
                stop.set()
        sender.join(timeout=max(0.0, self.deadline - time.monotonic()) + 1.0)
        failure = failure or state["failure"]
        if failure is not None and failure.status == "timeout" and self.late:
            failure = self._late_failure()  # counted over every batch collected
        return ([] if failure is not None else retry), failure

    def _send(self, chunk: Chunk) -> tuple[int, int, Future, _Release]:
        contract = self.contract
        ident = (contract.conId, chunk.end_date_time, chunk.duration, self.bar_size, self.what)
        key = (contract.conId, contract.exchange, self.what)
        cost = 2 if self.what == "BID_ASK" else 1
        limiter = self.source.limiter
        limiter.acquire(ident, key, self.step_s, cost, self.deadline)
        release = _Release(limiter)
        try:
            req_id = self.conn.next_id()
            future: Future = self.conn.send_historical(
                req_id,
                contract,
                chunk.end_date_time,
                chunk.duration,
                self.bar_size,
                self.what,
                self.source.config.use_rth,
                1 if self.daily else 2,
            )
        except BaseException:
            release()
            raise
        future.add_done_callback(lambda _: release())
        self.asked += 1
        self.source.requests_sent += 1
        self._rows.append(_NO_BARS)
        return len(self._rows) - 1, req_id, future, release

    def _progress(self, rows: int) -> None:
        if self.progress is None:
            return
        # Retried requests (after a pacing violation) are the same parts asked again.
        total = max(self.answered, self.expected or self.asked)
        # Under pacing the rate so far says little: the next window may be minutes away.
        pacing = least_pacing_s(total, self.step_s) * self.source.limiter.scale
        eta = max(0.0, pacing - (time.monotonic() - self.started)) if pacing else None
        with contextlib.suppress(Exception):  # a display must never fail the download
            self.progress(rows, self.answered, total, eta)

    def _collect(
        self, chunks: list[Chunk], sent: list[tuple[int, int, Future, _Release]]
    ) -> tuple[list[Chunk], SourceError | None]:
        from nautilus_backfill.plugins.ib.connection import RequestFailed

        retry: list[Chunk] = []
        failure: SourceError | None = None
        late = 0
        for chunk, (slot, req_id, future, release) in zip(chunks, sent, strict=True):
            complete = True  # IB answered for the chunk's whole window
            try:
                bars = future.result(timeout=max(0.0, self.deadline - time.monotonic()))
            except TimeoutError:
                bars = self.conn.cancel(req_id)
                if future.done() and future.exception() is None:  # answered just in time
                    bars = future.result()
                    self.answered += 1
                else:
                    complete = False
                    late += 1
                    release()  # a cancelled request's future never resolves
            except RequestFailed as e:
                bars = e.partial
                outcome = self.source._on_error(e, self.contract, self.step_s, self.deadline)
                complete = outcome == "empty"
                if outcome == "retry" and failure is None:
                    retry.append(chunk)
                elif isinstance(outcome, SourceError) and failure is None:
                    failure = outcome
            else:
                self.answered += 1
            self._rows[slot] = _Bars.of(bars, self.daily, self.weekly)
            # Here, not in the future's callback: that runs on ibapi's message loop, which must
            # not wait for a progress display.
            self._progress(len(self._rows[slot]))
            # A lone first request returns with the answer a moment later: nothing to gain.
            several = self.asked > 1 or self._batches > 1 or self.expected > 1
            if complete and self.handover is not None and several:
                self._hand_over(slot, chunk)
        self.late += late
        if late and failure is None:
            failure = self._late_failure()
        return ([] if failure is not None else retry), failure

    def _late_failure(self) -> SourceError:
        name = self.contract.localSymbol or self.contract.symbol
        return SourceError(
            f"IB did not answer {self.late} of {self.asked} requests ({self.bar_size} {self.what} "
            f"for {name}) before the deadline (source timeout "
            f"{self.source.config.timeout}); the bars that came are kept",
            status="timeout",
        )


class _Release:
    # Frees the request's slot in the limiter exactly once: on its answer, or on a cancel.
    def __init__(self, limiter: PacingLimiter) -> None:
        self._limiter = limiter
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._limiter.release()


@dataclass(frozen=True, slots=True)
class _Bars:
    """Bars as IB sent them, column-wise: open times (epoch s) and OHLCV, in arrival order."""

    ts: np.ndarray  # int64
    values: np.ndarray  # float64, (n, 5)

    def __len__(self) -> int:
        return len(self.ts)

    @staticmethod
    def join(parts: list[_Bars]) -> _Bars:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return _NO_BARS
        return _Bars(
            np.concatenate([p.ts for p in parts]), np.concatenate([p.values for p in parts])
        )

    @staticmethod
    def of(items: list[Any], daily: bool, weekly: bool) -> _Bars:
        """Read what the connection collected: `BarBlock` s, ``BarData`` or `FastBar` s."""
        from nautilus_backfill.plugins.ib.connection import BarBlock

        parts: list[_Bars] = []
        loose: list[Any] = []
        for item in [*items, None]:
            if isinstance(item, BarBlock) or item is None:
                if loose:
                    rows = [_row(b, daily, weekly) for b in loose]
                    ts = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                    values = np.array([r[1:] for r in rows], np.float64).reshape(len(rows), 5)
                    parts.append(_Bars(ts, values))
                    loose = []
                if item is not None:
                    parts.append(_Bars._of_block(item.table, daily, weekly))
            else:
                loose.append(item)
        return _Bars.join(parts)

    @staticmethod
    def _of_block(table: np.ndarray, daily: bool, weekly: bool) -> _Bars:
        dates, values = table[:, 0], table[:, 1:6].copy()
        if daily:
            ts = np.array(
                [_row_ts(f"{int(d):08d}" if np.isfinite(d) else "", daily, weekly) for d in dates],
                np.int64,
            )
        else:
            whole = np.isfinite(dates) & (dates == np.floor(dates)) & (np.abs(dates) < 2**62)
            ts = np.where(whole, dates, UNREADABLE_TS).astype(np.int64)
        values[values[:, 4] == -1, 4] = 0.0  # IB's -1 volume of quote bars, as _row has it
        return _Bars(ts, values)


_NO_BARS = _Bars(np.empty(0, np.int64), np.empty((0, 5), np.float64))


def _count_in_span(rows: _Bars, span: Span, step_s: int) -> int:
    closes = rows.ts + step_s
    keep = (closes <= span.end // NS) & (closes <= time.time())
    return len(np.unique(rows.ts[keep]))


def _row_ts(date: str, daily: bool, weekly: bool) -> int:
    # A date IB's format does not allow becomes a time no bar has: the host drops that row
    # alone, as `bad_timestamp`, and keeps the rest of the answer.
    try:
        ts = _utc_midnight(date[:8]) if daily else int(date)
    except (ValueError, OverflowError):
        return UNREADABLE_TS
    if weekly:
        # IB dates a weekly bar by its last day; it opens on that week's Monday, as the
        # adapter's `_ib_bar_to_ts_event` has it.
        ts -= time.gmtime(ts).tm_wday * 86_400
    return ts


def _row(bar: Any, daily: bool, weekly: bool = False) -> tuple:
    ts = _row_ts(bar.date, daily, weekly)
    volume = float(bar.volume)
    # IB sends -1 for the volume of quote bars; the adapter makes it 0.
    return ts, bar.open, bar.high, bar.low, bar.close, 0.0 if volume == -1 else volume


def _from_instrument(
    request: BarRequest, instrument: Any, max_age_ns: int | None
) -> tuple[Any, Any, int] | None:
    # An instrument the IB adapter made (cached, or stored by an earlier run) carries the IB
    # contract in its `info`, as the adapter's data client reads it back: no lookup needed,
    # while it is younger than `max_age_ns` (tick sizes and contracts do change).
    if instrument is None or request.contract or instrument.id != request.bar_type.instrument_id:
        return None
    age = time.time_ns() - int(instrument.ts_init)
    if max_age_ns is None or not 0 <= age <= max_age_ns:  # a future stamp proves no age
        return None
    info = getattr(instrument, "info", None)
    if not isinstance(info, dict):
        return None
    contract = info.get("contract")
    if not isinstance(contract, dict) or not contract.get("conId"):
        return None
    from nautilus_trader.adapters.interactive_brokers.common import IBContract

    try:
        ib_contract = IBContract(**contract)
        magnifier = int(info.get("priceMagnifier") or 1)
    except Exception:  # another adapter version's fields: look it up instead
        return None
    return ib_contract, instrument, max(1, magnifier)


def _last_close(now_s: float, step_s: int) -> int:
    # The close of the last whole bar before `now_s`.
    return _on_grid(int(now_s), step_s)


def _on_grid(t_s: int, step_s: int) -> int:
    # The bar edge at or before `t_s`: weekly bars run Monday to Monday (the epoch was a
    # Thursday), daily ones from 00:00 UTC, the rest from the epoch.
    shift = 4 * DAY if step_s == 7 * DAY else 0
    return (t_s - shift) // step_s * step_s + shift


def _utc_midnight(yyyymmdd: str) -> int:
    return calendar.timegm(time.strptime(yyyymmdd, "%Y%m%d"))


def _with_id(instrument: Any, iid: Any) -> Any:
    # An explicit contract may be requested under the bar type's own id.
    data = type(instrument).to_dict(instrument)
    data["id"] = iid.value
    return type(instrument).from_dict(data)
