"""
Count mode from a large CSV: ``bars = 500`` from a 10M-row file against 500 rows alone.

Builds, in a temporary folder, a sorted 10M-row CSV of one-minute bars, its last 500 rows as
a file of their own, and the big file gzipped (which cannot be read from the end, so it is
streamed through a bounded buffer). Each case runs in a fresh process (so peak RSS is its
own) and prints time and peak RSS, and their ratios to reading the 500-row file.
Run: python benchmarks/bench_csv_tail.py [--rows N] [--bars K]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.registry import build_registry
reg = build_registry(entry_points=False)
path, bars = sys.argv[1], int(sys.argv[2])
req = {"bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", "bars": bars,
       "end": "2100-01-01T00:00:00Z", "price_precision": 5, "size_precision": 0}
src = {"name": "f", "plugin": "csv", "path": path, "timeout": "600s", "sorted": True}
cfg = config_from_dict({"backfill": {"deadline": "600s", "requests": [req], "sources": [src]}},
                       registry=reg)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
report = Backfill(cfg, registry=reg).fetch().report.requests[0]
elapsed = time.perf_counter() - t
print(json.dumps({"s": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "injected": report.injected}))
"""


def build(folder: Path, rows: int, bars: int) -> dict[str, Path]:
    import gzip
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ts = 960_000_000 + 60 * np.arange(rows, dtype=np.int64)
    close = np.round(1.1 + np.cumsum(np.random.default_rng(1).normal(0, 1e-4, rows)), 5)
    table = pa.table({"timestamp": ts, "open": close, "high": np.round(close + 5e-5, 5),
                      "low": np.round(close - 5e-5, 5), "close": close,
                      "volume": np.full(rows, 1000.0)})  # fmt: skip
    paths = {"small": folder / "small.csv", "big": folder / "big.csv", "gz": folder / "big.csv.gz"}
    pacsv.write_csv(table, paths["big"])
    pacsv.write_csv(table.slice(rows - bars), paths["small"])
    with open(paths["big"], "rb") as src, gzip.open(paths["gz"], "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    return paths


def measure(path: Path, bars: int, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(bars)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["s"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = build(Path(tmp), args.rows, args.bars)
        size = paths["big"].stat().st_size / 1e6
        print(f"built {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        ref = measure(paths["small"], args.bars, args.repeat)
        print(f"{'case':44} {'time':>8} {'peak RSS':>10} {'time x':>8} {'RSS x':>7}")
        for name, key in (
            (f"{args.bars} bars from a {args.bars}-row file", "small"),
            (f"{args.bars} bars from {args.rows:,} rows (end)", "big"),
            (f"{args.bars} bars from {args.rows:,} rows .gz (stream)", "gz"),
        ):
            r = ref if key == "small" else measure(paths[key], args.bars, args.repeat)
            assert r["injected"] == args.bars, r
            print(
                f"{name:44} {r['s']:7.3f}s {r['rss_mb']:8.0f}MB {r['s'] / ref['s']:7.1f}x "
                f"{r['rss_mb'] / ref['rss_mb']:6.2f}x",
            )


if __name__ == "__main__":
    main()
