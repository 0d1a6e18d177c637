#!/usr/bin/env python3
"""The calls deployment tools repeat (Ansible's ecs_* modules, ecs-deploy): Berth against
moto_server on this machine, same run.

ecs-deploy polls DescribeServices while a deployment rolls out; Ansible's modules read a
resource's tags (ListTagsForResource) and set them (TagResource) on every run. Each is
driven by wrk (2 threads, 16 connections, BENCH_DURATION seconds, default 10) in
BENCH_ROUNDS interleaved rounds (default 3), medians reported, with requests signed once
with botocore and replayed (bench/ecs_api.py says why):

  DescribeServices     one service of cluster "bench" (desiredCount 0: moto runs nothing).
  ListTagsForResource  the service's 10 tags.
  TagResource          the same 2 tags set again on the service (a durable write on Berth,
                       group-committed; moto keeps it in memory).

Each server's CPU seconds during each run are read from /proc/<pid>/stat. BERTH_BIN runs a
given build instead of target/bench/release/berth. Prints a table and the Berth/moto
ratios, and writes bench/out/tools.json.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time


from common import main_guard, BenchError, log, median, stop, ROOT, TARGET_DIR
from ecs_api import wrk_run, call, start_berth_and_moto, THREADS, CONNECTIONS
from authz import process_cpu_seconds as cpu_seconds

OUT = os.path.join(ROOT, "bench", "out", "tools.json")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def prepare(name, port, creds):
    """Cluster "bench", task definition "bench" and service "web" with 10 tags; returns the
    service's ARN."""
    call(name, port, creds, "CreateCluster", {"clusterName": "bench"})
    call(name, port, creds, "RegisterTaskDefinition", {
        "family": "bench",
        "containerDefinitions": [{"name": "web", "image": "simplehttp:latest", "memory": 32}]})
    r = call(name, port, creds, "CreateService", {
        "cluster": "bench", "serviceName": "web", "taskDefinition": "bench", "desiredCount": 0,
        "tags": [{"key": f"k{i}", "value": f"v{i}"} for i in range(10)]})
    return json.loads(r)["service"]["serviceArn"]


def main():
    load = os.getloadavg()
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-test-deps.sh")], check=True)
    if not os.environ.get("BERTH_BIN"):
        log("building berth (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})
    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    procs, runs = {}, {}
    try:
        targets = start_berth_and_moto(workdir, procs)
        arns = {name: prepare(name, port, creds) for name, (port, creds) in targets.items()}
        requests = lambda arn: [  # noqa: E731
            ("DescribeServices", {"cluster": "bench", "services": ["web"]}),
            ("ListTagsForResource", {"resourceArn": arn}),
            ("TagResource", {"resourceArn": arn, "tags": [{"key": "team", "value": "tools"},
                                                          {"key": "env", "value": "bench"}]}),
        ]
        for _ in range(ROUNDS):
            for i in range(3):
                for name, (port, creds) in targets.items():
                    op, payload = requests(arns[name])[i]
                    before = cpu_seconds(procs[name].pid)
                    r = wrk_run(name, port, creds, op, payload, workdir)
                    r["server_cpu_s"] = cpu_seconds(procs[name].pid) - before
                    runs.setdefault(op, {}).setdefault(name, []).append(r)
                    log(f"{name} {op}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                        f"server CPU {r['server_cpu_s']:.1f} s, non-2xx {r['non2xx']}")
                    if name == "berth" and (r["non2xx"] or r["wrk_non2xx_or_3xx"] or r["socket_errors"]):
                        raise BenchError(f"berth {op}: errors measured:\n{r['wrk_output']}")
        # The tags Berth answers are the ones set.
        port, creds = targets["berth"]
        tags = json.loads(call("berth", port, creds, "ListTagsForResource", {"resourceArn": arns["berth"]}))["tags"]
        if len(tags) != 12:
            raise BenchError(f"berth lists {len(tags)} tags, not 12")
    finally:
        for p in procs.values():
            stop(p)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nwrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, {os.cpu_count()} CPUs shared by wrk and the servers, "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    results, ratios = {}, {}
    print(f"Medians of {ROUNDS} rounds")
    print(f"{'operation':<22} {'target':<6} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU s':>6} {'req/CPU s':>10}")
    for op, by_target in runs.items():
        for name, rs in by_target.items():
            r = {k: median([x[k] for x in rs]) for k in ("rps", "p50_ms", "p99_ms", "server_cpu_s")}
            r["requests_per_cpu_s"] = median([x["requests"] / x["server_cpu_s"] for x in rs if x["server_cpu_s"] > 0] or [0])
            results.setdefault(op, {})[name] = r
            print(f"{op:<22} {name:<6} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                  f"{r['server_cpu_s']:>6.1f} {r['requests_per_cpu_s']:>10.0f}")
    print("\nBerth / moto")
    for op, by_target in results.items():
        b, m = by_target["berth"], by_target["moto"]
        ratios[op] = {"throughput": b["rps"] / m["rps"] if m["rps"] else None,
                      "per_cpu_second": b["requests_per_cpu_s"] / m["requests_per_cpu_s"] if m["requests_per_cpu_s"] else None}
        print(f"  {op:<22} throughput x{ratios[op]['throughput']:.1f}, per CPU second x{ratios[op]['per_cpu_second']:.1f}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"duration_s": DURATION, "rounds": ROUNDS, "threads": THREADS, "connections": CONNECTIONS,
                   "cpus": os.cpu_count(), "load_average": load, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": runs, "results": results, "ratios": ratios}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
