"""Failed console sign-ins, limited per client address.

The admin token is 256 random bits, so guessing it is hopeless; the limit keeps a
password-spraying client from filling the logs and the CPU, and the log says who tried.
Past `FAILURES_MAX` failures within `WINDOW_S` an address is refused (429 with Retry-After,
the right token included, so a guesser learns nothing) until its oldest failure ages out.
A success forgets the address's failures. The count is per ingress process (each node
counts its own) and bounded to `ADDRESSES_MAX` addresses, the stalest forgotten first.
The address is the TCP peer's: behind a proxy every client shares the proxy's, and a
lockout is then at most `WINDOW_S` for everyone (headers such as X-Forwarded-For are not
trusted, since any client can send them).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

FAILURES_MAX = 5  # per address within the window
WINDOW_S = 60.0
ADDRESSES_MAX = 10_000  # addresses with recent failures kept in memory


class FailedSignIns:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        horizon = self._clock() - WINDOW_S
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def retry_after_s(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None if it may now."""
        failures = self._recent(address)
        if len(failures) < FAILURES_MAX:
            return None
        return max(1, math.ceil(failures[0] + WINDOW_S - self._clock()))

    def failed(self, address: str) -> None:
        failures = self._recent(address)
        failures.append(self._clock())
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > ADDRESSES_MAX:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def __len__(self) -> int:
        """Addresses with failures remembered."""
        return len(self._failures)
