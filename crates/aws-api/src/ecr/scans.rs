//! Image scanning: `StartImageScan` and `DescribeImageScanFindings`, and the
//! [`Scanner`] that runs scans in the background, on push (repositories with
//! `scanOnPush`) and on request.
//!
//! A scan reads the image's manifest and layer blobs from the registry's `BlobStore` and
//! hands them to the `scanner` crate on a blocking thread (decompressing layers is CPU
//! work); at most [`CONCURRENT_SCANS`] run at once, so a burst of pushes cannot take every
//! core. The control plane records that a scan started before it runs and how it ended
//! after, so a scan interrupted by a restart is found `IN_PROGRESS` and run again at start
//! ([`Scanner::resume_interrupted`]).
//!
//! Decisions where ECR is silent: an image index (multi-platform image) is scanned through
//! the image it lists for linux/amd64, or else its first image that is not an attestation;
//! a manifest whose config is not a container image config (an OCI artifact) is
//! `UNSUPPORTED_IMAGE`; a scan without an imported vulnerability database is `FAILED`
//! (and, since it found out nothing, does not count against the 24-hour limit).

use std::fs::File;
use std::sync::{Arc, Weak};

use axum::response::Response;
use serde::Deserialize;

use control_plane::ecr::images::ImageSelector;
use control_plane::ecr::scans::{ScanResult, ScanTicket};
use control_plane::Caller;
use control_plane::{ControlPlane, Page};
use model::ecr::shapes::{self as w, FindingSeverity, ScanStatus};
use model::ecr::stored::{Finding, ImageScan};
use model::Timestamp;
use registry::manifest::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use registry::Digest;
use scanner::db::VulnDb;
use scanner::osv::Severity;
use scanner::scan::{Inventory, Outcome};

use super::registry::EcrRegistry;
use crate::ecs::{input, Validate};
use crate::{ok, ApiError};

crate::ecs::validate_with_model!(w::StartImageScanRequest, w::DescribeImageScanFindingsRequest);

/// Scans that run at once; more wait their turn.
pub const CONCURRENT_SCANS: usize = 2;
/// `DescribeImageScanFindings` returns this many findings when `maxResults` is absent.
const DEFAULT_PAGE: i32 = 100;

const IMAGE_CONFIGS: [&str; 2] =
    ["application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"];

/// Answers the operations of this module; `None` for any other.
pub(super) async fn dispatch(
    api: &crate::Api,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    Some(match operation {
        "StartImageScan" => start_image_scan(api, caller, body).await,
        "DescribeImageScanFindings" => describe_image_scan_findings(&api.control, caller, body),
        _ => return None,
    })
}

async fn start_image_scan(api: &crate::Api, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::StartImageScanRequest = input(body)?;
    let repository = r.repository_name.unwrap_or_default();
    // Another account's repository is scanned when its repository policy allows it.
    let caller =
        &api.control.ecr().caller_for_repository(caller, r.registry_id.as_deref(), &repository, &["StartImageScan"])?;
    let selector = selector(r.image_id.as_ref())?;
    let (image, ticket) = api.control.ecr().start_image_scan(caller, &repository, selector.clone()).await?;
    api.registry.hooks.scanner.spawn(ticket);
    Ok(ok(&w::StartImageScanResponse {
        registry_id: Some(image.scope.account.to_string()),
        repository_name: Some(repository),
        image_id: Some(image_id(&image.digest, &selector)),
        image_scan_status: Some(w::ImageScanStatus {
            status: Some(ScanStatus::InProgress),
            description: Some("The scan has started.".into()),
        }),
    }))
}

fn describe_image_scan_findings(cp: &ControlPlane, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::DescribeImageScanFindingsRequest = input(body)?;
    let repository = r.repository_name.unwrap_or_default();
    let caller = &cp.ecr().caller_for_repository(
        caller,
        r.registry_id.as_deref(),
        &repository,
        &["DescribeImageScanFindings"],
    )?;
    let selector = selector(r.image_id.as_ref())?;
    let page = Page::parse(Some(r.max_results.unwrap_or(DEFAULT_PAGE)), r.next_token.as_deref(), 1000)?;
    let (image, scan) = cp.ecr().image_scan(caller, &repository, &selector)?;
    let (findings, next_token) = match scan.status {
        ScanStatus::Complete => {
            let (items, token) =
                page.take(scan.findings.iter().enumerate().map(|(i, f)| (format!("{i:09}"), finding_shape(f))), false);
            (findings_shape(&scan, items), token)
        }
        // No results yet (or none possible), but the member is there: the AWS CLI's
        // paginator writes into `imageScanFindings.findings` and fails on a missing parent.
        _ => (w::ImageScanFindings { findings: Some(Vec::new()), ..Default::default() }, None),
    };
    Ok(ok(&w::DescribeImageScanFindingsResponse {
        registry_id: Some(image.scope.account.to_string()),
        repository_name: Some(repository),
        image_id: Some(image_id(&image.digest, &selector)),
        image_scan_status: Some(status_shape(&scan)),
        image_scan_findings: Some(findings),
        next_token,
    }))
}

/// `imageScanStatus` and `imageScanFindingsSummary` of `DescribeImages`: the status of any
/// scan, the summary only of a complete one.
pub(super) fn image_summary(scan: &ImageScan) -> (w::ImageScanStatus, Option<w::ImageScanFindingsSummary>) {
    let summary = (scan.status == ScanStatus::Complete).then(|| w::ImageScanFindingsSummary {
        image_scan_completed_at: scan.completed_at,
        vulnerability_source_updated_at: scan.source_updated_at,
        finding_severity_counts: Some(severity_counts(scan)),
    });
    (status_shape(scan), summary)
}

fn status_shape(scan: &ImageScan) -> w::ImageScanStatus {
    w::ImageScanStatus { status: Some(scan.status), description: Some(scan.description.clone()) }
}

fn severity_counts(scan: &ImageScan) -> std::collections::BTreeMap<String, i32> {
    scan.severity_counts().into_iter().map(|(s, n)| (s.as_str().to_owned(), n)).collect()
}

fn findings_shape(scan: &ImageScan, page: Vec<w::ImageScanFinding>) -> w::ImageScanFindings {
    w::ImageScanFindings {
        image_scan_completed_at: scan.completed_at,
        vulnerability_source_updated_at: scan.source_updated_at,
        finding_severity_counts: Some(severity_counts(scan)),
        findings: Some(page),
        enhanced_findings: None,
    }
}

fn finding_shape(f: &Finding) -> w::ImageScanFinding {
    w::ImageScanFinding {
        name: Some(f.name.clone()),
        description: (!f.description.is_empty()).then(|| f.description.clone()),
        uri: f.uri.clone(),
        severity: Some(f.severity),
        attributes: Some(
            f.attributes.iter().map(|(k, v)| w::Attribute { key: Some(k.clone()), value: Some(v.clone()) }).collect(),
        ),
    }
}

fn selector(id: Option<&w::ImageIdentifier>) -> Result<ImageSelector, ApiError> {
    let id = id.ok_or_else(|| ApiError::invalid_parameter("imageId is required."))?;
    if id.image_digest.is_none() && id.image_tag.is_none() {
        return Err(ApiError::invalid_parameter("imageId needs an imageDigest or an imageTag."));
    }
    Ok(ImageSelector { digest: id.image_digest.clone(), tag: id.image_tag.clone() })
}

/// The image's identifier as ECR answers it: the digest, and the tag the request named.
fn image_id(digest: &str, selector: &ImageSelector) -> w::ImageIdentifier {
    w::ImageIdentifier { image_digest: Some(digest.to_owned()), image_tag: selector.tag.clone() }
}

/// Runs scans in the background. Lives in the registry's push hook (`RecordPush`), which
/// starts scans on push; `StartImageScan` reaches it there too.
pub struct Scanner {
    control: Arc<ControlPlane>,
    /// The registry whose blobs are scanned. Weak, because the registry owns the hook that
    /// owns this scanner.
    registry: Weak<EcrRegistry>,
    vulndb: Arc<VulnDb>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Scanner {
    /// A scanner reading the vulnerability database in `vulndb_dir` (written by
    /// `berth vulndb import`).
    pub fn new(control: Arc<ControlPlane>, registry: Weak<EcrRegistry>, vulndb_dir: std::path::PathBuf) -> Scanner {
        Scanner {
            control,
            registry,
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
        let (control, registry, vulndb, permits) =
            (self.control.clone(), self.registry.clone(), self.vulndb.clone(), self.permits.clone());
        let (scope, repository, digest) = (image.scope.clone(), image.repository.clone(), image.digest.clone());
        tokio::spawn(async move {
            match control.ecr().start_scan_on_push(scope, repository, digest).await {
                Ok(Some(ticket)) => run_and_record(control, registry, vulndb, permits, ticket).await,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "starting a scan on push failed"),
            }
        });
    }

    /// Runs a started scan in the background and records its result.
    pub fn spawn(&self, ticket: ScanTicket) {
        let (control, registry, vulndb, permits) =
            (self.control.clone(), self.registry.clone(), self.vulndb.clone(), self.permits.clone());
        tokio::spawn(run_and_record(control, registry, vulndb, permits, ticket));
    }

    /// Runs again the scans a stop interrupted.
    pub fn resume_interrupted(&self) {
        for ticket in self.control.ecr().interrupted_scans() {
            tracing::info!(repository = %ticket.repository, digest = %ticket.digest, "resuming an interrupted scan");
            self.spawn(ticket);
        }
    }
}

async fn run_and_record(
    control: Arc<ControlPlane>,
    registry: Weak<EcrRegistry>,
    vulndb: Arc<VulnDb>,
    permits: Arc<tokio::sync::Semaphore>,
    ticket: ScanTicket,
) {
    let result = match permits.acquire_owned().await {
        Ok(_permit) => scan(registry, vulndb, &ticket).await,
        Err(_) => ScanResult::Failed("The server is shutting down; start the scan again.".into()),
    };
    let status = match &result {
        ScanResult::Complete { findings, .. } => format!("COMPLETE with {} findings", findings.len()),
        ScanResult::Unsupported(r) => format!("UNSUPPORTED_IMAGE: {r}"),
        ScanResult::Failed(r) => format!("FAILED: {r}"),
    };
    tracing::info!(repository = %ticket.repository, digest = %ticket.digest, %status, "image scan finished");
    if let Err(e) = control.ecr().finish_image_scan(&ticket, result).await {
        tracing::error!(error = %e, repository = %ticket.repository, digest = %ticket.digest, "recording a scan result failed");
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

async fn scan(registry: Weak<EcrRegistry>, vulndb: Arc<VulnDb>, ticket: &ScanTicket) -> ScanResult {
    let Some(registry) = registry.upgrade() else {
        return ScanResult::Failed("The server is shutting down; start the scan again.".into());
    };
    let layers = match layer_files(&registry, ticket).await {
        Ok(l) => l,
        Err(stop) => return stop,
    };
    drop(registry);
    let work = tokio::task::spawn_blocking(move || assess(layers, &vulndb));
    work.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "the scan thread failed");
        ScanResult::Failed("The scan failed inside Berth; start it again. The server log has the detail.".into())
    })
}

/// Opens the image's layer blobs, lowest first.
async fn layer_files(registry: &EcrRegistry, ticket: &ScanTicket) -> Result<Vec<File>, ScanResult> {
    let index = ticket.media_type == DOCKER_MANIFEST_LIST || ticket.media_type == OCI_INDEX;
    let mut manifest = read_manifest(registry, &ticket.digest).await?;
    if index {
        let chosen = manifest
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
            .or_else(|| manifest.manifests.iter().find(|m| m.platform.as_ref().is_none_or(|p| p.os != "unknown")))
            .map(|m| m.digest.clone())
            .ok_or_else(|| ScanResult::Unsupported("The image index lists no image.".into()))?;
        manifest = read_manifest(registry, &chosen).await?;
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
        match registry.store.open_blob(&digest).await {
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

async fn read_manifest(registry: &EcrRegistry, digest: &str) -> Result<RawManifest, ScanResult> {
    let parsed = Digest::parse(digest).map_err(|e| failed_internal(&format!("manifest digest {digest}: {e}")))?;
    let bytes = match registry.store.read(&parsed).await {
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
