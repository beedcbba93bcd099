"""Webhook signatures, for the ledger that signs and the receivers that check them.

Each delivery is a POST of the event's JSON with

    Rayledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

A receiver recomputes the HMAC over the raw body it got, compares in constant time, and
refuses a timestamp too far from its clock (a replayed old delivery). It answers 2xx once
it has the event; anything else is retried. Deliveries are at least once: dedupe by the
event's `id`.

    from rayledger.webhooks import verify
    if not verify(secret, request.headers["Rayledger-Signature"], await request.read()):
        return web.Response(status=400)
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Rayledger-Signature"
TOLERANCE_S = 300  # how old (or how far ahead) a signature's time may be


def signature(secret: str, timestamp_s: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp_s},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = TOLERANCE_S, now_s: float | None = None) -> bool:
    """Whether `header` signs `body` with `secret`, at a time within `tolerance_s`."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    stamp = int(stamps[0])
    if abs((time.time() if now_s is None else now_s) - stamp) > tolerance_s:
        return False
    expected = signature(secret, stamp, body).rpartition("v1=")[2]
    # The format allows several v1 values (as Stripe's does); one matching is enough.
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
