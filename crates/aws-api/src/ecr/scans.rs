//! Image scanning: `StartImageScan` and `DescribeImageScanFindings`. The scans themselves
//! run in ECR's registry service (`control_plane::ecr::registry::Scanner`), on push and on
//! the request this module decodes.

use axum::response::Response;

use control_plane::ecr::images::ImageSelector;
use control_plane::Caller;
use control_plane::ControlPlane;
use model::ecr::shapes as w;
use model::ecr::stored::{Finding, FindingSeverity, ImageScan, ScanStatus};

use super::input;
use crate::ecs::Validate;
use crate::{ok, ApiError};

crate::ecs::validate_with_model!(w::StartImageScanRequest, w::DescribeImageScanFindingsRequest);

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
    let (image, selector) = api
        .control
        .ecr()
        .scan_image(api.registry()?, caller, r.registry_id.as_deref(), &repository, r.image_id.map(super::selector))
        .await?;
    Ok(ok(&w::StartImageScanResponse {
        registry_id: Some(image.scope.account.to_string()),
        repository_name: Some(repository),
        image_id: Some(image_id(&image.digest, &selector)),
        image_scan_status: Some(w::ImageScanStatus {
            status: Some(w::ScanStatus::InProgress),
            description: Some("The scan has started.".into()),
        }),
    }))
}

fn describe_image_scan_findings(cp: &ControlPlane, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let r: w::DescribeImageScanFindingsRequest = input(body)?;
    let repository = r.repository_name.unwrap_or_default();
    let found = cp.ecr().image_scan_findings(
        caller,
        r.registry_id.as_deref(),
        &repository,
        r.image_id.map(super::selector),
        r.max_results,
        r.next_token.as_deref(),
    )?;
    let findings = match &found.findings {
        Some(page) => findings_shape(&found.scan, page.iter().map(finding_shape).collect()),
        // No results yet (or none possible), but the member is there: the AWS CLI's
        // paginator writes into `imageScanFindings.findings` and fails on a missing parent.
        None => w::ImageScanFindings { findings: Some(Vec::new()), ..Default::default() },
    };
    Ok(ok(&w::DescribeImageScanFindingsResponse {
        registry_id: Some(found.image.scope.account.to_string()),
        repository_name: Some(repository),
        image_id: Some(image_id(&found.image.digest, &found.selector)),
        image_scan_status: Some(status_shape(&found.scan)),
        image_scan_findings: Some(findings),
        next_token: found.next_token,
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
    w::ImageScanStatus { status: Some(status_code(scan.status)), description: Some(scan.description.clone()) }
}

fn status_code(s: ScanStatus) -> w::ScanStatus {
    match s {
        ScanStatus::InProgress => w::ScanStatus::InProgress,
        ScanStatus::Complete => w::ScanStatus::Complete,
        ScanStatus::Failed => w::ScanStatus::Failed,
        ScanStatus::UnsupportedImage => w::ScanStatus::UnsupportedImage,
    }
}

fn severity_code(s: FindingSeverity) -> w::FindingSeverity {
    match s {
        FindingSeverity::Informational => w::FindingSeverity::Informational,
        FindingSeverity::Low => w::FindingSeverity::Low,
        FindingSeverity::Medium => w::FindingSeverity::Medium,
        FindingSeverity::High => w::FindingSeverity::High,
        FindingSeverity::Critical => w::FindingSeverity::Critical,
        FindingSeverity::Undefined => w::FindingSeverity::Undefined,
    }
}

fn severity_counts(scan: &ImageScan) -> std::collections::BTreeMap<String, i32> {
    scan.severity_counts().into_iter().map(|(s, n)| (severity_code(s).as_str().to_owned(), n)).collect()
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
        severity: Some(severity_code(f.severity)),
        attributes: Some(
            f.attributes.iter().map(|(k, v)| w::Attribute { key: Some(k.clone()), value: Some(v.clone()) }).collect(),
        ),
    }
}

/// The image's identifier as ECR answers it: the digest, and the tag the request named.
fn image_id(digest: &str, selector: &ImageSelector) -> w::ImageIdentifier {
    w::ImageIdentifier { image_digest: Some(digest.to_owned()), image_tag: selector.tag.clone() }
}
