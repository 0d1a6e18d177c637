#!/usr/bin/env python3
"""Registry blobs on S3-compatible storage against the filesystem: the same skopeo push and
pull through two Berths in the same run, one keeping its blobs in its data dir (the
default), the other in a bucket of s3s-fs (`--blobs s3://...`; s3s-fs from crates.io,
an S3 server over a directory, installed by scripts/install-test-deps.sh).

What it measures. Both Berths and s3s-fs run on this machine with their storage in the same
temporary directory (one filesystem). BENCH_ROUNDS rounds (default 3) of an image of 4
random layers of 64 MiB; in each round, for each Berth (the order alternating from round to
round): `skopeo copy` of the image to a new repository (push), then back into a directory
(pull), each timed from start to exit of skopeo. Reported per Berth: the medians, MiB/s, the
ratio S3/filesystem (time; above 1 is slower), and the CPU seconds each side spent during
its runs: the Berth process, and for the S3 Berth also s3s-fs (the object store's own work,
which a real deployment does on other machines). The machine's load average before and
after, and its busy and steal percentages during each run, say how much else was running.

No target: S3 moves each byte once more than the filesystem (Berth to the store on push,
the store to Berth on pull) and completes a push with server-side copies, so it is expected
to be slower on one machine; the figures show by how much. What the S3 backend costs is
what a deployment pays for blobs that outlive the machine.

Why these choices: the image writing, skopeo invocation and Berth set-up are those of
bench/registry.py (read its docstring): incompressible gzip-level-0 layers, a new
repository per round so that skopeo cannot mount, credentials from GetAuthorizationToken.

Server logs go to bench/out/blobs-*.log, results to bench/out/blobs.json.
"""

import json
import os
import shutil
import time

from common import (BenchError, log, free_port, wait_until, process_cpu_seconds, median, start, stop, main_guard,
                    build_berth, scratch_dir, ROOT)
import registry as reg

OUT = os.path.join(ROOT, "bench", "out", "blobs.json")
LOGS = {name: os.path.join(ROOT, "bench", "out", f"blobs-{name}.log") for name in ("fs", "s3", "s3s-fs")}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MIB = 1 << 20
LAYERS, LAYER_SIZE = 4, 64 * MIB
BUCKET = "berth-blobs"
ACCESS_KEY, SECRET_KEY = "bench-access", "bench-secret-key-0123456789"
MIN_FREE = 4 * 10**9


def start_s3s_fs(workdir):
    """s3s-fs on a free loopback port over `workdir`/s3, with the bucket made as s3s-fs keeps
    buckets (a directory); returns (process, endpoint)."""
    root = os.path.join(workdir, "s3")
    os.makedirs(os.path.join(root, BUCKET))
    port = free_port()
    proc = start(["s3s-fs", "--host", "127.0.0.1", "--port", str(port), "--access-key", ACCESS_KEY,
                  "--secret-key", SECRET_KEY, root], LOGS["s3s-fs"], env={**os.environ, "RUST_LOG": "warn"})

    def listening():
        import socket
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until("s3s-fs", listening, proc)
    return proc, f"http://127.0.0.1:{port}"


def timed(target, helpers, op, *args):
    """Runs push or pull, adding the CPU seconds of the Berth and of `helpers` (pids)."""
    pids = [target.proc.pid, *helpers]
    before = [process_cpu_seconds(p) for p in pids]
    r = op(target, *args)
    after = [process_cpu_seconds(p) for p in pids]
    r["berth_cpu_s"] = after[0] - before[0]
    r["store_cpu_s"] = sum(a - b for a, b in zip(after[1:], before[1:]))
    return r


def main():
    load_before = os.getloadavg()
    build_berth()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    workdir = scratch_dir("berth-bench-blobs-", MIN_FREE)
    procs = []
    runs = {"fs": {"push": [], "pull": []}, "s3": {"push": [], "pull": []}}
    try:
        images = []
        for r in range(ROUNDS):
            path = os.path.join(workdir, f"image-{r + 1}")
            log(f"writing {path}: {LAYERS} x {LAYER_SIZE // MIB} MiB random layers")
            images.append((path, reg.write_image(path, [LAYER_SIZE] * LAYERS)))

        s3s, endpoint = start_s3s_fs(workdir)
        procs.append(s3s)
        fs = reg.start_berth(workdir, "fs", logpath=LOGS["fs"])
        procs.append(fs.proc)
        s3_env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        s3 = reg.start_berth(workdir, "s3", args=["--blobs", f"s3://{BUCKET}?endpoint={endpoint}&region=us-east-1"],
                             env=s3_env, logpath=LOGS["s3"])
        procs.append(s3.proc)
        helpers = {"fs": [], "s3": [s3s.pid]}
        log(f"filesystem Berth on {fs.host}, S3 Berth on {s3.host}, s3s-fs on {endpoint}")

        for r, (image, nbytes) in enumerate(images):
            repo = f"bench-{r + 1}"
            order = [fs, s3] if r % 2 == 0 else [s3, fs]
            for t in order:
                p = timed(t, helpers[t.name], reg.push, image, repo)
                q = timed(t, helpers[t.name], reg.pull, repo, os.path.join(workdir, f"pull-{t.name}"), nbytes)
                runs[t.name]["push"].append(p)
                runs[t.name]["pull"].append(q)
                log(f"round {r + 1} {t.name}: push {p['seconds']:.2f} s, pull {q['seconds']:.2f} s")
        stored = sum(len(files) for _, _, files in os.walk(os.path.join(workdir, "s3", BUCKET, "blobs")))
        if stored < ROUNDS * (LAYERS + 2):
            raise BenchError(f"the bucket holds {stored} blobs; {ROUNDS * (LAYERS + 2)} were pushed")
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()

    mib = LAYERS * LAYER_SIZE // MIB
    print(f"\nRegistry blobs, skopeo copy of {LAYERS} x {LAYER_SIZE // MIB} MiB layers ({mib} MiB), {ROUNDS} rounds, "
          f"{os.cpu_count()} CPUs shared by skopeo, both Berths and s3s-fs")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}\n")
    print(f"{'store':<6} {'round':>5} {'push s':>7} {'MiB/s':>6} {'cpu s':>6} {'s3 cpu':>6} "
          f"{'pull s':>7} {'MiB/s':>6} {'cpu s':>6} {'s3 cpu':>6} {'busy %':>6} {'steal %':>7}")
    results = {}
    for name, by_op in runs.items():
        for i, (p, q) in enumerate(zip(by_op["push"], by_op["pull"])):
            print(f"{name:<6} {i + 1:>5} {p['seconds']:>7.2f} {mib / p['seconds']:>6.0f} {p['berth_cpu_s']:>6.2f} "
                  f"{p['store_cpu_s']:>6.2f} {q['seconds']:>7.2f} {mib / q['seconds']:>6.0f} {q['berth_cpu_s']:>6.2f} "
                  f"{q['store_cpu_s']:>6.2f} {max(p['busy_pct'], q['busy_pct']):>6.0f} "
                  f"{max(p['steal_pct'], q['steal_pct']):>7.1f}")
        results[name] = {f"{op}_{k}": median([x[k] for x in xs]) for op, xs in by_op.items()
                         for k in ("seconds", "berth_cpu_s", "store_cpu_s")}
    print(f"\nMedians of {ROUNDS} rounds")
    print(f"{'store':<6} {'push s':>7} {'MiB/s':>6} {'cpu s':>6} {'s3 cpu':>6} {'pull s':>7} {'MiB/s':>6} "
          f"{'cpu s':>6} {'s3 cpu':>6}")
    for name, r in results.items():
        print(f"{name:<6} {r['push_seconds']:>7.2f} {mib / r['push_seconds']:>6.0f} {r['push_berth_cpu_s']:>6.2f} "
              f"{r['push_store_cpu_s']:>6.2f} {r['pull_seconds']:>7.2f} {mib / r['pull_seconds']:>6.0f} "
              f"{r['pull_berth_cpu_s']:>6.2f} {r['pull_store_cpu_s']:>6.2f}")
    ratios = {op: results["s3"][f"{op}_seconds"] / results["fs"][f"{op}_seconds"] for op in ("push", "pull")}
    print(f"\nS3 / filesystem (time; lower is better): push x{ratios['push']:.2f}, pull x{ratios['pull']:.2f}")
    print("(cpu s: the Berth process; s3 cpu: s3s-fs, the object store's own work)")

    with open(OUT, "w") as f:
        json.dump({"rounds": ROUNDS, "layers": LAYERS, "layer_bytes": LAYER_SIZE, "cpus": os.cpu_count(),
                   "load_average_before": load_before, "load_average_after": load_after,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": runs, "results": results, "ratios": ratios}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main_guard(main)
