#!/usr/bin/env python3
"""Failover of the control plane on PostgreSQL (issue 18): how long writes stop when the
leading replica is killed, with a standby waiting, against the same server restarted at
once by a supervisor (the best a single replica can do), same machine, same run.

A throwaway PostgreSQL cluster (Debian's, fsync on) and two `berth server` replicas on it,
each with its own data dir and fixed port (A leads, B stands by), plus a `berth agent`
given both (ECS_BACKEND_HOST=http://A,http://B). A writer thread creates clusters one
after another (CreateCluster, each acknowledged only once committed), sending to the
replica that answered last and trying the other on a refused connection, as a client
behind a load balancer would see it.

  standby   kill -9 of the leader while the writer writes: the time until the next write
            is acknowledged (by the standby, now leading) and until the agent's channel
            is connected again. The killed replica is started again as the new standby.
  restart   the same, with no standby: the killed replica is started again at once on its
            data dir and port (a supervisor with no restart delay), the time until the
            next write is acknowledged.
  through   before the kills: DescribeClusters one after another for 2 s at the leader,
            then through the standby (a follower, which answers it from its own view of
            the state), rounds interleaved: the calls per second each way and their ratio.

BENCH_ROUNDS rounds (default 3), interleaved; medians. After each round every
acknowledged write must be there (ListClusters): nothing acknowledged is lost. Prints the
CPU seconds each Berth process used and the machine's load. Writes bench/out/failover.json.
"""

import json
import os
import subprocess
import tempfile
import threading
import time

import botocore.session
from botocore.config import Config

from common import (BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, busy_pct, median,
                    start, stop, check, main_guard, process_cpu_seconds, ROOT, BERTH, build_berth)
from ha import start_postgres, credentials

OUT = os.path.join(ROOT, "bench", "out", "failover.json")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CLUSTER = "bench-failover"
MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def client(service, port, creds):
    return botocore.session.get_session().create_client(
        service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=10))


class Replica:
    def __init__(self, name, workdir, store):
        self.name, self.port = name, free_port()
        self.data_dir = os.path.join(workdir, name)
        self.log = os.path.join(workdir, f"{name}.log")
        self.env = {**os.environ, "BERTH_STORE": store, "BERTH_MASTER_KEY": MASTER_KEY, "NO_COLOR": "1"}
        self.proc = None
        self.cpu_s = 0.0

    def start(self):
        self.proc = start([BERTH, "server", "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}"],
                          self.log, self.env)

    def healthy(self):
        return http_status(f"http://127.0.0.1:{self.port}/_berth/health") == 200

    def kill9(self):
        try:
            self.cpu_s += process_cpu_seconds(self.proc.pid)
        except OSError:
            pass
        self.proc.kill()
        self.proc.wait()


class Writer(threading.Thread):
    """Creates clusters one after another, at the replica that answered last."""

    def __init__(self, replicas, creds):
        super().__init__(daemon=True)
        self.clients = [client("ecs", r.port, creds) for r in replicas]
        self.current = 0
        self.acked = []  # (name, time acknowledged)
        self.stopping = threading.Event()

    def run(self):
        n = 0
        while not self.stopping.is_set():
            name = f"w{n}"
            try:
                self.clients[self.current].create_cluster(clusterName=name)
                self.acked.append((name, time.monotonic()))
                n += 1
            except Exception:
                # Refused (a stopped replica or a standby) or cut: the other one next.
                self.current = (self.current + 1) % len(self.clients)
                time.sleep(0.005)

    def first_ack_after(self, t0, deadline=60.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            after = [t for _, t in list(self.acked) if t > t0]
            if after:
                return after[0] - t0
            time.sleep(0.005)
        raise BenchError("no write was acknowledged within 60 s of the kill")


def agent_connected(ecs, cluster=CLUSTER):
    try:
        arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        d = ecs.describe_container_instances(cluster=cluster, containerInstances=arns[:1])
        return bool(d["containerInstances"]) and d["containerInstances"][0].get("agentConnected", False)
    except Exception:
        return False


def wait_connected_after(ecs, t0, timeout=60.0):
    # The agent's instance reads connected on the new leader only once its channel is.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if agent_connected(ecs):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise BenchError("the agent did not reconnect within 60 s")


def calls_per_second(ecs, seconds=2.0):
    """DescribeClusters one after another for `seconds`: calls per second, p50 latency (ms)."""
    took = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        ecs.describe_clusters(clusters=[CLUSTER])
        took.append(time.monotonic() - t)
    took.sort()
    return len(took) / seconds, took[len(took) // 2] * 1000


def lost_writes(ecs, writer):
    """The writes acknowledged so far that the store does not hold. The acknowledgements
    are taken before the listing starts: the writer goes on meanwhile."""
    acked = list(writer.acked)
    names = set()
    token = None
    while True:
        page = ecs.list_clusters(**({"nextToken": token} if token else {}))
        names.update(a.rsplit("/", 1)[1] for a in page["clusterArns"])
        token = page.get("nextToken")
        if not token:
            break
    return [n for n, _ in acked if n not in names]


def main():
    load = os.getloadavg()
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-test-deps.sh")], check=True)
    build_berth()
    workdir = tempfile.mkdtemp(prefix="berth-bench-failover-")
    if os.geteuid() == 0:
        os.chmod(workdir, 0o755)  # the postgres user reaches its cluster's directory
    procs = {}
    pg_url, _ = start_postgres(workdir, procs)
    a, b = Replica("a", workdir, pg_url), Replica("b", workdir, pg_url)
    agent = writer = None
    results = {"standby": [], "restart": [], "agent_reconnect": [], "direct": [], "through": [],
               "direct_p50_ms": [], "through_p50_ms": []}
    lost_total = 0
    try:
        a.start()
        wait_until("berth a", a.healthy, a.proc)
        creds = credentials(a.data_dir, a.env)
        b.start()
        wait_until("b standing by", lambda: "standby" in open(b.log, errors="replace").read(), b.proc)
        ecs_of = {r.name: client("ecs", r.port, creds) for r in (a, b)}
        ecs_of["a"].create_cluster(clusterName=CLUSTER)
        agent_env = {**os.environ, "NO_COLOR": "1", "ECS_CLUSTER": CLUSTER,
                     "ECS_BACKEND_HOST": f"http://127.0.0.1:{a.port},http://127.0.0.1:{b.port}",
                     "AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key,
                     "AWS_DEFAULT_REGION": "us-east-1", "ECS_DATADIR": os.path.join(workdir, "agent")}
        agent = start([BERTH, "agent", "--config", os.path.join(workdir, "ecs.config")],
                      os.path.join(workdir, "agent.log"), agent_env)
        wait_until("the agent", lambda: agent_connected(ecs_of["a"]), agent)
        for i in range(ROUNDS):
            for way, ecs in (("direct", ecs_of["a"]), ("through", ecs_of["b"])):
                rate, p50 = calls_per_second(ecs)
                results[way].append(rate)
                results[f"{way}_p50_ms"].append(p50)
            log(f"round {i + 1}: DescribeClusters at the leader {results['direct'][-1]:.0f}/s, through the standby "
                f"{results['through'][-1]:.0f}/s")
        writer = Writer([a, b], creds)
        writer.start()
        before = cpu_times()
        leader, standby = a, b
        for i in range(ROUNDS):
            # standby: kill the leader, the standby takes over.
            time.sleep(2)
            t0 = time.monotonic()
            leader.kill9()
            took = writer.first_ack_after(t0)
            reconnect = wait_connected_after(ecs_of[standby.name], t0)
            results["standby"].append(took)
            results["agent_reconnect"].append(reconnect)
            log(f"round {i + 1}: standby {standby.name} acknowledged a write {took * 1000:.0f} ms after the kill; "
                f"agent connected after {reconnect * 1000:.0f} ms")
            leader.start()  # the killed replica stands by now
            wait_until(f"{leader.name} standing by",
                       lambda: "standby" in open(leader.log, errors="replace").read(), leader.proc)
            leader, standby = standby, leader
            lost_total += len(lost_writes(ecs_of[leader.name], writer))

            # restart: with the standby stopped, kill the leader and start it again at once.
            standby.kill9()
            time.sleep(2)
            t0 = time.monotonic()
            leader.kill9()
            leader.start()
            took = writer.first_ack_after(t0)
            results["restart"].append(took)
            log(f"round {i + 1}: {leader.name} restarted acknowledged a write {took * 1000:.0f} ms after the kill")
            lost_total += len(lost_writes(ecs_of[leader.name], writer))
            standby.start()
            wait_until(f"{standby.name} standing by",
                       lambda: "standby" in open(standby.log, errors="replace").read(), standby.proc)
        after = cpu_times()
        writer.stopping.set()
        writer.join(timeout=5)
    finally:
        for r in (a, b):
            if r.proc and r.proc.poll() is None:
                try:
                    r.cpu_s += process_cpu_seconds(r.proc.pid)
                except OSError:
                    pass
                stop(r.proc)
        stop(agent)
        for p in procs.values():
            stop(p)
        subprocess.run(["rm", "-rf", workdir])

    sb, rs, ag = median(results["standby"]), median(results["restart"]), median(results["agent_reconnect"])
    print(f"\ncontrol-plane failover on PostgreSQL, {ROUNDS} rounds interleaved, {os.cpu_count()} CPUs, load average "
          f"before {load[0]:.2f}, machine busy {busy_pct(before, after):.0f}%, steal {steal_pct(before, after):.1f}%\n")
    print(f"{'':<44} {'median ms':>10} {'runs ms':>24}")
    fmt = lambda xs: ", ".join(f"{x * 1000:.0f}" for x in xs)
    print(f"{'standby takes over: next write acknowledged':<44} {sb * 1000:>10.0f} {fmt(results['standby']):>24}")
    print(f"{'standby takes over: agent connected again':<44} {ag * 1000:>10.0f} {fmt(results['agent_reconnect']):>24}")
    print(f"{'restart at once: next write acknowledged':<44} {rs * 1000:>10.0f} {fmt(results['restart']):>24}")
    print(f"\nstandby / restart time: {sb / rs:.2f}")
    dr, th = median(results["direct"]), median(results["through"])
    print(f"DescribeClusters one at a time: at the leader {dr:.0f}/s (p50 {median(results['direct_p50_ms']):.2f} ms), "
          f"through the standby {th:.0f}/s (p50 {median(results['through_p50_ms']):.2f} ms): {th / dr:.2f}x")
    print(f"writes acknowledged {len(writer.acked):,}, lost {lost_total}")
    print(f"CPU seconds: replica a {a.cpu_s:.1f}, replica b {b.cpu_s:.1f}\n\nTargets")
    targets = [
        check(f"nothing acknowledged is lost ({lost_total} lost)", lost_total == 0),
        check(f"a standby takes over within a few seconds ({sb * 1000:.0f} ms)", sb < 5.0),
        check(f"the agent reconnects within a few seconds ({ag * 1000:.0f} ms)", ag < 5.0),
        check(f"a standby (a follower) serves calls ({th:.0f}/s)", th > 0),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"rounds": ROUNDS, "load_average": load, "results": results, "lost": lost_total,
                   "acknowledged": len(writer.acked), "cpu_s": {"a": a.cpu_s, "b": b.cpu_s}, "targets": targets},
                  f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
