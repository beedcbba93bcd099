"""Scale-out and node loss on a real multi-node Ray cluster (several nodes on this machine).

The scenario (tests/support/multinode.py) runs in its own process, because a driver
connects to one Ray cluster at a time; this checks what it observed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_shards_spread_survive_a_lost_node_and_scale_out() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.multinode"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-3000:]
    report = json.loads(lines[-1])
    assert "error" not in report, report["error"]
    assert done.returncode == 0

    # Two shards on the two worker nodes (the head takes no actor).
    assert len(set(report["shard_nodes_before"])) == 2
    assert set(report["shard_nodes_before"]) == set(report["nodes"][1:])
    # The lost node's shard restarted elsewhere; the payments in flight at the loss all
    # reached a final status (`system_failure`, nothing moved, for those the coordinator
    # had not decided when it died with the node: presumed abort), later ones all
    # succeeded, and every balance is what the acknowledged payments imply.
    assert report["payments_in_flight_at_loss"] is True
    assert report["lost_node"] in report["shard_nodes_before"]
    assert report["lost_node"] == report["coordinator_node_before"]
    assert report["lost_node"] not in [*report["shard_nodes_after_loss"], report["coordinator_node_after_loss"]]
    assert len(report["shard_nodes_after_loss"]) == 2
    assert set(report["statuses_during_loss"]) <= {"success", "system_failure"}
    assert "success" in report["statuses_during_loss"]
    assert report["statuses_after_loss"] == ["success"]
    assert report["audit_after_loss"] == "ok"
    # Restarted with four shards: every partition owned once, the new node used, nothing lost.
    partitions = sorted(p for owned in report["partitions_scaled"] for p in owned)
    assert partitions == list(range(8))
    assert report["added_node"] in report["shard_nodes_scaled"]
    assert report["audit_after_scale_out"] == "ok"
    assert report["statuses_after_scale_out"] == ["success"]
    assert report["audit_final"] == "ok"
    assert report["payments"] == 874
    assert report["success"] >= report["payments"] - 400  # only those in flight at the loss may have failed
