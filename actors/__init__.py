"""Ray actors hosting the ledger: Registry, BalanceShard, PaymentCoordinator.

Each actor is a plain class (constructible without Ray, for tests) made remote by one
factory (`actors.factory`), named and detached in the ledger's namespace, restarted
forever by Ray, and rebuilt from its journal in `__init__`.
"""
