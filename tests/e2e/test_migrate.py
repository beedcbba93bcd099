"""`rayledger migrate` on data directories that rayledger 0.1 and 0.2 wrote themselves
(tests/fixtures, README.md there): refused by serve and verify until migrated, then verified
clean and served exactly as the old version answered, and written to as usual."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actors.topology import partitions_of_shard
from benchmarks.server import rayledger_command
from tests.support.api import Api
from tests.support.server import Server
from tests.support.waiting import until

FIXTURES = Path(__file__).parent.parent / "fixtures"
FORMATS = {"0.1": 1, "0.2": 2}
OLD_JOURNALS = [*(f"partitions/p-000{p}.sqlite" for p in range(4)), "coordinators/c-000.sqlite", "registry.sqlite"]


def _copy(version: str, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / f"data-{version}", data)
    return data


def _token(version: str) -> str:
    return f"fixture-token-{version}-not-a-secret"  # the one the old server ran with (README.md)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*rayledger_command(), *args], capture_output=True, text=True, timeout=300, check=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parts(path: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [p for (p,) in conn.execute("SELECT DISTINCT part FROM frames ORDER BY part")]


def _minor(amount: str) -> int:
    return int(amount.replace(".", ""))


def _same(got: dict[str, Any], expected: dict[str, Any], fields: tuple[str, ...]) -> None:
    assert {f: got.get(f) for f in fields} == {f: expected.get(f) for f in fields}, expected["id"]


@pytest.mark.parametrize("version", sorted(FORMATS))
def test_serve_and_verify_refuse_an_old_directory_naming_migrate(version: str, tmp_path: Path) -> None:
    data = _copy(version, tmp_path)
    command = f"rayledger migrate --data-dir {data}"
    verify = _cli("verify", "--data-dir", str(data))
    assert verify.returncode == 2 and command in verify.stderr, verify.stderr
    assert f"format {FORMATS[version]} (rayledger {version})" in verify.stderr
    server = Server(data, token=_token(version))
    try:
        server.start()
    except RuntimeError as exc:
        assert "server exited with 2" in str(exc) and command in server.log(), server.log()
    else:
        server.stop()
        pytest.fail("a server started on journals it cannot read")
    assert not (data / "shards").exists(), "nothing was made beside the old journals"


@pytest.mark.parametrize("version", sorted(FORMATS))
async def test_migrated_directory_serves_what_the_old_version_wrote(version: str, tmp_path: Path) -> None:
    data = _copy(version, tmp_path)
    fmt = FORMATS[version]
    expected = json.loads((FIXTURES / f"data-{version}.json").read_text())
    originals = {p.relative_to(data): _digest(p) for p in data.rglob("*.sqlite*")}

    done = _cli("migrate", "--data-dir", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in OLD_JOURNALS:  # one line per journal, naming it and its format
        assert [line for line in done.stdout.splitlines() if f" {name}: format {fmt}, " in line], done.stdout
    backup = data / f"pre-migrate-{fmt}"
    assert str(backup) in done.stdout
    assert {p.relative_to(data) for p in data.rglob("*.sqlite")} == {
        Path("shards/s-000.sqlite"),
        Path("coordinators/c-000.sqlite"),
        Path("registry.sqlite"),
        *(Path(backup.name, name) for name in OLD_JOURNALS),
    }
    assert {name: _digest(backup / name) for name in originals} == originals, "the old files are kept as they were"
    assert _parts(data / "shards/s-000.sqlite") == [0, 1, 2, 3]

    again = _cli("migrate", "--data-dir", str(data))
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout + again.stderr
    audit = _cli("verify", "--data-dir", str(data))
    assert audit.returncode == 0 and "OK" in audit.stdout, audit.stdout + audit.stderr
    assert "payments 11" in audit.stdout and "open holds 1" in audit.stdout

    server = Server(data, token=_token(version)).start()  # 4 partitions, 2 shards
    try:
        async with aiohttp.ClientSession() as session:
            await _reads_as_written(Api(session, server.url, server.token), expected)
    finally:
        assert server.stop() == 0, server.log()
    # The partitions that shard 1 owns moved into its file at start (journal.handoff).
    assert _parts(data / "shards/s-000.sqlite") == partitions_of_shard(0, 4, 2)
    assert _parts(data / "shards/s-001.sqlite") == partitions_of_shard(1, 4, 2)
    audit = _cli("verify", "--data-dir", str(data))
    assert audit.returncode == 0 and "OK" in audit.stdout and "payments 12" in audit.stdout, audit.stdout


async def _reads_as_written(api: Api, expected: dict[str, Any]) -> None:
    balances = expected["balances"]
    open_hold = expected["holds"]["open"]
    expired = datetime.now(UTC) >= datetime.fromisoformat(open_hold["expires_at"].replace("Z", "+00:00"))
    if expired:  # the fixture's open hold may outlive no run after its week: then it is released as usual

        async def released() -> bool:
            return (await api.get(f"/v1/holds/{open_hold['id']}")).body["status"] == "expired"

        await until(released, "the fixture's hold expired")

    for name, account in expected["accounts"].items():
        got = (await api.get(f"/v1/accounts/{account['id']}")).body
        _same(got, account, ("id", "email", "created_at", "status"))
        owned = {b["id"] for b in balances.values() if b["account_id"] == account["id"]}
        assert {b["id"] for b in got["balances"]} == owned, name
    for name, balance in balances.items():
        reply = await api.get(f"/v1/balances/{balance['id']}")
        assert reply.status == 200, reply
        want = dict(balance)
        if expired and want["reserved"] != "0.00":
            want["reserved"], want["available"] = "0.00", want["amount"]
        _same(reply.body, want, ("id", "account_id", "currency", "amount", "available", "reserved", "status"))
        assert reply.body["created_at"] == balance["created_at"], name
    for payment in expected["payments"]:
        got = (await api.get(f"/v1/payments/{payment['id']}")).body
        _same(got, payment, ("id", "balance_from", "balance_to", "amount", "currency", "status", "created_at"))
        _same(got, payment, ("description", "reason"))
        # A refused payment was "settled" in 0.1 and 0.2; it is "decided" since (API contract 1.1).
        assert (got.get("settled_at") or got.get("decided_at")) == payment["settled_at"], payment["id"]
    for hold in expected["holds"].values():
        got = (await api.get(f"/v1/holds/{hold['id']}")).body
        fields = ("id", "balance_from", "balance_to", "amount", "currency", "created_at", "expires_at")
        _same(got, hold, (*fields, "payment_id", "captured_amount"))
        assert got["status"] == ("expired" if expired and hold is open_hold else hold["status"])

    alice = balances["alice_usd"]["id"]
    entries = (await api.get(f"/v1/balances/{alice}/entries")).body["data"]
    fields = ("payment_id", "amount", "balance_after", "created_at")
    assert [{f: e[f] for f in fields} for e in entries] == [
        {f: e[f] for f in fields} for e in expected["entries"]["alice_usd"]["data"]
    ]
    listed = await api.every_page(f"/v1/payments?balance={alice}")
    assert {p["id"] for p in listed} == {
        p["id"] for p in expected["payments"] if alice in (p["balance_from"], p["balance_to"])
    }

    # The ledger goes on from where the old version left it.
    bob = balances["bob_usd"]["id"]
    paid = await api.post("/v1/payments", {"balance_from": alice, "balance_to": bob, "amount": "1.00"})
    assert paid.status == 201 and paid.body["status"] == "success", paid
    after = (await api.get(f"/v1/balances/{alice}")).body
    assert _minor(after["amount"]) == _minor(balances["alice_usd"]["amount"]) - 100
