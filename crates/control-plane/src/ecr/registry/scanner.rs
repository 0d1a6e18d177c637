//! The [`Scanner`], which runs image scans in the background: on push (repositories with
//! `scanOnPush`), on request (`StartImageScan`), and again at start for scans a stop
//! interrupted ([`Scanner::resume_interrupted`]).
//!
//! A scan reads the image's manifest and layer blobs from the registry's `BlobStore` and
//! hands them to the `scanner` crate on a blocking thread (decompressing layers is CPU
//! work); at most [`CONCURRENT_SCANS`] run at once, so a burst of pushes cannot take every
//! core. The control plane records that a scan started before it runs and how it ended
//! after (`ecr::scans`), so a scan interrupted by a restart is found `IN_PROGRESS` and run
//! again.
//!
//! Decisions where ECR is silent: an image index (multi-platform image) is scanned through
//! the image it lists for linux/amd64, or else its first image that is not an attestation;
//! a manifest whose config is not a container image config (an OCI artifact) is
//! `UNSUPPORTED_IMAGE`; a scan without an imported vulnerability database is `FAILED`
//! (and, since it found out nothing, does not count against the 24-hour limit).

use std::fs::File;
use std::sync::Arc;

use serde::Deserialize;

use model::ecr::stored::{Finding, FindingSeverity};
use model::Timestamp;
use registry::manifest::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use registry::{BlobStore, Digest};
use scanner::db::VulnDb;
use scanner::osv::Severity;
use scanner::scan::{Inventory, Outcome};

use crate::ecr::images::ImageSelector;
use crate::ecr::scans::{scan_selector, ScanResult, ScanTicket};
use crate::ControlPlane;

/// Scans that run at once; more wait their turn.
pub const CONCURRENT_SCANS: usize = 2;

const IMAGE_CONFIGS: [&str; 2] =
    ["application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"];

/// Runs scans in the background. Lives in the registry's push hook (`EcrHooks`), which
/// starts scans on push; `StartImageScan` reaches it there too. It reads the registry's
/// blobs through the blob store it shares with the registry, never through the registry
/// itself, which owns it. Cloning it shares the same database and the same permits.
#[derive(Clone)]
pub struct Scanner {
    control: Arc<ControlPlane>,
    /// The registry's blobs, which scans read.
    blobs: Arc<BlobStore>,
    vulndb: Arc<VulnDb>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Scanner {
    /// A scanner of the blobs in `blobs`, reading the vulnerability database in
    /// `vulndb_dir` (written by `berth vulndb import`).
    pub fn new(control: Arc<ControlPlane>, blobs: Arc<BlobStore>, vulndb_dir: std::path::PathBuf) -> Scanner {
        Scanner {
            control,
            blobs,
            vulndb: Arc::new(VulnDb::new(vulndb_dir)),
            permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SCANS)),
        }
    }

    /// Starts the scan on push of an image just recorded, if its repository scans on push.
    /// Returns at once: the push's response never waits for a scan.
    pub fn scan_on_push(&self, image: &model::ecr::Image) {
        // Most repositories do not scan on push: skip the write for them. The write below
        // checks again, in case the setting changed meanwhile.
        let key = (image.scope.clone(), image.repository.clone());
        if !self.control.view().repositories.get(&key).is_some_and(|r| r.scan_on_push) {
            return;
        }
        let scanner = self.clone();
        let (scope, repository, digest) = (image.scope.clone(), image.repository.clone(), image.digest.clone());
        tokio::spawn(async move {
            match scanner.control.ecr().start_scan_on_push(scope, repository, digest).await {
                Ok(Some(ticket)) => scanner.run_and_record(ticket).await,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "starting a scan on push failed"),
            }
        });
    }

    /// Runs a started scan in the background and records its result.
    pub fn spawn(&self, ticket: ScanTicket) {
        tokio::spawn(self.clone().run_and_record(ticket));
    }

    /// Runs again the scans a stop interrupted.
    pub fn resume_interrupted(&self) {
        for ticket in self.control.ecr().interrupted_scans() {
            tracing::info!(repository = %ticket.repository, digest = %ticket.digest, "resuming an interrupted scan");
            self.spawn(ticket);
        }
    }

    async fn run_and_record(self, ticket: ScanTicket) {
        let result = match self.permits.clone().acquire_owned().await {
            Ok(_permit) => self.scan(&ticket).await,
            Err(_) => ScanResult::Failed("The server is shutting down; start the scan again.".into()),
        };
        let status = match &result {
            ScanResult::Complete { findings, .. } => format!("COMPLETE with {} findings", findings.len()),
            ScanResult::Unsupported(r) => format!("UNSUPPORTED_IMAGE: {r}"),
            ScanResult::Failed(r) => format!("FAILED: {r}"),
        };
        tracing::info!(repository = %ticket.repository, digest = %ticket.digest, %status, "image scan finished");
        if let Err(e) = self.control.ecr().finish_image_scan(&ticket, result).await {
            tracing::error!(error = %e, repository = %ticket.repository, digest = %ticket.digest, "recording a scan result failed");
        }
    }

    async fn scan(&self, ticket: &ScanTicket) -> ScanResult {
        let layers = match layer_files(&self.blobs, ticket).await {
            Ok(l) => l,
            Err(stop) => return stop,
        };
        let vulndb = self.vulndb.clone();
        let work = tokio::task::spawn_blocking(move || assess(layers, &vulndb));
        work.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the scan thread failed");
            ScanResult::Failed("The scan failed inside Berth; start it again. The server log has the detail.".into())
        })
    }
}

/// The parts of a manifest a scan reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    urls: Vec<String>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

/// Opens the image's layer blobs, lowest first.
async fn layer_files(blobs: &BlobStore, ticket: &ScanTicket) -> Result<Vec<File>, ScanResult> {
    let index = ticket.media_type == DOCKER_MANIFEST_LIST || ticket.media_type == OCI_INDEX;
    let mut manifest = read_manifest(blobs, &ticket.digest).await?;
    if index {
        let chosen = manifest
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
            .or_else(|| manifest.manifests.iter().find(|m| m.platform.as_ref().is_none_or(|p| p.os != "unknown")))
            .map(|m| m.digest.clone())
            .ok_or_else(|| ScanResult::Unsupported("The image index lists no image.".into()))?;
        manifest = read_manifest(blobs, &chosen).await?;
        if !manifest.manifests.is_empty() {
            return Err(ScanResult::Unsupported("An image index inside an image index is not scanned.".into()));
        }
    }
    let config_type = manifest.config.as_ref().and_then(|c| c.media_type.as_deref()).unwrap_or_default();
    if !IMAGE_CONFIGS.contains(&config_type) {
        return Err(ScanResult::Unsupported(format!(
            "The manifest's config is '{config_type}', not a container image config; artifacts are not scanned."
        )));
    }
    let mut files = Vec::new();
    // Foreign layers (with URLs) are not stored here; they are Windows base layers, which
    // hold no package database this scanner reads.
    for layer in manifest.layers.iter().filter(|l| l.urls.is_empty()) {
        let digest = Digest::parse(&layer.digest).map_err(|e| failed_internal(&format!("layer digest: {e}")))?;
        match blobs.open_blob(&digest).await {
            Ok(Some((file, _))) => files.push(file.into_std().await),
            Ok(None) => {
                return Err(ScanResult::Failed(format!(
                    "The layer {digest} is missing from the registry; push the image again."
                )))
            }
            Err(e) => return Err(failed_internal(&format!("opening layer {digest}: {e}"))),
        }
    }
    Ok(files)
}

async fn read_manifest(blobs: &BlobStore, digest: &str) -> Result<RawManifest, ScanResult> {
    let parsed = Digest::parse(digest).map_err(|e| failed_internal(&format!("manifest digest {digest}: {e}")))?;
    let bytes = match blobs.read(&parsed).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(ScanResult::Failed(format!(
                "The manifest {digest} is missing from the registry; push the image again."
            )))
        }
        Err(e) => return Err(failed_internal(&format!("reading manifest {digest}: {e}"))),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| ScanResult::Unsupported(format!("The manifest {digest} cannot be read as an image manifest: {e}")))
}

fn failed_internal(detail: &str) -> ScanResult {
    tracing::error!(%detail, "an image scan failed");
    ScanResult::Failed("The scan failed inside Berth; start it again. The server log has the detail.".into())
}

/// Reads the layers and matches the packages (blocking).
fn assess(layers: Vec<File>, vulndb: &VulnDb) -> ScanResult {
    let inventory = match scanner::scan::inventory(layers.into_iter().map(std::io::BufReader::new)) {
        Ok(i) => i,
        Err(e) => return ScanResult::Failed(format!("The image's layers cannot be read: {e}.")),
    };
    if let Inventory::Unsupported(reason) = inventory {
        return ScanResult::Unsupported(reason);
    }
    let db = match vulndb.current() {
        Ok(Some(db)) => db,
        Ok(None) => {
            return ScanResult::Failed(format!(
                "Berth has no vulnerability database yet. Import OSV advisories with `berth vulndb import PATH --data-dir <data dir>` (they go to {}), then start the scan again.",
                vulndb.dir().display()
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "the vulnerability database cannot be read");
            return ScanResult::Failed(format!(
                "The vulnerability database cannot be read ({e}); import it again with `berth vulndb import --replace`."
            ));
        }
    };
    match scanner::scan::assess(inventory, &db) {
        Outcome::Unsupported(reason) => ScanResult::Unsupported(reason),
        Outcome::Complete { os, packages, findings } => ScanResult::Complete {
            description: format!(
                "The scan is complete: {packages} packages of {} checked against {} advisories.",
                os.pretty_name,
                db.len()
            ),
            source_updated_at: Some(Timestamp::from_epoch_seconds(db.updated_at() as f64)),
            findings: findings.into_iter().map(finding).collect(),
        },
    }
}

fn finding(f: scanner::scan::Finding) -> Finding {
    let mut attributes =
        vec![("package_name".to_owned(), f.package_name), ("package_version".to_owned(), f.package_version)];
    if let Some(c) = f.cvss3 {
        attributes.push(("CVSS3_SCORE".to_owned(), format!("{:.1}", c.score)));
        attributes.push(("CVSS3_VECTOR".to_owned(), c.vector));
    }
    Finding { name: f.name, description: f.description, uri: f.uri, severity: severity(f.severity), attributes }
}

fn severity(s: Severity) -> FindingSeverity {
    match s {
        Severity::Critical => FindingSeverity::Critical,
        Severity::High => FindingSeverity::High,
        Severity::Medium => FindingSeverity::Medium,
        Severity::Low => FindingSeverity::Low,
        Severity::Informational => FindingSeverity::Informational,
        Severity::Undefined => FindingSeverity::Undefined,
    }
}

impl crate::Ops<'_, crate::ecr::Ecr> {
    /// `StartImageScan`: records that a scan of the image (of the caller, or of an account
    /// whose repository policy allows it) started and runs it in the background on the
    /// registry's scanner. Answers the image and how the request named it.
    pub async fn scan_image<A>(
        &self,
        registry: &super::EcrRegistry<A>,
        caller: &crate::Caller,
        registry_id: Option<&str>,
        repository: &str,
        image_id: Option<ImageSelector>,
    ) -> crate::Result<(model::ecr::Image, ImageSelector)> {
        let caller = &self.caller_for_repository(caller, registry_id, repository, &["StartImageScan"])?;
        let selector = scan_selector(image_id)?;
        let (image, ticket) = self.start_image_scan(caller, repository, selector.clone()).await?;
        registry.hooks.scanner.spawn(ticket);
        Ok((image, selector))
    }
}
