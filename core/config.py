"""Configuration structs and the TOML loader."""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from nautilus_backfill.aggregate import AggregationOptions
from nautilus_backfill.errors import ConfigError, PluginError
from nautilus_backfill.timeutil import DAY_NS, bar_step_ns, now_ns, parse_duration, parse_time
from nautilus_trader.common.config import NautilusConfig, NonNegativeInt, PositiveInt
from nautilus_trader.model.data import BarType
from nautilus_trader.model.objects import FIXED_PRECISION

if TYPE_CHECKING:
    from nautilus_backfill.registry import SourceRegistry

EDGES = ("open", "close")
RESERVED_SOURCE_NAMES = ("store",)
# More bars than any source could serve a warm start: 100 years of 1-second bars is 3.2e9.
MAX_BARS = 1_000_000_000
ON_INSUFFICIENT = ("warn", "fail")
ON_CAPACITY = ("fail", "truncate")


def _choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what}: must be one of {', '.join(allowed)}, was '{value}'")


def _composite(bar_type: BarType) -> None:
    from nautilus_backfill.aggregate import interval_ns

    source = bar_type.composite()
    try:
        interval_ns(bar_type)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    bar_step_ns(source)


def _max_age(value: str) -> None:
    if value not in ("auto", "off"):
        parse_duration(value)


def _filesystem(url: str) -> None:
    # A store on a filesystem whose fsspec driver is missing fails at start otherwise.
    if "://" not in url:
        return
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ValueError(f"unknown filesystem '{protocol}://'") from None
    except ImportError as e:
        raise ValueError(f"'{protocol}://' needs a package that is not installed: {e}") from None


def _precision(value: int | None) -> None:
    if value is not None and value > FIXED_PRECISION:
        raise ValueError(
            f"NautilusTrader's Price and Quantity take 0 to {FIXED_PRECISION} decimals, was {value}"
        )


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
    max_age : str, optional
        Overrides ``[backfill] max_age`` for this request.

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
    max_age: str | None = None

    def __post_init__(self) -> None:
        try:
            bar_type = BarType.from_str(self.bar_type)
        except ValueError as e:
            raise ValueError(
                f"bar_type: invalid bar type '{self.bar_type}' ({e}); the form is "
                "SYMBOL.VENUE-STEP-AGGREGATION-PRICE-SOURCE, e.g. "
                "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
            ) from None
        _field("bar_type", bar_step_ns, bar_type)
        if bar_type.is_composite():
            _field("bar_type", _composite, bar_type)
        if (self.bars is None) == (self.start is None):
            raise ValueError("bars: set exactly one of `bars` or `start`")
        if self.bars is not None and self.bars > MAX_BARS:
            raise ValueError(f"bars: at most {MAX_BARS:_}, was {self.bars:_}")
        if self.start is not None:
            _field("start", parse_time, self.start)
        if self.end is not None:
            _field("end", parse_time, self.end)
        if self.start is not None and self.end is not None:
            if parse_time(self.start) >= parse_time(self.end):
                raise ValueError(
                    f"start: must be before end, was start = '{self.start}', end = '{self.end}'"
                )
        elif self.start is not None and parse_time(self.start) >= now_ns():
            raise ValueError(
                f"start: must be in the past when `end` is not set, was '{self.start}'"
            )
        _field("price_precision", _precision, self.price_precision)
        _field("size_precision", _precision, self.size_precision)
        _choice(self.ts_event, EDGES, "ts_event")
        if self.max_age is not None:
            _field("max_age", _max_age, self.max_age)


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
    write_back : bool, optional
        Write this source's bars through to the ``store``. Defaults to true for network
        sources (``ib``) and false for local files, so a fallback file never outranks the
        primary source on the next start.

    """

    name: str
    plugin: str
    timeout: str = "30s"
    strict: bool = False
    write_back: bool | None = None

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
    max_age : str, default "auto"
        For requests without `end`: a newest bar that closed longer ago than this makes the
        request ``stale`` (a warning, and a failure under ``on_insufficient = "fail"``).
        ``"auto"`` allows 4 days for intraday bars (a weekend and a holiday), 7 for daily and
        21 for weekly bars; ``"off"`` disables the check; or a duration such as ``"2h"``.
    aggregation : AggregationOptions, optional
        How composite bar types are aggregated: ``DataEngineConfig``'s ``time_bars_*`` keys,
        as a ``[backfill.aggregation]`` table. ``inject(node)`` takes them from the node's
        ``DataEngineConfig`` instead; NautilusTrader's defaults otherwise.

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
    max_age: str = "auto"
    aggregation: AggregationOptions | None = None

    def __post_init__(self) -> None:
        _field("deadline", parse_duration, self.deadline)
        _field("max_age", _max_age, self.max_age)
        if self.store is not None:
            _field("store", _filesystem, self.store)
        if self.keep is not None:
            _field("keep", parse_duration, self.keep)
            if self.store is None:
                raise ValueError("keep: retention needs a `store`")
        for i, source in enumerate(self.sources):
            if source.name in RESERVED_SOURCE_NAMES:
                raise ValueError(
                    f"sources[{i}].name: '{source.name}' is reserved for the write-through "
                    "store; choose another name"
                )
        _choice(self.on_insufficient, ON_INSUFFICIENT, "on_insufficient")
        _choice(self.on_capacity, ON_CAPACITY, "on_capacity")
        names = [s.name for s in self.sources]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(
                    f"sources[{i}].name: source names must be unique, '{name}' is also "
                    f"sources[{names.index(name)}]"
                )
        seen: dict[str, int] = {}
        for i, request in enumerate(self.requests):
            bar_type = BarType.from_str(request.bar_type)
            # A composite request fetches (and injects) its source bars: the same bars twice
            # would be injected twice.
            keys = [str(bar_type)]
            if bar_type.is_composite():
                keys = [str(bar_type.standard()), str(bar_type.composite())]
            for key in keys:
                if key in seen and key == request.bar_type:
                    raise ValueError(
                        f"requests[{i}].bar_type: '{key}' is also requests[{seen[key]}]; "
                        "request each bar type once"
                    )
                if key in seen:
                    raise ValueError(
                        f"requests[{i}].bar_type: '{request.bar_type}' means bars of {key}, "
                        f"also requested by requests[{seen[key]}]; request each bar type once "
                        "(a composite request injects its source bars too)"
                    )
                seen[key] = i
        if self.aggregation is not None:
            for problem in self.aggregation.check():
                raise ValueError(f"aggregation.{problem}")

    def max_age_s(self, request: BarRequestConfig, step_ns: int) -> float | None:
        """
        Return the freshness limit for `request` in seconds, or None when it is off.

        Parameters
        ----------
        request : BarRequestConfig
            The request.
        step_ns : int
            Its bar length.

        Returns
        -------
        float | None

        """
        value = request.max_age or self.max_age
        if value == "off":
            return None
        if value == "auto":
            days = 4 if step_ns < DAY_NS else 7 if step_ns < 7 * DAY_NS else 21
            return days * 86_400.0
        return parse_duration(value)

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
_FIELD = re.compile(r"^([\w.\[\]]+): (.*)$", re.S)


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


_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
_GOT_DATETIME = re.compile(r"Expected `str( \| null)?`, got `(datetime|date|time)`")


def _struct_at(type_: Any, path: str) -> Any:
    # The struct type a key path inside `type_` leads to ("requests[0]" -> BarRequestConfig).
    for name in re.findall(r"\.?(\w+)(?:\[\d+\])?", path):
        fields = {f.name: f.type for f in msgspec.structs.fields(type_)}
        if name not in fields:
            return type_
        inner = fields[name]
        for _ in range(3):  # list[X], X | None, dict[str, X]
            args = [a for a in getattr(inner, "__args__", ()) if a is not type(None)]
            if not args:
                break
            inner = args[-1]
        if not (isinstance(inner, type) and issubclass(inner, msgspec.Struct)):
            return type_
        type_ = inner
    return type_


def _hint(text: str, type_: type) -> str:
    # What the user most likely meant: a close key name, or a quoted time.
    unknown = _UNKNOWN.search(text)
    if unknown is not None and isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        where = text.split(":", 1)[0].split(".", 1)
        struct = _struct_at(type_, where[1]) if len(where) > 1 else type_
        names = [f.name for f in msgspec.structs.fields(struct)]
        close = difflib.get_close_matches(unknown.group(1), names, n=1, cutoff=0.6)
        if close:
            return f"{text} (did you mean `{close[0]}`?)"
        return f"{text} (the keys are: {', '.join(names)})"
    if _GOT_DATETIME.search(text):
        return f'{text}: write times as quoted ISO 8601 strings, e.g. "2024-01-02T15:30:00Z"'
    return text


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
        raise ConfigError(_hint(_message(e, key_path), type_)) from None
    except (OverflowError, RecursionError) as e:
        raise ConfigError(f"{key_path}: value out of range ({e})") from None


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
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a regular file"
            raise ConfigError(f"{path}: cannot read config: it {what}")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(
            f"{path}: starts with a UTF-8 byte-order mark, which TOML does not allow; "
            "save it as UTF-8 without BOM"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 (byte 0x{data[e.start]:02x}); TOML files must be "
            "saved as UTF-8"
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: values nested too deeply") from None
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
        try:
            source_type = registry.get(str(plugin), key_path=f"{key}.plugin")
        except PluginError as e:  # the file, as every other config error names it
            raise PluginError(f"{origin}: {e}") from None
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
    if not sources and config.store is None:
        raise ConfigError(f"{origin}: backfill.sources: add a [[backfill.sources]] or a `store`")
    try:
        # `replace` runs __post_init__ again, now with the sources in place.
        config = msgspec.structs.replace(config, sources=sources)
        config.__post_init__()
    except ValueError as e:
        raise ConfigError(f"{origin}: backfill.{e}") from None
    return config
