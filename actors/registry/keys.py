"""API keys: each client account's live keys, stored by the hash of their token (the
gateway makes the token and shows it once; it is never journaled nor listed)."""

from __future__ import annotations

from actors.clock import new_id, now_ms
from actors.registry.accounts import Accounts
from actors.registry.answers import Answers
from actors.registry.log import RegistryLog
from ledger.records import Answered, KeyCreated, KeyRevoked, Record
from ledger.views import Idem, KeyView


class ApiKeys:
    RECORDS = (KeyCreated, KeyRevoked)

    def __init__(self, log: RegistryLog, answers: Answers, accounts: Accounts) -> None:
        self._log = log
        self._answers = answers
        self._accounts = accounts
        self._live: dict[str, tuple[KeyView, bytes]] = {}  # key id -> (as listed, token hash)
        self._by_hash: dict[bytes, str] = {}

    def apply(self, r: Record) -> None:
        if isinstance(r, KeyCreated):
            self._live[r.key_id] = (KeyView(r.key_id, r.account_id, r.prefix, r.created_at_ms), r.token_hash)
            self._by_hash[r.token_hash] = r.key_id
        else:
            assert isinstance(r, KeyRevoked)
            _, token_hash = self._live.pop(r.key_id)
            del self._by_hash[token_hash]

    async def create(
        self, account_id: str, token_hash: bytes, idem: Idem | None, prefix: str | None
    ) -> str | Answered | None:
        self._log.require_writable()
        if (answered := await self._answers.made_before(idem)) is not None:
            return answered
        if self._accounts.of_client(account_id) is None:
            return None
        key_id = new_id("key")
        self._log.commit(KeyCreated(key_id, account_id, token_hash, now_ms(), prefix))
        self._answers.record(idem, "key", key_id)
        await self._log.durable()
        return key_id

    async def revoke(self, key_id: str) -> bool:
        self._log.require_writable()
        if key_id not in self._live:
            await self._log.durable()
            return False
        self._log.commit(KeyRevoked(key_id))
        await self._log.durable()
        return True

    async def view(self, key_id: str) -> KeyView | None:
        await self._log.durable()
        found = self._live.get(key_id)
        return found[0] if found is not None else None

    async def listed(
        self, account_id: str, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[KeyView] | None:
        await self._log.durable()
        if self._accounts.of_client(account_id) is None:
            return None
        found = sorted(
            (
                k
                for k, _ in self._live.values()
                if k.account_id == account_id
                and (before_id is None or k.id < before_id)
                and (after_id is None or k.id > after_id)
            ),
            key=lambda k: k.id,
            reverse=not ascending,
        )
        return found[:limit]

    async def authenticate(self, token_hash: bytes) -> tuple[str, str] | None:
        await self._log.durable()
        key_id = self._by_hash.get(token_hash)
        return (key_id, self._live[key_id][0].account_id) if key_id is not None else None
