"""Webhook delivery rules without I/O: when a failed delivery is tried again, and which
addresses a delivery may go to (API "Webhooks")."""

from __future__ import annotations

import ipaddress

RETRY_FIRST_S = 2.0  # the first retry comes this soon after the first failure
RETRY_CAP_S = 3600.0  # the delay doubles up to this
RETRY_FOR_S = 24 * 3600.0  # then the event is given up for that endpoint

# Cloud metadata services that answer on addresses which are not all link-local.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)


def next_attempt_ms(first_at_ms: int, attempt: int, now_ms: int, spread: float = 0.0) -> int:
    """When to try an event again after its `attempt`-th try failed at `now_ms`; 0: never
    (the retry period since the first try is over). `spread` in [0, 1) takes up to a fifth
    off the delay, so that endpoints failing together do not retry in step."""
    assert attempt >= 1 and 0.0 <= spread < 1.0
    delay_s = min(RETRY_FIRST_S * 2 ** min(attempt - 1, 30), RETRY_CAP_S) * (1.0 - spread / 5)
    due = now_ms + int(delay_s * 1000)
    return due if due <= first_at_ms + RETRY_FOR_S * 1000 else 0


def address_refusal(address: str, private_allowed: bool) -> str | None:
    """Why a delivery may not go to `address` (an IP), or None if it may. Link-local and
    metadata addresses never; private, loopback and other non-public ones only when
    allowed (a ledger reachable from the internet must not be a way into its network)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone names no other host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_multicast or ip.is_unspecified:
        return f"{ip} is not a unicast host address"
    if not ip.is_global and not private_allowed:
        return f"{ip} is a private or loopback address (allowed with RAYLEDGER_WEBHOOK_PRIVATE_TARGETS=true)"
    return None
