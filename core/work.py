"""One request on its way through the pipeline: its parsed form, precisions, bars and report."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import portion as P
from nautilus_backfill.aggregate import interval_ns, source_bar_type, source_bars_needed
from nautilus_backfill.config import BarRequestConfig
from nautilus_backfill.merge import Layered
from nautilus_backfill.report import CompositeReport, RequestReport, SourceAttempt
from nautilus_backfill.source import BarRequest
from nautilus_backfill.timeutil import bar_step_ns, now_ns, parse_time
from nautilus_trader.model.data import BarType


@dataclass
class Precision:
    """The price and size precision of a request's bars, once known."""

    price: int | None = None
    size: int | None = None


@dataclass
class Work:
    """One request on its way through the stages: its merged bars, precisions and report."""

    req: BarRequest
    cfg: BarRequestConfig
    report: RequestReport
    target: BarType | None = None  # the composite bar type, aggregated from req's bars
    layered: Layered = field(default_factory=Layered)
    precision: Precision = field(default_factory=Precision)
    instruments: list[Any] = field(default_factory=list)
    # Answers of one request can arrive from several threads (spans, partial pieces).
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Per source index, the open times of bars rounded to the precision.
    rounded_at: dict[int, list[np.ndarray]] = field(default_factory=dict)
    done: bool = False  # complete before the last stage: finished while the others run
    # Bar intervals an answer gave with conflicting values or bad data: left to later sources.
    refused: P.Interval = field(default_factory=P.empty)
    cached: Any = None  # the request's instrument in the node's cache

    def instrument(self) -> Any:
        """The request's instrument as far as known: the node's cache, else an earlier source."""
        if self.cached is not None:
            return self.cached
        iid = self.req.bar_type.instrument_id
        found = [i for i in self.instruments if i.id == iid]
        return found[-1] if found else None

    @classmethod
    def of(cls, cfg: BarRequestConfig, index: int, now: int, attempts: list[SourceAttempt]) -> Work:
        """Return the work for the request config at `index`, with one attempt per source."""
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


def precision_of(req: BarRequest, cfg: BarRequestConfig, cache: Any) -> Precision:
    """The precisions the cache's instrument gives, else the request's config."""
    if cache is not None:
        instrument = cache.instrument(req.bar_type.instrument_id)
        if instrument is not None:
            return Precision(instrument.price_precision, instrument.size_precision)
    return Precision(cfg.price_precision, cfg.size_precision)
