"""`rayledger` command line: serve, stop, verify, migrate, seed.

A top-level module named `rayledger_cli` rather than `cli`, so that installing the
package cannot shadow another distribution's `cli` module.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.settings import ADMIN_TOKEN_FILE, Settings, package_version, settings_from_env

LOCK_FILE = "LOCK"
SERVER_FILE = "server.json"


class DataDirLocked(Exception):
    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(
            f"another rayledger server (pid {holder}) is serving {data_dir}; stop it first or choose another --data-dir"
        )
        self.data_dir, self.holder = data_dir, holder


def lock_data_dir(data_dir: Path) -> Any:
    """Hold an exclusive lock on the data directory for the life of this process.

    flock is released by the kernel when the process dies, even by SIGKILL, so a crash
    never leaves a stale lock behind; a second server on the same journal is refused.
    """
    from journal.private import FILE_MODE, private_dir, private_file

    private_dir(data_dir)  # 0700: journals hold money and key hashes (journal.private)
    private_file(data_dir / LOCK_FILE)  # 0600, an older version's included
    handle = open(os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirLocked(data_dir, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def admin_token(data_dir: Path) -> tuple[str, str]:
    """(token, where it came from). The environment wins; otherwise one is generated on
    first start and kept 0600 in the data directory."""
    from gateway.auth import new_admin_token  # here: the watchdog imports this module and needs none of aiohttp

    from_env = os.environ.get("RAYLEDGER_ADMIN_TOKEN")
    if from_env:
        if len(from_env) < 22:
            raise SystemExit("RAYLEDGER_ADMIN_TOKEN must be at least 22 characters (128 bits)")
        return from_env, "the RAYLEDGER_ADMIN_TOKEN environment variable"
    path = data_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_admin_token() + "\n")
    return path.read_text().strip(), str(path)


def connect_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def record_server(data_dir: Path, url: str) -> Path:
    """Say where the server on this data directory answers (`rayledger seed` and scripts
    read it), while it serves: removed on a clean stop; after a crash it names a gone pid."""
    import json

    from journal.private import write_private

    path = data_dir / SERVER_FILE
    draft = data_dir / f".{SERVER_FILE}.{os.getpid()}"
    draft.unlink(missing_ok=True)
    write_private(draft, json.dumps({"url": url, "pid": os.getpid()}).encode() + b"\n")
    os.replace(draft, path)  # whole or not at all for a reader
    return path


def recorded_server(data_dir: Path) -> str | None:
    """The URL of the server serving `data_dir` on this machine, if one is recorded and
    its process lives."""
    import json

    try:
        record = json.loads((data_dir / SERVER_FILE).read_text())
        url, pid = str(record["url"]), int(record["pid"])
        os.kill(pid, 0)
    except PermissionError:  # another user's process: it lives
        return url
    except (OSError, ValueError, KeyError, TypeError):  # none, unreadable, or its server died
        return None
    return url


class RayUnreachable(Exception):
    """The Ray cluster named by --address does not answer (Ray itself would retry for minutes)."""


def require_reachable(address: str) -> None:
    """Fail fast, in one line, when nothing listens at a cluster's GCS address."""
    if address == "auto" or "://" in address:  # found by Ray itself, or a Ray Client URL
        return
    host, _, port = address.rpartition(":")
    try:
        target = (host.strip("[]") or "127.0.0.1", int(port))
        socket.create_connection(target, timeout=RAY_CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        raise RayUnreachable(f"cannot reach the Ray cluster at {address}: {exc}") from None


def embedded_ray_options(settings: Settings, temp_dir: str) -> dict[str, Any]:
    """ray.init's arguments for the embedded single-node cluster."""
    return {
        "namespace": settings.namespace,
        "include_dashboard": settings.dashboard,
        "dashboard_host": settings.dashboard_host,
        "object_store_memory": settings.object_store_memory_bytes,
        "_temp_dir": temp_dir,
        "logging_level": logging.WARNING,
        "configure_logging": False,  # Ray's lines go through our JSON handler (actors.logs.configure)
    }


def say(name: str, level: str = "info", **fields: object) -> None:
    """One JSON line on serve's output (errors and warnings on stderr): every line serve
    prints is a JSON object, like its actors' and Ray's, so one log pipeline reads them all.
    Stdlib json: the watchdog says things too, and imports nothing it can do without."""
    line = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": "rayledger.serve",
        "event": name,
        **fields,
    }
    print(
        json.dumps(line, separators=(",", ":")),
        file=sys.stderr if level in ("warning", "error") else sys.stdout,
        flush=True,
    )


def start_ray(settings: Settings, temp_dir: str | None) -> str | None:
    """Join a cluster, or start an embedded one in `temp_dir`. Returns the dashboard's URL."""
    import ray

    from actors.loop import SETUP_HOOK

    runtime_env = {"worker_process_setup_hook": SETUP_HOOK}
    if settings.ray_address:
        require_reachable(settings.ray_address)
        context = ray.init(
            address=settings.ray_address,
            namespace=settings.namespace,
            logging_level=logging.WARNING,
            configure_logging=False,  # as embedded_ray_options says
            runtime_env=runtime_env,
        )
        return context.dashboard_url or None
    assert temp_dir is not None
    context = ray.init(**embedded_ray_options(settings, temp_dir), runtime_env=runtime_env)
    return f"http://{context.dashboard_url}" if context.dashboard_url else None


WATCHDOG_STOP_S = 60.0  # a clean stop waits this long at most for the watchdog's sweep


def start_watchdog(temp_dir: str) -> subprocess.Popen[bytes]:
    """A process that outlives `serve` to stop its embedded Ray. Ray ends its own children
    with the process that started them, but not theirs: the raylet's agents
    (ray::DashboardAgent, ray::RuntimeEnvAgent) survive a `kill -9` of serve, and so does
    the temp dir. The watchdog reads a pipe only serve writes to; the kernel closes it when
    serve exits, however it exits. Started before Ray, so that no moment is uncovered; in
    a session of its own, so that the Ctrl-C or hangup that ends serve does not end it too."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, rayledger_cli; sys.exit(rayledger_cli.watchdog(sys.argv[1], int(sys.argv[2])))",
            temp_dir,
            str(os.getpid()),
        ],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )


def stop_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    """A clean stop: tell the watchdog so (it then sweeps quietly) and wait for its sweep."""
    try:
        watchdog.communicate(b"stop\n", timeout=WATCHDOG_STOP_S)
    except (subprocess.TimeoutExpired, OSError) as exc:
        say("watchdog_unfinished", "error", error=type(exc).__name__)


def watchdog(temp_dir: str, serve_pid: int) -> int:
    """The watchdog's body: wait for serve's end of the pipe to close, then kill every
    process of its Ray session and remove the temp dir."""
    told = b""
    while chunk := sys.stdin.buffer.read(64):
        told += chunk
    killed = sweep_session(temp_dir, spare={os.getpid(), serve_pid})
    shutil.rmtree(temp_dir, ignore_errors=True)
    if told != b"stop\n":  # serve died without stopping Ray
        try:
            say("serve_gone", "warning", serve_pid=serve_pid, ray_processes_stopped=killed)
        except OSError:  # nobody reads serve's stderr any more
            pass
    return 0


def session_processes(temp_dir: str, spare: set[int]) -> list[Any]:
    """The processes of the Ray session in `temp_dir`, and their descendants. Ray's daemons
    name the dir on their command lines; workers and agents retitle themselves, but every
    process of the session keeps its log files open in it. The dir is private to this
    serve (mkdtemp), so no other process has a reason to name it or hold a file there."""
    import psutil

    dirs = {temp_dir.rstrip("/"), os.path.realpath(temp_dir)}  # open files show the real path

    def names(path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in dirs)

    matched: list[Any] = []
    for p in psutil.process_iter():
        try:
            if any(names(w) for part in p.cmdline() for w in part.split("=")) or any(
                names(f.path) for f in p.open_files()
            ):
                matched += [p, *p.children(recursive=True)]
        except psutil.Error:  # gone meanwhile, a zombie, or another user's
            continue
    return [p for p in {p.pid: p for p in matched}.values() if p.pid not in spare and _alive(p)]


def _alive(p: Any) -> bool:
    """Running, and not a zombie: a killed orphan waits for init to reap it, and a kill
    cannot end it any further."""
    import psutil

    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def sweep_session(temp_dir: str, spare: set[int], bound_s: float = 30.0) -> int:
    """SIGKILL the session's processes until none is left (a process forked between a scan
    and its parent's kill is found by the next scan); returns how many were killed. SIGKILL
    because every acknowledged operation is already in the journals: an actor has nothing
    to finish, and the next start replays them."""
    import psutil

    killed = 0
    deadline = time.monotonic() + bound_s
    while (procs := session_processes(temp_dir, spare)) and time.monotonic() < deadline:
        for p in procs:
            try:
                p.kill()
                killed += 1
            except psutil.Error:
                pass
        while any(map(_alive, procs)) and time.monotonic() < deadline:
            time.sleep(0.05)
    return killed


RAY_CONNECT_TIMEOUT_S = 5.0
INGRESS_CHECK_S = 1.0  # how soon a coordinator Ray restarted serves HTTP again
INGRESS_STOP_WAIT_S = 30.0  # draining requests and sending owed phase two, all coordinators


def _supervise(
    coordinators: list[Any], webhooks: Any, host: str, port: int, keys: tuple[bytes, bytes], stopping: threading.Event
) -> None:
    """Until SIGINT/SIGTERM: keep every coordinator's ingress up, and webhook delivery
    going (a restarted webhooks actor starts delivering at its first call). `serve_http`
    and `ready` are idempotent and cheap once serving; a call to an actor that is
    restarting waits for it (Ray retries it on the new incarnation), and the next check is
    sent only after it answers."""
    import ray

    out: dict[Any, int] = {}
    while not stopping.wait(INGRESS_CHECK_S):
        for k, coordinator in enumerate(coordinators):
            if k not in out.values():
                out[coordinator.serve_http.remote(host, port, *keys)] = k
        if -1 not in out.values():
            out[webhooks.ready.remote()] = -1
        done, _ = ray.wait(list(out), num_returns=len(out), timeout=0)
        for ref in done:
            k = out.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:  # the port taken by another program, an actor lost for good
                error = f"{type(exc).__name__}: {exc}"
                if k == -1:
                    say("webhooks_unready", "error", error=error)
                else:
                    say("cannot_serve_http", "error", coordinator=k, error=error)


def serve(settings: Settings) -> int:
    """The supervisor: starts Ray (or joins a cluster), the actors and the ingress inside
    every coordinator; waits; on SIGINT/SIGTERM stops the ingresses (requests in flight
    finish, owed phase two is sent) and, if it started Ray, Ray with them. An embedded
    Ray also ends when serve is killed, by its watchdog (start_watchdog)."""
    import ray

    from actors.factory import LayoutMismatch, PartitionCountMismatch, start_actors
    from actors.logs import configure as configure_logs
    from actors.logs import track_errors
    from gateway.auth import seal_key, token_hash
    from gateway.ingress import IngressCoordinator

    data_dir = settings.data_path
    try:
        lock = lock_data_dir(data_dir)
    except DataDirLocked as exc:
        say("data_dir_locked", "error", error=str(exc))
        return 1
    try:
        token, token_source = admin_token(data_dir)
    except SystemExit as exc:  # a RAYLEDGER_ADMIN_TOKEN too short to be one
        say("admin_token_refused", "error", error=str(exc))
        return 2
    configure_logs(foreign=("aiohttp", "ray"), last_resort=True)  # Ray's own lines are JSON too
    if track_errors():
        say("error_tracking", dsn="SENTRY_DSN")
    say("starting", data_dir=str(data_dir))
    recorded: Path | None = None
    temp_dir = None if settings.ray_address else tempfile.mkdtemp(prefix="rayledger-")
    watchdog = None if temp_dir is None else start_watchdog(temp_dir)
    try:
        dashboard_url = start_ray(settings, temp_dir)
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets handlers of its own
            signal.signal(signum, lambda *_: stopping.set())
        try:
            handles = start_actors(settings, IngressCoordinator)
        except (PartitionCountMismatch, LayoutMismatch) as exc:
            say("layout_refused", "error", error=str(exc))
            return 1
        keys = token_hash(token), seal_key(token)
        loops = ray.get([c.serve_http.remote(settings.host, settings.port, *keys) for c in handles.coordinators])
        base = connect_url(settings.host, settings.port)  # where a client on this machine reaches it
        say("serving", url=base, docs=f"{base}/docs", console=f"{base}/console", listening=settings.host)
        recorded = record_server(data_dir, base)
        say("ingress", coordinators=len(loops), event_loop=loops[0])
        if dashboard_url:
            dashboard: dict[str, object] = {"url": dashboard_url}
            if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":  # Ray's default for a new local cluster
                dashboard["note"] = "it asks for Ray's token (not the ledger's): `ray get-auth-token` prints it"
            say("ray_dashboard", **dashboard)
        say("admin_token", source=token_source)
        say("ready", note="Ctrl-C stops; starting again recovers every balance")
        _supervise(handles.coordinators, handles.webhooks, settings.host, settings.port, keys, stopping)
        say("stopping")
        try:
            ray.get([c.stop_http.remote() for c in handles.coordinators], timeout=INGRESS_STOP_WAIT_S)
        except Exception as exc:  # what is left is recovered by the next start
            say("ingress_stop_unclean", "warning", error=type(exc).__name__)
        return 0
    finally:
        if temp_dir is not None:
            ray.shutdown()
            if watchdog is not None:
                stop_watchdog(watchdog)  # it removes what ray.shutdown() left
            shutil.rmtree(temp_dir, ignore_errors=True)  # the watchdog's job, unless it failed
        if recorded is not None:
            recorded.unlink(missing_ok=True)
        lock.close()


def stop(settings: Settings) -> int:
    """Stop a ledger's actors on a shared Ray cluster (before serving it with another
    layout, or for good). An embedded ledger stops with its `serve` process."""
    import ray

    from actors.factory import stop_ledger

    if not settings.ray_address:
        print("rayledger: stop needs --address (an embedded ledger stops with its serve process)", file=sys.stderr)
        return 2
    require_reachable(settings.ray_address)
    ray.init(address=settings.ray_address, namespace=settings.namespace, logging_level=logging.WARNING)
    try:
        names = stop_ledger(settings.namespace)
    finally:
        ray.shutdown()
    print(f"rayledger: stopped {', '.join(names) if names else 'nothing (no actor was running)'}")
    return 0


def verify(settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from actors.audit import count_records, journal_files
    from actors.audit import verify as audit

    console = Console()
    if not settings.data_path.is_dir():
        print(f"rayledger verify: no ledger at {settings.data_path} (give its --data-dir)", file=sys.stderr)
        return 2
    lock: Any = None
    try:  # held until the audit ends: no server starts on the journals meanwhile
        lock = lock_data_dir(settings.data_path)
    except OSError:
        pass  # a read-only copy (a backup): nothing can be serving it, audit it as it is
    except DataDirLocked as exc:
        print(
            f"rayledger verify: a server (pid {exc.holder}) is serving {exc.data_dir}, so its journals are still"
            " moving: stop it first, then verify",
            file=sys.stderr,
        )
        return 2
    files = journal_files(settings.data_path)
    total = sum(count_records(f) for f in files)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"replaying {len(files)} journals", total=total * 1 or None)
        report = audit(
            settings.data_path,
            lambda n: progress.advance(task, n),
            idempotency_window_s=settings.idempotency_window_s,
        )
    console.print(
        f"journals {report.journals}, records {report.records}, balances {report.balances}, "
        f"payments {report.payments}, transfers {report.transfers}, "
        f"open holds {report.open_holds} (open legs {report.open_legs})"
    )
    for currency, amount in sorted(report.totals.items()):
        console.print(f"  {currency}: sum {amount}")
    if report.violations:
        for violation in report.violations:
            console.print(f"[red]VIOLATION[/red] {violation}", highlight=False)
        console.print(f"[red]{len(report.violations)} violation(s)[/red]")
        return 1
    if lock is not None:
        lock.close()
    console.print("[green]OK[/green]: chains intact, state reproduced, money conserved")
    return 0


def migrate(settings: Settings) -> int:
    """Rewrite a data directory of an older journal format (journal.migrate), while no
    server can start on it."""
    from journal import JournalCorrupt
    from journal.migrate import MigrateError
    from journal.migrate import migrate as run

    data_dir = settings.data_path
    if not data_dir.is_dir():
        print(f"rayledger migrate: no ledger at {data_dir} (give its --data-dir)", file=sys.stderr)
        return 2
    try:
        lock = lock_data_dir(data_dir)
    except DataDirLocked as exc:
        print(f"rayledger migrate: a server (pid {exc.holder}) is serving {data_dir}: stop it first", file=sys.stderr)
        return 2
    try:
        run(data_dir, lambda line: print(f"rayledger migrate: {line}", flush=True))
    except (MigrateError, JournalCorrupt) as exc:  # refused before anything was moved
        print(f"rayledger migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.close()
    return 0


def seed(args: dict[str, Any]) -> int:
    from rayledger_seed import run_seed

    try:  # the server's own settings: its data directory, host and port
        settings = settings_from_env({"data_dir": args["data_dir"]})
    except (ValueError, TypeError) as exc:
        print(f"rayledger seed: {exc}", file=sys.stderr)
        return 2
    token = args["token"] or os.environ.get("RAYLEDGER_ADMIN_TOKEN")
    if token is None:
        path = settings.admin_token_path
        if not path.exists():
            print(f"rayledger seed: no --token, no RAYLEDGER_ADMIN_TOKEN and no {path}", file=sys.stderr)
            return 2
        token = path.read_text().strip()
    url, where = args["url"], ""
    if url is None:
        url = recorded_server(settings.data_path)
        where = f" (recorded in {settings.data_path / SERVER_FILE})"
        if url is None:
            url = connect_url(settings.host, settings.port)
            where = f" (no server recorded in {settings.data_path / SERVER_FILE}; give --url)"
    return run_seed(url, token, args["accounts"], args["payments"], args["run"], args["seed_value"], where=where)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="journal directory (default ./data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayledger", description="A payments ledger on Ray.")
    from journal.sqlite import FORMAT

    parser.add_argument(
        "--version", action="version", version=f"rayledger {package_version()} (journal format {FORMAT})"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="start the ledger and its REST gateway")
    _common(p_serve)
    p_serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, help="port (default 8080)")
    p_serve.add_argument("--address", dest="ray_address", help="join this Ray cluster instead of starting one")
    p_serve.add_argument("--partitions", type=int, help="partitions, fixed when the ledger is created (16)")
    p_serve.add_argument("--shards", type=int, help="BalanceShard actors (2)")
    p_serve.add_argument("--coordinators", type=int, help="PaymentCoordinator actors (1)")
    p_serve.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        default=None,
        help="do not start the Ray dashboard (its processes hold ~930 MiB resident on an idle ledger)",
    )
    p_serve.add_argument(
        "--dashboard-host",
        help="the embedded Ray dashboard's bind address (default 127.0.0.1; the container image's: 0.0.0.0)",
    )
    p_stop = sub.add_parser("stop", help="stop the ledger's actors on a Ray cluster (then serve with any layout)")
    p_stop.add_argument("--address", dest="ray_address", help="the Ray cluster (or RAYLEDGER_RAY_ADDRESS)")
    p_verify = sub.add_parser("verify", help="audit every journal offline; non-zero exit on any violation")
    _common(p_verify)
    p_migrate = sub.add_parser(
        "migrate", help="convert journals written by an older version (its files are kept in pre-migrate-N/)"
    )
    _common(p_migrate)
    p_seed = sub.add_parser("seed", help="load sample accounts, balances, deposits and payments (for demos)")
    _common(p_seed)
    p_seed.add_argument(
        "--url",
        help="a running ledger (default: the server serving --data-dir, else RAYLEDGER_HOST and RAYLEDGER_PORT)",
    )
    p_seed.add_argument("--token", help="admin token (default: RAYLEDGER_ADMIN_TOKEN, else <data-dir>/admin_token)")
    p_seed.add_argument("--accounts", type=int, default=50, help="accounts to open (default %(default)s)")
    p_seed.add_argument("--payments", type=int, default=500, help="payments between them (default %(default)s)")
    p_seed.add_argument("--run", default="seed", help="names this run's data and idempotency keys")
    p_seed.add_argument("--seed", dest="seed_value", type=int, default=1, help="random seed (default %(default)s)")
    return parser


def _plain_forwarded_logs() -> None:
    """Actors' log lines reach the supervisor's stderr through Ray, which would prefix each
    with "(actor pid=…)" in ANSI colour and fold repeated ones into "[repeated Nx]" notes.
    They stay JSON lines, one per line, as they were written (each already names its
    actor), on a terminal too. Read by Ray at import."""
    os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def _json_crash_lines() -> None:
    """An exception nothing handled ends serve with one JSON line, its traceback a field."""

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        import traceback

        say("crashed", "error", error=f"{kind.__name__}: {error}", traceback="".join(traceback.format_tb(tb)))

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    _plain_forwarded_logs()
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    if command == "seed":
        return seed(args)
    if command == "serve":  # every line a server prints is one JSON object
        _json_crash_lines()
    try:
        settings = settings_from_env(args)
    except (ValueError, TypeError) as exc:
        if command == "serve":
            say("settings_refused", "error", error=str(exc))
            return 2
        parser.error(str(exc))
    if command in ("serve", "verify"):
        from journal.migrate import stale_message

        stale = stale_message(settings.data_path)
        if stale is not None:  # refused here, before Ray starts or any journal is opened
            if command == "serve":
                say("journal_format_stale", "error", error=stale)
            else:
                print(f"rayledger {command}: {stale}", file=sys.stderr)
            return 2
    if command == "migrate":
        return migrate(settings)
    try:
        if command == "serve":
            return serve(settings)
        if command == "verify":
            return verify(settings)
        if command == "stop":
            return stop(settings)
    except RayUnreachable as exc:
        if command == "serve":
            say("ray_unreachable", "error", error=str(exc))
        else:
            print(f"rayledger: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
