"""Structured logs: one JSON object per line on stderr, for log shippers to index.

Each API request logs one `request` event with its request id (the client's `X-Request-Id`
when it is a short token, else a fresh one; echoed in the response), route template,
status, duration, who called (`caller`: "admin" or the API key's id), the error `code` of
a refusal (4xx) and the ids of the payments it created. Headers and bodies are never
logged, so neither tokens nor personal data reach the logs.

The request line is on the hot path of every payment, so it is built without `logging`
(a LogRecord, a formatter and a locked write cost ~10% of an ingress's CPU): the line is
encoded at once and the lines of one event-loop turn are written together. It still obeys
the `rayledger.gateway` logger's level (`RAYLEDGER_LOG_LEVEL`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import sys
import time

import msgspec
from aiohttp import web

from api.render import timestamp
from gateway.keys import PRINCIPAL
from gateway.metrics import METRICS, route_of

log = logging.getLogger("rayledger.gateway")
REQUEST_ID = web.RequestKey("request_id", str)
LOGGED_IDS = web.RequestKey("logged_ids", list)  # handlers add the ids of what they created
REQUEST_LOG = web.AppKey("request_log", "RequestLog")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestLog:
    """Request ids and the buffered `request` lines of one app."""

    def __init__(self) -> None:
        # A fresh id is this process's random prefix and a counter: unique without a
        # system call for randomness on every request.
        self._prefix = os.urandom(4).hex()
        self._counter = itertools.count(1)
        self._lines: list[bytes] = []
        self._encoder = msgspec.json.Encoder()

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"

    def write(self, entry: dict[str, object]) -> None:
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(self._encoder.encode(entry))

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            stream = sys.stderr
            stream.write(b"\n".join(lines).decode() + "\n")
            stream.flush()


@web.middleware
async def observe_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Outermost, so error answers (problem+json from inner middlewares) are seen too: one
    timing and one route lookup per request feed both the metrics and the request log."""
    app = request.app
    given = request.headers.get("X-Request-Id")
    request_id = given if given is not None and _CLIENT_ID.match(given) else app[REQUEST_LOG].new_id()
    request[REQUEST_ID] = request_id
    request[LOGGED_IDS] = ids = []
    started = time.perf_counter()
    status = 500
    code = None
    try:
        response = await handler(request)
        status = response.status
        if 400 <= status < 500:
            code = _problem_code(response)
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        seconds = time.perf_counter() - started
        route = route_of(request)
        app[METRICS].observe(route, request.method, status, seconds)
        if log.isEnabledFor(logging.INFO) and request.path.startswith("/v1"):
            entry: dict[str, object] = {
                "ts": timestamp(time.time_ns() // 1_000_000),
                "level": "info",
                "logger": log.name,
                "event": "request",
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            }
            principal = request.get(PRINCIPAL)
            if principal is not None:  # who called: the admin, or which key
                entry["caller"] = "admin" if principal.admin else principal.key_id
            if code is not None:
                entry["code"] = code
            if ids:
                entry["ids"] = ids
            app[REQUEST_LOG].write(entry)


class _Problem(msgspec.Struct):
    code: str | None = None


_problem_decoder = msgspec.json.Decoder(_Problem)


def _problem_code(response: web.StreamResponse) -> str | None:
    """The `code` of a problem+json answer (refusals are rare next to payments: decoding
    one costs nothing that matters)."""
    if not isinstance(response, web.Response) or response.content_type != "application/problem+json":
        return None
    try:
        return _problem_decoder.decode(response.body).code  # type: ignore[arg-type]
    except msgspec.DecodeError:
        return None
