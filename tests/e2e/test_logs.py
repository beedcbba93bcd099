"""Structured logs: one JSON line per API request with its request id (echoed to the
client), route template, status and the ids of the payments it made; the actors' events
(recovery) as JSON lines too, forwarded by Ray to the server's output as they were written
(each names its actor; the ingress runs in the coordinator); never a token."""

from __future__ import annotations

import asyncio
import json

from tests.support.api import Api
from tests.support.server import Server


async def test_each_request_logs_one_json_line_without_secrets(api: Api, server: Server) -> None:
    a = (await api.balance((await api.account("logs-a@example.com"))["id"], "USD"))["id"]
    b = (await api.balance((await api.account("logs-b@example.com"))["id"], "USD"))["id"]
    await api.deposit(a, "5.00")
    body = {"balance_from": a, "balance_to": b, "amount": "1.00"}
    paid = await api.post("/v1/payments", body, headers={"X-Request-Id": "req-logs-1"})
    assert paid.status == 201 and paid.headers["X-Request-Id"] == "req-logs-1"
    generated = await api.get(f"/v1/balances/{a}", headers={"X-Request-Id": "not a valid id!"})
    assert generated.headers["X-Request-Id"] not in ("", "not a valid id!")

    # The ingress runs in the coordinator actor: Ray forwards its lines to the server's output.
    wanted = {"req-logs-1", generated.headers["X-Request-Id"]}
    for _ in range(100):
        lines = [e for _, _, e in forwarded_events(server) if e.get("event") == "request"]
        if wanted <= {e["request_id"] for e in lines}:
            break
        await asyncio.sleep(0.1)
    [entry] = [e for e in lines if e.get("request_id") == "req-logs-1"]
    assert entry["event"] == "request" and entry["route"] == "/v1/payments" and entry["status"] == 201
    assert entry["ids"] == [paid.body["id"]] and entry["logger"] == "rayledger.gateway"
    assert any(e.get("request_id") == generated.headers["X-Request-Id"] for e in lines)
    assert server.token not in server.log_path.read_text()


def forwarded_events(server: Server) -> list[tuple[str, int, dict[str, object]]]:
    """(actor, pid, event) of the JSON lines Ray forwarded from the actors to the server's
    output: clean JSON lines, one per line, with no "(actor pid=N)" prefix or colour
    codes when the output is not a terminal (each line names its actor itself)."""
    text = server.log_path.read_text()
    assert "\x1b[" not in text, "no ANSI colour codes in a log file"
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            events.append((str(event.get("actor")), int(event.get("pid", 0)), event))
    return events


def test_actors_log_their_recovery_as_json(server: Server) -> None:
    events = forwarded_events(server)
    recovered = {e["actor"]: (pid, e) for _, pid, e in events if e["event"] == "recovered"}
    assert set(recovered) == {"registry", "shard-0", "shard-1", "coordinator-0", "webhooks"}
    for pid, e in recovered.values():
        assert e["pid"] == pid and e["level"] == "info" and e["logger"].startswith("rayledger.")
        assert e["seconds"] >= 0 and "node_id" in e
    assert recovered["coordinator-0"][1]["epoch"] >= 1
    owned = recovered["shard-0"][1]["partitions"] + recovered["shard-1"][1]["partitions"]
    assert sorted(owned) == list(range(len(owned))) and len(owned) >= 2  # each partition once
