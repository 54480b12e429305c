"""
The backfill pipeline: fetch, validate, dedupe, merge, inject.

`Backfill.fetch` reads as the pipeline; the parts live in their own modules: `work` (one
request on its way), `stages` (one stage per source: fetch, validate, dedupe, merge),
`finish` (write-through, conversion to `Bar`, composite bars) and `inject` / `warmup`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nautilus_backfill.aggregate import AggregationOptions, live_delay_note, options_of
from nautilus_backfill.config import BackfillConfig, SourceConfig, load_config
from nautilus_backfill.errors import InsufficientHistoryError, describe
from nautilus_backfill.finish import aggregate_composite, finish, write_through
from nautilus_backfill.inject import cache_of
from nautilus_backfill.planning import check_sources, plan_requests
from nautilus_backfill.progress import Progress
from nautilus_backfill.registry import SourceRegistry, default_registry
from nautilus_backfill.report import (
    BackfillReport,
    RequestReport,
    SourceAttempt,
    log_progress,
    log_report,
)
from nautilus_backfill.source import BarSource, SourceContext
from nautilus_backfill.stages import Stages, writes_back
from nautilus_backfill.store import BarStore, StoreSource, redact
from nautilus_backfill.timeutil import now_ns
from nautilus_backfill.warmup import WarmUp
from nautilus_backfill.work import Work, build_request, precision_of
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
            Work.of(cfg, i, now, self._attempts()) for i, cfg in enumerate(self.config.requests)
        ]
        options = aggregation or self.config.aggregation or AggregationOptions()
        for w in work:
            w.precision = precision_of(w.req, w.cfg, cache)
            if cache is not None:
                w.cached = cache.instrument(w.req.bar_type.instrument_id)
        writers = np.array(
            [
                i
                for i, (cfg, src) in enumerate(zip(self._source_configs(), sources, strict=True))
                if src is not None and not isinstance(src, StoreSource) and writes_back(cfg, src)
            ],
            dtype=np.int64,
        )
        results: dict[int, tuple[BarType, list[Bar]]] = {}
        composite: dict[int, tuple[BarType, list[Bar]]] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(8, len(work))))
        futures: dict[Any, Work] = {}
        stages = Stages(self.config, self.registry, self._source_configs())
        try:

            def end(w: Work) -> None:
                if store is not None:
                    write_through(self.config, w, store, deadline_at, writers)
                results[w.req.index] = (w.req.bar_type, finish(self.config, w, cache))
                if w.target is not None:
                    composite[w.req.index] = (
                        w.target.standard(),
                        aggregate_composite(w, options, cache),
                    )
                if on_request_done is not None:
                    on_request_done(w.report)

            def complete(w: Work) -> None:
                # Bars become `Bar` s while other requests still wait for their answers.
                futures[pool.submit(end, w)] = w

            # Fetch, validate, dedupe, merge: one stage per source, in priority order, each
            # asked only for what the sources before it left missing.
            for i, source in enumerate(sources):
                stages.run(
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


def _injected_types(bar_type: BarType) -> list[BarType]:
    if bar_type.is_composite():
        return [bar_type.composite(), bar_type.standard()]
    return [bar_type]
