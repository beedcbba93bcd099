"""A ledger on a Ray cluster of several nodes on this machine (`ray.cluster_utils.Cluster`).

    python -m tests.support.multinode

1. A head (no CPUs: it runs no actor) and two worker nodes; the ledger's actors spread
   over the workers.
2. The worker hosting the coordinator and a shard is lost (all its processes killed -9)
   while payments are being made; its actors restart on the surviving node and reopen
   their journals (one data directory every node sees); every payment ends final.
3. A node is added and the ledger restarted with twice the shards: partitions move to the
   new actors with their journals, nothing is lost, payments go on.

It runs in a process of its own because a driver connects to one Ray cluster at a time
(the test session has its own), and prints one JSON line of what it observed for
tests/integration/test_multinode.py to check. Ray's files, including the cluster address
file, go to a private temp dir removed at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

NODE_ARGS: dict[str, Any] = {
    "num_cpus": 1,
    "object_store_memory": 80 * 2**20,  # Ray's minimum
    "node_ip_address": "127.0.0.1",
}
# A lost node is noticed after ~3 s instead of Ray's default ~30 s.
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
}
BALANCES = 24
DEPOSIT_MINOR = 1_000_000


async def pay_rounds(client: Any, ids: list[str], rounds: int, per_round: int, rng: random.Random) -> list[Any]:
    from tests.support.scenario import payment

    paid = []
    for _ in range(rounds):
        paid += await client.pay([payment(*rng.sample(ids, 2), rng.randint(1, 100)) for _ in range(per_round)])
    return paid


def audited(balances: list[Any], payments: list[Any]) -> str:
    from tests.support.audit import audit

    try:
        audit(balances, payments)
    except AssertionError as exc:
        return f"failed: {exc}"
    return "ok"


def lose_node(cluster: Any, node: Any) -> None:
    """As if the machine died: every process of the node at once, actor workers included
    (they outlive a killed raylet for a while, which a dead machine's would not)."""
    import psutil
    from ray._private import ray_constants

    raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    for process in [*raylet.children(recursive=True), raylet]:
        process.kill()
    cluster.remove_node(node, allow_graceful=False)


def run(cluster: Any, data_dir: Path) -> dict[str, Any]:
    import msgspec
    import ray

    from actors.client import LedgerClient
    from actors.factory import kill_actors, start_actors
    from actors.peers import ray_lookup
    from actors.settings import Settings
    from ledger.results import PaymentStatus
    from tests.support.scenario import open_funded_balances

    report: dict[str, Any] = {}
    workers = [cluster.add_node(**NODE_ARGS) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    settings = Settings(data_dir=str(data_dir), namespace="multinode", partitions=8, shards=2, dashboard=False)
    handles = start_actors(settings)
    client = LedgerClient(settings, ray_lookup(settings.namespace))
    rng = random.Random(7)

    async def shard_nodes(client: LedgerClient) -> list[dict[str, Any]]:
        return (await client.status())["shards"]  # type: ignore[no-any-return]

    async def coordinator_node(client: LedgerClient) -> str:
        return (await client.status())["coordinators"][0]["node_id"]  # type: ignore[no-any-return]

    async def phase_one() -> list[Any]:
        _, ids, deposits = await open_funded_balances(client, BALANCES, DEPOSIT_MINOR)
        report["ids"] = ids
        return [*deposits, *(await pay_rounds(client, ids, 3, 50, rng))]

    acknowledged = asyncio.run(phase_one())
    ids = report.pop("ids")
    before = asyncio.run(shard_nodes(client))
    report["nodes"] = [cluster.head_node.node_id, *(w.node_id for w in workers)]
    report["shard_nodes_before"] = [s["node_id"] for s in before]
    report["coordinator_node_before"] = asyncio.run(coordinator_node(client))
    # The head takes no actors, so the two workers hold them all (registry, shard-0 |
    # shard-1, coordinator-0 round robin): the one with the coordinator also has a shard.
    victim = next((w for w in workers if w.node_id == report["coordinator_node_before"]), None)
    if victim is None:
        report["error"] = "the coordinator was not placed on a worker node"
        return report
    report["lost_node"] = victim.node_id

    async def through_node_loss() -> tuple[list[Any], list[Any]]:
        # Payments in flight while the node dies, and more once it is gone.
        loop = asyncio.get_running_loop()
        during = asyncio.ensure_future(pay_rounds(client, ids, 20, 20, rng))
        await asyncio.sleep(0.1)
        report["payments_in_flight_at_loss"] = not during.done()
        await loop.run_in_executor(None, lose_node, cluster, victim)
        return await during, await pay_rounds(client, ids, 3, 50, rng)

    during, after = asyncio.run(through_node_loss())
    acknowledged += [*during, *after]
    report["statuses_during_loss"] = sorted({str(p.status) for p in during})
    report["statuses_after_loss"] = sorted({str(p.status) for p in after})
    report["shard_nodes_after_loss"] = [s["node_id"] for s in asyncio.run(shard_nodes(client))]
    report["coordinator_node_after_loss"] = asyncio.run(coordinator_node(client))
    report["audit_after_loss"] = audited(asyncio.run(client.all_balances()), acknowledged)

    new_node = cluster.add_node(**NODE_ARGS)
    cluster.wait_for_nodes()
    report["added_node"] = new_node.node_id
    kill_actors(handles)
    settings = msgspec.structs.replace(settings, shards=4)
    handles = start_actors(settings)
    client = LedgerClient(settings, ray_lookup(settings.namespace))
    scaled = asyncio.run(shard_nodes(client))
    report["shard_nodes_scaled"] = [s["node_id"] for s in scaled]
    report["partitions_scaled"] = [s["partitions"] for s in scaled]
    report["audit_after_scale_out"] = audited(asyncio.run(client.all_balances()), acknowledged)
    more = asyncio.run(pay_rounds(client, ids, 3, 50, rng))
    acknowledged += more
    report["statuses_after_scale_out"] = sorted({str(p.status) for p in more})
    report["audit_final"] = audited(asyncio.run(client.all_balances()), acknowledged)
    report["payments"] = len(acknowledged)
    report["success"] = sum(p.status == PaymentStatus.SUCCESS for p in acknowledged)
    kill_actors(handles)
    return report


def main() -> int:
    temp_dir = tempfile.mkdtemp(prefix="rl-multinode-")
    os.environ["RAY_TMPDIR"] = temp_dir  # Ray's default temp dir and its address file: private
    # Ray turns 127.0.0.1 in an address into the machine's address (for remote nodes);
    # this keeps every node and connection of this one-machine cluster on loopback.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray.cluster_utils import Cluster

    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                **NODE_ARGS,
                "num_cpus": 0,  # the driver's node: it must survive, so it hosts no actor
                "include_dashboard": False,
                "temp_dir": os.path.join(temp_dir, "ray"),  # where RAY_TMPDIR points Ray too
                "_system_config": HEALTH_CHECKS,
            },
        )
        report = run(cluster, Path(temp_dir) / "data")
    except Exception:
        report = {"error": traceback.format_exc()}
    finally:
        import ray

        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    print(json.dumps(report))
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(main())
