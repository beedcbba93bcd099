"""Money movement at the edge: turn requests into PaymentRequests (refusing bad ones
with an ApiError, before anything moves), run them in one call, render the outcomes.

Shared by single payments, deposits, withdrawals and the batch endpoint, so a batch item
is checked exactly like the same request sent alone.

A payment's trip in the ingress (the process of the coordinator that took the connection;
docs/design.md §4, §6), in the order it runs:

    route       gateway/moves.py `create_payment` (the batch endpoint: gateway/batches.py)
    check       `prepare_payment`: balances exist and are the caller's, amount, quote; its id
                drawn so that it belongs to the coordinator owning its idempotency key
    submit      `answer` hands it to the PaymentBatcher (gateway/batcher.py), which gathers
                concurrent payments into one call per coordinator (LedgerClient.pay_outcomes)
    coordinator this process's own coordinator, as a plain call (another one over Ray):
                `Payments.trip` in actors/coordinator/payments.py goes on to the commit point
    answer      201 with the final outcome, or 202 `pending` past `payment_wait_ms`; `respond`
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections import Counter
from typing import NamedTuple, TypeVar

import msgspec
from aiohttp import web

from actors.clock import now_ms
from actors.registry import Registry
from actors.topology import coordinator_of
from api import render
from gateway.errors import ApiError
from gateway.keys import BATCHER, CLIENT, DIRECTORY, INGRESS, PRINCIPAL, SETTINGS
from gateway.logs import LOGGED_IDS
from gateway.metrics import METRICS
from ledger.ids import make_id
from ledger.messages import PaymentRequest
from ledger.money import AmountError, parse_amount
from ledger.outcomes import Outcome, pending_record
from ledger.records import FxQuote
from ledger.views import SYSTEM_ACCOUNT_ID, SYSTEM_ACCOUNTS, BalanceInfo
from rayledger import schemas

T = TypeVar("T")
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_LEN_MAX = 255


class Prepared(NamedTuple):
    request: PaymentRequest
    exponent: int


class _Entropy:
    """os.urandom read 4 KiB at a time and handed out 10 bytes per id: the same randomness
    without a getrandom system call for every payment."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        self._at += n
        return self._pool[self._at - n : self._at]


_entropy = _Entropy()


def new_id(prefix: str) -> str:
    return make_id(prefix, now_ms(), _entropy.take(10))


def parse_money(text: str, exponent: int, param: str = "amount", *, allow_zero: bool = False) -> int:
    try:
        return parse_amount(text, exponent, allow_zero=allow_zero, name=param)
    except AmountError as exc:
        raise ApiError("invalid_amount", str(exc), param) from None


def key_scope(request: web.Request) -> str:
    """Whose Idempotency-Keys these are: "admin", or the calling key's account."""
    principal = request[PRINCIPAL]
    return "admin" if principal.admin else str(principal.account_id)


def idempotency_key(request: web.Request, client_key: str | None = None) -> str | None:
    """The caller-scoped key ("<principal>:<key>"), from the header or a batch item."""
    key = client_key if client_key is not None else request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    check_key_length(key)
    return scoped_key(request, key)


def check_key_length(key: str) -> None:
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_LEN_MAX:
        raise ApiError("validation_error", "Idempotency-Key must be 1 to 255 characters", IDEMPOTENCY_HEADER)


def scoped_key(request: web.Request, key: str) -> str:
    """Keys are per caller: an account key's keys never meet the admin's or another's."""
    return f"{key_scope(request)}:{key}"


def fingerprint(request: web.Request, body: msgspec.Struct) -> bytes:
    """Same key, same fingerprint -> replay; different -> 409. Canonical: the decoded body
    re-encoded, so key order and whitespace do not matter."""
    h = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    h.update(msgspec.json.encode(body))
    return h.digest()[:16]


def payment_id_for(request: web.Request, key: str | None, prefix: str = "pay") -> str:
    """A fresh id owned by the coordinator that owns `key` (an idempotency key or a hold
    id), so the check and the payment meet in one actor; without a key, by the coordinator
    serving this request, so the payment needs no Ray hop to its coordinator (expected
    `coordinators` draws)."""
    coordinators = request.app[SETTINGS].coordinators
    owner = request.app[INGRESS] if key is None else coordinator_of(key, coordinators)
    while True:
        payment_id = new_id(prefix)
        if coordinators == 1 or coordinator_of(payment_id, coordinators) == owner:
            return payment_id


async def balance_or_404(request: web.Request, balance_id: str, param: str) -> BalanceInfo:
    directory = request.app[DIRECTORY]
    info = directory.known(balance_id)  # a batch's items find theirs here (create_batch)
    if info is not None:
        return info
    [info] = await directory.balances([balance_id])
    if info is None:
        raise ApiError("balance_not_found", f"no such balance: {balance_id}", param)
    return info


def _owns(request: web.Request, info: BalanceInfo) -> bool:
    principal = request[PRINCIPAL]
    return principal.admin or principal.account_id == info.account_id


async def prepare_payment(
    request: web.Request,
    body: schemas.PaymentCreate | schemas.TransferLegCreate,
    key: str | None,
    fp: bytes | None,
    owner_id: str | None = None,
) -> Prepared:
    """The checks every payment passes; its id is owned by the coordinator of `key`, or of
    `owner_id` (a transfer's legs go with their transfer)."""
    known = prepare_known(request, body, key, fp, owner_id)
    if known is not None:
        return known
    if body.balance_from == body.balance_to:
        raise ApiError("same_balance", "a payment needs two different balances", "balance_to")
    source = await balance_or_404(request, body.balance_from, "balance_from")
    if not _owns(request, source):  # exactly what a made-up id gets: existence does not leak
        raise ApiError("balance_not_found", f"no such balance: {body.balance_from}", "balance_from")
    target = await balance_or_404(request, body.balance_to, "balance_to")
    exponent = request.app[DIRECTORY].known_exponent(source.currency)
    if exponent is None:
        exponent = await request.app[DIRECTORY].exponent(source.currency)
    amount_minor = _checked(request, body, source, target, exponent)
    fx = None
    if body.quote_id is not None:  # fetched once every other check has passed, as those errors come first
        fx = await request.app[CLIENT].registry.invoke(Registry.get_quote, body.quote_id)
        if fx is None:
            raise ApiError("quote_not_found", "no such quote (a quote is forgotten a day after it expires)", "quote_id")
        if (fx.balance_from, fx.balance_to, fx.amount_from_minor) != (source.id, target.id, amount_minor):
            raise ApiError("validation_error", "an exchange payment has its quote's balances and amount", "quote_id")
    return _prepared(request, body, source, target, exponent, amount_minor, fx, key, fp, owner_id)


def prepare_known(
    request: web.Request,
    body: schemas.PaymentCreate | schemas.TransferLegCreate,
    key: str | None,
    fp: bytes | None,
    owner_id: str | None = None,
) -> Prepared | None:
    """`prepare_payment` without an await, when the directory holds both balances and the
    currency and there is no quote to fetch (a batch's items, once their balances are looked
    up together); None if something must be fetched first."""
    directory = request.app[DIRECTORY]
    source, target = directory.known(body.balance_from), directory.known(body.balance_to)
    if source is None or target is None or body.quote_id is not None:
        return None
    exponent = directory.known_exponent(source.currency)
    if exponent is None:
        return None
    amount_minor = _checked(request, body, source, target, exponent)
    return _prepared(request, body, source, target, exponent, amount_minor, None, key, fp, owner_id)


def _checked(
    request: web.Request,
    body: schemas.PaymentCreate | schemas.TransferLegCreate,
    source: BalanceInfo,
    target: BalanceInfo,
    exponent: int,
) -> int:
    """The checks, in the order their errors take precedence, once the balances and the
    currency are at hand (a quote's come after them); the amount in minor units."""
    if body.balance_from == body.balance_to:
        raise ApiError("same_balance", "a payment needs two different balances", "balance_to")
    if not _owns(request, source):  # exactly what a made-up id gets: existence does not leak
        raise ApiError("balance_not_found", f"no such balance: {body.balance_from}", "balance_from")
    if source.account_id in SYSTEM_ACCOUNTS or target.account_id in SYSTEM_ACCOUNTS:
        side = "balance_from" if source.account_id in SYSTEM_ACCOUNTS else "balance_to"
        raise ApiError(
            "validation_error", "issuer and FX liquidity balances move money only by deposits and withdrawals", side
        )
    return parse_money(body.amount, exponent)


def _prepared(
    request: web.Request,
    body: schemas.PaymentCreate | schemas.TransferLegCreate,
    source: BalanceInfo,
    target: BalanceInfo,
    exponent: int,
    amount_minor: int,
    fx: FxQuote | None,
    key: str | None,
    fp: bytes | None,
    owner_id: str | None,
) -> Prepared:
    payment = PaymentRequest(
        payment_id=payment_id_for(request, owner_id or key),
        balance_from=source.id,
        balance_to=target.id,
        amount_minor=amount_minor,
        currency=source.currency,
        created_at_ms=now_ms(),
        description=getattr(body, "description", None),
        metadata=getattr(body, "metadata", None),
        idempotency_key=key,
        fingerprint=fp,
        fx=fx,
    )
    return Prepared(payment, exponent)


async def prepare_issuer_move(
    request: web.Request,
    body: schemas.DepositCreate | schemas.WithdrawalCreate,
    *,
    deposit: bool,
    key: str | None,
    fp: bytes | None,
) -> Prepared:
    balance_id, amount = body.balance_id, body.amount
    info = await balance_or_404(request, balance_id, "balance_id")
    if info.account_id == SYSTEM_ACCOUNT_ID:
        raise ApiError("validation_error", "an issuer balance cannot pay itself", "balance_id")
    currency = await request.app[DIRECTORY].currency(info.currency)
    assert currency is not None and currency.issuer_balance_id is not None
    issuer = currency.issuer_balance_id
    payment = PaymentRequest(
        payment_id=payment_id_for(request, key),
        balance_from=issuer if deposit else info.id,
        balance_to=info.id if deposit else issuer,
        amount_minor=parse_money(amount, currency.exponent),
        currency=info.currency,
        created_at_ms=now_ms(),
        description=body.description if body.description is not None else "deposit" if deposit else "withdrawal",
        metadata=body.metadata,
        idempotency_key=key,
        fingerprint=fp,
    )
    return Prepared(payment, currency.exponent)


def _wake(waiter: asyncio.Future[None], *_: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def finished_within(future: asyncio.Future[T], timeout_s: float) -> bool:
    """Whether `future` is done within `timeout_s`; it goes on either way (nothing to
    cancel or shield). What asyncio.wait does for one future, without its sets and task."""
    if not future.done():
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        wake = functools.partial(_wake, waiter)
        timer = loop.call_later(timeout_s, wake)
        future.add_done_callback(wake)
        try:
            await waiter
        finally:
            timer.cancel()
            future.remove_done_callback(wake)
    return future.done()


class Answer(NamedTuple):
    status: int  # 201 final, 202 pending, 409 key reused, 503 retry
    body: msgspec.Struct
    replayed: bool


async def answer(request: web.Request, prepared: list[Prepared]) -> list[Answer]:
    """Run every payment in one call; those not final within the wait limit answer 202
    `pending` and are decided in the background."""
    answered = request.app[BATCHER].submit([p.request for p in prepared])
    if not await finished_within(answered, request.app[SETTINGS].payment_wait_ms / 1000):
        # It settles in the background; its failure, if any, is the batcher's to log.
        answered.add_done_callback(lambda f: f.cancelled() or f.exception())
        return [
            Answer(202, render.payment(pending_record(p.request), p.exponent, key_scope(request)), False)
            for p in prepared
        ]
    outcomes: list[Outcome] = answered.result()
    answers = []
    paid: Counter[str] = Counter()
    viewer = key_scope(request)
    for p, outcome in zip(prepared, outcomes, strict=True):
        if outcome.conflict:
            error = ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
            answers.append(Answer(409, error.problem(), False))
            continue
        if outcome.refused == "unavailable":
            error = ApiError("unavailable", "a journal cannot be written now; nothing moved; retry later")
            answers.append(Answer(503, error.problem(), False))
            continue
        assert outcome.payment is not None
        if not outcome.replayed:
            paid[outcome.payment.status] += 1
        request[LOGGED_IDS].append(outcome.payment.id)
        status = 202 if outcome.payment.status == "pending" else 201
        answers.append(Answer(status, render.payment(outcome.payment, p.exponent, viewer), outcome.replayed))
    for status, count in paid.items():  # once per status, not per payment
        request.app[METRICS].paid(status, count)
    return answers


def respond(result: Answer) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if result.status == 503:
        headers["Retry-After"] = "1"
    content_type = "application/problem+json" if result.status >= 400 else "application/json"
    return web.Response(
        body=msgspec.json.encode(result.body), status=result.status, content_type=content_type, headers=headers
    )
