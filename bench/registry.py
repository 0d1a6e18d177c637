#!/usr/bin/env python3
"""Registry push and pull: Berth's registry against Debian's docker-registry (distribution
2.8), side by side in the same run, both driven by skopeo.

What it measures. Both servers run on this machine, each with its storage in the same
temporary directory (one filesystem for everything). Two scenarios:

  layers   an image of 4 layers of 64 MiB each. BENCH_ROUNDS rounds (default 3); in each
           round, for each target (the order alternating from round to round):
             push  `skopeo copy oci:IMAGE:bench docker://HOST/bench-<round>:bench`
             pull  `skopeo copy docker://HOST/bench-<round>:bench dir:OUT` (OUT deleted after)
           each timed from start to exit of skopeo. The medians per target are reported,
           with the ratios Berth/distribution.
  big      one 1 GiB layer, pushed and pulled once to each target. Berth's peak memory
           is VmHWM of /proc/<pid>/status, a high-water mark: it is reset (write 5 to
           /proc/<pid>/clear_refs) right before the push and read right after it, and the
           same again around the pull. Distribution's is measured the same way, for scale.

Targets: Berth's push and pull medians <= 0.8x distribution's, and Berth's peak memory
during the 1 GiB layer push < 100 MiB. A miss is reported, not an exit failure.

Why these choices:
  * The images are OCI layouts written here (no Docker needed): each layer a tar of one
    file of random bytes (os.urandom: incompressible, so no registry or client can take a
    shortcut), wrapped in gzip at level 0 (stored blocks: valid gzip, no CPU spent). skopeo
    pushes a gzip layer as it is; an uncompressed one it would gzip on the way to a
    registry, and the benchmark would then measure skopeo's compressor.
  * Every round pushes a new image (fresh random layers) to a new repository. skopeo keeps
    a cache of where it has seen each blob (as root, /var/lib/containers/cache) and mounts
    a blob it knows from another repository of the same registry instead of uploading it:
    the same layers in a second round would measure a mount, not a push.
  * Berth's registry needs an ECR repository and credentials: CreateRepository and
    GetAuthorizationToken through botocore, and skopeo gets `AWS:<token>` as credentials.
    Distribution runs without auth, on plain HTTP, like Berth here; skopeo talks to both
    with --tls-verify=false.
  * Berth fsyncs each blob before acknowledging it; distribution's filesystem driver does
    not. Both write through the same page cache to the same disk.
  * CPU steal and busy time are measured from /proc/stat over each skopeo run: a
    neighbour on a shared VM (or other work here) skews the numbers.

The server logs are kept in bench/out/registry-berth.log and registry-distribution.log.
Results go to bench/out/registry.json. BENCH_ROUNDS (default 3) sets the rounds of the
layers scenario, BENCH_BIG=0 skips the 1 GiB scenario.
"""

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import botocore.session
from botocore.config import Config

from common import BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, busy_pct, median, start, stop, check, build_berth, scratch_dir, ROOT, BERTH

OUT = os.path.join(ROOT, "bench", "out", "registry.json")
LOG_OUT = {"berth": os.path.join(ROOT, "bench", "out", "registry-berth.log"),
           "distribution": os.path.join(ROOT, "bench", "out", "registry-distribution.log")}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BIG = os.environ.get("BENCH_BIG", "1") != "0"
MIB = 1 << 20
LAYERS, LAYER_SIZE = 4, 64 * MIB
BIG_SIZE = 1024 * MIB
TARGET_RATIO = 0.8
TARGET_PEAK_MIB = 100
MIN_FREE = 6 * 10**9
TAG = "bench"


# --- memory -------------------------------------------------------------------------------

def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
    if not m:
        raise BenchError(f"no VmHWM in /proc/{pid}/status")
    return int(m[1]) / 1024


def reset_hwm(pid):
    """Resets the peak RSS of `pid` to its current RSS; False if the kernel refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- the test images ----------------------------------------------------------------------

class Hashing:
    """A write-only file that hashes and counts what goes through to `inner` (if any)."""

    def __init__(self, inner=None):
        self.inner, self.sha, self.size = inner, hashlib.sha256(), 0

    def write(self, b):
        self.sha.update(b)
        self.size += len(b)
        if self.inner is not None:
            self.inner.write(b)
        return len(b)

    def flush(self):
        pass


def write_blob_json(blobs, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layer(blobs, size, name):
    """A gzip (level 0) tar of one file of `size` random bytes; returns (descriptor, diff_id)."""
    tmp = os.path.join(blobs, f".{name}.tmp")
    with open(tmp, "wb") as raw:
        outer = Hashing(raw)
        gz = gzip.GzipFile(fileobj=outer, mode="wb", compresslevel=0, mtime=0)
        tar = Hashing(gz)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = size, 0o644, 0
        tar.write(ti.tobuf(format=tarfile.GNU_FORMAT))
        left = size
        while left:
            n = min(left, 4 * MIB)
            tar.write(os.urandom(n))
            left -= n
        tar.write(b"\0" * ((-size) % 512) + b"\0" * 1024)  # padding, then the end-of-archive blocks
        tar.write(b"\0" * ((-tar.size) % tarfile.RECORDSIZE))
        gz.close()
    digest = outer.sha.hexdigest()
    os.rename(tmp, os.path.join(blobs, digest))
    desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": f"sha256:{digest}", "size": outer.size}
    return desc, f"sha256:{tar.sha.hexdigest()}"


def write_image(path, sizes):
    """An OCI image layout at `path`, tag TAG, with one random layer per entry of `sizes`."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        desc, diff_id = write_layer(blobs, size, f"layer{i}.bin")
        layers.append(desc)
        diff_ids.append(diff_id)
    config = write_blob_json(blobs, {
        "architecture": "amd64", "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    manifest = write_blob_json(blobs, {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": layers,
    })
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
            "annotations": {"org.opencontainers.image.ref.name": TAG}}]}, f)
    return sum(l["size"] for l in layers)


# --- the servers --------------------------------------------------------------------------

class Target:
    def __init__(self, name, proc, host, creds=None, ecr=None):
        self.name, self.proc, self.host, self.creds, self.ecr = name, proc, host, creds, ecr

    def create_repository(self, repo):
        if self.ecr is not None:
            self.ecr.create_repository(repositoryName=repo)

    def creds_args(self, flag):
        return [flag, self.creds] if self.creds else []


def start_berth(workdir, name="berth", args=(), env=None, logpath=None):
    """`berth up --no-agent` (with further `args`, in environment `env`) on a free port with
    a data dir of its own under `workdir`, an ECR client and skopeo's credentials for it."""
    port = free_port()
    data_dir = os.path.join(workdir, f"{name}-data")
    proc = start([BERTH, "up", "--no-agent", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}", *args],
                 logpath or LOG_OUT["berth"], env=env)
    wait_until(name, lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, proc)
    out = subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True, text=True).stdout
    env = {k: v.strip("'\"") for k, v in re.findall(r"^export (\w+)=(.*)$", out, re.M)}
    ecr = botocore.session.get_session().create_client(
        "ecr",
        endpoint_url=env.get("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}"),
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    creds = base64.b64decode(token).decode()
    if not creds.startswith("AWS:"):
        raise BenchError(f"GetAuthorizationToken gave a token that is not AWS:<password>: {creds[:20]!r}")
    return Target(name, proc, f"127.0.0.1:{port}", creds=creds, ecr=ecr)


def start_distribution(workdir):
    port = free_port()
    storage = os.path.join(workdir, "distribution-storage")
    os.makedirs(storage)
    config = os.path.join(workdir, "distribution.yml")
    with open(config, "w") as f:
        f.write(f"""\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
http:
  addr: 127.0.0.1:{port}
""")
    proc = start(["docker-registry", "serve", config], LOG_OUT["distribution"])
    wait_until("docker-registry", lambda: http_status(f"http://127.0.0.1:{port}/v2/") == 200, proc)
    return Target("distribution", proc, f"127.0.0.1:{port}")


# --- the runs -----------------------------------------------------------------------------

def skopeo(args, what):
    cmd = ["skopeo", "--insecure-policy", "copy", "--quiet", *args]
    before = cpu_times()
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - t0
    after = cpu_times()
    if r.returncode != 0:
        raise BenchError(f"{what}: skopeo exited with {r.returncode}: {r.stderr.strip()}{r.stdout.strip()}")
    return {"seconds": elapsed, "steal_pct": steal_pct(before, after), "busy_pct": busy_pct(before, after)}


def push(target, image, repo):
    target.create_repository(repo)
    return skopeo(["--dest-tls-verify=false", *target.creds_args("--dest-creds"),
                   f"oci:{image}:{TAG}", f"docker://{target.host}/{repo}:{TAG}"], f"{target.name} push {repo}")


def pull(target, repo, out, expect_bytes):
    try:
        r = skopeo(["--src-tls-verify=false", *target.creds_args("--src-creds"),
                    f"docker://{target.host}/{repo}:{TAG}", f"dir:{out}"], f"{target.name} pull {repo}")
        got = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        if got < expect_bytes:
            raise BenchError(f"{target.name} pull {repo}: got {got} bytes, expected at least {expect_bytes}")
        return r
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    load = os.getloadavg()
    build_berth()
    if shutil.which("docker-registry") is None:
        log("installing docker-registry (Debian's distribution 2.8)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdin=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-registry"],
                       check=True, env=env, stdin=subprocess.DEVNULL)
        if shutil.which("docker-registry") is None:
            raise BenchError("docker-registry is still missing after apt-get install")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    workdir = scratch_dir("berth-bench-registry-", MIN_FREE)
    berth = dist = None
    runs = {"berth": {"push": [], "pull": []}, "distribution": {"push": [], "pull": []}}
    big = {}
    try:
        images = []
        for r in range(ROUNDS):
            path = os.path.join(workdir, f"image-{r + 1}")
            log(f"writing {path}: {LAYERS} x {LAYER_SIZE // MIB} MiB random layers")
            images.append((path, write_image(path, [LAYER_SIZE] * LAYERS)))
        if BIG:
            big_image = os.path.join(workdir, "image-big")
            log(f"writing {big_image}: one {BIG_SIZE // MIB} MiB random layer")
            big_bytes = write_image(big_image, [BIG_SIZE])

        berth = start_berth(workdir)
        dist = start_distribution(workdir)
        targets = [berth, dist]
        log(f"berth on {berth.host} (pid {berth.proc.pid}), distribution on {dist.host} (pid {dist.proc.pid})")

        for r, (image, nbytes) in enumerate(images):
            repo = f"bench-{r + 1}"
            order = targets if r % 2 == 0 else targets[::-1]
            for t in order:
                p = push(t, image, repo)
                runs[t.name]["push"].append(p)
                q = pull(t, repo, os.path.join(workdir, f"pull-{t.name}"), nbytes)
                runs[t.name]["pull"].append(q)
                log(f"round {r + 1} {t.name}: push {p['seconds']:.2f} s, pull {q['seconds']:.2f} s "
                    f"(steal {p['steal_pct']:.1f} / {q['steal_pct']:.1f} %)")

        if BIG:
            for t in targets:
                repo = "bench-big"
                entry = {"hwm_before_mib": vm_hwm_mib(t.proc.pid)}
                entry["hwm_reset"] = reset_hwm(t.proc.pid)
                entry["hwm_at_reset_mib"] = vm_hwm_mib(t.proc.pid)
                entry["push"] = push(t, big_image, repo)
                entry["push_peak_mib"] = vm_hwm_mib(t.proc.pid)
                reset_hwm(t.proc.pid)
                entry["pull"] = pull(t, repo, os.path.join(workdir, f"pull-{t.name}"), big_bytes)
                entry["pull_peak_mib"] = vm_hwm_mib(t.proc.pid)
                big[t.name] = entry
                log(f"1 GiB layer {t.name}: push {entry['push']['seconds']:.2f} s (peak {entry['push_peak_mib']:.1f} MiB), "
                    f"pull {entry['pull']['seconds']:.2f} s (peak {entry['pull_peak_mib']:.1f} MiB)")
    finally:
        stop(berth.proc if berth else None)
        stop(dist.proc if dist else None)
        shutil.rmtree(workdir, ignore_errors=True)

    mib = LAYERS * LAYER_SIZE // MIB
    print(f"\nRegistry, skopeo copy of {LAYERS} x {LAYER_SIZE // MIB} MiB layers ({mib} MiB), {ROUNDS} rounds, "
          f"{os.cpu_count()} CPUs shared by skopeo and the servers, "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'target':<13} {'round':>5} {'push s':>8} {'MiB/s':>7} {'pull s':>8} {'MiB/s':>7} {'steal %':>8} {'busy %':>7}")
    results = {}
    for name, by_op in runs.items():
        for i, (p, q) in enumerate(zip(by_op["push"], by_op["pull"])):
            print(f"{name:<13} {i + 1:>5} {p['seconds']:>8.2f} {mib / p['seconds']:>7.0f} {q['seconds']:>8.2f} "
                  f"{mib / q['seconds']:>7.0f} {max(p['steal_pct'], q['steal_pct']):>8.1f} "
                  f"{max(p['busy_pct'], q['busy_pct']):>7.0f}")
        results[name] = {op: median([x["seconds"] for x in xs]) for op, xs in by_op.items()}
        results[name]["steal_pct"] = median([x["steal_pct"] for xs in by_op.values() for x in xs])
    print(f"\nMedians of {ROUNDS} rounds")
    print(f"{'target':<13} {'push s':>8} {'MiB/s':>7} {'pull s':>8} {'MiB/s':>7} {'steal %':>8}")
    for name, r in results.items():
        print(f"{name:<13} {r['push']:>8.2f} {mib / r['push']:>7.0f} {r['pull']:>8.2f} {mib / r['pull']:>7.0f} "
              f"{r['steal_pct']:>8.1f}")
    b, d = results["berth"], results["distribution"]
    ratios = {op: b[op] / d[op] for op in ("push", "pull")}
    print(f"\nBerth / distribution (time; lower is better): push x{ratios['push']:.2f}, pull x{ratios['pull']:.2f}")

    if big:
        print(f"\nOne {BIG_SIZE // MIB} MiB layer, once each (peak = VmHWM, reset right before the push and the pull)")
        print(f"{'target':<13} {'push s':>8} {'MiB/s':>7} {'peak MiB':>9} {'pull s':>8} {'MiB/s':>7} {'peak MiB':>9}")
        for name, e in big.items():
            print(f"{name:<13} {e['push']['seconds']:>8.2f} {BIG_SIZE / MIB / e['push']['seconds']:>7.0f} "
                  f"{e['push_peak_mib']:>9.1f} {e['pull']['seconds']:>8.2f} {BIG_SIZE / MIB / e['pull']['seconds']:>7.0f} "
                  f"{e['pull_peak_mib']:>9.1f}")
        if not big["berth"]["hwm_reset"]:
            print("  (the kernel refused to reset VmHWM: the peaks include everything before)")

    print("\nTargets")
    checks = [
        check(f"Berth push <= {TARGET_RATIO}x distribution's time (x{ratios['push']:.2f})", ratios["push"] <= TARGET_RATIO),
        check(f"Berth pull <= {TARGET_RATIO}x distribution's time (x{ratios['pull']:.2f})", ratios["pull"] <= TARGET_RATIO),
    ]
    if big:
        peak = big["berth"]["push_peak_mib"]
        checks.append(check(f"Berth peak memory during a 1 GiB layer push < {TARGET_PEAK_MIB} MiB ({peak:.1f} MiB)",
                            peak < TARGET_PEAK_MIB))

    with open(OUT, "w") as f:
        json.dump({"rounds": ROUNDS, "layers": LAYERS, "layer_bytes": LAYER_SIZE, "big_layer_bytes": BIG_SIZE if BIG else None,
                   "cpus": os.cpu_count(), "load_average": load,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": runs, "results": results, "ratios": ratios, "big": big, "targets": checks}, f, indent=2)
    print(f"\nwrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally block stops the servers.
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
