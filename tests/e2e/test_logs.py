"""Structured logs: one JSON line per API request with its request id (echoed to the
client), route template, status and the ids of the payments it made; the actors' events
(recovery) as JSON lines too, forwarded by Ray to the server's output as they were written
(each names its actor; the ingress runs in the coordinator); never a token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from gateway.console.signins import FAILURES_MAX, WINDOW_S
from tests.support.api import Api
from tests.support.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: its assertions read the whole log, which other
    modules' requests must not write into."""
    srv = Server(tmp_path_factory.mktemp("logs") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


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


async def _log_events(server: Server, wanted: Callable[[dict[str, object]], bool], count: int) -> list[dict]:
    """The forwarded events `wanted` picks, once there are `count` of them."""
    for _ in range(100):
        found = [e for _, _, e in forwarded_events(server) if wanted(e)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} such events in the log: {found}")


async def test_request_lines_name_the_caller_and_the_refusal(api: Api, server: Server) -> None:
    account = await api.account("logs-caller@example.com")
    key = await api.post(f"/v1/accounts/{account['id']}/keys")
    keyed = Api(api.session, api.base_url, key.body["token"])
    missing = await api.get("/v1/balances/bal_missing", headers={"X-Request-Id": "req-logs-404"})
    assert missing.status == 404
    own = await keyed.get(f"/v1/accounts/{account['id']}", headers={"X-Request-Id": "req-logs-key"})
    assert own.status == 200
    lines = await _log_events(server, lambda e: e.get("request_id") in ("req-logs-404", "req-logs-key"), 2)
    by_id = {e["request_id"]: e for e in lines}
    assert (by_id["req-logs-404"]["caller"], by_id["req-logs-404"]["code"]) == ("admin", missing.body["code"])
    assert by_id["req-logs-key"]["caller"] == key.body["id"] and "code" not in by_id["req-logs-key"]


async def test_a_malformed_request_is_one_json_line_without_a_traceback(server: Server) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}"
    )
    answer = await reader.read(200)
    writer.close()
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer
    [malformed] = await _log_events(server, lambda e: e.get("event") == "malformed_request", 1)
    assert malformed["status"] == 400 and "Content-Type" in str(malformed["reason"]), malformed
    text = server.log_path.read_text()
    assert "Traceback" not in text and "Error handling request" not in text
    for line in text.splitlines():  # serve's own lines, Ray's and the actors' alike
        assert isinstance(json.loads(line), dict), line


async def test_console_sign_ins_are_logged_and_failures_limited(server: Server) -> None:
    # From an address of its own: sign-ins are limited per client address, and the server is
    # shared with other modules' tests, whose failed sign-ins would count against this one.
    client = "127.0.0.7"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(client, 0))) as session:

        async def sign_in(token: str) -> aiohttp.ClientResponse:
            async with session.post(
                f"{server.url}/console/signin", data={"token": token}, allow_redirects=False
            ) as response:
                return response

        assert (await sign_in(server.token)).status == 303
        for n in range(FAILURES_MAX):
            assert (await sign_in(f"rla_wrong-{n}")).status == 401, n
        limited = await sign_in(server.token)  # even the right token, so that a guesser learns nothing
        assert limited.status == 429 and 1 <= int(limited.headers["Retry-After"]) <= WINDOW_S
    outcomes = [
        e["outcome"]
        for e in await _log_events(
            server, lambda e: e.get("event") == "console_signin" and e.get("client") == client, FAILURES_MAX + 2
        )
    ]
    assert outcomes == ["success", *["failure"] * FAILURES_MAX, "limited"]
    text = server.log_path.read_text()
    assert server.token not in text and "rla_wrong" not in text
