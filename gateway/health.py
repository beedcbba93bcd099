"""GET /healthz and /readyz: liveness and readiness, without a token, for load balancers
and orchestrators. Apart from the API's resources: they read no ledger state but the
actors' status."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.common import json_response
from gateway.errors import RETRY_AFTER_S
from gateway.keys import CLIENT
from gateway.operation import Op
from rayledger import schemas

READY_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    return json_response(schemas.Health("ok"))


async def readyz(request: web.Request) -> web.Response:
    try:
        status = await asyncio.wait_for(request.app[CLIENT].status(), READY_TIMEOUT_S)
    except Exception as exc:  # a timeout, a dead actor: not ready either way
        return _not_ready(f"actors not ready: {type(exc).__name__}")
    unwritable = [s["shard"] for s in status["shards"] if not s["writable"]]
    if unwritable:
        return _not_ready(f"journal not writable on shards {unwritable}")
    return json_response(schemas.Health("ready"))


def _not_ready(reason: str) -> web.Response:
    response = json_response(schemas.Health("unavailable", reason), 503)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)  # as every 503 of the API says when to come back
    return response


OPS: list[Op] = [
    Op("GET", "/healthz", healthz, "Liveness: 200 while the process runs", "public", response=schemas.Health),
    Op(
        "GET",
        "/readyz",
        readyz,
        "Readiness: every partition recovered and writable",
        "public",
        response=schemas.Health,
        also={503: "Not ready: status unavailable, and the reason"},
    ),
]
