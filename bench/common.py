"""What the benchmarks share: starting and stopping servers, waiting for them, reading the
machine's CPU counters (steal is how much a shared VM's neighbours took), medians and
summaries, PASS/MISS lines, and for the ECS benchmarks the docker CLI, an ECS client for a
data dir, the local agent's connection and the timings of Docker's work that a task
reports. Each benchmark imports this module from its own directory."""

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_DIR = os.path.join(ROOT, "target", "bench")
# BERTH_BIN runs another build (an earlier commit's, for a before/after pair).
BERTH = os.environ.get("BERTH_BIN") or os.path.join(TARGET_DIR, "release", "berth")


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} before answering")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise BenchError(f"{what} did not answer within {timeout:.0f} s")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def cpu_times():
    """The machine's CPU time counters (user nice system idle iowait irq softirq steal)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def process_cpu_seconds(pid):
    """User plus system CPU seconds a process has spent so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_pct(before, after):
    total = sum(after) - sum(before)
    return 100.0 * (after[7] - before[7]) / total if total else 0.0


def busy_pct(before, after):
    """CPU time not idle (nor waiting for I/O), this benchmark's own work included."""
    total = sum(after) - sum(before)
    idle = (after[3] - before[3]) + (after[4] - before[4])
    return 100.0 * (total - idle) / total if total else 0.0


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def percentile(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def summary(xs):
    return {"median_ms": median(xs), "p90_ms": percentile(xs, 90), "min_ms": min(xs), "max_ms": max(xs)}


def start(cmd, logpath, env=None):
    logf = open(logpath, "wb")
    # Own process group, so stopping it also stops anything it spawned.
    return subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def check(label, ok):
    print(f"  {'PASS' if ok else 'MISS'}  {label}")
    return {"target": label, "pass": ok}


def build_berth():
    """Installs the test dependencies and builds Berth (release) into TARGET_DIR."""
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-test-deps.sh")], check=True)
    log("building berth (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})


def scratch_dir(prefix, min_free):
    """A new temporary directory on a filesystem with at least `min_free` bytes free."""
    import shutil
    import tempfile

    workdir = tempfile.mkdtemp(prefix=prefix)
    free = shutil.disk_usage(workdir).free
    if free < min_free:
        shutil.rmtree(workdir, ignore_errors=True)
        raise BenchError(f"{workdir} has {free / 1e9:.1f} GB free; this benchmark needs {min_free / 1e9:.0f} GB")
    return workdir


def build_berth_and_test_image():
    """Installs the test dependencies, builds Berth (release) into TARGET_DIR and the test
    image; returns the image's name."""
    build_berth()
    return build_test_image()


def build_test_image():
    """Builds the test image (if its sources changed); returns its name."""
    log("building the test image")
    # Built as part of the workspace (as the tests build it): `-p testkit` would unify
    # features differently and rebuild half the dependencies.
    subprocess.run(["cargo", "build", "-q", "--workspace", "--bin", "test-image"], cwd=ROOT, check=True)
    image = subprocess.run([os.path.join(ROOT, "target", "debug", "test-image")], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip()
    if not image:
        raise BenchError("the test-image binary printed no image name")
    return image


def docker(*args, check=True):
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise BenchError(f"docker {' '.join(args)} exited with {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def remove_subnet_networks(vpc_prefix):
    """Removes the Docker networks Berth made for subnets whose block starts with
    `vpc_prefix` (e.g. "10.251."), once nothing is attached to them, so that the next
    Berth on this engine can make its own."""
    for name in docker("network", "ls", "-q", "--filter", "label=berth.managed=true").split():
        info = docker("network", "inspect", name, "--format",
                      "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{len .Containers}}", check=False).split()
        if len(info) == 2 and info[0].startswith(vpc_prefix) and info[1] == "0":
            docker("network", "rm", name, check=False)


def remove_labelled(label):
    """Force-removes every container carrying `label` (key=value); returns how many."""
    ids = docker("ps", "-aq", "--filter", f"label={label}", check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    return len(ids)


def ecs_client(data_dir, port):
    """An ECS client (botocore) with the credentials `berth env` prints for `data_dir`."""
    import botocore.session
    from botocore.config import Config

    out = subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True, text=True).stdout
    env = dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))
    env = {k: v.strip("'\"") for k, v in env.items()}
    return botocore.session.get_session().create_client(
        "ecs",
        endpoint_url=env.get("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}"),
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        # An error is an error: no retries with backoff hidden inside a sample.
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )


def wait_for_agent(ecs, proc, cluster="default", timeout=60.0):
    """Waits until the local agent registered and its channel is connected; returns the instance ARN."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"berth exited with status {proc.returncode} while waiting for its agent")
        arns = ecs.list_container_instances(cluster=cluster).get("containerInstanceArns", [])
        if arns:
            ci = ecs.describe_container_instances(cluster=cluster, containerInstances=arns[:1])["containerInstances"]
            if ci and ci[0].get("agentConnected"):
                return arns[0]
        time.sleep(0.2)
    raise BenchError(f"berth's local agent did not register and connect within {timeout:.0f} s "
                     "(is Docker running? see the berth log)")


def epoch(v):
    """A timestamp from botocore (datetime) as epoch seconds."""
    return v.timestamp() if v is not None else None


def span_ms(a, b):
    """From epoch seconds `a` to `b` in ms, or None if either is unknown."""
    return (b - a) * 1000 if a is not None and b is not None else None


def task_spans_ms(t):
    """The phases of a task (a DescribeTasks entry) from its own timestamps, in ms (None if
    unknown): dispatch createdAt -> pullStartedAt, images pullStartedAt -> pullStoppedAt,
    engine pullStoppedAt -> startedAt (Docker's create and start of the containers;
    startedAt is Docker's own start time), and createdAt -> startedAt as a whole."""
    created, pull0, pull1, started = (epoch(t.get(k)) for k in ("createdAt", "pullStartedAt", "pullStoppedAt",
                                                                "startedAt"))
    return {
        "dispatch_ms": span_ms(created, pull0),
        "images_ms": span_ms(pull0, pull1),
        "engine_ms": span_ms(pull1, started),
        "created_to_started_ms": span_ms(created, started),
    }


def main_guard(main):
    """Runs a benchmark's `main`: SIGTERM and SIGHUP unwind like Ctrl-C (so `finally` blocks
    stop servers and clean up), and a failure is one line and exit status 1."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    try:
        main()
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        log(f"FAILED: {' '.join(map(str, e.cmd))} exited with {e.returncode}")
        sys.exit(1)
