"""The plugin manager: built-in and third-party plugins, and the sources they register."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

import pluggy
from nautilus_backfill import hookspecs
from nautilus_backfill.errors import PluginError
from nautilus_backfill.source import BarSource

DEFAULT_PLUGINS = (
    "nautilus_backfill.plugins.ib",
    "nautilus_backfill.plugins.csv",
    "nautilus_backfill.plugins.parquet",
    "nautilus_backfill.plugins.freqtrade",
)
ENTRY_POINT_GROUP = hookspecs.PROJECT

# Comma-separated entry-point names; when set, only these third-party plugins load.
ENV_LOAD = "NAUTILUS_BACKFILL_LOAD_PLUGINS"
# Comma-separated plugin names (built-in or third-party) never to register.
ENV_BLOCK = "NAUTILUS_BACKFILL_BLOCK_PLUGINS"
# Set to 1 to log every hook call to stderr.
ENV_TRACE = "NAUTILUS_BACKFILL_TRACE_HOOKS"


@dataclass(frozen=True)
class SourceEntry:
    """
    A registered source type and where it came from.

    Parameters
    ----------
    name : str
        The name configs use in ``plugin = "..."``.
    source_type : type[BarSource]
        The source class.
    plugin : str
        The plugin that registered it.
    package : str
        The distribution that ships the plugin.
    version : str
        That distribution's version.

    """

    name: str
    source_type: type[BarSource]
    plugin: str
    package: str
    version: str


@dataclass
class SourceRegistry:
    """
    The sources every loaded plugin registered, and the plugins that failed to load.

    Parameters
    ----------
    pm : pluggy.PluginManager
        The plugin manager.

    """

    pm: pluggy.PluginManager
    entries: dict[str, SourceEntry] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        """
        Return the registered source names, sorted.

        Returns
        -------
        list[str]

        """
        return sorted(self.entries)

    def get(self, name: str, key_path: str = "plugin") -> type[BarSource]:
        """
        Return the source class registered under `name`.

        Parameters
        ----------
        name : str
            The source name.
        key_path : str, default "plugin"
            Named in the error message.

        Returns
        -------
        type[BarSource]

        Raises
        ------
        PluginError
            If no plugin registered `name`.

        """
        entry = self.entries.get(name)
        if entry is not None:
            return entry.source_type
        installed = ", ".join(self.names()) or "none"
        if name in self.broken:
            raise PluginError(
                f"{key_path}: plugin '{name}' failed to load: {self.broken[name]} "
                f"(installed: {installed})",
            )
        raise PluginError(f"{key_path}: no plugin '{name}' (installed: {installed})")

    def checks_bars(self) -> bool:
        """
        Return whether any plugin implements ``validate_bars``.

        Returns
        -------
        bool

        """
        return bool(self.pm.hook.validate_bars.get_hookimpls())

    def validate_bars(self, request: Any, source: str, table: Any) -> list[dict[str, Any]]:
        """
        Call every plugin's ``validate_bars`` hook.

        Parameters
        ----------
        request : BarRequest
            The request.
        source : str
            The source name.
        table : pa.Table
            The bars.

        Returns
        -------
        list[dict[str, numpy.ndarray]]

        """
        return [
            r for r in self.pm.hook.validate_bars(request=request, source=source, table=table) if r
        ]


def _distribution(module: ModuleType) -> tuple[str, str]:
    top = module.__name__.split(".")[0]
    if top == "nautilus_backfill":  # built-ins (an editable install maps no top-level name)
        return "nautilus-backfill", importlib.metadata.version("nautilus-backfill")
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return top, "unknown"


def _split_env(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def build_registry(
    default_plugins: Iterable[str] = DEFAULT_PLUGINS,
    entry_points: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> SourceRegistry:
    """
    Create a plugin manager, register plugins, and collect their sources.

    Parameters
    ----------
    default_plugins : Iterable[str]
        Module paths of built-in plugins.
    entry_points : bool, default True
        Load third-party plugins from the ``nautilus_backfill`` entry-point group.
    extra : Iterable[tuple[str, object]]
        ``(name, plugin)`` pairs to register as well (tests use this).

    Returns
    -------
    SourceRegistry

    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get(ENV_TRACE) == "1":
        pm.trace.root.setwriter(lambda msg: print(msg, end="", flush=True))
        pm.enable_tracing()
    blocked = _split_env(ENV_BLOCK) or set()
    allowed = _split_env(ENV_LOAD)
    for name in blocked:
        pm.set_blocked(name)
    registry = SourceRegistry(pm)

    for path in default_plugins:
        name = path.rsplit(".", 1)[-1]
        if name in blocked:
            continue
        try:
            module = importlib.import_module(path)
        except Exception as e:  # a broken built-in must not take the others down
            registry.broken[name] = f"{type(e).__name__}: {e}"
            continue
        pm.register(module, name=name)

    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                continue
            try:
                plugin = ep.load()
            except Exception as e:
                registry.broken[ep.name] = f"{type(e).__name__}: {e} (entry point {ep.value})"
                continue
            if pm.get_plugin(ep.name) is None and not pm.is_blocked(ep.name):
                pm.register(plugin, name=ep.name)

    for name, plugin in extra:
        pm.register(plugin, name=name)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        name = pm.get_name(e.plugin) or repr(e.plugin)
        raise PluginError(f"plugin '{name}' implements an unknown hook: {e}") from None

    for plugin_name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        package, version = (
            _distribution(plugin) if isinstance(plugin, ModuleType) else (plugin_name, "")
        )

        def register(
            name: str,
            source_type: type[BarSource],
            _plugin: str = plugin_name,
            _package: str = package,
            _version: str = version,
        ) -> None:
            if not (isinstance(source_type, type) and issubclass(source_type, BarSource)):
                raise PluginError(
                    f"plugin '{_plugin}' registered '{name}' with {source_type!r}, "
                    "which is not a BarSource subclass",
                )
            existing = registry.entries.get(name)
            if existing is not None:
                raise PluginError(
                    f"plugin '{_plugin}' registers source '{name}', already registered by "
                    f"plugin '{existing.plugin}'",
                )
            registry.entries[name] = SourceEntry(name, source_type, _plugin, _package, _version)

        hook = pm.subset_hook_caller("register_sources", remove_plugins=[])
        impls = [i for i in hook.get_hookimpls() if i.plugin is plugin]
        for impl in impls:
            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as e:
                registry.broken[plugin_name] = f"register_sources failed: {type(e).__name__}: {e}"
    return registry


@cache
def default_registry() -> SourceRegistry:
    """
    Return the process-wide registry of built-in and installed plugins.

    Returns
    -------
    SourceRegistry

    """
    return build_registry()
