"""One call for many requests: the parquet catalog's and the store's `fetch_many`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import portion as P
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.errors import SourceError
from nautilus_backfill.hookspecs import hookimpl
from nautilus_backfill.plugins.parquet import ParquetBarSource
from nautilus_backfill.registry import build_registry
from nautilus_backfill.source import BarRequest, BarSource, SourceContext, SourceResult, Span
from nautilus_backfill.store import BarStore, StoreSource
from nautilus_trader.model.data import Bar, BarType

MINUTE = 60 * 10**9
T0_S = 1_704_067_200  # 2024-01-01
TYPES = [f"B{i:02d}.XNAS-1-MINUTE-LAST-EXTERNAL" for i in range(50)]


def _series(i: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    # Staggered starts (overlapping windows across bar types) and a 50-bar gap in half of them.
    ts = (T0_S + 60 * (20 * i + np.arange(n, dtype=np.int64))) * 10**9
    rng = np.random.default_rng(i)
    close = np.round(100 + np.cumsum(rng.normal(0, 0.1, n)), 2)
    values = np.column_stack(
        [close, close + 0.05, close - 0.05, close, rng.integers(1, 999, n).astype(float)]
    )
    if i % 2 == 0:
        keep = np.r_[0:100, 150:n]
        ts, values = ts[keep], values[keep]
    return ts, values


def _catalog(root: Path) -> None:
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    catalog = ParquetDataCatalog(str(root))
    for i, name in enumerate(TYPES):
        ts, v = _series(i)
        ts_u = ts.astype(np.uint64)
        catalog.write_data(
            Bar.from_raw_arrays_to_list(
                BarType.from_str(name), 2, 0, *(np.ascontiguousarray(v[:, k]) for k in range(5)),
                ts_u, ts_u + np.uint64(MINUTE),
            )
        )  # fmt: skip


def _requests() -> list[dict]:
    out = []
    for i, name in enumerate(TYPES):
        first = T0_S + 60 * 20 * i
        if i % 3 == 0:  # count mode, ending inside the history (and inside the gap for some)
            out.append({"bar_type": name, "bars": 120, "end": _iso(first + 60 * 130)})
        elif i % 3 == 1:  # a window that reaches before the first bar and over the gap
            out.append(
                {"bar_type": name, "start": _iso(first - 3600), "end": _iso(first + 60 * 200)}
            )
        else:  # more bars than there are
            out.append({"bar_type": name, "bars": 1000, "end": _iso(first + 60 * 400)})
    out.append({"bar_type": "NOPE.XNAS-1-MINUTE-LAST-EXTERNAL", "bars": 10, "end": _iso(T0_S + 600),
                "price_precision": 2, "size_precision": 0})  # fmt: skip
    return out


def _iso(seconds: int) -> str:
    return np.datetime_as_string(np.datetime64(seconds, "s")) + "Z"


class _OneByOne(ParquetBarSource):
    # The same source without its batch method: the host then calls `fetch` per request.
    fetch_many = BarSource.fetch_many  # type: ignore[assignment]


class _Plugin:
    @hookimpl
    def register_sources(self, register):
        register("parquet-each", _OneByOne)


def _summary(result) -> tuple[dict, list]:
    bars = {str(bt): [Bar.to_dict(b) for b in bs] for bt, bs in result.bars.items()}
    reports = []
    for r in result.report.requests:
        d = r.to_dict()
        d.pop("elapsed_s", None)
        for s in d.get("sources", []):
            s.pop("elapsed_s", None)
            s.pop("plugin", None)
        reports.append(d)
    return bars, reports


def test_one_call_for_fifty_bar_types_gives_what_fifty_calls_give(tmp_path):
    _catalog(tmp_path / "catalog")
    registry = build_registry(entry_points=False, extra=[("each", _Plugin())])
    results = []
    for plugin in ("parquet", "parquet-each"):
        doc = {"backfill": {"requests": _requests(), "deadline": "60s", "sources": [
            {"name": "cat", "plugin": plugin, "path": str(tmp_path / "catalog")}]}}  # fmt: skip
        result = Backfill(config_from_dict(doc, registry=registry), registry=registry).fetch()
        for r in result.report.requests:
            assert r.accounted(), r.to_dict()
        results.append(_summary(result))
    (batch_bars, batch_reports), (each_bars, each_reports) = results
    assert batch_bars == each_bars and batch_reports == each_reports
    # The case is what it claims: gaps, partial windows, and one bar type not in the catalog.
    assert len(batch_bars) == 50
    assert any(r["gaps"] for r in batch_reports)
    assert batch_reports[-1]["sources"][0]["status"] == "empty"
    injected = [r["injected"] for r in batch_reports[:50]]
    assert min(injected) < max(injected)


def _pairs(types: list[str]) -> list[tuple[BarRequest, Span]]:
    out = []
    for i, name in enumerate(types):
        first = (T0_S + 60 * 20 * (i % 50)) * 10**9
        req = BarRequest(BarType.from_str(name), MINUTE, first + 250 * MINUTE, None, 120, i)
        span = Span(None, req.end_ns, 120) if i % 2 else Span(first + 90 * MINUTE, req.end_ns)
        out.append((req, span))
    return out


def _same(a: SourceResult | Exception, b: SourceResult | Exception) -> None:
    if isinstance(a, Exception):
        assert type(a) is type(b) and str(a) == str(b)
        return
    assert isinstance(b, SourceResult)
    key = ["ts"]
    assert a.table.sort_by([(k, "ascending") for k in key]).equals(
        b.table.sort_by([(k, "ascending") for k in key])
    )
    assert (a.timestamp_is, a.price_precision, a.size_precision) == (
        b.timestamp_is, b.price_precision, b.size_precision,
    )  # fmt: skip
    assert a.notes == b.notes and a.instruments == b.instruments


def test_a_pair_that_fails_fails_alone(tmp_path):
    root = tmp_path / "catalog"
    _catalog(root)
    # A float column where the catalog writes fixed-point: that bar type is refused, not read.
    bad = next((root / "data" / "bar" / TYPES[7]).glob("*.parquet"))
    table = pq.read_table(bad)
    pq.write_table(table.set_column(0, "open", pa.array(np.ones(table.num_rows))), bad)
    source = ParquetBarSource(
        ParquetBarSource.config_type(name="cat", plugin="parquet", path=str(root)),
        SourceContext(tmp_path),
    )
    pairs = _pairs([*TYPES[:10], "NOPE.XNAS-1-MINUTE-LAST-EXTERNAL"])
    answers = source.fetch_many(pairs)
    assert len(answers) == len(pairs)
    failed = [i for i, a in enumerate(answers) if isinstance(a, Exception)]
    assert failed == [7, 10]
    assert isinstance(answers[7], SourceError) and "column 'open' has type double" in str(
        answers[7]
    )
    assert isinstance(answers[10], SourceError) and answers[10].status == "empty"
    for (req, span), answer in zip(pairs, answers, strict=True):
        try:
            one: SourceResult | Exception = source.fetch(req, span)
        except Exception as e:
            one = e
        _same(answer, one)
    assert all(a.table.num_rows for a in answers if isinstance(a, SourceResult))


def _store(root: Path) -> BarStore:
    store = BarStore(str(root))
    for i, name in enumerate(TYPES):
        ts, values = _series(i)
        store.write(name, MINUTE, ts, values, 2, 0, P.closedopen(int(ts[0]), int(ts[-1]) + MINUTE))
    return store


def test_the_store_answers_fifty_bar_types_in_one_call_as_in_fifty(tmp_path):
    store = _store(tmp_path / "store")
    source = StoreSource(store, SourceContext(tmp_path))
    pairs = _pairs([*TYPES, "NOPE.XNAS-1-MINUTE-LAST-EXTERNAL"])
    answers = source.fetch_many(pairs)
    assert len(answers) == len(pairs)
    for (req, span), answer in zip(pairs, answers, strict=True):
        _same(answer, source.fetch(req, span))
    assert answers[-1].table.num_rows == 0
    assert len({a.table.num_rows for a in answers[:-1]}) > 1  # gaps: not all the same


@pytest.mark.parametrize("n", [100, 3000])
def test_short_requests_are_packed_into_bars_nautilus_would_build(n):
    # Once a precision pair's layout is probed, every bar type's bars go through
    # capsule_to_list, with the bar type copied from NautilusTrader's own Bar.
    from nautilus_backfill import convert, cvec
    from nautilus_backfill.bararrays import BarArrays
    from nautilus_trader.cache.cache import Cache

    calls = []
    real = cvec.capsule_to_list
    cvec.capsule_to_list = lambda c: calls.append(1) or real(c)
    try:
        assert cvec._layout("AAPL.XNAS-1-MINUTE-LAST-EXTERNAL", 2, 0) is not None
        cache = Cache()
        for i, name in enumerate(TYPES[:5]):
            ts, v = _series(i, n)
            bars = BarArrays(ts, *(np.ascontiguousarray(v[:, k]) for k in range(5)))
            calls.clear()
            got = convert.to_bars(bars, BarType.from_str(name), MINUTE, 2, 0)
            assert calls, "the packed path was not taken"
            ts_u = ts.astype(np.uint64)
            want = Bar.from_raw_arrays_to_list(
                BarType.from_str(name), 2, 0, *(np.ascontiguousarray(v[:, k]) for k in range(5)),
                ts_u, ts_u + np.uint64(MINUTE),
            )  # fmt: skip
            assert [Bar.to_dict(b) for b in got] == [Bar.to_dict(b) for b in want]
            cache.add_bars(got)
            assert cache.bar_count(BarType.from_str(name)) == len(ts)
            assert cache.bar(BarType.from_str(name)) == want[-1]
    finally:
        cvec.capsule_to_list = real


def test_the_store_lists_its_folders_once_for_a_batch_and_reads_right_after_a_change(tmp_path):
    store = _store(tmp_path / "store")
    source = StoreSource(store, SourceContext(tmp_path))
    pairs = _pairs(TYPES[:20])
    calls = {"ls": 0, "find": 0}
    for name in calls:
        real = getattr(store.fs, name)

        def counting(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        setattr(store.fs, name, counting)
    one_by_one = [source.fetch(req, span) for req, span in pairs]
    per_request = calls["ls"]
    calls.update(ls=0, find=0)
    batch = source.fetch_many(pairs)
    # Per request: the folder for the repair check, again for the file list, and the data
    # folder for instruments. In a batch: each folder once, the data folder once.
    assert per_request == 3 * len(pairs)
    assert calls["ls"] + calls["find"] == len(pairs) + 1, calls
    for a, b in zip(batch, one_by_one, strict=True):
        _same(a, b)
    # A write after the batch is seen by the next read: the listings do not outlive the call.
    ts, values = _series(0)
    later = ts[-1] + MINUTE * np.arange(1, 11)
    store.write(TYPES[0], MINUTE, later, values[:10], 2, 0, P.closedopen(int(later[0]), int(later[-1]) + MINUTE))
    req, _ = pairs[0]
    again = source.fetch_many([(req, Span(None, int(later[-1]) + MINUTE, 5))])[0]
    assert again.table.column("ts").to_pylist() == [int(t) for t in later[-5:]] or sorted(
        again.table.column("ts").to_pylist()
    ) == [int(t) for t in later[-5:]]
