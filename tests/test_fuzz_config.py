"""Fuzzing configs: whatever the TOML holds, `check` and `fetch` answer with a message, never a traceback."""

from __future__ import annotations

import random
import warnings

import pytest
from click.testing import CliRunner
from nautilus_backfill.cli import main

KEYS = {
    "backfill": ["deadline", "on_insufficient", "on_capacity", "warm_up", "base_dir", "store", "keep",
                 "max_age", "store_options", "unknown_key"],
    "request": ["bar_type", "bars", "start", "end", "price_precision", "size_precision", "ts_event",
                "allow_non_positive_prices", "contract", "max_age", "typo"],
    "source": ["name", "plugin", "timeout", "strict", "write_back", "path", "timestamp_is", "timezone",
               "timestamp_format", "delimiter", "header", "columns", "port", "host", "client_id", "price_scale"],
}
VALUES = [
    '""', '"x"', "0", "-1", "1", "17", "99999999999999999999", "-99999999999999999999", "1e308", "-inf",
    "nan", "true", "[]", "[1, 2]", "{}", '{a = 1}', '"3000-01-02T09:00:00Z"', '"1500-01-01"',
    '"2024-01-01T00:00:00Z"', '"now"', '"99999999999999999999999999d"', '"0s"', '"5s"', '"1h"', '"off"',
    '"auto"', '"gs://b/x"', '"s3://KEY:SECRET@b/x"', '"nope://x"', '"../../etc/passwd"', '"*.csv"',
    '"%Y%m%d"', '"epoch_ms"', '"Mars/Olympus"', '"AAPL.NASDAQ-1-MINUTE-LAST-EXTERNAL"',
    '"AAPL.NASDAQ-1-TICK-LAST-EXTERNAL"', '"AAPL.NASDAQ-5-MINUTE-LAST-INTERNAL@1-MINUTE-EXTERNAL"',
    '"EUR/USD.IDEALPRO-1-MONTH-MID-EXTERNAL"', '"csv"', '"ib"', '"parquet"', '"store"', '"\\u0000"',
    "1979-05-27T07:32:00Z", '"' + "a" * 5000 + '"',
]
VALID = """[backfill]
deadline = "5s"
[[backfill.requests]]
bar_type = "EUR/USD.SIM-1-MINUTE-MID-EXTERNAL"
bars = 5
end = "2024-01-01T00:00:00Z"
price_precision = 5
size_precision = 0
[[backfill.sources]]
name = "f"
plugin = "csv"
path = "b.csv"
timeout = "2s"
"""


def _mutate(rng: random.Random) -> str:
    lines = VALID.splitlines()
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.45:  # change a value
            i = rng.choice([k for k, ln in enumerate(lines) if " = " in ln])
            lines[i] = lines[i].split(" = ")[0] + " = " + rng.choice(VALUES)
        elif op < 0.8:  # add a key somewhere
            present = [h for h in ("[backfill]", "[[backfill.requests]]", "[[backfill.sources]]") if h in lines]
            if not present:
                continue
            section = rng.choice(present)
            kind = {"[backfill]": "backfill", "[[backfill.requests]]": "request",
                    "[[backfill.sources]]": "source"}[section]
            at = lines.index(section) + 1
            lines.insert(at, f"{rng.choice(KEYS[kind])} = {rng.choice(VALUES)}")
        elif op < 0.9:  # delete a line
            del lines[rng.randrange(len(lines))]
        elif "[[backfill.sources]]" in lines:  # duplicate a table
            block = lines[lines.index("[[backfill.sources]]"):]
            lines += block
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.05:
        text = text[: rng.randrange(len(text))]
    return text


@pytest.mark.parametrize("seed", range(6))
def test_no_config_gives_a_traceback_or_a_warning(tmp_path, seed):
    (tmp_path / "b.csv").write_text(
        "timestamp,open,high,low,close\n" + "".join(f"2023-12-31T23:{m:02d}:00Z,1,1,1,1\n" for m in range(50, 60))
    )
    rng = random.Random(seed)
    runner = CliRunner()
    for n in range(40):
        cfg = tmp_path / f"c{n}.toml"
        cfg.write_text(_mutate(rng))
        for command in (["check", str(cfg)], ["fetch", "--json", str(cfg)]):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                out = runner.invoke(main, command)
            assert out.exception is None or isinstance(out.exception, SystemExit), (
                f"{command[0]} on:\n{cfg.read_text()}\nraised {out.exception!r}\n{out.output}"
            )
            assert "Traceback" not in out.output and "Warning" not in out.output, out.output
            assert out.exit_code in (0, 1, 2), out.output
            if command[0] == "check" and out.exit_code == 2:
                assert out.output.startswith("error: "), out.output
                break  # fetch would refuse the same config
