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

    pub fn endpoint(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.path.join(ENDPOINT))?;
        Ok(text.trim().to_string())
    }
}
