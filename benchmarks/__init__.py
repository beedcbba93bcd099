"""Load generators and scenarios; each run prints one JSON line (see benchmarks/README.md)."""
