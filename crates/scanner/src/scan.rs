//! One image's scan: its layers give an inventory (operating system and installed
//! packages), which the database turns into findings.

use std::io::Read;

use crate::db::Database;
use crate::layers::{Filesystem, LayerError};
use crate::os::{Distro, Os, OsRelease};
use crate::osv::{Cvss3, Severity};
use crate::{apk, dpkg, InstalledPackage};

const OS_RELEASE: &str = "etc/os-release";
const OS_RELEASE_FALLBACK: &str = "usr/lib/os-release";

/// Whether a scan needs the file at `path` (relative to the image's root).
pub fn wanted(path: &str) -> bool {
    matches!(path, OS_RELEASE | OS_RELEASE_FALLBACK | dpkg::STATUS | apk::INSTALLED)
        || path.strip_prefix(dpkg::STATUS_DIR).and_then(|p| p.strip_prefix('/')).is_some_and(|name| !name.contains('/'))
}

/// What an image holds, as far as a scan is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inventory {
    /// The image cannot be scanned; the reason is for the user.
    Unsupported(String),
    Packages {
        os: Os,
        packages: Vec<InstalledPackage>,
    },
}

/// A vulnerability of an installed package.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The CVE (or advisory id) the finding is about.
    pub name: String,
    pub description: String,
    pub uri: Option<String>,
    pub severity: Severity,
    /// The source package the advisory names, and its installed version.
    pub package_name: String,
    pub package_version: String,
    pub cvss3: Option<Cvss3>,
}

/// Reads the layers (lowest first) and takes the inventory.
pub fn inventory<R: Read>(layers: impl IntoIterator<Item = R>) -> Result<Inventory, LayerError> {
    let fs = Filesystem::flatten(layers, wanted)?;
    Ok(inventory_of(&fs))
}

pub fn inventory_of(fs: &Filesystem) -> Inventory {
    let has_dpkg = fs.read(dpkg::STATUS).is_some() || !fs.files_in(dpkg::STATUS_DIR).is_empty();
    let has_apk = fs.read(apk::INSTALLED).is_some();
    if !has_dpkg && !has_apk {
        return Inventory::Unsupported(
            "The image has no package database that Berth reads (dpkg's var/lib/dpkg/status or apk's lib/apk/db/installed); images built FROM scratch cannot be scanned.".into(),
        );
    }
    let Some(text) = fs.read(OS_RELEASE).or_else(|| fs.read(OS_RELEASE_FALLBACK)) else {
        return Inventory::Unsupported(
            "The image has a package database but no etc/os-release, so its operating system is unknown.".into(),
        );
    };
    let os = match Os::identify(&OsRelease::parse(&String::from_utf8_lossy(text))) {
        Ok(os) => os,
        Err(e) => return Inventory::Unsupported(format!("{}.", capitalise(&e.to_string()))),
    };
    let packages = match os.distro {
        Distro::Debian | Distro::Ubuntu if has_dpkg => {
            let mut packages: Vec<InstalledPackage> =
                fs.read(dpkg::STATUS).map(|b| dpkg::parse_status(&String::from_utf8_lossy(b))).unwrap_or_default();
            for (name, bytes) in fs.files_in(dpkg::STATUS_DIR) {
                if dpkg::is_status_d_entry(&name) {
                    packages.extend(dpkg::parse_status(&String::from_utf8_lossy(bytes)));
                }
            }
            packages
        }
        Distro::Alpine if has_apk => {
            fs.read(apk::INSTALLED).map(|b| apk::parse_installed(&String::from_utf8_lossy(b))).unwrap_or_default()
        }
        _ => {
            return Inventory::Unsupported(format!(
                "The image is {} but has no package database of its package manager.",
                os.pretty_name
            ))
        }
    };
    let mut packages = packages;
    packages.sort();
    packages.dedup();
    Inventory::Packages { os, packages }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Unsupported(String),
    Complete { os: Os, packages: usize, findings: Vec<Finding> },
}

/// Matches an inventory against the database.
pub fn assess(inventory: Inventory, db: &Database) -> Outcome {
    match inventory {
        Inventory::Unsupported(reason) => Outcome::Unsupported(reason),
        Inventory::Packages { os, packages } => {
            let findings = db.findings(&os, &packages);
            Outcome::Complete { os, packages: packages.len(), findings }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::tests::{gzip, tar, E};
    use crate::osv::Advisory;

    const DEBIAN_OS: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
    const DPKG_STATUS: &str = "Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2+b1\n\nPackage: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n";

    fn db() -> Database {
        let records = serde_json::json!([
            {"id": "DSA-0001-1", "aliases": ["CVE-2099-1000"], "details": "openssl flaw",
             "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
             "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}]}]},
            {"id": "CVE-2099-1001", "details": "zlib flaw fixed long ago",
             "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.2.11.dfsg-1"}]}]}]},
            {"id": "ALPINE-CVE-2099-2000", "upstream": ["CVE-2099-2000"], "database_specific": {"severity": "LOW"},
             "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "busybox"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.36.1-r20"}]}]}]}
        ]);
        let advisories = serde_json::from_value::<Vec<crate::osv::Record>>(records)
            .unwrap()
            .into_iter()
            .map(|r| Advisory::from_record(r).unwrap())
            .collect();
        Database::new(0, advisories)
    }

    fn outcome(layers: &[Vec<u8>]) -> Outcome {
        assess(inventory(layers.iter().map(|l| &l[..])).unwrap(), &db())
    }

    fn summary(o: &Outcome) -> Vec<(String, Severity, String, String)> {
        match o {
            Outcome::Complete { findings, .. } => findings
                .iter()
                .map(|f| (f.name.clone(), f.severity, f.package_name.clone(), f.package_version.clone()))
                .collect(),
            Outcome::Unsupported(r) => panic!("unsupported: {r}"),
        }
    }

    #[test]
    fn a_debian_image_with_a_vulnerable_openssl() {
        let base = gzip(&tar(&[
            E::File("usr/lib/os-release", DEBIAN_OS),
            E::Link("etc/os-release", "../usr/lib/os-release"),
            E::File("var/lib/dpkg/status", DPKG_STATUS),
        ]));
        let o = outcome(&[base]);
        assert_eq!(
            summary(&o),
            vec![("CVE-2099-1000".into(), Severity::Critical, "openssl".into(), "3.0.11-1~deb12u2".into())]
        );
    }

    #[test]
    fn a_later_layer_removing_the_database_makes_the_image_unsupported() {
        let base = tar(&[E::File("etc/os-release", DEBIAN_OS), E::File("var/lib/dpkg/status", DPKG_STATUS)]);
        let wipe = tar(&[E::File("var/.wh.lib", "")]);
        assert!(matches!(outcome(&[base, wipe]), Outcome::Unsupported(_)));
    }

    #[test]
    fn distroless_status_d_files_are_read() {
        let base = tar(&[
            E::File("etc/os-release", DEBIAN_OS),
            E::File("var/lib/dpkg/status.d/libssl3", "Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n"),
            E::File("var/lib/dpkg/status.d/libssl3.md5sums", "abc  usr/lib/libssl.so.3\n"),
        ]);
        assert_eq!(summary(&outcome(&[base])).len(), 1);
    }

    #[test]
    fn an_alpine_image_matches_by_origin() {
        let base = tar(&[
            E::File("etc/os-release", "ID=alpine\nVERSION_ID=3.19.1\n"),
            E::File("lib/apk/db/installed", "P:busybox-binsh\nV:1.36.1-r15\no:busybox\n\nP:musl\nV:1.2.4-r2\no:musl\n"),
        ]);
        assert_eq!(
            summary(&outcome(&[base])),
            vec![("CVE-2099-2000".into(), Severity::Low, "busybox".into(), "1.36.1-r15".into())]
        );
    }

    #[test]
    fn images_without_a_readable_system_are_unsupported() {
        let cases = [
            ("scratch", tar(&[E::File("simplehttp", "ELF")])),
            ("no os-release", tar(&[E::File("var/lib/dpkg/status", DPKG_STATUS)])),
            ("other os", tar(&[E::File("etc/os-release", "ID=fedora\n"), E::File("var/lib/dpkg/status", "")])),
            (
                "wrong manager",
                tar(&[E::File("etc/os-release", "ID=alpine\nVERSION_ID=3.19\n"), E::File("var/lib/dpkg/status", "")]),
            ),
        ];
        for (name, layer) in cases {
            assert!(matches!(outcome(&[layer]), Outcome::Unsupported(_)), "{name}");
        }
    }

    #[test]
    fn wanted_paths() {
        for (p, want) in [
            ("etc/os-release", true),
            ("var/lib/dpkg/status", true),
            ("var/lib/dpkg/status.d/tzdata", true),
            ("var/lib/dpkg/status.d/x/y", false),
            ("var/lib/dpkg/status-old", false),
            ("lib/apk/db/installed", true),
            ("etc/passwd", false),
        ] {
            assert_eq!(wanted(p), want, "{p}");
        }
    }
}
