//! The dpkg database: `var/lib/dpkg/status`, and the one-package files of
//! `var/lib/dpkg/status.d/` that distroless images carry instead.

use crate::InstalledPackage;

pub const STATUS: &str = "var/lib/dpkg/status";
pub const STATUS_DIR: &str = "var/lib/dpkg/status.d";

/// The installed packages of a status file (a sequence of RFC 822-style paragraphs).
/// Paragraphs without a package name or version are skipped; a `Status` other than
/// `installed` (removed packages whose config files remain, half-installed ones) too.
/// Files in `status.d` have no `Status`; they describe installed packages.
pub fn parse_status(text: &str) -> Vec<InstalledPackage> {
    paragraphs(text).filter_map(|p| package(&p)).collect()
}

/// Whether `name`, a file in `status.d`, is a package paragraph rather than a checksum list.
pub fn is_status_d_entry(name: &str) -> bool {
    !name.ends_with(".md5sums") && !name.starts_with('.')
}

fn package(fields: &[(String, String)]) -> Option<InstalledPackage> {
    let get = |k: &str| fields.iter().find(|(f, _)| f.eq_ignore_ascii_case(k)).map(|(_, v)| v.trim());
    let name = get("Package").filter(|n| !n.is_empty())?;
    let version = get("Version").filter(|v| !v.is_empty())?;
    if let Some(status) = get("Status") {
        // "want flag status", e.g. "install ok installed" or "deinstall ok config-files".
        if status.split_whitespace().nth(2) != Some("installed") {
            return None;
        }
    }
    // "Source: name" or "Source: name (version)" when the source version differs.
    let (source, source_version) = match get("Source").filter(|s| !s.is_empty()) {
        Some(s) => match s.split_once('(') {
            Some((n, v)) => (n.trim(), v.trim_end_matches(')').trim()),
            None => (s, version),
        },
        None => (name, version),
    };
    Some(InstalledPackage {
        source: source.to_owned(),
        source_version: source_version.to_owned(),
        name: name.to_owned(),
        version: version.to_owned(),
    })
}

/// Splits `Field: value` paragraphs; continuation lines (starting with a space or tab)
/// belong to the field before them.
fn paragraphs(text: &str) -> impl Iterator<Item = Vec<(String, String)>> + '_ {
    text.split("\n\n").map(|block| {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    v.push('\n');
                    v.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        fields
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_FIXTURE: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: libssl3
Status: install ok installed
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2+b1
Description: Secure Sockets Layer toolkit

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0-1

Package: bash
Status: install ok installed
Version: 5.2.15-2+b2

Package: broken
Status: install ok installed
";

    #[test]
    fn status_paragraphs_become_installed_packages() {
        let got: Vec<(String, String, String, String)> =
            parse_status(STATUS_FIXTURE).into_iter().map(|p| (p.name, p.version, p.source, p.source_version)).collect();
        let want = [
            ("libc6", "2.36-9+deb12u4", "glibc", "2.36-9+deb12u4"),
            ("libssl3", "3.0.11-1~deb12u2+b1", "openssl", "3.0.11-1~deb12u2"),
            ("bash", "5.2.15-2+b2", "bash", "5.2.15-2+b2"),
        ];
        let want: Vec<(String, String, String, String)> =
            want.iter().map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn status_d_files_have_no_status_field() {
        let got = parse_status("Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source, "tzdata");
        assert!(is_status_d_entry("tzdata"));
        assert!(!is_status_d_entry("tzdata.md5sums"));
    }
}
