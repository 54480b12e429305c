"""Bars as parallel numpy arrays keyed by bar open time: the form the pipeline works on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass
class BarArrays:
    """
    Bars sorted by open time, one array per field.

    Parameters
    ----------
    ts_open : np.ndarray
        Bar open times, UNIX ns, int64.
    open, high, low, close, volume : np.ndarray
        float64 values.

    """

    ts_open: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_open)

    @classmethod
    def empty(cls) -> BarArrays:
        """
        Return no bars.

        Returns
        -------
        BarArrays

        """
        f = np.empty(0, dtype=np.float64)
        return cls(np.empty(0, dtype=np.int64), f, f, f, f, f)

    def take(self, index: np.ndarray | slice) -> BarArrays:
        """
        Return the bars at `index` (a boolean mask, integer positions or a slice).

        Parameters
        ----------
        index : np.ndarray | slice
            The selection; a slice returns views, not copies.

        Returns
        -------
        BarArrays

        """
        return BarArrays(*(getattr(self, name)[index] for name in ("ts_open", *FIELDS)))

    def values(self) -> np.ndarray:
        """
        Return the five value columns stacked, shape (n, 5).

        Returns
        -------
        np.ndarray

        """
        return np.column_stack([getattr(self, name) for name in FIELDS])

    @staticmethod
    def join(first: BarArrays, second: BarArrays) -> BarArrays:
        """
        Append `second` to `first`, every bar of which opens earlier.

        Parameters
        ----------
        first, second : BarArrays
            The pieces, in order.

        Returns
        -------
        BarArrays

        """
        names = ("ts_open", *FIELDS)
        return BarArrays(*(np.concatenate([getattr(first, n), getattr(second, n)]) for n in names))

    @staticmethod
    def concat(parts: list[BarArrays]) -> BarArrays:
        """
        Concatenate and sort by open time.

        Parameters
        ----------
        parts : list[BarArrays]
            The pieces, each sorted, with no open time in two pieces.

        Returns
        -------
        BarArrays

        """
        parts = [p for p in parts if len(p)]
        if not parts:
            return BarArrays.empty()
        if len(parts) == 1:
            return parts[0]
        joined = BarArrays(
            *(np.concatenate([getattr(p, n) for p in parts]) for n in ("ts_open", *FIELDS)),
        )
        return joined.take(np.argsort(joined.ts_open, kind="stable"))


def column_f64(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """
    Return a column as float64 and its null mask.

    Parameters
    ----------
    table : pa.Table
        The table.
    name : str
        The column.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]

    """
    col = table.column(name)
    if col.type != pa.float64():
        col = pc.cast(col, pa.float64())
    nulls = pc.is_null(col).to_numpy(zero_copy_only=False) if col.null_count else None
    values = col.to_numpy(zero_copy_only=False)
    if nulls is None:
        nulls = np.zeros(len(values), dtype=bool)
    else:
        values = np.where(nulls, np.nan, values)
    return np.asarray(values, dtype=np.float64), nulls


def column_i64(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """
    Return a column as int64 (nulls as 0) and its null mask.

    Parameters
    ----------
    table : pa.Table
        The table.
    name : str
        The column.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]

    """
    col = table.column(name)
    if col.type != pa.int64():
        col = pc.cast(col, pa.int64())
    if col.null_count:
        nulls = pc.is_null(col).to_numpy(zero_copy_only=False)
        values = pc.fill_null(col, 0).to_numpy(zero_copy_only=False)
    else:
        nulls = np.zeros(len(col), dtype=bool)
        values = col.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.int64), nulls
