"""The real server as a child process: start it as a user would (`rayledger serve`), wait
until /readyz says ready, stop it with SIGTERM or kill its whole process tree with SIGKILL.

Only processes this helper started are signalled (by PID, walking its own tree).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
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
        self.token = token or secrets.token_urlsafe(32)
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
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        self.kill9()
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
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        assert self.process is not None
        self.process.wait(timeout=30)
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
