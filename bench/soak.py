#!/usr/bin/env python3
"""A soak of the control plane on PostgreSQL (issue 18): three replicas under continuous
writes, deployments and `docker push` while the leader is killed (`kill -9`) or cut off
from PostgreSQL (a real partition: iptables drops its packets both ways) again and again;
then a check that every acknowledged write is there exactly once, that no task ran twice
and that no pushed image is corrupt.

A throwaway PostgreSQL cluster (Debian's, fsync on) listening on 127.0.0.1-4, s3s-fs (a
real S3-compatible server, from crates.io) holding the registry's blobs, and three
`berth server` replicas a, b, c, each reaching PostgreSQL at an address of its own
(127.0.0.2-4) so that one can be cut off alone, and a `berth agent` given all three
(ECS_BACKEND_HOST), running a service of two tasks. A writer thread registers task
definition revisions (family `soak`, each carrying a unique token in an environment
variable), one after another, at the replica that answered last, moving to the next on
any failure: as a client given every replica's address. SOAK_EVENTS events (default 30) alternate:

  kill       kill -9 of the leader; it is started again (it follows the new leader).
  partition  the leader's packets to and from PostgreSQL are dropped; once another
             replica has acknowledged a write, the partition heals, the old leader finds
             itself replaced and stops, and it is started again.

Beside the writer, bench/soak_workload.py's threads deploy the service again and again
(UpdateService between two revisions), push images (`docker push`, a new layer each), and
watch the cluster's Docker containers; its docstring says what each checks at the end.

Printed: failovers, writes acknowledged, lost (acknowledged but absent: must be 0),
duplicated (a token in two revisions: must be 0), time from each event to the next
acknowledged write and to a new leader (a replica answering as the leader) (p50, max;
target < 5 s: a partition is noticed by PostgreSQL's keepalives, about 4 s), deployments
and pushes acknowledged, corrupt images (must be 0), tasks whose container ran twice (must
be 0), stray containers or tasks at the end (must be 0), the time the service took to
settle after the events, and each replica's CPU seconds. Needs root (iptables).
Writes bench/out/soak.json.
"""

import json
import os
import subprocess
import tempfile
import time

import botocore.session
from botocore.config import Config

import failover
import soak_workload as work
from blobs import start_s3s_fs, BUCKET, ACCESS_KEY, SECRET_KEY
from common import (BenchError, log, wait_until, http_status, cpu_times, busy_pct, median, start, stop, check,
                    main_guard, process_cpu_seconds, remove_subnet_networks, ROOT, BERTH, build_berth, build_test_image)
from ha import start_postgres, credentials, http_text

OUT = os.path.join(ROOT, "bench", "out", "soak.json")
EVENTS = int(os.environ.get("SOAK_EVENTS", "30"))
FAMILY = "soak"
VPC_BLOCK, VPC_PREFIX = "10.214.0.0/16", "10.214."


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

    def __init__(self, name, workdir, pg_port, address, blobs):
        super().__init__(name, workdir, f"postgres://postgres@{address}:{pg_port}/berth")
        self.address, self.pg_port, self.blobs = address, pg_port, blobs
        self.env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)

    def start(self):
        self.proc = start([BERTH, "server", "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}",
                           "--blobs", self.blobs, "--vpc-cidr", VPC_BLOCK], self.log, self.env)

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


class Writer(work.Rotating):
    """Registers revisions one after another at the replica that answered last; `acked`
    holds (token, revision, time, replica)."""

    def __init__(self, replicas, creds):
        super().__init__([r.name for r in replicas], pause=0.01)
        self.clients = [client("ecs", r.port, creds) for r in replicas]

    def call(self, replica, n):
        token = f"t{n}"
        r = self.clients[replica].register_task_definition(
            family=FAMILY, containerDefinitions=[{
                "name": "app", "image": "simplehttp", "memory": 32,
                "environment": [{"name": "TOKEN", "value": token}]}])
        return token, r["taskDefinition"]["revision"], time.monotonic(), self.names[replica]

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
            family, revision = arn.rsplit("/", 1)[1].rsplit(":", 1)
            if family == FAMILY:  # not the service's family, whatever familyPrefix matches
                out[int(revision)] = arn
        token = page.get("nextToken")
        if not token:
            return out


def main():
    if os.geteuid() != 0:
        raise BenchError("the soak cuts replicas off with iptables: run it as root")
    load = os.getloadavg()
    if not os.environ.get("BERTH_BIN"):
        build_berth()
    image = build_test_image()
    workdir = tempfile.mkdtemp(prefix="berth-bench-soak-")
    os.chmod(workdir, 0o755)  # the postgres user reaches its cluster's directory
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    procs = {}
    replicas, hosts = [], []
    writer = deployer = pusher = watch = agent = None
    cluster_arn = None
    events = []
    try:
        _, pg_port = start_postgres(workdir, procs)
        procs["s3s-fs"], endpoint = start_s3s_fs(workdir)
        blobs = f"s3://{BUCKET}?endpoint={endpoint}&region=us-east-1"
        replicas = [Replica(n, workdir, pg_port, a, blobs) for n, a in (("a", "127.0.0.2"), ("b", "127.0.0.3"),
                                                                        ("c", "127.0.0.4"))]
        names = [r.name for r in replicas]
        hosts = [f"127.0.0.1:{r.port}" for r in replicas]
        replicas[0].start()
        wait_until("berth a", lambda: http_status(f"http://127.0.0.1:{replicas[0].port}/_berth/health") == 200,
                   replicas[0].proc)
        creds = credentials(replicas[0].data_dir, replicas[0].env)
        for r in replicas[1:]:
            r.start()
            wait_until(f"berth {r.name} following", lambda: "follower" in r.health(), r.proc)
        ecs_clients = [client("ecs", r.port, creds) for r in replicas]
        ecs = ecs_clients[0]
        cluster_arn = ecs.create_cluster(clusterName=work.CLUSTER)["cluster"]["clusterArn"]
        agent = start([BERTH, "agent", "--config", os.path.join(workdir, "ecs.config")],
                      os.path.join(workdir, "agent.log"),
                      {**os.environ, "NO_COLOR": "1", "ECS_CLUSTER": work.CLUSTER,
                       "ECS_BACKEND_HOST": ",".join(f"http://{h}" for h in hosts),
                       "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached",
                       "AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key,
                       "AWS_DEFAULT_REGION": "us-east-1", "ECS_DATADIR": os.path.join(workdir, "agent")})
        web = [ecs.register_task_definition(family=work.WEB_FAMILY, containerDefinitions=[{
            "name": "web", "image": image, "memory": 16, "command": ["sleep"],
            "environment": [{"name": "REVISION", "value": rev}]}])["taskDefinition"]["taskDefinitionArn"]
            for rev in ("a", "b")]
        wait_until("the agent", lambda: failover.agent_connected(ecs, work.CLUSTER), agent, timeout=60)
        ecs.create_service(cluster=work.CLUSTER, serviceName=work.SERVICE, taskDefinition=web[0],
                           desiredCount=work.TASKS)
        ecr = client("ecr", replicas[0].port, creds)
        ecr.create_repository(repositoryName=work.REPOSITORY)
        auth = work.login(hosts, ecr)
        deployer = work.Deployer(names, ecs_clients, web)
        log(f"the service settled after {deployer.settle(ecs):.1f} s; the events begin")
        writer = Writer(replicas, creds)
        pusher = work.Pusher(names, hosts)
        watch = work.TaskWatch(cluster_arn)
        for t in (writer, deployer, pusher, watch):
            t.start()
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
                f"write acknowledged after {took * 1000:.0f} ms; so far {len(writer.acked):,} writes, "
                f"{len(deployer.acked)} deployments, {len(pusher.acked)} pushes acknowledged")
        after = cpu_times()
        for t in (writer, deployer, pusher):
            t.stopping.set()
        for t in (writer, deployer, pusher):
            t.join(timeout=90)
        # Every acknowledged revision is there, each token once.
        reader = next(r for r in replicas if r.leads())
        ecs = client("ecs", reader.port, creds)
        settled = deployer.settle(ecs)
        watch.stopping.set()
        watch.join(timeout=15)
        twice, strays = watch.twice(), watch.strays(ecs)
        corrupt = work.corrupt_images(f"127.0.0.1:{reader.port}", auth, list(pusher.acked))
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
        for t in (writer, deployer, pusher, watch):
            if t:
                t.stopping.set()
        if cluster_arn and agent and agent.poll() is None:
            try:  # the agent stops the service's containers before it goes
                for r in replicas:
                    if r.proc and r.proc.poll() is None and r.leads():
                        ecs = client("ecs", r.port, creds)
                        ecs.delete_service(cluster=work.CLUSTER, service=work.SERVICE, force=True)
                        break
            except Exception as e:
                log(f"could not delete the service: {e}")
        stop(agent)
        if cluster_arn:
            work.remove_containers(cluster_arn)
        if pusher:
            pusher.remove_images()
        work.logout(hosts)
        remove_subnet_networks(VPC_PREFIX)
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
    print(f"deployments acknowledged {len(deployer.acked)} (failed {deployer.failed}); the service settled on the "
          f"last one {settled:.1f} s after the events; tasks whose container ran twice {len(twice)}; stray "
          f"containers or tasks {len(strays)}")
    print(f"docker pushes acknowledged {len(pusher.acked)} (failed {pusher.failed}), each a new "
          f"{work.LAYER_BYTES >> 20} MiB layer, taking p50 {median(pusher.took):.1f} s, max {max(pusher.took):.1f} s; "
          f"corrupt or missing images {len(corrupt)}")
    for what, items in (("ran twice", twice), ("stray", strays), ("corrupt", corrupt)):
        for item in list(items.items() if isinstance(items, dict) else items)[:5]:
            print(f"  {what}: {item}")
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
        check(f"no task's container ran twice ({len(twice)})", not twice),
        check(f"no stray container or task at the end ({len(strays)})", not strays),
        check(f"no pushed image corrupt or missing ({len(corrupt)} of {len(pusher.acked)})", not corrupt),
        check(f"a new leader within 5 s of a kill -9 (max {max(kills, default=0) * 1000:.0f} ms)",
              max(kills, default=0) < 5.0),
        check(f"a new leader within 5 s of a partition (max {max(parts, default=0) * 1000:.0f} ms)",
              max(parts, default=0) < 5.0),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"events": events, "acknowledged": len(acked), "failed": writer.failed, "stored": len(present),
                   "lost": lost, "duplicated": duplicated, "load_average": load,
                   "deployments": len(deployer.acked), "deployments_failed": deployer.failed, "settled_s": settled,
                   "pushes": len(pusher.acked), "pushes_failed": pusher.failed, "push_s": pusher.took, "corrupt": corrupt,
                   "ran_twice": [list(k) for k in twice], "strays": strays,
                   "cpu_s": {r.name: r.cpu_s for r in replicas}, "targets": targets}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
