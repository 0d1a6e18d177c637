#!/usr/bin/env python3
"""Secrets and configuration (issue 16): Berth against peers on this machine, same run.

Part 1, SSM GetParameter: Berth (release build) against moto_server, each driven by wrk
(2 threads, 16 connections, BENCH_DURATION seconds, default 10) in BENCH_ROUNDS rounds
(default 3), interleaved, medians reported, for two requests:

  GetParameter String        a plain parameter (/bench/config, 64 bytes).
  GetParameter SecureString  /bench/secret with WithDecryption=true: Berth opens the
                             sealed value (XChaCha20-Poly1305) on every request.

Requests are SigV4-signed once with botocore and replayed by wrk, as bench/ecs_api.py
explains (Berth verifies every one). Each server's CPU seconds during each run are read
from /proc/<pid>/stat, so the ratio can be read per CPU second as well as per wall
second. Any non-2xx answer or socket error from Berth fails the run.

Part 2, RunTask -> RUNNING with 10 SSM secrets against 10 plain environment variables on
one Berth with its local agent (see run_task_with_secrets()).

BERTH_BIN runs a given build instead of building target/bench/release/berth. Prints a
table, the Berth/moto ratios and PASS/MISS against the target (GetParameter >= 50x moto's
throughput), and writes bench/out/secrets.json.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time


from common import (main_guard, BenchError, log, free_port, wait_until, http_status, median, start, stop, check, ROOT, TARGET_DIR,
                    BERTH, remove_labelled)
from ecs_api import wrk_run, call, berth_credentials, start_berth_and_moto, THREADS, CONNECTIONS

OUT = os.path.join(ROOT, "bench", "out", "secrets.json")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SSM = ("ssm", "AmazonSSM.")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

REQUESTS = [
    ("GetParameter String", {"Name": "/bench/config"}),
    ("GetParameter SecureString", {"Name": "/bench/secret", "WithDecryption": True}),
]


def cpu_seconds(pid):
    """User and system CPU seconds of a process so far (threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def get_parameter(targets, procs, workdir):
    """Part 1: the runs of every request on every target; returns {request: {target: [run]}}."""
    for name, (port, creds) in targets.items():
        call(name, port, creds, "PutParameter", {"Name": "/bench/config", "Type": "String", "Value": "x" * 64}, SSM)
        call(name, port, creds, "PutParameter",
             {"Name": "/bench/secret", "Type": "SecureString", "Value": "s3cret-" + "y" * 57}, SSM)
    runs = {}
    for _ in range(ROUNDS):
        for label, payload in REQUESTS:
            for name, (port, creds) in targets.items():
                before = cpu_seconds(procs[name].pid)
                r = wrk_run(name, port, creds, "GetParameter", payload, workdir, SSM)
                r["server_cpu_s"] = cpu_seconds(procs[name].pid) - before
                runs.setdefault(label, {}).setdefault(name, []).append(r)
                log(f"{name} {label}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                    f"server CPU {r['server_cpu_s']:.1f} s, non-2xx {r['non2xx']}")
                if name == "berth" and (r["non2xx"] or r["wrk_non2xx_or_3xx"] or r["socket_errors"]):
                    raise BenchError(f"berth {label}: {r['non2xx']} non-2xx responses, {r['socket_errors']} socket "
                                     f"errors; the run measured errors:\n{r['wrk_output']}")
    return runs


TASK_SAMPLES = int(os.environ.get("BENCH_SAMPLES", "10"))
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                            "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]})
READ = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameters",
                                                           "Resource": "*"}]})


def task_sample(ecs, family, cluster_arn):
    """One RunTask -> RUNNING of `family`, in ms (DescribeTasks every 5 ms); then stops the
    task and removes its container, untimed."""
    t0 = time.monotonic()
    r = ecs.run_task(taskDefinition=family, count=1)
    if r.get("failures") or not r.get("tasks"):
        raise BenchError(f"RunTask placed no task: {r.get('failures')}")
    arn = r["tasks"][0]["taskArn"]
    while True:
        t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        if t.get("lastStatus") == "RUNNING":
            ms = (time.monotonic() - t0) * 1000
            break
        if t.get("lastStatus") == "STOPPED" or time.monotonic() - t0 > 60:
            raise BenchError(f"{family} task not RUNNING: {t.get('lastStatus')} {t.get('stoppedReason')!r}")
        time.sleep(0.005)
    ecs.stop_task(task=arn, reason="bench")
    while ecs.describe_tasks(tasks=[arn])["tasks"][0].get("lastStatus") != "STOPPED":
        time.sleep(0.02)
    remove_labelled(f"com.amazonaws.ecs.cluster={cluster_arn}")
    return ms


def run_task_with_secrets():
    """Part 2: RunTask -> RUNNING of a task with 10 SSM SecureString secrets against the
    same task with 10 plain environment variables (both with the same execution role), on
    one Berth with its local agent, BENCH_SAMPLES (default 10) of each interleaved after
    one warm-up each; target ratio of the medians <= 1.1."""
    import botocore.session
    from common import build_berth_and_test_image, ecs_client, wait_for_agent
    image = build_berth_and_test_image()
    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    proc, cluster_arn = None, None
    try:
        port = free_port()
        data_dir = os.path.join(workdir, "data")
        env = {"NO_COLOR": "1", **os.environ, "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"}
        proc = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"],
                     os.path.join(workdir, "berth.log"), env)
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, proc)
        ecs = ecs_client(data_dir, port)
        wait_for_agent(ecs, proc)
        cluster_arn = ecs.describe_clusters(clusters=["default"])["clusters"][0]["clusterArn"]
        creds = berth_credentials(data_dir)
        session = botocore.session.get_session()
        client = lambda service: session.create_client(  # noqa: E731
            service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key)
        iam, ssm = client("iam"), client("ssm")
        iam.create_role(RoleName="bench-exec", AssumeRolePolicyDocument=TRUST)
        iam.put_role_policy(RoleName="bench-exec", PolicyName="read", PolicyDocument=READ)
        for i in range(10):
            ssm.put_parameter(Name=f"/bench/s{i}", Type="SecureString", Value=f"value-{i}-" + "z" * 32)
        container = {"name": "c", "image": image, "memory": 32, "command": ["sleep"]}
        ecs.register_task_definition(family="plain", executionRoleArn="bench-exec", containerDefinitions=[
            {**container, "environment": [{"name": f"V{i}", "value": f"value-{i}-" + "z" * 32} for i in range(10)]}])
        ecs.register_task_definition(family="secret", executionRoleArn="bench-exec", containerDefinitions=[
            {**container, "secrets": [{"name": f"V{i}", "valueFrom": f"/bench/s{i}"} for i in range(10)]}])
        task_sample(ecs, "plain", cluster_arn)
        task_sample(ecs, "secret", cluster_arn)
        plain, secret = [], []
        for i in range(TASK_SAMPLES):
            plain.append(task_sample(ecs, "plain", cluster_arn))
            secret.append(task_sample(ecs, "secret", cluster_arn))
            log(f"{i + 1:>2}/{TASK_SAMPLES}: plain {plain[-1]:7.1f} ms, 10 secrets {secret[-1]:7.1f} ms")
    finally:
        stop(proc)
        if cluster_arn:
            remove_labelled(f"com.amazonaws.ecs.cluster={cluster_arn}")
        shutil.rmtree(workdir, ignore_errors=True)
    return {"samples": TASK_SAMPLES, "plain_ms": plain, "secrets_ms": secret,
            "plain_median_ms": median(plain), "secrets_median_ms": median(secret),
            "ratio": median(secret) / median(plain)}


def main():
    load = os.getloadavg()
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-test-deps.sh")], check=True)
    if not os.environ.get("BERTH_BIN"):
        log("building berth (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})

    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    procs = {}
    try:
        targets = start_berth_and_moto(workdir, procs)
        runs = get_parameter(targets, procs, workdir)
        # The value Berth answers is the one stored.
        port, creds = targets["berth"]
        got = json.loads(call("berth", port, creds, "GetParameter", REQUESTS[1][1], SSM))["Parameter"]["Value"]
        if not got.startswith("s3cret-"):
            raise BenchError("berth answered another SecureString value than the one put")
    finally:
        for p in procs.values():
            stop(p)
        shutil.rmtree(workdir, ignore_errors=True)
    run_task = run_task_with_secrets()

    print(f"\nSSM GetParameter, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, {os.cpu_count()} CPUs shared by wrk and "
          f"the servers, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
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
    print("\nTargets")
    checks = [check(f"Berth {label} >= 50x moto's throughput (x{ratios[label]['throughput']:.1f})",
                    ratios[label]["throughput"] >= 50) for label in results]
    print(f"\nRunTask -> RUNNING, {run_task['samples']} samples each interleaved: 10 plain variables "
          f"{run_task['plain_median_ms']:.1f} ms, 10 SSM secrets {run_task['secrets_median_ms']:.1f} ms (medians)")
    checks.append(check(f"RunTask with 10 secrets <= 1.1x with 10 plain variables (x{run_task['ratio']:.2f})",
                        run_task["ratio"] <= 1.1))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"duration_s": DURATION, "rounds": ROUNDS, "threads": THREADS, "connections": CONNECTIONS,
                   "cpus": os.cpu_count(), "load_average": load, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": runs, "results": results, "ratios": ratios, "run_task": run_task, "targets": checks}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
