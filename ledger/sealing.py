"""Sealing a short secret (an API key's token in a create's replay, a webhook endpoint's
signing secret) so that a journal or backup alone does not reveal it: XOR with an
HMAC-SHA512 of a context and the secret's reference under a key kept apart. XOR is its own
inverse, so the same call unseals."""

from __future__ import annotations

import hashlib
import hmac


def xor_sealed(key: bytes, context: bytes, ref: str, data: bytes) -> bytes:
    pad = hmac.new(key, context + b"\n" + ref.encode(), hashlib.sha512).digest()
    assert len(data) <= len(pad), "a sealed secret is longer than its pad"
    return bytes(a ^ b for a, b in zip(data, pad[: len(data)], strict=True))
