"""
IB's historical-data pacing rules, kept on the client side so the gateway never has to
enforce them.

From the TWS API "Historical Data Limitations" page, for bars of 30 seconds or less: no
identical request within 15 s; fewer than 6 requests for one contract, exchange and tick type
within 2 s; at most 60 requests in any 10 minutes, BID_ASK counting twice. For every bar size:
at most 50 requests open at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

from nautilus_backfill.errors import SourceError

IDENTICAL_S = 15.0
BURST_S = 2.0
BURST_MAX = 5
WINDOW_S = 600.0
WINDOW_MAX = 60
OPEN_MAX = 50
SMALL_BAR_S = 30
# The gateway measures from arrival, a little after the send, and a busy client process can
# add a scheduling delay: keep a margin (a quarter second on a 10-minute window costs nothing).
MARGIN = 0.05
MARGIN_S = 0.25


class PacingLimiter:
    """
    Blocks each request until sending it keeps within IB's pacing rules.

    Parameters
    ----------
    scale : float, default 1.0
        Scales the time windows (test-only; a real gateway needs 1).
    clock : Callable[[], float], optional
        Monotonic seconds.

    """

    def __init__(self, scale: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.scale = scale
        self._clock = clock
        self._lock = threading.Condition()
        self._sent: deque[tuple[float, Hashable, Hashable, int]] = deque()
        self._open = 0
        self.waited_s = 0.0
        self.sent = 0

    def _wait_needed(self, now: float, ident: Hashable, key: Hashable, cost: int) -> float:
        def padded(seconds: float) -> float:
            return seconds * self.scale * (1 + MARGIN) + MARGIN_S

        window, burst = padded(WINDOW_S), padded(BURST_S)
        while self._sent and now - self._sent[0][0] > window:
            self._sent.popleft()
        waits = [0.0]
        identical = [t for t, i, _, _ in self._sent if i == ident]
        if identical:
            waits.append(identical[-1] + padded(IDENTICAL_S) - now)
        recent = [t for t, _, k, _ in self._sent if k == key and now - t < burst]
        if len(recent) >= BURST_MAX:
            waits.append(recent[-BURST_MAX] + burst - now)
        total = sum(c for _, _, _, c in self._sent)
        if total + cost > WINDOW_MAX:
            # Wait until enough of the oldest have left the window.
            excess, freed = total + cost - WINDOW_MAX, 0
            for t, _, _, c in self._sent:
                freed += c
                if freed >= excess:
                    waits.append(t + window - now)
                    break
        return max(waits)

    def acquire(
        self,
        ident: Hashable,
        key: Hashable,
        step_s: int,
        cost: int,
        deadline: float,
    ) -> None:
        """
        Wait until a request may be sent, then count it as sent and open.

        Parameters
        ----------
        ident : Hashable
            Identifies the request (contract, end, duration, bar size, what, RTH).
        key : Hashable
            Contract, exchange and tick type.
        step_s : int
            The bar length; the time rules apply to bars of 30 s or less.
        cost : int
            2 for BID_ASK, else 1.
        deadline : float
            Monotonic time after which waiting fails.

        Raises
        ------
        SourceError
            With status ``pacing`` if the wait would pass the deadline.

        """
        with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_needed(now, ident, key, cost) if step_s <= SMALL_BAR_S else 0.0
                if self._open >= OPEN_MAX:
                    wait = max(wait, 0.01)
                if wait <= 0:
                    if step_s <= SMALL_BAR_S:
                        self._sent.append((now, ident, key, cost))
                    self._open += 1
                    self.sent += 1
                    return
                if now + wait > deadline:
                    raise SourceError(
                        f"IB pacing: the next request may go out in {wait:.1f}s, after the "
                        "deadline",
                        status="pacing",
                    )
                self.waited_s += wait
                self._lock.wait(wait)

    def release(self) -> None:
        """Count a request as answered."""
        with self._lock:
            self._open -= 1
            self._lock.notify_all()
