"""The thin path, end to end over HTTP: create, deposit, pay (and be refused), then
SIGKILL every process of the server, restart it on the same data dir, and find every
balance and payment exactly as acknowledged."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.api import Api
from tests.support.server import Server


async def test_acknowledged_state_survives_kill9_of_the_whole_server(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            alice, bob = await api.account("alice@example.com"), await api.account("bob@example.com")
            a_usd = await api.balance(alice["id"], "USD")
            b_usd = await api.balance(bob["id"], "USD")
            b_eur = await api.balance(bob["id"], "EUR")
            await api.deposit(a_usd["id"], "100.00")

            paid = await api.pay(a_usd["id"], b_usd["id"], "30.25")
            assert paid.status == 201 and paid.body["status"] == "success", paid
            assert paid.body["amount"] == "30.25" and paid.body["currency"] == "USD"

            overpaid = await api.pay(a_usd["id"], b_usd["id"], "69.76")
            assert overpaid.status == 201 and overpaid.body["status"] == "not_enough_money"

            cross = await api.pay(a_usd["id"], b_eur["id"], "1")
            assert cross.status == 201 and cross.body["status"] == "currencies_dont_match"

            to_itself = await api.pay(a_usd["id"], a_usd["id"], "1")
            assert to_itself.status == 422 and to_itself.body["code"] == "same_balance"

            exact = await api.pay(a_usd["id"], b_usd["id"], "69.75")
            assert exact.body["status"] == "success"

            before = {b["id"]: (await api.get(f"/v1/balances/{b['id']}")).body for b in (a_usd, b_usd, b_eur)}
            assert before[a_usd["id"]]["amount"] == "0.00"
            assert before[b_usd["id"]]["amount"] == "100.00"
            payments = [paid, overpaid, cross, exact]

        killed = server.kill9()
        assert killed >= 4  # gateway, Ray's own processes and the actor workers
        assert not any(p.is_running() and p.status() != "zombie" for p in server.tree())

        server.start()  # same data dir, same port
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            for balance_id, body in before.items():
                assert (await api.get(f"/v1/balances/{balance_id}")).body == body
            for p in payments:
                stored = await api.get(f"/v1/payments/{p.body['id']}")
                assert stored.status == 200 and stored.body == p.body
            account = await api.get(f"/v1/accounts/{bob['id']}")
            assert sorted(b["id"] for b in account.body["balances"]) == sorted([b_usd["id"], b_eur["id"]])
            # The recovered ledger keeps working.
            again = await api.pay(b_usd["id"], a_usd["id"], "0.01")
            assert again.body["status"] == "success"
    finally:
        server.stop()


async def test_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = Server(tmp_path / "data").start()
    try:
        second = Server(tmp_path / "data")
        with open(second.log_path, "wb") as log:
            import subprocess

            code = subprocess.run(
                second.command(), env=second.env(), stdout=log, stderr=subprocess.STDOUT, timeout=60
            ).returncode
        assert code != 0
        assert "another rayledger server" in second.log()
        async with aiohttp.ClientSession() as session:
            assert (await Api(session, first.url, None).get("/readyz")).status == 200
    finally:
        assert first.stop() == 0  # SIGTERM is a clean stop
