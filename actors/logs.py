"""Structured logs shared by the gateway and the actors: one JSON object per line on
stderr. Inside Ray an actor's stderr is its worker log file, shown per actor on the Ray
dashboard and under the session's `logs/` directory.

Events carry ids (actor, journal, payment) and counts, never tokens or request bodies.
`event(log, name, **fields)` is the one way to emit one. `track_errors()` adds Sentry.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


class MalformedRequest(logging.Filter):
    """aiohttp logs a request it cannot parse (a repeated Content-Type, say) as an error
    with its parser's traceback. The client was answered 400 and nothing of ours ran: one
    `malformed_request` event at info with aiohttp's reason, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            reason = " ".join(str(error.message).split())[:ERROR_CHARS_MAX]
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info, record.exc_text = "malformed_request", (), None, None
            record.fields = {"status": error.code, "reason": reason}
        return True


ERROR_CHARS_MAX = 200


def configure(level: str | None = None, foreign: tuple[str, ...] = ("aiohttp",), *, last_resort: bool = False) -> None:
    """JSON lines on stderr for every `rayledger.*` logger and the `foreign` libraries', so
    that every line a ledger process prints is one JSON object (idempotent); the level
    defaults to `RAYLEDGER_LOG_LEVEL` (info). `last_resort`: also what Python writes for a
    logger with no handler at all, which is what Ray's own logger is while `ray.init` runs
    (it drops its handlers, ours included, and warns meanwhile)."""
    level = level or os.environ.get("RAYLEDGER_LOG_LEVEL", "info")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("rayledger")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in foreign:
        other = logging.getLogger(name)
        other.handlers[:] = [handler]
        other.setLevel(logging.WARNING)  # their warnings and errors, not their chatter
        other.propagate = False
    if last_resort:
        logging.lastResort = handler
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequest) for f in server.filters):
        server.addFilter(MalformedRequest())


def event(log: logging.Logger, name: str, level: int = logging.INFO, /, **fields: object) -> None:
    if log.isEnabledFor(level):
        log.log(level, name, extra={"fields": fields})


def track_errors(*, required: bool = True) -> bool:
    """Error tracking with Sentry when `SENTRY_DSN` is set (the `sentry` extra): ERROR log
    events (a journal that cannot be written, an internal error) and unhandled exceptions,
    from the gateway and from every actor. Nothing that could carry a secret or personal
    data leaves: no request data (the token is a header), no local variables of frames.
    Each process reads `SENTRY_DSN` from its own environment: on a cluster, set it on
    every node. Missing sentry-sdk stops `serve` (`required`), but never an actor."""
    dsn = os.environ.get("SENTRY_DSN")
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.logging import LoggingIntegration
    except ImportError:
        missing = "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'rayledger[sentry]'"
        if required:
            raise SystemExit(missing) from None
        logging.getLogger("rayledger").warning("error_tracking_off", extra={"fields": {"reason": missing}})
        return False
    if sentry_sdk.get_client().is_active():
        return True
    # No personal data, no request bodies, no local variables of frames: sentry-sdk 3 says
    # it with `data_collection`, 2 with two flags that 3 refuses.
    private: dict[str, Any] = (
        {"data_collection": {"user_info": False, "http_bodies": [], "stack_frame_variables": False}}
        if int(sentry_sdk.VERSION.split(".")[0]) >= 3
        else {"send_default_pii": False, "include_local_variables": False}
    )
    sentry_sdk.init(
        dsn=dsn,
        environment=os.environ.get("SENTRY_ENVIRONMENT", "production"),
        max_request_body_size="never",
        before_send=_scrub,  # type: ignore[arg-type]
        # ERROR log records become events: 2 did this by default, 3 no longer does.
        integrations=[LoggingIntegration(event_level=logging.ERROR)],
        **private,
    )
    return True


def _scrub(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    event.pop("request", None)  # URL with query, headers, cookies, body
    return event
