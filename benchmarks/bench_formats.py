"""
Other projects' formats: freqtrade feather and LEAN minute zips against NautilusTrader's catalog.

Builds 1,000,000 one-minute bars three ways, the same bars in each: a ParquetDataCatalog, a
freqtrade feather file (as freqtrade's FeatherDataHandler writes it: lz4, a UTC `date`
column) and LEAN crypto minute trade zips (one zip a day, 1,440 bars a day, so 695 days:
a year of minute zips holds only 525,600 bars). Then times, best of several and the median,
each in a fresh process:
  a) ParquetDataCatalog.bars() + Cache.add_bars()        (NautilusTrader's own path)
  f) Backfill.inject() from the freqtrade feather file    (plugin "freqtrade")
  p) Backfill.inject() from the same feather file          (plugin "parquet", plain layout)
  l) Backfill.inject() from the LEAN zips                 (plugin "lean")
Run: python benchmarks/bench_formats.py [--bars N] [--repeat K]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

CATALOG_BAR_TYPE = "BTC/USD.COINBASE-1-MINUTE-LAST-EXTERNAL"
FREQTRADE_BAR_TYPE = "BTC/USDT.BINANCE-1-MINUTE-LAST-EXTERNAL"
LEAN_BAR_TYPE = "BTC/USD.COINBASE-1-MINUTE-LAST-EXTERNAL"
START_S = 1_577_836_800  # 2020-01-01, a UTC midnight: LEAN's day files start here
DAY = 1440


def build(folder: Path, n: int) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    rng = np.random.default_rng(1)
    close = np.round(7000 + np.cumsum(rng.normal(0, 2, n)), 2)
    open_ = np.concatenate([[7000.0], close[:-1]])
    high = np.round(np.maximum(open_, close) + 0.5, 2)
    low = np.round(np.minimum(open_, close) - 0.5, 2)
    vol = np.round(rng.uniform(0.001, 50, n), 3)
    ts_open = (START_S + 60 * np.arange(n, dtype=np.int64)) * 10**9

    bars = Bar.from_raw_arrays_to_list(
        BarType.from_str(CATALOG_BAR_TYPE),
        2,
        3,
        open_,
        high,
        low,
        close,
        vol,
        ts_open.astype(np.uint64),
        (ts_open + 60 * 10**9).astype(np.uint64),
    )
    ParquetDataCatalog(str(folder / "catalog")).write_data(bars)

    ft = folder / "freqtrade" / "binance"
    ft.mkdir(parents=True)
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(ts_open // 10**6, unit="ms", utc=True),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": vol,
        }
    )
    frame.to_feather(ft / "BTC_USDT-1m.feather", compression_level=9, compression="lz4")

    days = folder / "lean" / "crypto" / "coinbase" / "minute" / "btcusd"
    days.mkdir(parents=True)
    options = pacsv.WriteOptions(include_header=False)
    for start in range(0, n, DAY):
        stop = min(start + DAY, n)
        day = time.strftime("%Y%m%d", time.gmtime(START_S + 60 * start))
        table = pa.table(
            {
                "t": (np.arange(stop - start, dtype=np.int64) * 60_000),
                "o": open_[start:stop],
                "h": high[start:stop],
                "l": low[start:stop],
                "c": close[start:stop],
                "v": vol[start:stop],
            }
        )
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, write_options=options)
        with zipfile.ZipFile(days / f"{day}_trade.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{day}_btcusd_minute_trade.csv", buf.getvalue())

    end = _iso(START_S + 60 * n)
    for name, bar_type, src in (
        ("freqtrade", FREQTRADE_BAR_TYPE, 'plugin = "freqtrade"\npath = "freqtrade/binance"\n'),
        ("lean", LEAN_BAR_TYPE, 'plugin = "lean"\npath = "lean"\n'),
        (
            "feather",
            FREQTRADE_BAR_TYPE,
            'plugin = "parquet"\npath = "freqtrade/binance/BTC_USDT-1m.feather"\n',
        ),
    ):
        (folder / f"{name}.toml").write_text(
            f'[backfill]\ndeadline = "600s"\n[[backfill.requests]]\nbar_type = "{bar_type}"\n'
            f'bars = {n}\nend = "{end}"\nprice_precision = 2\nsize_precision = 3\n'
            f'[[backfill.sources]]\nname = "{name}"\ntimeout = "600s"\n{src}',
        )


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def one(case: str, folder: Path, n: int) -> dict[str, float]:
    from nautilus_backfill import Backfill
    from nautilus_trader.cache.cache import Cache
    from nautilus_trader.cache.config import CacheConfig
    from nautilus_trader.model.data import BarType
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    cache = Cache(config=CacheConfig(bar_capacity=n + 10))
    if case == "a":
        t0 = time.perf_counter()
        bars = ParquetDataCatalog(str(folder / "catalog")).bars(bar_types=[CATALOG_BAR_TYPE])
        cache.add_bars(bars)
        elapsed = time.perf_counter() - t0
        bar_type = CATALOG_BAR_TYPE
    else:
        name, bar_type = {
            "f": ("freqtrade", FREQTRADE_BAR_TYPE),
            "p": ("feather", FREQTRADE_BAR_TYPE),
            "l": ("lean", LEAN_BAR_TYPE),
        }[case]
        backfill = Backfill.from_toml(folder / f"{name}.toml")
        t0 = time.perf_counter()
        report = backfill.inject(cache)
        elapsed = time.perf_counter() - t0
        assert report.requests[0].injected == n, report.render()
        assert not report.requests[0].dropped, report.render()
    assert cache.bar_count(BarType.from_str(bar_type)) == n
    return {"s": elapsed}


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
        t0 = time.perf_counter()
        build(folder, args.bars)
        zips = len(list((folder / "lean").rglob("*.zip")))
        print(
            f"built {args.bars:,} bars as a catalog, a freqtrade feather file and {zips} LEAN "
            f"minute zips in {time.perf_counter() - t0:.1f}s"
        )
        runs: dict[str, list[float]] = {c: [] for c in "afpl"}
        # Interleaved, so a slow spell on the machine does not fall on one case only.
        for _ in range(args.repeat):
            for case in "afpl":
                out = subprocess.run(
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
                runs[case].append(json.loads(out.stdout.strip().splitlines()[-1])["s"])
        names = {
            "a": "NautilusTrader catalog.bars() + add_bars",
            "f": "backfill from a freqtrade feather file",
            "p": "backfill from that feather file, parquet source",
            "l": "backfill from LEAN minute zips",
        }
        best = {c: min(r) for c, r in runs.items()}
        median = {c: statistics.median(r) for c, r in runs.items()}
        print("\n| case | path | best (s) | bars/s | ratio to a | median (s) | median ratio |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for case in "afpl":
            print(
                f"| {case} | {names[case]} | {best[case]:.3f} | {args.bars / best[case]:,.0f} | "
                f"{best[case] / best['a']:.2f} | {median[case]:.3f} | "
                f"{median[case] / median['a']:.2f} |"
            )
        print(f"\ntargets: f/a <= 1.2, p/a <= 1.2, l/a <= 3 (best of {args.repeat})")


if __name__ == "__main__":
    main()
