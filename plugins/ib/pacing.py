"""
IB's historical-data pacing rules, kept on the client side so the gateway never has to
enforce them.

From the TWS API "Historical Data Limitations" page, for bars of 30 seconds or less: no
identical request within 15 s; fewer than 6 requests for one contract, exchange and tick type
within 2 s; at most 60 requests in any 10 minutes, BID_ASK counting twice. For every bar size:
at most 50 requests open at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

from nautilus_backfill.errors import SourceError

try:
    import fcntl
except ImportError:  # Windows: the history is still kept, without a lock between processes
    fcntl = None  # type: ignore[assignment]

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


STATE_ENV = "NAUTILUS_BACKFILL_STATE_DIR"


def state_dir(configured: str | None = None) -> Path:
    """
    Return the folder that keeps state between runs.

    Parameters
    ----------
    configured : str, optional
        The ``pacing_state`` config key, which wins.

    Returns
    -------
    Path
        `configured`, else ``$NAUTILUS_BACKFILL_STATE_DIR``, else
        ``$XDG_STATE_HOME/nautilus-backfill``, else ``~/.local/state/nautilus-backfill``.

    """
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "nautilus-backfill"


class PacingHistory:
    """
    The small-bar requests sent to one gateway, in a JSON file every process shares.

    IB counts a gateway's requests whoever sends them, so the limiter of each run reads the
    requests of earlier runs (and of other processes running now) from this file before it
    sends, and adds its own, under an exclusive ``fcntl`` lock. Times are wall-clock seconds.

    Parameters
    ----------
    path : Path
        The file; its folder is created when needed.

    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None

    @classmethod
    def for_gateway(
        cls, folder: Path, host: str, port: int, account: str | None, scale: float
    ) -> PacingHistory:
        """
        Return the history of one gateway (and account, when the gateway named one).

        Parameters
        ----------
        folder : Path
            The state folder.
        host : str
            The gateway host.
        port : int
            The gateway port.
        account : str, optional
            The first managed account the gateway sent.
        scale : float
            The limiter's window scale; scaled test windows never share a real gateway's file.

        Returns
        -------
        PacingHistory

        """
        parts = [host, str(port), *([account] if account else [])]
        if scale != 1.0:
            parts.append(f"scale{scale:g}")
        name = re.sub(r"[^A-Za-z0-9.-]+", "_", "-".join(parts))
        return cls(folder / f"ib-pacing-{name}.json")

    @contextlib.contextmanager
    def locked(self) -> Iterator[list[list]]:
        """
        Hold the file's lock; yield its entries, written back when the block ends.

        Entries are ``[wall seconds, ident, key, cost]``; the caller prunes and appends.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            before = list(entries)
            yield entries
            if entries != before:
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(entries))
                os.replace(tmp, self.path)  # readers never see half a file

    def _read(self) -> list[list]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # a damaged file is rewritten; the gateway still enforces its rules
        if not isinstance(data, list):
            return []
        # Entries another version (or a damaged write) left in another shape are skipped.
        return [
            e
            for e in data
            if isinstance(e, list)
            and len(e) == 4
            and isinstance(e[0], int | float)
            and not isinstance(e[0], bool)
            and isinstance(e[3], int)
            and not isinstance(e[3], bool)
        ]


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

    def __init__(
        self,
        scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_open: int = OPEN_MAX,
    ) -> None:
        self.scale = scale
        self._clock = clock
        mutex = threading.Lock()
        self._lock = threading.Condition(mutex)  # waits for IB's time rules
        # Waits for an open slot: one waiter is woken per answer, not every waiting request.
        self._slot_free = threading.Condition(mutex)
        self._sent: deque[tuple[float, Hashable, Hashable, int]] = deque()
        self._open = 0
        self.max_open = min(max_open, OPEN_MAX)
        self.history: PacingHistory | None = None
        self.waited_s = 0.0
        self.sent = 0
        self.most_open = 0

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
            try:
                while True:
                    if self._open >= self.max_open:
                        # Released as answers come; a full house is no pacing wait to report.
                        if self._clock() >= deadline:
                            raise SourceError(
                                f"IB: {self.max_open} requests still open at the deadline",
                                status="timeout",
                            )
                        self._slot_free.wait(max(0.0, deadline - self._clock()))
                        continue
                    if step_s <= SMALL_BAR_S:
                        wait, now = self._small_bar_wait(ident, key, cost)
                    else:
                        wait, now = 0.0, self._clock()
                    if wait <= 0:
                        self._open += 1
                        self.sent += 1
                        self.most_open = max(self.most_open, self._open)
                        return
                    # The free slot this request leaves for now may serve another one.
                    self._slot_free.notify()
                    if now + wait > deadline:
                        raise SourceError(
                            f"IB pacing: the next request may go out in {wait:.1f}s, after the "
                            "deadline",
                            status="pacing",
                        )
                    self.waited_s += wait
                    self._lock.wait(wait)
            except BaseException:
                # Whoever leaves without a slot passes the wake-up on: no waiter polls.
                self._slot_free.notify()
                raise

    def _small_bar_wait(self, ident: Hashable, key: Hashable, cost: int) -> tuple[float, float]:
        # The wait IB's time rules ask for; when none, the request is recorded as sent.
        history = self.history
        if history is None or history.error is not None:
            now = self._clock()
            wait = self._wait_needed(now, ident, key, cost)
            if wait <= 0:
                self._sent.append((now, ident, key, cost))
            return wait, now
        try:
            with history.locked() as entries:
                now = self._clock()
                offset = time.time() - now  # wall seconds of this clock's `now`
                window = WINDOW_S * self.scale * (1 + MARGIN) + MARGIN_S
                entries[:] = [e for e in entries if now + offset - e[0] <= window]
                # Every process's requests, in this clock, oldest first.
                self._sent = deque(sorted((e[0] - offset, e[1], e[2], e[3]) for e in entries))
                ident_s, key_s = repr(ident), repr(key)
                wait = self._wait_needed(now, ident_s, key_s, cost)
                if wait <= 0:
                    entries.append([now + offset, ident_s, key_s, cost])
                return wait, now
        except OSError as e:
            history.error = f"{history.path}: {e}"
            self._sent.clear()  # in this clock and this process only, from here on
            return self._small_bar_wait(ident, key, cost)

    def release(self) -> None:
        """Count a request as answered."""
        with self._lock:
            self._open -= 1
            self._slot_free.notify()
