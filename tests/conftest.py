from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nautilus_backfill import Backfill
from nautilus_backfill.config import config_from_dict
from nautilus_backfill.registry import build_registry

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real market data folder {SHARED} is absent (it is beside the checkout in CI)")
    return SHARED


@pytest.fixture
def simulator(shared):
    """Start IB gateway simulators with a scenario's faults; all stop after the test."""
    from ibsim import IBSimulator, Scenario

    sims = []

    def start(**scenario):
        sim = IBSimulator(Scenario(**scenario), recordings=shared / "ib")
        sim.start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


@pytest.fixture(scope="session")
def registry():
    # Built-ins only: the suite never picks up whatever plugins happen to be installed.
    return build_registry(entry_points=False)


@pytest.fixture
def run(registry):
    def _run(requests: list[dict[str, Any]], sources: list[dict[str, Any]], cache: Any = None, **backfill: Any):
        cfg = config_from_dict(
            {"backfill": {"requests": requests, "sources": sources, **backfill}}, registry=registry,
        )
        result = Backfill(cfg, registry=registry).fetch(cache=cache)
        for r in result.report.requests:
            assert r.accounted(), f"accounting broken for {r.bar_type}: {r.to_dict()}"
        return result

    return _run


try:
    import ibapi  # noqa: F401
except ImportError:  # the core must work without the [ib] extra; `make test` installs it
    collect_ignore = ["test_ib.py", "test_ib_fidelity.py", "test_examples.py"]
