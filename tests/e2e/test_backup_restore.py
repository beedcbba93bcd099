"""A backup taken as docs/operations.md says, restored as it says, serves the ledger exactly
as it was: every balance, statement, payment and hold, the account keys and the webhook
endpoints; and `rayledger verify` finds the restored journals clean. The commands run are
the document's own blocks, so the page cannot drift from what works."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.server import rayledger_command
from tests.support.api import Api
from tests.support.server import Server

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def doc_block(name: str) -> str:
    """The sh block after `<!-- name -->` in docs/operations.md."""
    text = OPERATIONS.read_text()
    start = text.index("```sh", text.index(f"<!-- {name} -->")) + len("```sh")
    return text[start : text.index("```", start)]


def run_doc_block(name: str, data: Path, backup: Path) -> subprocess.CompletedProcess[str]:
    """As an operator types it: `rayledger` on the PATH, DATA and BACKUP set."""
    bin_dir = str(Path(rayledger_command()[0]).parent)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", doc_block(name)],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DATA": str(data), "BACKUP": str(backup)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def make_history(api: Api) -> dict[str, Any]:
    """Accounts, deposits, payments of every outcome, a refund, a hold still held, an
    account key and a webhook endpoint."""
    accounts = [await api.account(f"backup-{n}@example.com") for n in range(4)]
    usd = [(await api.balance(a["id"], "USD"))["id"] for a in accounts]
    eur = (await api.balance(accounts[0]["id"], "EUR"))["id"]
    for n, balance in enumerate(usd):
        await api.deposit(balance, f"{100 * (n + 1)}.00")
    await api.deposit(eur, "50.00")
    payments = []
    for n in range(12):
        paid = await api.pay(usd[n % 4], usd[(n + 1) % 4], f"{n + 1}.{n:02d}")
        assert paid.status == 201 and paid.body["status"] == "success", paid
        payments.append(paid.body["id"])
    refused = await api.pay(usd[0], usd[1], "10000.00")
    assert refused.body["status"] == "not_enough_money", refused
    cross = await api.pay(usd[2], eur, "1.00")
    assert cross.body["status"] == "currencies_dont_match", cross
    refund = await api.post(f"/v1/payments/{payments[0]}/refunds", {"amount": "0.50"})
    assert refund.status == 201 and refund.body["status"] == "success", refund
    hold = await api.post(
        "/v1/holds", {"balance_from": usd[3], "balance_to": usd[0], "amount": "7.00", "expires_in_s": 3600}
    )
    assert hold.status == 201 and hold.body["status"] == "held", hold
    key = await api.post(f"/v1/accounts/{accounts[1]['id']}/keys")
    assert key.status == 201, key
    endpoint = await api.post("/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    assert endpoint.status == 201, endpoint
    return {
        "accounts": [a["id"] for a in accounts],
        "balances": [*usd, eur],
        "payments": [*payments, refused.body["id"], cross.body["id"], refund.body["id"]],
        "hold": hold.body["id"],
        "key": (accounts[1]["id"], key.body["token"]),
    }


async def read_everything(api: Api, made: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for account in made["accounts"]:
        seen[account] = (await api.get(f"/v1/accounts/{account}")).body
    for balance in made["balances"]:
        seen[balance] = (await api.get(f"/v1/balances/{balance}")).body
        seen[f"{balance}/entries"] = await api.every_page(f"/v1/balances/{balance}/entries")
    for payment in made["payments"]:
        seen[payment] = (await api.get(f"/v1/payments/{payment}")).body
    seen[made["hold"]] = (await api.get(f"/v1/holds/{made['hold']}")).body
    seen["payments"] = await api.every_page("/v1/payments")
    # Less `retrying`, which moves with every failed delivery to the closed port.
    endpoints = await api.every_page("/v1/webhook_endpoints")
    seen["webhook_endpoints"] = [{k: v for k, v in e.items() if k != "retrying"} for e in endpoints]
    return seen


async def test_a_backup_restores_every_balance_and_payment(tmp_path: Path) -> None:
    data, backup = tmp_path / "data", tmp_path / "backup"
    server = Server(data).start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            made = await make_history(api)
            before = await read_everything(api, made)
        assert server.stop() == 0
    finally:
        server.stop()
    assert len(before["payments"]) == 5 + 14 + 1, before["payments"]  # deposits, payments, the refund
    assert len(before["webhook_endpoints"]) == 1
    assert before[made["balances"][3]]["available"] != before[made["balances"][3]]["amount"]  # the hold

    backed_up = run_doc_block("backup", data, backup)
    assert backed_up.returncode == 0 and "OK" in backed_up.stdout, backed_up.stdout + backed_up.stderr

    shutil.rmtree(data)  # the disk is lost: only the backup is left
    restored_copy = run_doc_block("restore", data, backup)
    assert restored_copy.returncode == 0 and "OK" in restored_copy.stdout, restored_copy.stdout + restored_copy.stderr

    restored = Server(data, token=server.token).start()  # the same admin token, as the page says
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, restored.url, restored.token)
            after = await read_everything(api, made)
            account, token = made["key"]
            as_account = await Api(session, restored.url, token).get(f"/v1/accounts/{account}")
        assert restored.stop() == 0
    finally:
        restored.stop()
    assert after == before
    assert as_account.status == 200 and as_account.body == before[account]  # its key still works

    verified = subprocess.run(
        [*rayledger_command(), "verify", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verified.returncode == 0 and "OK" in verified.stdout, verified.stdout + verified.stderr
