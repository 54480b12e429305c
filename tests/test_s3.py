"""Store and Parquet source over S3: a real S3 API server (moto's server mode) on loopback."""

from __future__ import annotations

import socket
import time

import numpy as np
import portion as P
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict

s3fs = pytest.importorskip("s3fs", reason="the S3 tests need the [test] extra (s3fs)")
moto_server = pytest.importorskip("moto.server", reason="the S3 tests need the [test] extra (moto)")
pytest.importorskip("ibapi", reason="the store test uses the IB simulator")
from ibsim import IBSimulator, Scenario  # noqa: E402

EURUSD = "EUR/USD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
T = 1_735_810_800  # 2025-01-02T09:40:00Z


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("backfill")
    yield fs, opts
    server.stop()


def _run(registry, opts, requests, sources, **kw):
    doc = {"backfill": {"store": "s3://backfill/store", "store_options": opts, "requests": requests,
                        "sources": sources, "deadline": "20s", **kw}}
    result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    for r in result.report.requests:
        assert r.accounted(), r.to_dict()
    return result


def test_write_through_and_incremental_read_over_s3(registry, shared, s3):
    fs, opts = s3
    with IBSimulator(Scenario(), recordings=shared / "ib") as sim:
        ib = {"name": "ib", "plugin": "ib", "port": sim.port, "timeout": "5s"}
        first = _run(registry, opts, [{"bar_type": EURUSD, "bars": 200, "end": _iso(T)}], [ib])
        assert first.report.requests[0].stored == 200
        files = fs.ls("backfill/store/data/bar/EURUSD.IDEALPRO-1-MINUTE-MID-EXTERNAL")
        assert any(f.endswith(".parquet") for f in files) and any(f.endswith("_backfill.json") for f in files)
        sim.requests.clear()
        second = _run(registry, opts, [{"bar_type": EURUSD, "bars": 200, "end": _iso(T + 600)}], [ib])
    assert [r.duration for r in sim.requests] == ["600 S"]
    report = second.report.requests[0]
    assert report.injected == 200 and report.sources[0].used == 190 and report.stored == 10


def test_parquet_source_pushes_the_time_filter_down_over_s3(registry, s3, monkeypatch):
    fs, opts = s3
    n = 200_000
    ts = (1_700_000_040 + 60 * np.arange(n, dtype=np.int64)) * 10**9
    table = pa.table({"timestamp": pa.array(ts, pa.timestamp("ns", "UTC")), "open": np.full(n, 1.1),
                      "high": np.full(n, 1.2), "low": np.full(n, 1.0), "close": np.full(n, 1.1),
                      "volume": np.full(n, 5.0)})
    with fs.open("backfill/plain/eurusd.parquet", "wb") as f:
        pq.write_table(table, f, row_group_size=10_000)
    size = fs.size("backfill/plain/eurusd.parquet")
    fetched = []
    # Count the bytes actually fetched from the server (every ranged GET goes through here).
    original = s3fs.core.S3File._fetch_range

    def counting(self, start, end):
        data = original(self, start, end)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    end = _iso(1_700_000_040 + 60 * (n - 1000))
    doc = {"backfill": {"requests": [{"bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", "bars": 500, "end": end,
                                      "price_precision": 5, "size_precision": 0}],
                        "sources": [{"name": "s3", "plugin": "parquet", "path": "s3://backfill/plain/eurusd.parquet",
                                     "storage_options": opts}]}}
    result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    report = result.report.requests[0]
    assert report.injected == 500 and report.accounted()
    assert report.sources[0].received < 20_000  # rows of the matching row groups only
    print(f"\nfetched {sum(fetched):,} of {size:,} bytes for rows {report.sources[0].received:,} of {n:,}")
    assert 0 < sum(fetched) < size / 4, (sum(fetched), size)


def _blocks_in_subprocesses(url, opts, seeds):
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys, storework; "
        "storework.overlapping(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url, str(seed), json.dumps(opts)],
                         cwd=os.path.dirname(__file__), stderr=subprocess.PIPE, text=True)
        for seed in seeds
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err


def test_writers_at_once_lose_nothing_over_s3(s3):
    # Each writer merges overlapping blocks into the same bar type, in its own order: without
    # the lock, one writer's merge deletes files the other's merge did not include.
    import storework

    fs, opts = s3
    url = "s3://backfill/writers"
    _blocks_in_subprocesses(url, opts, (1, 2))
    assert storework.check(url, opts) == 3000  # every bar, each once
    assert not fs.exists(f"{url}/data/bar/EURUSD.IDEALPRO-1-MINUTE-MID-EXTERNAL/.lock")


def _lock_object(fs, path, owner, expires):
    import json

    fs.pipe_file(path, json.dumps({"owner": owner, "expires": expires}).encode())


def test_a_lock_left_by_a_dead_writer_is_taken_over(s3):
    import storework
    from nautilus_backfill.store import BarStore

    fs, opts = s3
    url = "s3://backfill/stale-lock"
    store = BarStore(url, opts)
    folder = store.folder(storework.BAR_TYPE)
    fs.makedirs(folder, exist_ok=True)
    _lock_object(fs, f"{folder}/.lock", "dead-host:1:x", time.time() - 1)
    ts, values = storework.bars(0, 100)
    started = time.monotonic()
    assert store.write(storework.BAR_TYPE, storework.STEP, ts, values, 5, 0, P.empty()) == 100
    assert time.monotonic() - started < 5
    assert not fs.exists(f"{folder}/.lock")


def test_a_live_lock_makes_the_write_wait_then_give_up_without_costing_the_start(registry, s3):
    fs, opts = s3
    doc_store = "s3://backfill/held-lock"
    folder = f"{doc_store}/data/bar/EURUSD.IDEALPRO-1-MINUTE-MID-EXTERNAL"
    fs.makedirs(folder, exist_ok=True)
    _lock_object(fs, f"{folder}/.lock", "other-node:7:y", time.time() + 600)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bars.csv"
        rows = [f"{(T - 60 * (50 - i)) * 10**9},1.1,1.2,1.0,1.1,1" for i in range(50)]
        path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
        doc = {"backfill": {"store": doc_store, "store_options": opts, "deadline": "3s",
                            "requests": [{"bar_type": EURUSD, "bars": 50, "end": _iso(T),
                                          "price_precision": 5, "size_precision": 0}],
                            "sources": [{"name": "csv", "plugin": "csv", "path": str(path), "write_back": True}]}}
        started = time.monotonic()
        result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    report = result.report.requests[0]
    assert report.injected == 50 and report.stored == 0
    assert time.monotonic() - started < 4  # waited for the lock within the deadline, no longer
    assert any("held by other-node:7:y" in e for e in report.examples), report.examples
    assert fs.exists(f"{folder}/.lock")  # not ours: left alone


def test_the_s3_lock_admits_one_writer_at_a_time(s3):
    import threading

    from nautilus_backfill.storelock import store_lock

    fs, _ = s3
    folder = "backfill/mutex"
    inside, most, errors = [0], [0], []

    def worker():
        try:
            for _ in range(4):
                with store_lock(fs, folder, local=False, wait_s=30):
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    time.sleep(0.02)
                    inside[0] -= 1
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and most[0] == 1
    assert not fs.exists(f"{folder}/.lock")


def test_store_cli_reads_s3_with_options_or_a_config_and_never_prints_the_secret(s3, tmp_path):
    import json
    import subprocess
    import sys

    import storework
    from nautilus_backfill.store import BarStore

    _fs, opts = s3
    url = "s3://backfill/cli"
    ts, values = storework.bars(0, 30)
    BarStore(url, opts).write(storework.BAR_TYPE, storework.STEP, ts, values, 5, 0, P.empty())
    cli = [sys.executable, "-m", "nautilus_backfill.cli", "store"]
    endpoint = f"endpoint_url={opts['endpoint_url']}"
    by_option = subprocess.run([*cli, "info", url, "--json", "--option", endpoint, "--option", "key=testing",
                                "--option", "secret=testing"], capture_output=True, text=True, timeout=120)
    assert by_option.returncode == 0, by_option.stderr
    assert json.loads(by_option.stdout)[0]["bars"] == 30
    # Credentials inside the URL are used, and not printed.
    inline = subprocess.run([*cli, "verify", "s3://testing:testing@backfill/cli", "--option", endpoint],
                            capture_output=True, text=True, timeout=120)
    assert inline.returncode == 0 and "testing" not in inline.stdout + inline.stderr, inline.stdout
    assert "s3://***@backfill/cli: 1 file(s) checked, 0 problem(s)" in inline.stdout
    config = tmp_path / "backfill.toml"
    config.write_text(f'[backfill]\nstore = "{url}"\n[backfill.store_options]\n'
                      f'endpoint_url = "{opts["endpoint_url"]}"\nkey = "testing"\nsecret = "testing"\n')
    by_config = subprocess.run([*cli, "verify", "--config", str(config)], capture_output=True, text=True,
                               timeout=120)
    assert by_config.returncode == 0, by_config.stdout + by_config.stderr


def test_an_unreadable_object_is_quarantined_and_a_killed_merge_repaired_over_s3(s3):
    import storework
    from nautilus_backfill.source import Span
    from nautilus_backfill.store import BarStore

    fs, opts = s3
    url = "s3://backfill/heal"
    store = BarStore(url, opts)
    ts, values = storework.bars(0, 50)
    store.write(storework.BAR_TYPE, storework.STEP, ts, values, 5, 0, P.empty())
    (victim,) = [f.path for f in store.files(storework.BAR_TYPE)]
    fs.pipe_file(victim, fs.cat_file(victim)[:100])  # truncated by a failed upload tool
    # A merge killed before it removed what it replaced: a file the new one contains.
    folder = store.folder(storework.BAR_TYPE)
    ts2, values2 = storework.bars(100, 20)
    store.write(storework.BAR_TYPE, storework.STEP, ts2, values2, 5, 0, P.empty())
    (kept,) = [f for f in store.files(storework.BAR_TYPE) if f.path != victim]
    inner = f"{folder}/{_stamp(kept.first)}_{_stamp(kept.first)}.parquet"
    fs.copy(kept.path, inner)
    assert any("superseded by" in p for p in BarStore(url, opts).verify())
    reader = BarStore(url, opts)
    table, _, _ = reader.read(storework.BAR_TYPE, storework.STEP, Span(None, (storework.T + 10**6) * 10**9))
    assert table.column("ts").to_pylist() == ts2.tolist()
    assert any("_quarantine" in n for n in reader.take_notes())
    assert not fs.exists(victim) and not fs.exists(inner) and fs.ls(f"{folder}/_quarantine")
    assert BarStore(url, opts).verify() == []


def _stamp(ns):
    from nautilus_backfill.store import _file_stamp

    return _file_stamp(ns)


def test_a_catalog_on_s3_answers_many_bar_types_in_one_listing(registry, s3, tmp_path):
    # The parquet source's batch call over S3: one recursive listing, each bar type's own files.
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    fs, opts = s3
    catalog = ParquetDataCatalog(str(tmp_path / "catalog"))
    names = [f"S{i}.XNAS-1-MINUTE-LAST-EXTERNAL" for i in range(3)]
    for i, name in enumerate(names):
        n = 100 + 50 * i
        ts = ((T + 60 * np.arange(n, dtype=np.int64)) * 10**9).astype(np.uint64)
        price = np.round(100 + np.arange(n) / 100, 2)
        catalog.write_data(Bar.from_raw_arrays_to_list(
            BarType.from_str(name), 2, 0, price, price + 1, price - 1, price, np.full(n, 7.0),
            ts, ts + np.uint64(60 * 10**9)))
    fs.put(str(tmp_path / "catalog"), "backfill/many", recursive=True)
    end = _iso(T + 60 * 400)
    requests = [{"bar_type": name, "bars": 120, "end": end} for name in [*names, "NOPE.XNAS-1-MINUTE-LAST-EXTERNAL"]]
    requests[-1].update(price_precision=2, size_precision=0)
    doc = {"backfill": {"requests": requests, "sources": [
        {"name": "s3", "plugin": "parquet", "path": "s3://backfill/many", "storage_options": opts}]}}
    result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
    reports = result.report.requests
    assert [r.injected for r in reports] == [100, 120, 120, 0]
    assert all(r.accounted() for r in reports)
    assert reports[-1].sources[0].status == "empty"
    assert [r.sources[0].calls for r in reports] == [1, 1, 1, 1]
