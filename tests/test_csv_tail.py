"""Count mode reads what the request needs, not the whole file (issue 11 #11)."""

from __future__ import annotations

import numpy as np
import pytest
from nautilus_backfill.plugins.csv import source as csv_source

T0 = 1_577_836_800  # 2020-01-01
REQ = {
    "bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL",
    "end": "2030-01-01T00:00:00Z",
    "price_precision": 5,
    "size_precision": 0,
}


def _file(tmp_path, n, order=None, bad_at=(), name="big.csv"):
    idx = np.arange(n) if order is None else order
    lines = ["timestamp,open,high,low,close,volume"]
    for k, i in enumerate(idx):
        if k in bad_at:
            lines.append(f"{T0 + 60 * i},1.1,1.0,1.2,1.1,1")  # high < low
        elif k % 997 == 5:
            lines.append("")  # blank lines move line numbers off row numbers
            lines.append(f"{T0 + 60 * i},1.1,1.2,1.0,1.0{i % 10},1")
        else:
            lines.append(f"{T0 + 60 * i},1.1,1.2,1.0,1.0{i % 10},1")
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p, lines


def _fetch(run, path, bars, tail: bool, monkeypatch):
    monkeypatch.setattr(csv_source, "TAIL_MIN_BYTES", 0 if tail else 1 << 60)
    source = {"name": "f", "plugin": "csv", "path": str(path), "sorted": tail}
    result = run([dict(REQ, bars=bars)], [source])
    return result


def _calls(monkeypatch):
    calls = {"tail": 0, "stream": 0}
    real_tail, real_stream = csv_source.CsvBarSource._read_tail, csv_source.CsvBarSource._stream

    def tail(self, *a, **k):
        out = real_tail(self, *a, **k)
        calls["tail"] += out is not None
        return out

    def stream(self, *a, **k):
        calls["stream"] += 1
        return real_stream(self, *a, **k)

    monkeypatch.setattr(csv_source.CsvBarSource, "_read_tail", tail)
    monkeypatch.setattr(csv_source.CsvBarSource, "_stream", stream)
    return calls


def test_sorted_file_read_from_the_end_gives_what_streaming_gives(tmp_path, run, monkeypatch):
    n = 60_000
    bad = {n - 40}
    path, lines = _file(tmp_path, n, bad_at=bad)
    calls = _calls(monkeypatch)
    tail = _fetch(run, path, 500, True, monkeypatch)
    assert calls == {"tail": 1, "stream": 0}
    stream = _fetch(run, path, 500, False, monkeypatch)
    (a,), (b,) = tail.bars.values(), stream.bars.values()
    assert a == b and len(a) == 499  # one of the newest 500 rows is invalid
    assert a[-1].ts_event == (T0 + 60 * (n - 1)) * 10**9
    ra, rb = tail.report.requests[0], stream.report.requests[0]
    assert ra.dropped == rb.dropped == {"ohlc_inconsistent": 1}
    assert ra.examples == rb.examples
    # The line number is the file's own, counted independently here.
    want = next(i + 1 for i, ln in enumerate(lines) if ln.startswith(f"{T0 + 60 * (n - 40)},"))
    assert f"big.csv: line {want} (" in ra.examples[0]
    # Only the rows near the end were received, not the file.
    assert ra.sources[0].received < 2_000


def test_unsorted_file_is_streamed_and_the_newest_bars_found(tmp_path, run, monkeypatch):
    n = 30_000
    order = np.arange(n)
    order[1000], order[-1] = order[-1], order[1000]  # the newest bar early in the file
    path, _ = _file(tmp_path, n, order=order)
    calls = _calls(monkeypatch)
    result = _fetch(run, path, 300, True, monkeypatch)
    assert calls["tail"] == 0 and calls["stream"] == 1
    (bars,) = result.bars.values()
    assert bars[-1].ts_event == (T0 + 60 * (n - 1)) * 10**9
    assert [b.ts_event for b in bars] == [(T0 + 60 * i) * 10**9 for i in range(n - 300, n)]


@pytest.mark.parametrize("bars", [1, 499, 5000])
def test_stream_buffer_keeps_the_newest(tmp_path, run, monkeypatch, bars):
    n = 20_000
    rng = np.random.default_rng(bars)
    path, _ = _file(tmp_path, n, order=rng.permutation(n))
    result = _fetch(run, path, bars, False, monkeypatch)
    (got,) = result.bars.values()
    assert [b.ts_event for b in got] == [(T0 + 60 * i) * 10**9 for i in range(n - bars, n)]


def test_a_file_not_declared_sorted_is_streamed_and_a_stray_newer_row_is_found(tmp_path, run, monkeypatch):
    # The newest bar sits in the middle of an otherwise sorted file: only a full read finds it.
    n = 60_000
    order = np.arange(n)
    order[n // 3], order[-1] = order[-1] + 1, order[n // 3]
    path, _ = _file(tmp_path, n, order=order)
    monkeypatch.setattr(csv_source, "TAIL_MIN_BYTES", 0)
    result = run([dict(REQ, bars=500)], [{"name": "f", "plugin": "csv", "path": str(path)}])
    (bars,) = result.bars.values()
    assert bars[-1].ts_event == (T0 + 60 * n) * 10**9
