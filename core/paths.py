"""
Expanding a source's ``path`` setting: files, globs and templates.

Template fields come from the bar type, which comes from a config or a broker: a value such
as ``../outside/evil`` must not lead a path out of the folder the template names. Plugins
that fill path templates use `fill_template` (or `expand`), which refuses such values.
"""

from __future__ import annotations

import glob
import posixpath
import string
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


def _unsafe(value: str) -> str | None:
    # Why a field value may not go into a path, or None when it may.
    if "\x00" in value:
        return "contains a NUL character"
    if value.startswith(("/", "\\", "~")) or (len(value) > 1 and value[1] == ":"):
        return "is an absolute path"
    parts = value.replace("\\", "/").split("/")
    if any(p in ("..", ".") for p in parts):
        return "has a '..' or '.' path component"
    return None


def template_root(path: str) -> str:
    """
    Return the folder a path template's files must stay in: its part before the first field.

    Parameters
    ----------
    path : str
        The template, e.g. ``"data/{venue}/{symbol}.csv"`` (root ``"data"``).

    Returns
    -------
    str

    """
    fixed = path.split("{", 1)[0]
    return posixpath.dirname(fixed.replace("\\", "/")) or "."


def fill_template(path: str, bar_type: BarType) -> str:
    """
    Fill a path template's fields for a bar type, keeping the result inside the template's folder.

    A field value that is an absolute path or has a ``..`` component (``{raw_symbol}`` of
    ``../outside/evil.SIM``) is refused, and so is a filled path that normalizes to a place
    outside `template_root`. A ``/`` inside a value (``{raw_symbol}`` of ``GBP/USD``) is a
    subfolder, which stays inside.

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
        If the template names an unknown field, or a value would leave the folder.

    """
    fields = template_fields(bar_type)
    try:
        used = [f for _, f, _, _ in string.Formatter().parse(path) if f is not None]
        filled = path.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        allowed = ", ".join(f"{{{k}}}" for k in fields)
        raise SourceError(
            f"path template '{path}' uses unknown field {e} (allowed: {allowed})"
        ) from None
    for name in dict.fromkeys(used):
        reason = _unsafe(fields.get(name.split(".")[0].split("[")[0], ""))
        if reason is not None:
            raise SourceError(
                f"path template '{path}': {{{name}}} of {bar_type} is "
                f"'{fields[name]}', which {reason}: it would leave the folder "
                f"'{template_root(path)}'; rename the instrument or use {{symbol}}",
            )
    if used and "://" not in path:
        root = posixpath.normpath(template_root(path).replace("\\", "/"))
        target = posixpath.normpath(filled.replace("\\", "/"))
        if root != "." and not (target == root or target.startswith(root.rstrip("/") + "/")):
            raise SourceError(
                f"path template '{path}' filled for {bar_type} is '{filled}', outside the "
                f"folder '{root}'",
            )
    return filled


def expand(path: str, bar_type: BarType) -> list[str]:
    """
    Expand a template and glob into the sorted list of existing files.

    Only the template's own text is a glob: ``*``, ``?`` or ``[`` inside a field value (a
    symbol like ``ES[H4]``) match themselves.

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
        If the template names an unknown field, or a value would leave the folder.

    """
    filled = fill_template(path, bar_type)
    literal = "".join(text for text, _, _, _ in string.Formatter().parse(path))
    if any(ch in literal for ch in "*?["):
        fields = {k: glob.escape(v) for k, v in template_fields(bar_type).items()}
        return sorted(glob.glob(path.format(**fields), recursive=True))
    return [filled] if Path(filled).exists() else []
