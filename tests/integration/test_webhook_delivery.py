"""Webhook delivery in the in-process ledger, to a real receiver on loopback: every event
after an endpoint's creation arrives at least once, signed, across crashes at any point;
a failing receiver gets everything once it recovers, while at most `webhook_retrying_max`
events wait for a retry; a deleted endpoint gets nothing more; private receivers are
refused unless allowed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from actors.webhooks import WebhookDispatcher
from benchmarks.webhooks import Receiver
from ledger.records import WebhookEndpointCreated, event_of
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances, payment
from tests.support.waiting import until


async def _all_events(ledger: LocalLedger, created: WebhookEndpointCreated, kind: str | None = None) -> set[str]:
    """Ids of every event (of `kind`) after the endpoint's creation (its positions)."""
    found = await ledger.client.events_after(dict(created.positions), 100_000)
    return {event_id for _, _, event_id, record in found if kind in (None, event_of(record)[0])}  # type: ignore[index]


async def _endpoint(
    webhooks: WebhookDispatcher, url: str, events: list[str] | None = None
) -> tuple[WebhookEndpointCreated, str]:
    """The endpoint made, and its signing secret (journaled only sealed)."""
    made = await webhooks.create_endpoint(url, events or ["*"], None)
    assert made.created is not None and made.secret is not None, made
    assert made.created.secret == "" and made.secret.encode() not in (made.created.sealed_secret or b""), made
    return made.created, made.secret


async def test_every_event_at_least_once_across_crashes(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    ledger = await LocalLedger(tmp_path, memory=True).start()
    try:
        created, secret = await _endpoint(ledger.webhooks, receiver.url)
        _, ids, _ = await open_funded_balances(ledger.client, 8, 100_00)
        for crash in range(3):
            await ledger.client.pay([payment(ids[n % 8], ids[(n + 3) % 8], 1_00) for n in range(40)])
            await asyncio.sleep(0.01 * crash)  # crash with some deliveries made, some in flight
            ledger.crash()
            await ledger.start()
        wanted = await _all_events(ledger, created)
        assert len(wanted) >= 8 + 8 + 120  # accounts, balances, payments (deposits too)

        async def all_in() -> bool:
            return wanted <= receiver.counts.keys()

        await until(all_in, "every event delivered")
        assert receiver.unsigned(secret) == 0
        assert {e["type"] for e in receiver.events.values()} >= {"account.created", "payment.succeeded"}
        log = await ledger.webhooks.deliveries(created.endpoint_id, 1000, None, None, False)
        assert log is not None and {a.event_id for a in log if a.status_code == 200} <= receiver.counts.keys()
    finally:
        await ledger.stop()
        await receiver.stop()


async def test_a_failing_receiver_gets_everything_later_with_bounded_retries(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    receiver.failing = True
    ledger = await LocalLedger(tmp_path, webhook_retrying_max=5).start()
    try:
        created, secret = await _endpoint(ledger.webhooks, receiver.url, ["payment.succeeded"])
        _, ids, _ = await open_funded_balances(ledger.client, 4, 100_00)
        paid = await ledger.client.pay([payment(ids[n % 4], ids[(n + 1) % 4], 1) for n in range(20)])
        wanted = await _all_events(ledger, created, "payment.succeeded")
        assert len(wanted) == 4 + len(paid)  # the deposits, the payments

        async def bound_reached() -> bool:
            found = await ledger.webhooks.get_endpoint(created.endpoint_id)
            return found is not None and found[1] == 5

        await until(bound_reached, "five events waiting for a retry")
        await asyncio.sleep(0.5)  # a bound: time for more to be tried, were they not held back
        [(_, retrying)] = await ledger.webhooks.list_endpoints()
        tried = {json.loads(body)["id"] for _, body in receiver.deliveries}
        assert retrying == 5 and len(tried) == 5  # retries or not, no sixth event was read

        # Restarted meanwhile (from SQLite): the retries resume from the journal.
        await ledger.stop()
        await ledger.start()
        receiver.failing = False

        async def all_in() -> bool:
            return receiver.counts.keys() >= wanted

        await until(all_in, "every payment delivered once the receiver answers 200")
        assert all(e["type"] == "payment.succeeded" for e in receiver.events.values())
        assert receiver.unsigned(secret) == 0
        log = await ledger.webhooks.deliveries(created.endpoint_id, 1000, None, None, False)
        assert log is not None
        retried = [a for a in log if a.attempt > 1 and a.status_code == 200]
        assert len(retried) == 5 and all(a.next_at_ms == 0 for a in retried)
        failed = [a for a in log if a.status_code == 500]
        assert failed and all(a.next_at_ms > a.at_ms for a in failed)

        async def settled() -> bool:
            found = await ledger.webhooks.get_endpoint(created.endpoint_id)
            return found is not None and found[1] == 0

        await until(settled, "nothing left to retry")
    finally:
        await ledger.stop()
        await receiver.stop()


async def test_a_deleted_endpoint_gets_nothing_more(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    ledger = await LocalLedger(tmp_path).start()
    try:
        created, _ = await _endpoint(ledger.webhooks, receiver.url, ["account.created"])
        await ledger.client.registry.call("create_account", "before@example.com", None)

        async def one_in() -> bool:
            return len(receiver.counts) == 1

        await until(one_in, "the first account's event")
        assert await ledger.webhooks.delete_endpoint(created.endpoint_id)
        assert await ledger.webhooks.get_endpoint(created.endpoint_id) is None
        await ledger.client.registry.call("create_account", "after@example.com", None)
        await asyncio.sleep(1.0)  # a bound: several polls of a live endpoint
        assert [e["data"]["email"] for e in receiver.events.values()] == ["before@example.com"]
        await ledger.stop()
        await ledger.start()  # and it stays deleted
        assert await ledger.webhooks.get_endpoint(created.endpoint_id) is None
        assert not await ledger.webhooks.delete_endpoint(created.endpoint_id)
    finally:
        await ledger.stop()
        await receiver.stop()


async def test_private_receivers_only_when_allowed(tmp_path: Path) -> None:
    ledger = await LocalLedger(tmp_path, webhook_private_targets=False).start()
    try:
        for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/", "http://10.0.0.1/"):
            made = await ledger.webhooks.create_endpoint(url, ["*"], None)
            assert made.created is None and "private or loopback" in str(made.refusal), (url, made)
        for url in ("http://169.254.169.254/latest/meta-data", "ftp://example.com/", "http://user:pw@example.com/"):
            made = await ledger.webhooks.create_endpoint(url, ["*"], None)
            assert made.created is None and made.refusal, (url, made)
    finally:
        await ledger.stop()
