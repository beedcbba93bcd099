"""What an actor whose journal holds API events (the registry, each coordinator) answers
about them: the reads `LedgerClient.events` and `events_after` gather (gateway.events)."""

from __future__ import annotations

from journal import Journal
from ledger.records import Record, event_seq

RESUME_LOOKAHEAD = 200  # events with later ids whose positions a resumed stream starts before


class EventReads:
    journal: Journal

    async def events(
        self, limit: int, before_id: str | None, after_id: str | None, event_type: str | None, ascending: bool
    ) -> list[tuple[str, Record]]:
        await self.journal.durable()
        return await self.journal.events(
            limit=limit, before_id=before_id, after_id=after_id, event_type=event_type, ascending=ascending
        )

    async def events_after(self, after_seq: int, limit: int) -> list[tuple[int, str, Record]]:
        await self.journal.durable()
        return await self.journal.events_after(after_seq, limit)

    async def events_after_encoded(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        await self.journal.durable()
        return await self.journal.events_after_encoded(after_seq, limit)

    async def event_position_after(self, event_id: str) -> int:
        """The position a stream resumed after `event_id` reads on from: just before the
        earliest written of this journal's first events with a later id (a journal writes
        its events nearly, not exactly, in time order), or its end if it has none. The end
        is taken before the query, once durable: an event appended meanwhile is read again
        rather than skipped."""
        end = self.journal.last_seq
        await self.journal.durable(end)
        later = await self.journal.events(
            limit=RESUME_LOOKAHEAD, before_id=None, after_id=event_id, event_type=None, ascending=True
        )
        return min(event_seq(some_id) for some_id, _ in later) - 1 if later else end

    async def event_position(self) -> int:
        """The journal's position now: a webhook endpoint made now gets the events after it."""
        await self.journal.durable()
        return self.journal.last_seq
