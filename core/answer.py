"""Checking what a plugin's ``fetch`` returned before the pipeline touches it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from nautilus_backfill.config import EDGES
from nautilus_backfill.errors import SourceError
from nautilus_backfill.source import BAR_SCHEMA, SourceResult
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import FIXED_PRECISION


@dataclass
class Answer:
    """
    A source answer the pipeline can use, or why it cannot.

    Parameters
    ----------
    result : SourceResult | None
        The answer with its table cast to `BAR_SCHEMA` types; None when refused.
    rows : int
        The rows the source returned, as far as they can be counted.
    error : str | None
        Why the answer was refused.

    """

    result: SourceResult | None
    rows: int
    error: str | None = None


def _rows(obj: Any) -> int:
    # Count what a wrong answer held, so those rows appear in the report's accounting.
    for attr in ("num_rows", "shape"):
        value = getattr(obj, attr, None)
        if isinstance(value, int):
            return value
        if isinstance(value, tuple) and value and isinstance(value[0], int):
            return value[0]
    return 0


def _cast(table: pa.Table) -> pa.Table:
    columns: dict[str, Any] = {}
    for f in BAR_SCHEMA:
        if f.name not in table.column_names:
            raise SourceError(
                f"its table has no '{f.name}' column (needs {', '.join(BAR_SCHEMA.names)})"
            )
        if table.column_names.count(f.name) > 1:
            raise SourceError(f"its table has two '{f.name}' columns")
        col = table.column(f.name)
        t = col.type
        if f.name == "ts":
            if pa.types.is_timestamp(t):
                col = col.cast(pa.timestamp("ns", t.tz)).cast(pa.int64())
            elif not pa.types.is_integer(t):
                raise SourceError(
                    f"column 'ts' is {t}; it must be int64 UNIX nanoseconds (or an Arrow timestamp)"
                )
        elif not (
            pa.types.is_floating(t)
            or pa.types.is_integer(t)
            or pa.types.is_decimal(t)
            or pa.types.is_null(t)
        ):
            raise SourceError(f"column '{f.name}' is {t}; it must be numeric (float64)")
        try:
            columns[f.name] = col.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise SourceError(f"column '{f.name}' ({t}) does not cast to {f.type}: {e}") from None
    for name in ("_row", "_file", "_raw"):
        if name in table.column_names:
            columns[name] = table.column(name)
    return pa.table(columns)


def _precision(value: Any, key: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise SourceError(f"{key} is {value!r}; it must be an int or None")
    if not 0 <= value <= FIXED_PRECISION:
        raise SourceError(f"{key} is {value}; NautilusTrader takes 0 to {FIXED_PRECISION}")


def conform(answer: Any) -> Answer:
    """
    Check a ``fetch`` return value against the `SourceResult` contract.

    Nothing is guessed: a wrong type, a missing or uncastable column, an unknown timestamp
    edge or a precision NautilusTrader cannot hold refuses the whole answer, with a message
    saying what was wrong and the rows it held counted.

    Parameters
    ----------
    answer : Any
        What ``fetch`` returned.

    Returns
    -------
    Answer

    """
    if not isinstance(answer, SourceResult):
        hint = " (wrap the table: SourceResult(table))" if isinstance(answer, pa.Table) else ""
        return Answer(
            None,
            _rows(answer),
            f"fetch returned {type(answer).__name__}, not a SourceResult{hint}",
        )
    table = answer.table
    if not isinstance(table, pa.Table):
        return Answer(
            None,
            _rows(table),
            f"SourceResult.table is {type(table).__name__}, not a pyarrow Table",
        )
    try:
        if answer.timestamp_is not in EDGES:
            raise SourceError(
                f"timestamp_is is {answer.timestamp_is!r}; it must be 'open' or 'close'"
            )
        _precision(answer.price_precision, "price_precision")
        _precision(answer.size_precision, "size_precision")
        if answer.failure is not None and not isinstance(answer.failure, SourceError):
            raise SourceError(f"failure is {type(answer.failure).__name__}, not a SourceError")
        cast = _cast(table)
    except SourceError as e:
        return Answer(None, table.num_rows, str(e))
    notes = answer.notes if isinstance(answer.notes, list) else [answer.notes]
    instruments = answer.instruments if isinstance(answer.instruments, list) else []
    strange = [i for i in instruments if not isinstance(i, Instrument)]
    notes = [str(n) for n in notes if n is not None]
    if strange or not isinstance(answer.instruments, list):
        notes.append(
            "instruments ignored: expected a list of NautilusTrader Instrument objects, got "
            f"{type(strange[0] if strange else answer.instruments).__name__}"
        )
    return Answer(
        SourceResult(
            cast,
            answer.timestamp_is,
            answer.price_precision,
            answer.size_precision,
            [i for i in instruments if isinstance(i, Instrument)],
            notes,
            answer.failure,
        ),
        table.num_rows,
    )
