//! The apk database, `lib/apk/db/installed`: one paragraph of `X:value` lines per package.

use crate::InstalledPackage;

pub const INSTALLED: &str = "lib/apk/db/installed";

/// The installed packages: `P:` name, `V:` version, `o:` origin (the source package that
/// Alpine's advisories name). Paragraphs without a name or version are skipped.
pub fn parse_installed(text: &str) -> Vec<InstalledPackage> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut name, mut version, mut origin) = (None, None, None);
        for line in block.lines() {
            match line.split_once(':') {
                Some(("P", v)) => name = Some(v.trim()),
                Some(("V", v)) => version = Some(v.trim()),
                Some(("o", v)) => origin = Some(v.trim()),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name.filter(|n| !n.is_empty()), version.filter(|v| !v.is_empty())) else {
            continue;
        };
        out.push(InstalledPackage {
            source: origin.filter(|o| !o.is_empty()).unwrap_or(name).to_owned(),
            source_version: version.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_matched_by_origin() {
        let text = "\
C:Q1abc=
P:libcrypto3
V:3.1.4-r5
A:x86_64
o:openssl
T:Crypto library from openssl

P:busybox
V:1.36.1-r15
o:busybox

P:musl
V:1.2.4_git20230717-r4

P:noversion
";
        let got: Vec<(String, String, String)> =
            parse_installed(text).into_iter().map(|p| (p.name, p.source, p.source_version)).collect();
        let want = [
            ("libcrypto3", "openssl", "3.1.4-r5"),
            ("busybox", "busybox", "1.36.1-r15"),
            ("musl", "musl", "1.2.4_git20230717-r4"),
        ];
        assert_eq!(got, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
    }
}
