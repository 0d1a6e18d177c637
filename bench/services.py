#!/usr/bin/env python3
"""Service controller benchmark: how long a rolling deployment and a task replacement take,
against the time Docker itself needs to start the containers, same run.

What it measures. `berth up` (release build, ECS_IMAGE_PULL_BEHAVIOR=prefer-cached) runs
its local agent on this machine's Docker engine. A service "bench" of BENCH_TASKS (default
10) tasks runs the test image with command ["sleep"] (two revisions that differ only in an
environment variable), with ECS's default deployment configuration (100% / 200%).

  deployment   t0; UpdateService to the other revision; DescribeServices every
               BENCH_POLL_MS (default 10) until the service is stable as
               `aws ecs wait services-stable` sees it, on the new revision: one
               deployment, runningCount == desiredCount, no pending task. (Its rolloutState
               turns COMPLETED STARTED_AFTER_SECONDS, 10 s, after its tasks started: the
               wait that lets the circuit breaker catch a crash loop, not work to measure.)
               The sample is t0 to that answer. Against it: the sum of the
               container start times of the deployment's new tasks, each its task's
               pullStoppedAt -> startedAt (Docker's create and start, startedAt being
               Docker's own start time). Target: deployment <= 1.2 x that sum. The longest
               single start (what a perfectly parallel start could not beat) is shown too.
  replacement  `docker events` watches the service's containers; one is killed with
               `docker kill`; the sample is Docker's `die` time of that container to the
               replacement task's startedAt (Docker's start time of the new container),
               so both ends are Docker's clock and no polling is inside. Against it: the
               replacement's own container start time (pullStoppedAt -> startedAt).
               Target: replacement - own start < 1 s. The time until a DescribeTasks
               poll sees the replacement RUNNING is shown as well.

BENCH_ROUNDS (default 5) deployments alternate between the revisions; BENCH_SAMPLES
(default 10) replacements follow, each once the service is steady again. Medians are
reported with CPU steal and busy time over the run. Results go to
bench/out/services.json, Berth's log to bench/out/services-berth.log. A missed target is
reported, not an exit failure; the exit status is non-zero only when something does not
work.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from common import (BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, busy_pct, median,
                    summary, start, stop, check, docker, remove_labelled, ecs_client, wait_for_agent, epoch,
                    task_spans_ms, main_guard, build_berth_and_test_image, ROOT, BERTH)

OUT = os.path.join(ROOT, "bench", "out", "services.json")
LOG_OUT = os.path.join(ROOT, "bench", "out", "services-berth.log")
TASKS = int(os.environ.get("BENCH_TASKS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "10"))
POLL = float(os.environ.get("BENCH_POLL_MS", "10")) / 1000
CLUSTER = "default"
SERVICE = "bench"
FAMILY = "bench-svc"
TIMEOUT = 120.0
DEPLOY_RATIO = 1.2
REPLACE_OVERHEAD_S = 1.0


def service(ecs):
    return ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]


def steady_on(s, td_arn):
    d = s.get("deployments", [])
    return (len(d) == 1 and s["runningCount"] == s["desiredCount"]
            and s["pendingCount"] == 0 and s.get("taskDefinition") == td_arn)


def wait_steady(ecs, td_arn, t0=None):
    t0 = t0 or time.monotonic()
    while True:
        s = service(ecs)
        if steady_on(s, td_arn):
            return time.monotonic(), s
        if time.monotonic() - t0 > TIMEOUT:
            raise BenchError(f"the service did not become steady on {td_arn} within {TIMEOUT:.0f} s: "
                             f"{[e['message'] for e in s.get('events', [])[:5]]}")
        time.sleep(POLL)


def running_tasks(ecs):
    arns = ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE, desiredStatus="RUNNING").get("taskArns", [])
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(cluster=CLUSTER, tasks=arns[i:i + 100])["tasks"]
    return tasks


def start_span(t):
    """Docker's create and start of the task's container, as the task reports it (s)."""
    ms = task_spans_ms(t)["engine_ms"]
    return ms / 1000 if ms is not None else None


def deploy_sample(ecs, td_arn):
    t0 = time.monotonic()
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=td_arn)
    t1, s = wait_steady(ecs, td_arn, t0)
    dep = s["deployments"][0]["id"]
    new = [t for t in running_tasks(ecs) if t.get("startedBy") == dep]
    if len(new) != TASKS:
        raise BenchError(f"expected {TASKS} tasks of the new deployment, found {len(new)}")
    spans = [start_span(t) for t in new]
    if any(x is None for x in spans):
        raise BenchError("a new task reports no pullStoppedAt/startedAt")
    return {"ms": (t1 - t0) * 1000, "starts_sum_ms": sum(spans) * 1000, "starts_max_ms": max(spans) * 1000}


class DieWatcher:
    """Reads `docker events` for container deaths of one cluster; maps container id -> epoch s."""

    def __init__(self, cluster_arn):
        self.deaths = {}
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=die",
             "--filter", f"label=com.amazonaws.ecs.cluster={cluster_arn}", "--format", "{{.ID}} {{.TimeNano}}"],
            stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            cid, nanos = line.split()
            with self.cond:
                self.deaths[cid] = int(nanos) / 1e9
                self.cond.notify_all()

    def wait(self, cid, timeout=30.0):
        with self.cond:
            if not self.cond.wait_for(lambda: any(k.startswith(cid) or cid.startswith(k) for k in self.deaths),
                                      timeout):
                raise BenchError(f"docker events reported no death of {cid}")
            return next(v for k, v in self.deaths.items() if k.startswith(cid) or cid.startswith(k))

    def close(self):
        self.proc.kill()


def replace_sample(ecs, watcher, td_arn):
    before = running_tasks(ecs)
    victim = before[0]
    cid = victim["containers"][0]["runtimeId"]
    known = {t["taskArn"] for t in before}
    t0 = time.monotonic()
    docker("kill", cid)
    died = watcher.wait(cid)
    while True:
        fresh = [t for t in running_tasks(ecs) if t["taskArn"] not in known and t.get("lastStatus") == "RUNNING"]
        if fresh:
            seen = time.monotonic()
            break
        if time.monotonic() - t0 > TIMEOUT:
            raise BenchError("the killed task was not replaced")
        time.sleep(POLL)
    t = fresh[0]
    started = epoch(t.get("startedAt"))
    own = start_span(t)
    wait_steady(ecs, td_arn)
    return {"ms": (started - died) * 1000, "own_start_ms": own * 1000, "overhead_ms": (started - died - own) * 1000,
            "seen_ms": (seen - t0) * 1000}


def main():
    load = os.getloadavg()
    image = build_berth_and_test_image()
    docker_version = docker("version", "--format", "{{.Server.Version}}").strip()

    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    berth = watcher = cluster_arn = None
    berth_log = os.path.join(workdir, "berth.log")
    try:
        port = free_port()
        data_dir = os.path.join(workdir, "data")
        env = {"NO_COLOR": "1", **os.environ, "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"}
        berth = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"], berth_log, env)
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, berth)
        ecs = ecs_client(data_dir, port)
        log(f"agent connected: {wait_for_agent(ecs, berth, CLUSTER)}")
        cluster_arn = ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]["clusterArn"]
        revisions = []
        for rev in ("a", "b"):
            td = ecs.register_task_definition(family=FAMILY, containerDefinitions=[{
                "name": "c", "image": image, "memory": 16, "command": ["sleep"],
                "environment": [{"name": "REVISION", "value": rev}],
            }])
            revisions.append(td["taskDefinition"]["taskDefinitionArn"])
        watcher = DieWatcher(cluster_arn)
        ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=revisions[0], desiredCount=TASKS)
        wait_steady(ecs, revisions[0])
        log(f"service steady with {TASKS} tasks")

        cpu0 = cpu_times()
        deploys = []
        current = 0
        for i in range(ROUNDS):
            current = 1 - current
            d = deploy_sample(ecs, revisions[current])
            deploys.append(d)
            log(f"deployment {i + 1}/{ROUNDS}: {d['ms']:7.0f} ms (container starts: sum {d['starts_sum_ms']:6.0f} ms, "
                f"longest {d['starts_max_ms']:5.0f} ms)")
        replaces = []
        for i in range(SAMPLES):
            r = replace_sample(ecs, watcher, revisions[current])
            replaces.append(r)
            log(f"replacement {i + 1}/{SAMPLES}: die -> started {r['ms']:6.0f} ms (own start {r['own_start_ms']:5.0f} ms, "
                f"overhead {r['overhead_ms']:5.0f} ms; seen RUNNING after {r['seen_ms']:5.0f} ms)")
        cpu1 = cpu_times()
        steal, busy = steal_pct(cpu0, cpu1), busy_pct(cpu0, cpu1)
        ecs.delete_service(cluster=CLUSTER, service=SERVICE, force=True)
    except BaseException:
        if os.path.exists(berth_log):
            with open(berth_log, errors="replace") as f:
                log("last lines of the berth log:\n" + "".join(f.readlines()[-20:]))
        raise
    finally:
        if watcher:
            watcher.close()
        stop(berth)
        if cluster_arn:
            remove_labelled(f"com.amazonaws.ecs.cluster={cluster_arn}")
        if os.path.exists(berth_log):
            os.makedirs(os.path.dirname(LOG_OUT), exist_ok=True)
            shutil.copyfile(berth_log, LOG_OUT)
        shutil.rmtree(workdir, ignore_errors=True)

    dep = summary([d["ms"] for d in deploys])
    sums = median([d["starts_sum_ms"] for d in deploys])
    longest = median([d["starts_max_ms"] for d in deploys])
    ratio = median([d["ms"] / d["starts_sum_ms"] for d in deploys])
    # The agent starts the containers concurrently, so each start is slower than alone and
    # their sum overstates the work; the longest one is the bound a parallel start has.
    ratio_longest = median([d["ms"] / d["starts_max_ms"] for d in deploys])
    rep = summary([r["ms"] for r in replaces])
    own = median([r["own_start_ms"] for r in replaces])
    overhead = summary([r["overhead_ms"] for r in replaces])
    seen = median([r["seen_ms"] for r in replaces])

    print(f"\nServices, {TASKS} tasks, {ROUNDS} deployments and {SAMPLES} replacements, image {image}, "
          f"Docker {docker_version}, {os.cpu_count()} CPUs, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
          f"During the run: CPU steal {steal:.1f} %, CPU busy {busy:.0f} %\n")
    print(f"{'':<52} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8}")
    print(f"{'UpdateService -> steady':<52} {dep['median_ms']:>10.0f} {dep['p90_ms']:>8.0f} {dep['min_ms']:>8.0f} "
          f"{dep['max_ms']:>8.0f}")
    print(f"{'  sum of the new containers start times':<52} {sums:>10.0f}")
    print(f"{'  longest single container start':<52} {longest:>10.0f}")
    print(f"{'container died -> replacement started':<52} {rep['median_ms']:>10.0f} {rep['p90_ms']:>8.0f} "
          f"{rep['min_ms']:>8.0f} {rep['max_ms']:>8.0f}")
    print(f"{'  its own container start':<52} {own:>10.0f}")
    print(f"{'  overhead (the above minus its own start)':<52} {overhead['median_ms']:>10.0f} "
          f"{overhead['p90_ms']:>8.0f} {overhead['min_ms']:>8.0f} {overhead['max_ms']:>8.0f}")
    print(f"{'  kill -> replacement seen RUNNING (polling)':<52} {seen:>10.0f}")
    print(f"\nDeployment / sum of container starts (median of the rounds): {ratio:.2f}")
    print(f"Deployment / longest single container start (median of the rounds): {ratio_longest:.2f}")

    print("\nTargets")
    targets = [
        check(f"deployment <= {DEPLOY_RATIO}x the sum of its container starts ({ratio:.2f}x)", ratio <= DEPLOY_RATIO),
        check(f"replacement overhead (median) < {REPLACE_OVERHEAD_S * 1000:.0f} ms ({overhead['median_ms']:.0f} ms)",
              overhead["median_ms"] < REPLACE_OVERHEAD_S * 1000),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"tasks": TASKS, "rounds": ROUNDS, "samples": SAMPLES, "poll_ms": POLL * 1000, "image": image,
                   "docker_version": docker_version, "cpus": os.cpu_count(), "load_average": load,
                   "steal_pct": steal, "busy_pct": busy, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "deployment": dep, "starts_sum_median_ms": sums, "starts_longest_median_ms": longest,
                   "deployment_ratio": ratio, "deployment_ratio_longest": ratio_longest, "replacement": rep, "replacement_own_start_median_ms": own,
                   "replacement_overhead": overhead, "replacement_seen_median_ms": seen,
                   "runs": {"deployments": deploys, "replacements": replaces}, "targets": targets}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)} (Berth's log: {os.path.relpath(LOG_OUT, ROOT)})")


if __name__ == "__main__":
    main_guard(main)
