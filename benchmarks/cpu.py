"""CPU time by role over a measured window: a steadier figure than throughput here.

On two shared cores the same run gives 450 to 750 payments/s from one hour to the next,
because every process waits for a core; the CPU each payment costs moves far less, so a
change is judged by `cpu_ms_per_payment` as well as by payments/s.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

ROLES = ("client", "gateway", "coordinator", "shards", "history", "registry", "ray")


def role_of(process: psutil.Process) -> str:
    """Which part of the system a process of the server's tree is (Ray titles its
    actor workers `ray::<Class>`, and then `ray::<Class>.<method>` while they run one)."""
    try:
        cmdline = process.cmdline() or [process.name()]
    except psutil.Error:
        return "ray"
    title, args = cmdline[0], " ".join(cmdline[:3])
    if title.startswith(("ray::IngressCoordinator", "ray::PaymentCoordinator")):  # with its HTTP ingress
        return "coordinator"
    if title.startswith("ray::BalanceShard"):
        return "shards"
    if title.startswith("ray::Registry"):
        return "registry"
    if "journal.indexer" in args:  # a coordinator's or a shard's history index, stored
        return "history"
    if " serve" in args:
        return "gateway"
    return "ray"


def _seconds(process: psutil.Process) -> float:
    try:
        t = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


class CpuMeter:
    """`start()` then `stop()` around the measured phase; `tree` lists the server's
    processes (empty when the server is not ours: then only the client is measured)."""

    def __init__(self, tree: Callable[[], list[psutil.Process]]) -> None:
        self.tree = tree
        self._before: dict[int, tuple[str, float]] = {}

    def _sample(self) -> dict[int, tuple[str, float]]:
        me = psutil.Process()
        sample = {me.pid: ("client", _seconds(me))}
        for p in self.tree():
            sample[p.pid] = (role_of(p), _seconds(p))
        return sample

    def start(self) -> None:
        self._before = self._sample()

    def stop(self, units: int) -> dict[str, float]:
        """CPU milliseconds per unit of work (a payment, or a request) by role; processes
        that started or ended inside the window count from zero or not at all."""
        after = self._sample()
        spent = dict.fromkeys(ROLES, 0.0)
        for pid, (role, seconds) in after.items():
            spent[role] += seconds - self._before.get(pid, (role, 0.0))[1]
        per_unit = {role: round(s * 1000 / max(units, 1), 3) for role, s in spent.items() if s > 0}
        per_unit["server"] = round(sum(v for r, v in per_unit.items() if r != "client"), 3)
        return per_unit
