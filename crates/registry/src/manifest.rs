//! Parsing pushed manifests: which media types are accepted, what a manifest references,
//! and the facts the referrers API needs. Pure; no I/O.

use crate::digest::Digest;
use crate::meta::ManifestRecord;

/// Manifests up to this size are accepted (ECR's limit is 4 MB).
pub const MAX_MANIFEST_BYTES: usize = 8 << 20;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A manifest that parsed and whose references are known.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub record: ManifestRecord,
    /// Blobs that must be in the repository (config and layers, foreign layers excepted).
    pub blobs: Vec<Digest>,
    /// Manifests that must be in the repository (the entries of an index).
    pub manifests: Vec<Digest>,
    /// What the image occupies, as ECR reports `imageSizeInBytes`: the config and layer
    /// sizes the manifest declares; for an index, its own size.
    pub image_size: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u32>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: Digest,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    urls: Vec<String>,
}

/// Parses `bytes`, whose digest is `digest`, sent with `content_type` (may be absent, in
/// which case the manifest's own `mediaType` decides).
pub fn parse(content_type: Option<&str>, bytes: &[u8], digest: Digest) -> Result<Parsed, ManifestError> {
    let invalid = |m: &str| ManifestError(m.to_owned());
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ManifestError(format!("manifest is not valid: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).filter(|c| !c.is_empty());
    let media_type = match (header, raw.media_type.as_deref()) {
        (Some(h), Some(b)) if h != b => return Err(invalid("Content-Type differs from the manifest's mediaType")),
        (Some(h), _) => h.to_owned(),
        (None, Some(b)) => b.to_owned(),
        (None, None) => return Err(invalid("manifest media type unknown")),
    };
    let (blobs, manifests, artifact_type) = match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = raw.config.as_ref().ok_or_else(|| invalid("image manifest has no config"))?;
            let layers = raw.layers.as_ref().ok_or_else(|| invalid("image manifest has no layers"))?;
            let blobs = std::iter::once(config)
                .chain(layers.iter().filter(|l| l.urls.is_empty()))
                .map(|d| d.digest.clone())
                .collect();
            let artifact_type = raw.artifact_type.clone().or_else(|| config.media_type.clone());
            (blobs, vec![], artifact_type)
        }
        DOCKER_MANIFEST_LIST | OCI_INDEX => {
            let entries = raw.manifests.as_ref().ok_or_else(|| invalid("index has no manifests"))?;
            (vec![], entries.iter().map(|d| d.digest.clone()).collect(), raw.artifact_type.clone())
        }
        _ => return Err(invalid("unsupported manifest media type")),
    };
    let references = [&blobs[..], &manifests[..]].concat();
    let image_size = match (&raw.config, &raw.layers) {
        // Sizes come from the client: a sum that does not fit is a broken manifest, not
        // an arithmetic overflow.
        (Some(config), Some(layers)) => layers
            .iter()
            .try_fold(config.size, |total, l| total.checked_add(l.size))
            .ok_or_else(|| invalid("the sizes of the config and layers add up to more than 2^64 bytes"))?,
        _ => bytes.len() as u64,
    };
    Ok(Parsed {
        record: ManifestRecord {
            digest,
            media_type,
            size: bytes.len() as u64,
            subject: raw.subject.map(|s| s.digest),
            artifact_type,
            annotations: raw.annotations,
            references,
        },
        blobs,
        manifests,
        image_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    fn parse_json(ct: Option<&str>, v: serde_json::Value) -> Result<Parsed, ManifestError> {
        let bytes = serde_json::to_vec(&v).unwrap();
        parse(ct, &bytes, Digest::of(Algorithm::Sha256, &bytes))
    }

    #[test]
    fn image_manifest_references() {
        let p = parse_json(
            None,
            serde_json::json!({
                "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d("c"), "size": 1},
                "layers": [
                    {"mediaType": "x", "digest": d("l"), "size": 1},
                    {"mediaType": "y", "digest": d("f"), "size": 1, "urls": ["https://example.com/f"]}
                ]
            }),
        )
        .unwrap();
        assert_eq!(p.blobs, vec![d("c"), d("l")]);
        assert_eq!(p.image_size, 3, "config and every layer, foreign ones included");
        assert_eq!(p.record.artifact_type.as_deref(), Some("application/vnd.docker.container.image.v1+json"));
    }

    #[test]
    fn refuses_bad_manifests() {
        let cfg = serde_json::json!({"mediaType": "c", "digest": d("c"), "size": 1});
        for (ct, v) in [
            (Some(OCI_MANIFEST), serde_json::json!({"schemaVersion": 1, "config": cfg, "layers": []})),
            (None, serde_json::json!({"schemaVersion": 2, "config": cfg, "layers": []})),
            (
                Some(OCI_INDEX),
                serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": []}),
            ),
            (Some("text/plain"), serde_json::json!({"schemaVersion": 2})),
            (Some(OCI_MANIFEST), serde_json::json!({"schemaVersion": 2, "layers": []})),
            (
                Some(OCI_INDEX),
                serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": "sha256:zz", "size": 1}]}),
            ),
        ] {
            assert!(parse_json(ct, v.clone()).is_err(), "{v}");
        }
        assert!(parse(Some(OCI_MANIFEST), b"not json", d("x")).is_err());
    }

    // Found by the fuzzing harness (registry/tests/fuzz.rs): the declared sizes were
    // summed unchecked, which panicked in debug builds and wrapped in release ones.
    #[test]
    fn sizes_that_overflow_are_refused() {
        let layer = serde_json::json!({"mediaType": "l", "digest": d("l"), "size": u64::MAX / 2 + 1});
        let v = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "c", "digest": d("c"), "size": 1}, "layers": [layer.clone(), layer]});
        let e = parse_json(None, v).unwrap_err();
        assert!(e.0.contains("add up to more than"), "{e}");
    }
}
