//! Fuzz targets for what the registry parses from a client (see `fuzzkit` for the engine
//! and how to run them long): repository names, tags, references and digests, the `/v2/`
//! route, and pushed manifests. The property: parsing never panics, what is accepted
//! reads back as it was given, and a manifest's references are its own.

use proptest::prelude::*;
use registry::http::{parse_route, Route};
use registry::manifest::{self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use registry::{Algorithm, Digest, Reference, RepoName, Tag};
use serde_json::{json, Value};

const D1: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const D2: &str = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

const NAME_SEEDS: &[&str] = &[
    "library/ubuntu",
    "a.b_c__d---e/f0",
    "team/app",
    "latest",
    "_1.0-rc.1",
    D1,
    "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

const ROUTE_SEEDS: &[&str] = &[
    "",
    "team/app/tags/list",
    "team/app/manifests/latest",
    "library/ubuntu/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "team/app/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "team/app/blobs/uploads/",
    "team/app/blobs/uploads/5f0c7c2e-8a4b-4b8e-9f55-3b1d0a6c2e11",
    "team/app/referrers/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

fn manifest_seeds() -> Vec<Value> {
    vec![
        json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": D1, "size": 1469},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": D2, "size": 2811478},
                       {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": D1, "size": 7,
                        "urls": ["https://example.com/layer"]}]}),
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example+type",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": D1, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 32}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": D2, "size": 7},
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}),
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": D1, "size": 7, "platform": {"architecture": "amd64", "os": "linux"}},
                          {"mediaType": OCI_MANIFEST, "digest": D2, "size": 7}]}),
        json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": D2, "size": 528}]}),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        proptest::sample::select(vec![DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX])
            .prop_map(str::to_string),
        Just(format!("{OCI_MANIFEST}; charset=utf-8")),
        Just(";".to_string()),
        fuzzkit::hostile_string(),
    ])
}

proptest! {
    #![proptest_config(fuzzkit::config(512))]

    #[test]
    fn names_tags_references_digests(s in fuzzkit::mutated_text(NAME_SEEDS, 4)) {
        if let Ok(n) = RepoName::parse(&s) {
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert!(n.as_str().split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
        }
        if let Ok(t) = Tag::parse(&s) {
            prop_assert_eq!(t.as_str(), s.as_str());
            prop_assert!(!s.contains(':') && !s.contains('/'));
        }
        match Reference::parse(&s) {
            Ok(r) => {
                prop_assert_eq!(r.to_string(), s.clone());
                prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        if let Ok(d) = Digest::parse(&s) {
            prop_assert_eq!(d.to_string(), s.clone());
            prop_assert!(matches!((d.algorithm(), d.hex().len()), (Algorithm::Sha256, 64) | (Algorithm::Sha512, 128)));
        }
    }

    #[test]
    fn routes(path in fuzzkit::mutated_text(ROUTE_SEEDS, 4)) {
        let Some(route) = parse_route(&path) else { return Ok(()) };
        // The parts a route names are the path's own, in order.
        let rebuilt = match &route {
            Route::Base => String::new(),
            Route::Tags { name } => format!("{name}/tags/list"),
            Route::Manifest { name, reference } => format!("{name}/manifests/{reference}"),
            Route::Blob { name, digest } => format!("{name}/blobs/{digest}"),
            Route::UploadStart { name } => format!("{name}/blobs/uploads"),
            Route::Upload { name, id } => format!("{name}/blobs/uploads/{id}"),
            Route::Referrers { name, digest } => format!("{name}/referrers/{digest}"),
        };
        // An upload may start at `.../blobs/uploads/`, with the slash.
        prop_assert!(rebuilt == path || format!("{rebuilt}/") == path, "{path:?} read as {route:?}");
        prop_assert_eq!(parse_route(&rebuilt), Some(route));
    }

    #[test]
    fn manifests(body in fuzzkit::mutated_json(manifest_seeds(), 4), content_type in content_type()) {
        let digest = Digest::of(Algorithm::Sha256, &body);
        match manifest::parse(content_type.as_deref(), &body, digest.clone()) {
            Ok(parsed) => {
                prop_assert_eq!(parsed.record.digest, digest);
                prop_assert_eq!(parsed.record.size, body.len() as u64);
                let text = String::from_utf8_lossy(&body);
                for d in parsed.blobs.iter().chain(&parsed.manifests) {
                    prop_assert!(text.contains(&d.to_string()), "{d} is not in the manifest");
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
