"""Overload and an unwritable journal against the real server: the ledger says 503 with
Retry-After (and acknowledges nothing it has not written), then resumes on its own; the
outage reaches error tracking (Sentry, here a stand-in ingest on loopback)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from actors.topology import partition_of, shard_of_partition
from tests.support.api import Api
from tests.support.server import Server, free_port

PARTITIONS = 4  # the test server's --partitions
SHARDS = 2  # and its default shard count


async def test_overload_is_refused_fast_and_applies_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"RAYLEDGER_REQUESTS_IN_FLIGHT_MAX": "4"}).start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            api = Api(session, server.url, server.token)
            a = await api.balance((await api.account("a@example.com"))["id"], "USD")
            b = await api.balance((await api.account("b@example.com"))["id"], "USD")
            await api.deposit(a["id"], "1000")
            replies = await asyncio.gather(*(api.pay(a["id"], b["id"], "1") for _ in range(300)))
            statuses = [r.status for r in replies]
            assert statuses.count(503) > 0 and statuses.count(201) > 0
            assert set(statuses) == {201, 503}
            refused = [r for r in replies if r.status == 503]
            assert all(r.headers["Retry-After"] == "1" and r.body["code"] == "unavailable" for r in refused)
            moved = statuses.count(201)
            assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == f"{moved}.00"
            assert (await api.get(f"/v1/balances/{a['id']}")).body["amount"] == f"{1000 - moved}.00"
    finally:
        server.stop()


@asynccontextmanager
async def sentry_ingest() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A Sentry DSN on loopback and the envelopes posted to it."""
    envelopes: list[bytes] = []

    async def envelope(request: web.Request) -> web.Response:
        envelopes.append(await request.read())  # aiohttp undoes the client's gzip
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/{project}/envelope/", envelope)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://public@127.0.0.1:{port}/1", envelopes
    finally:
        await runner.cleanup()


def sentry_events(envelopes: list[bytes]) -> list[dict[str, object]]:
    items = [json.loads(line) for e in envelopes for line in e.splitlines() if line.startswith(b"{")]
    return [i for i in items if "event_id" in i and "level" in i]


async def test_unwritable_journal_refuses_with_503_and_resumes(tmp_path: Path) -> None:
    async with sentry_ingest() as (dsn, envelopes):
        await unwritable_journal_scenario(tmp_path, dsn)
        for _ in range(100):  # the actor's client sends in the background
            if sentry_events(envelopes):
                break
            await asyncio.sleep(0.1)
    events = sentry_events(envelopes)
    reported = [e for e in events if e.get("logentry", {}).get("message") == "journal_unwritable"]  # type: ignore[union-attr]
    # Sent by the shard actor whose journal it is, with the event's fields.
    assert reported and all(e["level"] == "error" and e["logger"] == "rayledger.journal" for e in reported), events
    assert all(str(e["extra"]["fields"]["journal"]).startswith("shards/s-") for e in reported)  # type: ignore[index]


async def unwritable_journal_scenario(tmp_path: Path, sentry_dsn: str) -> None:
    env = {"RAYLEDGER_JOURNAL_BUSY_TIMEOUT_MS": "200", "RAYLEDGER_PAYMENT_WAIT_MS": "1000", "SENTRY_DSN": sentry_dsn}
    server = Server(tmp_path / "data", env=env).start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            a = await api.balance((await api.account("a@example.com"))["id"], "USD")
            b = await api.balance((await api.account("b@example.com"))["id"], "USD")
            await api.deposit(a["id"], "100")
            shard = shard_of_partition(partition_of(a["id"], PARTITIONS), SHARDS)
            journal = server.data_dir / "shards" / f"s-{shard:03d}.sqlite"  # the paying balance's shard
            # Another process holds the write lock: every commit to that file fails, as
            # on a full or failing disk (root ignores permission bits, so a lock it is).
            blocker = sqlite3.connect(journal, isolation_level=None, timeout=5)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                first = await api.pay(a["id"], b["id"], "1")
                assert first.status in (202, 503), first  # not acknowledged: not on disk
                for _ in range(100):  # the failed flush marks the journal unwritable
                    ready = await Api(session, server.url, None).get("/readyz")
                    if ready.status == 503:
                        break
                    await asyncio.sleep(0.1)
                assert ready.status == 503 and "not writable" in ready.body["reason"]
                refused = await api.pay(a["id"], b["id"], "2")
                assert (refused.status, refused.body["code"]) == (503, "unavailable")
                assert refused.headers["Retry-After"] == "1"
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            for _ in range(100):  # the journal retries by itself and the ledger resumes
                if (await Api(session, server.url, None).get("/readyz")).status == 200:
                    break
                await asyncio.sleep(0.1)
            resumed = await api.pay(a["id"], b["id"], "3")
            assert resumed.status == 201 and resumed.body["status"] == "success"
            amounts = {3}
            if first.status == 202:  # told pending: it settles once the disk is back, or (a
                # leg was refused by the unwritable journal) reads as failed, nothing moved
                state = (await api.get(f"/v1/payments/{first.body['id']}")).body
                if state["status"] == "success":
                    amounts.add(1)
                else:
                    assert (state["status"], state["reason"]) == ("system_failure", "journal_unavailable"), state
            assert (await api.get(f"/v1/balances/{b['id']}")).body["amount"] == f"{sum(amounts)}.00"
    finally:
        server.stop()
