"""What a 2-leg transfer costs, in single payments: one JSON line per run and a summary.

    python -m benchmarks.transfers --rounds 3 --seconds 10

Starts its own embedded server, opens N funded USD balances, then alternates rounds of
wrk (one thread, C connections, loopback only) posting single payments and 2-leg
transfers between random balances, as `../shared/bench` drives payments (one
Idempotency-Key per request). The machine's speed swings within minutes, so the rounds
alternate and the summary compares their medians: `payments_per_transfer` is payments/s
over transfers/s (the target: about 2 or less), `legs_per_s_over_payments_per_s` the
money movements per second a transfer makes against a payment's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.funding import conserved, open_balances, total
from benchmarks.server import Server

LUA = r"""
ids = {%(ids)s}
local hdr = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}
local threads = {}
function setup(t) table.insert(threads, t) end
function init(args) ok = 0; other = 0; math.randomseed(os.time() + math.random(1000)) end
local function pair()
  local n = #ids
  local a = math.random(n); local b = math.random(n - 1); if b >= a then b = b + 1 end
  return ids[a], ids[b]
end
local function leg()
  local a, b = pair()
  local c = math.random(1, 500)
  local fmt = '{"balance_from":"%%s","balance_to":"%%s","amount":"%%d.%%02d"}'
  return string.format(fmt, a, b, math.floor(c / 100), c %% 100)
end
function request()
  hdr["Idempotency-Key"] = string.format("%%08x%%08x", math.random(0, 2147483647), math.random(0, 2147483647))
  if %(legs)d == 0 then return wrk.format("POST", "/v1/payments", hdr, leg()) end
  local legs = {}
  for i = 1, %(legs)d do legs[i] = leg() end
  return wrk.format("POST", "/v1/transfers", hdr, '{"legs":[' .. table.concat(legs, ",") .. ']}')
end
function response(status, headers, body)
  if status == 201 and string.find(body, '"success"', 1, true) then ok = ok + 1 else other = other + 1 end
end
function done(s, lat, req)
  local K, O = 0, 0
  for _, t in ipairs(threads) do K = K + t:get("ok"); O = O + t:get("other") end
  local fmt = 'WRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,'
    .. '"socket_errors":%%d,"success":%%d,"other":%%d}\n'
  io.write(string.format(fmt,
    s.requests, s.duration, lat:percentile(50), lat:percentile(99),
    s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout, K, O))
end
"""


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    ).stdout
    found = re.search(r"WRKJSON (\{.*\})", out)
    assert found is not None, out[-500:]
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternating")
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per round")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--balances", type=int, default=1000)
    ap.add_argument("--legs", type=int, default=2, help="legs per transfer")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rayledger-transfers-"))
    server = Server(work / "data", "--no-dashboard").start()
    try:
        ids = asyncio.run(open_balances(server.url, server.token, args.balances))
        scripts = {}
        for kind, legs in (("payment", 0), ("transfer", args.legs)):
            scripts[kind] = work / f"{kind}.lua"
            scripts[kind].write_text(
                LUA % {"ids": ",".join(f'"{b}"' for b in ids), "token": server.token, "legs": legs}
            )
        rates: dict[str, list[float]] = {"payment": [], "transfer": []}
        p99: dict[str, list[float]] = {"payment": [], "transfer": []}
        for n in range(args.rounds):
            for kind in ("payment", "transfer") if n % 2 == 0 else ("transfer", "payment"):
                r = run_wrk(server.url, scripts[kind], args.connections, args.seconds)
                per_s = r["success"] / (r["duration_us"] / 1e6)
                rates[kind].append(per_s)
                p99[kind].append(r["p99_us"] / 1000)
                line = {"round": n, "kind": kind, "per_s": round(per_s), "p99_ms": round(r["p99_us"] / 1000, 1), **r}
                print(json.dumps(line), flush=True)
        ok = conserved(asyncio.run(total(server.url, server.token, ids)), ids)
        payments, transfers = statistics.median(rates["payment"]), statistics.median(rates["transfer"])
        summary = {
            "payments_per_s": round(payments),
            "transfers_per_s": round(transfers),
            "legs": args.legs,
            "payments_per_transfer": round(payments / transfers, 2),
            "legs_per_s_over_payments_per_s": round(transfers * args.legs / payments, 2),
            "p99_ms": {k: round(statistics.median(v), 1) for k, v in p99.items()},
            "conserved": ok,
        }
        print(json.dumps({"summary": summary}), flush=True)
        return 0 if ok else 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
