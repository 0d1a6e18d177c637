#!/usr/bin/env python3
"""Durability under kill -9: no acknowledged write is ever lost.

One data dir, CYCLES cycles (default 50). Each cycle:

  1. `berth server` starts on the data dir (the same port every time).
  2. WRITERS threads (default 8) write as fast as the server answers, each recording a
     write only once it is acknowledged (HTTP 200), round-robin over four kinds:
       CreateCluster           a new cluster (ECS, JSON protocol)
       RegisterTaskDefinition  a new revision of the writer's family
       CreateRepository        a new ECR repository
       TagResource             the writer's counter tag on its own cluster, one higher
                               each time: an update of the same record, so a restart
                               that brought back an older value would show.
  3. While they write, a second `berth server` is started on the same data dir: it
     must be refused (non-zero exit, "in use") within 10 s.
  4. After a random time (0.2-2 s by default) the server is killed with SIGKILL.
  5. It is started again on the same data dir, which must succeed although the killed
     process never released its lock, and every write acknowledged in this cycle or any
     earlier one is looked up: each cluster, revision and repository must exist, and each
     counter must be at least its last acknowledged value (at most the one in flight).

Prints a line per cycle and the totals, and exits 1 if a write was lost, a write was
refused while the server ran, a second server was not refused, or a restart failed.
Everything runs on loopback; `berth server` runs no agent, so no container is made. The
server is stopped and the data dir removed on exit (kept with --keep, or on failure).
"""

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"
CONTAINER = {"name": "web", "image": "simplehttp:latest", "memory": 64}
START_TIMEOUT = 30.0
REFUSAL_TIMEOUT = 10.0


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`berth server` on one data dir and port, started and killed again and again."""

    def __init__(self, berth, data, port):
        self.berth, self.data, self.port = berth, data, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None
        self.log = os.path.join(data, "server.log")

    def start(self):
        """Starts the server; returns the seconds until it answered its health check."""
        began = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.berth, "server", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
        while time.monotonic() - began < START_TIMEOUT:
            if self.proc.poll() is not None:
                raise Failure(f"berth server exited with status {self.proc.returncode} during start; "
                              f"see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/_berth/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - began
            except OSError:
                pass
            time.sleep(0.02)
        raise Failure(f"berth server did not answer within {START_TIMEOUT:.0f} s; see {self.log}")

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.proc = None

    def second_start_refused(self):
        """Starts another server on the data dir; whether it was refused, and its words."""
        other = subprocess.Popen(
            [self.berth, "server", "--data-dir", self.data, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = other.communicate(timeout=REFUSAL_TIMEOUT)
        except subprocess.TimeoutExpired:
            other.kill()
            other.communicate()
            return False, f"still running after {REFUSAL_TIMEOUT:.0f} s"
        text = err.decode(errors="replace").strip()
        return other.returncode != 0 and "in use" in text, text

    def credentials(self):
        out = subprocess.run([self.berth, "env", "--data-dir", self.data], check=True, capture_output=True,
                             text=True).stdout
        env = dict(line[len("export "):].split("=", 1) for line in out.splitlines() if line.startswith("export "))
        return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]


class Failure(Exception):
    pass


class Acked:
    """Every acknowledged write, across cycles."""

    def __init__(self, writers):
        self.lock = threading.Lock()
        self.clusters, self.revisions, self.repositories = set(), set(), set()
        # Per writer: the last acknowledged counter value, and the highest one sent.
        self.counter = [0] * writers
        self.counter_sent = [0] * writers
        self.count = 0

    def total(self):
        return len(self.clusters) + len(self.revisions) + len(self.repositories) + sum(
            1 for c in self.counter if c)


def client(service, url, key):
    return botocore.session.get_session().create_client(
        service, endpoint_url=url, region_name=REGION, aws_access_key_id=key[0], aws_secret_access_key=key[1],
        # A refused or failed write must be seen, not retried away.
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30))


def writer(w, cycle, ecs, ecr, counter_arn, acked, killed, errors):
    n = 0
    while True:
        kind = n % 4
        try:
            if kind == 0:
                name = f"k{cycle}-w{w}-{n}"
                ecs.create_cluster(clusterName=name)
                with acked.lock:
                    acked.clusters.add(name)
            elif kind == 1:
                r = ecs.register_task_definition(family=f"w{w}", containerDefinitions=[CONTAINER])
                rev = r["taskDefinition"]["revision"]
                with acked.lock:
                    acked.revisions.add(f"w{w}:{rev}")
            elif kind == 2:
                name = f"k{cycle}/w{w}/{n}"
                ecr.create_repository(repositoryName=name)
                with acked.lock:
                    acked.repositories.add(name)
            else:
                with acked.lock:
                    acked.counter_sent[w] += 1
                    value = acked.counter_sent[w]
                ecs.tag_resource(resourceArn=counter_arn, tags=[{"key": "counter", "value": str(value)}])
                with acked.lock:
                    acked.counter[w] = max(acked.counter[w], value)
            with acked.lock:
                acked.count += 1
        except ClientError as e:
            # An answer from the server that refuses a write is a failure in any cycle.
            errors.append(f"writer {w}: {e}")
            return
        except Exception as e:  # noqa: BLE001 - the connection breaks when the server is killed
            if not killed.is_set():
                errors.append(f"writer {w} before the kill: {type(e).__name__}: {e}")
            return
        n += 1


def pages(call, key, **kwargs):
    token = None
    while True:
        r = call(**kwargs, **({"nextToken": token} if token else {}))
        yield from r.get(key, [])
        token = r.get("nextToken")
        if not token:
            return


def lost_writes(ecs, ecr, acked, writers):
    """Every acknowledged write that the server does not have, as descriptions."""
    clusters = {arn.rsplit("/", 1)[1] for arn in pages(ecs.list_clusters, "clusterArns", maxResults=100)}
    revisions = {arn.rsplit("/", 1)[1] for arn in pages(ecs.list_task_definitions, "taskDefinitionArns",
                                                          maxResults=100)}
    repositories = {r["repositoryName"] for r in pages(ecr.describe_repositories, "repositories",
                                                         maxResults=1000)}
    lost = [f"cluster {c}" for c in sorted(acked.clusters - clusters)]
    lost += [f"task definition {r}" for r in sorted(acked.revisions - revisions)]
    lost += [f"repository {r}" for r in sorted(acked.repositories - repositories)]
    described = ecs.describe_clusters(clusters=[f"counter-w{w}" for w in range(writers)], include=["TAGS"])
    for c in described["clusters"]:
        w = int(c["clusterName"].rsplit("w", 1)[1])
        value = int(next((t["value"] for t in c.get("tags", []) if t["key"] == "counter"), "0"))
        if not acked.counter[w] <= value <= acked.counter_sent[w]:
            lost.append(f"counter of writer {w} is {value}; {acked.counter[w]} was acknowledged")
    return lost


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--berth", default="target/debug/berth")
    p.add_argument("--cycles", type=int, default=int(os.environ.get("CYCLES", "50")))
    p.add_argument("--writers", type=int, default=int(os.environ.get("WRITERS", "8")))
    p.add_argument("--min-run", type=float, default=0.2, help="shortest write phase before the kill (s)")
    p.add_argument("--max-run", type=float, default=2.0, help="longest write phase before the kill (s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the data dir")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    berth = os.path.abspath(args.berth)
    data = tempfile.mkdtemp(prefix="berth-kill9-")
    server = Server(berth, data, free_port())
    log(f"kill9: {args.cycles} cycles, {args.writers} writers, seed {seed}, data dir {data}, {berth}")
    began = time.monotonic()
    acked = Acked(args.writers)
    ok = False
    stats = {"lost": 0, "errors": 0, "refused": 0, "restart_s": []}
    try:
        server.start()
        key = server.credentials()
        ecs, ecr = client("ecs", server.url, key), client("ecr", server.url, key)
        counters = [ecs.create_cluster(clusterName=f"counter-w{w}")["cluster"]["clusterArn"]
                    for w in range(args.writers)]
        clients = [(client("ecs", server.url, key), client("ecr", server.url, key)) for _ in range(args.writers)]
        for cycle in range(1, args.cycles + 1):
            killed, errors = threading.Event(), []
            before = acked.count
            threads = [threading.Thread(target=writer, daemon=True,
                                        args=(w, cycle, *clients[w], counters[w], acked, killed, errors))
                       for w in range(args.writers)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            run = rng.uniform(args.min_run, args.max_run)
            refused, said = server.second_start_refused()
            stats["refused"] += refused
            if not refused:
                log(f"  a second server on the data dir was not refused: {said}")
            time.sleep(max(0.0, run - (time.monotonic() - t0)))
            killed.set()
            server.kill9()
            wrote_for = time.monotonic() - t0
            for t in threads:
                t.join()
            written = acked.count - before
            restart = server.start()
            stats["restart_s"].append(restart)
            lost = lost_writes(ecs, ecr, acked, args.writers)
            stats["lost"] += len(lost)
            stats["errors"] += len(errors)
            log(f"cycle {cycle:3}/{args.cycles}: {written:5} writes acknowledged in {wrote_for:.2f} s, "
                f"killed, restarted in {restart:.2f} s; {acked.total():6} checked, {len(lost)} lost, "
                f"second start {'refused' if refused else 'NOT REFUSED'}")
            for line in lost[:20] + errors[:20]:
                log(f"  {line}")
        server.kill9()
        elapsed = time.monotonic() - began
        restarts = sorted(stats["restart_s"])
        log(f"kill9: {args.cycles} cycles in {elapsed:.0f} s: {acked.count} writes acknowledged "
            f"({acked.total()} distinct records checked), {stats['lost']} lost, "
            f"{stats['errors']} writes refused or failed before a kill, "
            f"{stats['refused']}/{args.cycles} second starts refused, "
            f"restart median {restarts[len(restarts) // 2]:.2f} s, max {restarts[-1]:.2f} s")
        ok = stats["lost"] == 0 and stats["errors"] == 0 and stats["refused"] == args.cycles
    except Failure as e:
        log(f"kill9: FAILED: {e}")
    finally:
        server.kill9()
        if ok and not args.keep:
            shutil.rmtree(data, ignore_errors=True)
        else:
            log(f"kill9: the data dir and server log are kept in {data}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so that the server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
