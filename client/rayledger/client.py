"""The Python client of the rayledger REST API, async (`Client`) and blocking (`SyncClient`).

    async with Client("http://127.0.0.1:8080", token) as ledger:
        alice = await ledger.accounts.create(email="alice@example.com")
        usd = await ledger.balances.create(alice.id, currency="USD")
        await ledger.deposits.create(balance_id=usd.id, amount="100.00")
        async for payment in ledger.payments.list(balance=usd.id):
            print(payment.id, payment.status)

Results are the API's own msgspec types (`rayledger.schemas`). Every POST carries an
Idempotency-Key, generated per call (or given) and sent again on each retry of that call:
timeouts, connection errors and 503 (after its Retry-After) are retried, so a call makes
its payment once even when an answer is lost on the way. Refusals raise `LedgerError`
carrying the problem's `code`, `param` and `status`.

Concurrent `payments.create` calls of the async client travel together (`batching=True`,
the default), as TigerBeetle's clients do: one batch request in flight per client, and
whatever was called while it was out goes as the next one (`POST /v1/payments/batch`,
up to 1000 at a time). Each call keeps its own Idempotency-Key (an item's key), its own
result and its own error; a lone call goes at once, as a batch of one.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import msgspec

from rayledger import schemas

T = TypeVar("T")
RETRIED_STATUSES = frozenset({502, 503, 504})


class LedgerError(Exception):
    """A problem+json answer: `code` is stable (see the API's error codes)."""

    def __init__(self, status: int, code: str, detail: str, param: str | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}" + (f" ({param})" if param else ""))
        self.status, self.code, self.detail, self.param = status, code, detail, param


class Client:
    """`retries`: attempts after the first, for what may be retried; `backoff_s`: the first
    pause, doubling up to `backoff_max_s` (a 503's Retry-After wins)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 6,
        backoff_s: float = 0.1,
        backoff_max_s: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        batching: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retries, self._backoff_s, self._backoff_max_s = retries, backoff_s, backoff_max_s
        self._session, self._own_session = session, session is None
        self.accounts = _Accounts(self)
        self.balances = _Balances(self)
        self.currencies = _Currencies(self)
        self.deposits = _Moves(self, "/v1/deposits")
        self.withdrawals = _Moves(self, "/v1/withdrawals")
        self._batcher = _Batcher(self) if batching else None
        self.payments = _Payments(self, self._batcher)
        self.transfers = _Transfers(self)
        self.holds = _Holds(self)
        self.fx = _Fx(self)
        self.keys = _Keys(self)
        self.events = _Events(self)
        self.webhook_endpoints = _WebhookEndpoints(self)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Calls still waiting to be sent are cancelled; then the connections close."""
        if self._batcher is not None:
            await self._batcher.close()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        type_: type[T],
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        keyed: bool = True,
    ) -> T:
        """One API call, retried as the module says; the answer decoded as `type_`. `body`
        is encoded as JSON unless it is bytes already. `keyed=False`: no Idempotency-Key
        header (a batch whose items carry their own)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = dict(self._headers)
        if keyed and (method == "POST" or idempotency_key is not None):
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        data = body if body is None or isinstance(body, bytes) else msgspec.json.encode(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        delay_s = self._backoff_s
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                async with self._session.request(
                    method, self.base_url + path, data=data, params=query, headers=headers, timeout=self._timeout
                ) as response:
                    raw = await response.read()
                    if response.status in RETRIED_STATUSES and not last:
                        pause = response.headers.get("Retry-After")
                        await asyncio.sleep(float(pause) if pause and pause.isdigit() else delay_s)
                        delay_s = min(delay_s * 2, self._backoff_max_s)
                        continue
                    if response.status >= 400:
                        raise _error(response.status, raw)
                    return msgspec.json.decode(raw, type=type_) if raw else None  # type: ignore[return-value]
            except (aiohttp.ClientConnectionError, TimeoutError):
                if last:
                    raise
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._backoff_max_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def pages(self, path: str, type_: type[Any], params: dict[str, Any]) -> AsyncIterator[Any]:
        """Every item of a list, page after page (`starting_after` the last one seen)."""
        params = {**params}
        while True:
            page = await self.request("GET", path, type_, params=params)
            for item in page.data:
                yield item
            if not page.has_more or not page.data:
                return
            params["starting_after"] = _cursor(page.data[-1])


def _query_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _cursor(item: Any) -> str:
    if isinstance(item, schemas.FxRate):
        return f"{item.base}/{item.quote}"
    return str(getattr(item, "id", None) or item.code)


def _error(status: int, raw: bytes) -> LedgerError:
    try:
        problem = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return LedgerError(status, "http_error", raw[:200].decode(errors="replace"))
    if not isinstance(problem, dict):
        return LedgerError(status, "http_error", str(problem)[:200])
    return _problem_error(problem, status)


def _problem_error(problem: dict[str, Any], status: int | None = None, item: int | None = None) -> LedgerError:
    """A problem+json body (an answer's, or batch item `item`'s) as the error it raises."""
    detail = str(problem.get("detail", ""))
    return LedgerError(
        status or int(problem.get("status", 0)),
        str(problem.get("code", "http_error")),
        detail if item is None else _as_alone(detail, item),
        problem.get("param"),
    )


def _as_alone(detail: str, item: int) -> str:
    """A batch item's problem in the words it has for a payment sent alone."""
    return detail.replace(f"payments[{item}].", "")


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left out (None)."""
    return {k: v for k, v in fields.items() if v is not None}


class _Namespace:
    def __init__(self, client: Client) -> None:
        self._client = client


class _Accounts(_Namespace):
    async def create(
        self, *, email: str, metadata: dict[str, str] | None = None, idempotency_key: str | None = None
    ) -> schemas.Account:
        body = _body(email=email, metadata=metadata)
        return await self._client.request(
            "POST", "/v1/accounts", schemas.Account, body, idempotency_key=idempotency_key
        )

    async def get(self, account_id: str) -> schemas.Account:
        return await self._client.request("GET", f"/v1/accounts/{account_id}", schemas.Account)

    async def update(
        self,
        account_id: str,
        *,
        status: str | None = None,
        metadata: dict[str, str] | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> schemas.Account:
        """Change what is given: `metadata` replaces the account's whole (None: none)."""
        body: dict[str, Any] = _body(status=status)
        if metadata is not msgspec.UNSET:
            body["metadata"] = metadata
        return await self._client.request("PATCH", f"/v1/accounts/{account_id}", schemas.Account, body)

    def list(self, **filters: Any) -> AsyncIterator[schemas.Account]:
        return self._client.pages("/v1/accounts", schemas.AccountList, filters)


class _Balances(_Namespace):
    async def create(
        self,
        account_id: str,
        *,
        currency: str,
        overdraft_limit: str | None = None,
        idempotency_key: str | None = None,
    ) -> schemas.Balance:
        body = _body(currency=currency, overdraft_limit=overdraft_limit)
        path = f"/v1/accounts/{account_id}/balances"
        return await self._client.request("POST", path, schemas.Balance, body, idempotency_key=idempotency_key)

    async def get(self, balance_id: str) -> schemas.Balance:
        return await self._client.request("GET", f"/v1/balances/{balance_id}", schemas.Balance)

    async def update(
        self, balance_id: str, *, status: str | None = None, overdraft_limit: str | None = None
    ) -> schemas.Balance:
        body = _body(status=status, overdraft_limit=overdraft_limit)
        return await self._client.request("PATCH", f"/v1/balances/{balance_id}", schemas.Balance, body)

    def entries(self, balance_id: str, **filters: Any) -> AsyncIterator[schemas.Entry]:
        return self._client.pages(f"/v1/balances/{balance_id}/entries", schemas.EntryList, filters)


class _Currencies(_Namespace):
    async def get(self, code: str) -> schemas.Currency:
        return await self._client.request("GET", f"/v1/currencies/{code}", schemas.Currency)

    async def create(self, *, code: str, exponent: int, name: str) -> schemas.Currency:
        body = {"code": code, "exponent": exponent, "name": name}
        return await self._client.request("POST", "/v1/currencies", schemas.Currency, body)

    def list(self, **filters: Any) -> AsyncIterator[schemas.Currency]:
        return self._client.pages("/v1/currencies", schemas.CurrencyList, filters)


class _Moves(_Namespace):
    """Deposits and withdrawals (admin): payments from or to the currency's issuer."""

    def __init__(self, client: Client, path: str) -> None:
        super().__init__(client)
        self._path = path

    async def create(
        self,
        *,
        balance_id: str,
        amount: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> schemas.Payment:
        body = _body(balance_id=balance_id, amount=amount, description=description, metadata=metadata)
        return await self._client.request("POST", self._path, schemas.Payment, body, idempotency_key=idempotency_key)


class _Call:
    """One `payments.create` call waiting in the batcher: its item (with its key) encoded once."""

    __slots__ = ("delay_s", "future", "item", "retries_left")

    def __init__(self, item: bytes, future: asyncio.Future[schemas.Payment], retries: int, delay_s: float) -> None:
        self.item, self.future, self.retries_left, self.delay_s = item, future, retries, delay_s


class _Batcher:
    """`payments.create` calls coalesced into batch requests, one in flight (module doc).

    A call's item is sent again only to the batch endpoint, with its key: the server then
    sees the same request (same key, same fingerprint) and replays it if it ran. An item
    answered 503 goes again with a later batch, after the pause a lone call would take; a
    batch refused as a whole because of one item (422 naming `payments[n]`) fails that call
    alone and sends the others again."""

    def __init__(self, client: Client, items_max: int = schemas.BATCH_ITEMS_MAX, bytes_max: int = 2**19) -> None:
        self._client = client
        self._items_max, self._bytes_max = items_max, bytes_max  # the server's limits: 1000 items, 1 MiB
        self._queue: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None
        self._waiting: set[asyncio.Task[None]] = set()  # calls pausing before they go again

    async def create(self, body: dict[str, Any], key: str) -> schemas.Payment:
        future: asyncio.Future[schemas.Payment] = asyncio.get_running_loop().create_future()
        item = msgspec.json.encode({**body, "idempotency_key": key})
        self._enqueue(_Call(item, future, self._client._retries, self._client._backoff_s))
        return await future

    async def close(self) -> None:
        for call in self._queue:
            call.future.cancel()
        self._queue.clear()
        tasks = [*self._waiting, *([self._sender] if self._sender is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _enqueue(self, call: _Call) -> None:
        self._queue.append(call)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())

    def _next_batch(self) -> list[_Call]:
        size, n = 0, 0
        for call in self._queue[: self._items_max]:
            size += len(call.item) + 1
            if n and size > self._bytes_max:
                break
            n += 1
        batch, self._queue = self._queue[:n], self._queue[n:]
        return [call for call in batch if not call.future.done()]  # a caller that gave up is not sent

    async def _send(self) -> None:
        while self._queue:
            batch = self._next_batch()
            if not batch:
                continue
            body = b'{"payments":[' + b",".join(call.item for call in batch) + b"]}"
            try:
                answer = await self._client.request("POST", "/v1/payments/batch", _BatchAnswer, body, keyed=False)
            except asyncio.CancelledError:  # the client is closing: so are its calls
                for call in [*batch, *self._queue]:
                    call.future.cancel()
                raise
            except LedgerError as error:
                self._refused(batch, error)
                continue
            except Exception as error:  # no answer after every retry: what a lone call would raise
                for call in batch:
                    _fail(call.future, error)
                continue
            for n, (call, raw) in enumerate(zip(batch, answer.results, strict=True)):
                try:  # a payment, most of the time (a problem has no id: it does not decode as one)
                    paid = _PAYMENT.decode(raw)
                except msgspec.ValidationError:
                    problem = msgspec.json.decode(raw)
                    if problem.get("status") in RETRIED_STATUSES and call.retries_left:
                        self._again_later(call)
                    else:
                        _fail(call.future, _problem_error(problem, item=n))
                    continue
                if not call.future.done():
                    call.future.set_result(paid)

    def _refused(self, batch: list[_Call], error: LedgerError) -> None:
        """A batch refused as a whole: one item's fault (its call fails, the rest go again
        first), or everyone's (a lone call would have been refused too)."""
        at = _ITEM_PARAM.match(error.param or "")
        if at is None or int(at[1]) >= len(batch):
            for call in batch:
                _fail(call.future, error)
            return
        n = int(at[1])
        _fail(batch[n].future, LedgerError(error.status, error.code, _as_alone(error.detail, n), at[2] or None))
        self._queue[:0] = batch[:n] + batch[n + 1 :]

    def _again_later(self, call: _Call) -> None:
        async def pause() -> None:
            try:
                await asyncio.sleep(call.delay_s)
            except asyncio.CancelledError:  # the client is closing
                call.future.cancel()
                raise
            call.retries_left -= 1
            call.delay_s = min(call.delay_s * 2, self._client._backoff_max_s)
            self._enqueue(call)

        task = asyncio.get_running_loop().create_task(pause())
        self._waiting.add(task)  # kept until done: the loop holds tasks only weakly
        task.add_done_callback(self._waiting.discard)


class _BatchAnswer(msgspec.Struct):
    """`schemas.BatchResult` with each item left encoded, to decode as a payment directly."""

    results: list[msgspec.Raw]


_PAYMENT = msgspec.json.Decoder(schemas.Payment)
_ITEM_PARAM = re.compile(r"payments\[(\d+)\](?:\.(.+))?$")


def _fail(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


class _Payments(_Namespace):
    def __init__(self, client: Client, batcher: _Batcher | None) -> None:
        super().__init__(client)
        self._batcher = batcher

    async def create(
        self,
        *,
        balance_from: str,
        balance_to: str,
        amount: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        quote_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> schemas.Payment:
        """The payment in its final status (or `pending`: poll `get`). With batching on, it
        travels with the other calls made meanwhile (module doc), keyed as it would be alone."""
        body = _body(
            balance_from=balance_from,
            balance_to=balance_to,
            amount=amount,
            description=description,
            metadata=metadata,
            quote_id=quote_id,
        )
        if self._batcher is not None:
            return await self._batcher.create(body, idempotency_key or uuid.uuid4().hex)
        return await self._client.request(
            "POST", "/v1/payments", schemas.Payment, body, idempotency_key=idempotency_key
        )

    async def get(self, payment_id: str) -> schemas.Payment:
        return await self._client.request("GET", f"/v1/payments/{payment_id}", schemas.Payment)

    def list(self, **filters: Any) -> AsyncIterator[schemas.Payment]:
        """Filters as the API names them: balance, account, status, idempotency_key, created_gte..."""
        return self._client.pages("/v1/payments", schemas.PaymentList, filters)

    async def refund(
        self, payment_id: str, *, amount: str | None = None, idempotency_key: str | None = None
    ) -> schemas.Payment:
        path = f"/v1/payments/{payment_id}/refunds"
        return await self._client.request(
            "POST", path, schemas.Payment, _body(amount=amount), idempotency_key=idempotency_key
        )

    async def refunds(self, payment_id: str) -> builtins.list[schemas.Payment]:  # `list` is a method here
        page = await self._client.request("GET", f"/v1/payments/{payment_id}/refunds", schemas.PaymentList)
        return page.data


class _Transfers(_Namespace):
    async def create(
        self,
        *,
        legs: list[dict[str, str]],
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> schemas.Transfer:
        """`legs`: [{"balance_from": …, "balance_to": …, "amount": …, "quote_id"?: …}, …]."""
        body = _body(legs=legs, description=description, metadata=metadata)
        return await self._client.request(
            "POST", "/v1/transfers", schemas.Transfer, body, idempotency_key=idempotency_key
        )

    async def get(self, transfer_id: str) -> schemas.Transfer:
        return await self._client.request("GET", f"/v1/transfers/{transfer_id}", schemas.Transfer)

    def list(self, **filters: Any) -> AsyncIterator[schemas.Transfer]:
        return self._client.pages("/v1/transfers", schemas.TransferList, filters)


class _Holds(_Namespace):
    async def create(
        self,
        *,
        balance_from: str,
        balance_to: str,
        amount: str,
        expires_in_s: int,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> schemas.Hold:
        body = _body(
            balance_from=balance_from,
            balance_to=balance_to,
            amount=amount,
            expires_in_s=expires_in_s,
            description=description,
            metadata=metadata,
        )
        return await self._client.request("POST", "/v1/holds", schemas.Hold, body, idempotency_key=idempotency_key)

    async def get(self, hold_id: str) -> schemas.Hold:
        return await self._client.request("GET", f"/v1/holds/{hold_id}", schemas.Hold)

    async def capture(
        self, hold_id: str, *, amount: str | None = None, final: bool = False, idempotency_key: str | None = None
    ) -> schemas.Payment:
        body = _body(amount=amount, final=final or None)
        path = f"/v1/holds/{hold_id}/capture"
        return await self._client.request("POST", path, schemas.Payment, body, idempotency_key=idempotency_key)

    async def void(self, hold_id: str, *, idempotency_key: str | None = None) -> schemas.Hold:
        path = f"/v1/holds/{hold_id}/void"
        return await self._client.request("POST", path, schemas.Hold, {}, idempotency_key=idempotency_key)

    def list(self, **filters: Any) -> AsyncIterator[schemas.Hold]:
        return self._client.pages("/v1/holds", schemas.HoldList, filters)


class _Fx(_Namespace):
    async def set_rate(self, base: str, quote: str, rate: str) -> schemas.FxRate:
        return await self._client.request("PUT", f"/v1/fx/rates/{base}/{quote}", schemas.FxRate, {"rate": rate})

    def rates(self) -> AsyncIterator[schemas.FxRate]:
        return self._client.pages("/v1/fx/rates", schemas.FxRateList, {})

    def liquidity(self) -> AsyncIterator[schemas.Balance]:
        return self._client.pages("/v1/fx/liquidity", schemas.BalanceList, {})

    async def quote(
        self, *, balance_from: str, balance_to: str, amount: str, expires_in_s: int | None = None
    ) -> schemas.FxQuote:
        body = _body(balance_from=balance_from, balance_to=balance_to, amount=amount, expires_in_s=expires_in_s)
        return await self._client.request("POST", "/v1/fx/quotes", schemas.FxQuote, body)

    async def get_quote(self, quote_id: str) -> schemas.FxQuote:
        """A quote, for a day after it expires."""
        return await self._client.request("GET", f"/v1/fx/quotes/{quote_id}", schemas.FxQuote)


class _Keys(_Namespace):
    async def create(self, account_id: str, *, idempotency_key: str | None = None) -> schemas.ApiKey:
        path = f"/v1/accounts/{account_id}/keys"
        return await self._client.request("POST", path, schemas.ApiKey, idempotency_key=idempotency_key)

    def list(self, account_id: str) -> AsyncIterator[schemas.KeyListed]:
        return self._client.pages(f"/v1/accounts/{account_id}/keys", schemas.KeyList, {})

    async def revoke(self, key_id: str) -> None:
        await self._client.request("DELETE", f"/v1/keys/{key_id}", type(None))


class _Events(_Namespace):
    def list(self, **filters: Any) -> AsyncIterator[schemas.Event]:
        """Newest first; `type=` filters."""
        return self._client.pages("/v1/events", schemas.EventList, filters)

    async def get(self, event_id: str) -> schemas.Event:
        return await self._client.request("GET", f"/v1/events/{event_id}", schemas.Event)


class _WebhookEndpoints(_Namespace):
    async def create(
        self, *, url: str, events: list[str], description: str | None = None, idempotency_key: str | None = None
    ) -> schemas.WebhookEndpoint:
        """The answer's `secret` is shown this once: keep it to check deliveries
        (`rayledger.webhooks.verify`)."""
        body = _body(url=url, events=events, description=description)
        return await self._client.request(
            "POST", "/v1/webhook_endpoints", schemas.WebhookEndpoint, body, idempotency_key=idempotency_key
        )

    async def get(self, endpoint_id: str) -> schemas.WebhookEndpoint:
        return await self._client.request("GET", f"/v1/webhook_endpoints/{endpoint_id}", schemas.WebhookEndpoint)

    def list(self) -> AsyncIterator[schemas.WebhookEndpoint]:
        return self._client.pages("/v1/webhook_endpoints", schemas.WebhookEndpointList, {})

    async def delete(self, endpoint_id: str) -> None:
        await self._client.request("DELETE", f"/v1/webhook_endpoints/{endpoint_id}", type(None))

    def deliveries(self, endpoint_id: str) -> AsyncIterator[schemas.WebhookDelivery]:
        return self._client.pages(f"/v1/webhook_endpoints/{endpoint_id}/deliveries", schemas.WebhookDeliveryList, {})


class SyncClient:
    """`Client` for code without an event loop: the same namespaces and methods, blocking;
    lists are plain iterators. It runs its own loop; close it (or use `with`) when done."""

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        # Its calls run one at a time: nothing to coalesce.
        self._client = Client(base_url, token, **{"batching": False, **options})
        for name, value in vars(self._client).items():
            if isinstance(value, _Namespace):
                setattr(self, name, _Blocking(value, self._loop))

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()


class _Blocking:
    """One namespace's methods, run to completion on the sync client's loop."""

    def __init__(self, namespace: _Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self._namespace, self._loop = namespace, loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._namespace, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if isinstance(result, Awaitable):
                return self._loop.run_until_complete(result)
            return self._iterate(result)

        return call

    def _iterate(self, items: AsyncIterator[Any]) -> Iterator[Any]:
        while True:
            try:
                yield self._loop.run_until_complete(anext(items))
            except StopAsyncIteration:
                return
