//! Berth's image vulnerability scanner, as ECR's basic scanning does it: flatten an
//! image's layers, identify the operating system, read its package database, and match the
//! installed packages against an offline database of OSV advisories.
//!
//! Layering: [`scan`] drives [`layers`] (tar streams to the few files it needs), [`os`],
//! [`dpkg`] and [`apk`] (parsers of those files) and [`db`] (the imported advisories,
//! built from [`osv`] records, ordered with [`version`]). Everything here is synchronous
//! and pure apart from reading the readers it is given and the database directory; it
//! knows nothing of ECR's wire format or the control plane.

pub mod apk;
pub mod db;
pub mod dpkg;
pub mod layers;
pub mod os;
pub mod osv;
pub mod scan;
pub mod version;

/// A package installed in an image, with the name and version advisories use for it: the
/// source package for dpkg, the origin for apk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstalledPackage {
    /// The source package (dpkg's `Source`, apk's origin `o:`), or the package itself.
    pub source: String,
    /// The source package's version when the database records it, else the package's.
    pub source_version: String,
    /// The binary package's name and version as installed.
    pub name: String,
    pub version: String,
}
