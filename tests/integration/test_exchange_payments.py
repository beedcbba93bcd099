"""Exchange payments in the in-process ledger: four holds under one payment id, decided
once; a quote is used once, and given back when its payment is aborted undecided (a
journal could not be written), so that the client's retry may still use it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from actors.topology import partition_of
from ledger.records import FxQuote
from ledger.results import PaymentStatus
from tests.support.audit import audit
from tests.support.local import LocalLedger
from tests.support.scenario import now_ms, open_funded_balances, payment


async def _quote(ledger: LocalLedger, source: str, target: str, amount: int, n: int) -> FxQuote:
    registry = ledger.client.registry
    infos = await registry.call("lookup_balances", [source, target])
    quote = await registry.call("create_quote", f"fxq_{n}", infos[0], infos[1], amount, now_ms() + 60_000)
    assert isinstance(quote, FxQuote), quote
    return quote


async def test_a_quote_is_used_once_and_given_back_by_an_aborted_payment(tmp_path: Path) -> None:
    ledger = await LocalLedger(tmp_path, memory=True, partitions=4, shards=2).start()
    _, usd, usd_deposits = await open_funded_balances(ledger.client, 6, 100_00, "USD", prefix="u")
    _, eur, eur_deposits = await open_funded_balances(ledger.client, 6, 0, "EUR", prefix="e")
    registry = ledger.client.registry
    assert not isinstance(await registry.call("set_rate", "USD", "EUR", "0.9"), str)
    liquidity = {b.currency: b.id for b in await registry.call("liquidity_balances")}
    issuer = (await registry.call("currency", "EUR", ensure_issuer=True)).issuer_balance_id
    [funding] = await ledger.client.pay([payment(issuer, liquidity["EUR"], 1_000_00, "EUR")])
    payer, payee = usd[0], eur[0]

    quote = await _quote(ledger, payer, payee, 10_01, 1)
    assert (quote.rate, quote.amount_to_minor) == ("0.9", 9_00)  # 9.009 rounded down
    first = msgspec.structs.replace(payment(payer, payee, 10_01), fx=quote)
    [paid] = await ledger.client.pay([first])
    assert paid.status == PaymentStatus.SUCCESS and paid.fx == quote
    [again] = await ledger.client.pay_outcomes([msgspec.structs.replace(payment(payer, payee, 10_01), fx=quote)])
    assert again.payment is not None and again.payment.status == PaymentStatus.QUOTE_EXPIRED

    # The payer's journal cannot be written: the payment is aborted (503) and gives its quote back.
    await ledger.coordinator().finish_phase2()
    store = ledger.stores[f"p-{partition_of(payer, 4)}"]  # type: ignore[index]
    store.fail_writes = True
    stuck = asyncio.ensure_future(
        ledger.client.shard(ledger.client.shard_for(payer)).call("change_balance", payer, None, 1)
    )
    shard = ledger.objects[f"shard-{ledger.client.shard_for(payer)}"]
    for _ in range(1000):
        await asyncio.sleep(0)
        if not shard.partitions[partition_of(payer, 4)].journal.writable:
            break
    second = await _quote(ledger, payer, payee, 5_00, 2)
    [refused] = await ledger.client.pay_outcomes([msgspec.structs.replace(payment(payer, payee, 5_00), fx=second)])
    assert refused.refused == "unavailable"
    store.fail_writes = False
    await stuck
    [retried] = await ledger.client.pay_outcomes([msgspec.structs.replace(payment(payer, payee, 5_00), fx=second)])
    assert retried.payment is not None and retried.payment.status == PaymentStatus.SUCCESS
    await ledger.coordinator().finish_phase2()
    views = {v.balance_id: v for v in await ledger.client.all_balances()}
    assert views[payee].amount_minor == 9_00 + 4_50 and views[liquidity["USD"]].amount_minor == 10_01 + 5_00
    # The exchange's four sides count as two payments for the audit: one per currency.
    sides = [msgspec.structs.replace(p, balance_to=liquidity["USD"], fx=None) for p in (paid, retried.payment)] + [
        msgspec.structs.replace(
            p, balance_from=liquidity["EUR"], amount_minor=p.fx.amount_to_minor, currency="EUR", fx=None
        )
        for p in (paid, retried.payment)
    ]
    audit(await ledger.client.all_balances(), [*usd_deposits, *eur_deposits, funding, *sides])
    await ledger.stop()
