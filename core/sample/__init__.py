"""
Deterministic sample data shipped with the package, for the demo and the quickstart.

``python -m nautilus_backfill.sample`` regenerates ``eurusd-1-minute-mid.csv`` bit for bit.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np

CSV_NAME = "eurusd-1-minute-mid.csv"
CONFIG_NAME = "backfill.toml"
START = 1_735_689_600  # 2025-01-01T00:00:00Z
BARS = 2_000


def folder() -> Path:
    """
    Return the folder holding the sample files.

    Returns
    -------
    Path

    """
    return Path(str(files(__name__)))


def generate(n: int = BARS, seed: int = 7) -> str:
    """
    Return a deterministic random walk of EUR/USD 1-minute mid bars as CSV text.

    Parameters
    ----------
    n : int, default 2000
        The number of bars.
    seed : int, default 7
        The random seed.

    Returns
    -------
    str

    """
    rng = np.random.default_rng(seed)
    closes = 1.035 + np.cumsum(rng.normal(0, 0.00012, n))
    opens = np.concatenate([[1.035], closes[:-1]])
    wiggle = np.abs(rng.normal(0, 0.00008, (2, n)))
    highs = np.maximum(opens, closes) + wiggle[0]
    lows = np.minimum(opens, closes) - wiggle[1]
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(n):
        lines.append(
            f"{START + 60 * i},{opens[i]:.5f},{highs[i]:.5f},{lows[i]:.5f},{closes[i]:.5f},"
            f"{int(rng.integers(1, 50)) * 100_000}",
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (folder() / CSV_NAME).write_text(generate())
