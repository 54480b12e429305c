"""The backfill report: what every source returned and where every bar went."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nautilus_backfill.progress import Progress
from nautilus_backfill.timeutil import format_age, format_ns
from nautilus_trader.common.component import Logger


@dataclass
class SourceAttempt:
    """
    One source's part in one request.

    Parameters
    ----------
    name : str
        The source's configured name.
    plugin : str
        The plugin behind it.
    status : str
        ``ok``, ``empty``, ``error``, ``timeout``, ``invalid`` (strict source with invalid bars),
        ``not_needed`` (earlier sources covered the window) or ``not_asked`` (deadline passed).
    received : int
        Rows the source returned.
    used : int
        Of those, bars injected.
    error : str | None
        The error or reason for the status.
    elapsed_s : float
        Time spent in the source.
    calls : int
        The number of spans asked for.
    notes : list[str]
        Messages the source returned (files read, warnings).

    """

    name: str
    plugin: str
    status: str = "not_needed"
    received: int = 0
    used: int = 0
    error: str | None = None
    elapsed_s: float = 0.0
    calls: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """
        Return the JSON form.

        Returns
        -------
        dict[str, Any]

        """
        return {
            "name": self.name,
            "plugin": self.plugin,
            "status": self.status,
            "received": self.received,
            "used": self.used,
            "error": self.error,
            "elapsed_s": round(self.elapsed_s, 4),
            "notes": self.notes,
        }


@dataclass
class CompositeReport:
    """
    The composite bars a request aggregated from its source bars.

    Parameters
    ----------
    bar_type : str
        The bar type the bars carry (the composite type's standard form, as the live
        aggregator's bars do).
    wanted : int | None
        Composite bars asked for (None in time mode).
    built : int
        Composite bars injected.
    dropped : Counter[str]
        Composite bars not built: ``incomplete`` (a first interval the source bars do not
        cover, or the one still forming at the end), ``outside_window`` (beyond the count).
    first : int | None
        The first composite bar's ``ts_event``.
    last : int | None
        The last composite bar's ``ts_event``.
    note : str | None
        A warning about the live aggregator's settings, when they differ from the backfill's.
    synthetic : int
        Of the bars built, those for intervals no source bar fell in: flat at the last close
        with no volume (``time_bars_build_with_no_updates``), not market data.

    """

    bar_type: str
    wanted: int | None
    built: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    first: int | None = None
    last: int | None = None
    note: str | None = None
    synthetic: int = 0

    def to_dict(self) -> dict[str, Any]:
        """
        Return the JSON form.

        Returns
        -------
        dict[str, Any]

        """
        return {
            "bar_type": self.bar_type,
            "wanted": self.wanted,
            "built": self.built,
            "synthetic": self.synthetic,
            "first": format_ns(self.first),
            "last": format_ns(self.last),
            "dropped": dict(sorted(self.dropped.items())),
            "note": self.note,
        }


@dataclass
class RequestReport:
    """
    The outcome of one bar request.

    Parameters
    ----------
    bar_type : str
        The bar type.
    wanted : int | None
        The bar count asked for (None in time mode).
    injected : int
        Bars injected (or, without a cache, ready to inject).
    sources : list[SourceAttempt]
        One entry per configured source, in config order.
    dropped : Counter[str]
        Bars dropped per reason, over all sources.
    gaps : list[tuple[int | None, int]]
        Spans of the window no source covered, as UNIX ns.
    holes : int
        Bars inside the injected series (between the first and the last) that a source gave
        with bad data or conflicting values (``ambiguous``) and no other source gave.
    first : int | None
        The first injected bar's ``ts_event``.
    last : int | None
        The last injected bar's ``ts_event``.
    rounded : int
        Injected bars with a value rounded to the precision.
    error : str | None
        Why the request failed as a whole, if it did.
    examples : list[str]
        Where the first dropped rows of each reason were.
    stored : int
        New bars written to the store.
    stale : str | None
        Why the newest bar is too old for a request that ends now, if it is.
    composite : CompositeReport | None
        For a composite bar type: the bars aggregated from the source bars this report
        otherwise counts.

    """

    bar_type: str
    wanted: int | None
    injected: int = 0
    sources: list[SourceAttempt] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    gaps: list[tuple[int | None, int]] = field(default_factory=list)
    holes: int = 0
    first: int | None = None
    last: int | None = None
    rounded: int = 0
    error: str | None = None
    examples: list[str] = field(default_factory=list)
    stored: int = 0
    stale: str | None = None
    composite: CompositeReport | None = None

    @property
    def received(self) -> int:
        """
        Return the rows all sources returned.

        Returns
        -------
        int

        """
        return sum(s.received for s in self.sources)

    @property
    def status(self) -> str:
        """
        Return ``ok``, ``short``, ``stale`` or ``failed``.

        ``failed``: an error, or no bar injected. ``stale``: the newest bar is older than
        ``max_age`` for a request that ends now. ``short``: fewer bars than wanted, or a
        window with gaps while a source failed (time it may have had bars for).

        Returns
        -------
        str

        """
        c = self.composite
        if self.error is not None or self.injected == 0 or (c is not None and c.built == 0):
            return "failed"
        if self.stale is not None:
            return "stale"
        if c is not None:
            return "short" if c.wanted is not None and c.built < c.wanted else "ok"
        if self.wanted is not None and self.injected < self.wanted:
            return "short"
        if self.holes:
            return "short"  # the series has bars missing inside it: indicators would skip them
        failed = [s for s in self.sources if s.status not in ("ok", "empty", "not_needed")]
        if self.wanted is None and self.gaps and failed:
            return "short"  # a window with holes a failed source may have left
        return "ok"

    @property
    def satisfied(self) -> bool:
        """
        Return whether the request got what it wanted, fresh and without error.

        Returns
        -------
        bool

        """
        return self.status == "ok"

    def accounted(self) -> bool:
        """
        Return whether every received row is injected or dropped under one reason.

        Returns
        -------
        bool

        """
        return self.received == self.injected + sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """
        Return the JSON form.

        Returns
        -------
        dict[str, Any]

        """
        return {
            "bar_type": self.bar_type,
            "status": self.status,
            "wanted": self.wanted,
            "injected": self.injected,
            "first": format_ns(self.first),
            "last": format_ns(self.last),
            "sources": [s.to_dict() for s in self.sources],
            "dropped": dict(sorted(self.dropped.items())),
            "gaps": [[format_ns(a), format_ns(b)] for a, b in self.gaps],
            "holes": self.holes,
            "rounded": self.rounded,
            "stored": self.stored,
            "stale": self.stale,
            "composite": None if self.composite is None else self.composite.to_dict(),
            "error": self.error,
            "examples": self.examples,
        }


@dataclass
class BackfillReport:
    """
    The outcome of a whole backfill.

    Parameters
    ----------
    requests : list[RequestReport]
        One per configured request.
    elapsed_s : float
        Wall time.
    on_insufficient : str
        ``"warn"`` or ``"fail"``.

    """

    requests: list[RequestReport]
    elapsed_s: float = 0.0
    on_insufficient: str = "warn"

    @property
    def ok(self) -> bool:
        """
        Return whether every request got what it wanted, or shortfalls only warn.

        Returns
        -------
        bool

        """
        if self.on_insufficient == "warn":
            return True
        return all(r.satisfied for r in self.requests)

    def to_dict(self) -> dict[str, Any]:
        """
        Return the JSON form.

        Returns
        -------
        dict[str, Any]

        """
        return {
            "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 4),
            "requests": [r.to_dict() for r in self.requests],
        }

    def to_json(self) -> str:
        """
        Return the report as JSON.

        Returns
        -------
        str

        """
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        """
        Return the report as a plain-text table for people.

        Returns
        -------
        str

        """
        lines: list[str] = []
        for r in self.requests:
            wanted = "all in window" if r.wanted is None else str(r.wanted)
            mark = r.status.upper()
            lines.append(f"{r.bar_type}  [{mark}]  wanted {wanted}, injected {r.injected}")
            if r.first is not None:
                lines.append(f"  bars      {format_ns(r.first)} .. {format_ns(r.last)}")
            header = (
                f"  {'source':<14}{'plugin':<10}{'status':<12}{'received':>9}{'used':>8}{'time':>9}"
            )
            lines.append(header)
            for s in r.sources:
                lines.append(
                    f"  {s.name:<14}{s.plugin:<10}{s.status:<12}{s.received:>9}{s.used:>8}"
                    f"{s.elapsed_s:>8.2f}s" + (f"  {s.error}" if s.error else ""),
                )
                lines.extend(f"    note: {n}" for n in s.notes[:10])
                if len(s.notes) > 10:
                    lines.append(f"    note: ... {len(s.notes) - 10} more")
            if r.dropped:
                drops = ", ".join(f"{k} {v}" for k, v in sorted(r.dropped.items()))
                lines.append(f"  dropped   {drops}")
            for example in r.examples[:10]:
                lines.append(f"    {example}")
            if r.rounded:
                lines.append(f"  rounded   {r.rounded} bars to the price and size precision")
            if r.stored:
                lines.append(f"  stored    {r.stored} new bars written to the store")
            for a, b in r.gaps[:5]:
                lines.append(f"  gap       {format_ns(a) or 'before'} .. {format_ns(b)}")
            if len(r.gaps) > 5:
                lines.append(f"  gap       ... {len(r.gaps) - 5} more")
            c = r.composite
            if c is not None:
                lines.append(
                    f"  composite {c.built} of {c.wanted or 'all'} {c.bar_type} bars built from "
                    f"the source bars above"
                    + (f" ({format_ns(c.first)} .. {format_ns(c.last)})" if c.first else "")
                )
                if c.synthetic:
                    lines.append(
                        f"            {c.synthetic} of them flat: no source bar in their interval"
                    )
                if c.dropped:
                    drops = ", ".join(f"{k} {v}" for k, v in sorted(c.dropped.items()))
                    lines.append(f"            not built: {drops}")
                if c.note:
                    lines.append(f"  note      {c.note}")
            if r.stale:
                lines.append(f"  stale     {r.stale}")
            if r.error:
                lines.append(f"  error     {r.error}")
        lines.append(f"elapsed {self.elapsed_s:.2f}s")
        return "\n".join(lines)


def shortfall(request: RequestReport) -> str | None:
    """
    Return one line saying why a request is short, or None when it got what it wanted.

    Parameters
    ----------
    request : RequestReport
        The request.

    Returns
    -------
    str | None

    """
    if request.satisfied:
        return None
    failed = [
        f"{s.name}: {s.status}" + (f" ({s.error})" if s.error else "")
        for s in request.sources
        if s.status not in ("ok", "not_needed")
    ]
    got = f"{request.injected} of {request.wanted or 'the window'} bars"
    if request.injected == 0:
        head = f"{request.bar_type} starts cold, no bars backfilled"
    elif request.status == "stale":
        head = f"{request.bar_type} is STALE: {request.stale}"
    else:
        head = f"{request.bar_type} got {got}"
    tail = "; ".join(filter(None, ["; ".join(failed), request.error]))
    if request.status == "stale":
        return head + (f" ({tail})" if tail else "")
    return f"{head}: {tail or 'the sources had no more'}"


def log_report(report: BackfillReport, log: Logger | None = None) -> None:
    """
    Write the report to NautilusTrader's log: the table at INFO, each shortfall as a WARNING.

    Parameters
    ----------
    report : BackfillReport
        The report.
    log : Logger, optional
        The logger; ``Logger("Backfill")`` when omitted.

    """
    log = log or Logger("Backfill")
    for line in report.render().splitlines():
        log.info(line)
    for request in report.requests:
        problem = shortfall(request)
        if problem:
            log.warning(problem)


def log_progress(every_s: float = 5.0, log: Logger | None = None) -> Callable[[Progress], None]:
    """
    Return an ``on_progress`` callback that writes an INFO line at most every `every_s`.

    Parameters
    ----------
    every_s : float, default 5.0
        The least time between two lines (a stage's last call is always logged).
    log : Logger, optional
        The logger; ``Logger("Backfill")`` when omitted.

    Returns
    -------
    Callable[[Progress], None]

    """
    log = log or Logger("Backfill")
    last = [0.0]
    lock = threading.Lock()

    def write(p: Progress) -> None:
        now = time.monotonic()
        final = p.calls_done == p.calls_total
        with lock:
            if not final and now - last[0] < every_s:
                return
            last[0] = now
        eta = "" if p.eta_s is None or final else f", about {format_age(p.eta_s)} left"
        log.info(
            f"backfill: {p.source} {p.parts_done}/{p.parts_total} requests, {p.bars:,} bars, "
            f"{format_age(p.elapsed_s)}{eta}"
        )

    return write
