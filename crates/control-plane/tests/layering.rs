//! The control plane's layering, checked on its source text (like rust-analyzer's tidy
//! tests): the base imports no service, and no operation sees a request or response shape.

use std::path::{Path, PathBuf};

/// The base: what every service builds on. It must never import a service module.
const BASE: &[&str] = &[
    "lib.rs",
    "caller.rs",
    "ops.rs",
    "paging.rs",
    "runtime.rs",
    "writer.rs",
    "error.rs",
    "agents.rs",
    "auth.rs",
    "state",
];
const SERVICES: &[&str] = &["ecs", "ecr", "elb", "ec2", "secrets", "events"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("readable source dir") {
            rust_files(&entry.expect("dir entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The file's text without comments, so that docs may name anything.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source file");
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_base_imports_no_service() {
    let mut files = Vec::new();
    for b in BASE {
        rust_files(&src().join(b), &mut files);
    }
    assert!(files.len() >= BASE.len(), "the base's files moved: {files:?}");
    let mut offences = Vec::new();
    for f in &files {
        let text = code(f);
        for s in SERVICES {
            if text.contains(&format!("crate::{s}::")) || text.contains(&format!("crate::{s}}}")) {
                offences.push(format!("{} uses crate::{s}", f.display()));
            }
        }
    }
    assert!(offences.is_empty(), "the base imports a service:\n{}", offences.join("\n"));
}

#[test]
fn no_operation_sees_a_request_or_response_shape() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut offences = Vec::new();
    for f in &files {
        let text = code(f);
        // Every path into a generated shapes module (or an alias of one), with what it names.
        let mut prefixes = vec!["shapes::".to_string()];
        for (at, _) in text.match_indices("shapes as ") {
            let alias: String = text[at + 10..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            prefixes.push(format!("{alias}::"));
        }
        let paths = prefixes.iter().flat_map(|p| text.match_indices(p.as_str()));
        for (at, _) in paths {
            let rest = &text[at..];
            let end = rest.find([';', '(', '=']).unwrap_or(rest.len());
            let named = &rest[..end];
            let shape = named
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .find(|w| w.ends_with("Request") || w.ends_with("Response"));
            if let Some(shape) = shape {
                offences.push(format!("{} names {shape}", f.display()));
            }
        }
    }
    assert!(offences.is_empty(), "wire shapes in the control plane:\n{}", offences.join("\n"));
}
