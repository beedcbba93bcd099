"""Webhooks against the real server, to a receiver on loopback that checks every
signature: the secret is shown once, creation replays its Idempotency-Key, metadata and
link-local URLs are refused; every event is delivered at least once across a kill -9 of
the whole server during deliveries; a receiver answering 500 for a while gets everything
later, and the delivery log shows both attempts; the webhooks actor killed alone resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.webhooks import Receiver
from tests.support.api import Api
from tests.support.server import Server
from tests.support.waiting import until

WAIT_S = 120.0  # a bound on waiting for deliveries (the server restarts meanwhile), never a measurement


async def _delivered_all(api: Api, receiver: Receiver) -> list[dict[str, Any]]:
    """Wait until every event the ledger lists has reached the receiver; the events."""
    deadline = time.monotonic() + WAIT_S
    while True:
        events = await api.every_page("/v1/events")
        missing = {e["id"] for e in events} - receiver.counts.keys()
        if not missing:
            return events
        assert time.monotonic() < deadline, f"{len(missing)} of {len(events)} events never delivered"
        await asyncio.sleep(0.5)


async def test_signed_deliveries_at_least_once_across_kill9_and_a_failing_receiver(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            body = {"url": receiver.url, "events": ["*"], "description": "all of it"}
            made = await api.post("/v1/webhook_endpoints", body, headers={"Idempotency-Key": "hook-1"})
            assert made.status == 201, made
            endpoint_id, secret = made.body["id"], made.body["secret"]
            assert secret.startswith("whsec_") and made.body["events"] == ["*"]
            again = await api.post("/v1/webhook_endpoints", body, headers={"Idempotency-Key": "hook-1"})
            assert again.status == 201 and again.headers.get("Idempotent-Replayed") == "true"
            assert (again.body["id"], again.body["secret"]) == (endpoint_id, secret)
            shown = await api.get(f"/v1/webhook_endpoints/{endpoint_id}")
            assert shown.status == 200 and "secret" not in shown.body and shown.body["url"] == receiver.url
            listed = await api.get("/v1/webhook_endpoints")
            assert [e["id"] for e in listed.body["data"]] == [endpoint_id]
            for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/hook"):
                refused = await api.post("/v1/webhook_endpoints", {"url": url, "events": ["*"]})
                assert refused.status == 422 and refused.body["param"] == "url", refused
            assert (await api.post("/v1/webhook_endpoints", {"url": receiver.url, "events": ["nope"]})).status == 422

            ada, bob = await api.account("ada-wh@example.com"), await api.account("bob-wh@example.com")
            a, b = await api.balance(ada["id"], "USD"), await api.balance(bob["id"], "USD")
            await api.deposit(a["id"], "1000")
            hold = await api.post(
                "/v1/holds", {"balance_from": a["id"], "balance_to": b["id"], "amount": "1", "expires_in_s": 60}
            )
            assert (await api.post(f"/v1/holds/{hold.body['id']}/void")).status == 200

            # kill -9 of the whole server while payments are made and delivered.
            payments = [asyncio.ensure_future(api.pay(a["id"], b["id"], "0.01")) for _ in range(150)]
            await until(lambda: len(receiver.counts) >= 12, "the first deliveries")
            server.kill9()
            await asyncio.gather(*payments, return_exceptions=True)
            server.start()
            events = await _delivered_all(api, receiver)
            assert {"account.created", "balance.created", "payment.succeeded", "hold.created", "hold.voided"} <= {
                e["type"] for e in events
            }

            # A receiver that answers 500 for a while gets every event later.
            receiver.failing = True
            for _ in range(5):
                assert (await api.pay(b["id"], a["id"], "0.01")).status == 201
            await until(lambda: receiver.refused >= 5, "five deliveries refused")
            receiver.failing = False
            await _delivered_all(api, receiver)
            assert receiver.unsigned(secret) == 0 and len(receiver.deliveries) >= len(events) + 5

            # The webhooks actor alone killed: Ray restarts it, and it resumes from its journal.
            [pid] = server.actor_pids("WebhookDispatcher")
            os.kill(pid, signal.SIGKILL)
            for _ in range(5):
                assert (await api.pay(a["id"], b["id"], "0.01")).status == 201
            await _delivered_all(api, receiver)

            log = await api.every_page(f"/v1/webhook_endpoints/{endpoint_id}/deliveries")
            refused_ids = {d["event_id"] for d in log if d["status_code"] == 500}
            assert refused_ids
            for event_id in refused_ids:
                tries = [d for d in log if d["event_id"] == event_id]
                assert any(d["delivered"] and d["attempt"] > 1 for d in tries), tries
                assert all(d["next_attempt_at"] for d in tries if d["status_code"] == 500)

            assert (await api.request("DELETE", f"/v1/webhook_endpoints/{endpoint_id}")).status == 204
            assert (await api.get(f"/v1/webhook_endpoints/{endpoint_id}")).status == 404
    finally:
        server.stop()
        await receiver.stop()
