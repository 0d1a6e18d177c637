#!/usr/bin/env python3
"""Protocol fuzzing of a live Berth: correctly signed but damaged requests for every
operation of the botocore models of ECS, ECR, ELBv2 and EC2, over keep-alive connections.

Usage:
    tests/reliability/fuzz-api.py [--berth target/debug/berth] [--requests 20000]
                                  [--workers 4] [--seed N]
    tests/reliability/fuzz-api.py --endpoint http://127.0.0.1:7447 --data-dir DIR ...

Without --endpoint it starts `berth server` on a free loopback port with a fresh data dir
(removed afterwards unless --keep); with --endpoint it uses that server and the
credentials `berth env --data-dir DIR` prints. It first creates one of each resource (a
cluster, task definition and service; a repository with an image and policies; a
security group; a target group, load balancer and listener), finds which operations Berth
serves by calling each once, then sends --requests requests: bodies built from the
operation's input shape, mostly aimed at served operations and at the names and ARNs
earlier answers returned, then damaged (wrong types, huge strings, unicode, lone
surrogates, control characters, missing and unknown members, deep nesting, huge numbers,
broken syntax, misnumbered form keys, bodies of several MiB).

It prints the executions, the statuses, the error codes and the time, and fails (exit
status 1) if any answer is a 5xx, a connection is reset or closed without
`Connection: close`, a request times out, or the server dies. Failing requests are written
to fuzz-failures.jsonl in the data dir, and the server log is kept there.

Needs botocore (installed with the aws CLI by scripts/install-test-deps.sh).
"""
import argparse
import base64
import collections
import hashlib
import http.client
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.session

REGION = "us-east-1"
SERVICES = ["ecs", "ecr", "elbv2", "ec2"]
UNSUPPORTED = ("UnsupportedFeatureException", "UnsupportedOperation", "InvalidAction")
NAMES = ["fuzz", "default", "fuzz-web"]
# A connection idle longer than this is replaced rather than reused (Berth closes idle
# connections after its --header-timeout, 30 s by default).
IDLE_REUSE_SECONDS = 10
# The share of requests with a body of several MiB (over the operation's limit); --large.
LARGE_RATE = 0.01
HOSTILE = [
    "", " ", "\x00", "\r\n", "a\nlevel=ERROR forged", "\u202e\u200b\ufeff", "e\u0301\u0301", "\U0001F600",
    "%s%n%x", "../../etc/passwd", "<a>&amp;</b>]]>", "' OR 1=1 --", "${jndi:ldap://x}", "-1", "2147483648",
    "9223372036854775808", "1e308", "NaN", "arn:aws:ecs:us-east-1:000000000000:cluster/", "sha256:",
]


class Dictionary:
    """Strings seen in answers, by lower-cased member or element name, so that a request
    member named alike (cluster, clusterArn, LoadBalancerArn, GroupId) gets them back."""

    def __init__(self):
        self.by_name = collections.defaultdict(list)
        self.lock = threading.Lock()

    def learn(self, body):
        found = []
        try:
            walk_json(json.loads(body), "", found)
        except (ValueError, UnicodeDecodeError, RecursionError):
            text = body.decode("utf-8", "replace")
            for tag, value in re.findall(r"<([A-Za-z][A-Za-z0-9]*)>([^<]{1,2048})</\1>", text):
                found.append((tag.lower(), value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")))
        with self.lock:
            for name, value in found:
                values = self.by_name[name]
                if value and value not in values and len(value) < 4096:
                    values.append(value)
                    del values[:-24]

    def add(self, name, value):
        with self.lock:
            self.by_name[name.lower()].append(value)

    def pick(self, member, rng):
        m = member.lower()
        singular = m[:-1] if m.endswith("s") else m
        with self.lock:
            candidates = [v for n in (m, m + "arn", m + "name", singular, singular + "arn") for v in self.by_name.get(n, [])]
        return rng.choice(candidates) if candidates else None


def walk_json(v, name, out):
    if isinstance(v, str) and name:
        out.append((name.lower(), v))
    elif isinstance(v, list):
        for x in v:
            walk_json(x, name, out)
    elif isinstance(v, dict):
        for k, x in v.items():
            walk_json(x, k, out)


# --- generating values from botocore shapes -------------------------------------------

def generate(shape, rng, d, member="", depth=0):
    if shape is None:
        return {}
    t = shape.type_name
    if t == "structure":
        out = {}
        required = set(shape.required_members)
        for name, m in shape.members.items():
            p = 0.95 if name in required else 0.5 / (depth + 1)
            if depth < 8 and rng.random() < p:
                out[name] = generate(m, rng, d, name, depth + 1)
        return out
    if t == "list":
        lo = shape.metadata.get("min", 0)
        n = 0 if depth >= 8 else rng.randint(lo, min(lo + 3, max(lo, shape.metadata.get("max", 4))))
        item = member[:-1] if member.endswith("s") else member
        return [generate(shape.member, rng, d, item, depth + 1) for _ in range(n)]
    if t == "map":
        return {str(generate(shape.key, rng, d, "key", depth + 1)): generate(shape.value, rng, d, member, depth + 1)
                for _ in range(0 if depth >= 8 else rng.randint(0, 3))}
    if t == "string":
        if shape.enum and rng.random() < 0.97:
            return rng.choice(shape.enum)
        r = rng.random()
        if r < 0.4:
            return d.pick(member, rng) or rng.choice(NAMES)
        if r < 0.6:
            return rng.choice(NAMES)
        if r < 0.85:
            lo, hi = shape.metadata.get("min", 0), min(shape.metadata.get("max", 32), 64)
            return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_./:") for _ in range(rng.randint(lo, max(lo, hi))))
        return rng.choice(HOSTILE)
    if t in ("integer", "long"):
        lo, hi = shape.metadata.get("min", 0), shape.metadata.get("max", 1000)
        return rng.choice([lo, hi, lo - 1, hi + 1, 0, 1, rng.randint(lo, max(lo, min(hi, 10**6))), rng.randint(0, 10)])
    if t in ("double", "float"):
        return rng.choice([0.0, 0.5, 100.0, -1.0])
    if t == "boolean":
        return rng.random() < 0.5
    if t == "timestamp":
        return rng.randint(0, 2_000_000_000)
    if t == "blob":
        return base64.b64encode(rng.randbytes(rng.randint(0, 32))).decode()
    return None


class Huge:
    """A JSON number too large for any type, written as raw text."""

    def __init__(self, text):
        self.text = text


def hostile_value(rng):
    r = rng.randrange(12)
    if r == 0:
        return "A" * rng.choice([300, 5_000, 100_000])
    if r == 1:
        return "".join(chr(rng.choice([rng.randrange(0x20), rng.randrange(0x80, 0x2FFF), 0x1F600, 0xD800 + rng.randrange(0x800)]))
                       for _ in range(rng.randint(1, 40)))
    if r == 2:
        return rng.choice(HOSTILE)
    if r == 3:
        return rng.choice([10**30, -(10**30), 2**63, -(2**63) - 1, 2**31, -(2**31) - 1, 1.5, -0.0, 1e308])
    if r == 4:
        return Huge(rng.choice(["1e400", "-1e400", "1" + "0" * 400, "0." + "0" * 400 + "1"]))
    if r == 5:
        return rng.choice([None, True, False, [], {}, [None], {"": None}])
    if r == 6:
        v = "deep"
        for _ in range(rng.choice([10, 100, 200, 1000])):
            v = [v] if rng.random() < 0.5 else {"a": v}
        return v
    if r == 7:
        return float(rng.choice(["inf", "-inf", "nan"]))
    if r == 8:
        return {"unknownMember": 1, "__type": "x"}
    if r == 9:
        return [hostile_value(rng) for _ in range(rng.randint(1, 5))]
    if r == 10:
        return rng.randbytes(8).decode("latin-1")
    return str(rng.randint(-10, 10))


def nodes(v, path=()):
    yield path
    if isinstance(v, dict):
        for k, x in v.items():
            yield from nodes(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from nodes(x, path + (i,))


def damage(body, rng):
    """Damages a generated body in place (or returns a new one)."""
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        # Repeated deep nests have millions of nodes: the first few thousand will do.
        paths = list(itertools.islice(nodes(body), 5000))
        path = rng.choice(paths)
        if not path:
            if rng.random() < 0.2:
                body = hostile_value(rng)
            continue
        parent = body
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        r = rng.random()
        if r < 0.55:
            parent[last] = hostile_value(rng)
        elif r < 0.75:
            del parent[last]
        elif r < 0.85 and isinstance(parent, dict):
            parent[rng.choice(["unknown", last.upper() if isinstance(last, str) else "x", ""])] = hostile_value(rng)
        elif r < 0.95:
            parent[last] = [parent[last]] * rng.randint(2, 200)
        else:
            parent[last] = to_json(parent[last])
    return body


def to_json(v):
    if isinstance(v, Huge):
        return v.text
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + to_json(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(to_json(x) for x in v) + "]"
    if isinstance(v, float) and v != v:
        return "NaN"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return json.dumps(v)


def query_name(protocol, shape, default):
    ser = shape.serialization
    if protocol == "ec2":
        if "queryName" in ser:
            return ser["queryName"]
        if "name" in ser:
            return ser["name"][0].upper() + ser["name"][1:]
        return default
    return ser.get("name", default)


def flatten(v, shape, protocol, prefix, out):
    """The query protocol's form of v, following shape while they agree."""
    def join(name):
        return f"{prefix}.{name}" if prefix else str(name)
    t = shape.type_name if shape is not None else None
    if isinstance(v, dict) and t == "structure":
        for k, x in v.items():
            m = shape.members.get(k)
            flatten(x, m, protocol, join(query_name(protocol, m, k) if m is not None else k), out)
    elif isinstance(v, dict) and t == "map":
        base = prefix if shape.serialization.get("flattened") else join("entry")
        for i, (k, x) in enumerate(v.items(), 1):
            out.append((f"{base}.{i}.key", str(k)))
            flatten(x, shape.value, protocol, f"{base}.{i}.value", out)
    elif isinstance(v, list) and t == "list":
        if not v:
            out.append((prefix, ""))
        for i, x in enumerate(v, 1):
            if protocol == "ec2" or shape.serialization.get("flattened"):
                at = join(i)
            else:
                at = join(f"{shape.member.serialization.get('name', 'member')}.{i}")
            flatten(x, shape.member, protocol, at, out)
    elif isinstance(v, dict):
        for k, x in v.items():
            flatten(x, None, protocol, join(k), out)
    elif isinstance(v, list):
        for i, x in enumerate(v, 1):
            flatten(x, None, protocol, join(f"member.{i}"), out)
    elif v is None:
        out.append((prefix, ""))
    elif isinstance(v, bool):
        out.append((prefix, "true" if v else "false"))
    elif isinstance(v, Huge):
        out.append((prefix, v.text))
    else:
        out.append((prefix, str(v)))


def damage_form(pairs, rng):
    for _ in range(rng.choice([0, 0, 1, 2])):
        if not pairs:
            return
        i = rng.randrange(len(pairs))
        k, v = pairs[i]
        r = rng.randrange(6)
        if r == 0:
            del pairs[i]
        elif r == 1:
            pairs.append((k, v))
        elif r == 2:
            pairs[i] = (re.sub(r"\d+$", rng.choice(["0", "1001", "-1", "x", "99999999999999999999", ""]), k), v)
        elif r == 3:
            pairs[i] = (k.lower(), v)
        elif r == 4:
            pairs[i] = (k, "\x00\n<&>\u00e9" * rng.randint(1, 50))
        else:
            pairs[i] = (k + ".member", v)


def damage_bytes(b, rng):
    b = bytearray(b)
    for _ in range(rng.randint(1, 3)):
        if not b:
            b += rng.randbytes(4)
            continue
        i = rng.randrange(len(b))
        r = rng.randrange(4)
        if r == 0:
            b[i] = rng.randrange(256)
        elif r == 1:
            del b[i:i + rng.randint(1, 16)]
        elif r == 2:
            b[i:i] = rng.choice([b"\x00", b"\xff\xfe", b'"', b"\\", b"{", b"%", b"&", b"=", b"\xed\xa0\x80"])
        else:
            del b[i:]
    return bytes(b)


# --- the server and the requests ----------------------------------------------------------

class Client:
    """One keep-alive connection, and SigV4 signing with botocore."""

    def __init__(self, endpoint, credentials, timeout):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port or 80
        self.netloc = u.netloc
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.conn = None
        self.previous = None
        self.last_answer = 0.0

    def call(self, signing_name, headers, body):
        """(status, headers, body) of a signed POST /; raises on a transport failure."""
        req = botocore.awsrequest.AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers=headers)
        botocore.auth.SigV4Auth(self.credentials, signing_name, REGION).add_auth(req)
        send_headers = {k: v for k, v in req.headers.items()}
        send_headers["Host"] = self.netloc
        # Berth closes a connection idle for its --header-timeout (30 s); building a
        # large damaged body can take that long, so an idle connection is not reused.
        if self.conn is not None and time.monotonic() - self.last_answer > IDLE_REUSE_SECONDS:
            self.conn.close()
            self.conn = None
        reused = self.conn is not None
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                self.conn.request("POST", "/", body=body, headers=send_headers)
            except (BrokenPipeError, ConnectionResetError):
                # A server may answer (413) and close before reading a large body; that
                # is valid HTTP if the answer says `Connection: close`, so read it.
                resp = self.conn.getresponse()
                data = resp.read()
                if not resp.will_close:
                    raise RuntimeError(f"{resp.status} answered before the body was read, without Connection: close")
            else:
                resp = self.conn.getresponse()
                data = resp.read()
        except Exception as e:
            self.conn.close()
            self.conn = None
            raise RuntimeError(f"{type(e).__name__}: {e} (on a {'reused' if reused else 'new'} connection; "
                               f"the previous answer on it: {self.previous})") from e
        self.previous = f"{resp.status}, Connection: {resp.getheader('Connection')}, {len(body)}-byte request"
        self.last_answer = time.monotonic()
        if resp.will_close:
            # The server said `Connection: close`: a new connection for the next request.
            self.conn.close()
            self.conn = None
        return resp.status, dict(resp.getheaders()), data

    def json(self, model, operation, body):
        target = f"{model.metadata['targetPrefix']}.{operation}"
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
        return self.call(model.signing_name, headers, body if isinstance(body, bytes) else json.dumps(body).encode())

    def form(self, model, pairs):
        body = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote).encode()
        return self.call(model.signing_name, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, body)


def error_code(body):
    try:
        return json.loads(body).get("__type")
    except (ValueError, UnicodeDecodeError, AttributeError):
        m = re.search(rb"<Code>([^<]*)</Code>", body)
        return m.group(1).decode("utf-8", "replace") if m else None


def seed_resources(client, models, d):
    """One of each resource, so generated requests find something to act on."""
    def ok(what, answer):
        status, _, body = answer
        if status != 200:
            sys.exit(f"fuzz-api: setting up, {what} answered {status}: {body[:500]!r}")
        d.learn(body)
        try:
            return json.loads(body)
        except ValueError:
            return None
    ecs, ecr, elb, ec2 = (models[s] for s in SERVICES)
    ok("CreateCluster", client.json(ecs, "CreateCluster", {"clusterName": "fuzz"}))
    ok("RegisterTaskDefinition", client.json(ecs, "RegisterTaskDefinition", {"family": "fuzz", "containerDefinitions": [
        {"name": "web", "image": "nginx", "memory": 128, "portMappings": [{"containerPort": 80}]}]}))
    ok("CreateService", client.json(ecs, "CreateService", {"cluster": "fuzz", "serviceName": "fuzz-web",
                                                          "taskDefinition": "fuzz", "desiredCount": 0}))
    ok("CreateRepository", client.json(ecr, "CreateRepository", {"repositoryName": "fuzz"}))
    blobs = [b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}', b"fuzz layer"]
    digests = []
    for blob in blobs:
        up = ok("InitiateLayerUpload", client.json(ecr, "InitiateLayerUpload", {"repositoryName": "fuzz"}))
        ok("UploadLayerPart", client.json(ecr, "UploadLayerPart", {
            "repositoryName": "fuzz", "uploadId": up["uploadId"], "partFirstByte": 0, "partLastByte": len(blob) - 1,
            "layerPartBlob": base64.b64encode(blob).decode()}))
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        ok("CompleteLayerUpload", client.json(ecr, "CompleteLayerUpload", {
            "repositoryName": "fuzz", "uploadId": up["uploadId"], "layerDigests": [digest]}))
        digests.append((digest, len(blob)))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0][0], "size": digests[0][1]},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[1][0], "size": digests[1][1]}]})
    d.add("imageManifest", manifest)
    ok("PutImage", client.json(ecr, "PutImage", {"repositoryName": "fuzz", "imageManifest": manifest, "imageTag": "v1"}))
    lifecycle = json.dumps({"rules": [{"rulePriority": 1, "description": "expire untagged", "selection": {
        "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5}, "action": {"type": "expire"}}]})
    d.add("lifecyclePolicyText", lifecycle)
    ok("PutLifecyclePolicy", client.json(ecr, "PutLifecyclePolicy", {"repositoryName": "fuzz", "lifecyclePolicyText": lifecycle}))
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}]})
    d.add("policyText", policy)
    ok("SetRepositoryPolicy", client.json(ecr, "SetRepositoryPolicy", {"repositoryName": "fuzz", "policyText": policy}))
    v2 = ec2.api_version
    ok("DescribeVpcs", client.form(ec2, [("Action", "DescribeVpcs"), ("Version", v2)]))
    ok("DescribeSubnets", client.form(ec2, [("Action", "DescribeSubnets"), ("Version", v2)]))
    vpc = d.by_name["vpcid"][0]
    subnets = sorted(set(d.by_name["subnetid"]))
    ok("CreateSecurityGroup", client.form(ec2, [("Action", "CreateSecurityGroup"), ("Version", v2), ("GroupName", "fuzz"),
                                                ("GroupDescription", "fuzz"), ("VpcId", vpc)]))
    v = elb.api_version
    ok("CreateTargetGroup", client.form(elb, [("Action", "CreateTargetGroup"), ("Version", v), ("Name", "fuzz"),
                                              ("Protocol", "HTTP"), ("Port", "80"), ("VpcId", vpc), ("TargetType", "ip")]))
    ok("CreateLoadBalancer", client.form(elb, [("Action", "CreateLoadBalancer"), ("Version", v), ("Name", "fuzz"),
                                               ("Subnets.member.1", subnets[0]), ("Subnets.member.2", subnets[1])]))
    ok("CreateListener", client.form(elb, [
        ("Action", "CreateListener"), ("Version", v), ("LoadBalancerArn", d.by_name["loadbalancerarn"][0]),
        ("Protocol", "HTTP"), ("Port", "8080"), ("DefaultActions.member.1.Type", "forward"),
        ("DefaultActions.member.1.TargetGroupArn", d.by_name["targetgrouparn"][0])]))


def probe(client, models):
    """Which operations Berth serves: each is called once with an empty body."""
    served, unserved = {}, {}
    for s in SERVICES:
        m = models[s]
        served[s], unserved[s] = [], []
        for op in m.operation_names:
            if m.protocol == "json":
                status, _, body = client.json(m, op, {})
            else:
                status, _, body = client.form(m, [("Action", op), ("Version", m.api_version)])
            code = error_code(body) or ""
            (unserved if any(u in code for u in UNSUPPORTED) else served)[s].append(op)
    return served, unserved


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.codes = collections.Counter()
        self.by_service = collections.Counter()
        self.failures = []
        self.sent = 0


def one_request(client, models, served, unserved, d, rng):
    """Builds, sends and judges one request; returns (service, status or None, failure)."""
    service = rng.choice(SERVICES)
    m = models[service]
    ops = unserved[service] if (rng.random() < 0.05 and unserved[service]) else served[service]
    op = rng.choice(ops)
    shape = m.operation_model(op).input_shape
    body = damage(generate(shape, rng, d), rng)
    if m.protocol == "json":
        raw = to_json(body).encode("utf-8", "surrogatepass")
        if rng.random() < LARGE_RATE:
            raw = b'{"a":"' + b"x" * rng.choice([2 << 20, 5 << 20, 11 << 20, 29 << 20]) + b'"}'
        if rng.random() < 0.08:
            raw = damage_bytes(raw, rng)
        name = op if rng.random() > 0.02 else rng.choice([op.lower(), op + "X", "", "../" + op, op + "\u00e9"])
        target = f"{m.metadata['targetPrefix']}.{name}"
        headers = {"Content-Type": rng.choice(["application/x-amz-json-1.1"] * 20 + ["application/json", "text/plain"]),
                   "X-Amz-Target": target.encode("utf-8").decode("latin-1")}
        describe = f"{target} {raw[:2000]!r}"
        send = lambda: client.call(m.signing_name, headers, raw)
    else:
        pairs = []
        flatten(body, shape, m.protocol, "", pairs)
        damage_form(pairs, rng)
        head = [("Action", op)]
        if rng.random() > 0.05:
            head.append(("Version", m.api_version if rng.random() > 0.05 else "2099-01-01"))
        raw = urllib.parse.urlencode(head + pairs, quote_via=rng.choice([urllib.parse.quote, urllib.parse.quote_plus]),
                                     errors="surrogatepass").encode()
        if rng.random() < LARGE_RATE:
            raw += b"&Pad=" + b"x" * rng.choice([2 << 20, 5 << 20])
        if rng.random() < 0.08:
            raw = damage_bytes(raw, rng)
        describe = f"{m.signing_name} {op} {raw[:2000]!r}"
        send = lambda: client.call(m.signing_name, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, raw)
    try:
        status, headers, answer = send()
    except (OSError, http.client.HTTPException, RuntimeError) as e:
        return service, None, f"{e} for {describe}"
    d.learn(answer)
    if status >= 500:
        return service, status, f"{status} {answer[:500]!r} for {describe}"
    return service, status, (answer, None)


def worker(endpoint, credentials, models, served, unserved, d, stats, n, seed, timeout, deadline_check):
    rng = random.Random(seed)
    client = Client(endpoint, credentials, timeout)
    for _ in range(n):
        if deadline_check():
            return
        try:
            service, status, result = one_request(client, models, served, unserved, d, rng)
        except Exception:  # noqa: BLE001 - a bug of this script, not of Berth: reported, and the run fails
            with stats.lock:
                stats.sent += 1
                stats.statuses["harness error"] += 1
                stats.failures.append("harness error: " + traceback.format_exc())
            continue
        with stats.lock:
            stats.sent += 1
            stats.by_service[service] += 1
            if status is None:
                stats.statuses["reset/timeout"] += 1
                stats.failures.append(result)
            else:
                stats.statuses[status] += 1
                if isinstance(result, str):
                    stats.failures.append(result)
                elif status >= 400:
                    stats.codes[error_code(result[0]) or str(status)] += 1


def start_server(berth, data_dir):
    log = open(os.path.join(data_dir, "server.log"), "ab")
    proc = subprocess.Popen([berth, "server", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint_file = os.path.join(data_dir, "endpoint")
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"fuzz-api: berth exited during start; see {data_dir}/server.log")
        if os.path.exists(endpoint_file) and open(endpoint_file).read().strip():
            endpoint = open(endpoint_file).read().strip()
            if health(endpoint):
                return proc, endpoint
        time.sleep(0.1)
    proc.kill()
    sys.exit("fuzz-api: berth did not become healthy in 60 s")


def health(endpoint):
    u = urllib.parse.urlsplit(endpoint)
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        c.request("GET", "/_berth/health")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def credentials_of(berth, data_dir):
    out = subprocess.run([berth, "env", "--data-dir", data_dir], check=True, capture_output=True, text=True).stdout
    env = dict(re.findall(r"export (\w+)=['\"]?([^'\"\n]*)['\"]?", out))
    return botocore.credentials.Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])


def main():
    global LARGE_RATE
    # Deeply nested bodies are built, serialized and flattened recursively.
    sys.setrecursionlimit(100_000)
    threading.stack_size(256 << 20)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--berth", default="target/debug/berth")
    ap.add_argument("--endpoint", help="an already running Berth (needs --data-dir for its credentials)")
    ap.add_argument("--data-dir")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a request may take")
    ap.add_argument("--keep", action="store_true", help="keep the data dir of a server this script started")
    ap.add_argument("--large", type=float, default=LARGE_RATE,
                    help="the share of requests with a body of 2 to 29 MiB, over the operation's limit (0 for none)")
    args = ap.parse_args()
    LARGE_RATE = args.large

    session = botocore.session.get_session()
    models = {s: session.get_service_model(s) for s in SERVICES}
    proc = None
    failed = True
    data_dir = args.data_dir
    if args.endpoint:
        if not data_dir:
            sys.exit("fuzz-api: --endpoint needs --data-dir (for `berth env`'s credentials)")
        endpoint = args.endpoint
    else:
        data_dir = data_dir or tempfile.mkdtemp(prefix="berth-fuzz-")
        proc, endpoint = start_server(args.berth, data_dir)
    try:
        credentials = credentials_of(args.berth, data_dir)
        d = Dictionary()
        setup = Client(endpoint, credentials, args.timeout)
        seed_resources(setup, models, d)
        served, unserved = probe(setup, models)
        print(f"fuzz-api: {endpoint}, seed {args.seed}, {args.requests} requests by {args.workers} workers; served operations: "
              + ", ".join(f"{s} {len(served[s])} of {len(served[s]) + len(unserved[s])}" for s in SERVICES), flush=True)
        stats = Stats()
        died = threading.Event()

        def dead():
            if proc is not None and proc.poll() is not None:
                died.set()
            return died.is_set()

        started = time.monotonic()
        per = [args.requests // args.workers + (1 if i < args.requests % args.workers else 0) for i in range(args.workers)]
        threads = [threading.Thread(target=worker, args=(endpoint, credentials, models, served, unserved, d, stats,
                                                           per[i], args.seed * 1000 + i, args.timeout, dead))
                   for i in range(args.workers)]
        for t in threads:
            t.start()
        last = started
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                print(f"  ... {stats.sent} requests, {dict(stats.statuses)}", flush=True)
        elapsed = time.monotonic() - started
        alive = proc is None or proc.poll() is None
        healthy = health(endpoint)

        print(f"fuzz-api: {stats.sent} requests in {elapsed:.1f} s ({stats.sent / max(elapsed, 1e-9):.0f}/s)")
        print("  by service: " + ", ".join(f"{s} {stats.by_service[s]}" for s in SERVICES))
        print("  statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.statuses.items(), key=lambda kv: str(kv[0]))))
        print("  error codes: " + ", ".join(f"{k} {v}" for k, v in stats.codes.most_common(25)))
        server_errors = sum(v for k, v in stats.statuses.items() if isinstance(k, int) and k >= 500)
        resets = stats.statuses.get("reset/timeout", 0)
        print(f"  server errors (5xx): {server_errors}; connection resets or timeouts: {resets}; "
              f"server alive: {'yes' if alive else 'NO'}; health: {'ok' if healthy else 'FAILING'}")
        if stats.failures:
            path = os.path.join(data_dir, "fuzz-failures.jsonl")
            with open(path, "w") as f:
                for failure in stats.failures:
                    f.write(json.dumps(failure) + "\n")
            for failure in stats.failures[:10]:
                print(f"  FAILURE: {failure[:600]}", file=sys.stderr)
            print(f"  all {len(stats.failures)} failures are in {path}", file=sys.stderr)
        # A panic in a task that answers nothing shows only in the log.
        panics = 0
        log_path = os.path.join(data_dir, "server.log")
        if proc is not None and os.path.exists(log_path):
            with open(log_path, errors="replace") as f:
                panics = sum(1 for line in f if "panicked" in line)
            print(f"  panics in the server log: {panics}")
        failed = bool(stats.failures) or not alive or not healthy or stats.sent < args.requests or panics > 0
        print("FAIL" if failed else "PASS")
        return 1 if failed else 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            # A clean run leaves nothing behind; a failing one keeps the log and failures.
            if not args.keep and not args.data_dir and not failed:
                shutil.rmtree(data_dir, ignore_errors=True)
            elif not args.endpoint:
                print(f"fuzz-api: the server's data dir and log are in {data_dir}")


if __name__ == "__main__":
    sys.exit(main())
