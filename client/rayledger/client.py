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
"""

from __future__ import annotations

import asyncio
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
        self.payments = _Payments(self)
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
    ) -> T:
        """One API call, retried as the module says; the answer decoded as `type_`."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = dict(self._headers)
        if method == "POST" or idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        data = None if body is None else msgspec.json.encode(body)
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
    return LedgerError(
        status, str(problem.get("code", "http_error")), str(problem.get("detail", "")), problem.get("param")
    )


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


class _Payments(_Namespace):
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
        """The payment in its final status (or `pending`: poll `get`)."""
        body = _body(
            balance_from=balance_from,
            balance_to=balance_to,
            amount=amount,
            description=description,
            metadata=metadata,
            quote_id=quote_id,
        )
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

    async def refunds(self, payment_id: str) -> list[schemas.Payment]:
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
        self._client = Client(base_url, token, **options)
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
