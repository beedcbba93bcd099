"""How every list of the API pages: the checked query, the page it asks for (limit and one
cursor), id ranges for cursors and creation times, one page merged out of several
sub-lists, and which balances a caller's list of payments, holds or transfers is about.

Shared by every concern's list handlers, so that all lists page and refuse cursors alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from aiohttp import web

from actors.registry import Registry
from gateway.common import can_read_account, principal, touches_own_balance
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY, QUERY
from ledger.ids import make_id
from ledger.records import HoldRecord, PaymentRecord, TransferRecord
from ledger.views import SYSTEM_ACCOUNT_ID

T = TypeVar("T")


def query(request: web.Request) -> dict[str, Any]:
    """The query parameters, checked against the operation's declaration."""
    return request.get(QUERY, {})  # type: ignore[no-any-return]


class Page(NamedTuple):
    limit: int
    cursor: str | None  # starting_after or ending_before, whichever was given
    param: str  # which
    ascending: bool  # ending_before: the page just newer than the cursor


def page_of(request: web.Request) -> Page:
    q = query(request)
    if "starting_after" in q and "ending_before" in q:
        raise ApiError("validation_error", "give starting_after or ending_before, not both", "ending_before")
    if "ending_before" in q:
        return Page(q.get("limit", 20), q["ending_before"], "ending_before", True)
    return Page(q.get("limit", 20), q.get("starting_after"), "starting_after", False)


def unknown_cursor(page: Page) -> ApiError:
    return ApiError("validation_error", f"{page.param} must be the id of an item in this list", page.param)


def id_bounds(request: web.Request, page: Page, prefix: str) -> tuple[str | None, str | None]:
    """(before_id, after_id) for the cursor and the created_gte/created_lt range: ids
    begin with their creation time, so a time range is an id range."""
    q = query(request)
    before = after = None
    if page.cursor is not None:
        before, after = (None, page.cursor) if page.ascending else (page.cursor, None)
    if "created_lt" in q:
        floor = make_id(prefix, q["created_lt"], bytes(10))  # below every id made at that ms
        before = floor if before is None else min(before, floor)
    if "created_gte" in q:
        # Just below every id made at that ms (an id with 80 zero random bits aside).
        floor = make_id(prefix, q["created_gte"], bytes(10))
        after = floor if after is None else max(after, floor)
    return before, after


def newest_first(items: list[T], page: Page) -> list[T]:
    return items[::-1] if page.ascending else items


class _HasId(Protocol):
    id: str


R = TypeVar("R", bound=_HasId)


def merged_page(pages: Sequence[tuple[list[R], bool]], page: Page) -> tuple[list[R], bool]:
    """One page out of the pages of several sub-lists (balances, coordinators), each in
    the page's order: (the page newest first, whether there is more that way)."""
    merged = {x.id: x for found, _ in pages for x in found}
    ordered = sorted(merged.values(), key=lambda x: x.id, reverse=not page.ascending)
    return newest_first(ordered[: page.limit], page), len(ordered) > page.limit or any(more for _, more in pages)


def page_by_key(items: Sequence[T], keys: Sequence[str], page: Page) -> tuple[Sequence[T], bool]:
    """A page of a short list held whole, in key order (currencies by code, rates by pair):
    the cursor is a key; (the page, whether there are more that way)."""
    start, end = 0, len(items)
    if page.cursor is not None:
        if page.cursor not in keys:
            raise unknown_cursor(page)
        at = list(keys).index(page.cursor)
        start, end = (max(0, at - page.limit), at) if page.ascending else (at + 1, len(items))
    shown = items[start:end] if page.ascending else items[start : start + page.limit]
    return shown, (start > 0) if page.ascending else (start + page.limit < len(items))


async def listed_balances(request: web.Request) -> list[str | None]:
    """The balances a list of payments or holds is about: `?balance=`, the balances of
    `?account=` (or of the calling account key), or every balance (None) for the admin.
    What the caller may not see answers as if it did not exist."""
    q, who, client = query(request), principal(request), request.app[CLIENT]
    if "balance" in q:
        [info] = await request.app[DIRECTORY].balances([q["balance"]])
        if info is None or not can_read_account(request, info.account_id):
            raise ApiError("balance_not_found", "no such balance", "balance")
        if "account" in q and info.account_id != q["account"]:
            return []  # that balance is not the account's: nothing matches both
        return [info.id]
    if who.admin and "account" not in q:
        return [None]
    account_id = q.get("account", who.account_id)
    account = await client.registry.invoke(Registry.get_account, account_id)
    if account is None or account_id == SYSTEM_ACCOUNT_ID or not can_read_account(request, account_id):
        raise ApiError("account_not_found", "no such account", "account")
    return list(account.balance_ids)


async def require_visible_cursor(
    request: web.Request,
    page: Page,
    fetch: Callable[[str], Awaitable[PaymentRecord | HoldRecord | TransferRecord | None]],
) -> None:
    """A payment, hold or transfer list's cursor must be one the caller could list (else 422)."""
    if page.cursor is not None:
        cursor = await fetch(page.cursor)
        if cursor is None or not await touches_own_balance(request, cursor):
            raise unknown_cursor(page)
