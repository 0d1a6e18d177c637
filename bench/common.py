"""What the benchmarks share: starting and stopping servers, waiting for them, reading the
machine's CPU counters (steal is how much a shared VM's neighbours took), medians, and
PASS/MISS lines. Each benchmark imports this module from its own directory."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_DIR = os.path.join(ROOT, "target", "bench")
BERTH = os.path.join(TARGET_DIR, "release", "berth")


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
