"""A slow remote source that hands over its download piece by piece, for the resume tests."""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa
from nautilus_backfill import BarSource, SourceConfig, SourceResult, hookimpl
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.orchestrator import Backfill
from nautilus_backfill.registry import build_registry

MIN = 60_000_000_000
BAR = "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
START = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z
END = START + 3000 * MIN
CHUNK = 100


def price(ts: np.ndarray) -> np.ndarray:
    return np.round(1.1 + 0.00001 * (ts // MIN % 1000), 5)


class DownloadConfig(SourceConfig, frozen=True, kw_only=True):
    pause: float = 0.0
    chunk: int = CHUNK


class Download(BarSource):
    """Newest chunk first, like IB; each chunk handed over as it arrives."""

    remote = True
    config_type = DownloadConfig
    asked: list[tuple[int, int]] = []  # noqa: RUF012

    def fetch(self, request, span):
        Download.asked.append((span.start, span.end))
        end = span.end
        while end > span.start:
            start = max(span.start, end - self.config.chunk * MIN)
            time.sleep(self.config.pause)
            ts = np.arange(start, end, MIN, dtype=np.int64)
            p = price(ts)
            table = pa.table({"ts": ts, "open": p, "high": p, "low": p, "close": p, "volume": np.ones(len(ts))})
            span.progress(len(ts), (span.end - start) // MIN // self.config.chunk,
                          -(-(span.end - span.start) // MIN // self.config.chunk))
            span.partial(SourceResult(table, price_precision=5, size_precision=0), start, end)
            end = start
        return SourceResult(pa.table({"ts": pa.array([], pa.int64()), **{k: pa.array([], pa.float64())
                                      for k in ("open", "high", "low", "close", "volume")}}))


class Plugin:
    @hookimpl
    def register_sources(self, register):
        register("download", Download)


def run(store: str, pause: float = 0.0, deadline: str = "60s", chunk: int = CHUNK):
    registry = build_registry(entry_points=False, extra=[("download", Plugin())])
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START / 1e9))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(END / 1e9))
    cfg = config_from_dict({"backfill": {
        "store": store, "deadline": deadline,
        "requests": [{"bar_type": BAR, "start": iso, "end": end, "price_precision": 5, "size_precision": 0}],
        "sources": [{"name": "ib", "plugin": "download", "pause": pause, "chunk": chunk, "timeout": deadline}]}}, registry=registry)
    return Backfill(cfg, registry=registry).fetch()


def serve(pause: float) -> None:
    """Fork a download per store path read from stdin; print each child's pid, then its status."""
    import os

    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                run(line.strip(), pause=pause)
            finally:
                os._exit(0)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    serve(float(sys.argv[1]))
