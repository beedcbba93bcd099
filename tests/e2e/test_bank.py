"""The bank test in its short CI form: concurrent clients (payments, transfers and
exchange payments) with retries while the nemesis kills actor workers and makes a journal
unwritable, twice each, and kills the supervisor and the whole server once each (a restart
of the whole cluster is most of this test's time; the whole server is killed once more
before the checks); then conservation, acknowledged-means-durable, one payment per key, and
a clean `rayledger verify`. The long form is `python -m benchmarks.bank --soak`."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.bank import FAULTS, run_bank

TWICE = ("shard", "coordinator", "registry", "disk")  # cheap to inject; the restarts of a cluster are not


async def test_bank_survives_every_kind_of_fault(tmp_path: Path) -> None:
    report = await run_bank(
        tmp_path / "data",
        seconds=30,
        clients=8,
        accounts=6,
        faults=[*FAULTS, *TWICE],
        fault_every_s=0.5,
        fault_rounds=1,
        seed=7,
    )
    print(json.dumps(report))
    assert report["violations"] == []
    assert report["unresolved"] == 0
    assert report["faults"] == {fault: 2 if fault in TWICE else 1 for fault in FAULTS}
    # Faults come back to back, so most time goes to recovery; what matters is that the
    # clients kept being served between them, and that nothing was lost.
    assert report["payments_acked"] >= 50
    assert report["statuses"]["success"] >= 25  # type: ignore[index]
    # The workload moves money by every means: payments, transfers of several legs, exchanges.
    assert report["kinds"]["transfer"] >= 10 and report["kinds"]["exchange"] >= 5  # type: ignore[index]
