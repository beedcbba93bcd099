"""The Grafana dashboard queries only metrics the code defines (it would silently show
nothing after a rename otherwise)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def defined_metrics() -> set[str]:
    names = set()
    for source in (ROOT / "actors" / "telemetry.py", ROOT / "gateway" / "metrics.py"):
        names |= set(re.findall(r'"(rayledger_[a-z_]+)"', source.read_text()))
    return names


def test_the_dashboard_queries_only_defined_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(?:ray_)?(rayledger_[a-z_]+)", e)}
    defined = defined_metrics()
    assert len(defined) >= 8, defined
    unknown = set()
    for name in used:
        base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s) and name[: -len(s)] in defined), name)
        if base not in defined:
            unknown.add(name)
    assert not unknown, f"the dashboard queries metrics the code does not define: {sorted(unknown)}"
    assert defined - {n for u in used for n in defined if u.startswith(n)} == set(), "a metric has no panel"


def test_the_image_copies_every_module_the_package_installs() -> None:
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied |= {Path(src).stem if src.endswith(".py") else src for src in line.split()[1:-1]}
    missing = {*setuptools["packages"], *setuptools["py-modules"]} - copied
    assert not missing, f"the Dockerfile does not copy {sorted(missing)}: pip install would fail in the image"
