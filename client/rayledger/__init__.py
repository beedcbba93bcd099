"""rayledger: a payments ledger on Ray actors. `rayledger.client` is its Python client."""
