#!/usr/bin/env python3
"""ECS API throughput and tail latency: Berth against moto_server, side by side.

Both servers run on this machine in the same run, each driven the same way by wrk
(2 threads, 16 connections, BENCH_DURATION seconds, default 10) for two operations:

  DescribeClusters        a read of one cluster ("bench", created first).
  RegisterTaskDefinition  a write: every request registers a new revision of family
                          "bench". Berth acknowledges a revision only once it is
                          durable (fsync, group-committed across concurrent requests);
                          moto keeps it in memory.

Why wrk with pre-signed requests: Berth verifies the SigV4 signature of every request,
so the load generator must send signed requests, and a Python client that signs each
one would measure itself rather than the server. A signed request, like on AWS, stays
valid for 15 minutes and may be replayed, so each run signs one request with botocore
right before wrk starts and wrk replays it as fast as the server answers; Berth still
checks the signature of every one. moto does not check signatures but gets the same
kind of request. Each signed request is first sent once with urllib and must get a 200.

The wrk Lua script counts non-2xx responses; any for Berth, or any socket error, fails
the run, since the numbers would then measure errors. Prints a table, the Berth/moto
ratios and PASS/MISS against the targets (a miss is reported, not an exit failure),
and writes everything to bench/out/ecs-api.json.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from common import BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, median, start, stop, check, ROOT, TARGET_DIR, BERTH

OUT = os.path.join(ROOT, "bench", "out", "ecs-api.json")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
# Rounds per (operation, target), interleaved; the medians are reported. One run on a
# shared VM can be ruined by a neighbour (CPU steal), a median of several much less so.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
THREADS, CONNECTIONS = 2, 16
REGION = "us-east-1"
TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."

OPERATIONS = [
    ("DescribeClusters", {"clusters": ["bench"]}),
    ("RegisterTaskDefinition", {
        "family": "bench",
        "containerDefinitions": [{
            "name": "web", "image": "simplehttp:latest", "memory": 128,
            "portMappings": [{"containerPort": 8080}],
        }],
    }),
]

# Counts non-2xx responses per wrk thread and sums them in done(): each thread has its
# own Lua state, read back through thread:get.
LUA = """\
wrk.method = "POST"
wrk.path = "/"
wrk.body = {body}
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  io.write(string.format("LUA_NON2XX %d\\n", n))
end
"""


def sign(op, body, port, creds, service=("ecs", TARGET_PREFIX)):
    """Headers of a SigV4-signed request of a JSON service (ECS unless `service` names
    another's signing name and target prefix); valid for 15 minutes from now."""
    signing_name, prefix = service
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": prefix + op,
    })
    SigV4Auth(creds, signing_name, REGION).add_auth(req)
    headers = dict(req.headers.items())
    headers["Host"] = f"127.0.0.1:{port}"  # what botocore signed, and what wrk sends
    return headers


def send(port, body, headers):
    """Sends a signed request once; returns (status, body)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def call(name, port, creds, op, payload, service=("ecs", TARGET_PREFIX)):
    body = json.dumps(payload, separators=(",", ":"))
    status, text = send(port, body, sign(op, body, port, creds, service))
    if status != 200:
        raise BenchError(f"{name} {op} answered {status}: {text[:500]}")
    return text


def lua_string(s):
    if not all(32 <= ord(c) < 127 for c in s):
        raise BenchError(f"not printable ASCII, cannot go into the Lua script: {s!r}")
    return json.dumps(s)  # JSON escapes of printable ASCII are valid Lua escapes


def wrk_script(name, port, creds, op, payload, workdir, service=("ecs", TARGET_PREFIX)):
    """Signs one request for the server on `port`, checks that it is answered 200, and
    writes the wrk script that replays it; returns the script's path."""
    body = json.dumps(payload, separators=(",", ":"))
    headers = sign(op, body, port, creds, service)
    status, text = send(port, body, headers)
    if status != 200:
        raise BenchError(f"{name} {op}: the signed request answered {status}: {text[:500]}")
    lines = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    script = os.path.join(workdir, f"{name}-{op}.lua")
    with open(script, "w") as f:
        f.write(LUA.format(body=lua_string(body), headers=lines))
    return script


def wrk_command(script, port, threads=THREADS, connections=CONNECTIONS):
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}s", "--latency", "-s", script,
            f"http://127.0.0.1:{port}/"]


def wrk_run(name, port, creds, op, payload, workdir, service=("ecs", TARGET_PREFIX)):
    cmd = wrk_command(wrk_script(name, port, creds, op, payload, workdir, service), port)
    log(f"{name} {op}: {' '.join(cmd)}")
    before = cpu_times()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60)
    after = cpu_times()
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr}{r.stdout}")
    result = parse_wrk(r.stdout)
    result["wrk_output"] = r.stdout
    result["steal_pct"] = steal_pct(before, after)
    return result


UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out):
    def find(pattern, required=True):
        m = re.search(pattern, out, re.M)
        if not m and required:
            raise BenchError(f"cannot find /{pattern}/ in wrk output:\n{out}")
        return m

    p50 = find(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$")
    p99 = find(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$")
    sock = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", required=False)
    wrk_non2xx = find(r"Non-2xx or 3xx responses: (\d+)", required=False)
    return {
        "requests": int(find(r"^\s*(\d+) requests in")[1]),
        "rps": float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        "p50_ms": float(p50[1]) * UNIT_MS[p50[2]],
        "p99_ms": float(p99[1]) * UNIT_MS[p99[2]],
        "non2xx": int(find(r"^LUA_NON2XX (\d+)")[1]),
        "wrk_non2xx_or_3xx": int(wrk_non2xx[1]) if wrk_non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def start_berth_and_moto(workdir, procs):
    """Starts `berth up --no-agent` (release build) and moto_server on free ports, each
    recorded in `procs` as it starts (so the caller's `finally` stops what did start), and
    waits until both serve; returns {"berth": (port, credentials), "moto": (port, credentials)}."""
    berth_port, moto_port = free_port(), free_port()
    data_dir = os.path.join(workdir, "data")
    procs["berth"] = start([BERTH, "up", "--no-agent", "--data-dir", data_dir, "--listen", f"127.0.0.1:{berth_port}"],
                           os.path.join(workdir, "berth.log"))
    wait_until("berth", lambda: http_status(f"http://127.0.0.1:{berth_port}/_berth/health") == 200, procs["berth"])
    procs["moto"] = start(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], os.path.join(workdir, "moto.log"))
    wait_until("moto_server", lambda: http_status(f"http://127.0.0.1:{moto_port}/moto-api/") > 0, procs["moto"])
    return {
        "berth": (berth_port, berth_credentials(data_dir)),
        "moto": (moto_port, Credentials("AKIDBENCHMOTO", "bench-moto-secret")),
    }


def berth_credentials(data_dir):
    out = subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True, text=True).stdout
    env = dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))
    return Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])


def main():
    # Other work on the machine skews both targets (Berth's p99 most): say how busy it was.
    load = os.getloadavg()
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-test-deps.sh")], check=True)
    log("building berth (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})

    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    berth = moto = None
    try:
        berth_port, moto_port = free_port(), free_port()
        data_dir = os.path.join(workdir, "data")
        berth = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{berth_port}"],
                      os.path.join(workdir, "berth.log"))
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{berth_port}/_berth/health") == 200, berth)
        moto = start(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], os.path.join(workdir, "moto.log"))
        wait_until("moto_server", lambda: http_status(f"http://127.0.0.1:{moto_port}/moto-api/") > 0, moto)

        targets = {
            "berth": (berth_port, berth_credentials(data_dir)),
            "moto": (moto_port, Credentials("AKIDBENCHMOTO", "bench-moto-secret")),
        }
        for name, (port, creds) in targets.items():
            call(name, port, creds, "CreateCluster", {"clusterName": "bench"})

        runs = {}
        for _ in range(ROUNDS):
            for op, payload in OPERATIONS:
                for name, (port, creds) in targets.items():
                    r = wrk_run(name, port, creds, op, payload, workdir)
                    runs.setdefault(op, {}).setdefault(name, []).append(r)
                    log(f"{name} {op}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, "
                        f"non-2xx {r['non2xx']}, socket errors {r['socket_errors']}")
                    if name == "berth" and (r["non2xx"] or r["wrk_non2xx_or_3xx"] or r["socket_errors"]):
                        raise BenchError(f"berth {op}: {r['non2xx']} non-2xx responses, "
                                         f"{r['socket_errors']} socket errors; the run measured errors:\n{r['wrk_output']}")
        # Each RegisterTaskDefinition 200 is a revision: their count must match what Berth kept.
        port, creds = targets["berth"]
        latest = json.loads(call("berth", port, creds, "DescribeTaskDefinition", {"taskDefinition": "bench"}))
        revision = latest["taskDefinition"]["revision"]
        registered = sum(r["requests"] for r in runs["RegisterTaskDefinition"]["berth"])
        if revision < registered:
            raise BenchError(f"berth answered {registered} registrations but its latest revision is {revision}")
    finally:
        stop(berth)
        stop(moto)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nECS API, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, {os.cpu_count()} CPUs shared by wrk and the server, "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'operation':<24} {'target':<6} {'round':>5} {'req/s':>10} {'p99 ms':>9} {'steal %':>8}")
    results = {}
    for op, by_target in runs.items():
        for name, rs in by_target.items():
            for i, r in enumerate(rs):
                print(f"{op:<24} {name:<6} {i + 1:>5} {r['rps']:>10.0f} {r['p99_ms']:>9.2f} {r['steal_pct']:>8.1f}")
            results.setdefault(op, {})[name] = {"rps": median([r["rps"] for r in rs]),
                                                "p99_ms": median([r["p99_ms"] for r in rs]),
                                                "steal_pct": median([r["steal_pct"] for r in rs])}
    print(f"\nMedians of {ROUNDS} rounds")
    print(f"{'operation':<24} {'target':<6} {'req/s':>10} {'p99 ms':>9} {'steal %':>8}")
    for op, by_target in results.items():
        for name, r in by_target.items():
            print(f"{op:<24} {name:<6} {r['rps']:>10.0f} {r['p99_ms']:>9.2f} {r['steal_pct']:>8.1f}")
    ratios = {}
    print("\nBerth / moto")
    for op, by_target in results.items():
        b, m = by_target["berth"], by_target["moto"]
        ratios[op] = {"throughput": b["rps"] / m["rps"] if m["rps"] else None,
                      "p99_moto_over_berth": m["p99_ms"] / b["p99_ms"] if b["p99_ms"] else None}
        print(f"  {op:<24} throughput x{ratios[op]['throughput']:.1f}, "
              f"p99 {ratios[op]['p99_moto_over_berth']:.1f}x lower")

    d, w = results["DescribeClusters"]["berth"], results["RegisterTaskDefinition"]["berth"]
    print("\nTargets")
    checks = [
        check(f"Berth DescribeClusters >= 50x moto's throughput (x{ratios['DescribeClusters']['throughput']:.1f})",
              ratios["DescribeClusters"]["throughput"] >= 50),
        check(f"Berth DescribeClusters p99 < 5 ms ({d['p99_ms']:.2f} ms)", d["p99_ms"] < 5),
        check(f"Berth RegisterTaskDefinition >= 2000 req/s ({w['rps']:.0f})", w["rps"] >= 2000),
    ]

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"duration_s": DURATION, "rounds": ROUNDS, "runs": runs, "threads": THREADS, "connections": CONNECTIONS, "cpus": os.cpu_count(),
                   "load_average": load,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "results": results, "ratios": ratios, "targets": checks}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally block stops the servers.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    try:
        main()
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        log(f"FAILED: {' '.join(map(str, e.cmd))} exited with {e.returncode}")
        sys.exit(1)
