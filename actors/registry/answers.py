"""Idempotency of the registry's creates: what each Idempotency-Key made within the window
(`idempotency_window_s`), journaled in the same frame as the create itself, so a crash keeps
both or neither and a retry never makes a second one. A batch claims its key here too."""

from __future__ import annotations

from actors.clock import now_ms
from actors.registry.log import RegistryLog
from ledger.records import Answered, Record
from ledger.views import Idem


class Answers:
    RECORDS = (Answered,)

    def __init__(self, log: RegistryLog, window_s: int) -> None:
        self._log = log
        self._window_ms = window_s * 1000
        self._by_lookup: dict[bytes, Answered] = {}  # in time order: the expired ones are at the front

    def apply(self, r: Record) -> None:
        assert isinstance(r, Answered)
        if r.at_ms >= now_ms() - self._window_ms:
            self._by_lookup[r.lookup] = r

    def find(self, idem: Idem | None) -> Answered | None:
        """What `idem` made, if it made something within the window; the expired answers
        are dropped as they age."""
        if idem is None:
            return None
        window_start_ms = now_ms() - self._window_ms
        while self._by_lookup:
            oldest = next(iter(self._by_lookup.values()))
            if oldest.at_ms >= window_start_ms:
                break
            del self._by_lookup[oldest.lookup]
        return self._by_lookup.get(idem.lookup)

    async def made_before(self, idem: Idem | None) -> Answered | None:
        """As `find`, once durable: the answer may be in a frame not yet flushed."""
        answered = self.find(idem)
        if answered is not None:
            await self._log.durable()
        return answered

    def record(
        self, idem: Idem | None, kind: str, ref: str, amount_minor: int = 0, refusals: bytes | None = None
    ) -> None:
        """Journal what `idem` made (nothing without one), right after the create's record."""
        if idem is not None:
            self._log.commit(
                Answered(idem.lookup, idem.fingerprint, kind, ref, now_ms(), amount_minor, idem.sealed, refusals)
            )

    async def claim_batch(self, idem: Idem, refusals: bytes) -> Answered | None:
        """See `Registry.claim_batch`."""
        self._log.require_writable()
        if (answered := await self.made_before(idem)) is not None:
            return answered
        self.record(idem, "batch", "", refusals=refusals)
        await self._log.durable()
        return None
