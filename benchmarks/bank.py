"""The bank test: concurrent clients move money over HTTP while a nemesis injects faults;
then a checker proves nothing was lost, created or applied twice.

    python -m benchmarks.bank --seconds 90 --faults shard,coordinator,registry,server,disk
    python -m benchmarks.bank --soak          # ten minutes, every fault kind

Clients send payments between a few funded balances with an Idempotency-Key each, and
retry the same request (same key, same body) on timeouts, connection errors and 5xx until
it is final. The nemesis, on a schedule:
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
Afterwards the checker asserts: per-currency conservation, no balance below zero, every
acknowledged payment present with its acknowledged status, one payment per key, balances
equal to the sum of acknowledged successes (nothing applied twice or lost), and a clean
`rayledger verify`. It prints one JSON report line; the exit code is the violation count.
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
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from actors.audit import verify
from actors.topology import partition_of, shard_of_partition
from benchmarks.server import ClusterServer, Server

FAULTS = ("shard", "coordinator", "registry", "gateway", "server", "disk")
ACTOR_CLASS = {"shard": "BalanceShard", "coordinator": "IngressCoordinator", "registry": "Registry"}
PARTITIONS = 4
SHARDS = 2  # the server's default
REQUEST_TIMEOUT_S = 15.0
RESOLVE_DEADLINE_S = 120.0  # how long a client keeps retrying one payment
DISK_FAULT_S = 1.5  # how long a journal stays unwritable (the busy timeout is 0.3 s)


@dataclass
class Ack:
    key: str
    payment_id: str
    status: str
    balance_from: str
    balance_to: str
    amount_cents: int


@dataclass
class Run:
    acks: list[Ack] = field(default_factory=list)
    ids_by_key: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    unresolved: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)


class Bank:
    def __init__(self, server: Server, seed: int) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self.run = Run()
        self.balances: list[str] = []
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

    async def setup(self, accounts: int, deposit: str) -> None:
        for n in range(accounts):
            _, account = await self.call("POST", "/v1/accounts", {"email": f"bank{n}@example.com"})
            _, balance = await self.call("POST", f"/v1/accounts/{account['id']}/balances", {"currency": "USD"})
            status, paid = await self.call("POST", "/v1/deposits", {"balance_id": balance["id"], "amount": deposit})
            assert status == 201 and paid["status"] == "success", paid
            self.balances.append(balance["id"])
            self.run.acks.append(Ack(f"deposit-{n}", paid["id"], "success", "issuer", balance["id"], _cents(deposit)))

    async def pay_until_final(self, key: str, body: dict[str, str]) -> Ack | None:
        """Retry one payment with its key until it is final, or give up (unresolved)."""
        deadline = time.monotonic() + RESOLVE_DEADLINE_S
        delay_s = 0.05
        first = True
        while time.monotonic() < deadline:
            self.run.attempts += 1
            if not first:
                self.run.retries += 1
            first = False
            try:
                status, reply = await self.call("POST", "/v1/payments", body, key)
                if status in (201, 202):
                    self.run.ids_by_key[key].add(reply["id"])
                    while reply["status"] == "pending" and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                        status, reply = await self.call("GET", f"/v1/payments/{reply['id']}")
                    if reply.get("status") not in (None, "pending"):
                        return Ack(
                            key,
                            reply["id"],
                            reply["status"],
                            body["balance_from"],
                            body["balance_to"],
                            _cents(body["amount"]),
                        )
                elif status < 500:
                    self.run.violations.append(f"{key}: unexpected {status} {reply}")
                    return None
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                pass
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)
        self.run.unresolved.append((key, body))
        return None

    async def client(self, index: int, until: float) -> None:
        n = 0
        while time.monotonic() < until or not self.nemesis_done.is_set():
            a, b = self.rng.sample(self.balances, 2)
            body = {"balance_from": a, "balance_to": b, "amount": f"{self.rng.randint(1, 2500) / 100:.2f}"}
            ack = await self.pay_until_final(f"c{index}-{n}", body)
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
            victim = self.rng.choice(self.balances)
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
        _, usd = await self.call("GET", "/v1/currencies/USD")
        amounts: dict[str, int] = {}
        for balance_id in [*self.balances, usd["issuer_balance_id"]]:
            _, balance = await self.call("GET", f"/v1/balances/{balance_id}")
            amounts[balance_id] = _cents(balance["amount"])
        if sum(amounts.values()) != 0:
            run.violations.append(f"USD sums to {sum(amounts.values())}, not 0")
        for balance_id in self.balances:
            if amounts[balance_id] < 0:
                run.violations.append(f"{balance_id} is negative: {amounts[balance_id]}")
        expected = collections.Counter()
        for ack in run.acks:
            _, stored = await self.call("GET", f"/v1/payments/{ack.payment_id}")
            if stored.get("status") != ack.status:
                run.violations.append(f"{ack.payment_id}: acknowledged {ack.status}, stored {stored.get('status')}")
            if ack.status == "success" and ack.balance_from != "issuer":
                expected[ack.balance_from] -= ack.amount_cents
                expected[ack.balance_to] += ack.amount_cents
            elif ack.status == "success":
                expected[ack.balance_to] += ack.amount_cents
        for balance_id in self.balances:
            if amounts[balance_id] != expected[balance_id]:
                run.violations.append(
                    f"{balance_id}: ledger has {amounts[balance_id]}, acknowledged payments give {expected[balance_id]}"
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
            for key, body in list(bank.run.unresolved):  # resolve what the clients gave up on
                bank.run.unresolved.remove((key, body))
                ack = await bank.pay_until_final(key, body)
                if ack is not None:
                    bank.run.acks.append(ack)
            await bank.check()
    finally:
        server.stop()
    audit = verify(data_dir)
    bank.run.violations += [f"verify: {v}" for v in audit.violations]
    statuses = collections.Counter(a.status for a in bank.run.acks)
    return {
        "scenario": "bank",
        "seconds": round(time.monotonic() - started, 1),
        "clients": clients,
        "server": "embedded" if embedded else "ray head + gateway",
        "faults": dict(bank.run.faults),
        "payments_acked": len(bank.run.acks),
        "statuses": dict(statuses),
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
