"""Expanding a source's ``path`` setting: files, globs and templates."""

from __future__ import annotations

import glob
from pathlib import Path

from nautilus_backfill.errors import SourceError
from nautilus_trader.model.data import BarType


def template_fields(bar_type: BarType) -> dict[str, str]:
    """
    Return the names a path template may use.

    ``{symbol}`` drops ``/`` (``GBPUSD``); ``{raw_symbol}`` keeps it.

    Parameters
    ----------
    bar_type : BarType
        The bar type.

    Returns
    -------
    dict[str, str]

    """
    step, aggregation, price_type = str(bar_type.spec).split("-")
    symbol = bar_type.instrument_id.symbol.value
    return {
        "symbol": symbol.replace("/", ""),
        "raw_symbol": symbol,
        "venue": bar_type.instrument_id.venue.value,
        "instrument_id": str(bar_type.instrument_id),
        "bar_type": str(bar_type),
        "step": f"{step}-{aggregation}",
        "spec": str(bar_type.spec),
        "price_type": price_type,
    }


def fill_template(path: str, bar_type: BarType) -> str:
    """
    Fill a path template's fields for a bar type.

    Parameters
    ----------
    path : str
        The template.
    bar_type : BarType
        Fills it.

    Returns
    -------
    str

    Raises
    ------
    SourceError
        If the template names an unknown field.

    """
    try:
        return path.format(**template_fields(bar_type))
    except (KeyError, IndexError) as e:
        allowed = ", ".join(f"{{{k}}}" for k in template_fields(bar_type))
        raise SourceError(
            f"path template '{path}' uses unknown field {e} (allowed: {allowed})"
        ) from None


def expand(path: str, bar_type: BarType) -> list[str]:
    """
    Expand a template and glob into the sorted list of existing files.

    Parameters
    ----------
    path : str
        The resolved path setting.
    bar_type : BarType
        Fills the template.

    Returns
    -------
    list[str]

    Raises
    ------
    SourceError
        If the template names an unknown field.

    """
    filled = fill_template(path, bar_type)
    if any(ch in filled for ch in "*?["):
        return sorted(glob.glob(filled, recursive=True))
    return [filled] if Path(filled).exists() else []
