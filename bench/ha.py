#!/usr/bin/env python3
"""Durable writes on PostgreSQL against SQLite, and reads spread over PostgreSQL replicas
(bench/ha.sh, issue 18).

`berth server` processes run on this machine in the same run, each driven the same way
by wrk (2 threads, 16 connections, BENCH_DURATION seconds, default 10, BENCH_ROUNDS
rounds interleaved, default 3):

  sqlite    the default store: SQLite in the data dir (WAL, synchronous=FULL).
  postgres  --store postgres://...: a throwaway PostgreSQL cluster (Debian's, started by
            this script with fsync=on and synchronous_commit=on) on loopback.

The operation is RegisterTaskDefinition: every request registers a new revision of family
"bench", acknowledged only once committed (both stores group-commit the writer's batch in
one transaction). Requests are pre-signed and replayed by wrk, as in bench/ecs_api.py
(whose helpers this uses); any non-2xx answer or socket error fails the run. Reported per
side: writes/s, p50 and p99, the machine's steal and busy share, and the CPU seconds of
the Berth process and (for postgres) of the PostgreSQL server's processes. Then the
PostgreSQL/SQLite ratios and PASS/MISS against the target (>= 2,000 writes/s on
PostgreSQL).

Reads: two more replicas join the PostgreSQL one as followers, and DescribeClusters is
driven, in interleaved rounds, against SQLite (one process, wrk -t2 -c16), the leading
PostgreSQL replica alone (the same), and all three replicas at once (one wrk a replica,
-t1 -c6, together about the same load). Reported: reads/s (summed), p50 (median of the
three) and p99 (the worst), and the CPU seconds of every Berth process and of
PostgreSQL; then the three replicas' throughput over one's (target >= 2.5x "within what
two cores allow") and the reads each Berth CPU second served, which says whether the
machine's cores, not the replicas, are the limit. Writes bench/out/ha.json.

BERTH_BIN runs an existing build instead of building one (the release build into
target/bench otherwise).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

from botocore.credentials import Credentials

from common import (BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, busy_pct, median,
                    start, stop, check, main_guard, process_cpu_seconds, ROOT, TARGET_DIR, BERTH)
from ecs_api import wrk_run, wrk_script, wrk_command, parse_wrk, call, THREADS, CONNECTIONS, DURATION, ROUNDS

OUT = os.path.join(ROOT, "bench", "out", "ha.json")
PAYLOAD = {
    "family": "bench",
    "containerDefinitions": [{
        "name": "web", "image": "simplehttp:latest", "memory": 128,
        "portMappings": [{"containerPort": 8080}],
    }],
}
TARGET_WRITES = 2000
TARGET_READ_SCALING = 2.5
FOLLOWERS = ("follower-b", "follower-c")
# Replicas on one database share the key their sealed values are sealed with.
MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


# The addresses PostgreSQL listens on: one a replica, so that one can be cut off alone.
PG_ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def pg_bin():
    versions = sorted((int(v), v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit())
    if not versions:
        raise BenchError("PostgreSQL is not installed: run scripts/install-test-deps.sh")
    return os.path.join("/usr/lib/postgresql", versions[-1][1], "bin")


def as_postgres(cmd):
    """initdb and postgres refuse to run as root: as root they run as the postgres user."""
    if os.geteuid() == 0:
        return ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups", "--", *cmd]
    return cmd


def start_postgres(workdir, procs):
    """A fresh cluster with database `berth`; returns (url, port)."""
    bindir = pg_bin()
    data = os.path.join(workdir, "pg")
    os.makedirs(data)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(as_postgres([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                                "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C.UTF-8"]),
                   check=True, capture_output=True)
    # Clients may come from any loopback address (bench/soak.sh cuts one replica's off).
    with open(os.path.join(data, "pg_hba.conf"), "a") as f:
        f.write("\nhost all all 127.0.0.0/8 trust\n")
    port = free_port()
    procs["pg-server"] = start(as_postgres([os.path.join(bindir, "postgres"), "-D", data, "-p", str(port),
                                           "-c", f"listen_addresses={','.join(PG_ADDRESSES)}",
                                           "-c", "unix_socket_directories=",
                                           "-c", "fsync=on", "-c", "synchronous_commit=on"]),
                              os.path.join(workdir, "postgres.log"))
    isready = [os.path.join(bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    wait_until("postgres", lambda: subprocess.run(isready).returncode == 0, procs["pg-server"])
    subprocess.run([os.path.join(bindir, "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-X",
                    "-c", "CREATE DATABASE berth"], check=True, capture_output=True)
    return f"postgres://postgres@127.0.0.1:{port}/berth", port


def postmaster_pid(proc):
    """`start` runs setpriv, which execs postgres: the same process."""
    return proc.pid


def tree_cpu_seconds(pid):
    """CPU seconds of a process, its live children, and its exited children (cutime and
    cstime), as PostgreSQL's backends are children of the postmaster."""
    total = process_cpu_seconds(pid)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += process_cpu_seconds(int(entry))
        except (OSError, ValueError):
            pass
    return total


def start_berth(name, workdir, procs, store=None, follower=False):
    port = free_port()
    data_dir = os.path.join(workdir, name)
    cmd = [BERTH, "server", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ)
    if store:
        env["BERTH_STORE"] = store
        env["BERTH_MASTER_KEY"] = MASTER_KEY
    procs[name] = start(cmd, os.path.join(workdir, f"{name}.log"), env=env)
    health = f"http://127.0.0.1:{port}/_berth/health"
    if follower:
        # A follower answers its health check once it has read the store.
        wait_until(f"berth ({name})", lambda: "follower" in http_text(health), procs[name])
        return port, None
    wait_until(f"berth ({name})", lambda: http_status(health) == 200, procs[name])
    return port, credentials(data_dir, env)


def http_text(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except (OSError, ValueError):
        return ""


def wrk_spread(ports, creds, op, payload, workdir):
    """One wrk a replica at once (-t1, CONNECTIONS split between them); the results summed."""
    scripts = [wrk_script(f"replica-{port}", port, creds, op, payload, workdir) for port in ports]
    per = max(1, round(CONNECTIONS * 0.4))
    cmds = [wrk_command(script, port, threads=1, connections=per) for script, port in zip(scripts, ports)]
    log(f"{op} spread over {len(ports)} replicas: " + " | ".join(" ".join(c) for c in cmds))
    before = cpu_times()
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    outs = [p.communicate(timeout=DURATION + 60) for p in running]
    after = cpu_times()
    parts = []
    for p, (out, err) in zip(running, outs):
        if p.returncode != 0:
            raise BenchError(f"wrk failed ({p.returncode}): {err}{out}")
        parts.append(parse_wrk(out))
    return {
        "requests": sum(r["requests"] for r in parts),
        "rps": sum(r["rps"] for r in parts),
        "p50_ms": median([r["p50_ms"] for r in parts]),
        "p99_ms": max(r["p99_ms"] for r in parts),
        "non2xx": sum(r["non2xx"] for r in parts),
        "wrk_non2xx_or_3xx": sum(r["wrk_non2xx_or_3xx"] for r in parts),
        "socket_errors": sum(r["socket_errors"] for r in parts),
        "per_replica_rps": [r["rps"] for r in parts],
        "wrk_output": "\n".join(o for o, _ in outs),
        "steal_pct": steal_pct(before, after),
    }


def credentials(data_dir, env):
    """The key `berth env` prints, with the server's store (BERTH_STORE in `env`)."""
    out = subprocess.run([BERTH, "env", "--data-dir", data_dir], env=env, check=True, capture_output=True,
                         text=True).stdout
    found = dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))
    return Credentials(found["AWS_ACCESS_KEY_ID"], found["AWS_SECRET_ACCESS_KEY"])


def main():
    load = os.getloadavg()
    if not os.environ.get("BERTH_BIN"):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-test-deps.sh")], check=True)
        log("building berth (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})
    workdir = tempfile.mkdtemp(prefix="berth-bench-ha-")
    if os.geteuid() == 0:
        os.chmod(workdir, 0o755)  # the postgres user reaches its cluster's directory
    procs = {}
    runs = {}
    try:
        url, _ = start_postgres(workdir, procs)
        targets = {
            "sqlite": start_berth("sqlite", workdir, procs),
            "postgres": start_berth("postgres", workdir, procs, store=url),
        }
        for name, (port, creds) in targets.items():
            call(name, port, creds, "CreateCluster", {"clusterName": "bench"})
        for _ in range(ROUNDS):
            for name, (port, creds) in targets.items():
                cpu_before = {"berth": process_cpu_seconds(procs[name].pid)}
                if name == "postgres":
                    cpu_before["postgres"] = tree_cpu_seconds(postmaster_pid(procs["pg-server"]))
                machine_before = cpu_times()
                r = wrk_run(name, port, creds, "RegisterTaskDefinition", PAYLOAD, workdir)
                machine_after = cpu_times()
                r["busy_pct"] = busy_pct(machine_before, machine_after)
                r["berth_cpu_s"] = process_cpu_seconds(procs[name].pid) - cpu_before["berth"]
                if name == "postgres":
                    r["postgres_cpu_s"] = tree_cpu_seconds(postmaster_pid(procs["pg-server"])) - cpu_before["postgres"]
                runs.setdefault(name, []).append(r)
                log(f"{name}: {r['rps']:.0f} writes/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
                if r["non2xx"] or r["wrk_non2xx_or_3xx"] or r["socket_errors"]:
                    raise BenchError(f"{name}: {r['non2xx']} non-2xx responses, {r['socket_errors']} socket errors; "
                                     f"the run measured errors:\n{r['wrk_output']}")
        # Every 200 is a revision the store kept.
        for name, (port, creds) in targets.items():
            latest = json.loads(call(name, port, creds, "DescribeTaskDefinition", {"taskDefinition": "bench"}))
            registered = sum(r["requests"] for r in runs[name])
            if latest["taskDefinition"]["revision"] < registered:
                raise BenchError(f"{name} answered {registered} registrations but kept "
                                 f"{latest['taskDefinition']['revision']}")
        reads = read_rounds(targets, url, workdir, procs)
    finally:
        # The servers first, then the database under them.
        for name in ("sqlite", "postgres", *FOLLOWERS, "pg-server"):
            stop(procs.get(name))
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nDurable RegisterTaskDefinition, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, {os.cpu_count()} CPUs "
          f"shared by wrk, Berth and PostgreSQL, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'store':<9} {'round':>5} {'writes/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'steal %':>7} {'busy %':>6} "
          f"{'berth cpu s':>11} {'pg cpu s':>8}")
    results = {}
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            print(f"{name:<9} {i + 1:>5} {r['rps']:>9.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['steal_pct']:>7.1f} "
                  f"{r['busy_pct']:>6.1f} {r['berth_cpu_s']:>11.1f} {r.get('postgres_cpu_s', 0):>8.1f}")
        results[name] = {k: median([r.get(k, 0) for r in rs])
                         for k in ("rps", "p50_ms", "p99_ms", "steal_pct", "busy_pct", "berth_cpu_s", "postgres_cpu_s")}
    pg, sq = results["postgres"], results["sqlite"]
    ratio = pg["rps"] / sq["rps"] if sq["rps"] else None
    print(f"\nMedians of {ROUNDS} rounds: postgres {pg['rps']:.0f} writes/s (p50 {pg['p50_ms']:.2f} ms, p99 "
          f"{pg['p99_ms']:.2f} ms), sqlite {sq['rps']:.0f} writes/s (p50 {sq['p50_ms']:.2f} ms, p99 {sq['p99_ms']:.2f} ms)")
    print(f"PostgreSQL / SQLite: throughput x{ratio:.2f}; CPU seconds per 1,000 writes: postgres "
          f"{1000 * (pg['berth_cpu_s'] + pg['postgres_cpu_s']) / (pg['rps'] * DURATION):.2f} "
          f"(berth {1000 * pg['berth_cpu_s'] / (pg['rps'] * DURATION):.2f}), "
          f"sqlite {1000 * sq['berth_cpu_s'] / (sq['rps'] * DURATION):.2f}")
    scaling, busy = report_reads(reads)
    print("\nTargets")
    checks = [
        check(f"PostgreSQL RegisterTaskDefinition >= {TARGET_WRITES} durable writes/s ({pg['rps']:.0f})",
              pg["rps"] >= TARGET_WRITES),
        check(f"reads on 3 replicas >= {TARGET_READ_SCALING}x one replica's (x{scaling:.2f}; limited by the "
              f"machine's {os.cpu_count()} cores, busy {busy:.0f}%)", scaling >= TARGET_READ_SCALING),
    ]
    strip = lambda sides: {k: [{x: y for x, y in r.items() if x != "wrk_output"} for r in v] for k, v in sides.items()}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"duration_s": DURATION, "rounds": ROUNDS, "threads": THREADS, "connections": CONNECTIONS,
                   "cpus": os.cpu_count(), "load_average": load,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": strip(runs), "results": results, "ratio_postgres_over_sqlite": ratio,
                   "reads": strip(reads), "targets": checks}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


READ = ("DescribeClusters", {"clusters": ["bench"]})


def berth_cpu(procs, names):
    return sum(process_cpu_seconds(procs[n].pid) for n in names)


def read_rounds(targets, url, workdir, procs):
    """DescribeClusters on SQLite, on the PostgreSQL leader alone, and spread over it and
    two followers; returns {side: [round results]}."""
    ports = [targets["postgres"][0]]
    for name in FOLLOWERS:
        ports.append(start_berth(name, workdir, procs, store=url, follower=True)[0])
    creds = targets["postgres"][1]
    replicas = ("postgres", *FOLLOWERS)
    runs = {}
    for _ in range(ROUNDS):
        for side in ("sqlite", "postgres x1", "postgres x3"):
            names = {"sqlite": ("sqlite",), "postgres x1": ("postgres",), "postgres x3": replicas}[side]
            cpu_before = berth_cpu(procs, names)
            pg_before = tree_cpu_seconds(postmaster_pid(procs["pg-server"]))
            machine_before = cpu_times()
            if side == "postgres x3":
                r = wrk_spread(ports, creds, *READ, workdir)
            else:
                port, side_creds = targets[names[0]]
                r = wrk_run(side.replace(" ", "-"), port, side_creds, *READ, workdir)
            r["busy_pct"] = busy_pct(machine_before, cpu_times())
            r["berth_cpu_s"] = berth_cpu(procs, names) - cpu_before
            r["postgres_cpu_s"] = tree_cpu_seconds(postmaster_pid(procs["pg-server"])) - pg_before
            if r["non2xx"] or r["wrk_non2xx_or_3xx"] or r["socket_errors"]:
                raise BenchError(f"{side}: {r['non2xx']} non-2xx responses, {r['socket_errors']} socket errors")
            runs.setdefault(side, []).append(r)
            log(f"{side}: {r['rps']:.0f} reads/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                f"berth cpu {r['berth_cpu_s']:.1f} s")
    return runs


def report_reads(runs):
    print(f"\nDescribeClusters reads, {DURATION} s rounds, {os.cpu_count()} CPUs shared by wrk, the Berth "
          f"processes and PostgreSQL\n")
    print(f"{'side':<12} {'round':>5} {'reads/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'steal %':>7} {'busy %':>6} "
          f"{'berth cpu s':>11} {'pg cpu s':>8} {'reads/berth cpu s':>17}")
    med = {}
    for side, rs in runs.items():
        for i, r in enumerate(rs):
            per_cpu = r["rps"] * DURATION / r["berth_cpu_s"] if r["berth_cpu_s"] else 0
            spread = f"  per replica {', '.join(f'{x:.0f}' for x in r['per_replica_rps'])}" \
                if "per_replica_rps" in r else ""
            print(f"{side:<12} {i + 1:>5} {r['rps']:>9.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
                  f"{r['steal_pct']:>7.1f} {r['busy_pct']:>6.1f} {r['berth_cpu_s']:>11.1f} {r['postgres_cpu_s']:>8.1f} "
                  f"{per_cpu:>17.0f}{spread}")
        med[side] = {k: median([r[k] for r in rs]) for k in ("rps", "p50_ms", "p99_ms", "busy_pct", "berth_cpu_s")}
    one, three = med["postgres x1"], med["postgres x3"]
    scaling = three["rps"] / one["rps"] if one["rps"] else 0
    print(f"\nMedians: sqlite {med['sqlite']['rps']:.0f} reads/s, PostgreSQL leader alone {one['rps']:.0f}, "
          f"three replicas {three['rps']:.0f} (x{scaling:.2f}); machine busy {one['busy_pct']:.0f}% and "
          f"{three['busy_pct']:.0f}%: with wrk on the same two cores, the cores are the limit once busy nears 100%")
    return scaling, three["busy_pct"]


if __name__ == "__main__":
    main_guard(main)
