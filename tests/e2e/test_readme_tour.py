"""The README's tour, run as written against a real server (twice: it must be
re-runnable), so that the first commands a new user types cannot rot."""

from __future__ import annotations

import os
import re
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


def test_the_readmes_examples_speak_to_the_tours_url() -> None:
    """Every request in the README's shell examples goes to "$URL", as the tour defines it,
    so that they reach the server the reader started, wherever it listens."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    requests = [line for block in blocks for line in block.splitlines() if re.match(r"\s*(api|curl)\s", line)]
    assert len(requests) > 40, requests
    for line in requests:
        assert '"$URL/' in line and not re.search(r"localhost|127\.0\.0\.1", line), line
