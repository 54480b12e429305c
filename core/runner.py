"""Running source calls under a timeout without letting them hold the caller."""

from __future__ import annotations

import threading
from collections.abc import Callable

from nautilus_backfill.errors import SourceError


def call_with_timeout[T](fn: Callable[[], T], timeout: float, name: str = "source") -> T:
    """
    Call `fn` in a daemon thread and wait at most `timeout` seconds for it.

    A call still running at the timeout is abandoned (its result is ignored), so a hung
    source can never hold the node past its deadline.

    Parameters
    ----------
    fn : Callable[[], T]
        The call.
    timeout : float
        Seconds to wait.
    name : str, default "source"
        The thread name.

    Returns
    -------
    T

    Raises
    ------
    SourceError
        With status ``timeout`` when the call takes too long.

    """
    if timeout <= 0:
        raise SourceError("no time left before the deadline", status="not_asked")
    box: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e
        finally:
            done.set()

    thread = threading.Thread(target=run, name=f"backfill-{name}", daemon=True)
    thread.start()
    if not done.wait(timeout):
        raise SourceError(f"timed out after {timeout:.1f}s", status="timeout")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
