//! Manifest parsing and validation, pure: bytes (and the media type the
//! client declared) in, the references a registry must check out.
//!
//! Four formats are accepted: Docker image manifest v2 schema 2, Docker
//! manifest list, OCI image manifest and OCI image index. Docker schema 1
//! is refused, as ECR refuses new schema 1 pushes.

use serde::Deserialize;
use serde_json::Value;

use crate::digest::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// ECR's limit on a manifest (the `ImageManifest` shape's max).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid json: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported manifest media type {0}")]
    Unsupported(String),
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    pub artifact_type: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// What a registry needs to know about a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub media_type: String,
    pub kind: Kind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, else the config's media type (what ECR reports as
    /// `artifactMediaType`).
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

impl Parsed {
    /// ECR's `imageSizeInBytes`: the sum of what the manifest references.
    pub fn size(&self) -> i64 {
        let refs = self
            .layers
            .iter()
            .chain(&self.manifests)
            .chain(self.config.as_ref());
        refs.map(|d| d.size.max(0)).sum()
    }

    /// Layers whose bytes must be in the registry (foreign and
    /// non-distributable layers live elsewhere by definition).
    pub fn required_blobs(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = self
            .required_descriptors()
            .map(|d| d.digest.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The descriptors of [`Parsed::required_blobs`], each as written (a
    /// digest named twice comes twice): the config and every layer the
    /// registry must hold.
    pub fn required_descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        let layers = self.layers.iter().filter(|l| {
            !(l.media_type.contains("foreign") || l.media_type.contains("nondistributable"))
        });
        self.config.iter().chain(layers)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Value>,
}

fn descriptor(raw: RawDescriptor, what: &str) -> Result<Descriptor, ManifestError> {
    let digest = raw
        .digest
        .ok_or_else(|| ManifestError::Invalid(format!("{what} has no digest")))?;
    let digest: Digest = digest
        .parse()
        .map_err(|e| ManifestError::Invalid(format!("{what}: {e}")))?;
    let size = raw
        .size
        .ok_or_else(|| ManifestError::Invalid(format!("{what} has no size")))?;
    if size < 0 {
        return Err(ManifestError::Invalid(format!(
            "{what} has a negative size"
        )));
    }
    Ok(Descriptor {
        media_type: raw.media_type.unwrap_or_default(),
        digest,
        size,
        artifact_type: raw.artifact_type,
    })
}

/// Strips parameters (`; charset=...`) from a media type.
fn bare(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// Parses `bytes`; `declared` is the request's Content-Type (or ECR's
/// `imageManifestMediaType`), if any.
pub fn parse(bytes: &[u8], declared: Option<&str>) -> Result<Parsed, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::Invalid("manifest is too large".into()));
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    let declared = declared
        .map(bare)
        .filter(|d| !d.is_empty() && *d != "application/json" && *d != "application/octet-stream");
    if let (Some(d), Some(m)) = (declared, raw.media_type.as_deref()) {
        if d != m {
            return Err(ManifestError::Invalid(format!(
                "media type {m} in the manifest does not match the declared {d}"
            )));
        }
    }
    let media_type = match (raw.media_type.clone(), declared) {
        (Some(m), _) => m,
        (None, Some(d)) => d.to_string(),
        // The OCI formats may omit mediaType: tell them apart by shape.
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => return Err(ManifestError::Invalid("manifest has no media type".into())),
    };
    let kind = match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => Kind::Image,
        DOCKER_LIST | OCI_INDEX => Kind::Index,
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => {
            return Err(ManifestError::Unsupported(media_type))
        }
        _ => return Err(ManifestError::Unsupported(media_type)),
    };
    if raw.schema_version != Some(2) {
        return Err(ManifestError::Invalid("schemaVersion must be 2".into()));
    }
    let subject = raw.subject.map(|s| descriptor(s, "subject")).transpose()?;
    match kind {
        Kind::Image => {
            if raw.manifests.is_some() {
                return Err(ManifestError::Invalid(
                    "an image manifest cannot list manifests".into(),
                ));
            }
            let config = descriptor(
                raw.config
                    .ok_or_else(|| ManifestError::Invalid("manifest has no config".into()))?,
                "config",
            )?;
            let layers = raw
                .layers
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, l)| descriptor(l, &format!("layer {i}")))
                .collect::<Result<Vec<_>, _>>()?;
            if media_type == DOCKER_MANIFEST && layers.is_empty() {
                return Err(ManifestError::Invalid("manifest has no layers".into()));
            }
            let artifact_type = raw
                .artifact_type
                .or_else(|| Some(config.media_type.clone()).filter(|m| !m.is_empty()));
            Ok(Parsed {
                media_type,
                kind,
                config: Some(config),
                layers,
                manifests: Vec::new(),
                subject,
                artifact_type,
                annotations: raw.annotations,
            })
        }
        Kind::Index => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(ManifestError::Invalid(
                    "an index cannot have a config or layers".into(),
                ));
            }
            let manifests = raw
                .manifests
                .ok_or_else(|| ManifestError::Invalid("index has no manifests".into()))?
                .into_iter()
                .enumerate()
                .map(|(i, m)| descriptor(m, &format!("manifest {i}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Parsed {
                media_type,
                kind,
                config: None,
                layers: Vec::new(),
                manifests,
                subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
            })
        }
    }
}

/// True for tags as the Distribution spec and ECR accept them.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// True for repository names as ECR's model accepts them.
pub fn valid_repository_name(name: &str) -> bool {
    if name.len() < 2 || name.len() > 256 {
        return false;
    }
    name.split('/').all(|component| {
        // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
        let b = component.as_bytes();
        if b.is_empty() {
            return false;
        }
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(n: u8) -> String {
        Digest::of(&[n]).to_string()
    }

    #[test]
    fn docker_manifest_references() {
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d(1), "size": 10},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d(2), "size": 20},
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": d(3), "size": 30}
            ]
        });
        let p = parse(m.to_string().as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(p.kind, Kind::Image);
        assert_eq!(p.size(), 60);
        assert_eq!(p.required_blobs().len(), 2);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.docker.container.image.v1+json")
        );
    }

    #[test]
    fn oci_index_without_media_type_and_subject() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d(1), "size": 5}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d(2), "size": 7}
        });
        let p = parse(m.to_string().as_bytes(), None).unwrap();
        assert_eq!(p.media_type, OCI_INDEX);
        assert_eq!(p.manifests.len(), 1);
        assert_eq!(p.subject.unwrap().digest.to_string(), d(2));
    }

    #[test]
    fn refusals() {
        assert!(parse(b"not json", None).is_err());
        let schema1 = serde_json::json!({"schemaVersion": 1, "mediaType": DOCKER_SCHEMA1_SIGNED});
        assert!(matches!(
            parse(schema1.to_string().as_bytes(), None),
            Err(ManifestError::Unsupported(_))
        ));
        let bad_digest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}, "layers": []
        });
        assert!(parse(bad_digest.to_string().as_bytes(), None).is_err());
        let mismatch = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "x", "digest": d(1), "size": 1}, "layers": []
        });
        assert!(parse(mismatch.to_string().as_bytes(), Some(DOCKER_MANIFEST)).is_err());
    }

    #[test]
    fn names_and_tags() {
        assert!(valid_repository_name("team/app"));
        assert!(valid_repository_name("a__b-c.d"));
        assert!(!valid_repository_name("Team"));
        assert!(!valid_repository_name("a//b"));
        assert!(!valid_repository_name("a/"));
        assert!(!valid_repository_name("a"));
        assert!(!valid_repository_name("a._b"));
        assert!(valid_tag("v1.0_rc-1"));
        assert!(!valid_tag(".hidden"));
        assert!(!valid_tag(&"x".repeat(129)));
    }
}
