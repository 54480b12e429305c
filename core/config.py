"""Configuration structs and the TOML loader."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from nautilus_backfill.errors import ConfigError
from nautilus_backfill.timeutil import bar_step_ns, parse_duration, parse_time
from nautilus_trader.common.config import NautilusConfig, NonNegativeInt, PositiveInt
from nautilus_trader.model.data import BarType

if TYPE_CHECKING:
    from nautilus_backfill.registry import SourceRegistry

EDGES = ("open", "close")
ON_INSUFFICIENT = ("warn", "fail")
ON_CAPACITY = ("fail", "truncate")


def _choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what}: must be one of {', '.join(allowed)}, was '{value}'")


def _field(name: str, check: Any, value: Any) -> None:
    # Prefix the field name so the loader can report the full key path.
    try:
        check(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


class BarRequestConfig(NautilusConfig, frozen=True, kw_only=True):
    """
    One bar type to backfill, and how much history.

    Parameters
    ----------
    bar_type : str
        A time-aggregated NautilusTrader bar type, e.g. ``"AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"``.
    bars : PositiveInt, optional
        The number of most recent complete bars ending at `end`.
    start : str, optional
        The start of the window (ISO 8601); mutually exclusive with `bars`.
    end : str, optional
        The end of the window (ISO 8601); the current time when omitted.
    price_precision : NonNegativeInt, optional
        Used when no instrument in the cache or source metadata gives it.
    size_precision : NonNegativeInt, optional
        Used when no instrument in the cache or source metadata gives it.
    ts_event : str, default "open"
        Which edge of the bar ``Bar.ts_event`` carries: ``"open"`` (as the IB adapter) or
        ``"close"``. ``ts_init`` is always the close.
    allow_non_positive_prices : bool, default False
        Accept prices <= 0 (spreads, some futures).
    contract : dict[str, str | int | float | bool], optional
        A broker contract for sources that need one and cannot derive it from the instrument
        id (the IB plugin takes ``ibapi.contract.Contract`` fields: ``secType``, ``symbol``,
        ``exchange``, ``currency``, ``localSymbol``, ``lastTradeDateOrContractMonth``, ...).

    """

    bar_type: str
    bars: PositiveInt | None = None
    start: str | None = None
    end: str | None = None
    price_precision: NonNegativeInt | None = None
    size_precision: NonNegativeInt | None = None
    ts_event: str = "open"
    allow_non_positive_prices: bool = False
    contract: dict[str, str | int | float | bool] | None = None

    def __post_init__(self) -> None:
        try:
            bar_type = BarType.from_str(self.bar_type)
        except ValueError as e:
            raise ValueError(f"bar_type: invalid bar type '{self.bar_type}': {e}") from None
        _field("bar_type", bar_step_ns, bar_type)
        if (self.bars is None) == (self.start is None):
            raise ValueError("bars: set exactly one of `bars` or `start`")
        if self.start is not None:
            _field("start", parse_time, self.start)
        if self.end is not None:
            _field("end", parse_time, self.end)
        _choice(self.ts_event, EDGES, "ts_event")


class SourceConfig(NautilusConfig, frozen=True, kw_only=True):
    """
    The keys every source has; each plugin subclasses this with its own keys.

    Parameters
    ----------
    name : str
        A free name shown in reports.
    plugin : str
        The plugin that provides the source (see ``nautilus-backfill plugins``).
    timeout : str, default "30s"
        How long one request to this source may take.
    strict : bool, default False
        Treat any invalid bar as a failure of the source, so the next source is asked.

    """

    name: str
    plugin: str
    timeout: str = "30s"
    strict: bool = False

    def __post_init__(self) -> None:
        _field("timeout", parse_duration, self.timeout)

    @property
    def timeout_s(self) -> float:
        """
        Return the timeout in seconds.

        Returns
        -------
        float

        """
        return parse_duration(self.timeout)


class BackfillConfig(NautilusConfig, frozen=True, kw_only=True):
    """
    The whole backfill: requests, sources in priority order, and limits.

    Parameters
    ----------
    requests : list[BarRequestConfig]
        The bar types to backfill.
    sources : list[SourceConfig]
        The sources, tried in this order.
    deadline : str, default "60s"
        The time the whole backfill may take; the node starts regardless.
    on_insufficient : str, default "warn"
        ``"warn"`` or ``"fail"`` when a request gets fewer bars than it wants.
    on_capacity : str, default "fail"
        When a request exceeds ``CacheConfig.bar_capacity``: ``"fail"`` injects nothing for it
        and says which capacity it needs; ``"truncate"`` keeps the newest bars and counts the
        rest under ``over_capacity``.
    warm_up : bool, default True
        Feed the backfilled bars to the indicators strategies register in ``on_start``.
    base_dir : str, optional
        The folder relative source paths resolve against (the TOML file's folder when loaded).
    store : str, optional
        A write-through store: a ``ParquetDataCatalog`` root (path or fsspec URL such as
        ``s3://bucket/prefix``). It is read first; sources are asked only for what it lacks,
        and what they return is written to it.
    store_options : dict, optional
        fsspec storage options for the store (``endpoint_url``, ``key``, ``secret``, ...).
    keep : str, optional
        Retention: bars older than this (``"90d"``) are trimmed from the store after writing.

    """

    requests: list[BarRequestConfig]
    sources: list[SourceConfig] = []  # noqa: RUF012 (msgspec copies mutable defaults)
    deadline: str = "60s"
    on_insufficient: str = "warn"
    on_capacity: str = "fail"
    warm_up: bool = True
    base_dir: str | None = None
    store: str | None = None
    store_options: dict[str, str | int | float | bool] | None = None
    keep: str | None = None

    def __post_init__(self) -> None:
        _field("deadline", parse_duration, self.deadline)
        if self.keep is not None:
            _field("keep", parse_duration, self.keep)
            if self.store is None:
                raise ValueError("keep: retention needs a `store`")
        if self.store is not None and "store" in {s.name for s in self.sources}:
            raise ValueError("sources: the name 'store' is taken by the write-through store")
        _choice(self.on_insufficient, ON_INSUFFICIENT, "on_insufficient")
        _choice(self.on_capacity, ON_CAPACITY, "on_capacity")
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sources: source names must be unique, '{dupes[0]}' appears twice")

    @property
    def deadline_s(self) -> float:
        """
        Return the deadline in seconds.

        Returns
        -------
        float

        """
        return parse_duration(self.deadline)


_AT = re.compile(r"\s*-\s*at\s*`\$(.*)`\s*$")
_FIELD = re.compile(r"^(\w+): (.*)$", re.S)


def _message(error: msgspec.ValidationError, prefix: str) -> str:
    text = str(error)
    match = _AT.search(text)
    path = prefix
    if match:
        path = prefix + match.group(1)
        text = text[: match.start()]
    field = _FIELD.match(text)
    if field:
        path, text = f"{path}.{field.group(1)}", field.group(2)
    return f"{path}: {text}" if path else text


def convert(raw: Any, type_: type, key_path: str) -> Any:
    """
    Convert a decoded TOML value into a config struct, naming the key path on error.

    Parameters
    ----------
    raw : Any
        The decoded value.
    type_ : type
        The target type.
    key_path : str
        Where the value sits in the file, e.g. ``"backfill.sources[1]"``.

    Returns
    -------
    Any

    Raises
    ------
    ConfigError
        If the value does not fit the type.

    """
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError as e:
        raise ConfigError(_message(e, key_path)) from None


def load_config(
    path: str | Path,
    registry: SourceRegistry | None = None,
) -> BackfillConfig:
    """
    Load and validate a backfill TOML file.

    Parameters
    ----------
    path : str | Path
        The TOML file.
    registry : SourceRegistry, optional
        The source plugins; the default plugin manager's when omitted.

    Returns
    -------
    BackfillConfig

    Raises
    ------
    ConfigError
        With the file, the key path and the allowed values.

    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    return config_from_dict(
        doc, base_dir=path.resolve().parent, registry=registry, origin=str(path)
    )


def config_from_dict(
    doc: dict[str, Any],
    base_dir: Path | None = None,
    registry: SourceRegistry | None = None,
    origin: str = "<config>",
) -> BackfillConfig:
    """
    Build a `BackfillConfig` from a decoded TOML document with a ``[backfill]`` table.

    Parameters
    ----------
    doc : dict[str, Any]
        The decoded document.
    base_dir : Path, optional
        The folder relative paths resolve against.
    registry : SourceRegistry, optional
        The source plugins; the default plugin manager's when omitted.
    origin : str, default "<config>"
        Named in error messages.

    Returns
    -------
    BackfillConfig

    Raises
    ------
    ConfigError
        With the key path and the allowed values.

    """
    if registry is None:
        from nautilus_backfill.registry import default_registry

        registry = default_registry()
    unknown = sorted(set(doc) - {"backfill"})
    if "backfill" not in doc or not isinstance(doc["backfill"], dict):
        raise ConfigError(f"{origin}: missing the [backfill] table")
    if unknown:
        raise ConfigError(f"{origin}: unknown top-level key '{unknown[0]}' (only [backfill])")
    table = dict(doc["backfill"])
    raw_sources = table.pop("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError(f"{origin}: backfill.sources: expected [[backfill.sources]] tables")
    sources: list[SourceConfig] = []
    for i, raw in enumerate(raw_sources):
        key = f"backfill.sources[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: {key}: expected a table")
        plugin = raw.get("plugin")
        if plugin is None:
            raise ConfigError(
                f"{origin}: {key}: missing `plugin` (installed: {', '.join(registry.names())})",
            )
        source_type = registry.get(str(plugin), key_path=f"{key}.plugin")
        try:
            sources.append(convert(raw, source_type.config_type, key))
        except ConfigError as e:
            raise ConfigError(f"{origin}: {e}") from None
    if base_dir is not None and "base_dir" not in table:
        table["base_dir"] = str(base_dir)
    table["sources"] = []
    try:
        config: BackfillConfig = convert(table, BackfillConfig, "backfill")
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None
    if not config.requests:
        raise ConfigError(f"{origin}: backfill.requests: add at least one [[backfill.requests]]")
    config = msgspec.structs.replace(config, sources=sources)
    if not sources and config.store is None:
        raise ConfigError(f"{origin}: backfill.sources: add a [[backfill.sources]] or a `store`")
    try:
        config.__post_init__()
    except ValueError as e:
        raise ConfigError(f"{origin}: backfill.{e}") from None
    return config
