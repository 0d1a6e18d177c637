//! The data directory: its layout, its permissions, and the files other commands read.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use control_plane::auth::Credentials;
use store::{SqliteStore, Store};

/// The database file inside the data dir.
const DATABASE: &str = "berth.db";
/// Written on start with the URL the server answers on, read by `berth env`.
const ENDPOINT: &str = "endpoint";
/// Written on start when Berth serves TLS: the path of the CA bundle clients need.
const CA_BUNDLE: &str = "ca-bundle";

#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    store: Arc<SqliteStore>,
}

impl DataDir {
    /// Creates the data dir if needed (owner-only: it holds secret keys) and opens its store.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating the data dir {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting the data dir {} to its owner", path.display()))?;
        Self::open(path)
    }

    /// Opens a data dir that `berth up` has already created.
    pub fn open_existing(path: &Path) -> anyhow::Result<Self> {
        if !path.join(DATABASE).exists() {
            bail!(
                "{} is not a Berth data dir; start Berth with `berth up --data-dir {}` first",
                path.display(),
                path.display()
            );
        }
        Self::open(path)
    }

    fn open(path: &Path) -> anyhow::Result<Self> {
        let store = SqliteStore::open(&path.join(DATABASE))
            .with_context(|| format!("opening the store in {}", path.display()))?;
        Ok(DataDir { path: path.to_path_buf(), store: Arc::new(store) })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        Ok(Credentials::new(self.store()))
    }

    pub fn write_endpoint(&self, url: &str) -> anyhow::Result<()> {
        // Written to a temporary name and renamed, so a reader never sees half a URL.
        let tmp = self.path.join(format!("{ENDPOINT}.tmp"));
        std::fs::write(&tmp, url).context("writing the endpoint file")?;
        std::fs::rename(&tmp, self.path.join(ENDPOINT)).context("writing the endpoint file")?;
        Ok(())
    }

    /// Records (or, with `None`, forgets) the CA bundle that `berth env` hands out.
    pub fn write_ca_bundle(&self, path: Option<&Path>) -> anyhow::Result<()> {
        let file = self.path.join(CA_BUNDLE);
        match path {
            Some(p) => {
                let tmp = self.path.join(format!("{CA_BUNDLE}.tmp"));
                std::fs::write(&tmp, p.as_os_str().as_encoded_bytes()).context("writing the ca-bundle file")?;
                std::fs::rename(&tmp, &file).context("writing the ca-bundle file")?;
            }
            None => match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("removing the ca-bundle file");
                }
                _ => {}
            },
        }
        Ok(())
    }

    /// The CA bundle of a Berth serving TLS.
    pub fn ca_bundle(&self) -> anyhow::Result<Option<PathBuf>> {
        match std::fs::read_to_string(self.path.join(CA_BUNDLE)) {
            Ok(text) => Ok(Some(PathBuf::from(text.trim_end_matches('\n')))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("reading the ca-bundle file"),
        }
    }

    pub fn endpoint(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.path.join(ENDPOINT))?;
        Ok(text.trim().to_string())
    }
}
