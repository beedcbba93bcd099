"""What the registry tells about accounts, balances, currencies and keys, as plain
values: the gateway, the client routing calls and the webhooks actor read these, so they
live below all of them (the registry itself is in actors/registry/)."""

from __future__ import annotations

import msgspec

SYSTEM_ACCOUNT_ID = "acc_system"  # owns each currency's issuer balance
FX_ACCOUNT_ID = "acc_fx"  # owns one liquidity balance per currency that has a rate
SYSTEM_ACCOUNTS = frozenset({SYSTEM_ACCOUNT_ID, FX_ACCOUNT_ID})


class KeyView(msgspec.Struct, frozen=True, array_like=True):
    id: str
    account_id: str
    prefix: str | None
    created_at_ms: int


class Idem(msgspec.Struct, frozen=True, array_like=True):
    """An Idempotency-Key on a create, as the gateway hands it over (hashed and sealed)."""

    lookup: bytes
    fingerprint: bytes
    sealed: bytes | None = None


class AccountInfo(msgspec.Struct, frozen=True):
    id: str
    email: str
    active: bool
    created_at_ms: int
    metadata: dict[str, str] | None
    balance_ids: list[str]


class BalanceInfo(msgspec.Struct, frozen=True, array_like=True):
    """Immutable directory facts about a balance."""

    id: str
    account_id: str
    currency: str
    created_at_ms: int


class CurrencyView(msgspec.Struct, frozen=True):
    code: str
    exponent: int
    name: str
    custom: bool
    issuer_balance_id: str | None
