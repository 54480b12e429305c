"""The contract between the orchestrator and a bar source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from nautilus_backfill.config import SourceConfig
from nautilus_backfill.errors import SourceError
from nautilus_trader.model.data import BarType

# Timestamps are UNIX nanoseconds of the bar edge named by `SourceResult.timestamp_is`.
# Optional `_row` (int64) and `_file` (string) columns locate a bar for error messages.
BAR_SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ],
)


@dataclass(frozen=True)
class BarRequest:
    """
    What the orchestrator asks every source for, already parsed.

    Parameters
    ----------
    bar_type : BarType
        The bar type.
    step_ns : int
        The bar length.
    end_ns : int
        No bar that closes after this is wanted.
    start_ns : int | None
        The window start in time mode.
    count : int | None
        The number of bars in count mode.
    index : int
        The position of the request in the config, for key paths.
    contract : dict[str, Any], optional
        The request's explicit broker contract (``contract`` in the config), if any.

    """

    bar_type: BarType
    step_ns: int
    end_ns: int
    start_ns: int | None
    count: int | None
    index: int = 0
    contract: dict[str, Any] | None = None


@dataclass(frozen=True)
class Span:
    """
    A part of a request's window that a source is asked to fill.

    Bars are wanted whose interval ``[open, open + step)`` lies in ``[start, end)``. When
    `limit` is set, only the newest `limit` such bars are wanted (``start`` may be None).

    Parameters
    ----------
    start : int | None
        The earliest bar open wanted (UNIX ns), or None for no lower bound.
    end : int
        The latest bar close wanted (UNIX ns).
    limit : int | None
        The number of newest bars wanted, or None for all.
    deadline : float | None
        A ``time.monotonic()`` value by which ``fetch`` must return. A source that can return
        part of its answer should return what it has before then, with
        ``SourceResult.failure`` set to a ``SourceError`` of status ``"timeout"``; a call still
        running at the deadline is abandoned and whatever it got is lost.
    progress : Callable[..., None] | None
        For long downloads: call it as ``progress(rows)`` with the number of rows received
        since the last call (pieces handed to `partial` included), or as ``progress(rows,
        done, total, eta_s)`` when the call is made of parts (broker requests) and the source
        knows better than the rate so far how long the rest takes (pacing waits), so progress
        displays move and estimate the time left before `fetch` returns. Optional; thread-safe.
    partial : Callable[[SourceResult, int, int], None] | None
        For long downloads: hand over a finished piece early, with the window ``[start,
        end)`` it answers for (bars or none), in `Span` terms: bars whose whole interval lies
        in it. The host validates and
        merges it at once and, with a ``store``, writes it through, so a run killed or cut by
        its deadline keeps it and the next run asks only for the rest. Do not return those
        rows again from `fetch`. Optional to call.
    instrument : Instrument | None
        The request's instrument when the host already has it (from the cache, or stored by
        an earlier run), so a broker source may skip looking the contract up. None when
        unknown.

    """

    start: int | None
    end: int
    limit: int | None = None
    deadline: float | None = None
    progress: Callable[..., None] | None = None
    partial: Callable[[SourceResult, int, int], None] | None = None
    instrument: Any = None


@dataclass
class SourceResult:
    """
    What a source returns for one span.

    Parameters
    ----------
    table : pa.Table
        Columns of `BAR_SCHEMA` (extra columns are ignored); rows in any order. A null in
        ``ts`` or a price marks a row the source could not parse.
    timestamp_is : str
        Which edge of the bar ``ts`` labels: ``"open"`` or ``"close"``.
    price_precision : int | None
        From the source's metadata, when it has one.
    size_precision : int | None
        From the source's metadata, when it has one.
    instruments : list
        NautilusTrader instruments the source resolved, added to the cache on inject.
    notes : list[str]
        Messages for the report (files read, warnings).
    failure : SourceError, optional
        Set when the source failed part-way: the rows it did get are used, the attempt is
        reported with the failure's status and message, and the source is not asked again.

    """

    table: pa.Table
    timestamp_is: str = "open"
    price_precision: int | None = None
    size_precision: int | None = None
    instruments: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure: SourceError | None = None


@dataclass(frozen=True)
class SourceContext:
    """
    What a source may need from the host.

    Parameters
    ----------
    base_dir : Path
        The folder relative paths in the source config resolve against.
    cache : Any
        The NautilusTrader ``Cache`` bars go into, when there is one (to look up instruments).

    """

    base_dir: Path
    cache: Any = None

    def resolve(self, path: str) -> str:
        """
        Resolve a path from the config against `base_dir` (URLs are left alone).

        Parameters
        ----------
        path : str
            The path.

        Returns
        -------
        str

        """
        if "://" in path:
            return path
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else self.base_dir / p)


class BarSource:
    """
    The base class for bar sources; plugins register subclasses.

    Subclasses set `config_type` to their `SourceConfig` subclass and implement `fetch`.
    `fetch` may be called from several threads at once, for different requests.

    Parameters
    ----------
    config : SourceConfig
        The source's configuration.
    context : SourceContext
        Host services.

    """

    config_type: ClassVar[type[SourceConfig]] = SourceConfig
    # Network sources (brokers, vendor APIs): only their bars are written back to the store,
    # so a local fallback file never outranks the primary on the next start.
    remote: ClassVar[bool] = False
    # How many `fetch` calls the host makes at once (for different requests or spans).
    max_parallel: ClassVar[int] = 8

    def __init__(self, config: SourceConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context

    def fetch(self, request: BarRequest, span: Span) -> SourceResult:
        """
        Return the bars of `request` in `span`.

        Raise `SourceError` with a clear message on failure; return an empty table when the
        source has no bars there.

        Parameters
        ----------
        request : BarRequest
            The request.
        span : Span
            The part of the window to fill.

        Returns
        -------
        SourceResult

        """
        raise NotImplementedError

    def fetch_many(self, calls: list[tuple[BarRequest, Span]]) -> list[Any]:
        """
        Answer several ``(request, span)`` pairs in one call (optional).

        Override it when one pass over the data can serve many requests (one scan of a
        catalog for 300 bar types); the default is never called: the host then calls `fetch`
        per pair, `max_parallel` at a time. The source's ``timeout`` bounds the whole call,
        and each span's ``deadline`` is that of the call.

        Parameters
        ----------
        calls : list[tuple[BarRequest, Span]]
            The pairs to answer.

        Returns
        -------
        list[SourceResult | Exception]
            One answer per pair, in order: a `SourceResult`, or the exception (a
            `SourceError` with a status) that pair failed with.

        """
        raise NotImplementedError

    def plan(self, request: BarRequest) -> list[str]:
        """
        Return, without any network, what this source would be asked for `request`.

        ``nautilus-backfill plan`` prints the lines under the source's name: the files it
        would read, the broker requests it would make and the least time they take. The
        default names the files a ``path`` setting matches.

        Parameters
        ----------
        request : BarRequest
            The request.

        Returns
        -------
        list[str]

        """
        path = getattr(self.config, "path", None)
        if not isinstance(path, str):
            return []
        from nautilus_backfill.paths import expand

        pattern = self.context.resolve(path)
        try:
            files = expand(pattern, request.bar_type)
        except SourceError as e:
            return [f"cannot read: {e}"]
        if not files:
            return [f"no file matches {pattern}"]
        shown = [f"reads {f}" for f in files[:5]]
        return shown + ([f"... and {len(files) - 5} more files"] if len(files) > 5 else [])

    def check(self, requests: list[BarRequest]) -> list[str]:
        """
        Return the problems in this source's config for `requests`, without any network.

        ``nautilus-backfill check`` calls it: report what can be known offline (files that do
        not exist, columns a header lacks, values out of range). Each problem is one line
        starting with the source key it concerns (``"path: no file matches data/*.csv"``); the
        host prefixes the source's key path.

        Parameters
        ----------
        requests : list[BarRequest]
            The configured requests.

        Returns
        -------
        list[str]

        """
        return []

    def close(self) -> None:
        """
        Release connections and files; called once when the backfill ends.
        """


def in_span(ts: pa.Array | pa.ChunkedArray, span: Span, shift: int, step: int) -> pa.Array:
    """
    Return a filter mask: True for rows whose bar lies in `span`, and for unparsed rows.

    Unparsed rows (null ``ts``) are kept so they are counted as ``unparseable``.

    Parameters
    ----------
    ts : pa.Array | pa.ChunkedArray
        Timestamps, UNIX ns, of the bar edge that `shift` leads back to the open.
    span : Span
        The span.
    shift : int
        ``step`` for close-stamped rows, else 0.
    step : int
        The bar length.

    Returns
    -------
    pa.Array

    """
    opens = pc.subtract(ts, shift)
    keep = pc.less_equal(pc.add(opens, step), span.end)
    if span.start is not None:
        keep = pc.and_(keep, pc.greater_equal(opens, span.start))
    return pc.fill_null(pc.or_kleene(pc.is_null(ts), keep), True)


def within(table: pa.Table, span: Span, step: int) -> pa.Table:
    """
    Keep the rows of `span` (and unparsed ones), without a copy when that is all of them.

    Parameters
    ----------
    table : pa.Table
        Bars with an open-stamped ``ts`` column.
    span : Span
        The span.
    step : int
        The bar length (ns).

    Returns
    -------
    pa.Table

    """
    mask = in_span(table.column("ts"), span, 0, step)
    return table if pc.all(mask).as_py() is not False else table.filter(mask)


def empty_table() -> pa.Table:
    """
    Return an empty table of `BAR_SCHEMA`.

    Returns
    -------
    pa.Table

    """
    return BAR_SCHEMA.empty_table()
