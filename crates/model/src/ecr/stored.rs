//! The ECR records the control plane keeps besides repositories and images: repository
//! and registry policies, image scans, lifecycle policies and their previews. They are
//! domain types with serde for storage; their serialized form is what the store holds, so
//! it must not change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lifecycle::LifecyclePolicy;
use super::policy::PolicyDocument;
use super::RepositoryName;
use crate::{Scope, Timestamp};

/// A repository's policy as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRepositoryPolicy {
    pub scope: Scope,
    pub repository: RepositoryName,
    pub policy: PolicyDocument,
}

/// A registry's (account's, per region) policy as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRegistryPolicy {
    pub scope: Scope,
    pub policy: PolicyDocument,
}

/// The latest scan of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageScan {
    pub scope: Scope,
    pub repository: RepositoryName,
    pub digest: String,
    pub status: ScanStatus,
    pub description: String,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// When the vulnerability database the scan used last changed.
    pub source_updated_at: Option<Timestamp>,
    /// Most severe first.
    pub findings: Vec<Finding>,
}

/// Where an image's latest scan is. Stored as ECR's `ScanStatus` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanStatus {
    #[serde(rename = "IN_PROGRESS")]
    InProgress,
    #[serde(rename = "COMPLETE")]
    Complete,
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "UNSUPPORTED_IMAGE")]
    UnsupportedImage,
}

/// How severe a finding is. Stored as ECR's `FindingSeverity` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FindingSeverity {
    #[serde(rename = "INFORMATIONAL")]
    Informational,
    #[serde(rename = "LOW")]
    Low,
    #[serde(rename = "MEDIUM")]
    Medium,
    #[serde(rename = "HIGH")]
    High,
    #[serde(rename = "CRITICAL")]
    Critical,
    #[serde(rename = "UNDEFINED")]
    Undefined,
}

/// One vulnerability of the image, as ECR reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub name: String,
    pub description: String,
    pub uri: Option<String>,
    pub severity: FindingSeverity,
    /// `package_name`, `package_version`, and CVSS details when known, in this order.
    pub attributes: Vec<(String, String)>,
}

impl ImageScan {
    /// How many findings of each severity (only severities that occur).
    pub fn severity_counts(&self) -> BTreeMap<FindingSeverity, i32> {
        let mut counts = BTreeMap::new();
        for f in &self.findings {
            *counts.entry(f.severity).or_insert(0) += 1;
        }
        counts
    }
}

/// How long a completed preview's results are kept. ECR does not say; after this the
/// preview reads as `EXPIRED` without results, and a new one can be started.
pub const PREVIEW_RETENTION_SECONDS: f64 = 24.0 * 60.0 * 60.0;

/// A repository's lifecycle policy as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLifecyclePolicy {
    pub scope: Scope,
    pub repository: RepositoryName,
    pub policy: LifecyclePolicy,
    /// When enforcement last evaluated this policy; `None` until it first runs.
    pub last_evaluated_at: Option<Timestamp>,
}

/// An image a policy expires, as a preview lists it and enforcement deletes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expiring {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: Timestamp,
    /// The `rulePriority` of the one rule that expires the image.
    pub rule_priority: u32,
}

/// Where a preview is, as stored. `EXPIRED` is not stored: it is a completed preview read
/// after [`PREVIEW_RETENTION_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredPreviewStatus {
    InProgress,
    Complete,
    Failed,
}

/// Where a preview is, as a reader sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewStatus {
    InProgress,
    Complete,
    Expired,
    Failed,
}

/// The latest lifecycle policy preview of a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecyclePreview {
    pub scope: Scope,
    pub repository: RepositoryName,
    /// The policy previewed: the one given to `StartLifecyclePolicyPreview`, or the
    /// repository's own.
    pub policy: LifecyclePolicy,
    pub status: StoredPreviewStatus,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// The images the policy expires, oldest first; empty until complete.
    pub results: Vec<Expiring>,
    /// Why the preview failed, for the log and the user.
    pub failure: Option<String>,
}

impl LifecyclePreview {
    /// The status a reader sees at `now`.
    pub fn status_at(&self, now: Timestamp) -> PreviewStatus {
        match (self.status, self.completed_at) {
            (StoredPreviewStatus::InProgress, _) => PreviewStatus::InProgress,
            (StoredPreviewStatus::Failed, _) => PreviewStatus::Failed,
            (StoredPreviewStatus::Complete, Some(done))
                if now.epoch_seconds() - done.epoch_seconds() > PREVIEW_RETENTION_SECONDS =>
            {
                PreviewStatus::Expired
            }
            (StoredPreviewStatus::Complete, _) => PreviewStatus::Complete,
        }
    }

    /// A preview found in progress when the state is loaded was cut off by a restart: it
    /// is reported as failed, so that a waiter stops and a new preview can be started.
    pub fn after_restart(mut self) -> Self {
        if self.status == StoredPreviewStatus::InProgress {
            self.status = StoredPreviewStatus::Failed;
            self.failure = Some("Berth restarted before the preview completed; start it again.".into());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, Region};

    fn scope() -> Scope {
        Scope { account: AccountId::parse("123456789012").unwrap(), region: Region::parse("us-east-1").unwrap() }
    }

    fn preview(status: StoredPreviewStatus, completed_at: Option<f64>) -> LifecyclePreview {
        let text = r#"{"rules": [{"rulePriority": 1, "description": "keep one untagged image", "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}"#;
        LifecyclePreview {
            scope: scope(),
            repository: RepositoryName::parse("app").unwrap(),
            policy: LifecyclePolicy::parse(text).unwrap(),
            status,
            started_at: Timestamp::from_epoch_seconds(1000.0),
            completed_at: completed_at.map(Timestamp::from_epoch_seconds),
            results: Vec::new(),
            failure: None,
        }
    }

    #[test]
    fn preview_status_as_read() {
        let at = |s| Timestamp::from_epoch_seconds(s);
        let done = preview(StoredPreviewStatus::Complete, Some(2000.0));
        assert_eq!(done.status_at(at(2000.0 + PREVIEW_RETENTION_SECONDS)), PreviewStatus::Complete);
        assert_eq!(done.status_at(at(2001.0 + PREVIEW_RETENTION_SECONDS)), PreviewStatus::Expired);
        assert_eq!(preview(StoredPreviewStatus::InProgress, None).status_at(at(1e9)), PreviewStatus::InProgress);
        assert_eq!(preview(StoredPreviewStatus::Failed, Some(2000.0)).status_at(at(1e9)), PreviewStatus::Failed);
        let restarted = preview(StoredPreviewStatus::InProgress, None).after_restart();
        assert_eq!(restarted.status, StoredPreviewStatus::Failed);
        assert!(restarted.failure.is_some());
        assert_eq!(done.clone().after_restart(), done);
    }

    /// Stored records were written when these fields were ECR's wire enums; they must
    /// read and write the same text.
    #[test]
    fn stored_names_are_ecrs() {
        fn json<T: Serialize>(v: T) -> String {
            serde_json::to_string(&v).unwrap()
        }
        assert_eq!(json(ScanStatus::UnsupportedImage), r#""UNSUPPORTED_IMAGE""#);
        assert_eq!(json(ScanStatus::InProgress), r#""IN_PROGRESS""#);
        assert_eq!(json(FindingSeverity::Informational), r#""INFORMATIONAL""#);
        assert_eq!(json(crate::ecr::EncryptionType::KmsDsse), r#""KMS_DSSE""#);
        let e: crate::ecr::Encryption = serde_json::from_str(r#"{"encryptionType":"AES256"}"#).unwrap();
        assert_eq!(json(e), r#"{"encryptionType":"AES256"}"#);
    }

    #[test]
    fn severity_counts() {
        let finding = |severity| Finding {
            name: "CVE-1".into(),
            description: String::new(),
            uri: None,
            severity,
            attributes: vec![],
        };
        let scan = ImageScan {
            scope: scope(),
            repository: RepositoryName::parse("web").unwrap(),
            digest: "sha256:00".into(),
            status: ScanStatus::Complete,
            description: String::new(),
            started_at: Timestamp::from_epoch_seconds(0.0),
            completed_at: None,
            source_updated_at: None,
            findings: vec![
                finding(FindingSeverity::High),
                finding(FindingSeverity::High),
                finding(FindingSeverity::Low),
            ],
        };
        let counts = scan.severity_counts();
        assert_eq!(counts.get(&FindingSeverity::High), Some(&2));
        assert_eq!(counts.get(&FindingSeverity::Low), Some(&1));
        assert_eq!(counts.len(), 2);
    }
}
