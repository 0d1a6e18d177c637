//! Which operating system an image holds, from `os-release`, and the OSV ecosystem its
//! packages belong to (`Debian:12`, `Ubuntu:22.04`, `Alpine:v3.19`).

use std::fmt;

use crate::version::Scheme;

/// The fields of `os-release(5)` a scan uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: Option<String>,
    pub version_codename: Option<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Parses `KEY=value` lines; values may be quoted. Lines that are not assignments are
    /// ignored, as systemd does.
    pub fn parse(text: &str) -> OsRelease {
        let mut r = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else { continue };
            let value = unquote(value.trim());
            let value = (!value.is_empty()).then_some(value);
            match key.trim() {
                "ID" => r.id = value.unwrap_or_default().to_ascii_lowercase(),
                "VERSION_ID" => r.version_id = value,
                "VERSION_CODENAME" => r.version_codename = value,
                "PRETTY_NAME" => r.pretty_name = value,
                _ => {}
            }
        }
        r
    }
}

fn unquote(v: &str) -> String {
    let inner = ['"', '\''].iter().find_map(|q| v.strip_prefix(*q).and_then(|x| x.strip_suffix(*q))).unwrap_or(v);
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// A distribution whose package database the scanner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distro {
    Debian,
    Ubuntu,
    Alpine,
}

impl Distro {
    /// The name OSV gives the distribution's ecosystem.
    pub fn ecosystem_name(self) -> &'static str {
        match self {
            Distro::Debian => "Debian",
            Distro::Ubuntu => "Ubuntu",
            Distro::Alpine => "Alpine",
        }
    }

    /// How the distribution's package versions are ordered.
    pub fn scheme(self) -> Scheme {
        match self {
            Distro::Debian | Distro::Ubuntu => Scheme::Dpkg,
            Distro::Alpine => Scheme::Apk,
        }
    }

    pub fn from_ecosystem_name(name: &str) -> Option<Distro> {
        [Distro::Debian, Distro::Ubuntu, Distro::Alpine].into_iter().find(|d| d.ecosystem_name() == name)
    }
}

/// An image's operating system: a supported distribution and its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Os {
    pub distro: Distro,
    /// The release as OSV names it (`12`, `22.04`, `v3.19`); `None` for a rolling release
    /// such as Debian sid, which only release-less advisories match.
    pub release: Option<String>,
    /// How the image describes itself, for messages.
    pub pretty_name: String,
}

/// Why an image's operating system cannot be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the operating system '{0}' is not supported; Berth scans Debian, Ubuntu and Alpine Linux images")]
pub struct UnsupportedOs(pub String);

impl Os {
    pub fn identify(release: &OsRelease) -> Result<Os, UnsupportedOs> {
        let distro = match release.id.as_str() {
            "debian" => Distro::Debian,
            "ubuntu" => Distro::Ubuntu,
            "alpine" => Distro::Alpine,
            other => return Err(UnsupportedOs(release.pretty_name.clone().unwrap_or_else(|| other.to_owned()))),
        };
        let version = release.version_id.as_deref();
        let release_name = match distro {
            // Debian's advisories are per major release ("12"), whatever the point release.
            Distro::Debian => version.and_then(|v| v.split('.').next()).map(str::to_owned),
            Distro::Ubuntu => version.map(str::to_owned),
            Distro::Alpine => version.and_then(|v| {
                let mut parts = v.split(['.', '_']);
                let (major, minor) = (parts.next()?, parts.next()?);
                Some(format!("v{major}.{minor}"))
            }),
        };
        let pretty_name = release.pretty_name.clone().unwrap_or_else(|| {
            format!("{} {}", distro.ecosystem_name(), release_name.as_deref().unwrap_or("(rolling)"))
        });
        Ok(Os { distro, release: release_name, pretty_name })
    }

    pub fn ecosystem(&self) -> Ecosystem {
        Ecosystem { name: self.distro.ecosystem_name().to_owned(), release: self.release.clone() }
    }
}

/// An OSV ecosystem: a name and, for distributions, an optional release after a colon.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Ecosystem {
    pub name: String,
    pub release: Option<String>,
}

impl Ecosystem {
    pub fn parse(s: &str) -> Ecosystem {
        match s.split_once(':') {
            Some((name, release)) if !release.is_empty() => {
                Ecosystem { name: name.to_owned(), release: Some(release.to_owned()) }
            }
            _ => Ecosystem { name: s.trim_end_matches(':').to_owned(), release: None },
        }
    }

    /// Whether an advisory for `self` applies to an image of ecosystem `image`. An advisory
    /// without a release applies to every release; Ubuntu's `22.04:LTS` is release `22.04`.
    pub fn covers(&self, image: &Ecosystem) -> bool {
        if self.name != image.name {
            return false;
        }
        match (&self.release, &image.release) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a == b || a.strip_suffix(":LTS") == Some(b.as_str()),
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.release {
            Some(r) => write!(f, "{}:{r}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_supported_distributions() {
        let cases = [
            (
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
                Some("Debian:12"),
            ),
            ("ID=debian\nVERSION_ID=\"11.9\"\n", Some("Debian:11")),
            ("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\n", Some("Debian")),
            ("ID='ubuntu'\nVERSION_ID=\"22.04\"\n", Some("Ubuntu:22.04")),
            ("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n", Some("Alpine:v3.19")),
            ("ID=alpine\nVERSION_ID=3.20.0_alpha20240329\n", Some("Alpine:v3.20")),
            ("ID=fedora\nVERSION_ID=39\n", None),
            ("# nothing\n", None),
        ];
        for (text, want) in cases {
            let got = Os::identify(&OsRelease::parse(text)).ok().map(|os| os.ecosystem().to_string());
            assert_eq!(got.as_deref(), want, "{text}");
        }
    }

    #[test]
    fn advisory_ecosystems_cover_releases() {
        let cases = [
            ("Debian:12", "Debian:12", true),
            ("Debian", "Debian:12", true),
            ("Debian:11", "Debian:12", false),
            ("Debian:12", "Debian", false),
            ("Alpine:v3.19", "Alpine:v3.19", true),
            ("Alpine:v3.18", "Alpine:v3.19", false),
            ("Ubuntu:22.04:LTS", "Ubuntu:22.04", true),
            ("Ubuntu:Pro:18.04:LTS", "Ubuntu:18.04", false),
            ("Alpine:v3.19", "Debian:12", false),
        ];
        for (advisory, image, want) in cases {
            assert_eq!(Ecosystem::parse(advisory).covers(&Ecosystem::parse(image)), want, "{advisory} on {image}");
        }
    }
}
