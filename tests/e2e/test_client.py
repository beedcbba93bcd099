"""The Python client against a real server: typed results, pagination, problems raised as
typed errors, the blocking twin, and retries that replay the same Idempotency-Key, so a
call whose first answer is lost on the way still makes one payment."""

from __future__ import annotations

import asyncio
import json
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


class Proxy:
    """Forwards every request to `target`, noting the payment POSTs' keys (a batch's: its
    items'). The answers of the first `lose` payment POSTs are dropped after the server made
    them (the client sees its connection cut); `unavailable_items`: in the first batch
    answer that arrives, those items are turned into a 503 problem, as a shard that could
    not take part answers."""

    def __init__(self, target: str, lose: int = 0, unavailable_items: tuple[int, ...] = ()) -> None:
        self.target, self.lose, self.unavailable_items = target, lose, unavailable_items
        self.keys: list[list[str]] = []  # per payment POST: the keys it carried
        self.paths: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Proxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "idempotency-key")
        }
        async with (
            aiohttp.ClientSession() as http,
            http.request(request.method, self.target + request.path_qs, data=body, headers=headers) as answer,
        ):
            payload = await answer.read()
        if request.method == "POST" and request.path in ("/v1/payments", "/v1/payments/batch"):
            self.paths.append(request.path)
            if request.path == "/v1/payments":
                self.keys.append([request.headers["Idempotency-Key"]])
            else:
                self.keys.append([item["idempotency_key"] for item in json.loads(body)["payments"]])
            if len(self.keys) <= self.lose:
                assert request.transport is not None
                request.transport.close()  # the payment is made; its answer never arrives
                raise asyncio.CancelledError
            if request.path == "/v1/payments/batch" and self.unavailable_items:
                results = json.loads(payload)["results"]
                for n in self.unavailable_items:
                    results[n] = {"type": "unavailable", "title": "Unavailable", "status": 503, "code": "unavailable"}
                self.unavailable_items = ()
                payload = json.dumps({"results": results}).encode()
        return web.Response(body=payload, status=answer.status, content_type=answer.content_type)


async def _two_balances(server: Server, name: str, deposit: str) -> tuple[str, str]:
    async with Client(server.url, server.token) as direct:
        a = await direct.balances.create(
            (await direct.accounts.create(email=f"{name}-a@example.com")).id, currency="USD"
        )
        b = await direct.balances.create(
            (await direct.accounts.create(email=f"{name}-b@example.com")).id, currency="USD"
        )
        await direct.deposits.create(balance_id=a.id, amount=deposit)
    return a.id, b.id


async def _payments_of(server: Server, balance_id: str) -> list[schemas.Payment]:
    async with Client(server.url, server.token) as direct:
        return [p for p in await _collect(direct.payments.list(balance=balance_id)) if p.balance_to != balance_id]  # type: ignore[attr-defined]


async def test_a_lost_answer_is_retried_with_the_same_key_and_pays_once(server: Server) -> None:
    a, b = await _two_balances(server, "lossy", "10")
    async with (
        Proxy(server.url, lose=2) as proxy,
        Client(proxy.url, server.token, backoff_s=0.05, batching=False) as ledger,
    ):
        paid = await ledger.payments.create(balance_from=a, balance_to=b, amount="4")
    assert paid.status == "success"
    assert proxy.paths == ["/v1/payments"] * 3  # two answers lost, three attempts
    assert len({key for keys in proxy.keys for key in keys}) == 1  # one key
    assert [p.id for p in await _payments_of(server, a)] == [paid.id]  # one payment, not three
    async with Client(server.url, server.token) as direct:
        assert (await direct.balances.get(b)).amount == "4.00"


async def test_concurrent_calls_travel_together_and_each_keeps_its_own_key_and_result(server: Server) -> None:
    a, b = await _two_balances(server, "coalesce", "300")
    async with Proxy(server.url) as proxy, Client(proxy.url, server.token) as ledger:
        first = await ledger.payments.create(balance_from=a, balance_to=b, amount="1", idempotency_key="coalesce-0")
        paid = await asyncio.gather(
            *(
                ledger.payments.create(balance_from=a, balance_to=b, amount=str(n), idempotency_key=f"coalesce-{n}")
                for n in range(1, 21)
            )
        )
    assert proxy.paths == ["/v1/payments/batch"] * 2  # a lone call alone, then the twenty called together
    assert proxy.keys == [["coalesce-0"], [f"coalesce-{n}" for n in range(1, 21)]]
    assert (first.amount, first.idempotency_key, first.status) == ("1.00", "coalesce-0", "success")
    assert [(p.amount, p.idempotency_key, p.status) for p in paid] == [
        (f"{n}.00", f"coalesce-{n}", "success") for n in range(1, 21)
    ]
    assert len({p.id for p in paid}) == 20
    async with Client(server.url, server.token) as direct:
        assert (await direct.balances.get(a)).amount == f"{300 - 1 - sum(range(1, 21))}.00"


async def test_batched_calls_survive_lost_answers_and_unavailable_items_paying_once_each(server: Server) -> None:
    """Every batch's answer lost twice, then one item answered 503: each call still ends with
    one payment, sent again only with its own key (so the server replays what it made)."""
    a, b = await _two_balances(server, "lossy-batch", "100")
    async with (
        Proxy(server.url, lose=2, unavailable_items=(3,)) as proxy,
        Client(proxy.url, server.token, backoff_s=0.05) as ledger,
    ):
        paid = await asyncio.gather(
            *(ledger.payments.create(balance_from=a, balance_to=b, amount="1") for _ in range(10))
        )
    assert [p.status for p in paid] == ["success"] * 10
    sent = [key for keys in proxy.keys for key in keys]
    assert len(set(sent)) == 10 and sent.count(paid[3].idempotency_key) == 4  # 2 lost, 1 answered 503, then alone
    assert proxy.keys[3] == [paid[3].idempotency_key]
    made = await _payments_of(server, a)
    assert sorted(p.id for p in made if p.amount == "1.00") == sorted(p.id for p in paid)  # ten, not forty
    async with Client(server.url, server.token) as direct:
        assert (await direct.balances.get(b)).amount == "10.00"


async def test_closing_the_client_ends_the_calls_it_has_not_answered(server: Server) -> None:
    a, b = await _two_balances(server, "closing", "10")
    ledger = Client(server.url, server.token)
    calls = [asyncio.ensure_future(ledger.payments.create(balance_from=a, balance_to=b, amount="1")) for _ in range(3)]
    await asyncio.sleep(0)  # queued, their batch on its way
    await ledger.close()
    ended = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=30)
    assert all(isinstance(e, asyncio.CancelledError) for e in ended), ended


async def test_a_batched_call_that_is_refused_fails_alone_as_it_would_unbatched(server: Server) -> None:
    """A refused item (a payment to itself), and one that makes the whole batch 422 (a
    description too long): their calls raise what they would raise alone, the others pay."""
    a, b = await _two_balances(server, "refused-batch", "100")
    calls = [
        dict(balance_to=b, amount="1"),
        dict(balance_to=a, amount="1"),
        dict(balance_to=b, amount="1", description="x" * 501),
        dict(balance_to=b, amount="2"),
    ]
    answers = []
    for batching in (True, False):
        async with Client(server.url, server.token, batching=batching) as ledger:
            got = await asyncio.gather(
                *(ledger.payments.create(balance_from=a, **call) for call in calls),
                return_exceptions=True,  # type: ignore[arg-type]
            )
        answers.append(
            [(g.status, g.code, g.detail, g.param) if isinstance(g, LedgerError) else (g.status, g.amount) for g in got]
        )
    batched, alone = answers
    assert batched == alone
    assert [answer[:2] for answer in batched] == [
        ("success", "1.00"), (422, "same_balance"), (422, "validation_error"), ("success", "2.00"),
    ]  # fmt: skip


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
