"""Attacks on the write-through store: corrupt the exact file, kill at the exact point, fill the
disk, run the clock ahead. After each, both this tool and NautilusTrader's own
``ParquetDataCatalog`` must read exactly the bars that were stored, and nothing wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import portion as P
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import storework
from nautilus_backfill.catalogfmt import decode_fixed
from nautilus_backfill.errors import SourceError
from nautilus_backfill.source import BarRequest, SourceContext, Span
from nautilus_backfill.store import (
    CRASH_ENV,
    META,
    BarStore,
    StoreSource,
    _bar_table,
    _file_name,
    redact,
)
from nautilus_trader.model.data import BarType

BT, STEP, T = storework.BAR_TYPE, storework.STEP, storework.T
TESTS = os.path.dirname(os.path.abspath(__file__))
CLI = [sys.executable, "-m", "nautilus_backfill.cli", "store"]


def _write(store: BarStore, start: int, count: int, answered: P.Interval | None = None) -> int:
    ts, values = storework.bars(start, count)
    if answered is None:
        answered = P.closedopen(int(ts[0]), int(ts[-1]) + STEP)
    return store.write(BT, STEP, ts, values, 5, 0, answered)


def _ours(url: str) -> list[int]:
    table, _, _ = BarStore(url).read(BT, STEP, Span(None, (T + 10**6) * 10**9))
    return table.column("ts").to_pylist()


def _theirs(url: str) -> list[int]:
    return storework.nautilus_read(url).tolist()


def _request(bars: int = 50, end_ns: int | None = None) -> BarRequest:
    end = (T + 3000 * 60) * 10**9 if end_ns is None else end_ns
    return BarRequest(BarType.from_str(BT), STEP, end, None, bars)


def _source(url: str) -> StoreSource:
    return StoreSource(BarStore(url), SourceContext(Path(url)))


def _file(store: BarStore, start: int, count: int) -> None:
    # One bar file in the catalog's layout, written as it is (no merge with its neighbours).
    ts, v = storework.bars(start, count)
    table = _bar_table(BT, STEP, ts + STEP, v, 5, 0)
    os.makedirs(store.folder(BT), exist_ok=True)
    pq.write_table(table, f"{store.folder(BT)}/{_file_name(int(ts[0] + STEP), int(ts[-1] + STEP))}")


def _float_bar_file(path: str, n: int = 10) -> None:
    # OHLCV as float64 with the catalog's uint64 times and metadata: what a careless export
    # into a catalog folder looks like. Fixed-point decoding would read 1.1 as 4.6e9.
    ts = (T + 60 * np.arange(n, dtype=np.int64)) * 10**9
    table = pa.table(
        {
            **{c: pa.array(np.full(n, 1.1)) for c in ("open", "high", "low", "close")},
            "volume": pa.array(np.full(n, 10.0)),
            "ts_event": pa.array(ts, pa.uint64()),
            "ts_init": pa.array(ts + STEP, pa.uint64()),
        }
    ).replace_schema_metadata(
        {
            "bar_type": BT,
            "instrument_id": "EUR/USD.IDEALPRO",
            "price_precision": "5",
            "size_precision": "0",
        }
    )
    pq.write_table(table, path)


# -- item 2: float columns are not fixed-point -------------------------------------------------


def test_decode_fixed_refuses_a_float_column_naming_column_type_and_layout():
    with pytest.raises(
        SourceError, match=r"column 'open' has type double, expected fixed_size_binary\[16\]"
    ):
        decode_fixed(pa.array([1.1, 1.2]), 5, name="open", where="x.parquet")
    with pytest.raises(SourceError, match="int64/uint64 with price_precision"):
        decode_fixed(pa.array([1, 2], pa.int64()))  # integers without declared precision
    # What the catalog writes is accepted: fixed-size binary, and int64 with declared precision.
    assert decode_fixed(pa.array([1_100_000_000], pa.int64()), 5).tolist() == [1.1]


def test_a_float_ohlcv_file_in_the_store_is_refused_quarantined_and_flagged(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    _write(store, 100, 20)
    folder = store.folder(BT)
    bad = f"{folder}/2025-01-02T09-41-00-000000000Z_2025-01-02T09-50-00-000000000Z.parquet"
    _float_bar_file(bad)
    problems = BarStore(url).verify()
    assert any(
        bad in p and "'open' has type double" in p and "fixed_size_binary" in p for p in problems
    )
    s = _source(url)
    result = s.fetch(_request(), Span(None, (T + 3000 * 60) * 10**9, 50))
    # The 20 real bars, none of the float file's, and the report says what was moved aside.
    assert result.table.num_rows == 20 and max(result.table.column("open").to_pylist()) < 2
    assert any("type double" in n and "_quarantine" in n and bad in n for n in result.notes)
    assert not os.path.exists(bad) and os.listdir(f"{folder}/_quarantine")
    assert BarStore(url).verify() == []
    assert len(_theirs(url)) == 20  # NautilusTrader reads the store again (it panicked before)


# -- item 4: an unreadable _backfill.json is not a cold start ----------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "",
        "[1,2]",
        '{"answered": [["a","b"]]}',
        '{"answered": "xy"}',
        "{not json",
        '{"answered": [[5, 3]]}',
        "\x00\xff",
    ],
)
def test_a_garbage_answered_record_is_unknown_not_a_cold_start(tmp_path, content):
    url = str(tmp_path / "store")
    store = BarStore(url)
    _write(store, 0, 100)
    meta = f"{store.folder(BT)}/{META}"
    with open(meta, "w", encoding="latin-1") as f:
        f.write(content)
    s = _source(url)
    assert s.answered(_request()) == P.empty()  # never raises; answers for nothing
    result = s.fetch(_request(), Span(None, (T + 3000 * 60) * 10**9, 50))
    assert result.table.num_rows == 50  # the bars are still served
    assert any(META in n and "treated as unknown" in n for n in result.notes)
    assert any("treated as unknown" in p for p in BarStore(url).verify())
    if content in ("", "[1,2]"):  # the command line too (a process start costs seconds)
        verify = subprocess.run([*CLI, "verify", url], capture_output=True, text=True)
        assert verify.returncode == 1 and "Traceback" not in verify.stderr + verify.stdout
        assert "treated as unknown" in verify.stdout
    # The next write rewrites it.
    _write(BarStore(url), 100, 10)
    assert not BarStore(url).answered(BT, STEP).empty
    assert BarStore(url).verify() == []


# -- item 1: nothing answered past now ---------------------------------------------------------


def test_a_future_end_does_not_make_the_store_answer_for_the_future(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    now = time.time_ns() // STEP * STEP
    ts, values = storework.bars(0, 10)
    # A run with end = now + 30 min says it was answered up to then.
    store.write(BT, STEP, ts, values, 5, 0, P.closedopen(now - 3600 * 10**9, now + 1800 * 10**9))
    known = BarStore(url).answered(BT, STEP)
    assert known.upper <= time.time_ns() - STEP + 1  # only bars closed before now


def test_intervals_recorded_on_a_clock_that_ran_ahead_are_not_trusted_past_now(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    _write(store, 0, 10)
    now = time.time_ns() // STEP * STEP
    ahead = now + 3600 * 10**9
    # A node whose clock ran an hour ahead recorded "answered until its now".
    with open(f"{store.folder(BT)}/{META}", "w") as f:
        json.dump({"answered": [[now - 7200 * 10**9, ahead, ahead]]}, f)
    known = BarStore(url).answered(BT, STEP, now_ns=now)
    assert known == P.closedopen(now - 7200 * 10**9, now - STEP + 1)
    # An old record without times is capped at now too.
    with open(f"{store.folder(BT)}/{META}", "w") as f:
        json.dump({"answered": [[now - 7200 * 10**9, ahead]]}, f)
    assert BarStore(url).answered(BT, STEP, now_ns=now).upper == now - STEP + 1
    # Each write records when it was made.
    _write(BarStore(url), 20, 5)
    with open(f"{store.folder(BT)}/{META}") as f:
        doc = json.load(f)
    (entry,) = [e for e in doc["answered"] if e[0] <= (T + 20 * 60) * 10**9 < e[1]]
    assert len(entry) == 3 and now <= entry[2] <= time.time_ns()


# -- item 6: a kill at the exact point ---------------------------------------------------------

WRITER = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np, portion as P, storework
from nautilus_backfill.store import BarStore
s = BarStore({url!r})
op = {op!r}
if op == "trim":
    s.trim(storework.BAR_TYPE, storework.STEP, (storework.T + 60 * 50) * 10**9)
else:
    ts, v = storework.bars(*op)
    s.write(storework.BAR_TYPE, storework.STEP, ts, v, 5, 0, P.empty())
print("finished")
"""


def _run_until(url: str, op: object, point: str) -> None:
    code = WRITER.format(tests=TESTS, url=url, op=op)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, CRASH_ENV: point},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # it died exactly there


@pytest.mark.parametrize(
    ("point", "op", "before"),
    [
        # A merge of a new block into two stored ones, killed after the merged file's rename
        # and before the old files' removal (and after the first removal).
        ("merge_renamed", (90, 30), [(0, 100), (110, 100)]),
        ("merge_removing", (90, 30), [(0, 100), (110, 100)]),
        # Retention rewrites the first file without its old bars: killed after the rename.
        ("trim_renamed", "trim", [(0, 100), (300, 100)]),
    ],
)
def test_a_kill_between_rename_and_delete_never_reads_twice(tmp_path, point, op, before):
    url = str(tmp_path / "store")
    store = BarStore(url)
    for start, count in before:
        _file(store, start, count)  # separate files, as a big store has them
    stored = set(_ours(url))
    _run_until(url, op, point)
    # The kill left a superseded file: NautilusTrader would read its bars twice; verify says so.
    problems = BarStore(url).verify()
    assert problems and all("superseded by" in p and "reads its bars twice" in p for p in problems)
    # The next open (a read) repairs it; both readers then read each stored bar once.
    ours = _ours(url)
    assert len(ours) == len(set(ours))
    if op == "trim":
        assert set(ours) == stored  # the trim did not happen; the next one will
    else:
        ts, _ = storework.bars(*op)
        assert set(ours) == stored | set(ts.tolist())  # the merge did happen
    assert BarStore(url).verify() == []
    assert _theirs(url) == sorted(ours)


def test_a_merge_killed_mid_way_reads_right_in_nautilus_after_a_write_too(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    for start in (0, 110):
        _file(store, start, 100)
    _run_until(url, (90, 30), "merge_renamed")
    _write(BarStore(url), 300, 5)  # a write opens the bar type too
    assert BarStore(url).verify() == []
    assert _theirs(url) == sorted(_ours(url)) and len(_theirs(url)) == 215


# -- item 8: unreadable files are quarantined ---------------------------------------------------


def test_a_truncated_file_is_quarantined_and_the_store_carries_on(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    _write(store, 0, 100)
    (victim,) = [f.path for f in store.files(BT)]
    with open(victim, "r+b") as f:
        f.truncate(100)
    s = _source(url)
    result = s.fetch(_request(), Span(None, (T + 3000 * 60) * 10**9, 50))
    assert result.table.num_rows == 0
    assert any(victim in n and "_quarantine" in n and "unreadable" in n for n in result.notes)
    # The bar type is written again at once, not "store: not written" forever.
    assert _write(BarStore(url), 0, 100) == 100
    assert _ours(url) == storework.bars(0, 100)[0].tolist() and len(_theirs(url)) == 100


def test_a_directory_named_like_a_bar_file_is_moved_aside_and_verify_does_not_crash(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    _write(store, 0, 100)
    folder = store.folder(BT)
    odd = f"{folder}/2025-01-03T09-41-00-000000000Z_2025-01-03T09-50-00-000000000Z.parquet"
    os.makedirs(odd)
    verify = subprocess.run([*CLI, "verify", url], capture_output=True, text=True)
    assert "Traceback" not in verify.stderr + verify.stdout, verify.stderr
    assert len(_ours(url)) == 100 and not os.path.exists(odd)
    assert _write(BarStore(url), 100, 10) == 10
    assert len(_theirs(url)) == 110


def test_a_file_corrupt_inside_is_quarantined_when_a_merge_touches_it(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    _write(store, 0, 100)
    (victim,) = [f.path for f in store.files(BT)]
    with open(victim, "r+b") as f:
        f.seek(8)
        f.write(b"\x00" * 192)  # page bytes gone, footer intact
    assert _write(BarStore(url), 100, 10) == 10  # the write goes ahead without it
    assert len(_ours(url)) == 10 and BarStore(url).verify() == []


# -- item 9: a full disk keeps nothing ---------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    ok = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if ok.returncode != 0:
        pytest.skip("mounting a 64 KiB tmpfs needs root: a real full disk is the attack")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_leaves_no_part_file_behind(tiny_disk):
    url = str(tiny_disk / "store")
    store = BarStore(url)
    _write(store, 0, 10)
    with pytest.raises(Exception, match="no space left"):
        _write(store, 100, 3000)  # about 240 KiB of bars on a 64 KiB disk
    leftovers = [n for _, _, names in os.walk(tiny_disk) for n in names if n.endswith(".part")]
    assert leftovers == []
    assert _ours(url) == storework.bars(0, 10)[0].tolist()  # what was stored is intact


# -- item 10: no timestamp wraps ---------------------------------------------------------------


def test_bars_before_1970_are_not_stored_and_nothing_wraps(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    day = 86_400 * 10**9
    opens = np.array([-2 * day, -day, 0, day], dtype=np.int64)  # 1969-12-30 .. 1970-01-02
    values = np.full((4, 5), 1.5)
    assert store.write(BT, day, opens, values, 5, 0, P.empty()) == 2
    assert any("outside 1970..2262" in n for n in store.take_notes())
    table, _, _ = BarStore(url).read(BT, day, Span(-5 * day, 5 * day))  # a window from 1969
    assert table.column("ts").to_pylist() == [0, day]
    theirs = storework.nautilus_read(url)
    assert theirs.tolist() == [0, day]


# -- item 12: reads do not slow down as writes pile up -----------------------------------------


def test_tail_writes_do_not_fragment_the_store(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    for i in range(100):  # 100 restarts, each adding a few tail bars
        _write(store, 3 * i, 3)
    assert len(store.files(BT)) == 1
    assert len(_ours(url)) == 300 and len(_theirs(url)) == 300


def test_a_fragmented_store_is_compacted_by_the_next_write(tmp_path):
    url = str(tmp_path / "store")
    store = BarStore(url)
    folder = store.folder(BT)
    os.makedirs(folder)
    # 300 one-bar files, as an older version left them after 300 restarts.
    for i in range(300):
        _file(store, 2 * i, 1)
    _write(BarStore(url), 1000, 5)
    assert len(store.files(BT)) <= 2
    assert len(_ours(url)) == 305 and len(_theirs(url)) == 305


def test_finding_superseded_files_is_not_quadratic():
    from nautilus_backfill.store import StoredFile, _live

    files = [StoredFile(str(i), i * 10, i * 10 + 5) for i in range(20_000)]
    files.insert(5, StoredFile("inner", 51, 52))
    started = time.perf_counter()
    live = _live(sorted(files, key=lambda f: (f.first, -f.last)))
    assert time.perf_counter() - started < 0.5
    assert len(live) == 20_000 and all(f.path != "inner" for f in live)


# -- item 13: credentials never printed --------------------------------------------------------


def test_redact_hides_credentials_in_urls_queries_and_options():
    assert redact("s3://AKIA123:s3cr3t@bucket/prefix") == "s3://***@bucket/prefix"
    assert "s3cr3t" not in redact("s3://bucket/p?secret=s3cr3t&region=eu")
    assert "region=eu" in redact("s3://bucket/p?secret=s3cr3t&region=eu")
    message = "error talking to http://minio:9000 with key AKIA123 and secret s3cr3t"
    assert redact(message, {"key": "AKIA123", "secret": "s3cr3t", "endpoint_url": "x"}) == (
        "error talking to http://minio:9000 with key *** and secret ***"
    )


def test_store_cli_never_prints_credentials_and_fails_without_a_traceback(tmp_path):
    url = "s3://AKIAXXXX:VERYSECRET@nb-bucket/store?secret=OTHERSECRET"
    for extra in (
        ["--option", "secret=OPTSECRET"],
        ["--option", "secret=OPTSECRET", "--option", "bogus=1"],
    ):
        run = subprocess.run(
            [*CLI, "info", url, "--option", "endpoint_url=http://127.0.0.1:9", *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = run.stdout + run.stderr
        assert run.returncode == 2 and "Traceback" not in out and "error:" in out, out
        for secret in ("VERYSECRET", "OTHERSECRET", "OPTSECRET", "AKIAXXXX"):
            assert secret not in out, out


def test_store_cli_takes_the_store_and_its_options_from_a_backfill_toml(tmp_path):
    url = str(tmp_path / "store")
    _write(BarStore(url), 0, 10)
    config = tmp_path / "backfill.toml"
    config.write_text('[backfill]\nstore = "store"\n[backfill.store_options]\nauto_mkdir = true\n')
    info = subprocess.run(
        [*CLI, "info", "--config", str(config), "--json"], capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc[0]["bars"] == 10
    bad = subprocess.run([*CLI, "info", "--option", "oops"], capture_output=True, text=True)
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr and "Traceback" not in bad.stderr


def test_a_float_ohlcv_file_in_a_catalog_folder_is_refused_by_the_parquet_source(tmp_path, run):
    folder = tmp_path / "catalog" / "data" / "bar" / BT.replace("/", "")
    folder.mkdir(parents=True)
    _float_bar_file(
        str(folder / "2025-01-02T09-41-00-000000000Z_2025-01-02T09-50-00-000000000Z.parquet")
    )
    request = {"bar_type": BT, "bars": 5, "end": "2025-01-02T10:00:00Z"}
    result = run(
        [request], [{"name": "cat", "plugin": "parquet", "path": str(tmp_path / "catalog")}]
    )
    report = result.report.requests[0]
    attempt = report.sources[0]
    # Refused with the type found and what was expected; nothing injected (it read 1.1 as
    # 4607632778.76 before). The file and column are named once the source calls
    # catalogfmt.check_bar_files on its dataset.
    assert report.injected == 0 and attempt.status == "error", attempt
    assert "type double" in attempt.error and "fixed_size_binary" in attempt.error


@pytest.fixture
def read_only(tmp_path):
    """A read-only view of a folder (a bind mount; file modes do not stop root)."""
    source, view = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    view.mkdir()
    yield source, view

    # Lazily if a handle is still open: a mount must never outlive the test run.
    if subprocess.run(["umount", str(view)], check=False, capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(view)], check=False, capture_output=True)


def _mount_read_only(source, view):
    steps = [
        ["mount", "--bind", str(source), str(view)],
        ["mount", "-o", "remount,ro,bind", str(view)],
    ]
    for step in steps:
        if subprocess.run(step, capture_output=True).returncode != 0:
            pytest.skip("a read-only bind mount needs root")


def test_a_store_this_process_may_only_read_is_read_right_despite_damage(read_only):
    source, view = read_only
    store = BarStore(str(source / "store"))
    _file(store, 0, 100)
    _file(store, 200, 50)
    _file(store, 200, 10)  # what a killed merge leaves: read twice by NautilusTrader
    folder = store.folder(BT)
    (victim,) = [f.path for f in store.files(BT) if f.first == storework.bars(0, 1)[0][0] + STEP]
    with open(victim, "r+b") as f:
        f.truncate(100)
    _mount_read_only(source, view)
    reader = BarStore(str(view / "store"))
    table, _, _ = reader.read(BT, STEP, Span(None, (T + 10**6) * 10**9))
    assert table.column("ts").to_pylist() == storework.bars(200, 50)[0].tolist()
    assert any("skipped" in n and "unreadable" in n for n in reader.take_notes())
    assert os.path.exists(victim) and len(os.listdir(folder)) >= 3  # nothing changed


def test_store_commands_on_a_path_that_is_no_store_say_so(tmp_path):
    from click.testing import CliRunner
    from nautilus_backfill.cli import main

    (tmp_path / "notes.txt").write_text("x")
    for path, message in ((tmp_path / "notes.txt", "not a store"), (tmp_path / "typo", "no such store")):
        for command in ("info", "verify"):
            out = CliRunner().invoke(main, ["store", command, str(path)])
            assert out.exit_code == 2 and message in out.output, out.output


def test_a_file_of_another_bar_type_in_a_folder_is_never_served_as_that_folders_bars(registry, shared, tmp_path):
    import shutil

    from nautilus_backfill import Backfill
    from nautilus_backfill.config import config_from_dict
    from nautilus_backfill.store import BarStore

    store = tmp_path / "store"
    folder = store / "data" / "bar" / "ETHBTC.BINANCE-1-MINUTE-LAST-EXTERNAL"
    folder.mkdir(parents=True)
    name = "2021-11-27T00-00-00-000000000Z_2021-11-27T00-09-00-000000000Z.parquet"
    shutil.copy(shared / "parquet" / "nautilus-128bit-bars.parquet", folder / name)  # ADABTC bars
    assert any("holds bars of ADABTC.BINANCE-1-MINUTE-LAST-EXTERNAL" in p for p in BarStore(str(store)).verify())
    cfg = config_from_dict({"backfill": {"store": str(store), "requests": [{
        "bar_type": "ETHBTC.BINANCE-1-MINUTE-LAST-EXTERNAL", "start": "2021-11-27T00:00:00Z",
        "end": "2021-11-27T00:10:00Z", "price_precision": 8, "size_precision": 8}]}}, registry=registry)
    r = Backfill(cfg, registry=registry).fetch().report.requests[0]
    assert r.injected == 0 and r.status == "failed"


def test_bar_types_that_share_a_catalog_folder_never_get_each_others_bars(tmp_path):
    import numpy as np
    import portion as P
    from nautilus_backfill.errors import SourceError
    from nautilus_backfill.source import Span
    from nautilus_backfill.store import BarStore

    store = BarStore(str(tmp_path / "store"))
    step = 60 * 10**9
    ts = 1_735_808_400 * 10**9 + step * np.arange(10, dtype=np.int64)
    values = np.column_stack([np.full(10, 1.1)] * 4 + [np.ones(10)])
    store.write("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", step, ts, values, 5, 0, P.empty())
    with pytest.raises(SourceError, match=r"holds bars of EUR/USD\.SIM-1-MINUTE-MID-EXTERNAL, not EURUSD"):
        store.read("EURUSD.SIM-1-MINUTE-MID-EXTERNAL", step, Span(None, int(ts[-1]) + step))
    with pytest.raises(SourceError, match="cannot use the store"):
        store.write("EURUSD.SIM-1-MINUTE-MID-EXTERNAL", step, ts + 10 * step, values * 2, 5, 0, P.empty())
    table, _, _ = store.read("EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", step, Span(None, int(ts[-1]) + 30 * step))
    assert table.num_rows == 10 and set(table.column("close").to_pylist()) == {1.1}
