"""
Composite bar cost: aggregating 1,000,000 one-minute bars into 5-minute bars, against case b.

Times, best of several (and the median), each in a fresh process:
  b) Backfill.inject() of 1M one-minute bars from a ParquetDataCatalog (bench_ingest's case b)
  g) aggregate() of the same 1M bars into 200,000 5-minute composite bars, plus their `Bar`
     objects and Cache.add_bars: everything a composite request adds to case b
Target (issue 14): g/b <= 0.2.
Run: python benchmarks/bench_aggregate.py [--bars N] [--repeat K]
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

BAR_TYPE = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"
COMPOSITE = "EUR/USD.SIM-5-MINUTE-MID-INTERNAL@1-MINUTE-EXTERNAL"
START_S = 1_577_836_800  # 2020-01-01
MINUTE = 60 * 10**9


def arrays(n: int):
    import numpy as np
    from nautilus_backfill.bararrays import BarArrays

    # bench_ingest's bars: a random walk rounded to 5 decimals, 1,000 volume each.
    rng = np.random.default_rng(1)
    close = 1.1 + np.cumsum(rng.normal(0, 1e-4, n))
    open_ = np.concatenate([[1.1], close[:-1]])
    high = np.maximum(open_, close) + 5e-5
    low = np.minimum(open_, close) - 5e-5
    open_, high, low, close = (np.round(x, 5) for x in (open_, high, low, close))
    ts_open = (START_S + 60 * np.arange(n, dtype=np.int64)) * 10**9
    return BarArrays(ts_open, open_, high, low, close, np.full(n, 1000.0))


def build(folder: Path, n: int) -> None:
    import numpy as np
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    a = arrays(n)
    bars = Bar.from_raw_arrays_to_list(
        BarType.from_str(BAR_TYPE),
        5,
        0,
        a.open,
        a.high,
        a.low,
        a.close,
        a.volume,
        a.ts_open.astype(np.uint64),
        (a.ts_open + MINUTE).astype(np.uint64),
    )
    ParquetDataCatalog(str(folder / "catalog")).write_data(bars)
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START_S + 60 * n))
    (folder / "catalog.toml").write_text(
        f'[backfill]\ndeadline = "600s"\n[[backfill.requests]]\nbar_type = "{BAR_TYPE}"\n'
        f'bars = {n}\nend = "{end}"\nprice_precision = 5\nsize_precision = 0\n'
        '[[backfill.sources]]\nname = "catalog"\nplugin = "parquet"\npath = "catalog"\n'
        'timeout = "600s"\n',
    )


def one(case: str, folder: Path, n: int) -> dict[str, float]:
    from nautilus_trader.cache.cache import Cache
    from nautilus_trader.cache.config import CacheConfig
    from nautilus_trader.model.data import BarType

    cache = Cache(config=CacheConfig(bar_capacity=n + 10))
    if case == "b":
        from nautilus_backfill import Backfill

        backfill = Backfill.from_toml(folder / "catalog.toml")
        t0 = time.perf_counter()
        report = backfill.inject(cache)
        elapsed = time.perf_counter() - t0
        assert report.requests[0].injected == n, report.render()
        return {"s": elapsed}
    from nautilus_backfill.aggregate import AggregationOptions, aggregate, composite_bars

    source = arrays(n)
    target = BarType.from_str(COMPOSITE)
    composite_bars(
        aggregate(
            source.take(slice(0, 10)),
            MINUTE,
            target,
            AggregationOptions(),
            int(source.ts_open[10]),
            0,
        )[0],
        target,
        5,
        0,
    )  # imports, layout probe
    t0 = time.perf_counter()
    agg, _ = aggregate(
        source, MINUTE, target, AggregationOptions(), int(source.ts_open[-1]) + MINUTE, 0
    )
    t1 = time.perf_counter()
    bars = composite_bars(agg, target, 5, 0)
    cache.add_bars(bars)
    elapsed = time.perf_counter() - t0
    assert len(bars) == n // 5 and cache.bar_count(target.standard()) == n // 5
    return {"s": elapsed, "aggregate_s": t1 - t0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("CASE", "FOLDER"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], Path(args.one[1]), args.bars)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder, args.bars)
        results: dict[str, list[dict[str, float]]] = {}
        for case in "bg":
            results[case] = [
                json.loads(
                    subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--bars",
                            str(args.bars),
                            "--one",
                            case,
                            str(folder),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        env=os.environ,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                for _ in range(args.repeat)
            ]
        b = min(r["s"] for r in results["b"])
        g = min(r["s"] for r in results["g"])
        agg = min(r["aggregate_s"] for r in results["g"])
        b_med = statistics.median(r["s"] for r in results["b"])
        g_med = statistics.median(r["s"] for r in results["g"])
        print(
            f"{args.bars:,} one-minute bars -> {args.bars // 5:,} 5-minute composite bars "
            f"(best of {args.repeat}; median)"
        )
        print(f"b) backfill from catalog:                {b:.3f} s; {b_med:.3f} s")
        print(
            f"g) aggregate + Bar objects + add_bars:   {g:.3f} s; {g_med:.3f} s "
            f"(aggregate() alone {agg:.3f} s)"
        )
        print(f"g/b = {g / b:.3f} (median {g_med / b_med:.3f}); target <= 0.2")


if __name__ == "__main__":
    main()
