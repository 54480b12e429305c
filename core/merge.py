"""Layering answers of several sources, and what is still missing from a request's window."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import portion as P
from nautilus_backfill.bararrays import BarArrays
from nautilus_backfill.source import BarRequest, Span


@dataclass
class Layered:
    """
    The bars merged so far, which source gave each, and the time the sources covered.

    Parameters
    ----------
    bars : BarArrays
        Merged bars, sorted by open time, unique.
    origin : np.ndarray
        For each bar, the index of the source that supplied it.
    coverage : P.Interval
        The union of ``[first open, last close)`` of every accepted answer, and of the
        intervals a store knows sources answered for.
    answered : P.Interval
        The spans sources answered for in this run (bars or not), for the store to remember.

    """

    bars: BarArrays = field(default_factory=BarArrays.empty)
    origin: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int16))
    coverage: P.Interval = field(default_factory=P.empty)
    answered: P.Interval = field(default_factory=P.empty)

    def add(
        self, new: BarArrays, source_index: int, step_ns: int, span: Span, cover: bool = True
    ) -> Counter[str]:
        """
        Merge a later source's bars: earlier sources win on the same open time.

        Parameters
        ----------
        new : BarArrays
            Valid, sorted, unique bars of one answer.
        source_index : int
            The source's position in the config.
        step_ns : int
            The bar length.
        span : Span
            The span the source was asked for; bars outside it fill nothing.
        cover : bool, default True
            Count ``[first open, last close)`` of the answer as covered. A store passes False:
            its bars may have holes that only its record of answered intervals can tell.

        Returns
        -------
        Counter[str]
            ``overlap`` (same bar, same values), ``conflict`` (same bar, other values) and
            ``outside_window`` (outside the span, or beyond its limit).

        """
        dropped: Counter[str] = Counter()
        if not len(new):
            return dropped
        if len(self.bars):
            pos = np.searchsorted(self.bars.ts_open, new.ts_open)
            pos_c = np.minimum(pos, len(self.bars) - 1)
            taken = self.bars.ts_open[pos_c] == new.ts_open
            if taken.any():
                old = self.bars.take(pos_c[taken]).values()  # only the rows compared
                same = (old == new.take(taken).values()).all(axis=1)
                dropped["overlap"] = int(same.sum())
                dropped["conflict"] = int((~same).sum())
                new = new.take(~taken)
        inside = new.ts_open + step_ns <= span.end
        if span.start is not None:
            inside &= new.ts_open >= span.start
        if span.limit is not None and inside.sum() > span.limit:
            inside[np.flatnonzero(inside)[: int(inside.sum()) - span.limit]] = False
        dropped["outside_window"] = int((~inside).sum())
        if dropped["outside_window"]:
            new = new.take(inside)
        if len(new) and cover:
            self.coverage |= P.closedopen(int(new.ts_open[0]), int(new.ts_open[-1]) + step_ns)
        origin = np.full(len(new), source_index, dtype=np.int16)
        if not len(self.bars) or not len(new):
            parts = new if len(new) else self.bars
            self.origin = origin if len(new) else self.origin
        elif new.ts_open[0] > self.bars.ts_open[-1]:  # the usual tail: no sort needed
            parts = BarArrays.join(self.bars, new)
            self.origin = np.concatenate([self.origin, origin])
        else:
            parts = BarArrays.concat([self.bars, new])
            all_ts = np.concatenate([self.bars.ts_open, new.ts_open])
            all_origin = np.concatenate([self.origin, origin])
            self.origin = all_origin[np.argsort(all_ts, kind="stable")]
        self.bars = parts
        return +dropped

    def missing(self, request: BarRequest) -> list[Span]:
        """
        Return the spans of the window no source has covered yet.

        In count mode the window ends at ``request.end_ns`` and reaches back as far as needed
        for ``request.count`` bars; a span with no lower bound asks for the bars still
        lacking. Spans too short to hold a whole bar are left out.

        Parameters
        ----------
        request : BarRequest
            The request.

        Returns
        -------
        list[Span]

        """
        end = request.end_ns
        step = request.step_ns
        if request.count is None:
            assert request.start_ns is not None
            window = P.closedopen(request.start_ns, end)
        elif len(self.bars) >= request.count:
            window = P.closedopen(int(self.bars.ts_open[-request.count]), end)
        else:
            window = P.closedopen(-P.inf, end)
        spans = []
        for piece in window - self.coverage:
            lower = None if piece.lower == -P.inf else int(piece.lower)
            upper = int(piece.upper)
            if lower is None:
                assert request.count is not None
                spans.append(Span(None, upper, request.count - len(self.bars)))
            elif upper - lower >= step:
                spans.append(Span(lower, upper))
        return spans

    def trim(self, request: BarRequest) -> int:
        """
        Keep only the newest ``request.count`` bars in count mode.

        Parameters
        ----------
        request : BarRequest
            The request.

        Returns
        -------
        int
            The number of bars removed.

        """
        if request.count is None or len(self.bars) <= request.count:
            return 0
        cut = len(self.bars) - request.count
        self.bars = self.bars.take(slice(cut, None))
        self.origin = self.origin[cut:]
        return cut
