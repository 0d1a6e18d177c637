#!/usr/bin/env python3
"""Connection hardening under a slowloris-style attack: Berth's API server against nginx
(Debian's nginx-light with its default timeouts), side by side in the same run.

What it measures. Each server is given the same bound on open connections
(BENCH_MAX_CONNECTIONS, default 4096, Berth's default --max-connections; nginx runs one
worker with worker_connections set to it) and answers a health URL (Berth:
/_berth/health; nginx: `return 200` at /health). Then, against each in turn:
  attack   BENCH_SILENT connections (default 4200, a few more than the bound) are opened
           from BENCH_SOURCES loopback addresses (default 32: 127.0.1.1-32, so the
           server-wide bound is reached, not only Berth's per-client one) and never send a
           byte, and BENCH_SLOW (default 50) send a request's headers one byte a second,
           never finishing them;
  probe    meanwhile, every 200 ms a prober opens a new connection and GETs the health URL
           with a 2 s timeout, as a supervisor or load balancer health check would.
The run ends when the server holds no attacker connection any more (counted on the
server's side with `ss`: a connection that overflowed the listen queue looks established
to the attacker but was never the server's) and every slow one has been closed, or after
BENCH_LIMIT seconds (default 90). Reported per server: the share of health probes answered
during the attack and their median and 99th-percentile latency; the most connections the
server held; the seconds until it held none of the attacker's (the time its slots were
held) and until it had closed every slow one; the CPU seconds the server used; and the
ratios Berth/nginx.

Targets (issue 13): Berth answers >= 99% of the health probes during the attack, and frees
every attacker's slot within 35 s (its --header-timeout is 30 s). nginx's defaults are
client_header_timeout 60 s; with every worker connection taken it stops accepting, so its
health check waits in the listen backlog. A miss is reported, not an exit failure.

Why these choices: the numbers are those of the finding that opened the issue (4,200
sockets against the default 4,096). Both servers use their shipped defaults except the
connection bound, which is made equal. Everything runs on this machine's loopback.

Server logs go to bench/out/connections-*.log, results to bench/out/connections.json.
"""

import json
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from common import (BERTH, ROOT, TARGET_DIR, check, free_port, http_status, log, main_guard, median, percentile,
                    start, stop, wait_until)

OUT_DIR = os.path.join(ROOT, "bench", "out")

MAX_CONNECTIONS = int(os.environ.get("BENCH_MAX_CONNECTIONS", "4096"))
SILENT = int(os.environ.get("BENCH_SILENT", "4200"))
SLOW = int(os.environ.get("BENCH_SLOW", "50"))
LIMIT = float(os.environ.get("BENCH_LIMIT", "90"))
# The attack comes from this many loopback addresses (127.0.1.1, 127.0.1.2, ...), so that
# it hits the server-wide bound and not only a per-client one.
SOURCES = int(os.environ.get("BENCH_SOURCES", "32"))
PROBE_EVERY = 0.2
PROBE_TIMEOUT = 2.0


def cpu_seconds(pids):
    """User plus system CPU seconds of the processes `pids` (their threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / tick


def group_pids(pgid):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    pids.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return pids


def held_by_server(port):
    """How many established connections the server holds on `port`, as the kernel sees
    them. The attacker's own view misleads: a connection that overflowed the server's
    listen queue looks established to the client but was never the server's."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len(out.splitlines())


def probe(port, path):
    """One health check on a new connection: its latency in ms, or None if it failed."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as s:
            s.settimeout(max(0.01, PROBE_TIMEOUT - (time.monotonic() - started)))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while not answer.startswith(b"HTTP/1.1 200") and len(answer) < 64:
                chunk = s.recv(1024)
                if not chunk:
                    break
                answer += chunk
            if answer.startswith(b"HTTP/1.1 200"):
                return (time.monotonic() - started) * 1000
    except OSError:
        pass
    return None


def attack(port, path, name):
    """Runs the attack and the prober against one server; returns its figures."""
    sel = selectors.DefaultSelector()
    attackers = {}
    started = time.monotonic()
    refused = 0
    for i in range(SILENT + SLOW):
        s = socket.socket()
        s.bind((f"127.0.1.{1 + i % SOURCES}", 0))
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, 115):  # EINPROGRESS
            refused += 1
            s.close()
            continue
        kind = "silent" if i < SILENT else "slow"
        attackers[s] = {"kind": kind, "closed_at": None, "sent_head": False}
        sel.register(s, selectors.EVENT_READ)
    log(f"{name}: {len(attackers)} attacker connections opened in {time.monotonic() - started:.1f} s")

    probes = []
    stop_probing = threading.Event()

    def prober():
        while not stop_probing.is_set():
            t = time.monotonic()
            probes.append(probe(port, path))
            stop_probing.wait(max(0.0, PROBE_EVERY - (time.monotonic() - t)))

    thread = threading.Thread(target=prober, daemon=True)
    thread.start()
    last_drip = 0.0
    open_count = len(attackers)
    held_max, freed_at = 0, None
    while time.monotonic() - started < LIMIT:
        now = time.monotonic()
        if now - last_drip >= 1.0:
            last_drip = now
            held = held_by_server(port)
            held_max = max(held_max, held)
            # A few are the prober's own.
            if held <= 5 and freed_at is None:
                freed_at = now - started
            if freed_at is not None and not any(a["kind"] == "slow" and a["closed_at"] is None
                                                for a in attackers.values()):
                break
            for s, a in attackers.items():
                if a["kind"] == "slow" and a["closed_at"] is None:
                    try:
                        s.send(b"GET / HTTP/1.1\r\nX-Slow: " if not a["sent_head"] else b"a")
                        a["sent_head"] = True
                    except BlockingIOError:
                        pass
                    except OSError:
                        a["closed_at"] = now - started
                        sel.unregister(s)
                        open_count -= 1
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                attackers[s]["closed_at"] = time.monotonic() - started
                sel.unregister(s)
                open_count -= 1
    stop_probing.set()
    thread.join()
    for s in attackers:
        s.close()

    def all_closed(kind):
        times = [a["closed_at"] for a in attackers.values() if a["kind"] == kind]
        return None if not times or any(t is None for t in times) else max(times)

    answered = [p for p in probes if p is not None]
    return {
        "attackers": len(attackers),
        "refused_at_connect": refused,
        "held_by_server_max": held_max,
        "freed_s": freed_at,
        "silent_seen_closed": sum(1 for a in attackers.values() if a["kind"] == "silent" and a["closed_at"]),
        "slow_freed_s": all_closed("slow"),
        "open_to_the_attacker": open_count,
        "probes": len(probes),
        "probes_answered_pct": 100.0 * len(answered) / max(1, len(probes)),
        "probe_median_ms": median(answered) if answered else None,
        "probe_p99_ms": percentile(answered, 99) if answered else None,
    }


def nginx(port, workdir):
    cfg = os.path.join(workdir, "nginx.conf")
    with open(cfg, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log stderr error;
worker_rlimit_nofile {MAX_CONNECTIONS * 2 + 64};
events {{ worker_connections {MAX_CONNECTIONS}; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/nginx-body;
    server {{
        listen 127.0.0.1:{port};
        location /health {{ default_type application/json; return 200 '{{"status":"ok"}}'; }}
    }}
}}
""")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = start([nginx_bin, "-c", cfg, "-p", workdir], os.path.join(OUT_DIR, "connections-nginx.log"))
    wait_until("nginx", lambda: http_status(f"http://127.0.0.1:{port}/health") == 200, proc)
    return proc


def berth(port, workdir):
    bin_path = BERTH
    proc = start([bin_path, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(workdir, "data"),
                  "--max-connections", str(MAX_CONNECTIONS)], os.path.join(OUT_DIR, "connections-berth.log"))
    wait_until("berth", lambda: http_status(f"http://127.0.0.1:{port}/_berth/health") == 200, proc, timeout=60)
    return proc


def measure(name, launch, path):
    with tempfile.TemporaryDirectory(prefix=f"bench-conn-{name}-") as workdir:
        port = free_port()
        proc = launch(port, workdir)
        try:
            pids = group_pids(proc.pid)
            before = cpu_seconds(pids)
            result = attack(port, path, name)
            result["cpu_s"] = cpu_seconds(group_pids(proc.pid)) - before
        finally:
            stop(proc)
    log(f"{name}: {json.dumps(result)}")
    return result


def main():
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"], check=True,
                       stdin=subprocess.DEVNULL)
    if "BERTH_BIN" not in os.environ:
        log("building berth (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "berth"], check=True, cwd=ROOT,
                       env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})
    os.makedirs(OUT_DIR, exist_ok=True)
    results = {"berth": measure("berth", berth, "/_berth/health"), "nginx": measure("nginx", nginx, "/health")}
    b, n = results["berth"], results["nginx"]

    def fmt(v, unit=""):
        return "never" if v is None else f"{v:.1f}{unit}"

    print(f"slowloris: {SILENT} silent + {SLOW} slow connections from {SOURCES} addresses against a bound of "
          f"{MAX_CONNECTIONS}")
    print(f"{'':8} {'health answered':>16} {'median':>9} {'p99':>9} {'held (max)':>11} {'all freed':>10} "
          f"{'slow freed':>11} {'CPU':>7}")
    for name, r in results.items():
        print(f"{name:8} {r['probes_answered_pct']:>15.1f}% {fmt(r['probe_median_ms'], ' ms'):>9} "
              f"{fmt(r['probe_p99_ms'], ' ms'):>9} {r['held_by_server_max']:>11} {fmt(r['freed_s'], ' s'):>10} "
              f"{fmt(r['slow_freed_s'], ' s'):>11} {r['cpu_s']:>6.2f}s")
    if n["probes_answered_pct"] > 0:
        print(f"ratio berth/nginx: health answered {b['probes_answered_pct'] / n['probes_answered_pct']:.2f}x")
    if b["freed_s"] and n["freed_s"]:
        print(f"ratio berth/nginx: time the attack held connections {b['freed_s'] / n['freed_s']:.2f}x")
    print(f"ratio berth/nginx: CPU {b['cpu_s'] / max(n['cpu_s'], 0.01):.2f}x")
    results["targets"] = [
        check(">= 99% of health probes answered during the attack", b["probes_answered_pct"] >= 99.0),
        check("every attacker connection freed within 35 s",
              b["freed_s"] is not None and b["slow_freed_s"] is not None
              and max(b["freed_s"], b["slow_freed_s"]) <= 35.0),
    ]
    with open(os.path.join(OUT_DIR, "connections.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main_guard(main)
