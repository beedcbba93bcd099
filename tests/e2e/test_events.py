"""Events over HTTP: every state change listed in order from the journals, filtered by
type, scoped for account keys, durable across a restart, and streamed as Server-Sent
Events that start at now, carry the events' own ids and resume after one of them (by
`?after=` or Last-Event-ID) without a gap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.api import Api
from tests.support.server import Server


async def _events_of(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next `count` (stream id, event) of an open stream."""
    out: list[tuple[str, dict[str, Any]]] = []
    stream_id = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("id: "):
            stream_id = line[4:]
        elif line.startswith("data: "):
            assert stream_id is not None
            out.append((stream_id, json.loads(line[6:])))
            if len(out) == count:
                return out
    return out


async def _read_stream(
    session: aiohttp.ClientSession, url: str, token: str, count: int, last: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """The next `count` (stream id, event) from the stream after event `last`, then disconnect."""
    headers = {"Authorization": f"Bearer {token}", **({"Last-Event-ID": last} if last else {})}
    async with session.get(f"{url}/v1/events/stream", headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        return await _events_of(r, count)


async def test_events_list_scope_restart_and_stream_resume(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            ada, bob = await api.account("ada-ev@example.com"), await api.account("bob-ev@example.com")
            a, b = await api.balance(ada["id"], "USD"), await api.balance(bob["id"], "USD")
            await api.deposit(a["id"], "10")
            paid = await api.pay(a["id"], b["id"], "3")
            refused = await api.pay(a["id"], b["id"], "300")
            hold = await api.post(
                "/v1/holds", {"balance_from": a["id"], "balance_to": b["id"], "amount": "1", "expires_in_s": 60}
            )
            await api.post(f"/v1/holds/{hold.body['id']}/void")
            limited = await api.request("PATCH", f"/v1/balances/{b['id']}", json={"overdraft_limit": "5.00"})
            assert limited.status == 200, limited
            overdrawn = await api.pay(b["id"], a["id"], "7.50")  # b: 3.00 - 7.50, within its limit
            assert overdrawn.body["status"] == "success", overdrawn
            refused_change = await api.request("PATCH", f"/v1/balances/{b['id']}", json={"overdraft_limit": "1.00"})
            assert refused_change.status == 409  # it would not cover what b has spent: no event
            idle = await api.request("PATCH", f"/v1/balances/{b['id']}", json={"overdraft_limit": "5.00"})
            assert idle.status == 200  # already so: no event
            updated = (await api.get("/v1/events?type=balance.updated")).body["data"]
            assert [e["data"] for e in updated] == [
                {
                    "id": b["id"],
                    "account_id": bob["id"],
                    "currency": "USD",
                    "status": "active",
                    "overdraft_limit": "5.00",
                }
            ]
            everything = await api.every_page("/v1/events")
            ids = [e["id"] for e in everything]
            assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)  # newest first, each once
            types = [e["type"] for e in reversed(everything)]
            for kind in (
                "account.created",
                "balance.created",
                "balance.updated",
                "payment.succeeded",
                "payment.failed",
                "hold.created",
                "hold.voided",
            ):
                assert kind in types, (kind, types)
            assert types.index("hold.created") < types.index("hold.voided")
            succeeded = (await api.get("/v1/events?type=payment.succeeded&limit=100")).body["data"]
            assert {e["data"]["id"] for e in succeeded} >= {paid.body["id"]}
            failed = (await api.get("/v1/events?type=payment.failed")).body["data"]
            assert [e["data"]["id"] for e in failed] == [refused.body["id"]]
            page = await api.get(f"/v1/events?limit=2&starting_after={ids[1]}")
            assert [e["id"] for e in page.body["data"]] == ids[2:4]

            # An account key sees its own account's and balances' events only.
            token = (await api.post(f"/v1/accounts/{bob['id']}/keys")).body["token"]
            bobs = await Api(session, server.url, token).every_page("/v1/events")
            assert bobs and all(bob["id"] in str(e["data"]) or b["id"] in str(e["data"]) for e in bobs)
            assert not any(e["data"].get("id") == ada["id"] for e in bobs)

            # A stream after the oldest event sends the rest in id order, each under its own
            # id; cut after 5 events and resumed after the fifth: no gap, no repeat.
            oldest_first = list(reversed(ids))
            first = await _read_stream(session, server.url, server.token, 5, oldest_first[0])
            rest = await _read_stream(session, server.url, server.token, len(ids) - 6, first[-1][0])
            assert [sid for sid, _ in first + rest] == [e["id"] for _, e in first + rest] == oldest_first[1:]

            # Without a cursor a stream starts at now: the first event it sends is the next one.
            headers = {"Authorization": f"Bearer {server.token}"}
            async with session.get(f"{server.url}/v1/events/stream", headers=headers) as stream:
                assert stream.status == 200
                now = await api.pay(a["id"], b["id"], "0.25")
                [(sid, event)] = await _events_of(stream, 1)
                assert (sid, event["type"], event["data"]["id"]) == (event["id"], "payment.succeeded", now.body["id"])
            ids.insert(0, sid)
            # ?after= resumes like Last-Event-ID; an empty or malformed one is refused.
            async with session.get(f"{server.url}/v1/events/stream?after={ids[1]}", headers=headers) as stream:
                assert [sid for sid, _ in await _events_of(stream, 1)] == [ids[0]]
            for bad in ("", "r00-12.c00-340", ids[0] + "0", "evt_x"):
                refused = await api.get(f"/v1/events/stream?after={bad}")
                assert refused.status == 422 and refused.body["param"] == "after", (bad, refused)
            refused = await api.get("/v1/events/stream", headers={"Last-Event-ID": "r00-12"})
            assert refused.status == 422 and refused.body["param"] == "Last-Event-ID", refused

        assert server.stop() == 0
        server.start()  # derived from the journals: the same events after a restart
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            assert [e["id"] for e in await api.every_page("/v1/events")] == ids
            await api.pay(a["id"], b["id"], "1")  # and the stream goes on from where it was
            [(_, after)] = await _read_stream(session, server.url, server.token, 1, ids[0])
            assert after["type"] == "payment.succeeded" and after["id"] not in ids
    finally:
        server.stop()
