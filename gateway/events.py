"""GET /v1/events and GET /v1/events/stream: every state change as an event, read from
the journals that hold it (the registry's and each coordinator's history index, see
`journal.base.history_groups`), never from a second store.

An event id is `evt_` + time + journal + position: lists page by it across journals, and a
stream sends it as each event's `id:`, so the two speak of events alike (contract 1.2). A
stream starts at now, or after the event named by `Last-Event-ID` or `?after=`. It reads
each journal in order, and sends what it read in id order once it is `events_stream_lag_ms`
old, so an event recorded a moment earlier on another journal is not passed over by a
client that resumes after a later one. Resuming reads each journal on from before its
earliest written event with a later id, so events around the named one may come again:
receivers dedupe by id, as they do webhooks. One kind of event can be missed by a resumed
stream: one written more than `events_stream_lag_ms` after the time it carries (a payment
that crash recovery aborts carries its creation time) while the client was away, on a
journal with nothing newer; a live stream sends it when it is written, and
`GET /v1/events` lists it in its place. An account key sees the events of its
own account and balances (and the rates, which it may read anyway).
"""

from __future__ import annotations

import asyncio
import heapq
import re
import time

import msgspec
from aiohttp import web

from actors.events import EventReads
from api.events import event_of_record
from gateway.common import can_read_account, touches_own_balance
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY, SETTINGS
from gateway.lists import newest_first, page_of, query
from gateway.operation import EVENT_TYPE_Q, LIST_Q, Op
from gateway.payments import key_scope
from ledger.records import (
    EVENT_ID_PATTERN,
    AccountChanged,
    AccountCreated,
    AccountMetadataSet,
    BalanceCreated,
    BalanceUpdated,
    Decided,
    HoldClosed,
    HoldPlaced,
    Record,
    TransferDecided,
    event_id,
    event_seq,
)
from rayledger.patterns import describe_pattern
from rayledger.schemas import Event, EventList

STREAM_PAGE = 200  # events read from each journal per step of a stream
STREAM_POLL_S = 0.25  # how often an idle stream looks for new events
STREAM_KEEPALIVE_S = 15.0  # a comment line, so that proxies keep an idle stream open
EVENT_ID = re.compile(EVENT_ID_PATTERN)
SAMPLE_EVENT_ID = event_id(1_764_581_400_000, "c00", 42)


async def render_event(request: web.Request, some_id: str, record: Record) -> Event | None:
    """The event as the API shows it, or None if the caller may not see it."""
    if isinstance(record, Decided):
        visible = await touches_own_balance(request, record.payment)
    elif isinstance(record, TransferDecided):
        visible = await touches_own_balance(request, record.transfer)
    elif isinstance(record, HoldPlaced | HoldClosed):
        visible = await touches_own_balance(request, record.hold)
    elif isinstance(record, AccountCreated | AccountChanged | AccountMetadataSet | BalanceCreated | BalanceUpdated):
        visible = can_read_account(request, record.account_id)
    else:
        visible = True  # rates, which every key may read
    if not visible:
        return None
    return await event_of_record(request.app[DIRECTORY], some_id, record, key_scope(request))


async def list_events(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    before = after = None
    if page.cursor is not None:
        if not page.cursor.startswith("evt_"):
            raise ApiError("validation_error", f"{page.param} must be an event id", page.param)
        before, after = (None, page.cursor) if page.ascending else (page.cursor, None)
    client = request.app[CLIENT]
    shown: list[Event] = []
    more = True
    while len(shown) < page.limit and more:  # an account key's events are filtered: read on
        found, more = await client.events(page.limit, before, after, q.get("type"), page.ascending)
        for n, (some_id, record) in enumerate(found):
            event = await render_event(request, some_id, record)
            if event is not None:
                shown.append(event)
            if len(shown) == page.limit:
                more = more or n + 1 < len(found)
                break
        if found:
            last = found[-1][0]
            before, after = (before, last) if page.ascending else (last, after)
    return _json(EventList(data=newest_first(shown, page), has_more=more))


async def get_event(request: web.Request) -> web.Response:
    """One event, read at the journal position its id carries."""
    some_id, client = request.match_info["id"], request.app[CLIENT]
    event = None
    if EVENT_ID.match(some_id) and (source := some_id[17:20]) in client.event_sources():
        found = await client.event_peer(source).invoke(EventReads.events_after, event_seq(some_id) - 1, 1)
        if found and found[0][1] == some_id:
            event = await render_event(request, some_id, found[0][2])
    if event is None:  # made up, or another account's
        raise ApiError("event_not_found", "no such event")
    return _json(event)


def _json(body: msgspec.Struct) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


async def stream_events(request: web.Request) -> web.StreamResponse:
    q = query(request)
    after = request.headers.get("Last-Event-ID", q.get("after"))
    if after is not None and not EVENT_ID.match(after):
        param = "Last-Event-ID" if "Last-Event-ID" in request.headers else "after"
        raise ApiError("validation_error", f"{param} must be an event id, such as {SAMPLE_EVENT_ID}", param)
    wanted = q.get("type")
    client = request.app[CLIENT]
    positions = await (client.event_positions() if after is None else client.event_positions_after(after))
    lag_ms = request.app[SETTINGS].events_stream_lag_ms
    # X-Accel-Buffering: a proxy in front (nginx) passes each event on as it comes.
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    waiting: list[tuple[str, Record]] = []  # read, not yet old enough to send: a heap by id
    try:
        while True:
            found = await client.events_after(positions, STREAM_PAGE)
            for source, seq, some_id, record in found:
                positions[source] = seq
                heapq.heappush(waiting, (some_id, record))
            ripe = event_id(time.time_ns() // 1_000_000 - lag_ms, "", 0)
            sent = False
            while waiting and waiting[0][0] < ripe:
                some_id, record = heapq.heappop(waiting)
                event = await render_event(request, some_id, record)
                if event is None or (wanted and event.type != wanted):
                    continue
                body = msgspec.json.encode(event).decode()
                await response.write(f"id: {some_id}\nevent: {event.type}\ndata: {body}\n\n".encode())
                sent = True
            if sent:
                quiet_since = loop.time()
            if found:
                continue
            if loop.time() - quiet_since >= STREAM_KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                quiet_since = loop.time()
            await asyncio.sleep(STREAM_POLL_S)
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away
    return response


OPS: list[Op] = [
    Op(
        "GET",
        "/v1/events",
        list_events,
        "Events: every state change, newest first (an account key sees its own)",
        "account",
        response=EventList,
        query={**LIST_Q, "type": EVENT_TYPE_Q},
        rules="starting_after and ending_before are event ids.",
    ),
    Op(
        "GET",
        "/v1/events/{id}",
        get_event,
        "An event (an account key: its own)",
        "account",
        response=Event,
        errors=("event_not_found",),
    ),
    Op(
        "GET",
        "/v1/events/stream",
        stream_events,
        "Events as Server-Sent Events, as they happen; resumable with Last-Event-ID",
        "account",
        response=str,
        media="text/event-stream",
        headers={
            "Last-Event-ID": {
                "type": "string",
                "pattern": EVENT_ID_PATTERN,
                "description": "The id of the last event received: resume after it",
            }
        },
        query={
            "type": EVENT_TYPE_Q,
            "after": {
                "type": "string",
                "pattern": describe_pattern(EVENT_ID_PATTERN, f"an event id such as {SAMPLE_EVENT_ID}"),
                "description": "An event id (evt_…, as GET /v1/events and this stream show them): resume after"
                " that event, as the Last-Event-ID header does (which wins if both are given)",
            },
        },
        rules="Starts at now unless `after` or Last-Event-ID names an event to resume after. Each event is"
        " `id: <event id>`, `event: <type>`, `data: <event JSON>`, sent in id order once half a second old"
        " (the events_stream_lag_ms setting); after a resume an event may come twice (dedupe by id). An idle"
        " stream sends a comment every 15 s.",
    ),
]
