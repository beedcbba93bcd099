"""Request handlers: decode, check, call the actors, render. A few lines each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec
from aiohttp import web

from actors.coordinator import REFUNDS_PER_PAYMENT_MAX
from actors.registry import Registry
from actors.shard import BalanceShard
from actors.topology import partition_of
from api import render
from gateway import creates, payments
from gateway.auth import Principal, new_account_token
from gateway.errors import RETRY_AFTER_S, ApiError
from gateway.inputs import decode_body
from gateway.keys import AUTH, BATCHER, CLIENT, DIRECTORY, PRINCIPAL, QUERY, SEAL_KEY, SETTINGS
from gateway.metrics import METRICS
from ledger.ids import HOLD_PREFIX, make_id
from ledger.messages import HoldRequest, PaymentQuery, PaymentRequest
from ledger.money import format_amount
from ledger.outcomes import Outcome, pending_record
from ledger.records import Answered, HoldRecord, PaymentRecord, TransferRecord
from ledger.results import Check
from ledger.views import SYSTEM_ACCOUNT_ID, SYSTEM_ACCOUNTS, BalanceInfo
from rayledger import schemas

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

READY_TIMEOUT_S = 2.0
KEY_PREFIX_LEN = 8  # "rlk_" and four characters: enough to tell keys apart, far too few to use


def json_response(
    body: msgspec.Struct | dict[str, object], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json", headers=headers)


async def decode(request: web.Request, type_: type[T]) -> T:
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type", "send the body as application/json")
    return decode_body(await request.read(), type_)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def can_read_account(request: web.Request, account_id: str) -> bool:
    p = principal(request)
    return p.admin or p.account_id == account_id


# -- operations ---------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return json_response(schemas.Health("ok"))


async def readyz(request: web.Request) -> web.Response:
    try:
        status = await asyncio.wait_for(request.app[CLIENT].status(), READY_TIMEOUT_S)
    except Exception as exc:  # a timeout, a dead actor: not ready either way
        return _not_ready(f"actors not ready: {type(exc).__name__}")
    unwritable = [s["shard"] for s in status["shards"] if not s["writable"]]
    if unwritable:
        return _not_ready(f"journal not writable on shards {unwritable}")
    return json_response(schemas.Health("ready"))


def _not_ready(reason: str) -> web.Response:
    response = json_response(schemas.Health("unavailable", reason), 503)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)  # as every 503 of the API says when to come back
    return response


# -- currencies ---------------------------------------------------------------------------
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


async def list_currencies(request: web.Request) -> web.Response:
    """By code (a currency has no creation order worth paging by); the cursor is a code."""
    views = await request.app[CLIENT].registry.invoke(Registry.currencies)
    shown, has_more = page_by_key(views, [v.code for v in views], page_of(request))
    data = [schemas.Currency(v.code, v.exponent, v.name, v.custom) for v in shown]
    return json_response(schemas.CurrencyList(data=data, has_more=has_more))


# -- currency exchange ----------------------------------------------------------------------
RATE_SIGNIFICANT_DIGITS_MAX = 12


async def set_fx_rate(request: web.Request) -> web.Response:
    body = await decode(request, schemas.FxRatePut)
    base, quote = request.match_info["base"], request.match_info["quote"]
    if base == quote:
        raise ApiError("validation_error", "a rate is between two different currencies", "quote")
    if len(Decimal(body.rate).normalize().as_tuple().digits) > RATE_SIGNIFICANT_DIGITS_MAX:
        raise ApiError(
            "validation_error", f"rate has more than {RATE_SIGNIFICANT_DIGITS_MAX} significant digits", "rate"
        )
    result = await request.app[CLIENT].registry.invoke(Registry.set_rate, base, quote, body.rate)
    if result == "unknown_currency":
        raise ApiError("unknown_currency", f"no such currency: {base} or {quote}", "base")
    return json_response(render.fx_rate(result))


async def list_fx_rates(request: web.Request) -> web.Response:
    """By pair; the cursor is "BASE/QUOTE"."""
    rates = await request.app[CLIENT].registry.invoke(Registry.fx_rates)
    shown, has_more = page_by_key(rates, [f"{r.base}/{r.quote}" for r in rates], page_of(request))
    return json_response(schemas.FxRateList(data=[render.fx_rate(r) for r in shown], has_more=has_more))


async def create_quote(request: web.Request) -> web.Response:
    body = await decode(request, schemas.FxQuoteCreate)
    move = schemas.PaymentCreate(body.balance_from, body.balance_to, body.amount)
    prepared = await payments.prepare_payment(request, move, None, None)  # a payment's checks
    source, target = await request.app[DIRECTORY].balances([body.balance_from, body.balance_to])
    assert source is not None and target is not None
    if source.currency == target.currency:
        raise ApiError("validation_error", f"both balances hold {source.currency}: no exchange to quote", "balance_to")
    expires_at_ms = payments.now_ms() + body.expires_in_s * 1000
    quote = await request.app[CLIENT].registry.invoke(
        Registry.create_quote, payments.new_id("fxq"), source, target, prepared.request.amount_minor, expires_at_ms
    )
    if quote == "no_rate":
        raise ApiError("conflict", f"no exchange rate between {source.currency} and {target.currency}")
    if quote == "too_small":
        raise ApiError(
            "invalid_amount", f"the amount converts to less than one minor unit of {target.currency}", "amount"
        )
    if quote == "too_large":
        raise ApiError("invalid_amount", "the amount converts to more than a balance can hold", "amount")
    return json_response(render.quote(quote), 201)


async def get_quote(request: web.Request) -> web.Response:
    """A quote, for a day after it expires; an account key sees the quotes from its balances."""
    quote = await request.app[CLIENT].registry.invoke(Registry.get_quote, request.match_info["id"])
    if quote is not None and not principal(request).admin:
        [source] = await request.app[DIRECTORY].balances([quote.balance_from])
        quote = quote if source is not None and can_read_account(request, source.account_id) else None
    if quote is None:  # another account's quote reads as a made-up id does
        raise ApiError("quote_not_found", "no such quote (a quote is forgotten a day after it expires)")
    return json_response(render.quote(quote))


async def list_liquidity(request: web.Request) -> web.Response:
    """The FX account's balances, by currency; the cursor is a balance id."""
    infos = await request.app[CLIENT].registry.invoke(Registry.liquidity_balances)
    shown, has_more = page_by_key(infos, [i.id for i in infos], page_of(request))
    data = await _render_balances(request, list(shown))
    return json_response(schemas.BalanceList(data=data, has_more=has_more))


async def get_currency(request: web.Request) -> web.Response:
    view = await request.app[DIRECTORY].currency(request.match_info["code"])
    if view is None:
        raise ApiError("currency_not_found", "no such currency")
    return json_response(schemas.Currency(view.code, view.exponent, view.name, view.custom, view.issuer_balance_id))


# -- accounts and balances ----------------------------------------------------------------
async def create_account(request: web.Request) -> web.Response:
    body = await decode(request, schemas.AccountCreate)
    idem, key = creates.idem_of(request, body)
    info = await request.app[CLIENT].registry.invoke(Registry.create_account, body.email, body.metadata, idem)
    if isinstance(info, Answered):
        return await creates.replay(request, idem, key, info)  # type: ignore[arg-type]
    if info is None:
        raise ApiError("email_taken", "an account with this email exists", "email")
    return json_response(render.account(info, []), 201)


async def _render_balances(request: web.Request, infos: list[BalanceInfo]) -> list[schemas.Balance]:
    views = await request.app[CLIENT].get_balances([i.id for i in infos])
    out = []
    for info, view in zip(infos, views, strict=True):
        assert view is not None, f"balance {info.id} is in the directory but not on its shard"
        out.append(render.balance(info, view, await request.app[DIRECTORY].exponent(info.currency)))
    return out


async def get_account(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    info = await request.app[CLIENT].registry.invoke(Registry.get_account, account_id)
    # Another account's existence is not revealed to an account token: 404, not 403.
    if info is None or account_id == SYSTEM_ACCOUNT_ID or not can_read_account(request, account_id):
        raise ApiError("account_not_found", "no such account")
    infos = [i for i in await request.app[DIRECTORY].balances(info.balance_ids) if i is not None]
    return json_response(render.account(info, await _render_balances(request, infos)))


async def create_balance(request: web.Request) -> web.Response:
    body = await decode(request, schemas.BalanceCreate)
    currency = await request.app[DIRECTORY].currency(body.currency)
    if currency is None:
        raise ApiError("unknown_currency", f"unknown currency {body.currency!r}", "currency")
    limit = payments.parse_money(body.overdraft_limit, currency.exponent, "overdraft_limit", allow_zero=True)
    idem, key = creates.idem_of(request, body)
    code, info = await request.app[CLIENT].registry.invoke(
        Registry.create_balance, request.match_info["id"], body.currency, limit, idem
    )
    if code == "replay":
        return await creates.replay(request, idem, key, info)  # type: ignore[arg-type]
    if code == "account_not_found":
        raise ApiError("account_not_found", "no such account")
    if code == "account_disabled":
        raise ApiError("account_disabled", "the account is disabled: enable it to open balances")
    if code == "balance_exists":
        raise ApiError("balance_exists", f"the account already has a {body.currency} balance", "currency")
    if code == "unknown_currency":
        raise ApiError("unknown_currency", f"unknown currency {body.currency!r}", "currency")
    assert info is not None
    return json_response((await _render_balances(request, [info]))[0], 201)


async def get_balance(request: web.Request) -> web.Response:
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None or not can_read_account(request, info.account_id):
        raise ApiError("balance_not_found", "no such balance")
    return json_response((await _render_balances(request, [info]))[0])


# -- money movement -----------------------------------------------------------------------
async def _single(request: web.Request, body_type: type[T], deposit: bool | None) -> web.Response:
    body = await decode(request, body_type)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None  # type: ignore[arg-type]
    if deposit is None:
        prepared = await payments.prepare_payment(request, body, key, fp)  # type: ignore[arg-type]
    else:
        prepared = await payments.prepare_issuer_move(request, body, deposit=deposit, key=key, fp=fp)  # type: ignore[arg-type]
    [result] = await payments.settle(request, [prepared])
    return payments.respond(result)


async def create_deposit(request: web.Request) -> web.Response:
    return await _single(request, schemas.DepositCreate, deposit=True)


async def create_withdrawal(request: web.Request) -> web.Response:
    return await _single(request, schemas.WithdrawalCreate, deposit=False)


async def create_payment(request: web.Request) -> web.Response:
    return await _single(request, schemas.PaymentCreate, deposit=None)


async def get_payment(request: web.Request) -> web.Response:
    # Taken before asking the coordinator: the payment's answer may come back (and leave
    # the batcher) while the coordinator is still looking for it, which would be a 404.
    unsettled = request.app[BATCHER].unsettled(request.match_info["id"])
    record = await request.app[CLIENT].get_payment(request.match_info["id"])
    if record is None and unsettled is not None:
        record = pending_record(unsettled)  # answered 202 here; the coordinator has not seen it yet
    if record is None or not await _touches_own_balance(request, record):
        raise ApiError("payment_not_found", "no such payment")
    exponent = await request.app[DIRECTORY].exponent(record.currency)
    body = render.payment(record, exponent, payments.key_scope(request))
    if record.status == "success" and record.refund_of is None:
        refunds = await request.app[CLIENT].refunds_of(record.id)
        refunded = sum(r.amount_minor for r in refunds if r.status == "success")
        if refunded:  # a payment never refunded reads as it was answered
            body = msgspec.structs.replace(body, refunded_amount=format_amount(refunded, exponent))
    return json_response(body)


async def _visible_payment(request: web.Request) -> PaymentRecord:
    record = await request.app[CLIENT].get_payment(request.match_info["id"])
    if record is None or not await _touches_own_balance(request, record):
        raise ApiError("payment_not_found", "no such payment")
    return record


async def create_refund(request: web.Request) -> web.Response:
    body = await _decode_optional(request, schemas.RefundCreate)
    original = await _visible_payment(request)
    payer, receiver = await request.app[DIRECTORY].balances([original.balance_from, original.balance_to])
    if payer is None or receiver is None or {payer.account_id, receiver.account_id} & SYSTEM_ACCOUNTS:
        # A refunded deposit would be a withdrawal by another name (and one an account key may not make).
        raise ApiError("conflict", "deposits and withdrawals are undone by their opposite, not refunded")
    if not can_read_account(request, receiver.account_id):
        raise ApiError("forbidden", "an account key refunds only payments its own balances received")
    exponent = await request.app[DIRECTORY].exponent(original.currency)
    amount = payments.parse_money(body.amount, exponent) if body.amount is not None else 0
    key = payments.idempotency_key(request)
    refund = PaymentRequest(
        payment_id=payments.payment_id_for(request, original.id),  # owned where the original was decided
        balance_from=original.balance_to,
        balance_to=original.balance_from,
        amount_minor=amount,
        currency=original.currency,
        created_at_ms=payments.now_ms(),
        description=body.description if body.description is not None else "refund",
        metadata=body.metadata,
        idempotency_key=key,
        fingerprint=payments.fingerprint(request, body) if key is not None else None,
        refund_of=original.id,
    )
    outcome = await request.app[CLIENT].refund(refund)
    if outcome.refused == "not_refundable":
        raise ApiError("conflict", "only a successful payment, not itself a refund nor an exchange, can be refunded")
    if outcome.refused == "refund_exceeds_payment":
        raise await _refund_refusal(request, original, exponent, body.amount is not None)
    return _outcome_response(request, outcome, exponent, 201)


async def _refund_refusal(request: web.Request, original: PaymentRecord, exponent: int, amount_given: bool) -> ApiError:
    """refund_exceeds_payment, saying how much is left: a client told "fully refunded"
    stops retrying, one told what is left can ask for that."""
    refunds = await request.app[CLIENT].refunds_of(original.id)
    left = original.amount_minor - sum(r.amount_minor for r in refunds if r.status == "success")
    param = "amount" if amount_given else None
    if left <= 0:
        return ApiError("refund_exceeds_payment", "the payment is fully refunded: nothing is left to refund", param)
    if len(refunds) >= REFUNDS_PER_PAYMENT_MAX:
        return ApiError("refund_exceeds_payment", f"a payment has at most {REFUNDS_PER_PAYMENT_MAX} refunds", param)
    detail = f"the refunds would add up to more than the payment: {format_amount(left, exponent)} is left to refund"
    return ApiError("refund_exceeds_payment", detail, param)


async def list_refunds(request: web.Request) -> web.Response:
    original = await _visible_payment(request)
    exponent = await request.app[DIRECTORY].exponent(original.currency)
    refunds = await request.app[CLIENT].refunds_of(original.id)
    data = [render.payment(r, exponent, payments.key_scope(request)) for r in refunds]
    return json_response(schemas.PaymentList(data=data, has_more=False))


async def _touches_own_balance(request: web.Request, record: PaymentRecord | HoldRecord | TransferRecord) -> bool:
    if principal(request).admin:
        return True
    if isinstance(record, TransferRecord):
        sides = [b for leg in record.legs for b in (leg.balance_from, leg.balance_to)]
    else:
        sides = [b for b in (record.balance_from, record.balance_to) if b]
    infos = await request.app[DIRECTORY].balances(list(dict.fromkeys(sides)))
    return any(i is not None and can_read_account(request, i.account_id) for i in infos)


# -- API keys -------------------------------------------------------------------------------
async def create_key(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    token, digest = new_account_token()
    idem, key = creates.idem_of(request, None)
    if idem is not None and key is not None:
        idem = msgspec.structs.replace(idem, sealed=creates.seal(request.app[SEAL_KEY], key, token))
    key_id = await request.app[CLIENT].registry.invoke(
        Registry.create_key, account_id, digest, idem, token[:KEY_PREFIX_LEN]
    )
    if isinstance(key_id, Answered):
        return await creates.replay(request, idem, key, key_id)  # type: ignore[arg-type]
    if key_id is None:
        raise ApiError("account_not_found", "no such account")
    return json_response(schemas.ApiKey(key_id, account_id, token), 201)


async def list_keys(request: web.Request) -> web.Response:
    page = page_of(request)
    account_id = request.match_info["id"]
    registry = request.app[CLIENT].registry
    before, after = id_bounds(request, page, "key")
    found = await registry.invoke(Registry.list_keys, account_id, page.limit + 1, before, after, page.ascending)
    if found is None:
        raise ApiError("account_not_found", "no such account")
    if page.cursor is not None:
        cursor = await registry.invoke(Registry.key_view, page.cursor)
        if cursor is None or cursor.account_id != account_id:
            raise unknown_cursor(page)
    data = [
        schemas.KeyListed(k.id, k.account_id, k.prefix, render.timestamp(k.created_at_ms))
        for k in newest_first(found[: page.limit], page)
    ]
    return json_response(schemas.KeyList(data=data, has_more=len(found) > page.limit))


async def revoke_key(request: web.Request) -> web.Response:
    revoked = await request.app[CLIENT].registry.invoke(Registry.revoke_key, request.match_info["id"])
    request.app[AUTH].forget_keys()
    if not revoked:
        raise ApiError("key_not_found", "no such key")
    return web.Response(status=204)


# -- lists ----------------------------------------------------------------------------------
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


async def list_accounts(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    if page.cursor is not None and await request.app[CLIENT].registry.invoke(Registry.get_account, page.cursor) is None:
        raise unknown_cursor(page)
    active = None if "status" not in q else q["status"] == "active"
    before, after = id_bounds(request, page, "acc")
    infos = await request.app[CLIENT].registry.invoke(
        Registry.list_accounts, active, page.limit + 1, before, after, page.ascending, q.get("email")
    )
    shown = newest_first(infos[: page.limit], page)
    balance_infos = [i for i in await request.app[DIRECTORY].balances([b for a in shown for b in a.balance_ids]) if i]
    rendered = {b.id: b for b in await _render_balances(request, balance_infos)}
    data = [render.account(a, [rendered[b] for b in a.balance_ids if b in rendered]) for a in shown]
    return json_response(schemas.AccountList(data=data, has_more=len(infos) > page.limit))


async def patch_account(request: web.Request) -> web.Response:
    try:
        body = await decode(request, schemas.AccountPatch)
    except ApiError as refused:
        if refused.param == "email":  # not a field to change: say why rather than "not a field"
            raise ApiError("validation_error", "an account's email is immutable", "email") from None
        raise
    account_id = request.match_info["id"]
    active = None if body.status is None else body.status == "active"
    set_metadata = body.metadata is not msgspec.UNSET
    info = await request.app[CLIENT].registry.invoke(
        Registry.update_account, account_id, active, body.metadata if set_metadata else None, set_metadata=set_metadata
    )
    if info is None:
        raise ApiError("account_not_found", "no such account")
    infos = [i for i in await request.app[DIRECTORY].balances(info.balance_ids) if i is not None]
    return json_response(render.account(info, await _render_balances(request, infos)))


async def patch_balance(request: web.Request) -> web.Response:
    body = await decode(request, schemas.BalancePatch)
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None:
        raise ApiError("balance_not_found", "no such balance")
    if info.account_id == SYSTEM_ACCOUNT_ID:
        raise ApiError("validation_error", "issuer balances cannot be changed")
    exponent = await request.app[DIRECTORY].exponent(info.currency)
    limit = None
    if body.overdraft_limit is not None:
        limit = payments.parse_money(body.overdraft_limit, exponent, "overdraft_limit", allow_zero=True)
    active = None if body.status is None else body.status == "active"
    code = await request.app[CLIENT].registry.invoke(Registry.change_balance, info.id, active, limit)
    if code == Check.NOT_ENOUGH_MONEY:
        raise ApiError("conflict", "the balance already uses more than that overdraft limit", "overdraft_limit")
    assert code == Check.OK, code
    return json_response((await _render_balances(request, [info]))[0])


def entry_id(partition: int, seq: int) -> str:
    """A statement line's id: where it is in its partition's journal, which never changes."""
    return f"ent_{partition << 48 | seq:016x}"


def entry_seq(some_id: str, partition: int) -> int | None:
    if not (some_id.startswith("ent_") and len(some_id) == 20):
        return None
    try:
        value = int(some_id[4:], 16)
    except ValueError:
        return None
    return value & (2**48 - 1) if value >> 48 == partition else None


async def list_entries(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    [info] = await request.app[DIRECTORY].balances([request.match_info["id"]])
    if info is None or not can_read_account(request, info.account_id):
        raise ApiError("balance_not_found", "no such balance")
    client = request.app[CLIENT]
    shard = client.shard(client.shard_for(info.id))
    partition = partition_of(info.id, request.app[SETTINGS].partitions)
    before = after = None
    if page.cursor is not None:  # an entry's id, or (as in API 1.0) its payment's id
        paid_by = page.cursor if page.cursor.startswith("pay_") else None
        seq = entry_seq(page.cursor, partition) if paid_by is None else None
        if paid_by is None and seq is None:
            raise unknown_cursor(page)
        seq = await shard.invoke(BalanceShard.entry_seq, info.id, seq, paid_by)
        if seq is None:
            raise unknown_cursor(page)
        before, after = (None, seq) if page.ascending else (seq, None)
    entries = await shard.invoke(
        BalanceShard.entries,
        info.id,
        page.limit + 1,
        before,
        after,
        page.ascending,
        q.get("created_gte"),
        q.get("created_lt"),
    )
    exponent = await request.app[DIRECTORY].exponent(info.currency)
    shown = newest_first(entries[: page.limit], page)
    # The other side and the description are the payment's: joined here, on the read path,
    # rather than carried by every posted leg on the payment path.
    paid = await asyncio.gather(*(client.get_payment(e.payment_id) for e in shown))
    data = []
    for e, p in zip(shown, paid, strict=True):
        other = None if p is None else p.balance_to if p.balance_from == info.id else p.balance_from
        data.append(
            schemas.Entry(
                id=entry_id(partition, e.seq),
                payment_id=e.payment_id,
                amount=format_amount(e.delta_minor, exponent),
                balance_after=format_amount(e.balance_after_minor, exponent),
                created_at=render.timestamp(e.at_ms),
                counterparty_balance_id=other,
                description=None if p is None else p.description,
                transfer_id=None if p is None else p.transfer_id,
            )
        )
    return json_response(schemas.EntryList(data=data, has_more=len(entries) > page.limit))


async def _listed_balances(request: web.Request) -> list[str | None]:
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


async def _require_visible_cursor(
    request: web.Request,
    page: Page,
    fetch: Callable[[str], Awaitable[PaymentRecord | HoldRecord | TransferRecord | None]],
) -> None:
    """A payment, hold or transfer list's cursor must be one the caller could list (else 422)."""
    if page.cursor is not None:
        cursor = await fetch(page.cursor)
        if cursor is None or not await _touches_own_balance(request, cursor):
            raise unknown_cursor(page)


async def list_payments(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    client = request.app[CLIENT]
    balances = await _listed_balances(request)
    await _require_visible_cursor(request, page, client.get_payment)
    key = payments.idempotency_key(request, q["idempotency_key"]) if "idempotency_key" in q else None
    before, after = id_bounds(request, page, "pay")
    base = PaymentQuery(page.limit, None, q.get("status"), key, before, after, page.ascending)
    pages = await asyncio.gather(*(client.list_payments(msgspec.structs.replace(base, balance_id=b)) for b in balances))
    shown, has_more = merged_page(pages, page)
    scope = payments.key_scope(request)
    data = [render.payment(p, await request.app[DIRECTORY].exponent(p.currency), scope) for p in shown]
    return json_response(schemas.PaymentList(data=data, has_more=has_more))


# -- currencies (admin) ---------------------------------------------------------------------
async def create_currency(request: web.Request) -> web.Response:
    body = await decode(request, schemas.CurrencyCreate)
    idem, key = creates.idem_of(request, body)
    view = await request.app[CLIENT].registry.invoke(
        Registry.create_currency, body.code, body.exponent, body.name, idem
    )
    if isinstance(view, Answered):
        return await creates.replay(request, idem, key, view)  # type: ignore[arg-type]
    if view is None:
        raise ApiError("currency_exists", f"currency {body.code} exists", "code")
    view = await request.app[DIRECTORY].currency(body.code)  # creates its issuer balance
    assert view is not None
    return json_response(
        schemas.Currency(view.code, view.exponent, view.name, view.custom, view.issuer_balance_id), 201
    )


# -- batches --------------------------------------------------------------------------------
async def create_batch(request: web.Request) -> web.Response:
    """Each item succeeds or fails alone; results come back in input order.

    An Idempotency-Key header makes the whole batch one replayable unit (contract 1.2).
    Every item without a key of its own is keyed `<header>:<index>`, so each item that ran
    replays its payment. The items refused before running (an unknown balance, say) are
    refused first, then the registry claims the header for this body together with those
    refusals, before any item runs: a replay answers them again (even if the balance exists
    by then), another body under that header is 409 before anything moves. No two items
    share a key: one key for two different payments would answer the second with the first."""
    body = await decode(request, schemas.BatchCreate)
    header = request.headers.get(payments.IDEMPOTENCY_HEADER)
    item_keys = _batch_item_keys(body, header)
    results: list[dict[str, object] | None] = [None] * len(body.payments)
    prepared: dict[int, payments.Prepared] = {}
    for n, (item, item_key) in enumerate(zip(body.payments, item_keys, strict=True)):
        try:
            key = payments.scoped_key(request, item_key) if item_key is not None else None
            fp = payments.fingerprint(request, item) if key is not None else None
            prepared[n] = await payments.prepare_payment(request, item, key, fp)
        except ApiError as error:
            results[n] = msgspec.to_builtins(error.problem())
    replayed = False
    if header is not None:
        idem, _ = creates.idem_of(request, body)
        assert idem is not None
        refused = {n: problem for n, problem in enumerate(results) if problem is not None}
        claimed = await request.app[CLIENT].registry.invoke(Registry.claim_batch, idem, msgspec.msgpack.encode(refused))
        if claimed is not None:
            if claimed.fingerprint != idem.fingerprint:
                raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
            replayed = True
            first = msgspec.msgpack.decode(claimed.refusals or b"\x80", type=dict[int, dict[str, Any]])
            for n, problem in first.items():
                results[n] = problem
                prepared.pop(n, None)
    slots = list(prepared)
    settled = await payments.settle(request, list(prepared.values())) if prepared else []
    for n, answer in zip(slots, settled, strict=True):
        results[n] = msgspec.to_builtins(answer.body)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response(schemas.BatchResult(results=results), headers=headers)  # type: ignore[arg-type]


BATCH_HEADER_KEY_LEN_MAX = payments.IDEMPOTENCY_KEY_LEN_MAX - len(f":{schemas.BATCH_ITEMS_MAX - 1}")


def _batch_item_keys(body: schemas.BatchCreate, header: str | None) -> list[str | None]:
    """Each item's own key, or `<header>:<index>`; 422 naming the second of two items
    that would share one."""
    if header is not None:
        payments.check_key_length(header)
        if len(header) > BATCH_HEADER_KEY_LEN_MAX:
            raise ApiError(
                "validation_error",
                f"a batch's Idempotency-Key must be 1 to {BATCH_HEADER_KEY_LEN_MAX} characters: its items are keyed"
                " <key>:<index>, at most 255",
                payments.IDEMPOTENCY_HEADER,
            )
    keys: list[str | None] = []
    first_of: dict[str, int] = {}
    for n, item in enumerate(body.payments):
        key = item.idempotency_key if item.idempotency_key is not None else None if header is None else f"{header}:{n}"
        if key is not None:
            if key in first_of:
                raise ApiError(
                    "validation_error",
                    f"payments[{n}] has the Idempotency-Key of payments[{first_of[key]}]; each payment needs its own",
                    f"payments[{n}].idempotency_key",
                )
            first_of[key] = n
        keys.append(key)
    return keys


# -- holds ----------------------------------------------------------------------------------
async def _decode_optional(request: web.Request, type_: type[T]) -> T:
    """Capture and void may be sent without a body."""
    if not request.can_read_body:
        return msgspec.json.decode(b"{}", type=type_)
    return await decode(request, type_)


def _outcome_response(request: web.Request, outcome: Outcome, exponent: int, status: int) -> web.Response:
    if outcome.conflict:
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
    if outcome.refused == "unavailable":
        raise ApiError("unavailable", "a journal cannot be written now; nothing moved; retry later")
    if outcome.refused == "not_found" or (outcome.hold is None and outcome.payment is None):
        raise ApiError("hold_not_found", "no such hold")
    if outcome.refused == "not_held":
        assert outcome.hold is not None
        raise ApiError("conflict", f"the hold is {outcome.hold.status}, no longer held")
    if outcome.refused == "amount_exceeds_hold":
        raise ApiError("invalid_amount", "a capture cannot exceed the held amount", "amount")
    assert outcome.refused is None, outcome.refused
    if outcome.payment is not None:
        if not outcome.replayed:  # a capture is a payment like any other, in the metrics too
            request.app[METRICS].paid(outcome.payment.status)
        body: msgspec.Struct = render.payment(outcome.payment, exponent, payments.key_scope(request))
    else:
        assert outcome.hold is not None
        body = render.hold(outcome.hold, exponent)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json", headers=headers)


async def create_hold(request: web.Request) -> web.Response:
    body = await decode(request, schemas.HoldCreate)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    single = schemas.PaymentCreate(body.balance_from, body.balance_to, body.amount)
    prepared = await payments.prepare_payment(request, single, key, fp)  # the same checks as a payment
    p = prepared.request
    hold_request = HoldRequest(
        hold_id=payments.payment_id_for(request, key, prefix=HOLD_PREFIX),
        balance_from=p.balance_from,
        balance_to=p.balance_to,
        amount_minor=p.amount_minor,
        currency=p.currency,
        created_at_ms=p.created_at_ms,
        expires_at_ms=p.created_at_ms + body.expires_in_s * 1000,
        idempotency_key=key,
        fingerprint=fp,
        description=body.description,
        metadata=body.metadata,
    )
    outcome = await request.app[CLIENT].place_hold(hold_request)
    return _outcome_response(request, outcome, prepared.exponent, 201)


async def _own_hold(request: web.Request, *, paying_side: bool) -> HoldRecord:
    hold = await request.app[CLIENT].get_hold(request.match_info["id"])
    if hold is None:
        raise ApiError("hold_not_found", "no such hold")
    sides = [hold.balance_from] if paying_side else [hold.balance_from, hold.balance_to]
    infos = await request.app[DIRECTORY].balances(sides)
    if not any(i is not None and can_read_account(request, i.account_id) for i in infos):
        raise ApiError("hold_not_found", "no such hold")
    return hold


async def list_holds(request: web.Request) -> web.Response:
    page, q = page_of(request), query(request)
    client = request.app[CLIENT]
    balances = await _listed_balances(request)
    await _require_visible_cursor(request, page, client.get_hold)
    before, after = id_bounds(request, page, HOLD_PREFIX)
    pages = await asyncio.gather(
        *(client.list_holds(b, q.get("status"), page.limit, before, after, page.ascending) for b in balances)
    )
    shown, has_more = merged_page(pages, page)
    data = [render.hold(h, await request.app[DIRECTORY].exponent(h.currency)) for h in shown]
    return json_response(schemas.HoldList(data=data, has_more=has_more))


async def get_hold(request: web.Request) -> web.Response:
    hold = await _own_hold(request, paying_side=False)
    return json_response(render.hold(hold, await request.app[DIRECTORY].exponent(hold.currency)))


async def capture_hold(request: web.Request) -> web.Response:
    body = await _decode_optional(request, schemas.HoldCapture)
    hold = await _own_hold(request, paying_side=True)
    exponent = await request.app[DIRECTORY].exponent(hold.currency)
    amount = payments.parse_money(body.amount, exponent) if body.amount is not None else None
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    payment_id = payments.payment_id_for(request, hold.id)
    outcome = await request.app[CLIENT].capture_hold(
        hold.id, amount, payment_id, payments.now_ms(), key, fp, body.final
    )
    return _outcome_response(request, outcome, exponent, 201)


async def void_hold(request: web.Request) -> web.Response:
    body = await _decode_optional(request, schemas.HoldVoid)
    hold = await _own_hold(request, paying_side=True)
    key = payments.idempotency_key(request)
    fp = payments.fingerprint(request, body) if key is not None else None
    outcome = await request.app[CLIENT].void_hold(hold.id, key, fp)
    return _outcome_response(request, outcome, await request.app[DIRECTORY].exponent(hold.currency), 200)
