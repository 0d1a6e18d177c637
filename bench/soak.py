#!/usr/bin/env python3
"""A soak of the control plane on PostgreSQL (issue 18): three replicas under continuous
writes while the leader is killed (`kill -9`) or cut off from PostgreSQL (a real
partition: iptables drops its packets both ways) again and again; then a check that every
acknowledged write is there exactly once.

A throwaway PostgreSQL cluster (Debian's, fsync on) listening on 127.0.0.1-4, and three
`berth server` replicas a, b, c, each reaching it at an address of its own (127.0.0.2-4)
so that one can be cut off alone. A writer thread registers task definition revisions
(family `soak`, each carrying a unique token in an environment variable), one after
another, at the replica that answered last, moving to the next on any failure: as a
client given every replica's address. SOAK_EVENTS events (default 30) alternate:

  kill       kill -9 of the leader; it is started again (it follows the new leader).
  partition  the leader's packets to and from PostgreSQL are dropped; once another
             replica has acknowledged a write, the partition heals, the old leader finds
             itself replaced and stops, and it is started again.

Printed: failovers, writes acknowledged, lost (acknowledged but absent: must be 0),
duplicated (a token in two revisions: must be 0), time from each event to the next
acknowledged write and to a new leader (a replica answering as the leader) (p50, max;
target < 5 s: a partition is noticed by PostgreSQL's keepalives, about 4 s), and each
replica's CPU seconds. Needs root (iptables).
Writes bench/out/soak.json. Not in this soak yet: deployments, docker push, agents.
"""

import json
import os
import subprocess
import tempfile
import threading
import time

import botocore.session
from botocore.config import Config

import failover
from common import (BenchError, log, wait_until, http_status, cpu_times, busy_pct, median, stop, check,
                    main_guard, process_cpu_seconds, ROOT, build_berth)
from ha import start_postgres, credentials, http_text

OUT = os.path.join(ROOT, "bench", "out", "soak.json")
EVENTS = int(os.environ.get("SOAK_EVENTS", "30"))
FAMILY = "soak"


def client(service, port, creds):
    """A client that gives up on an answer after 2 s (a cut-off leader never answers), so
    that the time to the next acknowledged write is the failover's, not the timeout's."""
    return botocore.session.get_session().create_client(
        service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=2))


class Replica(failover.Replica):
    """A replica of bench/failover.py's (start, kill -9 with its CPU seconds counted) that
    reaches PostgreSQL at an address of its own, so that it can be cut off alone."""

    def __init__(self, name, workdir, pg_port, address):
        super().__init__(name, workdir, f"postgres://postgres@{address}:{pg_port}/berth")
        self.address, self.pg_port = address, pg_port

    def health(self):
        return http_text(f"http://127.0.0.1:{self.port}/_berth/health")

    def leads(self):
        """Its endpoint answers as the leader (a follower says so in its health check)."""
        h = self.health()
        return bool(h) and "follower" not in h

    def account(self):
        """Counts the CPU seconds of a process that ended by itself (kill9 counts its own)."""
        if self.proc is not None:
            try:
                self.cpu_s += process_cpu_seconds(self.proc.pid)
            except OSError:
                pass

    def rules(self):
        p = str(self.pg_port)
        return [["OUTPUT", "-p", "tcp", "-d", self.address, "--dport", p, "-j", "DROP"],
                ["OUTPUT", "-p", "tcp", "-s", self.address, "--sport", p, "-j", "DROP"]]

    def cut(self):
        for r in self.rules():
            subprocess.run(["iptables", "-I", *r], check=True)

    def heal(self):
        for r in self.rules():
            subprocess.run(["iptables", "-D", *r], capture_output=True)


class Writer(threading.Thread):
    """Registers revisions one after another at the replica that answered last."""

    def __init__(self, replicas, creds):
        super().__init__(daemon=True)
        self.clients = [client("ecs", r.port, creds) for r in replicas]
        self.names = [r.name for r in replicas]
        self.current = 0
        self.acked = []  # (token, revision, time, replica)
        self.failed = 0
        self.stopping = threading.Event()

    def run(self):
        n = 0
        while not self.stopping.is_set():
            token = f"t{n}"
            n += 1
            try:
                r = self.clients[self.current].register_task_definition(
                    family=FAMILY, containerDefinitions=[{
                        "name": "app", "image": "simplehttp", "memory": 32,
                        "environment": [{"name": "TOKEN", "value": token}]}])
                self.acked.append((token, r["taskDefinition"]["revision"], time.monotonic(),
                                   self.names[self.current]))
                time.sleep(0.01)
            except Exception:
                self.failed += 1
                self.current = (self.current + 1) % len(self.clients)
                time.sleep(0.01)

    def first_ack_after(self, t0, not_by=None, deadline=60.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            after = [t for _, _, t, by in list(self.acked) if t > t0 and by != not_by]
            if after:
                return after[0] - t0
            time.sleep(0.01)
        raise BenchError(f"no write was acknowledged within {deadline:.0f} s of the event")


def new_leader_after(t0, candidates, deadline=60.0):
    """Seconds from `t0` until one of `candidates` answers as the leader."""
    while time.monotonic() < t0 + deadline:
        if any(r.leads() for r in candidates):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise BenchError(f"no replica led within {deadline:.0f} s of the event")


def revisions(ecs):
    """Every revision of the family: {revision: arn}."""
    out, token = {}, None
    while True:
        page = ecs.list_task_definitions(familyPrefix=FAMILY, **({"nextToken": token} if token else {}))
        for arn in page["taskDefinitionArns"]:
            out[int(arn.rsplit(":", 1)[1])] = arn
        token = page.get("nextToken")
        if not token:
            return out


def main():
    if os.geteuid() != 0:
        raise BenchError("the soak cuts replicas off with iptables: run it as root")
    load = os.getloadavg()
    if not os.environ.get("BERTH_BIN"):
        build_berth()
    workdir = tempfile.mkdtemp(prefix="berth-bench-soak-")
    os.chmod(workdir, 0o755)  # the postgres user reaches its cluster's directory
    procs = {}
    _, pg_port = start_postgres(workdir, procs)
    replicas = [Replica(n, workdir, pg_port, a) for n, a in (("a", "127.0.0.2"), ("b", "127.0.0.3"),
                                                             ("c", "127.0.0.4"))]
    writer = None
    events = []
    try:
        replicas[0].start()
        wait_until("berth a", lambda: http_status(f"http://127.0.0.1:{replicas[0].port}/_berth/health") == 200,
                   replicas[0].proc)
        creds = credentials(replicas[0].data_dir, replicas[0].env)
        for r in replicas[1:]:
            r.start()
            wait_until(f"berth {r.name} following", lambda: "follower" in r.health(), r.proc)
        writer = Writer(replicas, creds)
        writer.start()
        before = cpu_times()
        for i in range(EVENTS):
            time.sleep(1.5)
            leaders = [r for r in replicas if r.leads()]
            if len(leaders) != 1:
                raise BenchError(f"event {i + 1}: {len(leaders)} replicas answer as the leader")
            leader = leaders[0]
            kind = "kill" if i % 2 == 0 else "partition"
            others = [r for r in replicas if r is not leader]
            t0 = time.monotonic()
            if kind == "kill":
                leader.kill9()
                led = new_leader_after(t0, others)
                took = writer.first_ack_after(t0, not_by=leader.name)
                leader.start()
            else:
                leader.cut()
                try:
                    led = new_leader_after(t0, others)
                    took = writer.first_ack_after(t0, not_by=leader.name)
                finally:
                    leader.heal()
                # Healed, the old leader learns it was replaced and stops.
                try:
                    leader.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    raise BenchError(f"{leader.name}, replaced during a partition, still runs after it healed")
                leader.account()
                leader.start()
            wait_until(f"berth {leader.name} following again", lambda: "follower" in leader.health(), leader.proc,
                       timeout=60)
            events.append({"kind": kind, "replica": leader.name, "new_leader_s": led, "next_write_s": took})
            log(f"event {i + 1}/{EVENTS}: {kind} of {leader.name}; a new leader after {led * 1000:.0f} ms, the next "
                f"write acknowledged after {took * 1000:.0f} ms; {len(writer.acked):,} acknowledged so far")
        after = cpu_times()
        writer.stopping.set()
        writer.join(timeout=15)
        # Every acknowledged revision is there, each token once.
        reader = next(r for r in replicas if r.leads())
        ecs = client("ecs", reader.port, creds)
        present = revisions(ecs)
        acked = list(writer.acked)
        lost = [(t, rev) for t, rev, _, _ in acked if rev not in present]
        acked_revisions = {rev for _, rev, _, _ in acked}
        tokens = {}
        extra = sorted(set(present) - acked_revisions)
        acked_tokens = {t for t, _, _, _ in acked}
        duplicated = []
        for rev in extra:
            td = ecs.describe_task_definition(taskDefinition=f"{FAMILY}:{rev}")["taskDefinition"]
            token = td["containerDefinitions"][0]["environment"][0]["value"]
            tokens.setdefault(token, []).append(rev)
            if token in acked_tokens:
                duplicated.append((token, rev))
        duplicated += [(t, revs) for t, revs in tokens.items() if len(revs) > 1 and t not in acked_tokens]
    finally:
        if writer:
            writer.stopping.set()
        for r in replicas:
            r.heal()
            if r.proc and r.proc.poll() is None:
                r.account()
                stop(r.proc)
        for p in procs.values():
            stop(p)
        subprocess.run(["rm", "-rf", workdir])

    kills = [e["new_leader_s"] for e in events if e["kind"] == "kill"]
    parts = [e["new_leader_s"] for e in events if e["kind"] == "partition"]
    writes = {k: [e["next_write_s"] for e in events if e["kind"] == k] for k in ("kill", "partition")}
    print(f"\nsoak: 3 replicas on PostgreSQL, {len(events)} events ({len(kills)} kill -9, {len(parts)} partitions) "
          f"under continuous writes, {os.cpu_count()} CPUs, load average before {load[0]:.2f}, machine busy "
          f"{busy_pct(before, after):.0f}%\n")
    print(f"failovers {len(events)}, writes acknowledged {len(acked):,}, refused or failed during failovers "
          f"{writer.failed:,}, revisions stored {len(present):,} ({len(extra)} never acknowledged: answers lost "
          f"in a failover), lost {len(lost)}, duplicated {len(duplicated)}")
    for kind, led in (("kill -9", kills), ("partition", parts)):
        if led:
            w = writes["kill" if kind == "kill -9" else "partition"]
            print(f"{kind}: a new leader after p50 {median(led) * 1000:.0f} ms, max {max(led) * 1000:.0f} ms; the "
                  f"writer's next acknowledged write (its calls time out after 2 s) p50 {median(w) * 1000:.0f} ms, "
                  f"max {max(w) * 1000:.0f} ms")
    print("CPU seconds: " + ", ".join(f"{r.name} {r.cpu_s:.1f}" for r in replicas) + "\n\nTargets")
    targets = [
        check(f"no acknowledged write lost ({len(lost)})", not lost),
        check(f"no write applied twice ({len(duplicated)})", not duplicated),
        check(f"a new leader within 5 s of a kill -9 (max {max(kills, default=0) * 1000:.0f} ms)",
              max(kills, default=0) < 5.0),
        check(f"a new leader within 5 s of a partition (max {max(parts, default=0) * 1000:.0f} ms)",
              max(parts, default=0) < 5.0),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"events": events, "acknowledged": len(acked), "failed": writer.failed, "stored": len(present),
                   "lost": lost, "duplicated": duplicated, "load_average": load,
                   "cpu_s": {r.name: r.cpu_s for r in replicas}, "targets": targets}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
