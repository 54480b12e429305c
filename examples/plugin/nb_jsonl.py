"""nb_jsonl: a nautilus-backfill source plugin for bars in JSON-lines files."""

from __future__ import annotations

import json

import pyarrow as pa
from nautilus_backfill import BarSource, SourceConfig, SourceError, SourceResult, hookimpl
from nautilus_backfill.paths import expand
from nautilus_backfill.source import in_span
from nautilus_backfill.timestamps import to_epoch_ns


class JsonlConfig(SourceConfig, frozen=True, kw_only=True):
    """
    A JSON-lines source: one ``{"time": ..., "open": ..., ...}`` object a line.

    Parameters
    ----------
    path : str
        A file, glob or template such as ``"data/{symbol}-{step}.jsonl"``.
    time_key : str, default "time"
        The key holding the bar's open time (ISO 8601 or epoch).

    """

    path: str
    time_key: str = "time"


def _number(value):
    # A number, or null: text, booleans and missing keys make the row unparseable.
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class JsonlSource(BarSource):
    """Bars from JSON-lines files; stateless, so concurrent `fetch` calls are safe."""

    config_type = JsonlConfig

    def _files(self, request):
        return expand(self.context.resolve(self.config.path), request.bar_type)

    def check(self, requests):
        missing = [r for r in requests if not self._files(r)]
        return [f"path: no file matches {self.config.path} for {r.bar_type}" for r in missing]

    def fetch(self, request, span):
        rows, files, lines = [], [], []
        for name in self._files(request):
            try:
                with open(name) as f:
                    for n, line in enumerate(f, 1):
                        if line.strip():
                            try:
                                rows.append(json.loads(line))
                            except json.JSONDecodeError:
                                rows.append({})  # nulls: counted as unparseable, with its line
                            files.append(name)
                            lines.append(n)
            except OSError as e:
                raise SourceError(f"{name}: cannot read ({e.strerror})") from None
        key = self.config.time_key
        times = [None if r.get(key) is None else str(r.get(key)) for r in rows]
        table = pa.table(
            {
                "ts": to_epoch_ns(pa.array(times, pa.string())),
                **{
                    c: pa.array([_number(r.get(c)) for r in rows], pa.float64())
                    for c in ("open", "high", "low", "close", "volume")
                },
                "_row": pa.array(lines, pa.int64()),
                "_file": pa.array(files, pa.string()),
            }
        )
        # The host would drop rows outside the span too, but count them as received.
        table = table.filter(in_span(table["ts"], span, 0, request.step_ns))
        return SourceResult(table, timestamp_is="open", notes=[f"read {len(set(files))} file(s)"])


@hookimpl
def register_sources(register):
    register("jsonl", JsonlSource)
