"""The ``nautilus-backfill`` command line."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
from nautilus_backfill.errors import BackfillError
from nautilus_backfill.progress import Progress
from nautilus_backfill.timeutil import format_age, format_ns


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(package_name="nautilus-backfill")
def main() -> None:
    """Warm-start NautilusTrader live strategies with historical bars."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List installed source plugins, their package and version."""
    from nautilus_backfill.registry import default_registry

    try:
        registry = default_registry()
    except BackfillError as e:
        _fail(str(e))

    def hooks(plugin: str) -> list[str]:
        callers = registry.pm.get_hookcallers(registry.pm.get_plugin(plugin)) or []
        return sorted(h.name for h in callers)

    rows = [
        {
            "name": e.name,
            "plugin": e.plugin,
            "package": e.package,
            "version": e.version,
            "hooks": hooks(e.plugin),
        }
        for e in registry.entries.values()
    ]
    # Plugins that register no source (only validate_bars, say) are listed under their name.
    with_sources = {e.plugin for e in registry.entries.values()}
    rows += [
        {"name": name, "plugin": name, "package": package, "version": version, "hooks": hooks(name)}
        for name, (package, version) in sorted(registry.plugins.items())
        if name not in with_sources
    ]
    broken = [{"name": n, "error": err} for n, err in sorted(registry.broken.items())]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "broken": broken}, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['name']:<12}{row['package']:<28}{row['version']:<10}{', '.join(row['hooks'])}"
        )
    for b in broken:
        click.echo(f"{b['name']:<12}BROKEN: {b['error']}")


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
def check(config: Path) -> None:
    """Validate CONFIG without any network; exit 0 when it is valid, 2 otherwise."""
    from nautilus_backfill.orchestrator import Backfill

    try:
        backfill = Backfill.from_toml(config)
    except BackfillError as e:
        _fail(str(e))
    problems = backfill.check()
    for problem in problems:
        click.echo(f"error: {config}: {problem}", err=True)
    if problems:
        sys.exit(2)
    n, m = len(backfill.config.requests), len(backfill.config.sources)
    click.echo(f"{config}: ok ({n} request{'s' * (n != 1)}, {m} source{'s' * (m != 1)})")


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(config: Path, as_json: bool) -> None:
    """Show what fetching CONFIG would ask each source for, without connecting to anything."""
    from nautilus_backfill.orchestrator import Backfill

    try:
        backfill = Backfill.from_toml(config)
    except BackfillError as e:
        _fail(str(e))
    rows = backfill.plan()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['bar_type']}: {row['window']}")
        for source in row["sources"]:
            lines = source["lines"] or ["asked for what the sources before it leave missing"]
            for line in lines:
                line = line.removeprefix(f"{source['name']}: ")
                click.echo(f"  {source['name']:<12}{line}")


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on stderr.")
def fetch(config: Path, as_json: bool, quiet: bool) -> None:
    """
    Run the backfill for CONFIG without a node and print the report.

    Exit 0 when every request got bars (SHORT and STALE only warn, unless on_insufficient =
    "fail"), 1 when a request got none (FAILED) or fell short under on_insufficient = "fail",
    2 when CONFIG is invalid.
    """
    from nautilus_backfill.orchestrator import Backfill

    try:
        backfill = Backfill.from_toml(config)
    except BackfillError as e:
        _fail(str(e))
    bar = None
    on_progress = None
    if not quiet and sys.stderr.isatty():
        for line in backfill.remote_plan():
            click.echo(f"plan: {line}", err=True)
        from tqdm import tqdm

        # The time left is ours, not tqdm's: it knows about pacing waits the rate cannot show.
        bar = tqdm(
            total=0,
            unit="request",
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )
        stage: list[str] = []
        lock = threading.Lock()
        last: list[tuple[Progress, float]] = []

        def show() -> None:
            p, at = last[-1]
            tail = ""
            if p.eta_s is not None:
                tail = f", about {format_age(max(0.0, p.eta_s - (time.monotonic() - at)))} left"
            bar.set_postfix_str(f"{p.bars:,} bars{tail}", refresh=False)
            bar.refresh()

        def on_progress(p: Progress) -> None:
            with lock:
                if not stage or stage[-1] != p.source:
                    stage.append(p.source)
                    bar.reset(total=p.parts_total)
                    bar.set_description(p.source)
                bar.total = p.parts_total
                bar.n = p.parts_done
                last.append((p, time.monotonic()))
                del last[:-1]
                show()

        def tick() -> None:  # keep the clock and the time left moving between answers
            while not ticking.wait(1.0):
                with lock:
                    if last:
                        show()

        ticking = threading.Event()
        threading.Thread(target=tick, daemon=True).start()

    result = backfill.fetch(on_progress=on_progress)
    if bar is not None:
        ticking.set()
        bar.close()
    report = result.report
    click.echo(report.to_json() if as_json else report.render())
    # A script running `fetch && start-node` must not go on when a request got no bar at all.
    failed = any(r.status == "failed" for r in report.requests)
    sys.exit(0 if report.ok and not failed else 1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option(
    "--log-level",
    default="ERROR",
    show_default=True,
    help="The node's console log level (INFO shows the backfill report in the node's log).",
)
def demo(as_json: bool, log_level: str) -> None:
    """Warm-start a TradingNode from bundled sample data and show its first live bars."""
    from nautilus_backfill import sample
    from nautilus_backfill.demo import run_demo

    config = sample.folder() / sample.CONFIG_NAME
    replay = str(sample.folder() / sample.CSV_NAME)
    if not as_json:
        click.echo("nautilus-backfill demo: a TradingNode warm-started before node.run()")
        click.echo(f"backfill config: {config}\n")
    try:
        result = run_demo(config, replay, log_level=log_level.upper())
    except BackfillError as e:
        _fail(str(e), 1)
    if as_json:
        doc = result.report.to_dict()
        doc["demo"] = {
            "strategy": str(result.strategy.id),
            "historical_bars_fed": len(result.strategy.historical),
            "live_bars_skipped_as_already_backfilled": result.skipped,
            "live": [
                {**row, "ts_event": format_ns(row["ts_event"])} for row in result.strategy.live
            ],
        }
        click.echo(json.dumps(doc, indent=2))
        sys.exit(0 if result.report.ok else 1)
    click.echo(result.report.render())
    strategy = result.strategy
    fast, slow = strategy.fast_ema, strategy.slow_ema
    click.echo(
        f"\n{strategy.id}: {fast} and {slow} on {strategy.bar_type} were fed "
        f"{len(strategy.historical)} backfilled bars (on_historical_data) before any live bar",
    )
    if result.skipped:
        click.echo(
            f"{result.skipped} replayed bar(s) for an interval already backfilled: "
            "not applied twice",
        )
    click.echo("\nlive bars (REPLAY of the bundled sample, labelled so: not market data):")
    click.echo(
        f"  {'ts_event':<22}{'close':>9}{'EMA(10)':>10}{'n':>5}{'EMA(20)':>10}{'n':>5}  signal"
    )
    for row in strategy.live:
        click.echo(
            f"  {format_ns(row['ts_event']):<22}{row['close']:>9.5f}{row['fast_ema']:>10.5f}"
            f"{row['fast_count']:>5}{row['slow_ema']:>10.5f}{row['slow_count']:>5}  "
            f"{row['signal'] or 'cold'}",
        )
    first = strategy.live[0] if strategy.live else None
    state = "warm" if first and first["warm"] else "COLD"
    click.echo(f"\nstrategy {state} at its first live bar; node stopped in {result.elapsed_s:.1f}s")
    sys.exit(0 if result.report.ok and first and first["warm"] else 1)


@main.group()
def store() -> None:
    """Inspect a write-through store (a ParquetDataCatalog root or fsspec URL)."""


def _store_args(
    url: str | None, options: tuple[str, ...], config: Path | None
) -> tuple[str, dict[str, Any]]:
    # The URL and store_options from the command line, or from a backfill TOML's [backfill].
    opts: dict[str, Any] = {}
    if config is not None:
        import tomllib

        try:
            doc = tomllib.loads(config.read_text())
        except (OSError, ValueError) as e:
            _fail(f"{config}: cannot read it: {e}")
        section = doc.get("backfill", {}) if isinstance(doc, dict) else {}
        stored = section.get("store_options") or {}
        if not isinstance(stored, dict):
            _fail(f"{config}: backfill.store_options must be a table of KEY = VALUE")
        opts.update(stored)
        if url is None:
            url = section.get("store")
            if not isinstance(url, str) or not url:
                _fail(f"{config}: no backfill.store; give the store URL as an argument")
            if "://" not in url and not Path(url).is_absolute():
                url = str((config.parent / url).resolve())
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--option {item!r}: expected KEY=VALUE, e.g. --option endpoint_url=http://...")
        opts[key.strip()] = _option_value(value)
    if url is None:
        _fail("give the store URL, or --config with a backfill TOML that names it")
    assert url is not None
    return url, opts


def _option_value(text: str) -> Any:
    # Numbers and true/false as TOML would read them; anything else stays a string.
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _open_store(url: str, opts: dict[str, Any]) -> Any:
    from nautilus_backfill.store import BarStore, redact

    try:
        bs = BarStore(url, opts)
        is_store = bs.fs.isdir(bs.root) and (
            bs.fs.exists(f"{bs.root}/data/bar") or not bs.fs.ls(bs.root)
        )
        exists = bs.fs.exists(bs.root)
    except Exception as e:  # an unknown protocol, a missing extra, bad options
        _store_fail(redact(f"{url}: cannot open the store: {_describe(e)}", opts, url))
    # A typo must not read as a healthy, empty store.
    if not exists:
        _store_fail(bs.redacted(f"{url}: no such store (nothing at that path)"))
    if not is_store:
        _store_fail(bs.redacted(f"{url}: not a store (a store is a folder with data/bar/ in it)"))
    return bs


def _describe(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}" if not isinstance(e, BackfillError) else str(e)
    lowered = text.lower()
    if any(w in lowered for w in ("credential", "access denied", "forbidden", "signature")):
        text += (
            " (the store needs credentials: pass them with --option key=... --option "
            "secret=..., or --config with the backfill TOML whose store_options has them)"
        )
    return text


def _store_fail(message: str) -> None:
    _fail(message)


_STORE_OPTS = [
    click.option(
        "--option",
        "options",
        multiple=True,
        metavar="KEY=VALUE",
        help="A store option for fsspec (endpoint_url, key, secret, ...); repeatable.",
    ),
    click.option(
        "--config",
        type=click.Path(path_type=Path),
        help="A backfill TOML: the store and store_options come from its [backfill] table.",
    ),
]


def _with_store_opts(f: Any) -> Any:
    for option in reversed(_STORE_OPTS):
        f = option(f)
    return f


@store.command("info")
@click.argument("url", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_store_opts
def store_info(
    url: str | None, as_json: bool, options: tuple[str, ...], config: Path | None
) -> None:
    """List bar types, spans, bar counts and known holes in the store at URL."""
    url, opts = _store_args(url, options, config)
    bs = _open_store(url, opts)
    try:
        rows = bs.info()
    except Exception as e:  # unreachable, no permission, no credentials: a message, no trace
        _store_fail(bs.redacted(f"{url}: cannot read the store: {_describe(e)}"))
    shown = bs.redacted()
    notes = bs.take_notes()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        for n in notes:
            click.echo(f"note: {n}", err=True)
        return
    if not rows:
        click.echo(f"{shown}: no bars")
    for r in rows:
        if not r["files"]:
            click.echo(f"{r['bar_type']}: no bar files (folder {r['folder']})")
        else:
            click.echo(
                f"{r['bar_type']}: {r['bars']} bars in {r['files']} file(s), "
                f"closes {r['first_close']} .. {r['last_close']}"
            )
        for a, b in r["answered"]:
            click.echo(f"  answered  {a} .. {b}")
        for a, b in r["holes"]:
            click.echo(f"  hole      {a} .. {b}")
    for n in notes:
        click.echo(f"note: {n}")


@store.command("verify")
@click.argument("url", required=False)
@click.option(
    "--repair",
    is_flag=True,
    help="Also remove what interrupted writes left and quarantine unreadable files "
    "(every backfill does this on its own when it opens a bar type).",
)
@_with_store_opts
def store_verify(
    url: str | None, repair: bool, options: tuple[str, ...], config: Path | None
) -> None:
    """Read and check every file of the store at URL; exit 1 if anything is wrong."""
    url, opts = _store_args(url, options, config)
    bs = _open_store(url, opts)
    try:
        files = sum(len(bs.files(name, live_only=False)) for name in bs.bar_types())
        problems = bs.verify(repair=repair)
    except Exception as e:  # unreachable, no permission, no credentials: a message, no trace
        _store_fail(bs.redacted(f"{url}: cannot read the store: {_describe(e)}"))
    for n in bs.take_notes():
        click.echo(f"note: {n}")
    for p in problems:
        click.echo(p)
    shown = bs.redacted()
    if repair and problems:
        try:
            left = bs.verify()
        except Exception as e:  # as above
            _store_fail(bs.redacted(f"{url}: cannot read the store: {_describe(e)}"))
        for p in left:
            click.echo(f"still: {p}")
        click.echo(
            f"{shown}: {files} file(s) checked, {len(problems)} problem(s), "
            f"{len(problems) - len(left)} repaired"
        )
        sys.exit(1 if left else 0)
    click.echo(f"{shown}: {files} file(s) checked, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
