"""The deterministic simulator: the real actor classes (registry, shards, coordinators, their
journals and recovery) in one process on simulated time, driven by one seed through a
workload (tests/sim/workload.py) and faults, with the invariants (tests/sim/invariants.py)
checked after every step. No Ray, no sockets, no wall clock: a seed replays one run exactly.

Faults, from the seed, while clients run:
  - any shard, coordinator or the registry crashes at any step (between a journal write and
    its fsync, mid-frame, mid-call) and Ray restarts it a moment later from its disk;
  - the whole cluster crashes and restarts, sometimes with another number of shards, so
    partitions move between shards;
  - a journal refuses writes for a while (a full disk);
  - storms: answers lost (calls delivered twice) and messages held back for long (a phase
    two overtaken by later calls, a phase one arriving after its sender's successor fenced it).
Then the faults stop and liveness is checked: within a bounded time every request is
answered, every payment decided and posted or voided, every hold settled.

    python -m tests.sim.simulator --seeds 100 --seed-base 0 --steps 20000

runs seeds 0..99 (exit 1 at the first violation: it prints the seed, the step, the last
events and the command that replays it); `--seed-base S --seeds 1` replays seed S.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors import clock
from actors.coordinator import PaymentCoordinator
from actors.registry import Registry
from actors.topology import REGISTRY_NAME, coordinator_index, coordinator_name
from tests.sim.cluster import CURRENT, Incarnation, SimCluster
from tests.sim.invariants import Invariants
from tests.sim.loop import SimulatedLoop, Stuck
from tests.sim.mutations import MUTATIONS, mutated
from tests.sim.trace import Trace
from tests.sim.workload import Workload

CLIENTS = 6
SETTLE_S_MAX = 120.0  # simulated seconds after the faults stop for everything to settle
LAYOUTS = (1, 2, 4)  # shard counts a whole-cluster restart may choose (4 partitions)
CLOSE_ROUNDS_MAX = 100  # cancelling every task at the end of a run
SPIN_STEPS_MAX = 100_000  # steps without simulated time moving: a livelock


class Violation(AssertionError):
    def __init__(self, seed: int, step: int, what: str, trace: list[str]) -> None:
        super().__init__(what)
        self.seed, self.step, self.what, self.trace = seed, step, what, trace

    def report(self) -> str:
        lines = [f"seed {self.seed}: violation at step {self.step}: {self.what}", "last events:", *self.trace]
        lines.append(f"replay: PYTHONHASHSEED=0 python -m tests.sim.simulator --seed-base {self.seed} --seeds 1")
        return "\n".join(lines)


class Run:
    def __init__(self, seed: int, steps: int, data_dir: Path) -> None:
        self.seed = seed
        self.steps = steps
        self.loop = SimulatedLoop()
        self.trace = Trace()
        self.trace.step = lambda: self.loop.steps
        self.trace.now_s = self.loop.time
        self.rng = random.Random(f"{seed}-faults")
        self.cluster = SimCluster(
            data_dir,
            self.loop,
            random.Random(f"{seed}-network"),
            self.trace,
            partitions=4,
            shards=2,
            coordinators=2,
            # Small enough that every run exercises what a large ledger does rarely: snapshots
            # and their replay tail, payments and keys read back from the journal's history
            # once evicted from memory, flushes split into several frames.
            snapshot_every_records=self.rng.choice((20, 60, 500)),
            recent_payments_max=self.rng.choice((20, 1_000)),
            idempotency_keys_in_memory_max=self.rng.choice((10, 1_000)),
            journal_batch_rows_max=self.rng.choice((4, 64, 4096)),
            read_settle_wait_ms=1_000,
        )
        self.invariants = Invariants(self.cluster)
        self.workload = Workload(self.cluster, self.invariants, random.Random(f"{seed}-clients"))
        self.ids = random.Random(f"{seed}-ids")
        self.failure: BaseException | None = None
        self.faults_on = False
        self.generation = 0  # whole-cluster restarts so far
        self.faults: dict[str, int] = {}
        self._time_seen, self._still = 0.0, 0  # steps since simulated time last moved

    # -- every step -------------------------------------------------------------------------
    def _after_step(self, callback: Callable[..., Any]) -> None:
        if self.failure is not None:
            return
        now = self.loop.time()
        if now != self._time_seen:
            self._time_seen, self._still = now, 0
        self._still += 1
        try:
            self.invariants.step()
            # Tasks that only ever yield to each other never let time move: a livelock,
            # which no timeout (on simulated time) would end.
            assert self._still < SPIN_STEPS_MAX, f"livelock: {self._still} steps at one instant, the last {callback!r}"
        except AssertionError as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            self.loop.stop()

    def _exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, AssertionError):  # a bug asserted in the ledger, in a task nobody awaited
            self._fail(exc)

    # -- faults -----------------------------------------------------------------------------
    def crash(self, name: str) -> None:
        """`name` dies now; the disk of a coordinator must hold every decision it told."""
        self.cluster.crash(name)
        if name.startswith("coordinator-"):
            index = coordinator_index(name)
            self.invariants.coordinator_kept(index, self.cluster.stores[f"c-{index}"])
        self.workload.calm += 1

    def crash_and_restart(self, name: str) -> None:
        """As Ray does: the actor comes back a moment later (unless the whole cluster has
        restarted meanwhile)."""
        self.crash(name)
        generation = self.generation

        def restart() -> None:
            if generation == self.generation and name not in self.cluster.live:
                self.cluster.launch(name)

        self.loop.call_later(self.rng.uniform(0, 0.1), restart)

    async def chaos(self) -> None:
        c, rng = self.cluster, self.rng
        while self.faults_on:
            await asyncio.sleep(rng.expovariate(1 / 0.03))
            if not self.faults_on or not c.serving.is_set():
                continue
            kind = rng.choices(("crash", "crash_all", "refuse", "storm"), (10, 1, 3, 3))[0]
            self.faults[kind] = self.faults.get(kind, 0) + 1
            if kind == "crash":
                alive = [n for n in c.names() if n in c.live and n != "webhooks"]
                if alive:
                    self.crash_and_restart(rng.choice(alive))
            elif kind == "crash_all":
                self.generation += 1
                for name in c.names():
                    if name.startswith("coordinator-") and name in c.live:
                        self.crash(name)
                c.crash_all()
                await asyncio.sleep(rng.uniform(0, 0.05))
                await c.start_all(shards=rng.choice(LAYOUTS))
            elif kind == "refuse":
                name = rng.choice(sorted(n for n in c.stores if n != "webhooks"))
                c.stores[name].fail_writes = True
                self.workload.calm += 1
                self.trace.add(f"disk of {name} refuses writes")
                await asyncio.sleep(rng.uniform(0, 0.1))
                c.stores[name].fail_writes = False  # (a crash meanwhile left a new, writable store)
                self.trace.add(f"disk of {name} writes again")
            else:
                c.faults.lose_answer_p, c.faults.slow_p = 0.2, 0.05
                self.workload.calm += 1
                self.trace.add("storm")
                await asyncio.sleep(rng.uniform(0, 0.2))
                c.faults.lose_answer_p, c.faults.slow_p = 0.0, 0.0
                self.trace.add("storm over")

    def calm_down(self) -> None:
        """Faults stop: every actor up, every disk writable, the network prompt."""
        c = self.cluster
        for store in c.stores.values():
            store.fail_writes = False
        c.faults.lose_answer_p, c.faults.slow_p = 0.0, 0.0
        for name in c.down():
            c.launch(name)
        self.trace.add("faults stopped")

    # -- the run ----------------------------------------------------------------------------
    async def main(self) -> dict[str, Any]:
        c, w = self.cluster, self.workload
        sim = Incarnation("sim", 0, self.loop)
        CURRENT.set(sim)  # the simulation's own tasks: no fault ends them
        await c.start()
        await w.open(users_per_currency=5)
        self.faults_on = True
        chaos = asyncio.ensure_future(self.chaos())
        clients = self.clients = [asyncio.ensure_future(w.client()) for _ in range(CLIENTS)]
        while self.loop.steps < self.steps:
            await asyncio.sleep(0.05)
        self.faults_on = False
        w.stop = True
        await chaos
        self.calm_down()
        settled = self.loop.time() + SETTLE_S_MAX
        done, _ = await asyncio.wait(clients, timeout=SETTLE_S_MAX)
        assert len(done) == len(clients), "liveness: clients still waiting for answers after the faults stopped"
        for task in done:
            task.result()
        await self.settle(settled)
        return {**w.counts, **self.invariants.end(), "faults": self.faults}

    async def settle(self, deadline: float) -> None:
        """Recover every coordinator, let every hold expire, send every owed phase two."""
        c = self.cluster
        coordinators = [c.peer(coordinator_name(index)) for index in range(c.settings.coordinators)]
        for coordinator in coordinators:
            await c.ingress(coordinator.invoke(PaymentCoordinator.ready))
        holds_expired_s = 61.0 + c.settings.hold_sweep_interval_ms / 1000  # the longest hold the workload places
        await asyncio.sleep(holds_expired_s)
        for index, coordinator in enumerate(coordinators):
            while True:
                unfinished = await c.ingress(coordinator.invoke(PaymentCoordinator.finish_phase2))
                if unfinished == 0:
                    break
                assert self.loop.time() < deadline + holds_expired_s, (
                    f"liveness: coordinator-{index} still has {unfinished} payments unfinished"
                )
                await asyncio.sleep(0.1)
        await c.ingress(c.peer(REGISTRY_NAME).invoke(Registry.ready))

    def run(self) -> dict[str, Any]:
        self.loop.on_step = self._after_step
        self.loop.set_exception_handler(self._exception)
        asyncio.set_event_loop(self.loop)
        logging.disable(logging.ERROR)  # the ledger logs the faults it meets: the trace tells them
        # The collector runs finalizers (an async generator's aclose is a step) at moments that
        # depend on what ran before in this process: off, so a seed replays alike anywhere.
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        try:
            with clock.simulated(self.loop.now_ms, self.ids.randbytes):
                counts = self.loop.run_until_complete(self.main())
        except (AssertionError, Stuck) as exc:
            self._fail(exc)
        except Exception as exc:  # the simulator's own bug: still this seed's, to replay
            self._fail(exc)
        except RuntimeError:
            if self.failure is None:
                raise
        finally:
            self._close()
        if self.failure is not None:
            where = traceback.extract_tb(self.failure.__traceback__)[-3:]
            at = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.line}" for f in reversed(where))
            what = f"{type(self.failure).__name__}: {self.failure} (at {at})"
            raise Violation(self.seed, self.loop.steps, what, self.trace.tail())
        return {
            **counts,
            "steps": self.loop.steps,
            "checked_steps": self.invariants.checked,
            "simulated_s": round(self.loop.time(), 1),
            "seconds": round(time.perf_counter() - started, 2),
        }

    def _close(self) -> None:
        self.loop.on_step = None
        # Every task ends here, none left unstarted: a coroutine finalized later would run
        # its `finally` on the next run's loop (a step more in a replay) or warn unawaited.
        self.cluster.halt()
        for _ in range(CLOSE_ROUNDS_MAX):
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        else:
            raise AssertionError(f"tasks still running after {CLOSE_ROUNDS_MAX} rounds of cancelling")
        self.loop.close()
        asyncio.set_event_loop(None)
        logging.disable(logging.NOTSET)
        gc.enable()


def run(seed: int, steps: int, data_dir: Path, mutation: str | None = None) -> dict[str, Any]:
    """One seeded run (of the ledger broken by `mutation`, tests/sim/mutations.py); raises
    `Violation` if an invariant broke."""
    with mutated(mutation):
        return Run(seed, steps, data_dir).run()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.simulator", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--seed-base", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20_000, help="steps of faults and traffic per seed")
    parser.add_argument("--mutation", choices=sorted(MUTATIONS), help="run a deliberately broken ledger")
    args = parser.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":  # sets and dicts of strings iterate by hash: fix it
        os.execve(
            sys.executable,
            [sys.executable, "-m", "tests.sim.simulator", *sys.argv[1:]],
            {**os.environ, "PYTHONHASHSEED": "0"},
        )
    started, steps = time.perf_counter(), 0
    for seed in range(args.seed_base, args.seed_base + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                counts = run(seed, args.steps, Path(tmp), args.mutation)
            except Violation as v:
                print(v.report(), file=sys.stderr)
                print(json.dumps({"seed": seed, "step": v.step, "violation": v.what}))
                return 1
        steps += counts["steps"]
        print(json.dumps({"seed": seed, **counts}), flush=True)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seeds": args.seeds,
                "seed_base": args.seed_base,
                "steps": steps,
                "seconds": round(seconds, 1),
                "steps_per_s": round(steps / seconds),
                "violations": 0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
