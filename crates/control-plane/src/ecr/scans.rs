//! Image scans (ECR's basic scanning): per image, the state of its latest scan and what it
//! found, kept durably. The scan itself runs in `registry::Scanner`, which drives the
//! `scanner` crate over the registry's blobs; this module records that a scan started and
//! how it ended, and enforces ECR's limit of one scan per image per 24 hours.
//!
//! A scan is identified by the time it started: a result is recorded only if the image's
//! scan is still the one that produced it, so a scan that was overtaken (the image was
//! deleted and pushed again) cannot overwrite a newer one.

use std::sync::Arc;

use model::ecr::stored::{Finding, ImageScan, ScanStatus};
use model::ecr::{Image, RepositoryName};
use model::{Scope, Timestamp};

use super::images::{find_image, ImageSelector};
use super::not_found;
use crate::ecr::Ecr;
use crate::error::{Error, NotFoundKind, Result};
use crate::state::Touched;
use crate::Caller;
use crate::Ops;
use crate::Page;
use crate::{State, Txn};

/// How often one image may be scanned, as in ECR: the scan on push counts.
pub const SCAN_INTERVAL_SECONDS: f64 = 24.0 * 3600.0;

/// Whether `scan` uses up the image's scan for the interval: every scan does except one
/// that failed, which found out nothing about the image.
fn blocks_rescan(scan: &ImageScan, now: Timestamp) -> bool {
    scan.status != ScanStatus::Failed && now.epoch_seconds() - scan.started_at.epoch_seconds() < SCAN_INTERVAL_SECONDS
}

/// `DescribeImageScanFindings` returns this many findings when `maxResults` is absent.
const DEFAULT_FINDINGS_PAGE: i32 = 100;

/// What `DescribeImageScanFindings` answers.
#[derive(Debug, Clone)]
pub struct ScanFindings {
    pub image: Arc<Image>,
    /// The image as the request named it.
    pub selector: ImageSelector,
    pub scan: Arc<ImageScan>,
    /// A page of the findings of a complete scan; none for any other.
    pub findings: Option<Vec<Finding>>,
    pub next_token: Option<String>,
}

/// The image a scan request names: `imageId` must be given, with a digest or a tag.
pub fn scan_selector(image_id: Option<ImageSelector>) -> Result<ImageSelector> {
    let id = image_id.ok_or_else(|| Error::parameter("imageId is required."))?;
    if id.digest.is_none() && id.tag.is_none() {
        return Err(Error::parameter("imageId needs an imageDigest or an imageTag."));
    }
    Ok(id)
}

/// A started scan that the caller must run and then finish with
/// [`Ops::finish_image_scan`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScanTicket {
    pub scope: Scope,
    pub repository: RepositoryName,
    pub digest: String,
    /// The manifest's media type, which says how to read it.
    pub media_type: String,
    pub started_at: Timestamp,
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanResult {
    Complete {
        description: String,
        source_updated_at: Option<Timestamp>,
        findings: Vec<Finding>,
    },
    /// The image holds nothing the scanner can read (no supported package database).
    Unsupported(String),
    /// The scan could not be done (an unreadable layer, no vulnerability database); it may
    /// be started again at once.
    Failed(String),
}

const STARTED: &str = "The scan is reading the image's layers and package database.";

impl Ops<'_, Ecr> {
    /// `StartImageScan`: starts a scan of the image `selector` names, unless it was scanned
    /// in the last 24 hours (`LimitExceededException`).
    pub async fn start_image_scan(
        &self,
        caller: &Caller,
        repository: &str,
        selector: ImageSelector,
    ) -> Result<(Image, ScanTicket)> {
        let repo = RepositoryName::parse(repository)?;
        let caller = caller.clone();
        let repository = repository.to_owned();
        self.write(move |txn| {
            let image = resolve(txn.state, &caller, &repo, &repository, &selector)?;
            if let Some(scan) = txn.state.image_scans.get(&key_of(&image)) {
                if blocks_rescan(scan, txn.now) {
                    let left = scan.started_at.epoch_seconds() + SCAN_INTERVAL_SECONDS - txn.now.epoch_seconds();
                    return Err(Error::LimitExceeded(format!(
                        "The image {} was scanned less than 24 hours ago, and an image can be scanned once every 24 hours. Start the scan again in {}, or read the last results with DescribeImageScanFindings.",
                        image.digest,
                        duration_words(left)
                    )));
                }
            }
            let ticket = begin(txn, &image);
            Ok((image.as_ref().clone(), ticket))
        })
        .await
    }

    /// The scan after a push: started when the repository scans on push and the image has
    /// not been scanned in the last 24 hours (a push of an image that is already there does
    /// not scan it again); `None` otherwise.
    pub async fn start_scan_on_push(
        &self,
        scope: Scope,
        repository: RepositoryName,
        digest: String,
    ) -> Result<Option<ScanTicket>> {
        self.write(move |txn| {
            let scans =
                txn.state.repositories.get(&(scope.clone(), repository.clone())).is_some_and(|r| r.scan_on_push);
            let Some(image) = txn.state.images.get(&(scope, repository, digest)).cloned() else { return Ok(None) };
            if !scans || txn.state.image_scans.get(&key_of(&image)).is_some_and(|s| blocks_rescan(s, txn.now)) {
                return Ok(None);
            }
            Ok(Some(begin(txn, &image)))
        })
        .await
    }

    /// Records how the scan of `ticket` ended. A scan that is no longer the image's latest
    /// (the image is gone, or was scanned again) is dropped.
    pub async fn finish_image_scan(&self, ticket: &ScanTicket, result: ScanResult) -> Result<()> {
        let ticket = ticket.clone();
        self.write(move |txn| {
            let key = (ticket.scope.clone(), ticket.repository.clone(), ticket.digest.clone());
            let Some(scan) = txn.state.image_scans.get(&key) else { return Ok(()) };
            if scan.started_at != ticket.started_at || scan.status != ScanStatus::InProgress {
                return Ok(());
            }
            let mut scan = scan.as_ref().clone();
            scan.completed_at = Some(txn.now);
            match result {
                ScanResult::Complete { description, source_updated_at, findings } => {
                    scan.status = ScanStatus::Complete;
                    scan.description = description;
                    scan.source_updated_at = source_updated_at;
                    scan.findings = findings;
                }
                ScanResult::Unsupported(reason) => {
                    scan.status = ScanStatus::UnsupportedImage;
                    scan.description = format!("UnsupportedImageError: {reason}");
                }
                ScanResult::Failed(reason) => {
                    scan.status = ScanStatus::Failed;
                    scan.description = reason;
                }
            }
            txn.state.image_scans.insert(key.clone(), Arc::new(scan));
            txn.touch(Touched::ImageScan(key.0, key.1, key.2));
            Ok(())
        })
        .await
    }

    /// `DescribeImageScanFindings`: the image (of the caller, or of an account whose
    /// repository policy allows it) and its latest scan, with a page of its findings (100
    /// unless asked, at most 1000) when the scan is complete; `ScanNotFoundException`
    /// when it was never scanned.
    pub fn image_scan_findings(
        &self,
        caller: &Caller,
        registry_id: Option<&str>,
        repository: &str,
        image_id: Option<ImageSelector>,
        max_results: Option<i32>,
        next_token: Option<&str>,
    ) -> Result<ScanFindings> {
        let caller = &self.caller_for_repository(caller, registry_id, repository, &["DescribeImageScanFindings"])?;
        let selector = scan_selector(image_id)?;
        let page = Page::parse(Some(max_results.unwrap_or(DEFAULT_FINDINGS_PAGE)), next_token, 1000)?;
        let repo = RepositoryName::parse(repository)?;
        let state = self.view();
        let image = resolve(&state, caller, &repo, repository, &selector)?;
        let scan = state.image_scans.get(&key_of(&image)).cloned().ok_or_else(|| Error::NotFound {
            kind: NotFoundKind::Scan,
            message: format!(
                "The image with digest {} in the repository '{repository}' has not been scanned. Start a scan with StartImageScan, or turn on scanOnPush for the repository.",
                image.digest
            ),
        })?;
        let (findings, next_token) = match scan.status {
            ScanStatus::Complete => {
                let (items, token) =
                    page.take(scan.findings.iter().enumerate().map(|(i, f)| (format!("{i:09}"), f.clone())), false);
                (Some(items), token)
            }
            _ => (None, None),
        };
        Ok(ScanFindings { image, selector, scan, findings, next_token })
    }

    /// The latest scan of `image`, if any (for `DescribeImages`).
    pub fn scan_of(&self, image: &Image) -> Option<Arc<ImageScan>> {
        self.view().image_scans.get(&key_of(image)).cloned()
    }

    /// Scans that were running when the server stopped, to be run again.
    pub fn interrupted_scans(&self) -> Vec<ScanTicket> {
        let state = self.view();
        state
            .image_scans
            .values()
            .filter(|s| s.status == ScanStatus::InProgress)
            .filter_map(|s| {
                let image = state.images.get(&(s.scope.clone(), s.repository.clone(), s.digest.clone()))?;
                Some(ScanTicket {
                    scope: s.scope.clone(),
                    repository: s.repository.clone(),
                    digest: s.digest.clone(),
                    media_type: image.media_type.clone(),
                    started_at: s.started_at,
                })
            })
            .collect()
    }
}

/// Drops the scan of an image that is being deleted.
pub(crate) fn forget_image(txn: &mut Txn<'_>, scope: &Scope, repo: &RepositoryName, digest: &str) {
    let key = (scope.clone(), repo.clone(), digest.to_owned());
    if txn.state.image_scans.remove(&key).is_some() {
        txn.touch(Touched::ImageScan(key.0, key.1, key.2));
    }
}

type ScanKey = (Scope, RepositoryName, String);

fn key_of(image: &Image) -> ScanKey {
    (image.scope.clone(), image.repository.clone(), image.digest.clone())
}

fn begin(txn: &mut Txn<'_>, image: &Image) -> ScanTicket {
    let scan = ImageScan {
        scope: image.scope.clone(),
        repository: image.repository.clone(),
        digest: image.digest.clone(),
        status: ScanStatus::InProgress,
        description: STARTED.to_owned(),
        started_at: txn.now,
        completed_at: None,
        source_updated_at: None,
        findings: Vec::new(),
    };
    let key = key_of(image);
    txn.state.image_scans.insert(key.clone(), Arc::new(scan));
    txn.touch(Touched::ImageScan(key.0, key.1, key.2));
    ScanTicket {
        scope: image.scope.clone(),
        repository: image.repository.clone(),
        digest: image.digest.clone(),
        media_type: image.media_type.clone(),
        started_at: txn.now,
    }
}

/// The image `selector` names in the caller's repository, with ECR's errors.
fn resolve(
    state: &State,
    caller: &Caller,
    repo: &RepositoryName,
    repository: &str,
    selector: &ImageSelector,
) -> Result<Arc<Image>> {
    if !state.repositories.contains_key(&(caller.scope.clone(), repo.clone())) {
        return Err(not_found(caller, repository));
    }
    if selector.digest.is_none() && selector.tag.is_none() {
        return Err(Error::parameter("imageId needs an imageDigest or an imageTag."));
    }
    find_image(state, &caller.scope, repo, selector).map_err(|_| {
        let what = match (&selector.digest, &selector.tag) {
            (Some(d), Some(t)) => format!("imageDigest={d}, imageTag={t}"),
            (Some(d), None) => format!("imageDigest={d}"),
            (None, Some(t)) => format!("imageTag={t}"),
            (None, None) => String::new(),
        };
        Error::NotFound {
            kind: NotFoundKind::Image,
            message: format!(
                "The image with imageId {{{what}}} does not exist within the repository with name '{repository}' in the registry with id '{}'",
                caller.scope.account
            ),
        }
    })
}

/// "5 hours 3 minutes", for messages about waiting.
fn duration_words(seconds: f64) -> String {
    let unit = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let minutes = (seconds.max(60.0) / 60.0).ceil() as u64;
    match (minutes / 60, minutes % 60) {
        (0, m) => unit(m, "minute"),
        (h, 0) => unit(h, "hour"),
        (h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(status: ScanStatus, started: f64) -> ImageScan {
        ImageScan {
            scope: Scope {
                account: model::AccountId::parse("123456789012").unwrap(),
                region: model::Region::parse("us-east-1").unwrap(),
            },
            repository: RepositoryName::parse("web").unwrap(),
            digest: "sha256:00".into(),
            status,
            description: String::new(),
            started_at: Timestamp::from_epoch_seconds(started),
            completed_at: None,
            source_updated_at: None,
            findings: Vec::new(),
        }
    }

    #[test]
    fn a_scan_blocks_another_for_24_hours_unless_it_failed() {
        let now = Timestamp::from_epoch_seconds(100_000.0);
        let cases = [
            (ScanStatus::Complete, 100_000.0 - 60.0, true),
            (ScanStatus::InProgress, 100_000.0 - 60.0, true),
            (ScanStatus::UnsupportedImage, 100_000.0 - 60.0, true),
            (ScanStatus::Failed, 100_000.0 - 60.0, false),
            (ScanStatus::Complete, 100_000.0 - SCAN_INTERVAL_SECONDS, false),
            (ScanStatus::Complete, 100_000.0 - SCAN_INTERVAL_SECONDS + 1.0, true),
        ];
        for (status, started, want) in cases {
            assert_eq!(blocks_rescan(&scan(status, started), now), want, "{status:?} at {started}");
        }
    }

    #[test]
    fn waits_in_words() {
        assert_eq!(duration_words(10.0), "1 minute");
        assert_eq!(duration_words(SCAN_INTERVAL_SECONDS), "24 hours");
        assert_eq!(duration_words(3.5 * 3600.0), "3 hours 30 minutes");
    }
}
