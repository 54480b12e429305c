"""Progress of a running backfill, for bars on a terminal and lines in a node's log."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """
    Where a source stage stands.

    Parameters
    ----------
    source : str
        The source being asked.
    calls_done : int
        Calls (request spans) answered so far in this stage.
    calls_total : int
        Calls in this stage.
    bars : int
        Rows received in this stage so far, also from calls still running.
    elapsed_s : float
        Time since the stage started (pacing waits included).
    eta_s : float | None
        Estimated time left in the stage, from the pace so far; None before the first answer.
    parts_done : int
        Parts answered: broker requests for sources that report them, else calls.
    parts_total : int
        Parts known so far.

    """

    source: str
    calls_done: int
    calls_total: int
    bars: int
    elapsed_s: float
    eta_s: float | None
    parts_done: int = 0
    parts_total: int = 0


class ProgressTracker:
    """
    Count a stage's calls and rows from any thread and report them to a callback.

    Parameters
    ----------
    source : str
        The source name.
    calls_total : int
        The calls the stage makes.
    callback : Callable[[Progress], None] | None
        Receives every update; exceptions in it are ignored.

    """

    def __init__(
        self, source: str, calls_total: int, callback: Callable[[Progress], None] | None
    ) -> None:
        self.source = source
        self.calls_total = calls_total
        self.callback = callback
        self.calls_done = 0
        self.bars = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._parts: dict[int, tuple[int, int]] = {}
        self._eta: dict[int, tuple[float, float]] = {}

    def rows(
        self,
        n: int,
        call: int | None = None,
        done: int | None = None,
        total: int | None = None,
        eta_s: float | None = None,
    ) -> None:
        """
        Add rows received (a source's `Span.progress` calls this), and the call's parts.

        Parameters
        ----------
        n : int
            Rows since the last call.
        call : int, optional
            Which call they belong to.
        done, total : int, optional
            The call's parts answered and known (broker requests).
        eta_s : float, optional
            The source's own estimate of the call's time left (pacing waits included).

        """
        with self._lock:
            self.bars += max(0, int(n))
            if call is not None and isinstance(done, int) and isinstance(total, int):
                self._parts[call] = (max(0, done), max(done, total, 1))
            if call is not None and isinstance(eta_s, int | float):
                self._eta[call] = (float(eta_s), time.monotonic())
        self._emit()

    def call_done(self) -> None:
        """
        Count one finished call.
        """
        with self._lock:
            self.calls_done += 1
        self._emit()

    def _emit(self) -> None:
        if self.callback is None:
            return
        with self._lock:
            elapsed = time.monotonic() - self.started
            done, total = self.calls_done, self.calls_total
            # Calls that report parts count by their parts; the others as one part each.
            parts_done = sum(d for d, _ in self._parts.values())
            parts_total = sum(t for _, t in self._parts.values())
            unparted = total - len(self._parts)
            parts_done += max(0, done - len(self._parts)) if unparted > 0 else 0
            parts_total += max(0, unparted)
            eta = elapsed * (parts_total - parts_done) / parts_done if parts_done else None
            now = time.monotonic()
            own = [max(0.0, e - (now - at)) for e, at in self._eta.values()]
            if own and parts_done < parts_total:  # the slowest call the source estimated
                eta = max(eta or 0.0, *own)
            snapshot = Progress(
                self.source, done, total, self.bars, elapsed, eta, parts_done, parts_total
            )
        with contextlib.suppress(Exception):  # a display must never fail the backfill
            self.callback(snapshot)
