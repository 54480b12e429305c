"""
Portfolio scale: many bar types from one catalog, and the memory of one long request.

Builds ParquetDataCatalogs with NautilusTrader's own ``write_data`` (one call per bar type),
then times, each run in a fresh process, best of several and the median:
  many-300   300 bar types x 2,000 one-minute bars
      a) NautilusTrader: one ``catalog.bars([all 300])`` + ``cache.add_bars`` per bar type
      b) ``Backfill.inject()``: 300 requests, one parquet source on the catalog
  many-2000  2,000 bar types x 500 bars, the same two paths
  memory-5M  one bar type, 5,000,000 bars: peak RSS (the process's ``VmHWM``, i.e. the
      ``ru_maxrss`` of a fresh process) of NautilusTrader's ``catalog.bars()`` + ``add_bars``
      against ``Backfill.inject()`` of the same bars
Run: make bench   (or: python benchmarks/bench_scale.py [--repeat K] [--only many-300,...])
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_S = 1_262_304_000  # 2010-01-01: 5M minutes later is still in the past
STEP_S = 60
CASES = {  # name: (bar types, bars each)
    "many-300": (300, 2_000),
    "many-2000": (2_000, 500),
    "memory-5M": (1, 5_000_000),
}


def _bar_types(n: int) -> list[str]:
    return [f"S{i:04d}.XNAS-1-MINUTE-LAST-EXTERNAL" for i in range(n)]


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def build(folder: Path, types: int, bars: int) -> None:
    import numpy as np
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    catalog = ParquetDataCatalog(str(folder / "catalog"))
    rng = np.random.default_rng(7)
    lines = ['[backfill]\ndeadline = "900s"\n']
    for i, name in enumerate(_bar_types(types)):
        # Staggered histories, so the bar types' windows overlap without being the same.
        ts_open = (START_S + STEP_S * np.arange(i, i + bars, dtype=np.int64)) * 10**9
        for lo in range(0, bars, 1_000_000):  # write_data in slices: keeps the builder's memory low
            hi = min(bars, lo + 1_000_000)
            close = np.round(100 + np.cumsum(rng.normal(0, 0.05, hi - lo)), 2)
            open_ = np.round(np.concatenate([[close[0]], close[:-1]]), 2)
            high = np.round(np.maximum(open_, close) + 0.01, 2)
            low = np.round(np.minimum(open_, close) - 0.01, 2)
            volume = rng.integers(1, 1000, hi - lo).astype(np.float64)
            ts = ts_open[lo:hi]
            catalog.write_data(
                Bar.from_raw_arrays_to_list(
                    BarType.from_str(name), 2, 0, open_, high, low, close, volume,
                    ts.astype(np.uint64), (ts + STEP_S * 10**9).astype(np.uint64),
                )
            )  # fmt: skip
        end = START_S + STEP_S * (i + bars)
        lines.append(
            f'[[backfill.requests]]\nbar_type = "{name}"\nbars = {bars}\nend = "{_iso(end)}"\n'
            "price_precision = 2\nsize_precision = 0\n"
        )
    lines.append('[[backfill.sources]]\nname = "catalog"\nplugin = "parquet"\npath = "catalog"\n')
    lines.append('timeout = "900s"\n')
    (folder / "backfill.toml").write_text("".join(lines))


def _peak_mb() -> float:
    # VmHWM: this process's own high-water mark (ru_maxrss of a fresh process; after fork and
    # exec ru_maxrss can carry the parent's peak on Linux).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def one(path: str, folder: Path, types: int, bars: int) -> dict[str, float]:
    from nautilus_trader.cache.cache import Cache
    from nautilus_trader.cache.config import CacheConfig
    from nautilus_trader.model.data import BarType

    cache = Cache(config=CacheConfig(bar_capacity=bars + 10))
    names = _bar_types(types)
    if path == "nautilus":
        from nautilus_trader.persistence.catalog import ParquetDataCatalog

        base = _peak_mb()
        t0 = time.perf_counter()
        got = ParquetDataCatalog(str(folder / "catalog")).bars(bar_types=names)
        by_type: dict[BarType, list] = {}
        for bar in got:
            by_type.setdefault(bar.bar_type, []).append(bar)
        for group in by_type.values():
            cache.add_bars(group)
        elapsed = time.perf_counter() - t0
    else:
        from nautilus_backfill import Backfill

        backfill = Backfill.from_toml(folder / "backfill.toml")
        base = _peak_mb()
        t0 = time.perf_counter()
        report = backfill.inject(cache)
        elapsed = time.perf_counter() - t0
        assert all(r.injected == bars for r in report.requests), report.render()
    for name in (names[0], names[-1]):
        assert cache.bar_count(BarType.from_str(name)) == bars, name
    peak = _peak_mb()
    return {"s": elapsed, "rss_mb": peak, "added_mb": peak - base}


def _runs(path: str, folder: Path, types: int, bars: int, repeat: int) -> list[dict[str, float]]:
    out = []
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", path, str(folder), str(types), str(bars)],
            capture_output=True, text=True, env=os.environ,
        )  # fmt: skip
        if proc.returncode:
            raise SystemExit(f"{path} {types}x{bars} failed:\n{proc.stderr[-3000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--one", nargs=4, metavar=("PATH", "FOLDER", "TYPES", "BARS"))
    args = parser.parse_args()
    if args.one:
        path, folder, types, bars = args.one
        print(json.dumps(one(path, Path(folder), int(types), int(bars))))
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    rows = []
    for case in args.only.split(","):
        types, bars = CASES[case]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            t0 = time.perf_counter()
            build(folder, types, bars)
            print(
                f"{case}: built {types:,} bar types x {bars:,} bars in {time.perf_counter() - t0:.1f}s"
            )
            nt = _runs("nautilus", folder, types, bars, args.repeat)
            bf = _runs("backfill", folder, types, bars, args.repeat)
        rows.append((case, types, bars, nt, bf))
    print(
        f"\nbest of {args.repeat}, each run in a fresh process; load average now "
        f"{os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| case | bar types x bars | NautilusTrader best (s) | backfill best (s) | ratio | "
        "NT median (s) | backfill median (s) | median ratio | NT peak RSS (MB) | "
        "backfill peak RSS (MB) | RSS ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case, types, bars, nt, bf in rows:
        b_nt, b_bf = min(r["s"] for r in nt), min(r["s"] for r in bf)
        m_nt = statistics.median(r["s"] for r in nt)
        m_bf = statistics.median(r["s"] for r in bf)
        r_nt = max(r["rss_mb"] for r in nt)
        r_bf = max(r["rss_mb"] for r in bf)
        print(
            f"| {case} | {types:,} x {bars:,} | {b_nt:.3f} | {b_bf:.3f} | {b_bf / b_nt:.2f} | "
            f"{m_nt:.3f} | {m_bf:.3f} | {m_bf / m_nt:.2f} | {r_nt:.0f} | {r_bf:.0f} | "
            f"{r_bf / r_nt:.2f} |"
        )
    print(
        "\ntargets: many-300 ratio <= 1.0 (best of 5 and median); memory-5M RSS ratio <= 2.0 "
        "(peak RSS is the highest of the runs)"
    )


if __name__ == "__main__":
    main()
