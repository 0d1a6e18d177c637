#!/usr/bin/env python3
"""Secrets Manager GetSecretValue: Berth against moto_server, side by side.

Both servers run on this machine in the same run. Each gets one secret ("bench/db", a
256-byte JSON value) and is then driven the same way by wrk (2 threads, 16 connections,
BENCH_DURATION seconds, default 10) replaying one SigV4-signed GetSecretValue request
(see bench/ecs_api.py for why pre-signed requests and wrk). Berth verifies every
request's signature and opens the sealed value (XChaCha20-Poly1305) on every read; moto
keeps the value in memory in clear and checks no signature.

Reported per target: requests per second, p50 and p99 latency, and the CPU seconds the
server process spent (utime + stime from /proc) per 1000 requests. Rounds interleave
(BENCH_ROUNDS, default 3) and medians are reported, with the Berth/moto ratios; any
non-2xx answer or socket error from Berth fails the run. Writes bench/out/secretsmanager.json.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from common import main_guard, BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, median, start, stop, ROOT, TARGET_DIR, BERTH
from ecs_api import LUA, lua_string, parse_wrk, send, berth_credentials, UNIT_MS

OUT = os.path.join(ROOT, "bench", "out", "secretsmanager.json")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
THREADS, CONNECTIONS = 2, 16
REGION = "us-east-1"
SECRET = json.dumps({"user": "app", "password": "p" * 200, "host": "db.internal"})


def sign(op, body, port, creds):
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"secretsmanager.{op}",
    })
    SigV4Auth(creds, "secretsmanager", REGION).add_auth(req)
    headers = dict(req.headers.items())
    headers["Host"] = f"127.0.0.1:{port}"
    return headers


def call(name, port, creds, op, payload):
    body = json.dumps(payload, separators=(",", ":"))
    status, text = send(port, body, sign(op, body, port, creds))
    if status != 200:
        raise BenchError(f"{name} {op} answered {status}: {text[:500]}")
    return json.loads(text)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_run(name, proc, port, creds, workdir):
    body = json.dumps({"SecretId": "bench/db"}, separators=(",", ":"))
    headers = sign("GetSecretValue", body, port, creds)
    status, text = send(port, body, headers)
    if status != 200 or json.loads(text).get("SecretString") != SECRET:
        raise BenchError(f"{name}: the signed GetSecretValue answered {status}: {text[:300]}")
    lines = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    script = os.path.join(workdir, f"{name}.lua")
    with open(script, "w") as f:
        f.write(LUA.format(body=lua_string(body), headers=lines))
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", script,
           f"http://127.0.0.1:{port}/"]
    log(f"{name}: {' '.join(cmd)}")
    before, cpu0 = cpu_times(), cpu_seconds(proc.pid)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60)
    after, cpu1 = cpu_times(), cpu_seconds(proc.pid)
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr}{r.stdout}")
    result = parse_wrk(r.stdout)
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$", r.stdout, re.M)
    result["p50_ms"] = float(p50[1]) * UNIT_MS[p50[2]]
    result["cpu_s"] = cpu1 - cpu0
    result["cpu_ms_per_1000"] = 1e6 * result["cpu_s"] / max(result["requests"], 1)
    result["steal_pct"] = steal_pct(before, after)
    result["wrk_output"] = r.stdout
    return result


def main():
    load = os.getloadavg()
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-test-deps.sh")], check=True)
    if not os.environ.get("BERTH_BIN"):
        log("building berth (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})
    workdir = tempfile.mkdtemp(prefix="berth-bench-sm-")
    berth = moto = None
    try:
        berth_port, moto_port = free_port(), free_port()
        data_dir = os.path.join(workdir, "data")
        berth = start([BERTH, "up", "--no-agent", "--data-dir", data_dir, "--listen", f"127.0.0.1:{berth_port}"],
                      os.path.join(workdir, "berth.log"))
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{berth_port}/_berth/health") == 200, berth)
        moto = start(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], os.path.join(workdir, "moto.log"))
        wait_until("moto_server", lambda: http_status(f"http://127.0.0.1:{moto_port}/moto-api/") > 0, moto)
        targets = {
            "berth": (berth, berth_port, berth_credentials(data_dir)),
            "moto": (moto, moto_port, Credentials("AKIDBENCHMOTO", "bench-moto-secret")),
        }
        for name, (_, port, creds) in targets.items():
            call(name, port, creds, "CreateSecret", {"Name": "bench/db", "SecretString": SECRET})
        runs = {}
        for _ in range(ROUNDS):
            for name, (proc, port, creds) in targets.items():
                r = wrk_run(name, proc, port, creds, workdir)
                runs.setdefault(name, []).append(r)
                log(f"{name}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                    f"{r['cpu_s']:.1f} CPU s, non-2xx {r['non2xx']}, socket errors {r['socket_errors']}")
                if name == "berth" and (r["non2xx"] or r["wrk_non2xx_or_3xx"] or r["socket_errors"]):
                    raise BenchError(f"berth: {r['non2xx']} non-2xx responses, {r['socket_errors']} socket errors:\n"
                                     f"{r['wrk_output']}")
    finally:
        stop(berth)
        stop(moto)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nGetSecretValue, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, {os.cpu_count()} CPUs shared by wrk "
          f"and the server, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'target':<6} {'round':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU s':>7} {'CPU ms/1k req':>14} {'steal %':>8}")
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            print(f"{name:<6} {i + 1:>5} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['cpu_s']:>7.1f} "
                  f"{r['cpu_ms_per_1000']:>14.1f} {r['steal_pct']:>8.1f}")
    results = {name: {k: median([r[k] for r in rs]) for k in ("rps", "p50_ms", "p99_ms", "cpu_s", "cpu_ms_per_1000")}
               for name, rs in runs.items()}
    b, m = results["berth"], results["moto"]
    ratios = {
        "throughput": b["rps"] / m["rps"] if m["rps"] else None,
        "p50_moto_over_berth": m["p50_ms"] / b["p50_ms"] if b["p50_ms"] else None,
        "p99_moto_over_berth": m["p99_ms"] / b["p99_ms"] if b["p99_ms"] else None,
        "cpu_per_request_moto_over_berth": m["cpu_ms_per_1000"] / b["cpu_ms_per_1000"] if b["cpu_ms_per_1000"] else None,
    }
    print(f"\nMedians of {ROUNDS} rounds")
    for name, r in results.items():
        print(f"  {name:<6} {r['rps']:>10.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
              f"{r['cpu_ms_per_1000']:.1f} CPU ms per 1000 requests")
    print(f"\nBerth / moto: throughput x{ratios['throughput']:.1f}, p50 {ratios['p50_moto_over_berth']:.1f}x lower, "
          f"p99 {ratios['p99_moto_over_berth']:.1f}x lower, CPU per request {ratios['cpu_per_request_moto_over_berth']:.1f}x less")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"duration_s": DURATION, "rounds": ROUNDS, "threads": THREADS, "connections": CONNECTIONS,
                   "cpus": os.cpu_count(), "load_average": load, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": runs, "results": results, "ratios": ratios}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
