#!/usr/bin/env python3
"""awslogs shipping: a container printing as fast as it can on Berth's awslogs driver
against the same container on Docker's json-file driver, same image, same run.

`berth server` and a separate `berth agent` (so that each one's CPU can be read from
/proc) on this machine's Docker engine. The test image's `print 0` writes "line 1",
"line 2", ... without end, as fast as the pipe takes them.

  json-file  `docker run -d --log-driver json-file IMAGE print 0` for BENCH_SECONDS
             (default 30); the rate is the last line number Docker stored / the time.
  awslogs    RunTask of the same container with awslogs (group /bench/flood); from
             RUNNING, BENCH_SECONDS later the newest line number stored in CloudWatch Logs
             (GetLogEvents) / the time is the rate reaching the API. Then StopTask; once
             STOPPED every printed line must be stored (the last line Docker holds is the
             last stored), and the agent's CPU per 10,000 lines is its CPU time over the
             phase / the lines shipped.
  latency    a container printing a line every 10 ms for BENCH_LATENCY_SECONDS (default
             20); FilterLogEvents is polled every 20 ms from the newest timestamp seen,
             and each new event's latency is the time it was first returned less its
             timestamp (Docker's time of reading the line from the container).

Targets (issue 14): shipping keeps up with >= 90% of json-file's line rate; p99
print-to-readable < 1 s. The 10-million-event FilterLogEvents figure is
bench/logs-filter.sh's, run after this one when it exists. Results go to bench/out/logs.json.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from common import (BenchError, log, free_port, wait_until, http_status, start, stop, docker, remove_labelled,
                    main_guard, build_berth_and_test_image, check, percentile, median, cpu_times, busy_pct,
                    steal_pct, ROOT, BERTH)

OUT = os.path.join(ROOT, "bench", "out", "logs.json")
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))
CLUSTER = "bench-logs"
DOCKER_LABEL = "berth-bench=logs"
TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    """User + system CPU seconds of a process (and its waited-for children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


def dockerd_pid():
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def berth_env(data_dir):
    out = subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True, text=True).stdout
    return {k: v.strip("'\"") for k, v in re.findall(r"^export (\w+)=(.*)$", out, re.M)}


def clients(env):
    import botocore.session
    from botocore.config import Config
    s = botocore.session.get_session()
    kw = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
              aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
              config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60))
    return s.create_client("ecs", **kw), s.create_client("logs", **kw)


def line_number(message):
    m = re.fullmatch(r"line (\d+)", message.strip())
    return int(m.group(1)) if m else 0


def newest_stored(logs, group, stream):
    """The highest line number among the stream's last events (the very last may be a line
    cut short when the container was stopped)."""
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=False, limit=3)
    return max((line_number(e["message"]) for e in r["events"]), default=0)


def last_printed(container):
    """The highest line number among the last lines Docker holds for `container`."""
    return max((line_number(l) for l in docker("logs", "--tail", "3", container).splitlines()), default=0)


def wait_task(ecs, arn, status, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]
        if t["lastStatus"] == status:
            return t
        time.sleep(0.05)
    raise BenchError(f"task {arn} did not reach {status} within {timeout:.0f} s")


def awslogs(group):
    return {"logDriver": "awslogs", "options": {"awslogs-group": group, "awslogs-region": "us-east-1",
                                                "awslogs-stream-prefix": "b", "awslogs-create-group": "true"}}


def json_file_phase(image):
    log(f"json-file: printing for {SECONDS:.0f} s")
    cid = docker("run", "-d", "--label", DOCKER_LABEL, "--log-driver", "json-file", image, "print", "0").strip()
    t0 = time.monotonic()
    time.sleep(SECONDS)
    docker("kill", cid)
    elapsed = time.monotonic() - t0
    lines = last_printed(cid)
    docker("rm", "-f", cid, check=False)
    return {"lines": lines, "seconds": elapsed, "lines_per_s": lines / elapsed}


def awslogs_phase(ecs, logs, agent_pid, server_pid):
    log(f"awslogs: printing for {SECONDS:.0f} s")
    dpid = dockerd_pid()
    cpu0 = {"agent": proc_cpu_s(agent_pid), "server": proc_cpu_s(server_pid),
            "dockerd": proc_cpu_s(dpid) if dpid else 0.0}
    arn = ecs.run_task(cluster=CLUSTER, taskDefinition="bench-logs-flood")["tasks"][0]["taskArn"]
    task_id = arn.rsplit("/", 1)[1]
    stream = f"b/c/{task_id}"
    wait_task(ecs, arn, "RUNNING")
    t0 = time.monotonic()
    samples = []
    while time.monotonic() - t0 < SECONDS:
        time.sleep(1.0)
        samples.append((round(time.monotonic() - t0, 2), newest_stored(logs, "/bench/flood", stream)))
    elapsed = time.monotonic() - t0
    reached = samples[-1][1] if samples else 0
    ecs.stop_task(cluster=CLUSTER, task=arn)
    t = wait_task(ecs, arn, "STOPPED")
    stopped_after = time.monotonic() - t0
    cpu1 = {"agent": proc_cpu_s(agent_pid), "server": proc_cpu_s(server_pid),
            "dockerd": proc_cpu_s(dpid) if dpid else 0.0}
    runtime_id = t["containers"][0].get("runtimeId")
    printed = last_printed(runtime_id) if runtime_id else 0
    stored = newest_stored(logs, "/bench/flood", stream)
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    return {"reached_in_window": reached, "seconds": elapsed, "lines_per_s": reached / elapsed,
            "printed": printed, "stored_at_stop": stored, "stopped_after_s": stopped_after,
            "cpu_s": cpu, "agent_cpu_ms_per_10k_lines": 1000 * cpu["agent"] / max(stored, 1) * 10_000,
            "progress": samples}


def latency_phase(ecs, logs):
    log(f"latency: a line every 10 ms for {LATENCY_SECONDS:.0f} s, FilterLogEvents every 20 ms")
    arn = ecs.run_task(cluster=CLUSTER, taskDefinition="bench-logs-latency")["tasks"][0]["taskArn"]
    wait_task(ecs, arn, "RUNNING")
    seen, lat = set(), []
    since = int(time.time() * 1000) - 5000
    t0 = time.monotonic()
    while time.monotonic() - t0 < LATENCY_SECONDS:
        r = logs.filter_log_events(logGroupName="/bench/latency", startTime=since)
        now = time.time() * 1000
        for e in r["events"]:
            if e["eventId"] not in seen:
                seen.add(e["eventId"])
                lat.append(now - e["timestamp"])
                since = max(since, e["timestamp"])
        time.sleep(0.02)
    ecs.stop_task(cluster=CLUSTER, task=arn)
    wait_task(ecs, arn, "STOPPED")
    if not lat:
        raise BenchError("no event became readable in the latency phase")
    return {"events": len(lat), "p50_ms": median(lat), "p99_ms": percentile(lat, 99), "max_ms": max(lat)}


def main():
    load = os.getloadavg()
    image = build_berth_and_test_image()
    workdir = tempfile.mkdtemp(prefix="berth-bench-logs-")
    server = agent = None
    try:
        port = free_port()
        data_dir = os.path.join(workdir, "data")
        server = start([BERTH, "server", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"],
                       os.path.join(workdir, "server.log"), {"NO_COLOR": "1", **os.environ})
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, server)
        env = berth_env(data_dir)
        ecs, logs = clients(env)
        ecs.create_cluster(clusterName=CLUSTER)
        agent = start([BERTH, "agent"], os.path.join(workdir, "agent.log"),
                      {**os.environ, **env, "NO_COLOR": "1", "ECS_CLUSTER": CLUSTER,
                       "ECS_BACKEND_HOST": env["AWS_ENDPOINT_URL"], "ECS_DATADIR": os.path.join(workdir, "agent"),
                       "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"})
        deadline = time.monotonic() + 60
        while not ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]:
            if time.monotonic() > deadline or agent.poll() is not None:
                with open(os.path.join(workdir, "agent.log"), errors="replace") as f:
                    tail = "".join(f.readlines()[-10:])
                raise BenchError(f"the agent did not register; the end of its log:\n{tail}")
            time.sleep(0.2)
        for family, group, command in [("bench-logs-flood", "/bench/flood", ["print", "0"]),
                                       ("bench-logs-latency", "/bench/latency", ["print", "0", "--every-ms", "10"])]:
            ecs.register_task_definition(family=family, containerDefinitions=[
                {"name": "c", "image": image, "memory": 64, "command": command, "logConfiguration": awslogs(group)}])
        before = cpu_times()
        jf = json_file_phase(image)
        aw = awslogs_phase(ecs, logs, agent.pid, server.pid)
        lt = latency_phase(ecs, logs)
        after = cpu_times()
    finally:
        stop(agent)
        stop(server)
        remove_labelled(DOCKER_LABEL)
        remove_labelled("com.amazonaws.ecs.task-definition-family=bench-logs-flood")
        remove_labelled("com.amazonaws.ecs.task-definition-family=bench-logs-latency")
        shutil.rmtree(workdir, ignore_errors=True)

    ratio = aw["lines_per_s"] / jf["lines_per_s"] if jf["lines_per_s"] else 0.0
    print(f"\nawslogs shipping, {SECONDS:.0f} s each, {os.cpu_count()} CPUs, load average before "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, machine busy {busy_pct(before, after):.0f}%, "
          f"steal {steal_pct(before, after):.1f}%\n")
    print(f"{'':<44} {'lines':>12} {'lines/s':>12}")
    print(f"{'json-file: lines Docker stored':<44} {jf['lines']:>12,} {jf['lines_per_s']:>12,.0f}")
    print(f"{'awslogs: lines readable through the API':<44} {aw['reached_in_window']:>12,} {aw['lines_per_s']:>12,.0f}")
    print(f"\nawslogs / json-file line rate: {ratio:.2f}")
    print(f"awslogs: printed {aw['printed']:,}, stored when STOPPED {aw['stored_at_stop']:,} "
          f"(STOPPED {aw['stopped_after_s']:.1f} s after start)")
    c = aw["cpu_s"]
    print(f"CPU seconds over the awslogs phase: agent {c['agent']:.2f}, server {c['server']:.2f}, "
          f"dockerd {c['dockerd']:.2f}; agent {aw['agent_cpu_ms_per_10k_lines']:.1f} ms per 10,000 lines")
    print(f"print-to-readable latency over {lt['events']} events: p50 {lt['p50_ms']:.0f} ms, "
          f"p99 {lt['p99_ms']:.0f} ms, max {lt['max_ms']:.0f} ms\n\nTargets")
    targets = [
        check(f"shipping >= 0.9x json-file's line rate ({ratio:.2f}x)", ratio >= 0.9),
        check(f"p99 print-to-readable < 1 s ({lt['p99_ms']:.0f} ms)", lt["p99_ms"] < 1000),
        check(f"nothing lost: every printed line stored ({aw['stored_at_stop']:,} of {aw['printed']:,})",
              aw["printed"] > 0 and aw["stored_at_stop"] == aw["printed"]),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"seconds": SECONDS, "load_average": load, "json_file": jf, "awslogs": aw, "latency": lt,
                   "ratio": ratio, "targets": targets}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")
    filter_bench = os.path.join(ROOT, "bench", "logs-filter.sh")
    if os.path.exists(filter_bench) and not os.environ.get("BENCH_SKIP_FILTER"):
        subprocess.run(["bash", filter_bench], check=True)


if __name__ == "__main__":
    main_guard(main)
