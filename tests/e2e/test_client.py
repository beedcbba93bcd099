"""The Python client against a real server: typed results, pagination, problems raised as
typed errors, the blocking twin, and retries that replay the same Idempotency-Key, so a
call whose first answer is lost on the way still makes one payment."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from benchmarks.webhooks import Receiver
from rayledger import schemas
from rayledger.client import Client, LedgerError, SyncClient
from tests.support.server import Server

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULES = ("gateway", "actors", "api", "journal", "ledger", "ray")


async def _collect(items: AsyncIterator[object]) -> list[object]:
    return [item async for item in items]


async def test_the_client_speaks_the_whole_money_path(server: Server) -> None:
    async with Client(server.url, server.token) as ledger:
        ada = await ledger.accounts.create(email="ada-client@example.com")
        bob = await ledger.accounts.create(email="bob-client@example.com")
        assert isinstance(ada, schemas.Account) and ada.email == "ada-client@example.com"
        a = await ledger.balances.create(ada.id, currency="USD")
        b = await ledger.balances.create(bob.id, currency="USD")
        deposit = await ledger.deposits.create(balance_id=a.id, amount="50.00")
        assert isinstance(deposit, schemas.Payment) and deposit.status == "success"
        paid = [await ledger.payments.create(balance_from=a.id, balance_to=b.id, amount=f"{n}.00") for n in (1, 2, 3)]
        assert [p.status for p in paid] == ["success"] * 3
        assert (await ledger.payments.get(paid[0].id)) == paid[0]
        listed = await _collect(ledger.payments.list(balance=b.id, limit=2))  # two pages
        assert [p.id for p in listed] == [p.id for p in reversed(paid)]
        entries = await _collect(ledger.balances.entries(a.id, limit=1))
        assert [e.amount for e in entries] == ["-3.00", "-2.00", "-1.00", "50.00"]
        refund = await ledger.payments.refund(paid[0].id, amount="0.50")
        assert refund.refund_of == paid[0].id
        transfer = await ledger.transfers.create(
            legs=[
                {"balance_from": a.id, "balance_to": b.id, "amount": "1"},
                {"balance_from": b.id, "balance_to": a.id, "amount": "2"},
            ]
        )
        assert isinstance(transfer, schemas.Transfer) and transfer.status == "success" and len(transfer.legs) == 2
        hold = await ledger.holds.create(balance_from=a.id, balance_to=b.id, amount="5", expires_in_s=60)
        first = await ledger.holds.capture(hold.id, amount="2")
        last = await ledger.holds.capture(hold.id, amount="1", final=True)
        state = await ledger.holds.get(hold.id)
        assert (state.status, state.captures) == ("captured", [first.id, last.id])
        with pytest.raises(LedgerError) as refused:
            await ledger.payments.create(balance_from=a.id, balance_to=a.id, amount="1")
        assert (refused.value.status, refused.value.code, refused.value.param) == (422, "same_balance", "balance_to")
        with pytest.raises(LedgerError) as missing:
            await ledger.payments.get("pay_nope")
        assert missing.value.code == "payment_not_found"
        assert (await ledger.balances.get(a.id)).amount == "42.50"  # 50 - 6 + 0.50 - 1 + 2 - 3


async def _lossy_proxy(target: str, lose: int) -> tuple[web.AppRunner, str, list[str]]:
    """Forwards every request to `target`; the answers of the first `lose` payment POSTs
    are dropped after the server made them (the client sees its connection cut)."""
    keys: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "idempotency-key")
        }
        async with (
            aiohttp.ClientSession() as http,
            http.request(request.method, target + request.path_qs, data=body, headers=headers) as answer,
        ):
            payload = await answer.read()
        if request.method == "POST" and request.path == "/v1/payments":
            keys.append(request.headers["Idempotency-Key"])
            if len(keys) <= lose:
                assert request.transport is not None
                request.transport.close()  # the payment is made; its answer never arrives
                raise asyncio.CancelledError
        return web.Response(body=payload, status=answer.status, content_type=answer.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", keys


async def test_a_lost_answer_is_retried_with_the_same_key_and_pays_once(server: Server) -> None:
    async with Client(server.url, server.token) as direct:
        ada = await direct.accounts.create(email="ada-lossy@example.com")
        a = await direct.balances.create(ada.id, currency="USD")
        b = await direct.balances.create(
            (await direct.accounts.create(email="bob-lossy@example.com")).id, currency="USD"
        )
        await direct.deposits.create(balance_id=a.id, amount="10")
    runner, url, keys = await _lossy_proxy(server.url, lose=2)
    try:
        async with Client(url, server.token, backoff_s=0.05) as ledger:
            paid = await ledger.payments.create(balance_from=a.id, balance_to=b.id, amount="4")
    finally:
        await runner.cleanup()
    assert paid.status == "success"
    assert len(keys) == 3 and len(set(keys)) == 1  # two answers lost, three attempts, one key
    async with Client(server.url, server.token) as direct:
        made = await _collect(direct.payments.list(balance=a.id))
        assert [p.id for p in made if p.amount == "4.00"] == [paid.id]  # one payment, not three
        assert (await direct.balances.get(b.id)).amount == "4.00"


async def test_events_and_webhook_endpoints_through_the_client(server: Server) -> None:
    receiver = await Receiver().start()
    try:
        async with Client(server.url, server.token) as ledger:
            endpoint = await ledger.webhook_endpoints.create(url=receiver.url, events=["account.created"])
            assert isinstance(endpoint, schemas.WebhookEndpoint) and endpoint.secret is not None
            dee = await ledger.accounts.create(email="dee-hooks@example.com")
            created = await _collect(ledger.events.list(type="account.created", limit=5))
            assert created[0].data["id"] == dee.id  # type: ignore[attr-defined]
            for _ in range(600):  # a bound (60 s), not a measurement
                if receiver.counts:
                    break
                await asyncio.sleep(0.1)
            [delivered] = receiver.events.values()
            assert delivered["data"]["id"] == dee.id and receiver.unsigned(endpoint.secret) == 0
            [log] = await _collect(ledger.webhook_endpoints.deliveries(endpoint.id))
            assert log.delivered and log.event_id == delivered["id"]  # type: ignore[attr-defined]
            assert [e.id for e in await _collect(ledger.webhook_endpoints.list())] == [endpoint.id]  # type: ignore[attr-defined]
            assert (await ledger.webhook_endpoints.get(endpoint.id)).secret is None
            await ledger.webhook_endpoints.delete(endpoint.id)
            with pytest.raises(LedgerError) as gone:
                await ledger.webhook_endpoints.get(endpoint.id)
            assert gone.value.code == "webhook_endpoint_not_found"
    finally:
        await receiver.stop()


def test_the_blocking_client(server: Server) -> None:
    with SyncClient(server.url, server.token) as ledger:
        cy = ledger.accounts.create(email="cy-sync@example.com")
        usd = ledger.balances.create(cy.id, currency="USD")
        ledger.deposits.create(balance_id=usd.id, amount="3")
        assert [e.amount for e in ledger.balances.entries(usd.id)] == ["3.00"]
        assert ledger.balances.get(usd.id).amount == "3.00"
        codes = [c.code for c in ledger.currencies.list(limit=100)]
        assert "USD" in codes and len(codes) > 100  # every ISO currency, over several pages


@pytest.mark.slow
def test_the_readme_example_runs_with_the_client_alone(server: Server, tmp_path: Path) -> None:
    """The README's client example, as written, against this server (its address and
    token), in a venv holding the `rayledger-client` distribution and nothing of the server."""
    venv = tmp_path / "client-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    source = shutil.copytree(ROOT / "client", tmp_path / "client", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    installed = subprocess.run(  # from a copy: the build leaves nothing in the checkout
        [python, "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    alone = subprocess.run(
        [
            python,
            "-c",
            f"import importlib.util as u; print([m for m in {SERVER_MODULES} if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert alone.stdout.strip() == "[]", alone  # nothing of the server came with it

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python client", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None
    code = example.group(1).replace("http://127.0.0.1:8080", server.url)
    code = code.replace('open("data/admin_token").read().strip()', repr(server.token))
    code = code.replace("alice@example.com", "alice-readme-client@example.com")
    ran = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[1:3] == ["100.00", "100.00"], ran.stdout  # the deposit's statement line
