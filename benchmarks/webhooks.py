"""A loopback webhook receiver, and a `rayledger` that serves with one subscribed.

The receiver keeps every delivery (its signature header and body), so that a test checks
every signature once it knows the secret, and counts deliveries by event id; while
`failing` it answers 500.

    python3 ../shared/bench/compare.py --rounds 3 --rayledger-bin benchmarks/webhook_bin

runs the yardstick against a ledger with a webhook endpoint subscribed to every payment
event: `benchmarks/webhook_bin/rayledger` runs `python -m benchmarks.webhooks serve ...`,
which starts `rayledger serve ...` as given, a receiver on loopback and the endpoint, and
writes the receiver's counts every second to `webhook_receiver.json` beside the data
directory, or to $WEBHOOK_RECEIVER_REPORT (`--env WEBHOOK_RECEIVER_REPORT=...`). The
receiver runs at the webhooks actor's idle CPU priority: on this one machine it stands
for a receiver on another one, which takes no CPU from the ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from actors.webhooks import idle_priority
from rayledger.client import Client
from rayledger.webhooks import SIGNATURE_HEADER, verify


class Receiver:
    def __init__(self) -> None:
        self.deliveries: list[tuple[str, bytes]] = []  # (signature header, body) of every request
        self.counts: dict[str, int] = {}  # event id -> deliveries answered 2xx
        self.events: dict[str, dict[str, Any]] = {}
        self.failing = False
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{bound}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.deliveries.append((request.headers.get(SIGNATURE_HEADER, ""), body))
        if self.failing:
            self.refused += 1
            return web.Response(status=500, text="failing on purpose")
        event = json.loads(body)
        self.counts[event["id"]] = self.counts.get(event["id"], 0) + 1
        self.events[event["id"]] = event
        return web.Response(text="ok")

    def unsigned(self, secret: str) -> int:
        """Deliveries whose signature does not check out (with a day's tolerance: a test
        checks them after the fact)."""
        return sum(not verify(secret, header, body, tolerance_s=86_400) for header, body in self.deliveries)


async def _serve(argv: list[str]) -> int:
    """`rayledger serve <argv>` with a receiver subscribed to every payment event."""
    rayledger = str(Path(sys.executable).with_name("rayledger"))
    port = argv[argv.index("--port") + 1]
    data_dir = Path(argv[argv.index("--data-dir") + 1])
    server = subprocess.Popen([rayledger, "serve", *argv])
    idle_priority()  # this process is only the receiver from here on
    receiver = await Receiver().start()
    url, token = f"http://127.0.0.1:{port}", os.environ["RAYLEDGER_ADMIN_TOKEN"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        while server.poll() is None:
            try:
                async with http.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    async with Client(url, token) as ledger:
        endpoint = await ledger.webhook_endpoints.create(
            url=receiver.url, events=["payment.succeeded", "payment.failed"]
        )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    counts = Path(os.environ.get("WEBHOOK_RECEIVER_REPORT") or data_dir.parent / "webhook_receiver.json")
    while not stop.is_set() and server.poll() is None:
        report = {
            "at": time.time(),
            "endpoint": endpoint.id,
            "delivered": sum(receiver.counts.values()),
            "events": len(receiver.counts),
            "unsigned": receiver.unsigned(endpoint.secret or "") if len(receiver.deliveries) < 10_000 else None,
        }
        counts.write_text(json.dumps(report))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    server.terminate()
    await receiver.stop()
    return server.wait()


if __name__ == "__main__":
    assert sys.argv[1:2] == ["serve"], "usage: python -m benchmarks.webhooks serve <rayledger serve arguments>"
    sys.exit(asyncio.run(_serve(sys.argv[2:])))
