"""Suite-wide: the simulator's rotating seed heads the output, so a failure seen in CI's
log can be replayed anywhere."""

from __future__ import annotations

from tests.sim.seeds import REPLAY, ROTATING


def pytest_report_header() -> str:
    return f"simulator seed this run: {ROTATING} (replay: {REPLAY})"
