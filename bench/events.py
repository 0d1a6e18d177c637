#!/usr/bin/env python3
"""EventBridge rules for scheduled ECS tasks: Berth against moto_server, side by side.

Both servers run on this machine in the same run. wrk (2 threads, 16 connections,
BENCH_DURATION seconds, default 10) sends a cycle of three SigV4-signed requests over
RULES rule names (default 20): PutRule (a cron schedule, an update after the first
round), PutTargets (one ECS target with EcsParameters and an Input of RunTask overrides)
and ListTargetsByRule, the calls `ecs-deploy cron`, Terraform and the ECS console make.
Requests are signed once with botocore and replayed (see bench/ecs_api.py for why
pre-signed requests and wrk). Berth verifies every signature and makes each PutRule and
PutTargets durable (one fsync per group commit) before answering; moto keeps its state
in memory and checks no signature.

Reported per target: requests per second (all three operations together), p50 and p99
latency, and the CPU seconds the server process spent (utime + stime from /proc) per 1000
requests. Rounds interleave (BENCH_ROUNDS, default 3) and medians are reported with the
Berth/moto ratios; any non-2xx answer or socket error from Berth fails the run. The load
average before the run is printed, since other work on the machine skews both sides.
Writes bench/out/events.json.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from botocore.credentials import Credentials

from common import main_guard, BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, median, start, stop, process_cpu_seconds, ROOT, TARGET_DIR, BERTH
from ecs_api import lua_string, parse_wrk, send, sign, berth_credentials

OUT = os.path.join(ROOT, "bench", "out", "events.json")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RULES = int(os.environ.get("BENCH_RULES", "20"))
THREADS, CONNECTIONS = 2, 16
SERVICE = ("events", "AWSEvents.")
ACCOUNT_RE = re.compile(r"arn:aws:events:[^:]+:(\d{12}):rule/")

# Each connection walks the cycle from its own starting point.
LUA = """\
local requests = {{}}
{requests}
local threads = {{}}
local i = 0
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function request()
  i = i % #requests + 1
  return requests[i]
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  io.write(string.format("LUA_NON2XX %d\\n", n))
end
"""


def cycle(account):
    """The (operation, payload) cycle over RULES rules."""
    cluster = f"arn:aws:ecs:us-east-1:{account}:cluster/default"
    out = []
    for n in range(RULES):
        rule = f"bench-{n:03d}"
        target = {
            "Id": "job",
            "Arn": cluster,
            "RoleArn": f"arn:aws:iam::{account}:role/ecsEventsRole",
            "Input": json.dumps({"containerOverrides": [{"name": "job", "command": ["report", str(n)]}]}),
            "EcsParameters": {
                "TaskDefinitionArn": f"arn:aws:ecs:us-east-1:{account}:task-definition/report:1",
                "TaskCount": 1,
                "LaunchType": "FARGATE",
                "NetworkConfiguration": {"awsvpcConfiguration": {"Subnets": ["subnet-1"], "AssignPublicIp": "DISABLED"}},
                "Group": "reports",
            },
        }
        out.append(("PutRule", {"Name": rule, "ScheduleExpression": f"cron({n % 60} 3 * * ? *)", "State": "DISABLED"}))
        out.append(("PutTargets", {"Rule": rule, "Targets": [target]}))
        out.append(("ListTargetsByRule", {"Rule": rule}))
    return out


def check(name, port, creds, op, payload):
    body = json.dumps(payload, separators=(",", ":"))
    status, text = send(port, body, sign(op, body, port, creds, SERVICE))
    if status != 200:
        raise BenchError(f"{name} {op} answered {status}: {text[:500]}")
    return json.loads(text)


def wrk_run(name, proc, port, creds, requests, workdir):
    lines = []
    for op, payload in requests:
        body = json.dumps(payload, separators=(",", ":"))
        headers = sign(op, body, port, creds, SERVICE)
        table = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
        lines.append(f'table.insert(requests, wrk.format("POST", "/", {{{table}}}, {lua_string(body)}))')
    script = os.path.join(workdir, f"{name}.lua")
    with open(script, "w") as f:
        f.write(LUA.format(requests="\n".join(lines)))
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", script,
           f"http://127.0.0.1:{port}/"]
    log(f"{name}: {' '.join(cmd)}")
    before, cpu0 = cpu_times(), process_cpu_seconds(proc.pid)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60)
    after, cpu1 = cpu_times(), process_cpu_seconds(proc.pid)
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr}{r.stdout}")
    result = parse_wrk(r.stdout)
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
    workdir = tempfile.mkdtemp(prefix="berth-bench-events-")
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
        cycles = {}
        for name, (_, port, creds) in targets.items():
            # The account is in the rule's ARN; a first pass creates every rule and target
            # and checks each answer, so the timed runs measure the steady state.
            arn = check(name, port, creds, "PutRule", {"Name": "probe", "ScheduleExpression": "rate(1 day)"})["RuleArn"]
            account = ACCOUNT_RE.match(arn)[1]
            cycles[name] = cycle(account)
            for op, payload in cycles[name]:
                out = check(name, port, creds, op, payload)
                if op == "PutTargets" and out.get("FailedEntryCount"):
                    raise BenchError(f"{name}: PutTargets failed entries: {out}")
                if op == "ListTargetsByRule" and len(out.get("Targets", [])) != 1:
                    raise BenchError(f"{name}: ListTargetsByRule answered {out}")
        runs = {}
        for _ in range(ROUNDS):
            for name, (proc, port, creds) in targets.items():
                r = wrk_run(name, proc, port, creds, cycles[name], workdir)
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

    print(f"\nPutRule + PutTargets + ListTargetsByRule over {RULES} rules, wrk -t{THREADS} -c{CONNECTIONS} "
          f"-d{DURATION}s, {os.cpu_count()} CPUs shared by wrk and both servers, load average before "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
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
        json.dump({"duration_s": DURATION, "rounds": ROUNDS, "rules": RULES, "threads": THREADS,
                   "connections": CONNECTIONS, "cpus": os.cpu_count(), "load_average": load,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": runs, "results": results, "ratios": ratios}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
