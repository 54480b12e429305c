"""Exceptions that carry a message meant for the user, never a traceback."""

from __future__ import annotations


class BackfillError(Exception):
    """The base class for errors nautilus-backfill reports to the user."""


class ConfigError(BackfillError):
    """A configuration file or value is invalid; the message names the key path."""


class PluginError(BackfillError):
    """A plugin could not be loaded, or a source names a plugin that is not installed."""


class SourceError(BackfillError):
    """
    A source failed; the message is shown in the report and the next source is asked.

    Parameters
    ----------
    message : str
        What went wrong, and where.
    status : str, default "error"
        The source's status in the report (``refused``, ``timeout``, ``empty``, ...).
    key : str, optional
        The source config key the problem concerns, for ``check`` to name.

    """

    def __init__(self, message: str, status: str = "error", key: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.key = key


class InsufficientHistoryError(BackfillError):
    """
    Raised by ``inject`` when ``on_insufficient = "fail"`` and a request came up short.

    Parameters
    ----------
    report : BackfillReport
        The report, also available as ``.report``.

    """

    def __init__(self, report: object) -> None:
        requests = getattr(report, "requests", [])
        short = [
            f"{r.bar_type} ({r.status}, {r.injected}/{r.wanted or 'window'})"
            for r in requests
            if not r.satisfied
        ]
        super().__init__("backfill came up short: " + ", ".join(short))
        self.report = report


def describe(e: BaseException) -> str:
    """
    Return an exception as a report line: a `SourceError`'s message, else type and message.

    Parameters
    ----------
    e : BaseException
        The exception.

    Returns
    -------
    str

    """
    return str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"
