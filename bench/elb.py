#!/usr/bin/env python3
"""Load balancer throughput and latency: Berth's Application Load Balancer against HAProxy
(Debian's haproxy), side by side in the same run, both driven by wrk.

What it measures. Two backends answer `GET /` with a short text and keep connections
alive: by default two ports of one Debian nginx (one worker, no logging), or with
BENCH_BACKEND=simplehttp two `simplehttp serve` processes (the test program of
crates/testimage), which open a thread for every connection and close it after one
request. In front of them, each configured alike (round robin over both backends, HTTP
health checks of /health every 5 s, keep-alive to clients and to the backends, the
headers ALB adds: X-Forwarded-For/-Proto/-Port and a request id as X-Amzn-Trace-Id):
  berth    `berth up --no-agent` with its default log level, a load balancer made with
           the ELBv2 API (botocore), a target group of the two backends (target type ip)
           and an HTTP listener;
  haproxy  `haproxy -f CONFIG` with one frontend and one backend section, a thread per
           core (as Berth's data plane has).
First wrk straight at one backend (the ceiling: if a load balancer came near it, the
backend would be what is measured), then after a warm-up BENCH_ROUNDS rounds (default 3);
in each, for each load balancer (the order alternating from round to round, so load from
elsewhere on the machine falls on both alike), `wrk -t2 -cBENCH_CONNECTIONS
-dBENCH_SECONDS --latency` against `/`. Reported: the medians of requests/s and of the
99th percentile latency, the CPU seconds each load balancer's process used (HAProxy runs
as many threads as there are cores), and the ratios Berth/HAProxy, with the load average
seen. Then
the replacement scenario: under the same wrk load through Berth, a third backend is
registered, and once it is healthy the first two are deregistered; wrk's non-2xx
responses and socket errors are the failed requests (target 0). Last, the rolling
deployment: a second `berth up`, with its local agent, runs an ECS service of two tasks of
the test image (`serve`) behind a load balancer of its own (target type instance); under
the same wrk load, UpdateService moves it to a new task definition, and wrk runs until
the service is steady again (tasks registered when RUNNING, healthy before the old ones
are deregistered, drained before they stop): its failed requests (target 0).

Targets: throughput >= 1.0x HAProxy's, p99 <= 1.2x HAProxy's, 0 failed requests while the
targets are replaced. A miss is reported, not an exit failure.

Why these choices:
  * Backends that keep connections alive, as most web servers do: a backend that needs a
    new connection (and thread) for every request costs more than either load balancer,
    and then the benchmark measures it. wrk straight at the backend shows the headroom.
  * Everything shares this machine's cores (wrk, the load balancer, the backends), as it
    would on a one-host deployment; CPU steal and busy time are printed per run because a
    neighbour on a shared VM skews the numbers.
  * Berth's listener is on its own loopback address (127.201.0.0/24 here) like any
    Berth load balancer; HAProxy listens on 127.0.0.1. Both on unprivileged ports.

Server logs go to bench/out/elb-*.log, results to bench/out/elb.json.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import botocore.session
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BenchError, log, free_port, wait_until, http_status, cpu_times, steal_pct, busy_pct, median, start, stop, check, ROOT, TARGET_DIR, BERTH  # noqa: E402

OUT = os.path.join(ROOT, "bench", "out")
SIMPLEHTTP = os.path.join(TARGET_DIR, "release", "simplehttp")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
BACKEND = os.environ.get("BENCH_BACKEND", "nginx")
POOL = "127.201.0.0/24"


def ensure_tools():
    tools = ("haproxy", "wrk", "nginx") if BACKEND == "nginx" else ("haproxy", "wrk")
    missing = [p for p in tools if shutil.which(p) is None and not os.path.exists(f"/usr/sbin/{p}")]
    if missing:
        log(f"installing {' '.join(missing)} from apt")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdin=subprocess.DEVNULL)
        packages = ["nginx-light" if p == "nginx" else p for p in missing]
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env,
                       stdin=subprocess.DEVNULL)
    for p in tools:
        if shutil.which(p) is None and not os.path.exists(f"/usr/sbin/{p}"):
            raise BenchError(f"{p} is still missing after apt-get install")
    log("building berth and simplehttp (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "berth", "-p", "testimage"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})


def backend(port, name):
    """A simplehttp backend on `port` (one request per connection)."""
    proc = start([SIMPLEHTTP, "serve", "--port", str(port)], os.path.join(OUT, f"elb-backend-{name}.log"))
    wait_until(f"backend {name}", lambda: http_status(f"http://127.0.0.1:{port}/health") == 200, proc)
    return proc


def nginx(ports, workdir):
    """One nginx worker answering on every port in `ports`, with keep-alive."""
    cfg = os.path.join(workdir, "nginx.conf")
    listens = "\n".join(f"        listen 127.0.0.1:{p};" for p in ports)
    with open(cfg, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {workdir}/nginx-body;
    server {{
{listens}
        location / {{ default_type text/plain; return 200 "hello from nginx\\n"; }}
    }}
}}
""")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = start([nginx_bin, "-c", cfg, "-p", workdir], os.path.join(OUT, "elb-backend-nginx.log"))
    for p in ports:
        wait_until(f"nginx on port {p}", lambda: http_status(f"http://127.0.0.1:{p}/health") == 200, proc)
    return proc


def elbv2_client(data_dir):
    env = subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True, text=True).stdout
    vals = dict(re.findall(r"export (\w+)=(\S+)", env))
    session = botocore.session.get_session()
    cfg = Config(retries={"max_attempts": 1})
    kw = dict(endpoint_url=vals["AWS_ENDPOINT_URL"], region_name="us-east-1",
              aws_access_key_id=vals["AWS_ACCESS_KEY_ID"], aws_secret_access_key=vals["AWS_SECRET_ACCESS_KEY"], config=cfg)
    return session.create_client("elbv2", **kw), session.create_client("ec2", **kw)


def berth_lb(data_dir, ports, lb_port):
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BERTH_LOG"}
    proc = start([BERTH, "up", "--no-agent", "--data-dir", data_dir, "--listen", f"127.0.0.1:{api_port}",
                  "--lb-address-pool", POOL], os.path.join(OUT, "elb-berth.log"), env=env)
    wait_until("berth", lambda: http_status(f"http://127.0.0.1:{api_port}/_berth/health") == 200, proc)
    elb, ec2 = elbv2_client(data_dir)
    subnets = ec2.describe_subnets()["Subnets"]
    vpc = subnets[0]["VpcId"]
    lb = elb.create_load_balancer(Name="bench", Subnets=[s["SubnetId"] for s in subnets[:2]])["LoadBalancers"][0]
    tg = elb.create_target_group(Name="bench", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip",
                                 HealthCheckPath="/health", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
                                 HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": p} for p in ports])
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=lb_port,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    wait_healthy(elb, tg, ports)
    url = f"http://{lb['DNSName']}:{lb_port}/"
    wait_until("berth's load balancer", lambda: http_status(url) == 200, proc)
    return proc, url, elb, tg


def wait_healthy(elb, tg, ports, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        healthy = {d["Target"]["Port"] for d in h if d["TargetHealth"]["State"] == "healthy"}
        if set(ports) <= healthy:
            return
        time.sleep(0.2)
    raise BenchError(f"targets {ports} did not become healthy")


def haproxy(ports, port, workdir):
    cfg = os.path.join(workdir, "haproxy.cfg")
    servers = "\n".join(f"    server b{i} 127.0.0.1:{p} check inter 5s" for i, p in enumerate(ports))
    with open(cfg, "w") as f:
        f.write(f"""global
    maxconn 4096
    nbthread {os.cpu_count()}
defaults
    mode http
    timeout connect 10s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    option forwardfor
    http-reuse safe
    unique-id-format 1-%[date,hex,bytes(8,8)]-%[rand,hex]%[rand,hex]%[rand,hex]
frontend fe
    bind 127.0.0.1:{port}
    unique-id-header X-Amzn-Trace-Id
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Port %[dst_port]
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /health
{servers}
""")
    proc = start(["haproxy", "-db", "-f", cfg], os.path.join(OUT, "elb-haproxy.log"))
    url = f"http://127.0.0.1:{port}/"
    wait_until("haproxy", lambda: http_status(url) == 200, proc)
    return proc, url


def process_cpu_seconds(pid):
    """User and system CPU seconds `pid` has used (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, seconds=SECONDS):
    before = cpu_times()
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    after = cpu_times()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors = sum(int(g) for g in m.groups())
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p99_ms": p99, "non2xx": non2xx, "socket_errors": errors, "requests": total,
            "steal_pct": round(steal_pct(before, after), 1), "busy_pct": round(busy_pct(before, after), 1),
            "load": os.getloadavg()[0]}


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def replacement(elb, tg, url, old_ports, new_port):
    """wrk through Berth while a new target (serving on `new_port`) is registered and the
    old ones deregistered."""
    result = {}

    def load():
        result.update(wrk(url, seconds=max(SECONDS, 12)))

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1)
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": new_port}])
    wait_healthy(elb, tg, [new_port])
    elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": p} for p in old_ports])
    t.join()
    return result


def rolling_deployment(workdir):
    """wrk through a load balancer in front of an ECS service while UpdateService rolls it
    to a new task definition; returns wrk's result."""
    import json as _json
    image = subprocess.run(["cargo", "run", "-q", "-p", "testkit", "--bin", "test-image"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip()
    data_dir = os.path.join(workdir, "rolling")
    api_port = free_port()
    env = {**os.environ, "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached", "NO_COLOR": "1"}
    proc = start([BERTH, "up", "--data-dir", data_dir, "--listen", f"127.0.0.1:{api_port}",
                  "--lb-address-pool", "127.202.0.0/24", "--vpc-cidr", "10.252.0.0/16"],
                 os.path.join(OUT, "elb-rolling-berth.log"), env=env)
    try:
        wait_until("berth", lambda: http_status(f"http://127.0.0.1:{api_port}/_berth/health") == 200, proc)
        vals = dict(re.findall(r"export (\w+)=(\S+)",
                               subprocess.run([BERTH, "env", "--data-dir", data_dir], check=True, capture_output=True,
                                              text=True).stdout))
        aws = {**os.environ, **{k: v.strip("'\"") for k, v in vals.items()}}

        def cli(*args):
            out = subprocess.run(["aws", *args, "--output", "json"], capture_output=True, text=True, env=aws)
            if out.returncode != 0:
                raise BenchError(f"aws {' '.join(args[:2])} failed: {out.stderr.strip()}")
            return _json.loads(out.stdout) if out.stdout.strip() else {}

        for _ in range(300):
            if cli("ecs", "list-container-instances").get("containerInstanceArns"):
                break
            time.sleep(0.2)
        for greeting in ("one", "two"):
            cli("ecs", "register-task-definition", "--family", "web", "--container-definitions", _json.dumps([{
                "name": "web", "image": image, "memory": 32, "command": ["serve", "--port", "8080"],
                "environment": [{"name": "GREETING", "value": greeting}], "portMappings": [{"containerPort": 8080}]}]))
        subnets = cli("ec2", "describe-subnets")["Subnets"]
        lb = cli("elbv2", "create-load-balancer", "--name", "rolling", "--subnets",
                 *[x["SubnetId"] for x in subnets[:2]])["LoadBalancers"][0]
        tg = cli("elbv2", "create-target-group", "--name", "rolling", "--protocol", "HTTP", "--port", "80",
                 "--vpc-id", subnets[0]["VpcId"], "--health-check-path", "/health",
                 "--health-check-interval-seconds", "5", "--health-check-timeout-seconds", "2")["TargetGroups"][0]["TargetGroupArn"]
        port = free_port()
        cli("elbv2", "create-listener", "--load-balancer-arn", lb["LoadBalancerArn"], "--protocol", "HTTP",
            "--port", str(port), "--default-actions", f"Type=forward,TargetGroupArn={tg}")
        cli("ecs", "create-service", "--service-name", "web", "--task-definition", "web:1", "--desired-count", "2",
            "--load-balancers", f"targetGroupArn={tg},containerName=web,containerPort=8080")
        subprocess.run(["aws", "ecs", "wait", "services-stable", "--services", "web"], check=True, env=aws)
        url = f"http://{lb['DNSName']}:{port}/"
        result = {}
        t = threading.Thread(target=lambda: result.update(wrk(url, seconds=max(SECONDS, 20))))
        t.start()
        time.sleep(2)
        started = time.monotonic()
        cli("ecs", "update-service", "--service", "web", "--task-definition", "web:2")
        # The CLI's waiter polls every 15 s; poll closer to see when the deployment ends, by
        # the waiter's own condition (rolloutState turns COMPLETED 10 s after the new tasks
        # started, the wait that lets the circuit breaker catch a crash loop).
        while True:
            svc = cli("ecs", "describe-services", "--services", "web")["services"][0]
            deployments = svc["deployments"]
            if len(deployments) == 1 and svc["runningCount"] == svc["desiredCount"]:
                break
            if time.monotonic() - started > 120:
                raise BenchError("the rolling deployment did not complete within 120 s")
            time.sleep(0.5)
        result_time = time.monotonic() - started
        t.join()
        result["deployment_s"] = round(result_time, 2)
        if result_time > max(SECONDS, 20) - 2:
            log("the deployment outlasted the load; its end was not under load")
        return result
    finally:
        stop(proc)
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.task-definition-family=web"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    ensure_tools()
    workdir = tempfile.mkdtemp(prefix="berth-elb-bench-")
    procs = []
    try:
        ports, new_port = [free_port(), free_port()], free_port()
        if BACKEND == "nginx":
            procs.append(nginx([*ports, new_port], workdir))
        else:
            procs += [backend(p, f"b{i}") for i, p in enumerate([*ports, new_port])]
        bproc, burl, elb, tg = berth_lb(os.path.join(workdir, "berth"), ports, free_port())
        procs.append(bproc)
        hproc, hurl = haproxy(ports, free_port(), workdir)
        procs.append(hproc)
        log(f"berth at {burl}, haproxy at {hurl}, backends ({BACKEND}) on ports {ports}")
        direct = wrk(f"http://127.0.0.1:{ports[0]}/")
        log(f"backend alone: {direct['rps']:.0f} req/s, p99 {direct['p99_ms']:.2f} ms, load {direct['load']:.2f}")
        for url in (burl, hurl):  # warm-up: pools, page cache
            wrk(url, seconds=3)
        runs = {"berth": [], "haproxy": []}
        for r in range(ROUNDS):
            order = [("berth", burl), ("haproxy", hurl)]
            if r % 2:
                order.reverse()
            for name, url in order:
                pid = (bproc if name == "berth" else hproc).pid
                cpu0 = process_cpu_seconds(pid)
                res = wrk(url)
                res["cpu_s"] = process_cpu_seconds(pid) - cpu0
                res["cpu_us_per_request"] = res["cpu_s"] / max(res["rps"] * SECONDS, 1) * 1e6
                runs[name].append(res)
                log(f"round {r + 1} {name}: {res['rps']:.0f} req/s, p99 {res['p99_ms']:.2f} ms, "
                    f"CPU {res['cpu_s']:.1f} s ({res['cpu_us_per_request']:.1f} us/request), "
                    f"non-2xx {res['non2xx']}, socket errors {res['socket_errors']}, steal {res['steal_pct']}%, "
                    f"load {res['load']:.2f}")
        summary = {n: {"rps": median([x["rps"] for x in v]), "p99_ms": median([x["p99_ms"] for x in v]),
                       "cpu_s": median([x["cpu_s"] for x in v]),
                       "cpu_us_per_request": median([x["cpu_us_per_request"] for x in v])} for n, v in runs.items()}
        rps_ratio = summary["berth"]["rps"] / summary["haproxy"]["rps"]
        p99_ratio = summary["berth"]["p99_ms"] / summary["haproxy"]["p99_ms"]
        repl = replacement(elb, tg, burl, ports, new_port)
        failed = repl["non2xx"] + repl["socket_errors"]
        rolling = rolling_deployment(workdir)
        rolling_failed = rolling["non2xx"] + rolling["socket_errors"]
        loads = [x["load"] for v in runs.values() for x in v]
        print(f"load balancer, wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, median of {ROUNDS} rounds, 2 backends ({BACKEND}), "
              f"{os.cpu_count()} cores, load average {min(loads):.1f}..{max(loads):.1f}")
        print(f"  {'':10} {'req/s':>10} {'p99 ms':>9} {'CPU s':>7} {'CPU us/req':>11}")
        print(f"  {'backend':10} {direct['rps']:>10.0f} {direct['p99_ms']:>9.2f}   (wrk straight at one backend)")
        for n in ("berth", "haproxy"):
            print(f"  {n:10} {summary[n]['rps']:>10.0f} {summary[n]['p99_ms']:>9.2f} {summary[n]['cpu_s']:>7.1f} "
                  f"{summary[n]['cpu_us_per_request']:>11.1f}")
        print(f"  ratio berth/haproxy: throughput {rps_ratio:.2f}x, p99 {p99_ratio:.2f}x")
        print(f"  targets replaced under load: {repl['requests']} requests, {failed} failed")
        print(f"  ECS rolling deployment under load ({rolling['deployment_s']} s): {rolling['requests']} requests, "
              f"{rolling_failed} failed")
        results = [check("throughput >= 1.0x HAProxy", rps_ratio >= 1.0),
                   check("p99 <= 1.2x HAProxy", p99_ratio <= 1.2),
                   check("0 failed requests while targets are replaced", failed == 0),
                   check("0 failed requests during an ECS rolling deployment", rolling_failed == 0)]
        with open(os.path.join(OUT, "elb.json"), "w") as f:
            json.dump({"backend": BACKEND, "backend_alone": direct, "runs": runs, "summary": summary, "rps_ratio": rps_ratio, "p99_ratio": p99_ratio,
                       "replacement": repl, "rolling_deployment": rolling, "checks": results}, f, indent=2)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
