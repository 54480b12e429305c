"""One stage per source: ask it for what is missing, take each answer as it comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import portion as P
from nautilus_backfill.answer import conform
from nautilus_backfill.config import BackfillConfig, SourceConfig
from nautilus_backfill.errors import SourceError
from nautilus_backfill.finish import store_write
from nautilus_backfill.interval import interval_mismatch
from nautilus_backfill.progress import Progress, ProgressTracker
from nautilus_backfill.registry import SourceRegistry
from nautilus_backfill.report import SourceAttempt
from nautilus_backfill.runner import call_with_timeout
from nautilus_backfill.source import BarSource, SourceResult, Span
from nautilus_backfill.store import StoreSource
from nautilus_backfill.timeutil import now_ns
from nautilus_backfill.validate import validate
from nautilus_backfill.windows import answered_for, trusted
from nautilus_backfill.work import Work


class Stages:
    """
    The stages of one fetch: each source, in priority order, asked for what is missing.

    Parameters
    ----------
    config : BackfillConfig
        The backfill config.
    registry : SourceRegistry
        The plugins (their ``validate_bars`` hooks).
    source_configs : list[SourceConfig]
        The sources in priority order, the store first when there is one.

    """

    def __init__(
        self, config: BackfillConfig, registry: SourceRegistry, source_configs: list[SourceConfig]
    ) -> None:
        self.config = config
        self.registry = registry
        self.source_configs = source_configs

    def run(
        self,
        index: int,
        source: BarSource | None,
        open_error: str | None,
        work: list[Work],
        deadline_at: float,
        on_progress: Callable[[Progress], None] | None = None,
        store: StoreSource | None = None,
        complete: Callable[[Work], None] | None = None,
    ) -> None:
        """
        Ask the source at `index` for what each request still lacks, and take every answer.

        Parameters
        ----------
        index : int
            The source's position (the store first, when there is one).
        source : BarSource | None
            The source, or None when it could not be opened.
        open_error : str | None
            Why it could not be opened.
        work : list[Work]
            Every request.
        deadline_at : float
            The backfill's deadline (``time.monotonic()``).
        on_progress : Callable[[Progress], None], optional
            The progress callback.
        store : StoreSource, optional
            The store pieces handed over early are written to.
        complete : Callable[[Work], None], optional
            Called for a request as soon as nothing of it is missing, while the stage's other
            calls still run; later stages then skip it.

        """
        src_cfg = self.source_configs[index]
        calls: list[tuple[Work, Span]] = []
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
        later = range(index + 1, len(self.source_configs))

        def settle(call: tuple[Work, Span], outcome: Any, elapsed: float) -> None:
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
        calls: list[tuple[Work, Span]],
        deadline_at: float,
        tracker: ProgressTracker,
        store: StoreSource | None,
        settle: Callable[[tuple[Work, Span], Any, float], None],
    ) -> None:
        # Each call runs under its own timeout, `max_parallel` at a time; a call the deadline
        # leaves no time for is not made. `settle` takes each answer as it comes.
        def one(call: tuple[Work, Span]) -> None:
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
        w: Work,
        src_cfg: SourceConfig,
        source: BarSource,
        result: Any,
        interval: tuple[int, int],
        store: StoreSource | None,
        deadline_at: float,
    ) -> None:
        # A piece a source handed over before its call returned: merged now, and written
        # through now, so a kill or the deadline cannot cost it.
        index = self.source_configs.index(src_cfg)
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
        if store is None or not writes_back(src_cfg, source):
            return
        answered = answered_for(piece, answer.result, w.req.step_ns) - unsure
        w.layered.answered |= answered
        bars, origin = w.layered.bars, w.layered.origin
        mine = (bars.ts_open >= piece.start) & (bars.ts_open + w.req.step_ns <= piece.end)
        mine &= (origin == index) & (bars.ts_open + w.req.step_ns <= now_ns())
        answered = trusted(w.req, answered, bars, origin == index)
        store_write(w, store, deadline_at, bars.take(np.flatnonzero(mine)), answered)

    def _coarser(self, w: Work, result: SourceResult, attempt: SourceAttempt) -> bool:
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
        calls: list[tuple[Work, Span]],
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
        w: Work,
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
            attempt.status != "invalid" and w.report.error is None and writes_back(src_cfg, source)
        ):
            w.layered.answered |= answered_for(span, result, w.req.step_ns) - unsure

    def _accept(
        self,
        w: Work,
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
        store = self.config.store is not None and index == 0  # its bars were checked when written
        mismatch = None if store else interval_mismatch(result.table, req, result.timestamp_is)
        if mismatch is not None:
            # Rows of another interval are no bars of this bar type, on the grid or not.
            report.dropped["wrong_interval"] += rows
            if attempt.status in ("not_needed", "ok"):
                attempt.status = "invalid"
                attempt.error = mismatch
            return P.empty()
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
        for t in np.union1d(checked.ambiguous_at, checked.invalid_at).tolist():
            unsure |= P.closedopen(t, t + req.step_ns)
        layered.coverage -= unsure
        w.refused |= unsure
        return unsure


def writes_back(cfg: SourceConfig, source: BarSource) -> bool:
    """Whether the store keeps `source`'s bars: `write_back`, else the plugin's `remote`."""
    return cfg.write_back if cfg.write_back is not None else type(source).remote


def _rows_of(raw: Any) -> int:
    table = getattr(raw, "table", None)
    rows = getattr(table, "num_rows", 0)
    return rows if isinstance(rows, int) else 0


def _parallel(source: BarSource) -> int:
    value = getattr(type(source), "max_parallel", 8)
    return value if isinstance(value, int) and value > 0 else 8
