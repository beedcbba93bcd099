"""The server process helper lives with the benchmarks (which drive it too)."""

from benchmarks.server import Server, free_port

__all__ = ["Server", "free_port"]
