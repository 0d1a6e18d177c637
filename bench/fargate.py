#!/usr/bin/env python3
"""Fargate task start: RunTask --launch-type FARGATE to RUNNING against `docker run -d`, same
image, same run.

`berth up` runs two local agents on this machine's Docker engine: a container instance of
cluster "default" and the account's Fargate capacity. A task definition "bench-fargate"
(FARGATE, awsvpc, cpu 256, memory 512) has one container running the test image's `sleep`.
Alternately, after one warm-up of each (which also creates the subnet's Docker network and
imports the pause image, once per engine):

  berth   t0; RunTask (FARGATE, the first default subnet); DescribeTasks every
          BENCH_POLL_MS (default 5) until RUNNING; the sample is t0 to that answer. Then
          StopTask and wait for STOPPED, untimed.
  docker  t0; `docker run -d IMAGE sleep`; the sample is its run time. `docker rm -f`,
          untimed.

BENCH_SAMPLES (default 15) of each. Berth's side includes everything an awsvpc task needs
that a plain `docker run` does not: the address allocation, the pause container that holds
the task's network namespace (created and started first), its firewall rules, and the
task's container joining that namespace. Target: ratio of medians <= 1.5. Results go to
bench/out/fargate.json.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

from common import (BenchError, log, free_port, wait_until, http_status, summary, start, stop, docker,
                    remove_labelled, remove_subnet_networks, ecs_client, main_guard, build_berth_and_test_image, check, ROOT, BERTH)

OUT = os.path.join(ROOT, "bench", "out", "fargate.json")
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "15"))
POLL = float(os.environ.get("BENCH_POLL_MS", "5")) / 1000
TARGET_RATIO = 1.5
FAMILY = "bench-fargate"
DOCKER_LABEL = "berth-bench=fargate"
RUN_TIMEOUT = 60.0


def ec2_subnet(data_dir, port):
    out = subprocess.run(["aws", "ec2", "describe-subnets", "--query", "Subnets[0].SubnetId", "--output", "text"],
                         check=True, capture_output=True, text=True, env={**os.environ, **berth_env(data_dir)})
    return out.stdout.strip()


def berth_env(data_dir):
    import re
    out = subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True, text=True).stdout
    return {k: v.strip("'\"") for k, v in re.findall(r"^export (\w+)=(.*)$", out, re.M)}


def run_task(ecs, subnet):
    return ecs.run_task(cluster="default", taskDefinition=FAMILY, launchType="FARGATE",
                        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet]}})


def berth_sample(ecs, subnet):
    t0 = time.monotonic()
    r = run_task(ecs, subnet)
    if r.get("failures") or not r.get("tasks"):
        raise BenchError(f"RunTask placed no task: {r.get('failures')}")
    arn = r["tasks"][0]["taskArn"]
    while True:
        t = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]
        if t.get("lastStatus") == "RUNNING":
            t1 = time.monotonic()
            break
        if t.get("lastStatus") == "STOPPED":
            raise BenchError(f"a Fargate task stopped: {t.get('stoppedReason')}")
        if time.monotonic() - t0 > RUN_TIMEOUT:
            raise BenchError(f"a Fargate task was not RUNNING within {RUN_TIMEOUT:.0f} s")
        time.sleep(POLL)
    ecs.stop_task(cluster="default", task=arn, reason="bench")
    deadline = time.monotonic() + RUN_TIMEOUT
    while ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0].get("lastStatus") != "STOPPED":
        if time.monotonic() > deadline:
            raise BenchError("a Fargate task did not stop")
        time.sleep(0.02)
    return (t1 - t0) * 1000


def docker_sample(image):
    t0 = time.monotonic()
    r = subprocess.run(["docker", "run", "-d", "--label", DOCKER_LABEL, image, "sleep"],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    t1 = time.monotonic()
    if r.returncode != 0:
        raise BenchError(f"docker run exited with {r.returncode}: {r.stderr.strip()}")
    docker("rm", "-f", r.stdout.strip())
    return (t1 - t0) * 1000


def main():
    load = os.getloadavg()
    image = build_berth_and_test_image()
    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    berth = None
    log_path = os.path.join(workdir, "berth.log")
    try:
        port = free_port()
        data_dir = os.path.join(workdir, "data")
        env = {"NO_COLOR": "1", **os.environ, "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"}
        # A VPC block of its own: its subnets become Docker networks, which must not
        # overlap any other on the engine.
        berth = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}",
                       "--vpc-cidr", "10.251.0.0/16"], log_path, env)
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, berth)
        ecs = ecs_client(data_dir, port)
        ecs.create_cluster(clusterName="default")
        ecs.register_task_definition(family=FAMILY, requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                     cpu="256", memory="512",
                                     containerDefinitions=[{"name": "c", "image": image, "command": ["sleep"]}])
        subnet = ec2_subnet(data_dir, port)
        # Fargate capacity is there once the local Fargate agent has registered.
        deadline = time.monotonic() + 60
        while True:
            r = run_task(ecs, subnet)
            if r.get("tasks"):
                ecs.stop_task(cluster="default", task=r["tasks"][0]["taskArn"])
                break
            if time.monotonic() > deadline:
                raise BenchError(f"no Fargate capacity appeared: {r.get('failures')}")
            time.sleep(0.2)
        log("warm-up: one of each, not counted")
        berth_sample(ecs, subnet)
        docker_sample(image)
        berth_ms, docker_ms = [], []
        for i in range(SAMPLES):
            berth_ms.append(berth_sample(ecs, subnet))
            docker_ms.append(docker_sample(image))
            log(f"{i + 1:>2}/{SAMPLES}: berth {berth_ms[-1]:7.1f} ms, docker {docker_ms[-1]:7.1f} ms")
    finally:
        stop(berth)
        remove_labelled(DOCKER_LABEL)
        remove_labelled("com.amazonaws.ecs.task-definition-family=" + FAMILY)
        remove_subnet_networks("10.251.")
        shutil.rmtree(workdir, ignore_errors=True)

    b, d = summary(berth_ms), summary(docker_ms)
    ratio = b["median_ms"] / d["median_ms"]
    print(f"\nFargate task start, {SAMPLES} samples each interleaved, {os.cpu_count()} CPUs, "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'':<36} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}")
    print(f"{'berth  RunTask FARGATE -> RUNNING':<36} {b['median_ms']:>10.1f} {b['p90_ms']:>8.1f} {b['min_ms']:>8.1f}")
    print(f"{'docker run -d':<36} {d['median_ms']:>10.1f} {d['p90_ms']:>8.1f} {d['min_ms']:>8.1f}")
    print(f"\nBerth / docker (medians): {ratio:.2f}\n\nTargets")
    target = check(f"Fargate RunTask->RUNNING median <= {TARGET_RATIO}x docker run -d ({ratio:.2f}x)",
                   ratio <= TARGET_RATIO)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"samples": SAMPLES, "load_average": load, "berth": b, "docker": d, "ratio": ratio,
                   "runs": {"berth": berth_ms, "docker": docker_ms}, "targets": [target]}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
