"""The ``nautilus-backfill`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from nautilus_backfill.errors import BackfillError
from nautilus_backfill.report import RequestReport


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
    rows = [
        {
            "name": e.name,
            "plugin": e.plugin,
            "package": e.package,
            "version": e.version,
            "hooks": sorted(
                h.name for h in registry.pm.get_hookcallers(registry.pm.get_plugin(e.plugin)) or []
            ),
        }
        for e in registry.entries.values()
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
    """Validate CONFIG; exit 0 when it is valid, 2 otherwise."""
    from nautilus_backfill.orchestrator import Backfill

    try:
        backfill = Backfill.from_toml(config)
    except BackfillError as e:
        _fail(str(e))
    n, m = len(backfill.config.requests), len(backfill.config.sources)
    click.echo(f"{config}: ok ({n} request{'s' * (n != 1)}, {m} source{'s' * (m != 1)})")


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def fetch(config: Path, as_json: bool) -> None:
    """Run the backfill for CONFIG without a node and print the report."""
    from nautilus_backfill.orchestrator import Backfill

    try:
        backfill = Backfill.from_toml(config)
    except BackfillError as e:
        _fail(str(e))
    progress = None
    if not as_json and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=len(backfill.config.requests), unit="request", file=sys.stderr)

    def done(report: RequestReport) -> None:
        if progress is not None:
            progress.set_postfix_str(report.bar_type)
            progress.update(1)

    result = backfill.fetch(on_request_done=done)
    if progress is not None:
        progress.close()
    report = result.report
    click.echo(report.to_json() if as_json else report.render())
    sys.exit(0 if report.ok else 1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def demo(as_json: bool) -> None:
    """Run a backfill of the bundled sample data and print the report."""
    from nautilus_backfill import sample
    from nautilus_backfill.orchestrator import Backfill

    config = sample.folder() / sample.CONFIG_NAME
    if not as_json:
        click.echo(f"config: {config}\n")
    result = Backfill.from_toml(config).fetch()
    click.echo(result.report.to_json() if as_json else result.report.render())
    if not as_json:
        for bar_type, bars in result.bars.items():
            click.echo(f"\nlast bars of {bar_type}:")
            for bar in bars[-3:]:
                click.echo(f"  {bar}")
    sys.exit(0 if result.report.ok else 1)


if __name__ == "__main__":
    main()
