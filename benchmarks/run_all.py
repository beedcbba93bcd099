"""Run every benchmark and rewrite benchmarks/RESULTS.md: one command.

    python -m benchmarks.run_all            # the full set (about 10 minutes)
    python -m benchmarks.run_all --quick    # shorter runs, smaller sizes (a smoke run)

Each benchmark runs in its own process and prints one JSON line; this collects them into
a table with the machine description and the exact commands. Everything in RESULTS.md
below the analysis marker is kept as written (the profile and its reading).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import ray
from rich.console import Console

RESULTS = Path(__file__).with_name("RESULTS.md")
MARKER = "<!-- analysis: kept across regenerations -->"


@dataclass
class Bench:
    name: str
    args: list[str]
    quick: list[str]
    target: str
    met: Callable[[dict[str, Any]], bool] | None = None  # for the "met" column

    def command(self, quick: bool) -> list[str]:
        return [sys.executable, "-m", *self.args, *(self.quick if quick else [])]


LOAD = ["benchmarks.load", "--no-progress", "--balances", "1000", "--seconds", "20"]
C64 = ["--connections", "64"]
QUICK_LOAD = ["--balances", "100", "--seconds", "5"]
BENCHES = [
    Bench("HTTP ceiling (GET /healthz)", [*LOAD, *C64, "--scenario", "ping"], QUICK_LOAD, "reference"),
    Bench(
        "single payments, uniform (2 shards)",
        [*LOAD, *C64, "--scenario", "uniform"],
        QUICK_LOAD,
        "≥ 3x the PostgreSQL peer: measured by ../shared/bench/compare.py (see below)",
    ),
    *(
        Bench(
            f"single payments, uniform, {n} shard{'s' if n > 1 else ''}",
            [*LOAD, *C64, "--shards", str(n)],
            QUICK_LOAD,
            "scale-out",
        )
        for n in (1, 4)
    ),
    Bench("single payments, hot balance", [*LOAD, *C64, "--scenario", "hot"], QUICK_LOAD, "≥ 50% of uniform"),
    Bench(
        "batch endpoint (100 per request)",
        [*LOAD, "--scenario", "batch", "--batch", "100", "--connections", "16"],
        QUICK_LOAD,
        "≥ 50,000/s (wrk: compare.py --batch 100)",
        lambda r: r["payments_per_s"] >= 50_000,
    ),
    Bench("read-heavy (80% GET balance)", [*LOAD, *C64, "--scenario", "read"], QUICK_LOAD, "—"),
    Bench(
        "engine only, Ray, 64 per call",
        ["benchmarks.engine", "--batch", "64", "--concurrency", "1", "--seconds", "15"],
        ["--seconds", "4", "--balances", "100"],
        "reference",
    ),
    Bench(
        "engine only, Ray, 500 per call, 2 in flight",
        ["benchmarks.engine", "--batch", "500", "--concurrency", "2", "--seconds", "15"],
        ["--seconds", "4", "--balances", "100"],
        "reference",
    ),
    Bench(
        "engine only, no Ray, 500 per call, 2 in flight",
        ["benchmarks.engine", "--in-process", "--batch", "500", "--concurrency", "2", "--seconds", "15"],
        ["--seconds", "4", "--balances", "100"],
        "reference",
    ),
    Bench(
        "recovery of 1M journal records",
        ["benchmarks.recovery", "--no-progress", "--records", "1000000"],
        ["--records", "50000"],
        "serving in ≤ 10 s",
        lambda r: r["serve_ready_s"] <= 10,
    ),
    Bench(
        "memory per balance (1M balances)",
        ["benchmarks.memory", "--no-progress", "--balances", "1000000"],
        ["--balances", "100000"],
        "≤ 300 B",
        lambda r: r["heap_bytes_per_balance"] <= 300,
    ),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = psutil.virtual_memory().total / 2**30
    return (
        f"{psutil.cpu_count()} CPUs ({cpu}), {memory_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, Ray {ray.__version__}"
    )


def figures(r: dict[str, object]) -> str:
    keys = (
        "payments_per_s",
        "requests_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "call_p50_ms",
        "errors",
        "payments_per_coordinator_call",
        "records",
        "replay_s",
        "serve_ready_s",
        "verify_s",
        "heap_bytes_per_balance",
        "rss_bytes_per_balance",
    )
    per_payment = ("payments_per_s", "payments_per_coordinator_call")
    shown = [k for k in keys if k in r and not (k in per_payment and r.get("payments") == 0)]
    parts = [f"{k} {r[k]}" for k in shown]
    for unit in ("payment", "request"):
        cpu = r.get(f"cpu_ms_per_{unit}")
        if isinstance(cpu, dict):  # the steadier figure: CPU each one cost the server
            parts.append(f"server_cpu_ms_per_{unit} {cpu['server']}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    rows = []
    uniform: dict[str, Any] | None = None
    for n, bench in enumerate(BENCHES, 1):
        command = bench.command(args.quick)
        with console.status(f"[{n}/{len(BENCHES)}] {bench.name}"):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        report = json.loads(lines[-1]) if lines else {"error": done.stderr.strip().splitlines()[-1:]}
        print(json.dumps({"benchmark": bench.name, **report}))
        if bench.args[-1] == "uniform":
            uniform = report
        met = ""
        checks_failed = any(report.get(k) is False for k in ("conserved", "verify_ok", "served"))
        if "error" in report or done.returncode != 0 or checks_failed:
            met = "failed"
        elif bench.met:
            met = "yes" if bench.met(report) else "no"
        elif bench.target.startswith("≥ 50%") and uniform and "payments_per_s" in uniform:
            met = "yes" if report["payments_per_s"] >= 0.5 * uniform["payments_per_s"] else "no"
        shown = " ".join(["python", *command[1:]]).replace(" --no-progress", "")
        rows.append((bench.name, figures(report), bench.target, met, shown, report))
    write(rows, args.quick)
    console.print(f"wrote {RESULTS}")
    return 0


def write(rows: list[tuple[str, str, str, str, str, dict[str, object]]], quick: bool) -> None:
    kept = ""
    if RESULTS.exists() and MARKER in RESULTS.read_text():
        kept = RESULTS.read_text().split(MARKER, 1)[1]
    today = datetime.date.today().isoformat()
    out = [
        "# Benchmark results",
        "",
        f"Regenerated by `python -m benchmarks.run_all{' --quick' if quick else ''}` on {today}.",
        f"Machine: {machine()}. Load generator and server share the machine"
        " (the load generator's CPU is taken from the server's).",
        "",
        "| benchmark | figures | target | met |",
        "|---|---|---|---|",
    ]
    out += [f"| {name} | {figs} | {target} | {met} |" for name, figs, target, met, _, _ in rows]
    out += ["", "Commands:", "", "```sh"]
    out += [command for *_, command, _ in rows]
    out += ["```", "", "Raw reports (one JSON line each):", "", "```json"]
    out += [json.dumps(report) for *_, report in rows]
    out += ["```", "", MARKER]
    RESULTS.write_text("\n".join(out) + (kept if kept else "\n"))


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    sys.exit(main())
