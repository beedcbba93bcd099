"""Where a delivery may go (the SSRF rules of ledger.webhooks, applied): an endpoint's URL
is checked when it is made, and again on every connection, on the addresses actually
connected to, so a name that resolves elsewhere later gains nothing."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from actors.settings import Settings
from ledger.webhooks import address_refusal

RESOLVE_TIMEOUT_S = 5.0  # a creation whose host does not resolve by then is refused


class RefusedAddress(OSError):
    """A delivery would go to an address the SSRF rules forbid."""


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, then keeps only the addresses a delivery may go to."""

    def __init__(self, private_allowed: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._private_allowed = private_allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if address_refusal(r["host"], self._private_allowed) is None]
        if not allowed:
            raise RefusedAddress(address_refusal(found[0]["host"], self._private_allowed))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def private_targets_allowed(settings: Settings) -> bool:
    """The setting, or by default: whether the ledger itself listens on loopback only."""
    if settings.webhook_private_targets is not None:
        return settings.webhook_private_targets
    try:
        return ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        return settings.host == "localhost"


async def url_refusal(url: str, private_allowed: bool) -> str | None:
    """Why an endpoint may not have this URL (None: it may), every address its host
    resolves to now included."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "url is not a URL"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "url must be an http or https URL with a host"
    if parsed.user is not None or parsed.password is not None:
        return "url must not carry credentials"
    try:
        found = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM),
            RESOLVE_TIMEOUT_S,
        )
    except (OSError, UnicodeError, TimeoutError):
        return f"url's host {parsed.host} does not resolve"
    for address in dict.fromkeys(str(info[4][0]) for info in found):
        reason = address_refusal(address, private_allowed)
        if reason is not None:
            return f"url refused: {reason}"
    return None


def literal_refusal(url: str, private_allowed: bool) -> str | None:
    """aiohttp connects to an IP in a URL without resolving it: checked here instead."""
    host = URL(url).host or ""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: the resolver checks what it resolves to
    return address_refusal(host.strip("[]"), private_allowed)
