"""Console sessions: a signed cookie that stands for the admin token, and its CSRF token.

Signing in with the admin token sets `rl_session` = `<issued unix s>.<nonce>.<MAC>`, a MAC
under a key derived from the admin token (like the idempotency seal, so every node of the
cluster checks it without sharing state, and changing the admin token ends every session).
The cookie is `HttpOnly` (page scripts never see it), `SameSite=Strict` (no other site's
page sends it), `Secure` behind HTTPS, and lasts `SESSION_MAX_AGE_S`.

What a session may change (every method but GET and HEAD) also needs the session's CSRF
token: in the `X-CSRF-Token` header (the console's scripts read it from the page), or in a
`csrf_token` form field (sign-out). A page of another origin can neither read the token nor
send that header without a CORS grant, which the ledger never gives.

Signing out clears the cookie in the browser. The cookie is not recorded server-side, so a
copy taken before sign-out stays valid until it expires: rotate the admin token to end every
session at once. The key comes from the seal key (`gateway.auth.seal_key`), which the ingress
actors hold: it is as secret as the admin token, since it can sign a session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from aiohttp import web

SESSION_COOKIE = "rl_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD"})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Sessions:
    def __init__(self, seal_key: bytes) -> None:
        assert seal_key, "sessions are signed with a key derived from the admin token"
        self._key = hmac.new(seal_key, b"rayledger: console sessions", hashlib.sha256).digest()

    def _mac(self, *parts: str) -> str:
        return _b64(hmac.new(self._key, ".".join(parts).encode(), hashlib.sha256).digest())

    def issue(self) -> str:
        issued, nonce = str(int(time.time())), secrets.token_urlsafe(16)
        return f"{issued}.{nonce}.{self._mac(issued, nonce)}"

    def nonce(self, request: web.Request) -> str | None:
        """The session's nonce if the request carries a valid, unexpired session cookie."""
        cookie = request.cookies.get(SESSION_COOKIE, "")
        issued, _, rest = cookie.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (cookie.isascii() and issued.isdigit() and nonce and mac) or len(cookie) > 200:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(issued, nonce).encode()):
            return None
        age = time.time() - int(issued)
        return nonce if 0 <= age < SESSION_MAX_AGE_S else None

    def csrf_token(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def csrf_ok(self, nonce: str, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.csrf_token(nonce).encode())

    @staticmethod
    def set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=SESSION_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
        )

    @staticmethod
    def clear_cookie(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/")
