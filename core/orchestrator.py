"""The backfill pipeline: fetch, validate, dedupe, merge, inject."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import portion as P
from nautilus_backfill.aggregate import (
    AggregationOptions,
    aggregate,
    composite_bars,
    interval_ns,
    live_delay_note,
    options_of,
    source_bar_type,
    source_bars_needed,
)
from nautilus_backfill.answer import conform
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.config import BackfillConfig, BarRequestConfig, SourceConfig, load_config
from nautilus_backfill.convert import to_bars
from nautilus_backfill.errors import InsufficientHistoryError, SourceError, describe
from nautilus_backfill.inject import cache_of, fit_to_cache
from nautilus_backfill.merge import Layered
from nautilus_backfill.planning import check_sources, plan_requests
from nautilus_backfill.progress import Progress, ProgressTracker
from nautilus_backfill.registry import SourceRegistry, default_registry
from nautilus_backfill.report import (
    BackfillReport,
    CompositeReport,
    RequestReport,
    SourceAttempt,
    log_progress,
    log_report,
)
from nautilus_backfill.runner import call_with_timeout
from nautilus_backfill.source import BarRequest, BarSource, SourceContext, SourceResult, Span
from nautilus_backfill.store import BarStore, StoreSource, redact
from nautilus_backfill.timeutil import (
    bar_step_ns,
    format_age,
    format_ns,
    now_ns,
    parse_duration,
    parse_time,
)
from nautilus_backfill.validate import validate
from nautilus_backfill.warmup import WarmUp
from nautilus_backfill.windows import answered_for, gaps, trusted
from nautilus_trader.common.component import Logger
from nautilus_trader.model.data import Bar, BarType


@dataclass
class FetchResult:
    """
    The bars a backfill produced, per bar type, and its report.

    Parameters
    ----------
    bars : dict[BarType, list[Bar]]
        Sorted bars per bar type, ready for ``Cache.add_bars``.
    report : BackfillReport
        What happened.
    instruments : list
        Instruments the sources resolved.

    """

    bars: dict[BarType, list[Bar]]
    report: BackfillReport
    instruments: list[Any] = field(default_factory=list)


@dataclass
class _Precision:
    price: int | None = None
    size: int | None = None


@dataclass
class _Work:
    # One request on its way through the stages.
    req: BarRequest
    cfg: BarRequestConfig
    report: RequestReport
    target: BarType | None = None  # the composite bar type, aggregated from req's bars
    layered: Layered = field(default_factory=Layered)
    precision: _Precision = field(default_factory=_Precision)
    instruments: list[Any] = field(default_factory=list)
    # Answers of one request can arrive from several threads (spans, partial pieces).
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Per source index, the open times of bars rounded to the precision.
    rounded_at: dict[int, list[np.ndarray]] = field(default_factory=dict)
    done: bool = False  # complete before the last stage: finished while the others run
    cached: Any = None  # the request's instrument in the node's cache

    def instrument(self) -> Any:
        """The request's instrument as far as known: the node's cache, else an earlier source."""
        if self.cached is not None:
            return self.cached
        iid = self.req.bar_type.instrument_id
        found = [i for i in self.instruments if i.id == iid]
        return found[-1] if found else None

    @classmethod
    def of(
        cls, cfg: BarRequestConfig, index: int, now: int, attempts: list[SourceAttempt]
    ) -> _Work:
        req = build_request(cfg, index, now)
        bar_type = BarType.from_str(cfg.bar_type)
        report = RequestReport(cfg.bar_type, req.count, sources=attempts)
        if not bar_type.is_composite():
            return cls(req, cfg, report)
        report.composite = CompositeReport(str(bar_type.standard()), cfg.bars)
        return cls(req, cfg, report, target=bar_type)


def build_request(cfg: BarRequestConfig, index: int, now: int | None = None) -> BarRequest:
    """
    Turn a request config into the parsed form sources receive.

    Parameters
    ----------
    cfg : BarRequestConfig
        The config.
    index : int
        Its position in the config.
    now : int, optional
        The time `end` defaults to (UNIX ns).

    Returns
    -------
    BarRequest
        For a composite bar type, the request for its source bars (in count mode, as many as
        the composite bars need).

    """
    bar_type = BarType.from_str(cfg.bar_type)
    end = parse_time(cfg.end) if cfg.end is not None else (now if now is not None else now_ns())
    start = parse_time(cfg.start) if cfg.start is not None else None
    count = cfg.bars
    if bar_type.is_composite():
        # Sources are asked for the bars the composite ones are aggregated from.
        target, bar_type = bar_type, source_bar_type(bar_type)
        if count is not None:
            count = source_bars_needed(count, interval_ns(target), bar_step_ns(bar_type))
    return BarRequest(bar_type, bar_step_ns(bar_type), end, start, count, index, cfg.contract)


class Backfill:
    """
    Fetch bars from sources in priority order and put them in a NautilusTrader cache.

    Parameters
    ----------
    config : BackfillConfig
        The configuration.
    registry : SourceRegistry, optional
        The source plugins; the default plugin manager's when omitted.

    """

    def __init__(self, config: BackfillConfig, registry: SourceRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or default_registry()
        for i, source in enumerate(config.sources):
            self.registry.get(source.plugin, key_path=f"backfill.sources[{i}].plugin")

    @classmethod
    def from_toml(cls, path: str | Path, registry: SourceRegistry | None = None) -> Backfill:
        """
        Load a backfill from a TOML file.

        Parameters
        ----------
        path : str | Path
            The file.
        registry : SourceRegistry, optional
            The source plugins.

        Returns
        -------
        Backfill

        Raises
        ------
        ConfigError
            If the file is invalid.

        """
        registry = registry or default_registry()
        return cls(load_config(path, registry=registry), registry=registry)

    def check(self) -> list[str]:
        """
        Return the problems that can be found without any network, one line each.

        Every source's ``check`` is asked about every request (missing files, columns the
        header lacks, values out of range); each line starts with the key path.

        Returns
        -------
        list[str]

        """
        now = now_ns()
        requests = [build_request(cfg, i, now) for i, cfg in enumerate(self.config.requests)]
        return check_sources(self.config, self.registry, requests)

    def remote_plan(self) -> list[str]:
        """
        Return what the network sources would be asked for, one line each, without connecting.

        ``inject(node)`` logs these lines and the CLI's ``fetch`` prints them before a
        download starts, so a long one (months of IB bars under pacing) says so up front.

        Returns
        -------
        list[str]

        """
        remote = {s.name for s in self.config.sources if self.registry.get(s.plugin).remote}
        return [
            f"{row['bar_type']}: {source['name']}: {line.removeprefix(source['name'] + ': ')}"
            for row in self.plan()
            for source in row["sources"]
            if source["name"] in remote
            for line in source["lines"][:1]
        ]

    def plan(self) -> list[dict[str, Any]]:
        """
        Return what a fetch would ask each source for, without any network.

        Returns
        -------
        list[dict[str, Any]]
            Per request: ``bar_type``, ``window`` and ``sources``, each source with its
            ``name`` and the ``lines`` it plans.

        """
        now = now_ns()
        requests = [build_request(cfg, i, now) for i, cfg in enumerate(self.config.requests)]
        store, _ = self._open_store(SourceContext(Path(self.config.base_dir or "."), None))
        return plan_requests(self.config, self.registry, requests, store)

    # -- pipeline ------------------------------------------------------------------------------

    def fetch(
        self,
        cache: Any = None,
        on_request_done: Callable[[RequestReport], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        aggregation: AggregationOptions | None = None,
    ) -> FetchResult:
        """
        Run fetch, validate, dedupe and merge for every request, and convert to bars.

        Parameters
        ----------
        cache : Cache, optional
            The cache the bars are meant for: gives instruments and precisions, and the bar
            capacity and bars already there are taken into account.
        on_request_done : Callable[[RequestReport], None], optional
            Called as each request finishes.
        on_progress : Callable[[Progress], None], optional
            Called from any thread as calls finish and rows arrive, with the stage's counts and
            an estimate of the time left.
        aggregation : AggregationOptions, optional
            How composite bar types are aggregated; ``[backfill.aggregation]`` (or
            NautilusTrader's defaults) when omitted. ``inject(node)`` passes the node's.

        Returns
        -------
        FetchResult

        """
        started = time.monotonic()
        deadline_at = started + self.config.deadline_s
        now = now_ns()
        context = SourceContext(Path(self.config.base_dir or "."), cache)
        store, store_error = self._open_store(context)
        sources, source_errors = self._open_sources(context, store, store_error)
        work = [
            _Work.of(cfg, i, now, self._attempts()) for i, cfg in enumerate(self.config.requests)
        ]
        options = aggregation or self.config.aggregation or AggregationOptions()
        for w in work:
            w.precision = _precision(w.req, w.cfg, cache)
            if cache is not None:
                w.cached = cache.instrument(w.req.bar_type.instrument_id)
        writers = np.array(
            [
                i
                for i, (cfg, src) in enumerate(zip(self._source_configs(), sources, strict=True))
                if src is not None
                and not isinstance(src, StoreSource)
                and self._writes_back(cfg, src)
            ],
            dtype=np.int64,
        )
        results: dict[int, tuple[BarType, list[Bar]]] = {}
        composite: dict[int, tuple[BarType, list[Bar]]] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(8, len(work))))
        futures: dict[Any, _Work] = {}
        try:

            def finish(w: _Work) -> None:
                if store is not None:
                    self._write_through(w, store, deadline_at, writers)
                results[w.req.index] = (w.req.bar_type, self._finish(w, cache))
                if w.target is not None:
                    composite[w.req.index] = (
                        w.target.standard(),
                        self._aggregate(w, options, cache),
                    )
                if on_request_done is not None:
                    on_request_done(w.report)

            def complete(w: _Work) -> None:
                # Bars become `Bar` s while other requests still wait for their answers.
                futures[pool.submit(finish, w)] = w

            # Fetch, validate, dedupe, merge: one stage per source, in priority order, each
            # asked only for what the sources before it left missing.
            for i, source in enumerate(sources):
                self._stage(
                    i, source, source_errors[i], work, deadline_at, on_progress, store, complete
                )
            for w in work:
                if not w.done:
                    complete(w)
            for future in list(futures):
                e = future.exception()
                if e is not None:  # never expected: keep the other requests' bars
                    futures[future].report.error = f"{type(e).__name__}: {e}"
        finally:
            pool.shutdown(wait=True)
            for source in sources:
                if source is not None:
                    with contextlib.suppress(Exception):  # closing must never fail the backfill
                        source.close()
        reports = [w.report for w in work]
        report = BackfillReport(reports, time.monotonic() - started, self.config.on_insufficient)
        bars = {bt: b for _, (bt, b) in sorted(results.items()) if b}
        bars.update({bt: b for _, (bt, b) in sorted(composite.items()) if b})
        # One per id, the newest: a fresh lookup supersedes an instrument stored earlier.
        newest: dict[str, Any] = {}
        for i in (i for w in work for i in w.instruments):
            if str(i.id) not in newest or i.ts_init > newest[str(i.id)].ts_init:
                newest[str(i.id)] = i
        instruments = list(newest.values())
        return FetchResult(bars, report, instruments)

    def inject(self, target: Any) -> BackfillReport:
        """
        Fetch and add the bars (and resolved instruments) to a cache or a built node.

        With a node, the report goes to the node's log, and unless ``warm_up = false`` every
        actor and strategy that registers indicators for a backfilled bar type has them fed
        the cached bars right after its ``on_start`` (see `nautilus_backfill.warmup`). Call it
        between ``node.build()`` and ``node.run()``; it returns within the deadline whatever
        the sources do, so the node starts (cold, with a warning, if nothing came).

        Parameters
        ----------
        target : Cache | TradingNode
            The cache, or a built node whose cache is used.

        Returns
        -------
        BackfillReport

        Raises
        ------
        InsufficientHistoryError
            If ``on_insufficient = "fail"`` and a request got fewer bars than it wanted (the
            bars that did come are in the cache).

        """
        cache = cache_of(target)
        node = target if hasattr(target, "trader") and hasattr(target, "kernel") else None
        options = None
        if node is not None:
            log = Logger("Backfill")
            for line in self.remote_plan():
                log.info(f"plan: {line}")
        composite = any(BarType.from_str(r.bar_type).is_composite() for r in self.config.requests)
        if node is not None and composite:
            options = options_of(node)
        result = self.fetch(
            cache=cache,
            on_progress=log_progress() if node is not None else None,
            aggregation=options,
        )
        if options is not None:
            for r in result.report.requests:
                if r.composite is not None:
                    r.composite.note = live_delay_note(options, BarType.from_str(r.bar_type))
        for instrument in result.instruments:
            if cache.instrument(instrument.id) is None:
                cache.add_instrument(instrument)
        for bars in result.bars.values():
            cache.add_bars(bars)
        if node is not None:
            log_report(result.report)
            if self.config.warm_up:
                WarmUp.of(node).add(
                    t
                    for r in self.config.requests
                    for t in _injected_types(BarType.from_str(r.bar_type))
                )
        if not result.report.ok:
            raise InsufficientHistoryError(result.report)
        return result.report

    # -- stages --------------------------------------------------------------------------------

    def _source_configs(self) -> list[SourceConfig]:
        store = [SourceConfig(name="store", plugin="store")] if self.config.store else []
        return [*store, *self.config.sources]

    def _attempts(self) -> list[SourceAttempt]:
        return [SourceAttempt(s.name, s.plugin) for s in self._source_configs()]

    def _open_store(self, context: SourceContext) -> tuple[StoreSource | None, str | None]:
        # A store that cannot be opened (a driver, credentials) costs its part, not the start.
        if self.config.store is None:
            return None, None
        url = self.config.store
        options = dict(self.config.store_options or {})
        if "://" not in url:
            url = str(context.resolve(url))
        try:
            return StoreSource(BarStore(url, options), context), None
        except Exception as e:
            return None, redact(f"cannot open {url}: {describe(e)}", options, url)

    def _open_sources(
        self, context: SourceContext, store: StoreSource | None, store_error: str | None
    ) -> tuple[list[BarSource | None], list[str | None]]:
        configured = self.config.store is not None
        sources: list[BarSource | None] = [store] if configured else []
        errors: list[str | None] = [store_error] if configured else []
        for cfg in self.config.sources:
            try:
                sources.append(self.registry.get(cfg.plugin)(cfg, context))
                errors.append(None)
            except Exception as e:
                sources.append(None)
                errors.append(describe(e))
        return sources, errors

    def _stage(
        self,
        index: int,
        source: BarSource | None,
        open_error: str | None,
        work: list[_Work],
        deadline_at: float,
        on_progress: Callable[[Progress], None] | None = None,
        store: StoreSource | None = None,
        complete: Callable[[_Work], None] | None = None,
    ) -> None:
        src_cfg = self._source_configs()[index]
        calls: list[tuple[_Work, Span]] = []
        open_calls: dict[int, int] = {}
        for w in work:
            if w.done:
                continue
            attempt = w.report.sources[index]
            spans = w.layered.missing(w.req)
            if not spans:
                attempt.status = "not_needed"
            elif source is None:
                attempt.status, attempt.error = "error", open_error
            else:
                calls.extend((w, span) for span in spans)
                open_calls[id(w)] = len(spans)
        if source is None or not calls:
            return
        tracker = ProgressTracker(src_cfg.name, len(calls), on_progress)
        later = range(index + 1, len(self._source_configs()))

        def settle(call: tuple[_Work, Span], outcome: Any, elapsed: float) -> None:
            # Each answer is validated and merged as it comes, while later calls still wait
            # (for pacing, for the network); every answer is taken, also after another span
            # of the same request failed: its rows are counted.
            w, span = call
            with w.lock:
                attempt = w.report.sources[index]
                attempt.elapsed_s += elapsed
                if not (isinstance(outcome, SourceError) and outcome.status == "not_asked"):
                    attempt.calls += 1
                self._take(w, index, src_cfg, source, span, outcome)
                open_calls[id(w)] -= 1
                if open_calls[id(w)]:
                    return
                if attempt.status == "not_needed":
                    attempt.status = "ok" if attempt.received else "empty"
                if complete is not None and not w.layered.missing(w.req):
                    # Nothing is missing: the later stages would only mark it not needed.
                    for j in later:
                        w.report.sources[j].status = "not_needed"
                    w.done = True
                    complete(w)

        self._ask(source, src_cfg, calls, deadline_at, tracker, store, settle)

    def _ask(
        self,
        source: BarSource,
        src_cfg: SourceConfig,
        calls: list[tuple[_Work, Span]],
        deadline_at: float,
        tracker: ProgressTracker,
        store: StoreSource | None,
        settle: Callable[[tuple[_Work, Span], Any, float], None],
    ) -> None:
        # Each call runs under its own timeout, `max_parallel` at a time; a call the deadline
        # leaves no time for is not made. `settle` takes each answer as it comes.
        def one(call: tuple[_Work, Span]) -> None:
            w, span = call
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                tracker.call_done()
                settle(call, SourceError("the deadline had passed", status="not_asked"), 0.0)
                return
            timeout = min(src_cfg.timeout_s, remaining)
            reported = [0]
            key = id(call)

            def rows(
                n: int, done: int | None = None, total: int | None = None, eta: float | None = None
            ) -> None:
                reported[0] += n
                tracker.rows(n, key, done, total, eta)

            open_ = [True]

            def partial(result: SourceResult, start: int, end: int) -> None:
                with w.lock:
                    if not open_[0]:  # a call abandoned at its timeout hands over nothing more
                        return
                    self._piece(w, src_cfg, source, result, (start, end), store, deadline_at)

            span = replace(
                span,
                deadline=time.monotonic() + timeout,
                progress=rows,
                partial=partial,
                instrument=w.instrument(),
            )
            started = time.monotonic()
            try:
                raw: Any = call_with_timeout(
                    lambda: source.fetch(w.req, span), timeout, name=src_cfg.name
                )
            except Exception as e:
                raw = e
            with w.lock:
                open_[0] = False
            elapsed = time.monotonic() - started
            settle(call, raw, elapsed)
            tracker.rows(_rows_of(raw) - reported[0])
            tracker.call_done()

        if type(source).fetch_many is not BarSource.fetch_many:
            answers = self._ask_batch(source, src_cfg, calls, deadline_at)
            for call, (raw, elapsed) in zip(calls, answers, strict=True):
                settle(call, raw, elapsed)
                tracker.rows(_rows_of(raw))
                tracker.call_done()
            return
        workers = max(1, min(len(calls), _parallel(source)))
        if workers == 1:
            for c in calls:
                one(c)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=src_cfg.name) as pool:
            for future in [pool.submit(one, c) for c in calls]:
                future.result()

    def _piece(
        self,
        w: _Work,
        src_cfg: SourceConfig,
        source: BarSource,
        result: Any,
        interval: tuple[int, int],
        store: StoreSource | None,
        deadline_at: float,
    ) -> None:
        # A piece a source handed over before its call returned: merged now, and written
        # through now, so a kill or the deadline cannot cost it.
        index = self._source_configs().index(src_cfg)
        attempt = w.report.sources[index]
        answer = conform(result)
        if answer.result is None:
            attempt.received += answer.rows
            w.report.dropped["bad_answer"] += answer.rows
            attempt.notes.append(f"a partial answer was refused: {answer.error}")
            return
        piece = Span(int(interval[0]), int(interval[1]))
        w.instruments.extend(answer.result.instruments)
        attempt.notes.extend(answer.result.notes)
        unsure = self._accept(w, src_cfg, index, piece, answer.result)
        if store is None or not self._writes_back(src_cfg, source):
            return
        answered = answered_for(piece, answer.result, w.req.step_ns) - unsure
        w.layered.answered |= answered
        bars, origin = w.layered.bars, w.layered.origin
        mine = (bars.ts_open >= piece.start) & (bars.ts_open + w.req.step_ns <= piece.end)
        mine &= (origin == index) & (bars.ts_open + w.req.step_ns <= now_ns())
        answered = trusted(w.req, answered, bars, origin == index)
        self._store_write(w, store, deadline_at, bars.take(np.flatnonzero(mine)), answered)

    def _coarser(self, w: _Work, result: SourceResult, attempt: SourceAttempt) -> bool:
        # Bars stored at fewer decimals than the request needs are not these bars: 1220161 is
        # not 1220161.4152. They cover nothing, and the sources are asked.
        coarse = [
            f"{what} precision {got} (the request needs {want})"
            for what, got, want in (
                ("price", result.price_precision, w.precision.price),
                ("size", result.size_precision, w.precision.size),
            )
            if got is not None and want is not None and got < want
        ]
        if not coarse:
            return False
        rows = result.table.num_rows
        attempt.received += rows
        w.report.dropped["store_precision"] += rows
        attempt.notes.append(
            f"stored at {' and '.join(coarse)}: not used, the sources are asked; "
            "remove this bar type's folder from the store to store it anew"
        )
        return True

    def _ask_batch(
        self,
        source: BarSource,
        src_cfg: SourceConfig,
        calls: list[tuple[_Work, Span]],
        deadline_at: float,
    ) -> list[tuple[Any, float]]:
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            return [(SourceError("the deadline had passed", status="not_asked"), 0.0)] * len(calls)
        timeout = min(src_cfg.timeout_s, remaining)
        at = time.monotonic() + timeout
        pairs = [
            (w.req, replace(span, deadline=at, instrument=w.instrument())) for w, span in calls
        ]
        started = time.monotonic()
        try:
            answers = call_with_timeout(
                lambda: source.fetch_many(pairs), timeout, name=src_cfg.name
            )
            if not isinstance(answers, list) or len(answers) != len(calls):
                got = len(answers) if isinstance(answers, list) else type(answers).__name__
                raise SourceError(
                    f"plugin '{src_cfg.plugin}' broke the contract: fetch_many returned {got} "
                    f"answers for {len(calls)} calls"
                )
        except Exception as e:
            answers = [e] * len(calls)
        elapsed = (time.monotonic() - started) / len(calls)
        return [(a, elapsed) for a in answers]

    def _take(
        self,
        w: _Work,
        index: int,
        src_cfg: SourceConfig,
        source: BarSource,
        span: Span,
        outcome: Any,
    ) -> None:
        attempt = w.report.sources[index]

        def fail(status: str, error: str) -> None:
            if attempt.status in ("not_needed", "ok"):  # the first failure is the one to fix
                attempt.status, attempt.error = status, error

        if isinstance(outcome, SourceError):
            fail(outcome.status, str(outcome))
            return
        if isinstance(outcome, Exception):  # a plugin bug fails the source, not the node
            fail("error", f"plugin '{src_cfg.plugin}' raised {type(outcome).__name__}: {outcome}")
            return
        answer = conform(outcome)
        if answer.result is None:
            attempt.received += answer.rows
            w.report.dropped["bad_answer"] += answer.rows
            fail("error", f"plugin '{src_cfg.plugin}' broke the contract: {answer.error}")
            return
        result = answer.result
        w.instruments.extend(result.instruments)
        attempt.notes.extend(result.notes)
        if isinstance(source, StoreSource) and self._coarser(w, result, attempt):
            return
        unsure = self._accept(w, src_cfg, index, span, result)
        if result.failure is not None:
            fail(result.failure.status, str(result.failure))
            return
        if isinstance(source, StoreSource):
            w.layered.coverage |= source.answered(w.req)
        elif (
            attempt.status != "invalid"
            and w.report.error is None
            and self._writes_back(src_cfg, source)
        ):
            w.layered.answered |= answered_for(span, result, w.req.step_ns) - unsure

    def _writes_back(self, cfg: SourceConfig, source: BarSource) -> bool:
        return cfg.write_back if cfg.write_back is not None else type(source).remote

    def _accept(
        self,
        w: _Work,
        src_cfg: SourceConfig,
        index: int,
        span: Span,
        result: SourceResult,
    ) -> P.Interval:
        # Returns the bar intervals the answer left open (bars it gave twice with different
        # values): not answered, so the next source is asked for them.
        req, cfg, precision, layered, report = w.req, w.cfg, w.precision, w.layered, w.report
        attempt = report.sources[index]
        rows = result.table.num_rows
        attempt.received += rows
        if precision.price is None:
            precision.price = result.price_precision
        if precision.size is None:
            precision.size = result.size_precision
        if not rows:
            return P.empty()
        if precision.price is None or precision.size is None:
            report.dropped["no_precision"] += rows
            missing = "price_precision" if precision.price is None else "size_precision"
            report.error = (
                f"no {missing} for {req.bar_type}: set backfill.requests[{req.index}].{missing} "
                "or add the instrument to the cache"
            )
            return P.empty()
        assert precision.price is not None and precision.size is not None

        def checks(table: Any) -> list[dict[str, Any]]:
            masks, notes = self.registry.validate_bars(
                request=req, source=src_cfg.name, table=table
            )
            attempt.notes.extend(notes)
            return masks

        checked = validate(
            result,
            req,
            span,
            precision.price,
            precision.size,
            cfg.allow_non_positive_prices,
            # The hook's table costs a copy of every valid bar: built only for a plugin.
            extra_checks=checks if self.registry.checks_bars() else None,
        )
        report.dropped.update(checked.dropped)
        report.examples.extend(f"{src_cfg.name}: {e}" for e in checked.examples)
        if src_cfg.strict and checked.invalid:
            attempt.status = "invalid"
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(checked.dropped.items()))
            attempt.error = f"strict source rejected: {reasons}"
            report.dropped["source_rejected"] += len(checked.bars)
            return P.empty()
        if checked.rounded:
            w.rounded_at.setdefault(index, []).append(checked.rounded_at)
        # The store's bars may have holes only its record of answered intervals can tell.
        cover = not (self.config.store is not None and index == 0)
        report.dropped.update(layered.add(checked.bars, index, req.step_ns, span, cover))
        report.dropped = +report.dropped
        unsure = P.empty()
        for t in checked.ambiguous_at.tolist():
            unsure |= P.closedopen(t, t + req.step_ns)
        layered.coverage -= unsure
        return unsure

    def _write_through(
        self,
        w: _Work,
        store: StoreSource,
        deadline_at: float,
        writers: np.ndarray,
    ) -> None:
        req, layered, precision, report = w.req, w.layered, w.precision, w.report
        instruments = w.instruments
        # What the sources that write back (not the store) returned and validated, never a
        # bar still forming.
        fresh = np.isin(layered.origin, writers)
        complete = layered.bars.ts_open + req.step_ns <= now_ns()
        keep = np.flatnonzero(fresh & complete)
        if precision.price is None or precision.size is None:
            return
        if not len(keep) and layered.answered.empty:
            return
        answered = trusted(req, layered.answered, layered.bars, fresh)
        if not self._store_write(w, store, deadline_at, layered.bars.take(keep), answered):
            return
        try:
            if self.config.keep is not None:
                cutoff = now_ns() - int(parse_duration(self.config.keep) * 1e9)
                store.store.trim(str(req.bar_type), req.step_ns, cutoff)
            store.store.write_instruments(
                [i for i in instruments if i.id == req.bar_type.instrument_id]
            )
        except Exception as e:  # a store that cannot be written must not cost the warm start
            report.examples.append(store.store.redacted(f"store: not written: {describe(e)}"))
        finally:
            report.sources[0].notes.extend(store.store.take_notes())

    def _store_write(
        self,
        w: _Work,
        store: StoreSource,
        deadline_at: float,
        bars: BarArrays,
        answered: P.Interval,
    ) -> bool:
        precision = w.precision
        if precision.price is None or precision.size is None:
            return False
        # Another node writing the same bar type must not hold this start past its deadline.
        store.store.lock_wait_s = max(0.0, deadline_at - time.monotonic() - 1.0)
        try:
            w.report.stored += store.store.write(
                str(w.req.bar_type),
                w.req.step_ns,
                bars.ts_open,
                bars.values(),
                precision.price,
                precision.size,
                answered,
            )
        except Exception as e:  # a store that cannot be written must not cost the warm start
            w.report.examples.append(store.store.redacted(f"store: not written: {describe(e)}"))
            return False
        finally:
            # What the store found or did while writing (files quarantined, bars not storable).
            w.report.sources[0].notes.extend(store.store.take_notes())
        return True

    def _finish(self, w: _Work, cache: Any) -> list[Bar]:
        req, cfg, layered, precision, report = w.req, w.cfg, w.layered, w.precision, w.report
        trimmed = layered.trim(req)
        if trimmed:
            report.dropped["outside_window"] += trimmed
        report.gaps = gaps(layered.missing(req), layered.bars, req.step_ns)
        bars, origin = layered.bars, layered.origin
        if cache is not None and len(bars):
            keep, drops, error = fit_to_cache(
                cache,
                req,
                bars,
                cfg.ts_event,
                self.config.on_capacity,
            )
            report.dropped.update(drops)
            if error:
                report.error = error
            if len(keep) < len(bars):
                bars, origin = bars.take(keep), origin[keep]
        out: list[Bar] = []
        if len(bars):
            # Bars only get past validation once both precisions are known.
            assert precision.price is not None and precision.size is not None
            try:
                out = to_bars(
                    bars, req.bar_type, req.step_ns, precision.price, precision.size, cfg.ts_event
                )
            except Exception as e:  # validation should prevent it; never count such bars injected
                report.dropped["not_converted"] += len(bars)
                report.error = f"converting to Bar: {type(e).__name__}: {e}"
                bars, origin = bars.take(slice(0, 0)), origin[:0]
        if cfg.end is None and len(bars):
            report.stale = self._staleness(req, cfg, int(bars.ts_open[-1]) + req.step_ns)
        # Rounded bars are counted among those injected only, never among dropped ones.
        for i, parts in w.rounded_at.items():
            mine = bars.ts_open[origin == i]
            report.rounded += int(np.isin(mine, np.concatenate(parts)).sum())
        used = np.bincount(origin.astype(np.int64), minlength=len(report.sources))
        for i, attempt in enumerate(report.sources):
            attempt.used = int(used[i])
        report.injected = len(out)
        if not out:
            return []
        report.first, report.last = out[0].ts_event, out[-1].ts_event
        return out

    def _aggregate(self, w: _Work, options: AggregationOptions, cache: Any) -> list[Bar]:
        # Composite bars from the merged source bars, as the live aggregator would build them.
        assert w.target is not None and w.report.composite is not None
        report, bars, precision = w.report.composite, w.layered.bars, w.precision
        if not len(bars) or precision.price is None or precision.size is None:
            return []
        try:
            built, drops = aggregate(
                bars,
                w.req.step_ns,
                w.target,
                options,
                min(w.req.end_ns, now_ns()),  # no interval that has not ended yet
                size_precision=precision.size,
                count=w.cfg.bars,
            )
            if cache is not None and len(built):
                standard = w.target.standard()
                latest = cache.bar(standard)
                if latest is not None:  # add_bars would skip these silently
                    fresh = built.ts_init > latest.ts_init
                    drops["already_cached"] += int((~fresh).sum())
                    built = built.take(np.flatnonzero(fresh))
                if len(built) > cache.bar_capacity:
                    drops["over_capacity"] += len(built) - cache.bar_capacity
                    built = built.take(slice(len(built) - cache.bar_capacity, None))
            out = composite_bars(built, w.target, precision.price, precision.size)
        except Exception as e:  # never expected; the source bars are still injected
            w.report.error = f"aggregating {w.target}: {type(e).__name__}: {e}"
            return []
        report.dropped.update(drops)
        report.built = len(out)
        if out:
            report.first, report.last = out[0].ts_event, out[-1].ts_event
            # Intervals no source bar fell in: flat bars, as the live aggregator builds them.
            closes = bars.ts_open + w.req.step_ns
            period = interval_ns(w.target)
            inside = np.searchsorted(closes, built.ts_open + period, side="right")
            inside -= np.searchsorted(closes, built.ts_open, side="right")
            report.synthetic = int((inside == 0).sum())
        return out

    def _staleness(self, req: BarRequest, cfg: BarRequestConfig, close: int) -> str | None:
        # Only a request that ends now can be stale: `end` set means the user chose the window.
        limit = self.config.max_age_s(cfg, req.step_ns)
        if limit is None:
            return None
        age = (req.end_ns - close) / 1e9
        if age <= limit:
            return None
        key = f"backfill.requests[{req.index}].max_age" if cfg.max_age else "backfill.max_age"
        return (
            f"newest bar closed {format_ns(close)}, {format_age(age)} ago, older than "
            f"{key} = {format_age(limit)}; check the sources are current, or raise {key}"
        )


def _injected_types(bar_type: BarType) -> list[BarType]:
    if bar_type.is_composite():
        return [bar_type.composite(), bar_type.standard()]
    return [bar_type]


def _rows_of(raw: Any) -> int:
    table = getattr(raw, "table", None)
    rows = getattr(table, "num_rows", 0)
    return rows if isinstance(rows, int) else 0


def _parallel(source: BarSource) -> int:
    value = getattr(type(source), "max_parallel", 8)
    return value if isinstance(value, int) and value > 0 else 8


def _precision(req: BarRequest, cfg: BarRequestConfig, cache: Any) -> _Precision:
    if cache is not None:
        instrument = cache.instrument(req.bar_type.instrument_id)
        if instrument is not None:
            return _Precision(instrument.price_precision, instrument.size_precision)
    return _Precision(cfg.price_precision, cfg.size_precision)
