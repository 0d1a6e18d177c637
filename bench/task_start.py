#!/usr/bin/env python3
"""Task start latency: Berth's RunTask to RUNNING against `docker run -d`, same image, same run.

What it measures. `berth up` serves the API and runs a local agent that registers this
machine's Docker engine as a container instance of cluster "default". A task definition
"bench" has one container "c": the test image (berth-test/simplehttp, built by
`cargo run -p testkit --bin test-image`), memory 32, command ["sleep"], no port mappings,
so that it runs what `docker run -d IMAGE sleep` runs. Then, alternately:

  berth   t0; RunTask; DescribeTasks of that task every BENCH_POLL_MS (default 5) until
          lastStatus is RUNNING; the sample is the time from t0 to that answer. The task is
          then stopped, waited for until STOPPED and its container removed, all untimed.
  docker  t0; `docker run -d --label ... IMAGE sleep` as a subprocess, which returns once
          the container has started; the sample is its run time. `docker rm -f`, untimed.

One warm-up of each is not counted; then BENCH_SAMPLES (default 20) of each, interleaved,
so that both see the same machine at the same time. Reports median, p90 and min of both,
the ratio of the medians Berth/docker against the target (<= 1.25), and the CPU steal
and busy time measured from /proc/stat over the counted samples (a neighbour on a shared
VM, or other work on this one, skews both).

Why these choices:
  * ECS_IMAGE_PULL_BEHAVIOR=prefer-cached: no registry is reachable here, and the agent's
    `default` behaviour (like the ECS agent's) first tries a pull and falls back to the
    cached image only after the pull fails, which would measure a failing network call.
    `docker run` likewise does not pull an image that is present.
  * The comparison is end to end on both sides: `docker run` includes the CLI's own start
    (a fresh process each time), Berth includes the API call, the durable commit of the
    task, the push to the agent, the Engine calls, the agent's report, its durable commit,
    and the DescribeTasks that sees RUNNING. Polling adds to each Berth sample about half a
    polling period on average (the sleep plus one DescribeTasks round trip).
  * Berth's container differs from the docker one only in what ECS adds: its labels and
    the 32 MiB memory limit of the definition. The docker one carries one label too, so
    that the cleanup finds it if the run is interrupted.
  * Breakdown of each Berth sample from what DescribeTasks reports (epoch seconds with
    millisecond precision; client and server share this machine's clock):
        ack        t0 to the RunTask answer (placement and the durable commit)
        dispatch   createdAt to pullStartedAt (push to the agent, the agent's task set-up)
        images     pullStartedAt to pullStoppedAt (image checks; no pull under prefer-cached)
        engine     pullStoppedAt to startedAt (Docker's create and start; startedAt is
                   Docker's own start time of the container)
        report     startedAt to the answer that showed RUNNING (the agent's inspect and
                   report, its commit, the polling)
    plus createdAt to startedAt as a whole.

The Berth log (BERTH_LOG=debug for more) is kept in bench/out/task-start-berth.log.
Results go to bench/out/task-start.json. A miss of the target is reported, not an exit
failure; the exit status is non-zero only when something does not work (Berth does not
start, its agent does not connect, a task fails to run, docker fails).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

from common import (BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, busy_pct, median,
                    summary, start, stop, docker, remove_labelled, ecs_client, wait_for_agent, epoch, span_ms,
                    task_spans_ms, main_guard, build_berth_and_test_image, ROOT, BERTH)

OUT = os.path.join(ROOT, "bench", "out", "task-start.json")
LOG_OUT = os.path.join(ROOT, "bench", "out", "task-start-berth.log")
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "20"))
POLL = float(os.environ.get("BENCH_POLL_MS", "5")) / 1000
TARGET_RATIO = 1.25
CLUSTER = "default"
FAMILY = "bench"
# Labels the docker-run containers of this benchmark, for the cleanup.
DOCKER_LABEL = "berth-bench=task-start"
# A task that is not RUNNING within this long counts as failed to run.
RUN_TIMEOUT = 60.0


def why_not_running(t):
    reasons = [f"{c.get('name')}: {c['reason']}" for c in t.get("containers", []) if c.get("reason")]
    return (f"task {t['taskArn']} is {t.get('lastStatus')} (desired {t.get('desiredStatus')}), "
            f"stopCode {t.get('stopCode')}, stoppedReason {t.get('stoppedReason')!r}"
            + (f", containers: {'; '.join(reasons)}" if reasons else ""))


def berth_sample(ecs, cluster_arn):
    """One RunTask to RUNNING, in ms, with its breakdown; then stops and removes the task, untimed."""
    w0 = time.time()
    t0 = time.monotonic()
    r = ecs.run_task(cluster=CLUSTER, taskDefinition=FAMILY, count=1)
    t_ack = time.monotonic()
    if r.get("failures") or not r.get("tasks"):
        raise BenchError(f"RunTask placed no task: {r.get('failures')}")
    arn = r["tasks"][0]["taskArn"]
    polls = 0
    while True:
        d = ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])
        polls += 1
        if not d.get("tasks"):
            raise BenchError(f"DescribeTasks does not find {arn}: {d.get('failures')}")
        t = d["tasks"][0]
        if t.get("lastStatus") == "RUNNING":
            t1 = time.monotonic()
            w1 = time.time()
            break
        if t.get("desiredStatus") == "STOPPED" or t.get("lastStatus") in ("STOPPING", "DEPROVISIONING", "STOPPED"):
            raise BenchError(f"a task failed to run: {why_not_running(t)}")
        if time.monotonic() - t0 > RUN_TIMEOUT:
            raise BenchError(f"a task was not RUNNING within {RUN_TIMEOUT:.0f} s: {why_not_running(t)}")
        time.sleep(POLL)
    sample = {"ms": (t1 - t0) * 1000, "polls": polls, "task": arn, **breakdown(t, w0, w1, t_ack - t0)}

    ecs.stop_task(cluster=CLUSTER, task=arn, reason="bench")
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        t = ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]
        if t.get("lastStatus") == "STOPPED":
            break
        if time.monotonic() > deadline:
            raise BenchError(f"a task was not STOPPED within {RUN_TIMEOUT:.0f} s of StopTask: {why_not_running(t)}")
        time.sleep(0.02)
    remove_labelled(f"com.amazonaws.ecs.cluster={cluster_arn}")
    return sample


def breakdown(t, w0, w1, ack_s):
    spans = task_spans_ms(t)
    return {
        "ack_ms": ack_s * 1000,
        "dispatch_ms": spans["dispatch_ms"],
        "images_ms": spans["images_ms"],
        "engine_ms": spans["engine_ms"],
        "report_ms": span_ms(epoch(t.get("startedAt")), w1),
        "created_to_started_ms": spans["created_to_started_ms"],
        "client_to_created_ms": span_ms(w0, epoch(t.get("createdAt"))),
    }


def docker_sample(image):
    t0 = time.monotonic()
    r = subprocess.run(["docker", "run", "-d", "--label", DOCKER_LABEL, image, "sleep"],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    t1 = time.monotonic()
    if r.returncode != 0:
        raise BenchError(f"docker run exited with {r.returncode}: {r.stderr.strip()}")
    docker("rm", "-f", r.stdout.strip())
    return {"ms": (t1 - t0) * 1000}


def main():
    # Other work on the machine skews both sides: say how busy it was.
    load = os.getloadavg()
    image = build_berth_and_test_image()
    docker_version = docker("version", "--format", "{{.Server.Version}}").strip()

    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    berth = None
    cluster_arn = None
    berth_log = os.path.join(workdir, "berth.log")
    try:
        port = free_port()
        data_dir = os.path.join(workdir, "data")
        # NO_COLOR: the log goes to a file, which is kept; no terminal colour codes in it.
        env = {"NO_COLOR": "1", **os.environ, "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"}
        berth = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"], berth_log, env)
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, berth)
        ecs = ecs_client(data_dir, port)
        instance = wait_for_agent(ecs, berth, CLUSTER)
        log(f"agent connected: {instance}")
        cluster_arn = ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]["clusterArn"]
        ecs.register_task_definition(family=FAMILY, containerDefinitions=[{
            "name": "c", "image": image, "memory": 32, "command": ["sleep"],
        }])

        log("warm-up: one of each, not counted")
        berth_sample(ecs, cluster_arn)
        docker_sample(image)

        berth_runs, docker_runs = [], []
        before = cpu_times()
        for i in range(SAMPLES):
            b = berth_sample(ecs, cluster_arn)
            berth_runs.append(b)
            d = docker_sample(image)
            docker_runs.append(d)
            log(f"{i + 1:>2}/{SAMPLES}: berth {b['ms']:7.1f} ms ({b['polls']} polls), docker {d['ms']:7.1f} ms")
        after = cpu_times()
        steal = steal_pct(before, after)
        busy = busy_pct(before, after)
    except BaseException:
        if os.path.exists(berth_log):
            with open(berth_log, errors="replace") as f:
                tail = f.readlines()[-20:]
            log("last lines of the berth log:\n" + "".join(tail))
        raise
    finally:
        stop(berth)
        if cluster_arn:
            remove_labelled(f"com.amazonaws.ecs.cluster={cluster_arn}")
        remove_labelled(DOCKER_LABEL)
        if os.path.exists(berth_log):
            os.makedirs(os.path.dirname(LOG_OUT), exist_ok=True)
            shutil.copyfile(berth_log, LOG_OUT)
        shutil.rmtree(workdir, ignore_errors=True)

    b = summary([r["ms"] for r in berth_runs])
    d = summary([r["ms"] for r in docker_runs])
    ratio = b["median_ms"] / d["median_ms"]
    parts = ["ack_ms", "dispatch_ms", "images_ms", "engine_ms", "report_ms", "created_to_started_ms"]
    parts_median = {}
    for p in parts:
        xs = [r[p] for r in berth_runs if r[p] is not None]
        parts_median[p] = median(xs) if xs else None

    print(f"\nTask start, {SAMPLES} samples each interleaved (+1 warm-up each), image {image}, "
          f"Docker {docker_version}, {os.cpu_count()} CPUs, load average before "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
          f"During the samples: CPU steal {steal:.1f} %, CPU busy {busy:.0f} % (all processes, this benchmark's included)\n")
    print(f"{'':<34} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8}")
    print(f"{'berth  RunTask -> RUNNING':<34} {b['median_ms']:>10.1f} {b['p90_ms']:>8.1f} {b['min_ms']:>8.1f} "
          f"{b['max_ms']:>8.1f}")
    print(f"{'docker run -d':<34} {d['median_ms']:>10.1f} {d['p90_ms']:>8.1f} {d['min_ms']:>8.1f} {d['max_ms']:>8.1f}")
    print(f"\nBerth / docker (medians): {ratio:.2f}")

    labels = {
        "ack_ms": "ack       t0 -> RunTask answer",
        "dispatch_ms": "dispatch  createdAt -> pullStartedAt",
        "images_ms": "images    pullStartedAt -> pullStoppedAt",
        "engine_ms": "engine    pullStoppedAt -> startedAt",
        "report_ms": "report    startedAt -> RUNNING seen",
        "created_to_started_ms": "          createdAt -> startedAt",
    }
    print(f"\nWhere Berth's time goes (medians over the samples; timestamps have ms precision, "
          f"poll every {POLL * 1000:.0f} ms)")
    for p in parts:
        v = parts_median[p]
        print(f"  {labels[p]:<42} {'-' if v is None else f'{v:8.1f} ms'}")

    print("\nTargets")
    ok = ratio <= TARGET_RATIO
    label = f"Berth RunTask->RUNNING median <= {TARGET_RATIO}x docker run -d ({ratio:.2f}x)"
    print(f"  {'PASS' if ok else 'MISS'}  {label}")

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"samples": SAMPLES, "poll_ms": POLL * 1000, "image": image, "docker_version": docker_version,
                   "cpus": os.cpu_count(), "load_average": load, "steal_pct": steal, "busy_pct": busy,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "berth": b, "docker": d, "ratio": ratio, "berth_breakdown_median": parts_median,
                   "runs": {"berth": berth_runs, "docker": docker_runs},
                   "targets": [{"target": label, "pass": ok}]}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)} (Berth's log: {os.path.relpath(LOG_OUT, ROOT)})")


if __name__ == "__main__":
    main_guard(main)
