"""Endpoints' signing secrets at rest: sealed in the journal and its snapshots under a key
kept beside them, so that a journal or snapshot alone (a copy sent for an audit, say)
reveals no secret."""

from __future__ import annotations

import os

from actors.settings import Settings
from journal.private import write_private
from ledger.records import WebhookEndpointCreated
from ledger.sealing import xor_sealed

SECRETS_KEY_FILE = "webhook_secrets.key"
_SEAL_CONTEXT = b"rayledger: a webhook endpoint's signing secret"


def secrets_key(settings: Settings) -> bytes:
    """The key that seals signing secrets in the journal: random, made on first use, kept
    0600 in the data directory and never journaled. Not derived from the admin token: a
    new admin token must not unsign every endpoint."""
    path = settings.data_path / SECRETS_KEY_FILE
    write_private(path, os.urandom(32))  # the first start makes it; later ones find it
    key = path.read_bytes()
    assert len(key) == 32, f"{path} is not a secrets key"
    return key


def seal_secret(key: bytes, endpoint_id: str, secret: str) -> bytes:
    return xor_sealed(key, _SEAL_CONTEXT, endpoint_id, secret.encode())


def unseal_secret(key: bytes, created: WebhookEndpointCreated) -> str:
    if created.sealed_secret is None:
        return created.secret  # made before secrets were sealed
    raw = xor_sealed(key, _SEAL_CONTEXT, created.endpoint_id, created.sealed_secret)
    # Every secret starts so: anything else means the key file was replaced or lost.
    assert raw.startswith(b"whsec_"), f"{SECRETS_KEY_FILE} does not unseal endpoint {created.endpoint_id}"
    return raw.decode()
