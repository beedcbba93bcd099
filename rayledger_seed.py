"""`rayledger seed`: sample data for demos, loaded through the REST API of a running ledger.

Opens accounts with a USD balance each (every fifth also a EUR one), funds them by
deposits, then makes random payments between them, a few of them larger than the payer
can afford (ending `not_enough_money`) and a few across currencies (ending
`currencies_dont_match`), so every screen and list has something to show. `--run` names
the run: its emails and Idempotency-Keys carry it, so runs never collide. It speaks to the
ledger through `rayledger.client`, like any integrator. Running the same
run again within the ledger's idempotency window (24 h by default) replays every request
and changes nothing, and the command says so (the API marks each replayed answer); after
the window, the run's first account is refused (email taken), and the command says so in
one line.
"""

from __future__ import annotations

import asyncio
import functools
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from rich.console import Console
from rich.progress import Progress

from rayledger.client import Client, LedgerError

T = TypeVar("T")

CONCURRENCY = 16  # requests in flight: enough to batch, far below the gateway's admission bound


class SeedError(Exception):
    """The ledger refused a request: one line for the operator, no traceback."""


@dataclass
class SeedReport:
    accounts: int
    balances: int
    deposits: int
    payments: Counter[str]
    requests: int = 0  # distinct Idempotency-Keys sent
    replayed: int = 0  # of them, answered as replays of an earlier run's requests


def _replay_counter(sent: set[str], replayed: set[str]) -> aiohttp.TraceConfig:
    """Counts, by Idempotency-Key, the requests sent and those the ledger answered as
    replays (`Idempotent-Replayed: true`): only the ledger knows whether a run changed
    anything. By key, so that the client's retries of one request count once."""

    async def on_request_end(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
        key = params.headers.get("Idempotency-Key")
        if key is None:
            return
        sent.add(key)
        if params.response.headers.get("Idempotent-Replayed") == "true":
            replayed.add(key)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


async def seed(
    url: str, token: str, *, accounts: int, payments: int, run: str, rng: random.Random, progress: bool = True
) -> SeedReport:
    gate = asyncio.Semaphore(CONCURRENCY)
    sent: set[str] = set()
    replayed: set[str] = set()
    session = aiohttp.ClientSession(trace_configs=[_replay_counter(sent, replayed)])
    # Few retries: an unreachable ledger is one line at once, not a minute of backoff. A
    # request per payment: replays are counted by each answer's header, which the items of
    # a batch do not have.
    async with session, Client(url, token, retries=2, session=session, batching=False) as ledger:

        async def call(what: str, make: Callable[..., Awaitable[T]], **fields: Any) -> T:
            async with gate:
                try:
                    return await make(**fields)  # made here: a request starts only once it is awaited
                except LedgerError as exc:
                    if exc.code == "email_taken":
                        raise SeedError(
                            f"run {run!r} was loaded before, longer ago than the ledger keeps idempotency keys"
                            " (an account email is taken); choose another name with --run"
                        ) from None
                    raise SeedError(f"{what} was refused: {exc}") from None

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
            email = f"{run}-{n}@example.com"
            account = await call("an account", ledger.accounts.create, email=email, idempotency_key=f"{run}:acc{n}")
            opened = []
            for currency in currencies_of(n):
                balance = await call(
                    "a balance",
                    functools.partial(ledger.balances.create, account.id),
                    currency=currency,
                    idempotency_key=f"{run}:bal{n}{currency}",
                )
                amount = funding[(n, currency)]
                key = f"{run}:dep{n}{currency}"
                await call(
                    "a deposit", ledger.deposits.create, balance_id=balance.id, amount=amount, idempotency_key=key
                )
                opened.append((balance.id, currency))
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
            paid = await call(
                "a payment",
                ledger.payments.create,
                balance_from=source,
                balance_to=target,
                amount=amount,
                description="sample",
                idempotency_key=f"{run}:pay{n}",
            )
            statuses[paid.status] += 1
            bar.advance(payments_task)

        with Progress(disable=not progress, transient=True) as bar:
            accounts_task = bar.add_task("accounts, balances, deposits", total=accounts)
            payments_task = bar.add_task("payments", total=payments)
            opened = [b for group in await asyncio.gather(*(open_account(n) for n in range(accounts))) for b in group]
            usd = [b for b, c in opened if c == "USD"]
            await asyncio.gather(*(pay(n, usd, opened) for n in range(payments)))
    return SeedReport(accounts, len(opened), len(opened), statuses, len(sent), len(replayed))


def summary(report: SeedReport, run: str) -> str:
    """One line: what the run made, or that it replayed an earlier one and changed nothing."""
    made = (
        f"{report.accounts} accounts, {report.balances} balances, {report.deposits} deposits, "
        f"{sum(report.payments.values())} payments: "
        + ", ".join(f"{status} {n}" for status, n in sorted(report.payments.items()))
    )
    if report.replayed == 0:
        return f"seeded {made}"
    if report.replayed == report.requests:
        return f"run {run!r} was loaded before: replayed all {report.requests} requests, nothing changed ({made})"
    return f"seeded {made} ({report.replayed} of {report.requests} requests replayed an earlier run {run!r})"


def run_seed(url: str, token: str, accounts: int, payments: int, run: str, seed_value: int, *, where: str = "") -> int:
    """`where`: how the URL was found, for the line that says it cannot be reached."""
    console = Console()
    if accounts < 2:
        print("rayledger seed: --accounts must be at least 2", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(
            seed(
                url,
                token,
                accounts=accounts,
                payments=payments,
                run=run,
                rng=random.Random(seed_value),
                # On a terminal only: elsewhere rich cannot erase the bar, and would leave
                # a blank line where it was.
                progress=console.is_terminal,
            )
        )
    except SeedError as exc:
        print(f"rayledger seed: {exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as exc:
        print(f"rayledger seed: cannot reach the ledger at {url}{where}: {exc}", file=sys.stderr)
        return 2
    console.print(summary(report, run), soft_wrap=True, markup=False)  # one line, however narrow the terminal
    return 0
