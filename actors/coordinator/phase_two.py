"""Phase two of decided payments: owed to their shards, carried or sent, confirmed
(docs/design.md §4).

Once a payment is decided (its record durable: the commit point), posting or voiding its
legs is owed to their shards. While other pay calls are in progress it rides the next
phase-one call to the same shard (one call and one flush there instead of two), or goes on
its own after `phase2_carry_ms`; with no other call in progress it goes at once. When every
shard of a payment has confirmed, `Completions` is journaled; until then the payment counts
as unfinished and a restart re-drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator

from actors.coordinator.remote import Owed, PhaseOneReply, Remote
from actors.coordinator.state import CoordinatorState
from actors.settings import Settings
from ledger.messages import HoldRef
from ledger.records import Completions, PaymentRecord, payment_balances
from ledger.results import PaymentStatus


class PhaseTwo:
    def __init__(self, settings: Settings, state: CoordinatorState, remote: Remote) -> None:
        self.settings = settings
        self.state = state
        self.remote = remote
        self._owed: dict[int, Owed] = {}  # shard -> phase two not yet sent there
        self._legs_left: dict[str, int] = {}  # payment -> shards yet to confirm its phase two
        self._carry_timer: asyncio.TimerHandle | None = None
        self._carriers = 0  # pay calls in progress: one of them will soon make a phase-one call
        self._sending: dict[asyncio.Task[None], None] = {}  # in order: a set would order by address
        self._closed = False

    # -- owing ------------------------------------------------------------------------------
    def owe(self, payments: list[PaymentRecord]) -> None:
        """Queue phase two of decided payments for their shards."""
        for k, legs in self._by_shard(payments).items():
            owed = self._owed.get(k)
            if owed is None:
                self._owed[k] = legs
            else:
                owed.add(legs)
        if self._owed and self._carry_timer is None and not self._closed:
            # Alone (no other pay call in progress), nothing will carry it soon: send at
            # once, so that a client reading right after its payment does not wait.
            delay_s = self.settings.phase2_carry_ms / 1000 if self._carriers > 1 else 0.0
            self._carry_timer = asyncio.get_running_loop().call_later(delay_s, self._send_owed)

    @contextlib.contextmanager
    def carrier(self) -> Iterator[None]:
        """A pay call in progress: it will make a phase-one call that can carry what is owed."""
        self._carriers += 1
        try:
            yield
        finally:
            self._carriers -= 1

    def take_owed(self) -> dict[int, Owed]:
        """What is owed now, no longer queued: the caller sends it (`send`) or carries it."""
        owed, self._owed = self._owed, {}
        return owed

    def take_owed_to(self, shards: list[int]) -> dict[int, Owed | None]:
        return {k: self._owed.pop(k, None) for k in shards}

    # -- sending ----------------------------------------------------------------------------
    async def send(self, shard: int, owed: Owed) -> None:
        """On its own, until the shard has it."""
        await self.remote.phase_two(shard, owed)
        self._confirmed(owed.payments)

    async def now(self, payments: list[PaymentRecord]) -> None:
        """Phase two of `payments` now, awaited (recovery, captures): each shard's legs in one call."""
        await asyncio.gather(*(self.send(k, legs) for k, legs in self._by_shard(payments).items()))

    def carried(self, carried: dict[int, Owed | None], replies: list[PhaseOneReply | BaseException]) -> None:
        """What phase-one calls carried (shard -> owed, in order of `replies`): confirmed,
        or sent again where it may not have been written."""
        for (k, owed), reply in zip(carried.items(), replies, strict=True):
            if owed is None:
                continue
            if isinstance(reply, BaseException):  # whether it was written is unknown: send it again
                self._spawn(self.send(k, owed))
                continue
            if not reply[2]:
                self._confirmed(owed.payments)
                continue
            refs = [*owed.posts, *owed.voids]
            again = owed.only([refs[n] for n in reply[2]])  # on partitions that could not write
            self._confirmed([p for p in owed.payments if p not in again.payments])
            self._spawn(self.send(k, again))

    def not_carried(self, carried: dict[int, Owed | None]) -> None:
        """No phase-one call went out (cancelled, failed to start): what it carried goes alone."""
        for k, owed in carried.items():
            if owed is not None:
                self._spawn(self.send(k, owed))

    @property
    def idle(self) -> bool:
        """Nothing owed and nothing on its way."""
        return not self._owed and not self._sending

    async def finish(self) -> int:
        """Send every owed phase two now and wait until the shards confirm it, and for the
        pay calls in progress to do the same (a clean stop, so that the journals it leaves
        show every payment settled); returns how many payments are still unfinished.
        Callers bound the wait: under steady traffic it lasts as long as the traffic."""
        while True:
            if self._carry_timer is not None:
                self._carry_timer.cancel()
            self._send_owed()
            if self._sending:
                await asyncio.gather(*list(self._sending), return_exceptions=True)
            elif self._carriers:
                await asyncio.sleep(0.005)
            else:
                break
        await self.state.durable()
        return len(self.state.book.unfinished)

    def close(self) -> None:
        """From here nothing is journaled or sent; the next start re-drives what is left."""
        self._closed = True
        if self._carry_timer is not None:
            self._carry_timer.cancel()
        for task in list(self._sending):
            task.cancel()

    # -- inside -------------------------------------------------------------------------------
    def _by_shard(self, payments: list[PaymentRecord]) -> dict[int, Owed]:
        """Phase two of decided payments, grouped by the shard of each leg: post if the
        payment succeeded, else void. Counts the shards each payment now waits on."""
        by_shard: dict[int, Owed] = {}
        for p in payments:
            shards: set[int] = set()
            for balance_id in payment_balances(p) if p.fx is not None else (p.balance_from, p.balance_to):
                if not balance_id:  # aborted in recovery, one side never held
                    continue
                k = self.remote.shard_of(balance_id)
                owed = by_shard.get(k)
                if owed is None:
                    owed = by_shard[k] = Owed()
                ref = HoldRef(p.id, balance_id, p.amount_minor if p.hold_id else None, p.hold_id, p.capture_seq)
                (owed.posts if p.status == PaymentStatus.SUCCESS else owed.voids).append(ref)
                if k not in shards:
                    shards.add(k)
                    owed.payments.append(p.id)
            assert shards, f"decided payment {p.id} has no leg"
            self._legs_left[p.id] = len(shards)
        return by_shard

    def _send_owed(self) -> None:
        """What no phase-one call has carried goes on its own."""
        self._carry_timer = None
        for k, o in self.take_owed().items():
            self._spawn(self.send(k, o))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        if self._closed:  # stopping or crashed: the next start re-drives it
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._sending[task] = None
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        del self._sending[task]

    def _confirmed(self, payment_ids: list[str]) -> None:
        """A shard has made these payments' legs durable; once all their shards have, they
        are complete (journaled with the next flush; only recovery work depends on it).
        After close, the next start's recovery finds them posted and completes them."""
        completed = []
        for payment_id in payment_ids:
            left = self._legs_left[payment_id] - 1
            if left:
                self._legs_left[payment_id] = left
                continue
            del self._legs_left[payment_id]
            if payment_id in self.state.book.unfinished:
                completed.append(payment_id)
        if completed and not self._closed:
            self.state.commit(Completions(completed))
