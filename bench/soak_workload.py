"""The work bench/soak.py keeps going while it kills and cuts off replicas, beside its
writer of task definitions, and the checks made of each once the events are over.

  Deployer   a service of the agent's cluster: UpdateService to the other of two
             revisions, one after another, at the replica that answered last (moving on on
             any failure). Checked: the service settles on the last acknowledged revision,
             with as many RUNNING tasks as it wants.
  Pusher     `docker push` of an image made for each push (one layer of random bytes, so
             every push uploads a new blob), to the registry of the replica that answered
             last. Checked: every acknowledged push's manifest is there under its tag with
             the digest docker printed, and every blob it names hashes to its digest.
  TaskWatch  `docker ps -a` of the cluster's containers, every second: which containers
             each task's container ran as. Checked: no task's container ran twice (two
             Docker containers with the same task ARN and container name), and at the end
             each RUNNING task has exactly one running container and no other runs.
"""

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import time
import urllib.request

from common import BenchError, docker, log

CLUSTER = "soak"
SERVICE = "web"
WEB_FAMILY = "soak-web"
TASKS = 2
REPOSITORY = "soak-images"
LAYER_BYTES = 1 << 20
TASK_LABEL = "com.amazonaws.ecs.task-arn"
NAME_LABEL = "com.amazonaws.ecs.container-name"
CLUSTER_LABEL = "com.amazonaws.ecs.cluster"


class Rotating(threading.Thread):
    """A loop of one call after another at the replica that answered last, moving to the
    next replica on any failure; `acked` holds what each acknowledged call returned."""

    def __init__(self, names, pause):
        super().__init__(daemon=True)
        self.names = names
        self.current = 0
        self.pause = pause
        self.acked = []
        self.failed = 0
        self.stopping = threading.Event()

    def run(self):
        n = 0
        while not self.stopping.is_set():
            try:
                self.acked.append(self.call(self.current, n))
            except Exception:
                self.failed += 1
                self.current = (self.current + 1) % len(self.names)
            n += 1
            self.stopping.wait(self.pause)

    def call(self, replica, n):
        raise NotImplementedError


class Deployer(Rotating):
    def __init__(self, names, ecs_clients, revisions):
        super().__init__(names, pause=2.0)
        self.clients, self.revisions = ecs_clients, revisions

    def call(self, replica, n):
        td = self.revisions[n % 2]
        self.clients[replica].update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=td)
        return td

    def settle(self, ecs, timeout=180.0):
        """One more acknowledged update, to the revision the service is not on (a real
        rollout), then the time until the service is steady on it: one deployment, RUNNING
        tasks as desired, none pending."""
        current = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"]
        td = self.revisions[1] if current == self.revisions[0] else self.revisions[0]
        ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=td)
        self.acked.append(td)
        t0 = time.monotonic()
        while time.monotonic() < t0 + timeout:
            s = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
            if (len(s.get("deployments", [])) == 1 and s["taskDefinition"] == td
                    and s["runningCount"] == s["desiredCount"] == TASKS and s["pendingCount"] == 0):
                return time.monotonic() - t0
            time.sleep(0.2)
        raise BenchError(f"the service did not settle on {td} within {timeout:.0f} s: "
                         f"{[e['message'] for e in s.get('events', [])[:5]]}")


def image_tar(token):
    """A root filesystem of one file of random bytes, as a tar for `docker import`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = token.encode() + os.urandom(LAYER_BYTES)
        info = tarfile.TarInfo("payload.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Pusher(Rotating):
    """`hosts[i]` is replica i's registry (host:port); docker is logged in to each."""

    def __init__(self, names, hosts):
        super().__init__(names, pause=1.0)
        self.hosts = hosts
        self.made = []
        self.took = []  # seconds each `docker push` took, acknowledged or not

    def call(self, replica, n):
        tag = f"p{n}"
        local = f"berth-soak-local:{tag}"
        subprocess.run(["docker", "import", "-", local], input=image_tar(tag), check=True, capture_output=True,
                       timeout=60)
        remote = f"{self.hosts[replica]}/{REPOSITORY}:{tag}"
        self.made += [local, remote]
        try:
            docker("tag", local, remote)
            t0 = time.monotonic()
            out = subprocess.run(["docker", "push", remote], capture_output=True, text=True, timeout=60)
            self.took.append(time.monotonic() - t0)
            if out.returncode != 0:
                raise BenchError(f"docker push {remote}: {out.stderr.strip()}")
            digest = re.search(r"digest: (sha256:[0-9a-f]{64})", out.stdout)
            if not digest:
                raise BenchError(f"docker push {remote} printed no digest: {out.stdout.strip()}")
            return tag, digest.group(1)
        finally:
            docker("rmi", local, remote, check=False)

    def remove_images(self):
        for ref in self.made:
            docker("rmi", ref, check=False)


def login(hosts, ecr):
    """docker login to each registry with an ECR token (one token serves every replica)."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    for host in hosts:
        subprocess.run(["docker", "login", "-u", user, "--password-stdin", host], input=password, text=True,
                       check=True, capture_output=True, timeout=60)
    return f"Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}"


def logout(hosts):
    for host in hosts:
        subprocess.run(["docker", "logout", host], capture_output=True)


MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"])


def fetch(url, auth, accept=None):
    headers = {"Authorization": auth, **({"Accept": accept} if accept else {})}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return r.read()


def corrupt_images(host, auth, pushed):
    """The acknowledged pushes (tag, digest) whose manifest or blobs do not read back
    whole: [(tag, what is wrong)]."""
    bad = []
    for tag, digest in pushed:
        base = f"http://{host}/v2/{REPOSITORY}"
        try:
            manifest = fetch(f"{base}/manifests/{tag}", auth, MANIFEST_TYPES)
            if "sha256:" + hashlib.sha256(manifest).hexdigest() != digest:
                bad.append((tag, "the tag names another manifest"))
                continue
            doc = json.loads(manifest)
            for blob in [doc["config"], *doc["layers"]]:
                data = fetch(f"{base}/blobs/{blob['digest']}", auth)
                if "sha256:" + hashlib.sha256(data).hexdigest() != blob["digest"] or len(data) != blob["size"]:
                    bad.append((tag, f"blob {blob['digest']} reads back different"))
        except Exception as e:
            bad.append((tag, f"{type(e).__name__}: {e}"))
    return bad


class TaskWatch(threading.Thread):
    """Which Docker containers each (task ARN, container name) ran as, seen every second."""

    def __init__(self, cluster_arn):
        super().__init__(daemon=True)
        self.cluster_arn = cluster_arn
        self.runs = {}
        self.stopping = threading.Event()

    def look(self):
        fmt = f'{{{{.ID}}}} {{{{.Label "{TASK_LABEL}"}}}} {{{{.Label "{NAME_LABEL}"}}}} {{{{.State}}}}'
        seen = []
        for line in docker("ps", "-a", "--no-trunc", "--filter", f"label={CLUSTER_LABEL}={self.cluster_arn}",
                           "--format",
                           fmt, check=False).splitlines():
            parts = line.split()
            if len(parts) == 4:
                cid, task, name, state = parts
                self.runs.setdefault((task, name), set()).add(cid)
                seen.append((task, name, state))
        return seen

    def run(self):
        while not self.stopping.is_set():
            self.look()
            self.stopping.wait(1.0)

    def twice(self):
        return {k: v for k, v in self.runs.items() if len(v) > 1}

    def strays(self, ecs):
        """Running containers of no RUNNING task, and RUNNING tasks without exactly one
        running container: [(task, what)]."""
        arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
        tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []
        running = {t["taskArn"] for t in tasks if t["lastStatus"] == "RUNNING"}
        containers = {}
        for task, _, state in self.look():
            if state == "running":
                containers[task] = containers.get(task, 0) + 1
        out = [(t, f"{n} running containers of a task ECS does not list as RUNNING")
               for t, n in containers.items() if t not in running]
        out += [(t, f"{containers.get(t, 0)} running containers") for t in running if containers.get(t, 0) != 1]
        return out


def remove_containers(cluster_arn):
    ids = docker("ps", "-aq", "--filter", f"label={CLUSTER_LABEL}={cluster_arn}", check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    log(f"removed {len(ids)} containers of cluster {CLUSTER}")
