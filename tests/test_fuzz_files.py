"""
Malformed CSV files through the real pipeline: a clear refusal or named drops, nothing else.

Fixed seed, bounded count. For every file: no exception escapes ``fetch``, no warning is
raised, nothing is written to stderr (no "Exception ignored", no traceback), a source error
is a message (not a Python exception's name), and every received row is accounted for.
"""

from __future__ import annotations

import gc
import gzip
import random
import re
import warnings

import pytest

HEADER = "timestamp,open,high,low,close,volume"
T0 = 1_704_067_200  # 2024-01-01
BUG = re.compile(r"^[A-Z][A-Za-z]*(Error|Exception|Warning|Interrupt)\b")
STAMPS = [
    "2024-01-01T00:{m:02d}:00Z", "2024-01-01 00:{m:02d}:00", "2024-01-01 00:{m:02d}:00+00:00",
    "{e}", "{e}000", "{e}000000", "{e}000000000", "20240101 00:{m:02d}", "01/02/2024 00:{m:02d}",
    "NaT", "", "2024-13-45T99:99:99Z", "0000-00-00", "-{e}", "1e10", "1600-01-01", "2262-04-12",
    "9999-12-31T23:59:59Z", "99999999999999999999999", "2024-01-01T00:{m:02d}:00.123456789+05:30",
    "\x00", "\ufeff2024-01-01", "24-01-01", "1.5", "inf", "nan", "2024-01-01T00:{m:02d}:00Z junk",
]  # fmt: skip
NUMBERS = ["1.1", "1.2", "1.0", "0", "-1", "1e308", "1e400", "-1e308", "nan", "inf", "abc", "",
           "99999999999999999999999", "1,5", "0x10", "1_000", "  1.1  ", '"1.1"', "1e-320"]  # fmt: skip


def _row(rng: random.Random, m: int, delim: str, base: str) -> str:
    stamp = rng.choice(STAMPS) if rng.random() < 0.05 else base
    stamp = stamp.format(m=m % 60, e=T0 + 60 * m)
    if rng.random() < 0.1:
        values = [rng.choice(NUMBERS) for _ in range(rng.choice([3, 5, 6, 7, 9]))]
    else:
        values = ["1.1", "1.2", "1.0", "1.1", "10"]
    return delim.join([stamp, *values])


def _text_file(rng: random.Random) -> bytes:
    delim = rng.choice([",", ",", ";", "\t", "|"])
    lines = [] if rng.random() < 0.2 else [HEADER.replace(",", delim)]
    base = rng.choice(STAMPS[:9])
    for m in range(rng.randint(0, 60)):
        d = delim if rng.random() < 0.9 else rng.choice([",", ";", "\t", " "])
        lines.append(_row(rng, m, d, base))
        if rng.random() < 0.05:
            lines.append(rng.choice(["", " ", '"unclosed,1,2', "#comment", "a" * 5000]))
    end = rng.choice(["\n", "\r\n", "\r"])
    text = end.join(lines) + (end if rng.random() < 0.8 else "")
    encoding = rng.choice(["utf-8"] * 12 + ["utf-8-sig", "utf-16", "latin-1"])
    try:
        data = (text + rng.choice(["", "é", "€"])).encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    if rng.random() < 0.15:
        cut = rng.randint(0, len(data))
        data = data[:cut]
    if rng.random() < 0.05:
        pos = rng.randint(0, len(data))
        data = data[:pos] + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8))) + data[pos:]
    return data


def _file(rng: random.Random, i: int) -> tuple[str, bytes]:
    kind = rng.random()
    if kind < 0.05:
        return "bars.csv", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
    data = _text_file(rng)
    if kind < 0.12:
        packed = gzip.compress(data)
        return "bars.csv.gz", packed[
            : rng.randint(0, len(packed))
        ] if rng.random() < 0.5 else packed
    return "bars.csv", data


# pyarrow's "Exception ignored" goes to pytest's unraisable hook, not to stderr: fail on it.
pytestmark = [
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
    # Listed last, so it wins: an earlier test's TradingNode leaves NautilusTrader's executor
    # coroutine to the garbage collector, which may run during these tests (not ours to judge).
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <coroutine object ActorExecutor._worker"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

SOURCES = [{}, {"timestamp_format": "epoch_s"}, {"timestamp_format": "%Y-%m-%d %H:%M:%S"},
           {"header": True}, {"header": False}, {"columns": {"close": 4}}, {"price_scale": 0.0001},
           {"timezone": "America/New_York"}, {"timestamp_is": "close"}, {"delimiter": ";"}]  # fmt: skip


@pytest.mark.parametrize("chunk", range(4))
def test_malformed_files_never_escape_as_exceptions_or_warnings(tmp_path, run, capfd, chunk):
    rng = random.Random(1000 + chunk)
    gc.collect()  # what earlier tests left to the collector speaks now, not during a case
    capfd.readouterr()
    for i in range(50):
        name, data = _file(rng, i)
        folder = tmp_path / f"{i}"
        folder.mkdir()
        path = folder / name
        path.write_bytes(data)
        req = {"bar_type": "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL", "end": "2024-01-02T00:00:00Z",
               "price_precision": 5, "size_precision": 0}  # fmt: skip
        if rng.random() < 0.5:
            req["bars"] = rng.choice([1, 10, 500])
        else:
            req["start"] = "2023-12-31T00:00:00Z"
        source = {"name": "f", "plugin": "csv", "path": str(path), **rng.choice(SOURCES)}
        case = f"case {chunk}/{i}: {name} {source} {req} {data[:200]!r}"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = run([req], [source])  # the fixture asserts every row is accounted
        report = result.report.requests[0]
        assert report.accounted(), case
        error = report.sources[0].error or ""
        assert not BUG.match(error), f"{case}: {error}"
        assert report.error is None or not BUG.match(report.error), f"{case}: {report.error}"
        captured = capfd.readouterr()
        assert not captured.err.strip(), f"{case}: stderr {captured.err[:500]}"
