"""`rayledger serve` with its embedded Ray: however serve ends, no process of its Ray
session and none of its temp files stay behind, so a restart never depends on what a
previous one left; and its dashboard listens where `--dashboard-host` says."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from benchmarks.server import ray_temp_dirs
from tests.support.server import Server

GONE_BOUND_S = 120.0  # fails the test; never a measurement


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            continue
    return left


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until the condition holds or the bound passes (the caller then asserts it)."""
    deadline = time.monotonic() + GONE_BOUND_S
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def describe(procs: list[psutil.Process]) -> list[str]:
    found = []
    for p in procs:
        try:
            found.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
        except psutil.Error:
            continue
    return found


def clean_up(procs: list[psutil.Process], temp_dirs: set[str]) -> None:
    """What a failed test leaves, killed by PID (all of them this test's server's)."""
    for p in alive(procs):
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=30)
    for path in temp_dirs:
        shutil.rmtree(path, ignore_errors=True)


def test_kill9_of_serve_ends_its_embedded_ray_and_removes_its_temp_dir(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    assert server.process is not None
    procs = server.tree()
    temp_dirs = ray_temp_dirs(procs)
    try:
        assert len(temp_dirs) == 1, temp_dirs
        serve = procs[0]
        # The raylet's children (its agents, the actors' workers): serve is not their parent.
        assert any(p.ppid() not in (serve.pid, os.getpid()) for p in procs[1:]), describe(procs)
        watchdogs = [p for p in procs if "rayledger_cli.watchdog" in " ".join(p.cmdline())]
        server.process.kill()  # serve alone, as `kill -9 <pid of rayledger serve>` does
        server.process.wait(timeout=30)
        [temp_dir] = temp_dirs
        wait_until(lambda: not os.path.exists(temp_dir))
        assert not os.path.exists(temp_dir), f"temp dir left after kill -9 of serve, with {describe(alive(procs))}"
        # Its processes go first: none of them is left once the dir is (its watchdog ends next).
        left = alive([p for p in procs if p not in watchdogs])
        assert not left, f"left running after kill -9 of serve: {describe(left)}"
        wait_until(lambda: not alive(watchdogs))
        assert not alive(watchdogs)
        [gone] = [e for e in serve_events(server) if e["event"] == "serve_gone"]  # the watchdog said what it did
        assert gone["serve_pid"] == serve.pid and gone["ray_processes_stopped"] >= 1, gone
    finally:
        clean_up(procs, temp_dirs)


def serve_events(server: Server) -> list[dict[str, object]]:
    """What serve (and its watchdog) said: every line of its output is a JSON object."""
    lines = server.log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("logger") == "rayledger.serve"]


class DashboardServer(Server):
    def command(self) -> list[str]:
        return [word for word in super().command() if word != "--no-dashboard"]


def test_the_dashboard_listens_on_its_host_and_a_clean_stop_leaves_nothing(tmp_path: Path) -> None:
    server = DashboardServer(tmp_path / "data", "--dashboard-host", "0.0.0.0").start()
    procs = server.tree()
    temp_dirs = ray_temp_dirs(procs)
    try:
        said = [e for e in serve_events(server) if e["event"] == "ray_dashboard"]
        if not said:
            pytest.skip("this Ray runs no dashboard (installed without ray[default])")
        url = re.fullmatch(r"http://([^:\s]+):(\d+)", str(said[0]["url"]))
        assert url is not None, said
        host, port = url[1], int(url[2])
        [dashboard] = [p for p in procs if any(part.endswith("dashboard/dashboard.py") for part in p.cmdline())]
        listening = {(c.laddr.ip, c.laddr.port) for c in dashboard.net_connections("tcp") if c.status == "LISTEN"}
        assert ("0.0.0.0", port) in listening, listening
        connection = http.client.HTTPConnection(host, port, timeout=30)  # the address the banner gives
        try:
            connection.request("GET", "/")
            assert connection.getresponse().status < 500
        finally:
            connection.close()
        assert server.stop() == 0
        wait_until(lambda: not alive(procs))
        assert not alive(procs), f"left running after a clean stop: {describe(alive(procs))}"
        assert not any(map(os.path.exists, temp_dirs)), temp_dirs
        assert not [e for e in serve_events(server) if e["event"] == "serve_gone"]  # a clean stop is no death
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill9()
        clean_up(procs, temp_dirs)


def test_the_sweep_kills_its_session_and_nothing_else(tmp_path: Path) -> None:
    """What the watchdog kills: processes that name the session's dir or hold a file in it
    (as Ray's daemons and workers do), not one in a dir whose name merely starts the same,
    nor the ones it is told to spare (serve itself)."""
    from rayledger_cli import sweep_session

    session, other = tmp_path / "rayledger-abcdefgh", tmp_path / "rayledger-abcdefgh2"
    session.mkdir()
    other.mkdir()
    hold = "import sys, time; f = open(sys.argv[1], 'w'); time.sleep(600)"

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", *args])

    holder = start(hold, str(session / "worker.out"))
    naming = start("import time; time.sleep(600)", f"--temp-dir={session}")
    bystander = start(hold, str(other / "worker.out"))
    spared = start(hold, str(session / "driver.log"))
    everyone = [holder, naming, bystander, spared]
    try:
        wait_until(lambda: all((d / f).exists() for d, f in [(session, "worker.out"), (other, "worker.out")]))
        wait_until(lambda: (session / "driver.log").exists())
        assert sweep_session(str(session), spare={spared.pid}) == 2
        assert holder.wait(timeout=30) == naming.wait(timeout=30) == -9
        assert bystander.poll() is None and spared.poll() is None
    finally:
        for p in everyone:
            p.kill()
            p.wait(timeout=30)
