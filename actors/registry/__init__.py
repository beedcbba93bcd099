"""Registry: accounts, the balance directory, currencies and their issuer balances, API
keys and currency exchange (rates, quotes).

Low write rate, journaled like everything else. It knows which balances exist, who owns
them and their currency — facts that never change, so the gateway caches them. Money
state (amount, holds, status, limits) lives only in the owning shard.

One actor (`actor.Registry`) made of plain parts, one per concern, as Ray Serve's
controller is made of state managers; each part applies its own records:
`log` the journal (the one way state changes), `answers` the creates' idempotency,
`shards` the shards' peers, `currencies`, `accounts`, `balances` (the directory and
opening balances on their shards), `changes` (of a balance's status or limit), `exchange`
and `keys`. Other modules import the actor from here.
"""

from __future__ import annotations

from actors.registry.actor import Registry, registry_journal_path

__all__ = ["Registry", "registry_journal_path"]
