#!/usr/bin/env python3
"""Writes the input shapes of the ECS, ECR, ELBv2 and EC2 operations, as the fuzzing
harness needs them, from botocore's models.

Usage: python3 tools/gen_fuzz_models.py crates/aws-api/tests/fuzz/models.json

The harness (crates/aws-api/tests/fuzz_api.rs) builds request bodies that follow these
shapes before it mutates them, so that most requests get past the decoder and reach the
control plane's rules. The file is generated once and checked in, because CI has no
botocore. Only what a generator needs is kept: member names as JSON and as the query
protocol spells them, types, enums, bounds and required members. EC2 has hundreds of
operations; only those Berth serves (read from crates/aws-api/src/ec2.rs) are kept, plus
one it does not, so the unsupported path is exercised too.
"""
import json
import os
import re
import sys

import botocore.session

SERVICES = [("ecs", "2014-11-13"), ("ecr", "2015-09-21"), ("elbv2", "2015-12-01"), ("ec2", "2016-11-15")]
EC2_SOURCE = os.path.join(os.path.dirname(__file__), "..", "crates", "aws-api", "src", "ec2.rs")


def ec2_operations():
    with open(EC2_SOURCE) as f:
        served = re.findall(r'^\s+"([A-Za-z0-9]+)" =>', f.read(), re.M)
    return sorted(set(served) | {"DescribeInstances"})


def query_name(protocol, shape, default):
    """The name the query protocol gives a member (botocore's serializers' rule)."""
    ser = shape.serialization
    if protocol == "ec2":
        if "queryName" in ser:
            return ser["queryName"]
        if "name" in ser:
            return ser["name"][0].upper() + ser["name"][1:]
        return default
    return ser.get("name", default)


def main():
    out_path = sys.argv[1]
    session = botocore.session.get_session()
    shapes = {}
    services = {}

    def visit(svc, protocol, shape):
        key = f"{svc}.{shape.name}"
        if key in shapes:
            return key
        t = shape.type_name
        entry = {}
        shapes[key] = entry
        if t == "structure":
            entry["t"] = "struct"
            entry["m"] = []
            for name, member in shape.members.items():
                json_name = member.serialization.get("name", name) if protocol == "json" else name
                entry["m"].append([json_name, query_name(protocol, member, name), visit(svc, protocol, member)])
            entry["r"] = list(shape.required_members)
        elif t == "list":
            entry["t"] = "list"
            entry["m"] = visit(svc, protocol, shape.member)
            # The segment before an element's index: `member` (or the member's name), or
            # none for EC2's and flattened lists.
            if protocol == "ec2" or shape.serialization.get("flattened"):
                entry["item"] = None
            else:
                entry["item"] = shape.member.serialization.get("name", "member")
        elif t == "map":
            entry["t"] = "map"
            entry["k"] = visit(svc, protocol, shape.key)
            entry["v"] = visit(svc, protocol, shape.value)
            entry["flat"] = bool(shape.serialization.get("flattened"))
            entry["kw"] = query_name(protocol, shape.key, "key")
            entry["vw"] = query_name(protocol, shape.value, "value")
        elif t == "string":
            entry["t"] = "string"
            if shape.enum:
                entry["enum"] = list(shape.enum)
        elif t in ("integer", "long"):
            entry["t"] = "int"
        elif t in ("double", "float"):
            entry["t"] = "float"
        elif t == "boolean":
            entry["t"] = "bool"
        elif t == "timestamp":
            entry["t"] = "timestamp"
        elif t == "blob":
            entry["t"] = "blob"
        else:
            raise ValueError(f"unsupported shape type {t} for {key}")
        for bound in ("min", "max"):
            if bound in shape.metadata:
                entry[bound] = shape.metadata[bound]
        return key

    for svc, version in SERVICES:
        model = session.get_service_model(svc, api_version=version)
        protocol = model.protocol
        names = ec2_operations() if svc == "ec2" else model.operation_names
        operations = {}
        for name in names:
            op = model.operation_model(name)
            operations[name] = visit(svc, protocol, op.input_shape) if op.input_shape is not None else None
        services[svc] = {
            "protocol": protocol,
            "signing": model.signing_name,
            "target": model.metadata.get("targetPrefix"),
            "version": model.api_version,
            "operations": operations,
        }

    doc = {
        "generated": f"tools/gen_fuzz_models.py from botocore {botocore.__version__}; do not edit by hand",
        "services": services,
        "shapes": dict(sorted(shapes.items())),
    }
    # One shape per line, so that a regenerated file is a readable diff.
    compact = lambda v: json.dumps(v, separators=(",", ":"))
    lines = ["{", f'"generated":{compact(doc["generated"])},', '"services":{']
    lines += [f"{compact(k)}:{compact(v)}," for k, v in services.items()]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["},", '"shapes":{']
    lines += [f"{compact(k)}:{compact(v)}," for k, v in doc["shapes"].items()]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["}", "}"]
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
