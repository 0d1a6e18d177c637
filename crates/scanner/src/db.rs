//! The offline vulnerability database: OSV records imported into one file under a
//! directory (`<data-dir>/vulndb/advisories.json`), and its in-memory index by ecosystem
//! and package.
//!
//! Imports merge by record id (a record imported again replaces the older copy) unless
//! asked to replace everything. The file is written whole to a temporary name, fsynced,
//! and renamed over the old one, so a reader sees the old database or the new one, never
//! half of one; an import that fails writes nothing. [`VulnDb`] notices a newer file (a
//! rename gives it a new inode) on its next use, so a running server picks up an import
//! without a restart.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::os::{Distro, Ecosystem, Os};
use crate::osv::{Advisory, Matcher, Record, Skip};
use crate::scan::Finding;
use crate::InstalledPackage;

/// The database file inside the directory.
pub const FILE: &str = "advisories.json";
const LOCK: &str = "import.lock";
/// The stored format; a newer Berth's file is refused rather than misread.
const FORMAT: u32 = 1;
/// The largest single JSON file or zip entry an import reads (OSV records are small; a
/// JSON array of a whole ecosystem is large but far below this).
const MAX_INPUT_BYTES: u64 = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    format: u32,
    /// When the database last changed, in seconds since the epoch (ECR's
    /// `vulnerabilitySourceUpdatedAt`).
    updated_at: i64,
    advisories: Vec<Advisory>,
}

/// Why an import did not happen. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not OSV JSON (one record or an array of records): {reason}")]
    NotOsv { path: String, reason: String },
    #[error("{0} holds no OSV records (expected a .json file, a directory of them, or a .zip)")]
    Empty(PathBuf),
    #[error("the existing database cannot be read: {0}")]
    Existing(#[from] LoadError),
    #[error("cannot write the database in {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a Berth vulnerability database: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Whether an import adds to the database or starts it afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    Merge,
    Replace,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Records read from the input.
    pub read: usize,
    /// Records imported (new or replacing an older copy).
    pub imported: usize,
    /// Of those, how many replaced a record of the same id.
    pub replaced: usize,
    /// Records not imported, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Records in the database afterwards.
    pub total: usize,
}

/// Imports the OSV records at `source` (a JSON file with one record or an array, a
/// directory searched for `*.json`, or a zip of them) into the database in `dir`.
pub fn import(dir: &Path, source: &Path, mode: ImportMode, now: SystemTime) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut incoming: Vec<Advisory> = Vec::new();
    for_each_record(source, &mut |record| {
        report.read += 1;
        match Advisory::from_record(record) {
            Ok(a) => incoming.push(a),
            Err(skip) => *report.skipped.entry(skip_reason(&skip)).or_default() += 1,
        }
    })?;
    if report.read == 0 {
        return Err(ImportError::Empty(source.to_path_buf()));
    }

    let write_err = |source| ImportError::Write { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    // Two imports at once would each merge into the old file and one would lose the
    // other's records; the lock makes them take turns.
    let lock = File::create(dir.join(LOCK)).map_err(write_err)?;
    lock.lock().map_err(write_err)?;

    let mut by_id: BTreeMap<String, Advisory> = BTreeMap::new();
    if mode == ImportMode::Merge {
        if let Some(existing) = read_stored(dir)? {
            by_id.extend(existing.advisories.into_iter().map(|a| (a.id.clone(), a)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for a in incoming {
        let fresh = seen.insert(a.id.clone());
        if by_id.insert(a.id.clone(), a).is_some() && fresh {
            report.replaced += 1;
        }
        if fresh {
            report.imported += 1;
        }
    }
    report.total = by_id.len();
    let stored = Stored {
        format: FORMAT,
        updated_at: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
        advisories: by_id.into_values().collect(),
    };
    write_durably(dir, &stored).map_err(write_err)?;
    Ok(report)
}

fn skip_reason(skip: &Skip) -> String {
    match skip {
        // Versions differ per record; the summary groups them under one reason.
        Skip::BadVersion(_) => "a version that is not valid in its ecosystem".to_owned(),
        other => other.to_string(),
    }
}

/// Reads every record under `source`, in a stable order (sorted paths).
fn for_each_record(source: &Path, f: &mut dyn FnMut(Record)) -> Result<(), ImportError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Read { path, source }
    };
    let meta = std::fs::metadata(source).map_err(read_err(source))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        let mut pending = vec![source.to_path_buf()];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).map_err(read_err(&d))? {
                let path = entry.map_err(read_err(&d))?.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    files.push(path);
                }
            }
        }
        files.sort();
        for path in files {
            let file = File::open(&path).map_err(read_err(&path))?;
            records_of(&path.display().to_string(), file, f)?;
        }
        return Ok(());
    }
    let mut file = File::open(source).map_err(read_err(source))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(read_err(source))?;
    drop(file);
    if magic[..n] == *b"PK\x03\x04" {
        let file = File::open(source).map_err(read_err(source))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| ImportError::NotOsv {
            path: source.display().to_string(),
            reason: format!("not a readable zip: {e}"),
        })?;
        let unreadable = |label: &str, e: zip::result::ZipError| ImportError::NotOsv {
            path: label.to_owned(),
            reason: format!("unreadable entry: {e}"),
        };
        let mut entries: Vec<(String, usize)> = zip
            .file_names_raw()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .enumerate()
            .filter(|(_, n)| n.ends_with(".json"))
            .map(|(i, n)| (n, i))
            .collect();
        entries.sort();
        for (name, i) in entries {
            let label = format!("{}:{name}", source.display());
            let entry = zip.by_index(i).map_err(|e| unreadable(&label, e))?;
            records_of(&label, entry, f)?;
        }
        return Ok(());
    }
    let file = File::open(source).map_err(read_err(source))?;
    records_of(&source.display().to_string(), file, f)
}

/// The records of one JSON document: a record or an array of records.
fn records_of(label: &str, input: impl Read, f: &mut dyn FnMut(Record)) -> Result<(), ImportError> {
    let not_osv = |reason: String| ImportError::NotOsv { path: label.to_owned(), reason };
    let mut bytes = Vec::new();
    input.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes).map_err(|e| not_osv(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(not_osv(format!("larger than {MAX_INPUT_BYTES} bytes; split it into several files")));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| not_osv(e.to_string()))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        v @ serde_json::Value::Object(_) => vec![v],
        _ => return Err(not_osv("the document is neither a record nor an array".into())),
    };
    for (i, item) in items.into_iter().enumerate() {
        let record: Record = serde_json::from_value(item).map_err(|e| not_osv(format!("record {i}: {e}")))?;
        f(record);
    }
    Ok(())
}

fn read_stored(dir: &Path) -> Result<Option<Stored>, LoadError> {
    let path = dir.join(FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Io { path, source }),
    };
    let stored: Stored = serde_json::from_reader(BufReader::new(file))
        .map_err(|e| LoadError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    if stored.format != FORMAT {
        return Err(LoadError::Corrupt {
            path,
            reason: format!("format {} is not {FORMAT} (written by another Berth version?)", stored.format),
        });
    }
    Ok(Some(stored))
}

/// Writes to a temporary file, fsyncs it, renames it over the database and fsyncs the
/// directory, so that after a crash the database is the old one or the new one.
fn write_durably(dir: &Path, stored: &Stored) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer(&mut out, stored).map_err(io::Error::other)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        drop(out);
        std::fs::rename(&tmp, dir.join(FILE))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An advisory's affected package, ready to match.
#[derive(Debug)]
struct Entry {
    advisory: usize,
    ecosystem: Ecosystem,
    matcher: Matcher,
}

/// A loaded database with its index by (ecosystem name, package).
#[derive(Debug)]
pub struct Database {
    updated_at: i64,
    advisories: Vec<Advisory>,
    index: HashMap<(String, String), Vec<Entry>>,
}

impl Database {
    /// Loads the database in `dir`; `None` when nothing has been imported yet.
    pub fn load(dir: &Path) -> Result<Option<Database>, LoadError> {
        Ok(read_stored(dir)?.map(|s| Database::new(s.updated_at, s.advisories)))
    }

    pub fn new(updated_at: i64, advisories: Vec<Advisory>) -> Database {
        let mut index: HashMap<(String, String), Vec<Entry>> = HashMap::new();
        for (i, a) in advisories.iter().enumerate() {
            for p in &a.affected {
                let Some(distro) = Distro::from_ecosystem_name(&p.ecosystem.name) else { continue };
                index.entry((p.ecosystem.name.clone(), p.package.clone())).or_default().push(Entry {
                    advisory: i,
                    ecosystem: p.ecosystem.clone(),
                    matcher: Matcher::new(p, distro.scheme()),
                });
            }
        }
        Database { updated_at, advisories, index }
    }

    /// When the database last changed, in seconds since the epoch.
    pub fn updated_at(&self) -> i64 {
        self.updated_at
    }

    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The findings for `packages` of an image running `os`: one per advisory name and
    /// source package (several binary packages of one source are one finding), most
    /// severe first.
    pub fn findings(&self, os: &Os, packages: &[InstalledPackage]) -> Vec<Finding> {
        let scheme = os.distro.scheme();
        let image = os.ecosystem();
        let mut found: BTreeMap<(String, String), Finding> = BTreeMap::new();
        for p in packages {
            let Some(entries) = self.index.get(&(image.name.clone(), p.source.clone())) else { continue };
            // A version the package manager itself would not accept cannot be ordered.
            let Ok(installed) = scheme.parse(&p.source_version) else { continue };
            for e in entries.iter().filter(|e| e.ecosystem.covers(&image) && e.matcher.affects(&installed)) {
                let a = &self.advisories[e.advisory];
                let finding = Finding {
                    name: a.name.clone(),
                    description: a.description.clone(),
                    uri: a.uri.clone(),
                    severity: a.severity,
                    package_name: p.source.clone(),
                    package_version: p.source_version.clone(),
                    cvss3: a.cvss3.clone(),
                };
                // Two records about one CVE (a DSA and the CVE itself): keep the more severe.
                let key = (a.name.clone(), p.source.clone());
                match found.get(&key) {
                    Some(f) if f.severity <= finding.severity => {}
                    _ => {
                        found.insert(key, finding);
                    }
                }
            }
        }
        let mut out: Vec<Finding> = found.into_values().collect();
        out.sort_by(|a, b| (a.severity, &a.name, &a.package_name).cmp(&(b.severity, &b.name, &b.package_name)));
        out
    }
}

/// The database of a directory as it is now: reloaded when an import has replaced the
/// file since the last use, otherwise shared.
#[derive(Debug)]
pub struct VulnDb {
    dir: PathBuf,
    cached: Mutex<Option<(Stamp, Arc<Database>)>>,
}

/// What identifies one version of the file: a rename gives it a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl VulnDb {
    pub fn new(dir: impl Into<PathBuf>) -> VulnDb {
        VulnDb { dir: dir.into(), cached: Mutex::new(None) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current database, `None` if nothing has been imported. Blocks while a changed
    /// file is loaded.
    pub fn current(&self) -> Result<Option<Arc<Database>>, LoadError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.dir.join(FILE);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LoadError::Io { path, source }),
        };
        let stamp = Stamp { inode: meta.ino(), len: meta.len(), modified: meta.modified().ok() };
        // One loader at a time: scans that start together share one load.
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, db)) = cached.as_ref() {
            if *s == stamp {
                return Ok(Some(db.clone()));
            }
        }
        let Some(db) = Database::load(&self.dir)? else { return Ok(None) };
        let db = Arc::new(db);
        *cached = Some((stamp, db.clone()));
        Ok(Some(db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::OsRelease;

    fn record(id: &str, eco: &str, pkg: &str, fixed: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id,
            "details": format!("{id} in {pkg}"),
            "affected": [{"package": {"ecosystem": eco, "name": pkg},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]
        })
    }

    fn write(path: &Path, v: &serde_json::Value) {
        std::fs::write(path, serde_json::to_vec(v).unwrap()).unwrap();
    }

    #[test]
    fn imports_files_arrays_directories_and_zips_and_merges_by_id() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        let one = tmp.path().join("one.json");
        write(&one, &record("CVE-1", "Debian:12", "openssl", "3.0.13-1"));
        let r = import(&db, &one, ImportMode::Merge, SystemTime::now()).unwrap();
        assert_eq!((r.read, r.imported, r.total), (1, 1, 1));

        let arr = tmp.path().join("arr.json");
        write(
            &arr,
            &serde_json::json!([
                record("CVE-1", "Debian:12", "openssl", "3.0.14-1"),
                record("CVE-2", "Alpine:v3.19", "busybox", "1.36.1-r20"),
                {"id": "GHSA-x", "affected": [{"package": {"ecosystem": "npm", "name": "x"}}]}
            ]),
        );
        let r = import(&db, &arr, ImportMode::Merge, SystemTime::now()).unwrap();
        assert_eq!((r.read, r.imported, r.replaced, r.total), (3, 2, 1, 2));
        assert_eq!(r.skipped.values().sum::<usize>(), 1);

        let dir = tmp.path().join("tree");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        write(&dir.join("sub/a.json"), &record("CVE-3", "Debian", "zlib", "1:1.3"));
        std::fs::write(dir.join("README.md"), "not json").unwrap();
        let r = import(&db, &dir, ImportMode::Merge, SystemTime::now()).unwrap();
        assert_eq!((r.imported, r.total), (1, 3));

        let zip_path = tmp.path().join("all.zip");
        {
            let mut z = zip::ZipWriter::new(File::create(&zip_path).unwrap());
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            z.start_file("CVE-4.json", opts).unwrap();
            z.write_all(&serde_json::to_vec(&record("CVE-4", "Debian:12", "curl", "7.88.1-10+deb12u8")).unwrap())
                .unwrap();
            z.finish().unwrap();
        }
        let r = import(&db, &zip_path, ImportMode::Replace, SystemTime::now()).unwrap();
        assert_eq!((r.imported, r.total), (1, 1), "replace starts afresh");
        let loaded = Database::load(&db).unwrap().unwrap();
        assert_eq!(loaded.len(), 1);
    }

    #[test]
    fn bad_input_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        let good = tmp.path().join("good.json");
        write(&good, &record("CVE-1", "Debian:12", "openssl", "3.0.13-1"));
        import(&db, &good, ImportMode::Merge, SystemTime::now()).unwrap();
        let before = std::fs::read(db.join(FILE)).unwrap();

        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage.json", b"{not json".to_vec()),
            ("noid.json", br#"[{"id": "CVE-2", "affected": []}, {"affected": []}]"#.to_vec()),
            ("number.json", b"42".to_vec()),
            ("empty.json", b"[]".to_vec()),
        ];
        for (name, bytes) in cases {
            let p = tmp.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let err = import(&db, &p, ImportMode::Replace, SystemTime::now()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
            assert_eq!(std::fs::read(db.join(FILE)).unwrap(), before, "{name} changed the database");
        }
        let missing = import(&db, &tmp.path().join("missing"), ImportMode::Merge, SystemTime::now()).unwrap_err();
        assert!(matches!(missing, ImportError::Read { .. }), "{missing}");
        let leftovers: Vec<_> = std::fs::read_dir(&db).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(leftovers.iter().all(|n| n == FILE || n == LOCK), "{leftovers:?}");
    }

    #[test]
    fn a_watched_database_notices_a_new_import() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        let watched = VulnDb::new(&dir);
        assert!(watched.current().unwrap().is_none());
        let src = tmp.path().join("a.json");
        write(&src, &record("CVE-1", "Debian:12", "openssl", "3.0.13-1"));
        import(&dir, &src, ImportMode::Merge, SystemTime::now()).unwrap();
        let first = watched.current().unwrap().unwrap();
        assert_eq!(first.len(), 1);
        assert!(Arc::ptr_eq(&first, &watched.current().unwrap().unwrap()), "unchanged: shared");
        write(&src, &record("CVE-2", "Debian:12", "openssl", "3.0.13-1"));
        import(&dir, &src, ImportMode::Merge, SystemTime::now()).unwrap();
        assert_eq!(watched.current().unwrap().unwrap().len(), 2);
    }

    #[test]
    fn findings_match_source_packages_in_the_images_release() {
        let advisories: Vec<Advisory> = [
            record("CVE-1", "Debian:12", "openssl", "3.0.13-1~deb12u1"),
            record("CVE-2", "Debian:11", "openssl", "9.9"),
            record("CVE-3", "Debian", "openssl", "9.9"),
            record("CVE-4", "Debian:12", "openssl", "3.0.11-1~deb12u1"),
            record("CVE-5", "Alpine:v3.19", "openssl", "9.9"),
            record("CVE-6", "Debian:12", "libssl3", "9.9"),
        ]
        .into_iter()
        .map(|j| Advisory::from_record(serde_json::from_value(j).unwrap()).unwrap())
        .collect();
        let db = Database::new(0, advisories);
        let os = Os::identify(&OsRelease::parse("ID=debian\nVERSION_ID=12\n")).unwrap();
        let pkg = |name: &str| InstalledPackage {
            source: "openssl".into(),
            source_version: "3.0.11-1~deb12u2".into(),
            name: name.into(),
            version: "3.0.11-1~deb12u2+b1".into(),
        };
        let found = db.findings(&os, &[pkg("libssl3"), pkg("openssl")]);
        let names: Vec<(&str, &str)> = found.iter().map(|f| (f.name.as_str(), f.package_version.as_str())).collect();
        assert_eq!(names, vec![("CVE-1", "3.0.11-1~deb12u2"), ("CVE-3", "3.0.11-1~deb12u2")]);
    }
}
