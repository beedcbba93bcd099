"""The load generator against a real server: its report is what RESULTS.md is built from,
so its conservation check and its CPU split must be real readings, not placeholders."""

from __future__ import annotations

from benchmarks.load import run_load
from tests.support.server import Server


async def test_a_short_uniform_run_reports_conservation_and_cpu_by_role(server: Server) -> None:
    report = await run_load(
        server.url,
        server.token,
        scenario="uniform",
        balances=8,
        connections=4,
        seconds=1.5,
        batch=1,
        seed=3,
        server_tree=server.tree,
    )
    assert report["errors"] == 0
    assert report["payments"] > 0 and report["statuses"] == {"success": report["payments"]}
    assert report["conserved"] is True
    cpu = report["cpu_ms_per_payment"]
    assert isinstance(cpu, dict)
    for role in ("client", "gateway", "coordinator", "shards"):
        assert cpu[role] > 0, role
    assert cpu["server"] >= cpu["gateway"] + cpu["coordinator"] + cpu["shards"]
    assert report["payments_per_coordinator_call"] >= 1
