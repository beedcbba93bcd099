#!/usr/bin/env bash
# A Ray cluster on this machine (head + N worker nodes on distinct 127.0.0.x addresses)
# and the ledger on it: one coordinator with the HTTP ingress per node, all sharing the
# API port (SO_REUSEPORT), started and kept up by a `rayledger serve` supervisor.
#
#   ./run_cluster.sh start [--workers N] [--shards N] [--data-dir DIR] [--port PORT]
#   ./run_cluster.sh status
#   ./run_cluster.sh stop
#
# It stops only what it started: every PID it launched is recorded under .cluster/ (it
# never runs `ray stop`, which would kill every Ray process on the machine).
#
# On real machines, run on the head:   ray start --head --port 6379
# on each worker:                      ray start --address HEAD_IP:6379
# (with the same RAY_AUTH_MODE / token file on every node), and then on the head:
#     rayledger serve --address HEAD_IP:6379 --data-dir DIR --host 0.0.0.0 --coordinators NODES
# where DIR is storage every node sees (a shard restarted on another node reopens its
# journal file there); each node then serves the API, and a load balancer in front of the
# nodes spreads clients (deploy/nginx.conf).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
state="$here/.cluster"
bin="${RAYLEDGER_BIN:-$here/.venv/bin}"
ray_port="${RAY_PORT:-6390}"

workers=0
shards=2
data_dir="$here/data"
port=8080

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

parse() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --workers) workers="$2"; shift 2 ;;
            --shards) shards="$2"; shift 2 ;;
            --data-dir) data_dir="$2"; shift 2 ;;
            --port) port="$2"; shift 2 ;;
            *) usage ;;
        esac
    done
}

# PIDs of processes whose command line mentions our private temp dir (Ray's daemons of
# this cluster), and their descendants (actor workers retitle themselves `ray::…`).
cluster_pids() {
    local tmp="$1" pid
    for pid in /proc/[0-9]*; do
        pid="${pid#/proc/}"
        if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "$tmp"; then
            echo "$pid"
            descendants "$pid"
        fi
    done | sort -un
}

descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

start() {
    parse "$@"
    if [ -f "$state/supervisor.pid" ] && kill -0 "$(cat "$state/supervisor.pid")" 2>/dev/null; then
        echo "already running (./run_cluster.sh status)"; exit 1
    fi
    mkdir -p "$state"
    # Token auth for every node and the supervisor alike: one private token file.
    if [ ! -s "$state/auth_token" ]; then
        (umask 077 && "$bin/python" -c "import secrets; print(secrets.token_hex(32))" > "$state/auth_token")
    fi
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$state/auth_token"
    tmp="$(mktemp -d /tmp/rayledger-cluster-XXXXXX)"
    echo "$tmp" > "$state/temp_dir"
    echo "127.0.0.1:$ray_port" > "$state/address"
    "$bin/ray" start --head --node-ip-address 127.0.0.1 --port "$ray_port" --temp-dir "$tmp" \
        --include-dashboard true --dashboard-host 127.0.0.1 --object-store-memory 134217728 \
        --disable-usage-stats > "$state/head.log" 2>&1
    for i in $(seq 1 "$workers"); do
        "$bin/ray" start --address "127.0.0.1:$ray_port" --node-ip-address "127.0.0.$((i + 1))" \
            --temp-dir "$tmp" --object-store-memory 134217728 --disable-usage-stats \
            > "$state/worker-$i.log" 2>&1
    done
    # One coordinator (with its ingress) per node: the head and every worker.
    nohup "$bin/rayledger" serve --address "127.0.0.1:$ray_port" --data-dir "$data_dir" --port "$port" \
        --shards "$shards" --coordinators "$((workers + 1))" > "$state/supervisor.log" 2>&1 &
    echo $! > "$state/supervisor.pid"
    cluster_pids "$tmp" > "$state/ray.pids"
    for _ in $(seq 1 120); do
        if curl -fsS "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; then
            echo "rayledger: http://127.0.0.1:$port on a Ray cluster of $((workers + 1)) nodes, an ingress on each"
            echo "rayledger: Ray dashboard http://127.0.0.1:8265; logs in $state/"
            return 0
        fi
        sleep 1
    done
    echo "ledger not ready; see $state/supervisor.log"; exit 1
}

status() {
    [ -f "$state/supervisor.pid" ] || { echo "not running"; exit 1; }
    if kill -0 "$(cat "$state/supervisor.pid")" 2>/dev/null; then
        echo "supervisor pid $(cat "$state/supervisor.pid") running"
    else
        echo "supervisor not running"
    fi
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$state/auth_token" \
        "$bin/ray" status --address "$(cat "$state/address")" 2>/dev/null | sed -n '1,20p' || true
}

stop() {
    [ -d "$state" ] || { echo "not running"; return 0; }
    if [ -f "$state/supervisor.pid" ]; then
        kill -TERM "$(cat "$state/supervisor.pid")" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$(cat "$state/supervisor.pid")" 2>/dev/null || break; sleep 1; done
    fi
    if [ -f "$state/temp_dir" ]; then
        tmp="$(cat "$state/temp_dir")"
        # Recorded PIDs plus any worker Ray started since (they also live under $tmp).
        pids="$(cat "$state/ray.pids" 2>/dev/null; cluster_pids "$tmp")"
        for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
        sleep 2
        for pid in $(cluster_pids "$tmp"); do kill -KILL "$pid" 2>/dev/null || true; done
        rm -rf "$tmp"
    fi
    rm -rf "$state"
    echo "stopped"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    status) status ;;
    stop) stop ;;
    *) usage ;;
esac
