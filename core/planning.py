"""Looking ahead without any network: what `check` finds and what `plan` shows."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import portion as P
from nautilus_backfill.config import BackfillConfig, SourceConfig
from nautilus_backfill.errors import describe
from nautilus_backfill.registry import SourceRegistry
from nautilus_backfill.source import BarRequest, BarSource, SourceContext
from nautilus_backfill.store import StoreSource
from nautilus_backfill.timeutil import format_ns


def _open(
    config: BackfillConfig, registry: SourceRegistry
) -> list[tuple[SourceConfig, BarSource | None, str | None]]:
    context = SourceContext(Path(config.base_dir or "."), None)
    opened: list[tuple[SourceConfig, BarSource | None, str | None]] = []
    for cfg in config.sources:
        try:
            opened.append((cfg, registry.get(cfg.plugin)(cfg, context), None))
        except Exception as e:
            opened.append((cfg, None, describe(e)))
    return opened


def _close(opened: list[tuple[SourceConfig, BarSource | None, str | None]]) -> None:
    for _, source, _ in opened:
        if source is not None:
            with contextlib.suppress(Exception):
                source.close()


def check_sources(
    config: BackfillConfig, registry: SourceRegistry, requests: list[BarRequest]
) -> list[str]:
    """
    Ask every source's offline ``check`` about every request.

    Parameters
    ----------
    config : BackfillConfig
        The configuration.
    registry : SourceRegistry
        The source plugins.
    requests : list[BarRequest]
        The requests, parsed.

    Returns
    -------
    list[str]
        One problem a line, each starting with the source's key path.

    """
    problems: list[str] = []
    opened = _open(config, registry)
    try:
        for i, (cfg, source, error) in enumerate(opened):
            key = f"backfill.sources[{i}]"
            if source is None:
                problems.append(f"{key}: {error}")
                continue
            try:
                found = source.check(requests)
                if not isinstance(found, list):
                    raise TypeError(f"check returned {type(found).__name__}, not a list")
                problems.extend(f"{key}.{p}" for p in found)
            except Exception as e:  # a plugin's check must not hide the others' findings
                problems.append(f"{key}: plugin '{cfg.plugin}' check failed: {describe(e)}")
    finally:
        _close(opened)
    return problems


def plan_requests(
    config: BackfillConfig,
    registry: SourceRegistry,
    requests: list[BarRequest],
    store: StoreSource | None,
) -> list[dict[str, Any]]:
    """
    Return, per request and source, what a fetch would ask for.

    Parameters
    ----------
    config : BackfillConfig
        The configuration.
    registry : SourceRegistry
        The source plugins.
    requests : list[BarRequest]
        The requests, parsed.
    store : StoreSource, optional
        The write-through store, when there is one.

    Returns
    -------
    list[dict[str, Any]]
        Per request: ``bar_type``, ``window`` and ``sources``, each source with its ``name``
        and the ``lines`` it plans.

    """
    opened = _open(config, registry)
    out = []
    try:
        for req, req_cfg in zip(requests, config.requests, strict=True):
            window = (
                f"the {req.count} newest bars"
                if req.count is not None
                else f"all bars from {format_ns(req.start_ns)}"
            ) + (f" before {req_cfg.end}" if req_cfg.end else " until now")
            rows = []
            if store is not None:
                rows.append({"name": "store", "lines": store_lines(store, req)})
            for src_cfg, source, error in opened:
                lines = [f"cannot open: {error}"]
                if source is not None:
                    try:
                        lines = [str(x) for x in source.plan(req)]
                    except Exception as e:
                        lines = [f"plugin '{src_cfg.plugin}' plan failed: {describe(e)}"]
                rows.append({"name": src_cfg.name, "lines": lines})
            out.append({"bar_type": str(req.bar_type), "window": window, "sources": rows})
    finally:
        _close(opened)
    return out


def store_lines(store: StoreSource, req: BarRequest) -> list[str]:
    """
    Return what the store holds for `req`, and what the sources would be asked for.

    Parameters
    ----------
    store : StoreSource
        The store.
    req : BarRequest
        The request.

    Returns
    -------
    list[str]

    """
    try:
        known = store.answered(req)
    except Exception as e:
        return [f"cannot read: {describe(e)}"]

    def iso(ns: float) -> str | None:
        return format_ns(int(ns) - int(ns) % 1_000_000_000)

    lines = [f"answered before: {iso(a.lower)} .. {iso(a.upper)}" for a in known if not a.empty]
    lines = lines[-3:]
    if req.start_ns is None:
        return [*lines, "the sources are asked for what it lacks of the newest bars"]
    missing = P.closedopen(req.start_ns, req.end_ns) - known
    asked = [f"sources asked for {iso(m.lower)} .. {iso(m.upper)}" for m in missing if not m.empty]
    return lines + (asked[:5] or ["holds the whole window: no source is asked"])
