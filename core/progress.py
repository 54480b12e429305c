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

    """

    source: str
    calls_done: int
    calls_total: int
    bars: int
    elapsed_s: float
    eta_s: float | None


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

    def rows(self, n: int) -> None:
        """
        Add rows received (a source's `Span.progress` calls this).

        Parameters
        ----------
        n : int
            Rows since the last call.

        """
        with self._lock:
            self.bars += max(0, int(n))
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
            eta = elapsed * (total - done) / done if done else None
            snapshot = Progress(self.source, done, total, self.bars, elapsed, eta)
        with contextlib.suppress(Exception):  # a display must never fail the backfill
            self.callback(snapshot)
