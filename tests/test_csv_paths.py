"""Path templates stay inside the folder they name (issue 11 #13)."""

from __future__ import annotations

import pytest
from nautilus_backfill.errors import SourceError
from nautilus_backfill.paths import expand, fill_template, template_root
from nautilus_trader.model.data import BarType

EVIL = BarType.from_str("../outside/evil.SIM-1-MINUTE-LAST-EXTERNAL")
BODY = "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1.5,1\n"


@pytest.mark.parametrize("field", ["raw_symbol", "instrument_id", "bar_type"])
def test_a_symbol_climbing_out_of_the_folder_is_refused(tmp_path, run, field):
    (tmp_path / "data").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    # The file the attack aims at exists: the old code read it.
    for name in (
        "evil-1-MINUTE.csv",
        "evil.SIM-1-MINUTE.csv",
        "evil.SIM-1-MINUTE-LAST-EXTERNAL-1-MINUTE.csv",
    ):
        (outside / name).write_text(BODY)
    req = {
        "bar_type": str(EVIL),
        "start": "2024-01-01T00:00:00Z",
        "end": "2024-01-02T00:00:00Z",
        "price_precision": 2,
        "size_precision": 0,
    }
    src = [
        {"name": "f", "plugin": "csv", "path": str(tmp_path / "data" / f"{{{field}}}-{{step}}.csv")}
    ]
    report = run([req], src).report.requests[0]
    assert report.received == 0 and report.injected == 0
    error = report.sources[0].error
    assert f"{{{field}}} of ../outside/evil.SIM" in error and "would leave the folder" in error


def test_slash_in_a_symbol_is_a_subfolder_inside(tmp_path):
    bar_type = BarType.from_str("GBP/USD.SIM-1-MINUTE-BID-EXTERNAL")
    (tmp_path / "GBP").mkdir()
    (tmp_path / "GBP" / "USD.csv").write_text(BODY)
    assert expand(str(tmp_path / "{raw_symbol}.csv"), bar_type) == [
        str(tmp_path / "GBP" / "USD.csv")
    ]
    assert fill_template("data/{symbol}.csv", bar_type) == "data/GBPUSD.csv"
    assert template_root("data/{venue}/{symbol}.csv") == "data"


def test_glob_characters_in_a_symbol_match_only_themselves(tmp_path):
    bar_type = BarType.from_str("ES[H4].CME-1-MINUTE-LAST-EXTERNAL")
    (tmp_path / "ES[H4].csv").write_text(BODY)
    (tmp_path / "ESH.csv").write_text(BODY)
    assert expand(str(tmp_path / "*" / ".." / "{symbol}.csv"), bar_type) == []
    assert expand(str(tmp_path / "{symbol}.cs?"), bar_type) == [str(tmp_path / "ES[H4].csv")]


def test_absolute_values_are_refused():
    with pytest.raises(SourceError, match="would leave the folder"):
        fill_template(
            "data/{raw_symbol}.csv", BarType.from_str("/etc/passwd.SIM-1-MINUTE-LAST-EXTERNAL")
        )
