"""Who is calling: the admin (one token, from the data dir or the environment) or an
account (API keys made by the admin). Tokens are compared in constant time; account
tokens are stored only as SHA-256 hashes (they carry 256 random bits, so a fast hash is
enough: there is nothing to brute-force).

A short cache of key lookups spares the registry a call per request; revoking a key
through this gateway clears it at once, and other gateways stop accepting the token
within `auth_cache_ttl_ms`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Literal

import msgspec
from aiohttp import web

from actors.client import LedgerClient
from actors.registry import Registry
from gateway.console.session import CSRF_HEADER, SAFE_METHODS, Sessions
from gateway.errors import ApiError

ACCOUNT_TOKEN_PREFIX = "rlk_"
# Generated admin tokens carry a prefix too: a bare urlsafe token can begin with "-", and
# `--token -x...` on a command line then reads as an option.
ADMIN_TOKEN_PREFIX = "rla_"
Access = Literal["public", "admin", "account"]


class Principal(msgspec.Struct, frozen=True):
    admin: bool
    account_id: str | None = None
    key_id: str | None = None


ADMIN = Principal(admin=True)


def new_admin_token() -> str:
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_account_token() -> tuple[str, bytes]:
    token = ACCOUNT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def seal_key(admin_token: str) -> bytes:
    """What seals the replies of creates made with an Idempotency-Key (gateway.creates) and
    signs console sessions (gateway.console.session): from the admin token, so it is never
    journaled, and not the token itself. It can sign an admin session: keep it as secret."""
    return hmac.new(admin_token.encode(), b"rayledger: idempotency seal key", hashlib.sha256).digest()


class Authenticator:
    def __init__(self, admin_token_hash: bytes, client: LedgerClient, cache_ttl_ms: int, sessions: Sessions) -> None:
        # Only the token's hash reaches the ingress actors: the token itself never travels
        # through Ray (task arguments, logs) and is compared as a digest in constant time.
        assert len(admin_token_hash) == hashlib.sha256().digest_size, "pass the admin token's SHA-256"
        self._admin_hash = admin_token_hash
        self._client = client
        self._ttl_s = cache_ttl_ms / 1000
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}
        self._sessions = sessions

    def is_admin_token(self, token: str) -> bool:
        return hmac.compare_digest(token_hash(token), self._admin_hash)

    def forget_keys(self) -> None:
        self._cache.clear()

    def _session(self, request: web.Request) -> Principal | None:
        """The admin, for a console session (gateway.console.session); its changes need
        the session's CSRF token."""
        nonce = self._sessions.nonce(request)
        if nonce is None:
            return None
        if request.method not in SAFE_METHODS and not self._sessions.csrf_ok(nonce, request.headers.get(CSRF_HEADER)):
            raise ApiError("forbidden", f"a console session's changes need its {CSRF_HEADER} header")
        return ADMIN

    async def principal(self, request: web.Request) -> Principal:
        if "Authorization" not in request.headers:
            session = self._session(request)
            if session is not None:
                return session
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError("unauthorized", "a valid 'Authorization: Bearer <token>' header is required")
        digest = token_hash(token)
        if hmac.compare_digest(digest, self._admin_hash):
            return ADMIN
        if token.startswith(ACCOUNT_TOKEN_PREFIX) and len(token) < 100:
            now = time.monotonic()
            cached = self._cache.get(digest)
            if cached is None or cached[0] < now:
                found = await self._client.registry.invoke(Registry.authenticate, digest)
                principal = Principal(False, found[1], found[0]) if found else None
                if len(self._cache) > 10_000:
                    self._cache.clear()
                cached = self._cache[digest] = (now + self._ttl_s, principal)
            if cached[1] is not None:
                return cached[1]
        raise ApiError("unauthorized", "the token is not valid (revoked or mistyped?)")


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise ApiError("forbidden", "this needs the admin token")
