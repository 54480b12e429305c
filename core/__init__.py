"""
nautilus-backfill: warm-start NautilusTrader live strategies with historical bars.

Load a config and inject before ``node.run()``::

    report = Backfill.from_toml("backfill.toml").inject(node)

"""

from nautilus_backfill.config import BackfillConfig, BarRequestConfig, SourceConfig, load_config
from nautilus_backfill.errors import (
    BackfillError,
    ConfigError,
    InsufficientHistoryError,
    PluginError,
    SourceError,
)
from nautilus_backfill.hookspecs import hookimpl
from nautilus_backfill.orchestrator import Backfill, FetchResult
from nautilus_backfill.report import BackfillReport, RequestReport, SourceAttempt
from nautilus_backfill.source import (
    BAR_SCHEMA,
    BarRequest,
    BarSource,
    SourceContext,
    SourceResult,
    Span,
)
from nautilus_backfill.warmup import WarmUp, warm_up

__all__ = [
    "BAR_SCHEMA",
    "Backfill",
    "BackfillConfig",
    "BackfillError",
    "BackfillReport",
    "BarRequest",
    "BarRequestConfig",
    "BarSource",
    "ConfigError",
    "FetchResult",
    "InsufficientHistoryError",
    "PluginError",
    "RequestReport",
    "SourceAttempt",
    "SourceConfig",
    "SourceContext",
    "SourceError",
    "SourceResult",
    "Span",
    "WarmUp",
    "hookimpl",
    "load_config",
    "warm_up",
]
