"""The bank test: concurrent clients move money over HTTP while a nemesis injects faults;
then a checker proves nothing was lost, created or applied twice.

    python -m benchmarks.bank --seconds 90 --faults shard,coordinator,registry,server,disk
    python -m benchmarks.bank --soak          # ten minutes, every fault kind

Clients send payments, transfers of 2-3 legs and exchange payments (a quote, then the
payment with its quote_id) between a few accounts' funded USD and EUR balances, each with
an Idempotency-Key, and retry the same request (same key, same body) on timeouts,
connection errors and 5xx until it is final. The nemesis, on a schedule:
  shard | coordinator | registry   kill -9 one actor worker process (Ray restarts it); a
                                   coordinator takes its HTTP ingress with it, so clients
                                   see connections refused until the supervisor serves it again
  gateway                          kill -9 the supervisor (`rayledger serve`) alone and start
                                   it again (the actors, ingress included, live on in the cluster)
  server                           kill -9 every process (Ray, actors, supervisor), then start again
  disk                             make one shard's journal file unwritable for a while
The server runs as a Ray head (`ray start`) plus a separate `rayledger serve --address`
supervisor, so that the supervisor can die alone; `--embedded` uses `rayledger serve` alone,
where the supervisor is the Ray driver and `gateway` is not available.
Afterwards the checker asserts: per-currency conservation (FX liquidity balances and
issuers included), no balance below zero, every acknowledged payment and transfer present
with its acknowledged status, one per key, balances equal to the sum of acknowledged
successes' moves (nothing applied twice or lost, no leg of a transfer or an exchange
without the others), and a clean `rayledger verify`. It prints one JSON report line; the
exit code is the violation count.
Loopback only; bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from actors.audit import verify
from actors.topology import partition_of, shard_of_partition
from benchmarks.server import ClusterServer, Server

FAULTS = ("shard", "coordinator", "registry", "gateway", "server", "disk")
CURRENCIES = ("USD", "EUR")
FX_RATE = "1.1"  # 1 EUR buys 1.1 USD; USD -> EUR at its inverse
LIQUIDITY = "100000.00"  # per currency: exchanges are not refused for liquidity
TRANSFER_SHARE, FX_SHARE = 0.2, 0.1  # of the client requests; the rest are single payments
ACTOR_CLASS = {"shard": "BalanceShard", "coordinator": "IngressCoordinator", "registry": "Registry"}
PARTITIONS = 4
SHARDS = 2  # the server's default
REQUEST_TIMEOUT_S = 15.0
RESOLVE_DEADLINE_S = 120.0  # how long a client keeps retrying one payment
DISK_FAULT_S = 1.5  # how long a journal stays unwritable (the busy timeout is 0.3 s)


Move = tuple[str, str, int]  # (from, to, cents): what a success applies


@dataclass
class Ack:
    key: str
    some_id: str
    kind: str  # "payments" or "transfers": where it is read back
    status: str
    moves: list[Move]
    label: str = "payment"  # deposit, payment, transfer, exchange


@dataclass
class Pending:
    """A request a client keeps retrying (same key, same body) until it is final."""

    key: str
    kind: str
    body: dict[str, Any]
    moves: Callable[[dict[str, Any]], list[Move]]  # from the final answer
    label: str = "payment"


@dataclass
class Run:
    acks: list[Ack] = field(default_factory=list)
    ids_by_key: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    unresolved: list[Pending] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)


class Bank:
    def __init__(self, server: Server, seed: int) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self.run = Run()
        self.balances: dict[str, list[str]] = {c: [] for c in CURRENCIES}
        self.liquidity: dict[str, str] = {}
        self.issuers: dict[str, str] = {}
        self.session: aiohttp.ClientSession | None = None
        self.nemesis_done = asyncio.Event()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.token}"}

    async def call(self, method: str, path: str, body: object = None, key: str | None = None):  # type: ignore[no-untyped-def]
        assert self.session is not None
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with self.session.request(
            method, self.server.url + path, json=body, headers=headers, timeout=timeout
        ) as response:
            return response.status, await response.json(content_type=None)

    async def _deposit(self, balance_id: str, amount: str, key: str) -> None:
        status, paid = await self.call("POST", "/v1/deposits", {"balance_id": balance_id, "amount": amount})
        assert status == 201 and paid["status"] == "success", paid
        moves = [("issuer", balance_id, _cents(amount))]
        self.run.acks.append(Ack(key, paid["id"], "payments", "success", moves, "deposit"))

    async def setup(self, accounts: int, deposit: str) -> None:
        """Each account holds USD and EUR; the FX liquidity balances are funded to exchange."""
        for n in range(accounts):
            _, account = await self.call("POST", "/v1/accounts", {"email": f"bank{n}@example.com"})
            for currency in CURRENCIES:
                _, balance = await self.call("POST", f"/v1/accounts/{account['id']}/balances", {"currency": currency})
                await self._deposit(balance["id"], deposit, f"deposit-{n}-{currency}")
                self.balances[currency].append(balance["id"])
        status, _ = await self.call("PUT", "/v1/fx/rates/EUR/USD", {"rate": FX_RATE})
        assert status == 200
        _, liquidity = await self.call("GET", "/v1/fx/liquidity")
        self.liquidity = {b["currency"]: b["id"] for b in liquidity["data"]}
        for currency in CURRENCIES:
            await self._deposit(self.liquidity[currency], LIQUIDITY, f"liquidity-{currency}")
            _, info = await self.call("GET", f"/v1/currencies/{currency}")
            self.issuers[currency] = info["issuer_balance_id"]

    async def until_final(self, p: Pending) -> Ack | None:
        """Retry one request with its key until it is final, or give up (unresolved)."""
        deadline = time.monotonic() + RESOLVE_DEADLINE_S
        delay_s = 0.05
        first = True
        while time.monotonic() < deadline:
            self.run.attempts += 1
            if not first:
                self.run.retries += 1
            first = False
            try:
                status, reply = await self.call("POST", f"/v1/{p.kind}", p.body, p.key)
                if status in (201, 202):
                    self.run.ids_by_key[p.key].add(reply["id"])
                    while reply["status"] == "pending" and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                        status, reply = await self.call("GET", f"/v1/{p.kind}/{reply['id']}")
                    if reply.get("status") not in (None, "pending"):
                        return Ack(p.key, reply["id"], p.kind, reply["status"], p.moves(reply), p.label)
                elif status < 500:
                    self.run.violations.append(f"{p.key}: unexpected {status} {reply}")
                    return None
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                pass
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)
        self.run.unresolved.append(p)
        return None

    def _amount(self) -> str:
        return f"{self.rng.randint(1, 2500) / 100:.2f}"

    def _payment(self, key: str) -> Pending:
        currency = self.rng.choice(CURRENCIES)
        a, b = self.rng.sample(self.balances[currency], 2)
        body = {"balance_from": a, "balance_to": b, "amount": self._amount()}
        return Pending(key, "payments", body, lambda reply: [(a, b, _cents(body["amount"]))])

    def _transfer(self, key: str) -> Pending:
        legs = []
        for _ in range(self.rng.randint(2, 3)):  # a balance may well come up in two legs
            currency = self.rng.choice(CURRENCIES)
            a, b = self.rng.sample(self.balances[currency], 2)
            legs.append({"balance_from": a, "balance_to": b, "amount": self._amount()})
        moves = [(leg["balance_from"], leg["balance_to"], _cents(leg["amount"])) for leg in legs]
        return Pending(key, "transfers", {"legs": legs}, lambda reply: moves, "transfer")

    async def _exchange(self, key: str, until: float) -> Pending | None:
        """A quote, then the payment that uses it (its key makes the payment once)."""
        source, target = self.rng.sample(CURRENCIES, 2)
        a, b = self.rng.choice(self.balances[source]), self.rng.choice(self.balances[target])
        body = {"balance_from": a, "balance_to": b, "amount": self._amount()}
        while time.monotonic() < until + RESOLVE_DEADLINE_S:
            try:
                status, quote = await self.call("POST", "/v1/fx/quotes", {**body, "expires_in_s": 600})
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                await asyncio.sleep(0.2)
                continue
            if status == 201:
                break
            if status < 500:
                self.run.violations.append(f"{key}: quote refused {status} {quote}")
                return None
            await asyncio.sleep(0.2)
        else:
            return None
        liquidity = self.liquidity

        def moves(reply: dict[str, Any]) -> list[Move]:
            return [(a, liquidity[source], _cents(body["amount"])), (liquidity[target], b, _cents(reply["amount_to"]))]

        return Pending(key, "payments", {**body, "quote_id": quote["id"]}, moves, "exchange")

    async def client(self, index: int, until: float) -> None:
        n = 0
        while time.monotonic() < until or not self.nemesis_done.is_set():
            key, pick = f"c{index}-{n}", self.rng.random()
            if pick < TRANSFER_SHARE:
                request: Pending | None = self._transfer(key)
            elif pick < TRANSFER_SHARE + FX_SHARE:
                request = await self._exchange(key, until)
            else:
                request = self._payment(key)
            ack = await self.until_final(request) if request is not None else None
            if ack is not None:
                self.run.acks.append(ack)
            n += 1

    async def nemesis(self, faults: list[str], every_s: float, until: float, rounds: int | None) -> None:
        """Inject faults in turn every `every_s`: until the window closes, or, given
        `rounds`, exactly that many rounds (the clients keep going until they are done)."""
        schedule = list(faults)
        try:
            while True:
                if rounds is not None:
                    if self.run.faults.total() >= rounds * len(schedule):
                        return
                elif time.monotonic() + every_s >= until:
                    return
                await asyncio.sleep(every_s)
                fault = schedule[self.run.faults.total() % len(schedule)]
                await self.inject(fault)
                self.run.faults[fault] += 1
        finally:
            self.nemesis_done.set()

    async def inject(self, fault: str) -> None:
        if fault in ACTOR_CLASS:
            pids = self.server.actor_pids(ACTOR_CLASS[fault])
            if pids:
                import os
                import signal

                os.kill(self.rng.choice(pids), signal.SIGKILL)
        elif fault == "gateway":
            assert isinstance(self.server, ClusterServer), "the embedded supervisor cannot die alone"
            await asyncio.to_thread(self.server.kill_gateway)
            await asyncio.to_thread(self.server.start)
        elif fault == "server":
            await asyncio.to_thread(self.server.kill9)
            await asyncio.to_thread(self.server.start)
        elif fault == "disk":
            victim = self.rng.choice(self.balances["USD"])
            shard = shard_of_partition(partition_of(victim, PARTITIONS), SHARDS)
            path = self.server.data_dir / "shards" / f"s-{shard:03d}.sqlite"
            blocker = sqlite3.connect(path, isolation_level=None, timeout=10)
            try:
                blocker.execute("BEGIN EXCLUSIVE")
                await asyncio.sleep(DISK_FAULT_S)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
        else:
            raise ValueError(f"unknown fault {fault}")

    async def check(self) -> None:
        run = self.run
        for key, ids in run.ids_by_key.items():
            if len(ids) > 1:
                run.violations.append(f"key {key} made {len(ids)} payments: {sorted(ids)}")
        amounts: dict[str, int] = {}
        for currency in CURRENCIES:
            ids = [*self.balances[currency], self.liquidity[currency], self.issuers[currency]]
            for balance_id in ids:
                _, balance = await self.call("GET", f"/v1/balances/{balance_id}")
                amounts[balance_id] = _cents(balance["amount"])
            if sum(amounts[b] for b in ids) != 0:
                run.violations.append(f"{currency} sums to {sum(amounts[b] for b in ids)}, not 0")
        held = [*(b for bs in self.balances.values() for b in bs), *self.liquidity.values()]
        for balance_id in held:
            if amounts[balance_id] < 0:
                run.violations.append(f"{balance_id} is negative: {amounts[balance_id]}")
        expected: collections.Counter[str] = collections.Counter()
        for ack in run.acks:
            _, stored = await self.call("GET", f"/v1/{ack.kind}/{ack.some_id}")
            if stored.get("status") != ack.status:
                run.violations.append(f"{ack.some_id}: acknowledged {ack.status}, stored {stored.get('status')}")
            if ack.status == "success":
                for source, target, cents in ack.moves:
                    expected[source] -= cents
                    expected[target] += cents
        for balance_id in held:
            if amounts[balance_id] != expected[balance_id]:
                run.violations.append(
                    f"{balance_id}: ledger has {amounts[balance_id]}, acknowledged moves give {expected[balance_id]}"
                )


def _cents(amount: str) -> int:
    whole, _, frac = amount.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 100 + int((frac + "00")[:2]))


async def run_bank(
    data_dir: Path,
    *,
    seconds: float,
    clients: int,
    accounts: int,
    faults: list[str],
    fault_every_s: float,
    seed: int,
    embedded: bool = False,
    fault_rounds: int | None = None,
) -> dict[str, object]:
    env = {"RAYLEDGER_JOURNAL_BUSY_TIMEOUT_MS": "300"}
    server = (Server(data_dir, env=env) if embedded else ClusterServer(data_dir, env=env)).start()
    bank = Bank(server, seed)
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            bank.session = session
            await bank.setup(accounts, "100.00")  # small, so some payments are refused too
            until = time.monotonic() + seconds
            await asyncio.gather(
                *(bank.client(n, until) for n in range(clients)),
                bank.nemesis(faults, fault_every_s, until, fault_rounds),
            )
        # A final crash and restart before checking: what is acknowledged must be on disk.
        server.kill9()
        server.start()
        async with aiohttp.ClientSession() as session:
            bank.session = session
            for pending in list(bank.run.unresolved):  # resolve what the clients gave up on
                bank.run.unresolved.remove(pending)
                ack = await bank.until_final(pending)
                if ack is not None:
                    bank.run.acks.append(ack)
            await bank.check()
    finally:
        server.stop()
    audit = verify(data_dir)
    bank.run.violations += [f"verify: {v}" for v in audit.violations]
    statuses = collections.Counter(a.status for a in bank.run.acks)
    kinds = collections.Counter(a.label for a in bank.run.acks)
    return {
        "scenario": "bank",
        "seconds": round(time.monotonic() - started, 1),
        "clients": clients,
        "server": "embedded" if embedded else "ray head + gateway",
        "faults": dict(bank.run.faults),
        "payments_acked": len(bank.run.acks),
        "statuses": dict(statuses),
        "kinds": dict(kinds),
        "attempts": bank.run.attempts,
        "retries": bank.run.retries,
        "unresolved": len(bank.run.unresolved),
        "journal_records": audit.records,
        "violations": bank.run.violations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bank", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--fault-every-s", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--soak", action="store_true", help="ten minutes, 32 clients, every fault kind")
    parser.add_argument("--data-dir", type=Path, help="default: a fresh temporary directory")
    parser.add_argument("--embedded", action="store_true", help="one `rayledger serve` process (no gateway fault)")
    args = parser.parse_args(argv)
    if args.soak:
        args.seconds, args.clients, args.faults = 600.0, 32, ",".join(FAULTS)
    faults = [f for f in args.faults.split(",") if f]
    if args.embedded and "gateway" in faults:
        faults.remove("gateway")
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; choose from {FAULTS}")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="rayledger-bank-")) / "data"
    report = asyncio.run(
        run_bank(
            data_dir,
            seconds=args.seconds,
            clients=args.clients,
            accounts=args.accounts,
            faults=faults,
            fault_every_s=args.fault_every_s,
            seed=args.seed,
            embedded=args.embedded,
        )
    )
    print(json.dumps(report))
    if args.data_dir is None and not report["violations"]:
        shutil.rmtree(data_dir.parent, ignore_errors=True)  # kept when something was found, to look at
    return len(report["violations"])  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
