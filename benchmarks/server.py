"""The real server as a child process: start it as a user would (`rayledger serve`), wait
until /readyz says ready, stop it with SIGTERM or kill its whole process tree with SIGKILL.

Only processes this helper started are signalled (by PID, walking its own tree).
"""

from __future__ import annotations

import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from gateway.auth import new_admin_token

READY_TIMEOUT_S = 120.0


PORTS_FROM = 20_000  # above Ray's worker ports (10002-19999 by default)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port from that range (what binding
    port 0 returns) is what every process binding port 0 is handed next: Ray's daemons, a
    shard's stream listener. Seen: a test's server lost its port to a shard's listener
    between the pick and its bind, and the readiness probe read the stream's handshake."""
    for _ in range(200):
        port = random.randint(PORTS_FROM, _ephemeral_low() - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded range: any free port
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rayledger_command() -> list[str]:
    script = Path(sys.executable).parent / "rayledger"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rayledger_cli"]


class Server:
    def __init__(
        self,
        data_dir: Path,
        *extra_args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.port = port or free_port()
        self.extra_args = extra_args
        self.token = token or new_admin_token()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *rayledger_command(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--no-dashboard",
            "--partitions",
            "4",
            *self.extra_args,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "RAYLEDGER_ADMIN_TOKEN": self.token, "RAY_DEDUP_LOGS": "0", **self.extra_env}

    def start(self) -> Server:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill9()  # never leave a half-started server behind
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            # HTTPException: something else answered on the port (the server then fails to bind and exits)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> int:
        """SIGKILL every process of the server (gateway, Ray, actors) at once."""
        procs = self.tree()
        left_behind = ray_temp_dirs(procs)
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        if self.process is not None:
            self.process.wait(timeout=30)
        for path in left_behind:  # a killed server cannot remove its embedded Ray's files
            shutil.rmtree(path, ignore_errors=True)
        return len(procs)

    def actor_pids(self, class_name: str) -> list[int]:
        """Worker processes of one actor class (Ray titles them `ray::<Class>`)."""
        found = []
        for p in self.tree():
            try:
                if p.cmdline()[:1] and p.cmdline()[0].startswith(f"ray::{class_name}"):
                    found.append(p.pid)
            except psutil.Error:
                continue
        return found

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C or a process manager would; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        procs = self.tree()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise
        psutil.wait_procs([p for p in procs if p.is_running()], timeout=30)
        return code


def ray_temp_dirs(procs: list[psutil.Process]) -> set[str]:
    """The private temp dirs (`rayledger-*`) of an embedded Ray, from its processes' command
    lines."""
    found = set()
    for p in procs:
        try:
            found |= set(_TEMP_DIR.findall(" ".join(p.cmdline())))
        except psutil.Error:
            continue
    return found


_TEMP_DIR = re.compile(r"(/[^\s=]*/rayledger-[A-Za-z0-9_]{8})(?=/|\s|$)")


class ClusterServer(Server):
    """A Ray head started with `ray start` (private temp dir, token auth) and the supervisor
    as a separate `rayledger serve --address` process, so the supervisor alone can be
    killed while the actors (the HTTP ingress in the coordinators included) live on in the
    cluster. `kill9()` kills both."""

    def __init__(self, data_dir: Path, **kwargs: object) -> None:
        super().__init__(data_dir, **kwargs)  # type: ignore[arg-type]
        self.ray_port = free_port()
        self.temp_dir: Path | None = None
        self.token_path = data_dir.parent / f"ray-token-{self.ray_port}"

    def _ray_env(self) -> dict[str, str]:
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def command(self) -> list[str]:
        return [*super().command(), "--address", f"127.0.0.1:{self.ray_port}"]

    def env(self) -> dict[str, str]:
        return {**super().env(), **self._ray_env()}

    def _head_running(self) -> bool:
        return self.temp_dir is not None and bool(self._cluster_processes())

    def _cluster_processes(self) -> list[psutil.Process]:
        if self.temp_dir is None:
            return []
        found: list[psutil.Process] = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.temp_dir) in part for part in p.info["cmdline"] or []):
                    found += [p, *p.children(recursive=True)]
            except psutil.Error:
                continue
        return list({p.pid: p for p in found}.values())

    def start(self) -> Server:
        if not self._head_running():
            if not self.token_path.exists():
                self.token_path.write_text(new_admin_token())
                self.token_path.chmod(0o600)
            self.temp_dir = Path(tempfile.mkdtemp(prefix="rl-head-"))
            ray = Path(sys.executable).parent / "ray"
            with open(self.log_path, "ab") as log:
                subprocess.run(
                    [
                        str(ray), "start", "--head", "--node-ip-address", "127.0.0.1",
                        "--port", str(self.ray_port), "--temp-dir", str(self.temp_dir),
                        "--include-dashboard", "false", "--object-store-memory", str(128 * 2**20),
                        "--disable-usage-stats",
                    ],
                    env=self._ray_env(), stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120,
                )  # fmt: skip
        return super().start()

    def kill_gateway(self) -> None:
        """SIGKILL the supervisor process alone; the actors keep running (and serving HTTP)
        in the cluster."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def tree(self) -> list[psutil.Process]:
        gateway = super().tree() if self.process is not None and self.process.poll() is None else []
        return list({p.pid: p for p in [*gateway, *self._cluster_processes()]}.values())

    def stop(self) -> int:
        code = super().stop() if self.process is not None else 0
        procs = self._cluster_processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=15)
        self._remove_temp_dir()
        return code

    def kill9(self) -> int:
        killed = super().kill9()
        self._remove_temp_dir()  # the head's files; the next start makes a new one
        return killed

    def _remove_temp_dir(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None
