//! Version ordering as the package managers themselves define it: dpkg's (epoch, upstream
//! version and revision, `~` sorting before everything) and apk's (dotted numbers, a
//! letter, `_alpha`.. `_p` suffixes, `-rN` revisions). Advisories name fixed versions in
//! these schemes, so comparing any other way would report fixed packages as vulnerable or
//! the reverse.

use std::cmp::Ordering;
use std::fmt;

/// Which package manager's rules order a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Scheme {
    Dpkg,
    Apk,
}

/// A version string that is valid in its scheme, ordered by that scheme's rules.
#[derive(Debug, Clone)]
pub enum Version {
    Dpkg(DpkgVersion),
    Apk(ApkVersion),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{version}' is not a valid {scheme:?} version: {reason}")]
pub struct InvalidVersion {
    pub scheme: Scheme,
    pub version: String,
    pub reason: &'static str,
}

impl Scheme {
    pub fn parse(self, s: &str) -> Result<Version, InvalidVersion> {
        match self {
            Scheme::Dpkg => DpkgVersion::parse(s).map(Version::Dpkg),
            Scheme::Apk => ApkVersion::parse(s).map(Version::Apk),
        }
    }
}

impl Version {
    /// Orders two versions of the same scheme; versions of different schemes are never
    /// compared (`None`).
    pub fn compare(&self, other: &Version) -> Option<Ordering> {
        match (self, other) {
            (Version::Dpkg(a), Version::Dpkg(b)) => Some(a.cmp(b)),
            (Version::Apk(a), Version::Apk(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Dpkg(v) => f.write_str(&v.text),
            Version::Apk(v) => f.write_str(&v.text),
        }
    }
}

/// `[epoch:]upstream[-revision]`, as in deb-version(7).
#[derive(Debug, Clone)]
pub struct DpkgVersion {
    text: String,
    epoch: u64,
    upstream: String,
    revision: String,
}

impl DpkgVersion {
    pub fn parse(s: &str) -> Result<DpkgVersion, InvalidVersion> {
        let bad = |reason| InvalidVersion { scheme: Scheme::Dpkg, version: s.to_owned(), reason };
        let text = s.trim();
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(bad("it contains spaces"));
        }
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the epoch is not a number"));
                }
                (e.parse::<u64>().map_err(|_| bad("the epoch is too large"))?, rest)
            }
            None => (0, text),
        };
        // The revision is whatever follows the last hyphen; without one there is none.
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(bad("the upstream version is empty"));
        }
        let upstream_ok = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(upstream_ok) {
            return Err(bad("the upstream version has characters other than letters, digits and . + ~ - :"));
        }
        if !revision.chars().all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c)) {
            return Err(bad("the revision has characters other than letters, digits and . + ~"));
        }
        Ok(DpkgVersion { text: text.to_owned(), epoch, upstream: upstream.to_owned(), revision: revision.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Ord for DpkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_dpkg_part(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| compare_dpkg_part(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for DpkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Equal by dpkg's rules ("1.0" and "1.00" are the same version), not by spelling.
impl PartialEq for DpkgVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DpkgVersion {}

/// The weight of one non-digit character in dpkg's ordering: `~` before the end of the
/// string, the end before letters, letters before all other characters.
fn dpkg_weight(c: Option<&u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
        Some(c) => i32::from(*c) + 256,
    }
}

/// Compares an upstream version or a revision: alternating runs of non-digits (compared
/// character by character with [`dpkg_weight`]) and digits (compared as numbers).
fn compare_dpkg_part(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (wa, wb) = (dpkg_weight(a.get(i)), dpkg_weight(b.get(j)));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        // Without leading zeros, the longer number is larger; of equal length, the first
        // differing digit decides.
        let mut first_difference = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_difference == Ordering::Equal {
                first_difference = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

/// An Alpine package version (`1.2.3b_rc2_p1~1a2b-r4`), as apk orders them.
#[derive(Debug, Clone)]
pub struct ApkVersion {
    text: String,
    tokens: Vec<ApkToken>,
}

/// The parts of an apk version, in the order they may appear. Where two versions agree up
/// to a point and then go on with parts of different kinds, the one going on with the
/// later kind is the older version (a pre-release suffix excepted): `1.0` < `1.0.1` but
/// `1.0-r1` < `1.0_p1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ApkKind {
    First,
    /// A component after a dot.
    Dotted,
    Letter,
    Suffix,
    SuffixNumber,
    CommitHash,
    Revision,
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ApkToken {
    kind: ApkKind,
    /// The number of digits, the letter, or the suffix's rank.
    value: i128,
    /// The digits or the hash as written, for the parts compared as text.
    text: String,
}

/// Suffixes that mark a pre-release rank below the release itself; the others above it.
const APK_PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const APK_POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

impl ApkVersion {
    pub fn parse(s: &str) -> Result<ApkVersion, InvalidVersion> {
        let bad = |reason| InvalidVersion { scheme: Scheme::Apk, version: s.to_owned(), reason };
        let text = s.trim();
        let mut rest = text;
        let mut tokens: Vec<ApkToken> = Vec::new();
        let first = take_while(&mut rest, |c| c.is_ascii_digit());
        if first.is_empty() {
            return Err(bad("it does not start with a digit"));
        }
        tokens.push(ApkToken { kind: ApkKind::First, value: digits_value(first), text: first.to_owned() });
        while let Some(c) = rest.chars().next() {
            let prev = tokens.last().map_or(ApkKind::First, |t| t.kind);
            let token = match c {
                'a'..='z' if prev <= ApkKind::Dotted => {
                    rest = &rest[1..];
                    ApkToken { kind: ApkKind::Letter, value: i128::from(c as u8), text: String::new() }
                }
                '.' if prev <= ApkKind::Dotted => {
                    rest = &rest[1..];
                    let d = take_while(&mut rest, |c| c.is_ascii_digit());
                    if d.is_empty() {
                        return Err(bad("a dot is not followed by digits"));
                    }
                    ApkToken { kind: ApkKind::Dotted, value: digits_value(d), text: d.to_owned() }
                }
                '0'..='9' if prev == ApkKind::Suffix => {
                    let d = take_while(&mut rest, |c| c.is_ascii_digit());
                    ApkToken { kind: ApkKind::SuffixNumber, value: digits_value(d), text: d.to_owned() }
                }
                '_' if prev <= ApkKind::SuffixNumber => {
                    rest = &rest[1..];
                    let name = take_while(&mut rest, |c| c.is_ascii_lowercase());
                    let rank = if let Some(n) = APK_PRE_SUFFIXES.iter().position(|p| *p == name) {
                        n as i128 - APK_PRE_SUFFIXES.len() as i128
                    } else if let Some(n) = APK_POST_SUFFIXES.iter().position(|p| *p == name) {
                        n as i128 + 1
                    } else {
                        return Err(bad("a suffix is not one of _alpha _beta _pre _rc _cvs _svn _git _hg _p"));
                    };
                    ApkToken { kind: ApkKind::Suffix, value: rank, text: String::new() }
                }
                '~' if prev < ApkKind::CommitHash => {
                    rest = &rest[1..];
                    let h = take_while(&mut rest, |c| c.is_ascii_hexdigit());
                    if h.is_empty() {
                        return Err(bad("a ~ is not followed by a commit hash"));
                    }
                    ApkToken { kind: ApkKind::CommitHash, value: 0, text: h.to_owned() }
                }
                '-' if prev < ApkKind::Revision && rest.starts_with("-r") => {
                    rest = &rest[2..];
                    let d = take_while(&mut rest, |c| c.is_ascii_digit());
                    if d.is_empty() {
                        return Err(bad("-r is not followed by a number"));
                    }
                    ApkToken { kind: ApkKind::Revision, value: digits_value(d), text: d.to_owned() }
                }
                _ => return Err(bad("its parts are not digit{.digit}{letter}{_suffix{N}}{~hash}{-rN}")),
            };
            tokens.push(token);
        }
        Ok(ApkVersion { text: text.to_owned(), tokens })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn take_while<'a>(rest: &mut &'a str, f: impl Fn(char) -> bool) -> &'a str {
    let n = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
    let (taken, left) = rest.split_at(n);
    *rest = left;
    taken
}

fn digits_value(d: &str) -> i128 {
    d.bytes().fold(0i128, |v, b| v.saturating_mul(10).saturating_add(i128::from(b - b'0')))
}

impl ApkToken {
    fn compare(&self, other: &ApkToken) -> Ordering {
        match self.kind {
            // A dotted component with a leading zero compares as text, so 1.01 < 1.1.
            ApkKind::Dotted if self.text.starts_with('0') || other.text.starts_with('0') => self.text.cmp(&other.text),
            ApkKind::CommitHash => self.text.cmp(&other.text),
            _ => self.value.cmp(&other.value),
        }
    }
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let end = ApkToken { kind: ApkKind::End, value: 0, text: String::new() };
        let mut i = 0;
        loop {
            let a = self.tokens.get(i).unwrap_or(&end);
            let b = other.tokens.get(i).unwrap_or(&end);
            if a.kind != b.kind {
                // One version goes on where the other does something else: more is newer,
                // unless the more is a pre-release suffix.
                if a.kind == ApkKind::Suffix && a.value < 0 {
                    return Ordering::Less;
                }
                if b.kind == ApkKind::Suffix && b.value < 0 {
                    return Ordering::Greater;
                }
                return b.kind.cmp(&a.kind);
            }
            if a.kind == ApkKind::End {
                return Ordering::Equal;
            }
            let c = a.compare(b);
            if c != Ordering::Equal {
                return c;
            }
            i += 1;
        }
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ApkVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ApkVersion {}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    fn check(scheme: Scheme, cases: &[(&str, &str, Ordering)]) {
        for &(a, b, want) in cases {
            let va = scheme.parse(a).unwrap_or_else(|e| panic!("{e}"));
            let vb = scheme.parse(b).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(va.compare(&vb), Some(want), "{a} vs {b}");
            assert_eq!(vb.compare(&va), Some(want.reverse()), "{b} vs {a}");
        }
    }

    #[test]
    fn dpkg_ordering() {
        check(
            Scheme::Dpkg,
            &[
                ("1.0", "1.0", Equal),
                ("1.0", "1.00", Equal),
                ("1.0", "1.0-0", Equal),
                ("1.0", "1.1", Less),
                ("1.9", "1.10", Less),
                ("1.0~rc1", "1.0", Less),
                ("1.0~~", "1.0~", Less),
                ("1.0~", "1.0", Less),
                ("1.0", "1.0a", Less),
                ("1.0a", "1.0+", Less),
                ("1.0+", "1.0.", Less),
                ("1.0-1", "1.0-2", Less),
                ("1.0-1", "1.0-1+b1", Less),
                ("1.0-1+deb12u1", "1.0-1+deb12u2", Less),
                ("1.0-1+deb11u3", "1.0-1+deb12u1", Less),
                ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
                ("1:0.9", "2.0", Greater),
                ("1:1.0", "1:1.0", Equal),
                ("0:1.0", "1.0", Equal),
                ("1.2.3-4", "1.2.3-10", Less),
                ("3.0.11-1~deb12u2", "3.0.11-1", Less),
                ("1.2.3-a", "1.2.3-1", Greater),
                ("7.88.1-10+deb12u5", "7.88.1-10+deb12u8", Less),
                ("1.0.0", "1.0", Greater),
            ],
        );
    }

    #[test]
    fn apk_ordering() {
        check(
            Scheme::Apk,
            &[
                ("1.0", "1.0", Equal),
                ("1.0", "1.1", Less),
                ("1.9", "1.10", Less),
                ("1.0", "1.0.1", Less),
                ("1.0-r0", "1.0-r1", Less),
                ("1.0", "1.0-r0", Less),
                ("1.0-r9", "1.0-r10", Less),
                ("1.0_rc1", "1.0", Less),
                ("1.0_alpha", "1.0_beta", Less),
                ("1.0_beta2", "1.0_pre1", Less),
                ("1.0_pre1", "1.0_rc1", Less),
                ("1.0_rc1", "1.0_rc2", Less),
                ("1.0", "1.0_p1", Less),
                ("1.0_p1", "1.0_p2", Less),
                ("1.0-r5", "1.0_p1", Less),
                ("1.0a", "1.0b", Less),
                ("1.0", "1.0a", Less),
                ("1.0a", "1.0.1", Less),
                ("1.01", "1.1", Less),
                ("1.001", "1.01", Less),
                ("1.05", "1.0", Greater),
                ("3.1.4-r5", "3.1.4-r6", Less),
                ("1.36.1-r15", "1.36.1-r20", Less),
                ("3.3.0_git20230101", "3.3.0", Greater),
                ("2.0_rc1-r1", "2.0-r0", Less),
                ("20230101", "20221231", Greater),
                ("1.0~1a2b-r0", "1.0~1a2c-r0", Less),
                ("1.0~1a2b", "1.0-r1", Greater),
            ],
        );
    }

    #[test]
    fn invalid_versions_are_refused() {
        for v in ["", "1 0", "a:1.0", "1.0-$"] {
            assert!(DpkgVersion::parse(v).is_err(), "dpkg {v:?}");
        }
        for v in ["", "a1", "1.0_foo", "1.0-x", "1.0-r", "1.0-r1.2", "1..0", "1.0!", "1.0_rc1.2", "1.0a2", "1.0~"] {
            assert!(ApkVersion::parse(v).is_err(), "apk {v:?}");
        }
    }

    #[test]
    fn schemes_do_not_mix() {
        let d = Scheme::Dpkg.parse("1.0").unwrap();
        let a = Scheme::Apk.parse("1.0").unwrap();
        assert_eq!(d.compare(&a), None);
        assert_eq!(d.to_string(), "1.0");
    }
}
