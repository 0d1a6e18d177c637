#!/usr/bin/env python3
"""EC2 reads (issue 17): Berth against moto_server on this machine, same run.

Both servers hold BENCH_TASKS (default 5) network interfaces in their default VPC:
Berth's are the ENIs of real Fargate tasks (berth up with its local agents, the test
image), moto's are made with CreateNetworkInterface in its default subnet. Then each
server is driven by wrk (2 threads, 16 connections, BENCH_DURATION seconds, default 10) in
BENCH_ROUNDS rounds (default 3), interleaved, medians reported, for:

  DescribeNetworkInterfaces  filtered by addresses.private-ip-address (how a user finds a
                             Fargate task's interface), one interface answered.
  DescribeVpcs               no filter: the default VPC.

EC2 speaks the query protocol: each request is a form body SigV4-signed once with
botocore and replayed by wrk (Berth verifies every one). Each server's CPU seconds during
each run are read from /proc/<pid>/stat, so the ratio can be read per CPU second as well as
per wall second. Any non-2xx answer or socket error from Berth fails the run.

BERTH_BIN runs a given build instead of building target/bench/release/berth. Prints the
machine's load, a table, the Berth/moto ratios, and writes bench/out/ec2.json.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from common import (main_guard, BenchError, log, free_port, wait_until, http_status, median, start, stop, ROOT,
                    BERTH, remove_labelled, remove_subnet_networks, build_berth_and_test_image, ecs_client,
                    wait_for_agent, cpu_times, steal_pct)
from ecs_api import LUA, lua_string, parse_wrk, berth_credentials, THREADS, CONNECTIONS, REGION

OUT = os.path.join(ROOT, "bench", "out", "ec2.json")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TASKS = int(os.environ.get("BENCH_TASKS", "5"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Berth's default VPC for this run: a block of its own, so its subnets' Docker networks
# clash with no other Berth's on this engine.
VPC_BLOCK, VPC_PREFIX = "10.233.0.0/22", "10.233."


def cpu_seconds(pid):
    """User and system CPU seconds of a process so far (threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def form(action, params):
    return urllib.parse.urlencode({"Action": action, "Version": "2016-11-15", **params})


def sign(body, port, creds):
    """Headers of a SigV4-signed EC2 query request; valid for 15 minutes from now."""
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(creds, "ec2", REGION).add_auth(req)
    headers = dict(req.headers.items())
    headers["Host"] = f"127.0.0.1:{port}"
    return headers


def call(name, port, creds, action, params):
    body = form(action, params)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body.encode(), headers=sign(body, port, creds),
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        raise BenchError(f"{name} {action} answered {e.code}: {e.read().decode()[:500]}")


def wrk_run(name, port, creds, action, params, workdir):
    body = form(action, params)
    call(name, port, creds, action, params)
    headers = sign(body, port, creds)
    lines = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    script = os.path.join(workdir, f"{name}-{action}.lua")
    with open(script, "w") as f:
        f.write(LUA.format(body=lua_string(body), headers=lines))
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", script,
           f"http://127.0.0.1:{port}/"]
    before = cpu_times()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60)
    after = cpu_times()
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr}{r.stdout}")
    result = parse_wrk(r.stdout)
    result["wrk_output"] = r.stdout
    result["steal_pct"] = steal_pct(before, after)
    return result


def between(text, tag):
    return [part.split(f"</{tag}>")[0] for part in text.split(f"<{tag}>")[1:]]


def berth_interfaces(data_dir, port, image, proc):
    """Runs TASKS Fargate tasks on Berth; returns their addresses and the cluster's ARN."""
    ecs = ecs_client(data_dir, port)
    wait_for_agent(ecs, proc)
    cluster_arn = ecs.describe_clusters(clusters=["default"])["clusters"][0]["clusterArn"]
    ecs.register_task_definition(family="web", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
                                 memory="512", containerDefinitions=[
                                     {"name": "web", "image": image, "command": ["serve", "--port", "8080"]}])
    creds = berth_credentials(data_dir)
    subnet = between(call("berth", port, creds, "DescribeSubnets", {}), "subnetId")[0]
    arns = []
    deadline = time.monotonic() + 60
    while len(arns) < TASKS:
        r = ecs.run_task(launchType="FARGATE", taskDefinition="web",
                         networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet]}})
        arns += [t["taskArn"] for t in r.get("tasks", [])]
        if time.monotonic() > deadline:
            raise BenchError(f"Fargate tasks were not placed: {r.get('failures')}")
    while True:
        ts = ecs.describe_tasks(tasks=arns)["tasks"]
        if all(t.get("lastStatus") == "RUNNING" for t in ts):
            break
        if any(t.get("lastStatus") == "STOPPED" for t in ts) or time.monotonic() > deadline + 60:
            raise BenchError(f"Fargate tasks did not run: {[(t.get('lastStatus'), t.get('stoppedReason')) for t in ts]}")
        time.sleep(0.2)
    ips = [d["value"] for t in ts for d in t["attachments"][0]["details"] if d["name"] == "privateIPv4Address"]
    return ips, cluster_arn


def moto_interfaces(port, creds):
    subnet = between(call("moto", port, creds, "DescribeSubnets", {}), "subnetId")[0]
    ips = []
    for _ in range(TASKS):
        text = call("moto", port, creds, "CreateNetworkInterface", {"SubnetId": subnet, "Description": "bench"})
        ips.append(between(text, "privateIpAddress")[0])
    return ips


def main():
    load = os.getloadavg()
    if os.environ.get("BERTH_BIN"):
        # A given build: only the test image is made.
        image = subprocess.run(["cargo", "run", "-q", "-p", "testkit", "--bin", "test-image"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.strip()
    else:
        image = build_berth_and_test_image()
    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    procs, cluster_arn = {}, None
    runs = {}
    try:
        berth_port, moto_port = free_port(), free_port()
        data_dir = os.path.join(workdir, "data")
        env = {"NO_COLOR": "1", **os.environ, "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"}
        procs["berth"] = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{berth_port}",
                                "--vpc-cidr", VPC_BLOCK], os.path.join(workdir, "berth.log"), env)
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{berth_port}/_berth/health") == 200, procs["berth"])
        procs["moto"] = start(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], os.path.join(workdir, "moto.log"))
        wait_until("moto_server", lambda: http_status(f"http://127.0.0.1:{moto_port}/moto-api/") > 0, procs["moto"])
        targets = {
            "berth": (berth_port, berth_credentials(data_dir)),
            "moto": (moto_port, Credentials("AKIDBENCHMOTO", "bench-moto-secret")),
        }
        berth_ips, cluster_arn = berth_interfaces(data_dir, berth_port, image, procs["berth"])
        ips = {"berth": berth_ips, "moto": moto_interfaces(moto_port, targets["moto"][1])}
        for name, (port, creds) in targets.items():
            text = call(name, port, creds, "DescribeNetworkInterfaces", {})
            if len(between(text, "networkInterfaceId")) < TASKS:
                raise BenchError(f"{name} describes fewer than {TASKS} interfaces")
        requests = lambda name: [  # noqa: E731
            ("DescribeNetworkInterfaces", {"Filter.1.Name": "addresses.private-ip-address",
                                           "Filter.1.Value.1": ips[name][-1]}),
            ("DescribeVpcs", {}),
        ]
        for _ in range(ROUNDS):
            for i in range(2):
                for name, (port, creds) in targets.items():
                    action, params = requests(name)[i]
                    found = between(call(name, port, creds, action, params), "privateIpAddress")
                    if action == "DescribeNetworkInterfaces" and ips[name][-1] not in found:
                        raise BenchError(f"{name} did not find the interface of {ips[name][-1]}")
                    before = cpu_seconds(procs[name].pid)
                    log(f"{name} {action}: wrk -d{DURATION}s")
                    r = wrk_run(name, port, creds, action, params, workdir)
                    r["server_cpu_s"] = cpu_seconds(procs[name].pid) - before
                    runs.setdefault(action, {}).setdefault(name, []).append(r)
                    log(f"{name} {action}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, "
                        f"server CPU {r['server_cpu_s']:.1f} s, non-2xx {r['non2xx']}")
                    if name == "berth" and (r["non2xx"] or r["wrk_non2xx_or_3xx"] or r["socket_errors"]):
                        raise BenchError(f"berth {action}: errors in the run:\n{r['wrk_output']}")
    finally:
        for p in procs.values():
            stop(p)
        if cluster_arn:
            remove_labelled(f"com.amazonaws.ecs.cluster={cluster_arn}")
        remove_subnet_networks(VPC_PREFIX)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nEC2 reads, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, {TASKS} interfaces each, {os.cpu_count()} CPUs "
          f"shared by wrk and the servers, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'request':<26} {'target':<6} {'round':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU s':>6} {'steal %':>8}")
    results = {}
    for label, by_target in runs.items():
        for name, rs in by_target.items():
            for i, r in enumerate(rs):
                print(f"{label:<26} {name:<6} {i + 1:>5} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                      f"{r['server_cpu_s']:>6.1f} {r['steal_pct']:>8.1f}")
            results.setdefault(label, {})[name] = {
                k: median([r[k] for r in rs]) for k in ("rps", "p50_ms", "p99_ms", "server_cpu_s", "steal_pct")}
            results[label][name]["requests_per_cpu_s"] = median(
                [r["requests"] / r["server_cpu_s"] for r in rs if r["server_cpu_s"] > 0] or [0])
    print(f"\nMedians of {ROUNDS} rounds")
    print(f"{'request':<26} {'target':<6} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU s':>6} {'req/CPU s':>10}")
    for label, by_target in results.items():
        for name, r in by_target.items():
            print(f"{label:<26} {name:<6} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                  f"{r['server_cpu_s']:>6.1f} {r['requests_per_cpu_s']:>10.0f}")
    ratios = {}
    print("\nBerth / moto")
    for label, by_target in results.items():
        b, m = by_target["berth"], by_target["moto"]
        ratios[label] = {
            "throughput": b["rps"] / m["rps"] if m["rps"] else None,
            "p99_moto_over_berth": m["p99_ms"] / b["p99_ms"] if b["p99_ms"] else None,
            "per_cpu_second": b["requests_per_cpu_s"] / m["requests_per_cpu_s"] if m["requests_per_cpu_s"] else None,
        }
        print(f"  {label:<26} throughput x{ratios[label]['throughput']:.1f}, "
              f"p99 {ratios[label]['p99_moto_over_berth']:.1f}x lower, per CPU second x{ratios[label]['per_cpu_second']:.1f}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"duration_s": DURATION, "rounds": ROUNDS, "threads": THREADS, "connections": CONNECTIONS,
                   "interfaces": TASKS, "cpus": os.cpu_count(), "load_average": load,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": runs, "results": results,
                   "ratios": ratios}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
