"""`rayledger verify` on real journals: clean after real traffic, and each kind of damage
is named."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from actors.audit import verify
from ledger.ids import make_id
from ledger.messages import HoldRequest, PaymentRequest, SideRequest
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances, payment


async def _traffic(tmp_path: Path) -> tuple[LocalLedger, list[str]]:
    ledger = await LocalLedger(tmp_path, snapshot_every_records=5).start()
    _, ids, _ = await open_funded_balances(ledger.client, 4, 50)
    for n in range(20):
        await ledger.client.pay([payment(ids[n % 4], ids[(n + 1) % 4], 7 + n)])
    return ledger, ids


async def test_clean_ledger_verifies(tmp_path: Path) -> None:
    ledger, _ = await _traffic(tmp_path)
    await ledger.stop()
    report = verify(tmp_path)
    assert report.violations == []
    assert report.totals == {"USD": 0} and report.balances == 5 and report.payments == 24
    cli = subprocess.run(
        [sys.executable, "-m", "rayledger_cli", "verify", "--data-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert cli.returncode == 0 and "OK" in cli.stdout


async def test_refunds_verify_against_the_payments_they_give_back(tmp_path: Path) -> None:
    ledger, ids = await _traffic(tmp_path)
    [original] = await ledger.client.pay([payment(ids[0], ids[1], 10)])
    assert original is not None and original.status == "success"
    now_ms = time.time_ns() // 1_000_000
    outcomes = []
    for amount in (4, 0, 1):  # 4, then the rest (6), then nothing is left
        refund = PaymentRequest(
            make_id("pay", now_ms, os.urandom(10)), ids[1], ids[0], amount, "USD", now_ms, refund_of=original.id
        )
        outcomes.append(await ledger.client.refund(refund))
    assert [o.payment.amount_minor for o in outcomes[:2]] == [4, 6]  # type: ignore[union-attr]
    assert outcomes[2].refused == "refund_exceeds_payment"
    await ledger.stop()
    report = verify(tmp_path)
    assert report.violations == [] and report.totals == {"USD": 0}


async def test_open_holds_are_counted_as_the_holds_api_counts_them(tmp_path: Path) -> None:
    ledger, ids = await _traffic(tmp_path)
    now_ms = time.time_ns() // 1_000_000
    holds = [
        HoldRequest(make_id("hold", now_ms, os.urandom(10)), ids[0], ids[1], 1, "USD", now_ms, now_ms + 600_000)
        for _ in range(3)
    ]
    for h in holds:
        assert (await ledger.client.place_hold(h)).hold is not None
    await ledger.client.void_hold(holds[0].hold_id, None, None)
    await ledger.stop()
    report = verify(tmp_path)
    # Two holds still held, each with two open legs (its reserve and its prepare).
    assert (report.open_holds, report.open_legs, report.violations) == (2, 4, [])


async def test_open_reservation_without_decision_is_named(tmp_path: Path) -> None:
    ledger, ids = await _traffic(tmp_path)
    shard = ledger.objects[f"shard-{ledger.client.shard_for(ids[0])}"]
    await shard.reserve(0, 1, [SideRequest("pay_orphan", ids[0], 1, "USD")])  # no coordinator knows it
    await ledger.stop()
    assert verify(tmp_path).violations == ["pay_orphan holds money on " + ids[0] + " without a coordinator decision"]


async def test_tampered_record_breaks_the_chain(tmp_path: Path) -> None:
    ledger, _ = await _traffic(tmp_path)
    await ledger.stop()
    victim = max((tmp_path / "shards").glob("*.sqlite"), key=lambda p: p.stat().st_size)
    with sqlite3.connect(victim) as conn:
        part, first_seq, body = conn.execute(
            "SELECT part, first_seq, body FROM frames ORDER BY part, first_seq LIMIT 1 OFFSET 1"
        ).fetchone()
        conn.execute(
            "UPDATE frames SET body = ? WHERE part = ? AND first_seq = ?",
            (body[:-1] + bytes([body[-1] ^ 1]), part, first_seq),
        )
    violations = verify(tmp_path).violations
    journal = f"{victim.name}#{part}"
    assert any(v.startswith(f"{journal}: hash chain broken at seq {first_seq}") for v in violations), violations
    cli = subprocess.run(
        [sys.executable, "-m", "rayledger_cli", "verify", "--data-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert cli.returncode == 1 and "VIOLATION" in cli.stdout
