"""The README's first command: `nautilus-backfill demo`, from the installed entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _demo(*args):
    exe = shutil.which("nautilus-backfill", path=str(Path(sys.executable).parent))
    started = time.monotonic()
    proc = subprocess.run([exe, "demo", *args], capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - started


def _stable(doc):
    # Everything except wall-clock times must repeat exactly.
    doc.pop("elapsed_s")
    for r in doc["requests"]:
        for s in r["sources"]:
            s.pop("elapsed_s")
    return doc


def test_demo_json_shows_ib_refused_then_fallback_and_a_warm_strategy():
    proc, elapsed = _demo("--json")
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30
    doc = json.loads(proc.stdout)
    request = doc["requests"][0]
    ib, csv = request["sources"]
    assert (ib["plugin"], ib["status"]) == ("ib", "refused") and "connection refused" in ib["error"]
    assert (csv["status"], csv["used"]) == ("ok", 500) and request["injected"] == 500
    demo = doc["demo"]
    assert demo["historical_bars_fed"] == 500 and demo["live_bars_skipped_as_already_backfilled"] == 1
    first = demo["live"][0]
    assert first["warm"] and first["slow_count"] == 501 and first["ts_event"] == "2025-01-02T09:00:00Z"
    again, _ = _demo("--json")
    assert _stable(json.loads(again.stdout)) == _stable(doc)


def test_demo_text_prints_the_report_and_the_warm_values():
    proc, _ = _demo()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ib-paper      ib        refused" in out and "sample-csv    csv       ok" in out
    assert "were fed 500 backfilled bars" in out
    assert "strategy warm at its first live bar" in out
