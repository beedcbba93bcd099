"""`rayledger seed` against a real server: the sample data is there, every kind of outcome
occurs, and the seeded money is conserved; it finds the server its data directory records,
and a second run says it changed nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from benchmarks.server import rayledger_command
from tests.e2e.conftest import fresh_server
from tests.support.api import Api
from tests.support.server import Server


def seed_command(*args: str) -> list[str]:
    return [*rayledger_command(), "seed", *args]


def without_server_settings() -> dict[str, str]:
    """This environment without RAYLEDGER_* settings, so that only what a test sets counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAYLEDGER_")}


# First in the module: it runs a server of its own, before the module's server starts.
def test_seed_finds_the_server_its_data_directory_records(tmp_path: Path) -> None:
    server = fresh_server(tmp_path).start()
    try:
        record = server.data_dir / "server.json"
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        assert json.loads(record.read_text())["url"] == server.url
        # No --url: not the default port (this server's is another) but the recorded one.
        found = subprocess.run(
            seed_command("--data-dir", str(server.data_dir), "--token", server.token, "--accounts", "2",
                         "--payments", "1", "--run", "found"),
            env=without_server_settings(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert found.returncode == 0 and found.stdout.startswith("seeded 2 accounts"), found.stdout + found.stderr
        assert server.stop() == 0
    finally:
        server.stop()
    assert not record.exists(), "a clean stop removes the record"
    gone = subprocess.run(
        seed_command("--data-dir", str(server.data_dir), "--token", server.token, "--run", "gone"),
        env={**without_server_settings(), "RAYLEDGER_PORT": str(server.port)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1, gone.stderr
    assert f"cannot reach the ledger at {server.url} (no server recorded in" in gone.stderr, gone.stderr


def test_seed_follows_the_servers_port_setting(tmp_path: Path, server: Server) -> None:
    """Without a record (another data directory), RAYLEDGER_HOST/RAYLEDGER_PORT, as serve reads them."""
    done = subprocess.run(
        seed_command("--data-dir", str(tmp_path / "elsewhere"), "--token", server.token, "--accounts", "2",
                     "--payments", "1", "--run", "by-port"),
        env={**without_server_settings(), "RAYLEDGER_PORT": str(server.port)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("seeded 2 accounts"), done.stdout + done.stderr


async def test_seed_loads_sample_data_through_the_api(api: Api, server: Server) -> None:
    done = subprocess.run(
        [*rayledger_command(), "seed", "--url", server.url, "--token", server.token, "--accounts", "10",
         "--payments", "40", "--run", "demo"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # One line, first (no blank line left where a progress bar would be on a terminal).
    assert done.stdout.startswith("seeded 10 accounts, 12 balances, 12 deposits, 40 payments: ")
    assert done.stdout.count("\n") == 1, done.stdout
    for status in ("success", "not_enough_money", "currencies_dont_match"):
        assert status in done.stdout

    listed = (await api.get("/v1/accounts?limit=100")).body["data"]
    seeded = [a for a in listed if a["email"].startswith("demo-")]
    assert len(seeded) == 10
    total_minor = 0
    deposits_minor = 0
    for account in seeded:
        for balance in (await api.get(f"/v1/accounts/{account['id']}")).body["balances"]:
            view = (await api.get(f"/v1/balances/{balance['id']}")).body
            total_minor += int(view["amount"].replace(".", ""))
            paid = (await api.get(f"/v1/payments?balance={balance['id']}&limit=100")).body["data"]
            deposits = [p for p in paid if p.get("description") == "deposit" and p["balance_to"] == balance["id"]]
            assert len(deposits) == 1
            deposits_minor += int(deposits[0]["amount"].replace(".", ""))
    assert total_minor == deposits_minor  # payments only moved money among the seeded balances


async def test_seed_again_replays_and_cli_errors_are_one_line(api: Api, server: Server) -> None:
    command = [*rayledger_command(), "seed", "--url", server.url, "--token", server.token, "--accounts", "4",
               "--payments", "6", "--run", "twice"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    accounts = await api.every_page("/v1/accounts")
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "replayed" not in first.stdout, first.stdout
    made = first.stdout.removeprefix("seeded ").rstrip("\n")
    # 4 accounts, 5 balances (the first account has a EUR one too), 5 deposits, 6 payments
    assert again.stdout == f"run 'twice' was loaded before: replayed all 20 requests, nothing changed ({made})\n", (
        "the second run replays the first, outcome for outcome, and says so"
    )
    assert await api.every_page("/v1/accounts") == accounts, "and changes nothing"

    unreachable = subprocess.run(
        [*rayledger_command(), "seed", "--url", "http://127.0.0.1:9", "--token", "x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert unreachable.returncode != 0 and "Traceback" not in unreachable.stderr
    assert unreachable.stderr.count("\n") == 1 and "cannot reach" in unreachable.stderr
    refused = subprocess.run(
        [*rayledger_command(), "seed", "--url", server.url, "--token", "rla_wrong", "--run", "nope"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr and "401" in refused.stderr
    version = subprocess.run([*rayledger_command(), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("rayledger ")


async def test_verify_refuses_a_live_data_directory(server: Server) -> None:
    live = subprocess.run(
        [*rayledger_command(), "verify", "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert live.returncode == 2 and "Traceback" not in live.stderr and "stop" in live.stderr, live.stderr
    assert live.stderr.count("\n") == 1


def test_an_unreachable_ray_cluster_is_one_line_at_once() -> None:
    stopped = subprocess.run(
        [*rayledger_command(), "stop", "--address", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stopped.returncode == 2 and stopped.stderr.count("\n") == 1 and "cannot reach" in stopped.stderr
