"""The plugin manager: built-in and third-party plugins, and the sources they register."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
import pluggy
from nautilus_backfill import hookspecs
from nautilus_backfill.errors import PluginError
from nautilus_backfill.source import BarSource

DEFAULT_PLUGINS = (
    "nautilus_backfill.plugins.ib",
    "nautilus_backfill.plugins.csv",
    "nautilus_backfill.plugins.parquet",
    "nautilus_backfill.plugins.freqtrade",
    "nautilus_backfill.plugins.lean",
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
    entries : dict[str, SourceEntry]
        The sources by name.
    broken : dict[str, str]
        Plugins that failed to load or register, with the reason; the others work.
    plugins : dict[str, tuple[str, str]]
        Every loaded plugin's package and version, by plugin name.

    """

    pm: pluggy.PluginManager
    entries: dict[str, SourceEntry] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    plugins: dict[str, tuple[str, str]] = field(default_factory=dict)

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
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        raise PluginError(f"{key_path}: no plugin '{name}' (installed: {installed}){guess}")

    def checks_bars(self) -> bool:
        """
        Return whether any plugin implements ``validate_bars``.

        Returns
        -------
        bool

        """
        return bool(self.pm.hook.validate_bars.get_hookimpls())

    def validate_bars(
        self, request: Any, source: str, table: Any
    ) -> tuple[list[dict[str, np.ndarray]], list[str]]:
        """
        Call every plugin's ``validate_bars`` hook, each on its own.

        A plugin that raises, or returns anything but boolean masks as long as the table, has
        its reasons skipped with a note naming it; the other plugins' masks still count.

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
        tuple[list[dict[str, numpy.ndarray]], list[str]]
            The masks per plugin, and notes for the report.

        """
        masks: list[dict[str, np.ndarray]] = []
        notes: list[str] = []
        n = table.num_rows
        kwargs = {"request": request, "source": source, "table": table}
        for impl in self.pm.hook.validate_bars.get_hookimpls():
            where = f"validate_bars of plugin '{impl.plugin_name}'"
            try:
                out = impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception as e:
                notes.append(f"{where} raised {type(e).__name__}: {e}; its checks were skipped")
                continue
            if out is None:
                continue
            if not isinstance(out, dict):
                notes.append(f"{where} returned {type(out).__name__}, not a dict of masks; skipped")
                continue
            good: dict[str, np.ndarray] = {}
            for reason, mask in out.items():
                arr = np.asarray(mask)
                if not isinstance(reason, str) or arr.dtype != np.bool_ or arr.shape != (n,):
                    notes.append(
                        f"{where}: mask {reason!r} must be a boolean array of {n} values (one "
                        f"per bar), was {arr.dtype} of shape {arr.shape}; its reasons were skipped"
                    )
                    good = {}
                    break
                good[reason] = arr
            if good:
                masks.append(good)
        return masks, notes


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
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr, flush=True))
        pm.enable_tracing()
    blocked = _split_env(ENV_BLOCK) or set()
    allowed = _split_env(ENV_LOAD)
    for name in blocked:
        pm.set_blocked(name)
    registry = SourceRegistry(pm)

    def add(name: str, plugin: object) -> None:
        # A plugin whose hooks do not match the specs is set aside; the others still load.
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as e:
            registry.broken[name] = "invalid hook: " + " ".join(str(e).split())
        except ValueError as e:  # a name or object registered twice
            registry.broken[name] = str(e)

    for path in default_plugins:
        name = path.rsplit(".", 1)[-1]
        if name in blocked:
            continue
        try:
            module = importlib.import_module(path)
        except Exception as e:  # a broken built-in must not take the others down
            registry.broken[name] = f"{type(e).__name__}: {e}"
            continue
        add(name, module)

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
                add(ep.name, plugin)

    for name, plugin in extra:
        add(name, plugin)

    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as e:
            name = pm.get_name(e.plugin) or repr(e.plugin)
            registry.broken[name] = "implements an unknown hook: " + " ".join(str(e).split())
            pm.unregister(e.plugin)

    for plugin_name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        package, version = (
            _distribution(plugin) if isinstance(plugin, ModuleType) else (plugin_name, "")
        )
        registry.plugins[plugin_name] = (package, version)
        found: dict[str, SourceEntry] = {}

        def register(
            name: str,
            source_type: type[BarSource],
            _plugin: str = plugin_name,
            _package: str = package,
            _version: str = version,
            _found: dict[str, SourceEntry] = found,
        ) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"registered a source with the name {name!r}, not a string")
            if not (isinstance(source_type, type) and issubclass(source_type, BarSource)):
                raise PluginError(
                    f"registered '{name}' with {source_type!r}, which is not a BarSource subclass",
                )
            existing = registry.entries.get(name) or _found.get(name)
            if existing is not None:
                raise PluginError(
                    f"registers source '{name}', already registered by plugin '{existing.plugin}'",
                )
            _found[name] = SourceEntry(name, source_type, _plugin, _package, _version)

        hook = pm.subset_hook_caller("register_sources", remove_plugins=[])
        impls = [i for i in hook.get_hookimpls() if i.plugin is plugin]
        try:
            for impl in impls:
                impl.function(register=register)
        except Exception as e:  # a plugin that cannot register fails alone
            what = "" if isinstance(e, PluginError) else f"{type(e).__name__}: "
            registry.broken[plugin_name] = f"register_sources failed: {what}{e}"
            pm.unregister(plugin)
            del registry.plugins[plugin_name]
            continue
        registry.entries.update(found)
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
