"""The pure core of rayledger: money, currencies, balances, payments, records.

Nothing here performs I/O, reads a clock or imports Ray, SQLite or aiohttp: every
function is a deterministic step that the actors journal and replay.
"""
