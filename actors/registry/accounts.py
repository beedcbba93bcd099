"""Accounts: their email (unique, case-insensitively), status, metadata and balances. A
status change is journaled here; telling the shards (whose balances then refuse payments)
is `Balances.mirror_status`, as only the balance directory knows which are open."""

from __future__ import annotations

from actors.clock import new_id, now_ms
from actors.registry.answers import Answers
from actors.registry.log import RegistryLog
from ledger.records import AccountChanged, AccountCreated, AccountMetadataSet, Answered, Record
from ledger.views import SYSTEM_ACCOUNT_ID, SYSTEM_ACCOUNTS, AccountInfo, Idem


class Account:
    __slots__ = ("active", "balance_ids", "created_at_ms", "created_metadata", "email", "metadata")

    def __init__(self, email: str, metadata: dict[str, str] | None, created_at_ms: int) -> None:
        self.email = email
        self.metadata = metadata
        self.created_metadata = metadata  # what its create answered, and a retry of it replays
        self.created_at_ms = created_at_ms
        self.active = True
        self.balance_ids: list[str] = []


class Accounts:
    RECORDS = (AccountCreated, AccountChanged, AccountMetadataSet)

    def __init__(self, log: RegistryLog, answers: Answers) -> None:
        self._log = log
        self._answers = answers
        self._by_id: dict[str, Account] = {}
        self._emails: dict[str, str] = {}  # lowercased email -> account id
        self._status_changed: set[str] = set()  # accounts whose status shards must mirror

    def apply(self, r: Record) -> None:
        if isinstance(r, AccountCreated):
            self._by_id[r.account_id] = Account(r.email, r.metadata, r.created_at_ms)
            self._emails[r.email.lower()] = r.account_id
        elif isinstance(r, AccountChanged):
            self._by_id[r.account_id].active = r.active
            self._status_changed.add(r.account_id)
        else:
            assert isinstance(r, AccountMetadataSet)
            self._by_id[r.account_id].metadata = r.metadata

    def added_balance(self, account_id: str, balance_id: str) -> None:
        """Applies the creation of a balance of a client's account."""
        self._by_id[account_id].balance_ids.append(balance_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def account(self, account_id: str) -> Account:
        """A known account (KeyError for an unknown one: a bug)."""
        return self._by_id[account_id]

    def of_client(self, account_id: str) -> Account | None:
        """The account, if a client's may be it: the system's is never one."""
        return None if account_id == SYSTEM_ACCOUNT_ID else self._by_id.get(account_id)

    def status_changed(self) -> list[str]:
        """Accounts whose status changed once: a crash may have come before the shards heard."""
        return sorted(self._status_changed)

    def info(self, account_id: str) -> AccountInfo:
        a = self._by_id[account_id]
        return AccountInfo(account_id, a.email, a.active, a.created_at_ms, a.metadata, list(a.balance_ids))

    def first(self, account_id: str) -> AccountInfo:
        a = self._by_id[account_id]
        return AccountInfo(account_id, a.email, True, a.created_at_ms, a.created_metadata, [])

    async def find(self, account_id: str) -> AccountInfo | None:
        await self._log.durable()
        return self.info(account_id) if account_id in self._by_id else None

    async def create(
        self, email: str, metadata: dict[str, str] | None, idem: Idem | None
    ) -> AccountInfo | Answered | None:
        self._log.require_writable()
        if (answered := await self._answers.made_before(idem)) is not None:
            return answered
        if email.lower() in self._emails:
            await self._log.durable()
            return None
        account_id = new_id("acc")
        self._log.commit(AccountCreated(account_id, email, metadata, now_ms()))
        self._answers.record(idem, "account", account_id)
        await self._log.durable()
        return self.info(account_id)

    def change(
        self, account_id: str, active: bool | None, metadata: dict[str, str] | None, *, set_metadata: bool
    ) -> bool:
        """Journal what changes (not yet durable); False if there is no such client's account."""
        account = self._by_id.get(account_id)
        if account is None or account_id in SYSTEM_ACCOUNTS:
            return False
        if set_metadata and account.metadata != metadata:
            self._log.commit(AccountMetadataSet(account_id, metadata, now_ms()))
        if active is not None and account.active != active:
            self._log.commit(AccountChanged(account_id, active, now_ms()))
        return True

    async def listed(
        self,
        active: bool | None,
        limit: int,
        before_id: str | None,
        after_id: str | None,
        ascending: bool,
        email: str | None,
    ) -> list[AccountInfo]:
        await self._log.durable()
        if email is not None:
            found = self._emails.get(email.lower())
            ids = [found] if found is not None else []
        else:
            ids = sorted(self._by_id, reverse=not ascending)
        out = []
        for account_id in ids:
            if account_id == SYSTEM_ACCOUNT_ID or (before_id is not None and account_id >= before_id):
                continue
            if after_id is not None and account_id <= after_id:
                continue
            if active is None or self._by_id[account_id].active == active:
                out.append(self.info(account_id))
                if len(out) == limit:
                    break
        return out
