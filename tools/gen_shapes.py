#!/usr/bin/env python3
"""Generates Rust data types for an AWS JSON service from its botocore model.

Usage: python3 tools/gen_shapes.py ecs 2014-11-13 crates/model/src/ecs/shapes.rs [Operation ...] && cargo fmt --all

Operations named after the output path restrict the types to those their inputs and
outputs reach (SSM's model has 1,290 shapes; Berth implements a dozen of its operations).

The botocore model is the exact, machine-readable statement of AWS's wire shapes, so
the types are generated from it instead of being transcribed by hand. Only facts are
carried over (shape names, member names, types, enums, required members, bounds);
the model's documentation strings are deliberately not copied.

Every structure member is an `Option`, so that a missing required member is reported by
the generated `validate` with AWS's wording instead of by serde. Unknown members are
rejected (`deny_unknown_fields`). Enums deserialize through `FromStr`, so an unknown
value names the member and lists the valid values.
"""
import gzip
import json
import os
import re
import sys

import botocore

RUST_KEYWORDS = {"type", "match", "ref", "self", "in", "mod", "use", "loop", "move", "where", "async", "await", "dyn", "fn", "impl", "let", "mut", "pub", "static", "struct", "trait", "enum", "const", "crate", "extern", "false", "true", "for", "if", "else", "return", "super", "while", "box", "override", "final", "priv", "abstract", "macro", "virtual", "yield", "try", "unsafe", "become", "do", "typeof", "unsized"}


def snake(name):
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    if s in RUST_KEYWORDS:
        s += "_"
    return s


def variant(value, taken):
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", value) if p]
    v = "".join(p[:1].upper() + p[1:].lower() if p.isupper() or p.islower() else p[:1].upper() + p[1:] for p in parts) or "Empty"
    if v[0].isdigit():
        v = "V" + v
    base, i = v, 2
    while v in taken:
        v = f"{base}{i}"
        i += 1
    taken.add(v)
    return v


def rust_type(shapes, name):
    s = shapes[name]
    t = s["type"]
    if t == "string":
        return name if "enum" in s else "String"
    if t == "integer":
        return "i32"
    if t == "long":
        return "i64"
    if t == "double":
        return "f64"
    if t == "boolean":
        return "bool"
    if t == "timestamp":
        return "Timestamp"
    if t == "blob":
        return "String"
    if t == "list":
        return f"Vec<{rust_type(shapes, s['member']['shape'])}>"
    if t == "map":
        return f"BTreeMap<String, {rust_type(shapes, s['value']['shape'])}>"
    if t == "structure":
        return name
    raise ValueError(f"unsupported shape type {t} for {name}")


def validation_for(shapes, target, expr, path_expr):
    """Rust statements checking one present value against its shape's bounds."""
    s = shapes[target]
    t = s["type"]
    out = []
    if t == "string" and "enum" not in s and ("min" in s or "max" in s):
        lo, hi = s.get("min", 0), s.get("max")
        cond = f"{expr}.chars().count() < {lo}" if hi is None else f"!({lo}..={hi}).contains(&{expr}.chars().count())"
        bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        out.append(f'if {cond} {{ v.push(Violation::new({path_expr}, "must have a length {bound} characters")); }}')
    if t in ("integer", "long", "double") and ("min" in s or "max" in s):
        conds = []
        if "min" in s:
            conds.append(f"(*{expr} as f64) < {float(s['min'])}")
        if "max" in s:
            conds.append(f"(*{expr} as f64) > {float(s['max'])}")
        desc = " and ".join(x for x in [f"at least {s['min']}" if "min" in s else "", f"at most {s['max']}" if "max" in s else ""] if x)
        out.append(f'if {" || ".join(conds)} {{ v.push(Violation::new({path_expr}, "must be {desc}")); }}')
    if t == "list":
        if "min" in s or "max" in s:
            lo, hi = s.get("min", 0), s.get("max", 2**31)
            out.append(f'if !({lo}..={hi}).contains(&{expr}.len()) {{ v.push(Violation::new({path_expr}, "must have between {lo} and {hi} items")); }}')
        inner = validation_for(shapes, s["member"]["shape"], "item", f'format!("{{}}[{{}}]", {path_expr}, i)')
        if inner:
            out.append(f"for (i, item) in {expr}.iter().enumerate() {{ {' '.join(inner)} }}")
    if t == "map":
        inner = validation_for(shapes, s["value"]["shape"], "item", f'format!("{{}}.{{}}", {path_expr}, k)')
        if inner:
            out.append(f"for (k, item) in {expr}.iter() {{ {' '.join(inner)} }}")
    if t == "structure" and needs_validate(shapes, target):
        out.append(f"{expr}.validate_at(&{path_expr}, v);")
    return out


_needs = {}


def needs_validate(shapes, name):
    if name in _needs:
        return _needs[name]
    _needs[name] = False
    s = shapes[name]
    r = False
    if s["type"] == "structure":
        if s.get("required"):
            r = True
        for m in s["members"].values():
            if member_checks(shapes, m["shape"]):
                r = True
    _needs[name] = r
    return r


def member_checks(shapes, target):
    return bool(validation_for(shapes, target, "x", "p"))


def reachable(shapes, model, operations):
    """The shapes the given operations' inputs and outputs use, directly or not."""
    seen = set()
    todo = [model["operations"][o][k]["shape"] for o in operations for k in ("input", "output") if k in model["operations"][o]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        s = shapes[name]
        todo.extend(m["shape"] for m in s.get("members", {}).values())
        todo.extend(s[k]["shape"] for k in ("member", "value") if k in s)
    return seen


def main():
    service, version, out_path = sys.argv[1:4]
    only = sys.argv[4:]
    model_path = os.path.join(os.path.dirname(botocore.__file__), "data", service, version, "service-2.json.gz")
    model = json.load(gzip.open(model_path))
    shapes = model["shapes"]
    lines = [
        f"//! The {model['metadata']['serviceId']} API's data types, generated by `tools/gen_shapes.py` from",
        f"//! botocore's `{service}/{version}` model (botocore {botocore.__version__}). Do not edit by hand.",
        "#![allow(clippy::all, clippy::pedantic, missing_docs)]",
        "",
        "use std::collections::BTreeMap;",
        "use std::fmt;",
        "use std::str::FromStr;",
        "",
        "use serde::{Deserialize, Serialize};",
        "",
        "use crate::shape::{Timestamp, Violation};",
        "",
    ]
    ops = ", ".join(f'"{o}"' for o in sorted(model["operations"]))
    lines.append("/// Every operation the service's model defines.")
    lines.append(f"pub const OPERATIONS: &[&str] = &[{ops}];")
    lines.append("")
    # Exceptions are rendered by the edge, except those an event stream carries as members.
    carried = {m["shape"] for s in shapes.values() if not s.get("exception") for m in s.get("members", {}).values()}
    wanted = reachable(shapes, model, only) if only else set(shapes)
    for name in sorted(wanted):
        s = shapes[name]
        if s.get("exception") and name not in carried:
            continue
        if s["type"] == "string" and "enum" in s:
            taken = set()
            pairs = [(variant(val, taken), val) for val in s["enum"]]
            lines.append("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]")
            lines.append('#[serde(try_from = "String", into = "&\'static str")]')
            lines.append(f"pub enum {name} {{")
            for v, _ in pairs:
                lines.append(f"    {v},")
            lines.append("}")
            lines.append(f"impl {name} {{")
            lines.append(f"    pub const ALL: &'static [{name}] = &[{', '.join(f'{name}::{v}' for v, _ in pairs)}];")
            lines.append("    pub fn as_str(self) -> &'static str {")
            lines.append("        match self {")
            for v, val in pairs:
                lines.append(f'            {name}::{v} => "{val}",')
            lines.append("        }")
            lines.append("    }")
            lines.append("}")
            lines.append(f"impl FromStr for {name} {{")
            lines.append("    type Err = String;")
            lines.append("    fn from_str(s: &str) -> Result<Self, String> {")
            lines.append("        match s {")
            for v, val in pairs:
                lines.append(f'            "{val}" => Ok({name}::{v}),')
            valid = ", ".join(val for _, val in pairs)
            lines.append(f'            _ => Err(format!("invalid value \'{{s}}\' for {name}; valid values: {valid}")),')
            lines.append("        }")
            lines.append("    }")
            lines.append("}")
            lines.append(f"impl TryFrom<String> for {name} {{ type Error = String; fn try_from(s: String) -> Result<Self, String> {{ s.parse() }} }}")
            lines.append(f"impl From<{name}> for &'static str {{ fn from(v: {name}) -> Self {{ v.as_str() }} }}")
            lines.append(f"impl fmt::Display for {name} {{ fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {{ f.write_str(self.as_str()) }} }}")
            lines.append("")
        elif s["type"] == "structure":
            lines.append("#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]")
            lines.append("#[serde(deny_unknown_fields)]")
            lines.append(f"pub struct {name} {{")
            for mname, m in s["members"].items():
                lines.append(f'    #[serde(rename = "{mname}", default, skip_serializing_if = "Option::is_none")]')
                # A structure that contains itself needs a box to have a size.
                mtype = f"Box<{name}>" if m["shape"] == name else rust_type(shapes, m["shape"])
                lines.append(f"    pub {snake(mname)}: Option<{mtype}>,")
            lines.append("}")
            if needs_validate(shapes, name):
                lines.append(f"impl {name} {{")
                lines.append("    /// Checks required members and the model's bounds; `path` names this value in messages.")
                lines.append("    pub fn validate_at(&self, path: &str, v: &mut Vec<Violation>) {")
                lines.append("        let _ = (&path, &v);")
                for mname, m in s["members"].items():
                    field = snake(mname)
                    pe = f'crate::shape::join(path, "{mname}")'
                    if mname in s.get("required", []):
                        lines.append(f'        if self.{field}.is_none() {{ v.push(Violation::missing({pe})); }}')
                    checks = validation_for(shapes, m["shape"], "x", pe)
                    if checks:
                        lines.append(f"        if let Some(x) = &self.{field} {{ {' '.join(checks)} }}")
                lines.append("    }")
                lines.append("}")
            lines.append("")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
