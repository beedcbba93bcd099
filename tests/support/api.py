"""A thin HTTP client for the e2e suite (aiohttp, real sockets)."""

from __future__ import annotations

from typing import Any

import aiohttp


class Reply:
    def __init__(self, status: int, body: Any, headers: Any) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


class Api:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None) -> None:
        self.session = session
        self.base_url = base_url
        self.token = token

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    async def request(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None, data: Any = None
    ) -> Reply:
        async with self.session.request(
            method, self.base_url + path, json=json, data=data, headers=self._headers(headers)
        ) as response:
            body = await response.json(content_type=None) if response.content_length != 0 else None
            return Reply(response.status, body, response.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Reply:
        return await self.request("POST", path, json=json, **kwargs)

    async def every_page(self, path: str, cursor_field: str = "id") -> list[Any]:
        """Every item of a list, following `starting_after` until `has_more` is false."""
        items: list[Any] = []
        sep = "&" if "?" in path else "?"
        after = ""
        while True:
            page = await self.get(f"{path}{sep}limit=100{after}")
            assert page.status == 200, page
            items += page.body["data"]
            if not page.body["has_more"]:
                return items
            after = f"&starting_after={page.body['data'][-1][cursor_field]}"

    # -- shortcuts that assert success ----------------------------------------------------
    async def account(self, email: str) -> dict[str, Any]:
        reply = await self.post("/v1/accounts", {"email": email})
        assert reply.status == 201, reply
        return reply.body  # type: ignore[no-any-return]

    async def balance(self, account_id: str, currency: str) -> dict[str, Any]:
        reply = await self.post(f"/v1/accounts/{account_id}/balances", {"currency": currency})
        assert reply.status == 201, reply
        return reply.body  # type: ignore[no-any-return]

    async def deposit(self, balance_id: str, amount: str) -> dict[str, Any]:
        reply = await self.post("/v1/deposits", {"balance_id": balance_id, "amount": amount})
        assert reply.status == 201 and reply.body["status"] == "success", reply
        return reply.body  # type: ignore[no-any-return]

    async def pay(self, balance_from: str, balance_to: str, amount: str) -> Reply:
        return await self.post(
            "/v1/payments", {"balance_from": balance_from, "balance_to": balance_to, "amount": amount}
        )
