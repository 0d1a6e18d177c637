#!/usr/bin/env python3
"""A service whose revision crashes at once, left alone for BENCH_SECONDS (default 60):
how many tasks Berth starts, against what ECS's service throttle allows for the same
failures, same run.

`berth up` (release build) runs its local agent on this machine's Docker engine. Service
"crash" (BENCH_TASKS, default 2, no circuit breaker) runs the test image with command
["exit", "1"]: every container exits as soon as it starts. After BENCH_SECONDS the tasks
the service started (running and stopped) are counted. The peer is ECS's documented
throttle, replayed on the failure times Berth observed: the first two failed starts are
retried at once, then the waits are 5 s doubling up to 27 minutes (a task that stops
within 10 s of starting counts as a failed start in Berth; see model::ecs::service).
Also printed: what a controller without the throttle would have started (one launch per
task lifetime per slot), the CPU seconds Berth used, the load, and the service's events
(they must still tell the story: created, started, throttled). Writes
bench/out/crashloop.json.
"""

import json
import os
import tempfile
import shutil
import time

from common import (BenchError, log, free_port, wait_until, http_status, start, stop, check, ROOT, BERTH,
                    build_berth_and_test_image, ecs_client, wait_for_agent, remove_labelled, epoch, main_guard,
                    cpu_times, busy_pct, process_cpu_seconds)

SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
TASKS = int(os.environ.get("BENCH_TASKS", "2"))
OUT = os.path.join(ROOT, "bench", "out", "crashloop.json")


def throttle_seconds(failures):
    """ECS's documented throttle, as Berth applies it: nothing for the first two failed
    starts, then 5 s doubling up to 27 minutes."""
    if failures < 3:
        return 0.0
    return min(5.0 * 2 ** min(failures - 3, 16), 27 * 60.0)


def ecs_allows(lifetime, seconds, slots):
    """How many tasks ECS's throttle starts in `seconds` when every task fails `lifetime`
    seconds after its launch: launches go in batches of `slots`, each batch's failures
    are counted one by one, and the next batch waits for the last failure's throttle."""
    t, failures, started = 0.0, 0, 0
    while t < seconds:
        started += slots
        t += lifetime
        wait = 0.0
        for _ in range(slots):
            failures += 1
            wait = throttle_seconds(failures)
        t += wait
    return started


def service_tasks(ecs):
    arns = []
    for desired in ("RUNNING", "STOPPED"):
        token = None
        while True:
            kw = {"cluster": "default", "serviceName": "crash", "desiredStatus": desired}
            if token:
                kw["nextToken"] = token
            r = ecs.list_tasks(**kw)
            arns += r["taskArns"]
            token = r.get("nextToken")
            if not token:
                break
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(cluster="default", tasks=arns[i:i + 100])["tasks"]
    return tasks


def main():
    load = os.getloadavg()
    if os.environ.get("BERTH_BIN"):
        # Another build given: the test image the tests made is used as it is.
        image = "berth-test/simplehttp:latest"
    else:
        image = build_berth_and_test_image()
    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    berth = cluster_arn = None
    berth_log = os.path.join(workdir, "berth.log")
    try:
        port = free_port()
        data_dir = os.path.join(workdir, "data")
        env = {"NO_COLOR": "1", **os.environ, "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"}
        berth = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"], berth_log, env)
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, berth)
        ecs = ecs_client(data_dir, port)
        log(f"agent connected: {wait_for_agent(ecs, berth)}")
        cluster_arn = ecs.describe_clusters(clusters=["default"])["clusters"][0]["clusterArn"]
        td = ecs.register_task_definition(family="crash", containerDefinitions=[{
            "name": "c", "image": image, "memory": 16, "command": ["exit", "1"]}])["taskDefinition"]
        cpu0, berth_cpu0 = cpu_times(), process_cpu_seconds(berth.pid)
        ecs.create_service(cluster="default", serviceName="crash", taskDefinition=td["taskDefinitionArn"],
                           desiredCount=TASKS)
        log(f"service crash created with {TASKS} tasks; waiting {SECONDS:.0f} s")
        time.sleep(SECONDS)
        berth_cpu = process_cpu_seconds(berth.pid) - berth_cpu0
        busy = busy_pct(cpu0, cpu_times())
        tasks = service_tasks(ecs)
        events = ecs.describe_services(cluster="default", services=["crash"])["services"][0]["events"]
        ecs.delete_service(cluster="default", service="crash", force=True)
    except BaseException:
        if os.path.exists(berth_log):
            with open(berth_log, errors="replace") as f:
                log("last lines of the berth log:\n" + "".join(f.readlines()[-20:]))
        raise
    finally:
        stop(berth)
        if cluster_arn:
            remove_labelled(f"com.amazonaws.ecs.cluster={cluster_arn}")
        shutil.rmtree(workdir, ignore_errors=True)

    lifetimes = sorted(epoch(t["stoppedAt"]) - epoch(t["createdAt"]) for t in tasks if t.get("stoppedAt"))
    if not lifetimes:
        raise BenchError("no task of the crashing service stopped")
    lifetime = lifetimes[len(lifetimes) // 2]
    allowed = ecs_allows(lifetime, SECONDS, TASKS)
    unthrottled = int(SECONDS / lifetime) * TASKS
    messages = [e["message"] for e in events]
    throttled = sum("unable to consistently start" in m for m in messages)
    started_events = sum("has started" in m for m in messages)

    print(f"\nCrash loop: {TASKS} tasks for {SECONDS:.0f} s, {os.cpu_count()} CPUs, "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, CPU busy during the run {busy:.0f} %\n")
    print(f"tasks Berth started                                  {len(tasks):>6}")
    print(f"ECS's throttle allows (same failures, {lifetime * 1000:.0f} ms each)    {allowed:>6}")
    print(f"ratio Berth / ECS                                    {len(tasks) / allowed:>6.2f}")
    print(f"without a throttle (one launch per lifetime per slot) {unthrottled:>5}")
    print(f"Berth's CPU over the run                             {berth_cpu:>6.2f} s")
    print(f"events: {len(messages)} in all, {started_events} starts, {throttled} 'unable to consistently start'")
    for m in reversed(messages[:12]):
        print(f"  {m}")
    print("\nTargets")
    results = [
        check(f"starts at most what ECS's throttle allows ({len(tasks)} <= {allowed})", len(tasks) <= allowed),
        check(f"the events keep the story (the creation's first start is still listed: {len(messages)} < 100)",
              len(messages) < 100),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"tasks": len(tasks), "ecs_allows": allowed, "lifetime_s": lifetime, "unthrottled": unthrottled,
                   "berth_cpu_s": berth_cpu, "events": messages, "targets": results}, f, indent=2)


if __name__ == "__main__":
    main_guard(main)
