"""`rayledger seed`: sample data for demos, loaded through the REST API of a running ledger.

Opens accounts with a USD balance each (every fifth also a EUR one), funds them by
deposits, then makes random payments between them, a few of them larger than the payer
can afford (ending `not_enough_money`) and a few across currencies (ending
`currencies_dont_match`), so every screen and list has something to show. `--run` names
the run: its emails and Idempotency-Keys carry it, so runs never collide. Running the same
run again within the ledger's idempotency window (24 h by default) replays every request
and changes nothing; after it, the run's first account is refused (email taken), and the
command says so in one line.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from dataclasses import dataclass

import aiohttp
from rich.console import Console
from rich.progress import Progress

CONCURRENCY = 16  # requests in flight: enough to batch, far below the gateway's admission bound


class SeedError(Exception):
    """The ledger refused a request: one line for the operator, no traceback."""


@dataclass
class SeedReport:
    accounts: int
    balances: int
    deposits: int
    payments: Counter[str]


async def seed(
    url: str, token: str, *, accounts: int, payments: int, run: str, rng: random.Random, progress: bool = True
) -> SeedReport:
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(url, headers=headers) as http:

        async def post(path: str, body: dict[str, object], key: str) -> dict[str, object]:
            async with gate, http.post(path, json=body, headers={"Idempotency-Key": f"{run}:{key}"}) as r:
                try:
                    reply = await r.json(content_type=None)
                except ValueError:  # not the ledger answering (a proxy's error page, say)
                    raise SeedError(f"POST {path} answered {r.status} with a body that is not JSON") from None
                if r.status not in (200, 201, 202):
                    code = reply.get("code") if isinstance(reply, dict) else None
                    if code == "email_taken":
                        raise SeedError(
                            f"run {run!r} was loaded before, longer ago than the ledger keeps idempotency keys"
                            " (an account email is taken); choose another name with --run"
                        )
                    detail = reply.get("detail") if isinstance(reply, dict) else reply
                    raise SeedError(f"POST {path} was refused: {r.status} {code}: {detail}")
                return reply  # type: ignore[no-any-return]

        def currencies_of(n: int) -> list[str]:
            return ["USD", "EUR"] if n % 5 == 0 else ["USD"]

        # Drawn in a fixed order before anything runs concurrently, so that the same run
        # sends the same requests again (and replays them) whatever order answers come in.
        funding = {
            (n, c): f"{rng.randint(100, 5_000)}.{rng.randint(0, 99):02d}"
            for n in range(accounts)
            for c in currencies_of(n)
        }

        async def open_account(n: int) -> list[tuple[str, str]]:
            account = await post("/v1/accounts", {"email": f"{run}-{n}@example.com"}, f"acc{n}")
            opened = []
            for currency in currencies_of(n):
                balance = await post(
                    f"/v1/accounts/{account['id']}/balances", {"currency": currency}, f"bal{n}{currency}"
                )
                amount = funding[(n, currency)]
                await post("/v1/deposits", {"balance_id": balance["id"], "amount": amount}, f"dep{n}{currency}")
                opened.append((str(balance["id"]), currency))
            bar.advance(accounts_task)
            return opened

        statuses: Counter[str] = Counter()

        async def pay(n: int, usd: list[str], everything: list[tuple[str, str]]) -> None:
            # Draws before the first await: gather starts these in order, so they draw in order.
            if n % 17 == 0:  # across currencies
                source = rng.choice(usd)
                target = rng.choice([b for b, c in everything if c != "USD"])
                amount = "1.00"
            else:
                source, target = rng.sample(usd, 2)
                amount = "100000.00" if n % 13 == 0 else f"{rng.randint(1, 50)}.{rng.randint(0, 99):02d}"
            body = {"balance_from": source, "balance_to": target, "amount": amount, "description": "sample"}
            reply = await post("/v1/payments", body, f"pay{n}")
            statuses[str(reply["status"])] += 1
            bar.advance(payments_task)

        with Progress(disable=not progress, transient=True) as bar:
            accounts_task = bar.add_task("accounts, balances, deposits", total=accounts)
            payments_task = bar.add_task("payments", total=payments)
            opened = [b for group in await asyncio.gather(*(open_account(n) for n in range(accounts))) for b in group]
            usd = [b for b, c in opened if c == "USD"]
            await asyncio.gather(*(pay(n, usd, opened) for n in range(payments)))
    return SeedReport(accounts, len(opened), len(opened), statuses)


def run_seed(url: str, token: str, accounts: int, payments: int, run: str, seed_value: int) -> int:
    console = Console()
    if accounts < 2:
        print("rayledger seed: --accounts must be at least 2", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(
            seed(url, token, accounts=accounts, payments=payments, run=run, rng=random.Random(seed_value))
        )
    except SeedError as exc:
        print(f"rayledger seed: {exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as exc:
        print(f"rayledger seed: cannot reach the ledger at {url}: {exc}", file=sys.stderr)
        return 2
    console.print(
        f"seeded {report.accounts} accounts, {report.balances} balances, {report.deposits} deposits, "
        f"{sum(report.payments.values())} payments: "
        + ", ".join(f"{status} {n}" for status, n in sorted(report.payments.items()))
    )
    return 0
