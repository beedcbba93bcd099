"""The README's tour, run as written against a real server (twice: it must be
re-runnable), so that the first commands a new user types cannot rot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.server import Server

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_script() -> str:
    text = README.read_text()
    start = text.index("```sh", text.index("<!-- tour -->")) + len("```sh")
    return text[start : text.index("```", start)]


def test_the_readme_tour_runs_as_written(server: Server) -> None:
    for _ in range(2):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", tour_script()],
            env={**os.environ, "URL": server.url, "TOKEN": server.token},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0 and not done.stderr, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[1:4] == ["not_enough_money", "25.50", "success"], lines
        assert lines[5] == "success" and '"amount":"-5.00"' in lines[6], lines
