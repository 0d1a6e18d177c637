#!/usr/bin/env python3
"""FilterLogEvents over a large log group: Berth against `grep -c` over the same lines.

What it measures. A release Berth (`berth up --no-agent`, BERTH_BIN or target/bench)
with a fresh data dir. One log group of BENCH_STREAMS streams (default 10) is loaded
with BENCH_EVENTS events (default 10,000,000) through the real API: PutLogEvents from
BENCH_CLIENTS concurrent client processes (default 4, botocore), each owning some of the
streams, in batches of BENCH_BATCH events (default 7,000: the most PutLogEvents takes of
these ~125-byte lines within its 1 MB, counting 26 bytes per event). Event g goes to
stream g % streams at (start + g) ms, so every stream spans the whole time range, as
concurrent tasks' streams do. The messages are access-log lines; every 1000th holds the
term `upstream_reset`.

Then, BENCH_RUNS times each (default 5):
  whole   FilterLogEvents with filterPattern `upstream_reset`, every page (nextToken
          followed to the end), over the whole group;
  window  the same over a 10% time window in the middle;
  grep    `grep -c upstream_reset` over the same lines in one flat file (the peer: the
          fastest way to answer the question without an index, page cache warm too).
Each run is timed from the first request to the last answer (wall), and Berth's CPU
seconds (user + system of its process, /proc/<pid>/stat) are read around it. Printed:
p50 and p99 (nearest rank; with few runs p99 is the slowest), Berth's CPU per run, and
the ratio Berth/grep of the p50s. The load's rate is printed too.

Why these choices:
  * Every page is fetched, since that is what a user waiting for all matches does; the
    time includes botocore parsing the answers (about 10,000 events, 1.3 MB of JSON), so
    Berth's own CPU seconds are printed beside it.
  * The page cache is warm for both: the loads just wrote the files. The figure is the
    CPU cost of answering, not the disk's speed.
  * botocore's parameter validation is turned off for the load: it would walk 7,000
    events per call in Python and make the clients, not Berth, the bottleneck.

Target: the whole-group FilterLogEvents p50 < 1 s. A miss is reported, not an exit
failure. The server log is bench/out/logs-filter-berth.log; results go to
bench/out/logs-filter.json.
"""

import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time

import botocore.session
from botocore.config import Config

from common import (BenchError, BERTH, ROOT, check, free_port, http_status, log, main_guard, percentile, start,
                    stop, wait_until)

EVENTS = int(os.environ.get("BENCH_EVENTS", "10000000"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "10"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
BATCH = int(os.environ.get("BENCH_BATCH", "7000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TERM = "upstream_reset"
GROUP = "/bench/filter"
TARGET_S = 1.0
OUT_DIR = os.path.join(ROOT, "bench", "out")
OUT = os.path.join(OUT_DIR, "logs-filter.json")
LOG = os.path.join(OUT_DIR, "logs-filter-berth.log")

PATHS = ["/api/v1/orders", "/api/v1/items", "/static/app.js", "/api/v1/users", "/healthz"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "okhttp/4.12.0", "Go-http-client/1.1"]
MASK = (1 << 64) - 1


def access_line(g):
    """A combined-log-format line varied by a hash of g; every 1000th holds TERM."""
    r = ((g * 0x9E3779B97F4A7C15) & MASK) ^ (g >> 7)
    r ^= r >> 29
    if g % 1000 == 500:
        status, note = 502, " " + TERM
    else:
        status, note = (200, 200, 304, 404)[r % 4], ""
    return (f"10.{r % 256}.{(r >> 8) % 256}.{(r >> 16) % 256} - - [06/Dec/2026:17:{(g // 60000) % 60:02}:"
            f"{(g // 1000) % 60:02} +0000] \"GET {PATHS[(r >> 24) % 5]}/{(r >> 32) % 100000} HTTP/1.1\" {status} "
            f"{(r >> 40) % 50000} \"{AGENTS[(r >> 48) % 4]}\" rt={(r >> 52) % 3}.{(r >> 20) % 1000:03}{note}")


def client(env, read_timeout=120):
    return botocore.session.get_session().create_client(
        "logs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=read_timeout,
                      parameter_validation=False),
    )


def load_streams(args):
    """One client process: loads its streams (batch by batch, round robin over them) and
    writes their lines to its part of the flat file. Answers the events it stored."""
    env, streams, t0, part = args
    logs = client(env)
    per_stream = EVENTS // STREAMS
    stored = 0
    with open(part, "w") as flat:
        for first in range(0, per_stream, BATCH):
            for s in streams:
                gs = [k * STREAMS + s for k in range(first, min(first + BATCH, per_stream))]
                events = [{"timestamp": t0 + g, "message": access_line(g)} for g in gs]
                r = logs.put_log_events(logGroupName=GROUP, logStreamName=f"s{s:02}", logEvents=events)
                if r.get("rejectedLogEventsInfo"):
                    raise BenchError(f"PutLogEvents rejected events: {r['rejectedLogEventsInfo']}")
                flat.writelines(e["message"] + "\n" for e in events)
                stored += len(events)
    return stored


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def filter_all(logs, **window):
    """Every page of FilterLogEvents for TERM; answers (events, pages)."""
    events, pages, token = 0, 0, None
    while True:
        kw = {"nextToken": token} if token else {}
        r = logs.filter_log_events(logGroupName=GROUP, filterPattern=TERM, **window, **kw)
        events += len(r["events"])
        pages += 1
        token = r.get("nextToken")
        if not token:
            return events, pages


def timed(runs, f, pid=None):
    out = []
    for _ in range(runs):
        cpu0 = cpu_seconds(pid) if pid else 0.0
        t = time.monotonic()
        found = f()
        wall = time.monotonic() - t
        out.append({"wall_s": wall, "cpu_s": (cpu_seconds(pid) - cpu0) if pid else None, "found": found})
    return out


def main():
    if not os.path.exists(BERTH):
        raise BenchError(f"no Berth binary at {BERTH}: build it (cargo build --release -p berth) or set BERTH_BIN")
    os.makedirs(OUT_DIR, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="berth-logs-filter-")
    proc = None
    try:
        port = free_port()
        data_dir = os.path.join(workdir, "data")
        proc = start([BERTH, "up", "--no-agent", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"], LOG)
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, proc)
        out = subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True,
                             text=True).stdout
        env = {k: v.strip("'\"") for k, v in re.findall(r"^export (\w+)=(.*)$", out, re.M)}
        env.setdefault("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        logs = client(env)
        logs.create_log_group(logGroupName=GROUP)
        for s in range(STREAMS):
            logs.create_log_stream(logGroupName=GROUP, logStreamName=f"s{s:02}")

        # Three hours ago, so that every event is within PutLogEvents' 14 days and none
        # is in the future.
        t0 = int(time.time() * 1000) - 3 * 3600 * 1000
        parts = [os.path.join(workdir, f"part-{c}.log") for c in range(CLIENTS)]
        jobs = [(env, list(range(c, STREAMS, CLIENTS)), t0, parts[c]) for c in range(CLIENTS)]
        log(f"loading {EVENTS} events into {STREAMS} streams from {CLIENTS} clients, {BATCH} a batch")
        cpu0, t = cpu_seconds(proc.pid), time.monotonic()
        with multiprocessing.Pool(CLIENTS) as pool:
            stored = sum(pool.map(load_streams, jobs))
        load_s, load_cpu = time.monotonic() - t, cpu_seconds(proc.pid) - cpu0
        log(f"loaded {stored} events in {load_s:.1f} s ({stored / load_s:,.0f} events/s, Berth CPU {load_cpu:.1f} s)")
        flat = os.path.join(workdir, "flat.log")
        with open(flat, "wb") as f:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
                os.remove(p)
        flat_bytes = os.path.getsize(flat)

        expected = sum(1 for g in range(stored) if g % 1000 == 500)
        span = stored
        window = {"startTime": t0 + span * 45 // 100, "endTime": t0 + span * 55 // 100}
        in_window = sum(1 for g in range(span * 45 // 100, span * 55 // 100) if g % 1000 == 500)

        logs = client(env)
        log(f"FilterLogEvents {TERM!r}, every page, whole group, {RUNS} runs")
        whole = timed(RUNS, lambda: filter_all(logs), proc.pid)
        log(f"FilterLogEvents {TERM!r}, every page, 10% window, {RUNS} runs")
        win = timed(RUNS, lambda: filter_all(logs, **window), proc.pid)
        log(f"grep -c {TERM!r} over the flat file ({flat_bytes / 1e6:.0f} MB), {RUNS} runs")

        def grep():
            r = subprocess.run(["grep", "-c", TERM, flat], capture_output=True, text=True, check=True)
            return (int(r.stdout.strip()), 1)
        peer = timed(RUNS, grep)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)

    for name, runs, want in (("whole", whole, expected), ("window", win, in_window), ("grep", peer, expected)):
        got = {r["found"][0] for r in runs}
        if got != {want}:
            raise BenchError(f"{name}: found {sorted(got)} events, expected {want}")

    def stats(runs):
        walls = [r["wall_s"] for r in runs]
        cpus = [r["cpu_s"] for r in runs if r["cpu_s"] is not None]
        return {"p50_s": percentile(walls, 50), "p99_s": percentile(walls, 99),
                "cpu_p50_s": percentile(cpus, 50) if cpus else None, "pages": runs[0]["found"][1],
                "events": runs[0]["found"][0]}

    results = {"whole": stats(whole), "window": stats(win), "grep": stats(peer)}
    print(f"\nFilterLogEvents over {stored:,} events ({flat_bytes / 1e6:.0f} MB of lines) in {STREAMS} streams, "
          f"term in 0.1%, {RUNS} runs, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"load: {load_s:.1f} s, {stored / load_s:,.0f} events/s from {CLIENTS} clients, Berth CPU {load_cpu:.1f} s\n")
    print(f"{'case':<28} {'events':>7} {'pages':>6} {'p50 s':>7} {'p99 s':>7} {'Berth CPU s':>12}")
    for name, label in (("whole", "Berth, whole group"), ("window", "Berth, 10% window"),
                        ("grep", "grep -c, flat file")):
        r = results[name]
        cpu = f"{r['cpu_p50_s']:.2f}" if r["cpu_p50_s"] is not None else "-"
        print(f"{label:<28} {r['events']:>7} {r['pages']:>6} {r['p50_s']:>7.3f} {r['p99_s']:>7.3f} {cpu:>12}")
    ratio = results["whole"]["p50_s"] / results["grep"]["p50_s"]
    print(f"\nBerth (whole group, every page) / grep -c: x{ratio:.2f} (time; lower is better)")
    print("\nTargets")
    checks = [check(f"whole-group FilterLogEvents p50 < {TARGET_S} s ({results['whole']['p50_s']:.3f} s)",
                    results["whole"]["p50_s"] < TARGET_S)]
    with open(OUT, "w") as f:
        json.dump({"events": stored, "streams": STREAMS, "clients": CLIENTS, "batch": BATCH, "runs": RUNS,
                   "load_s": load_s, "load_cpu_s": load_cpu, "flat_bytes": flat_bytes,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
                   "results": results, "ratio_whole_to_grep": ratio,
                   "samples": {"whole": whole, "window": win, "grep": peer}, "targets": checks}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
