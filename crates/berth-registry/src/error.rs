//! Errors of the registry, in three vocabularies:
//!
//! - [`RegistryError`]: what the shared core (storage, metadata) can fail
//!   with, as Rust errors (lowercase messages).
//! - [`EcrError`]: an ECR JSON API error, carrying its `__type` name and
//!   HTTP status (ECR's codes are not part of `berth_model::ErrorCode`,
//!   which is ECS's closed set). Messages use ECR's wording.
//! - [`OciError`]: a Distribution API error with its OCI code
//!   (`BLOB_UNKNOWN`, ...), rendered as `{"errors":[{code,message,detail}]}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::digest::Digest;

/// Failures of the registry core. API layers map each variant to their
/// own wire error.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("repository {0} does not exist")]
    RepositoryNotFound(String),
    #[error("image not found")]
    ImageNotFound,
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    #[error("manifest references unknown blobs: {0:?}")]
    BlobsUnknown(Vec<Digest>),
    #[error("manifest references unknown manifests: {0:?}")]
    ManifestsUnknown(Vec<Digest>),
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("tag {tag} is immutable in repository {repository}")]
    TagImmutable { tag: String, repository: String },
    #[error("upload {0} not found")]
    UploadNotFound(String),
    #[error("upload offset mismatch: at {expected}, got a chunk at {got}")]
    UploadOffset { expected: u64, got: u64 },
    /// A manifest descriptor's `size` is not the size of the blob it
    /// names.
    #[error("descriptor of {digest} says {declared} bytes, the blob has {actual}")]
    BlobSizeMismatch {
        digest: Digest,
        declared: i64,
        actual: i64,
    },
    /// The disk (or the quota) holding the registry's files is full
    /// (`ENOSPC`, `EDQUOT`).
    #[error("no space left on the registry's storage: {0}")]
    StorageFull(std::io::Error),
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("store failure: {0}")]
    Store(String),
    /// Any other I/O failure (a full disk is [`RegistryError::StorageFull`]).
    #[error("i/o failure: {0}")]
    Io(std::io::Error),
    #[error("internal failure: {0}")]
    Internal(String),
    /// An ECR API error decided inside a store transaction.
    #[error("{0}")]
    Ecr(EcrError),
}

impl From<std::io::Error> for RegistryError {
    /// Sorts out a full disk, which clients must hear about as such (not
    /// as an unknown error), from other I/O failures.
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => RegistryError::StorageFull(err),
            _ => RegistryError::Io(err),
        }
    }
}

impl From<berth_store::StoreError> for RegistryError {
    fn from(err: berth_store::StoreError) -> Self {
        RegistryError::Store(err.to_string())
    }
}

/// An ECR JSON API error: `{"__type": code, "message": message}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EcrError {
    /// The `__type` on the wire, e.g. `RepositoryNotFoundException`.
    pub code: &'static str,
    pub message: String,
}

impl EcrError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }
    pub fn server(message: impl Into<String>) -> Self {
        Self::new("ServerException", message)
    }
    /// The HTTP status ECR answers this error with.
    pub fn http_status(&self) -> u16 {
        match self.code {
            "ServerException" => 500,
            "UnknownOperationException" | "SerializationException" => 400,
            _ => 400,
        }
    }
    /// The JSON body ECR sends.
    pub fn body(&self) -> String {
        serde_json::json!({ "__type": self.code, "message": self.message }).to_string()
    }
}

/// What a client hears when the registry's disk is full, on either API.
pub const STORAGE_FULL_MESSAGE: &str =
    "no space left on the registry's storage; free space or add capacity and retry";

/// A Distribution API error.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct OciError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Value,
    /// Extra headers (the `WWW-Authenticate` challenge of a 401).
    pub headers: Vec<(&'static str, String)>,
}

impl OciError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
    pub fn blob_unknown(digest: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
        .with_detail(serde_json::json!({ "digest": digest }))
    }
    pub fn name_unknown(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        )
        .with_detail(serde_json::json!({ "name": name }))
    }
    pub fn manifest_unknown(reference: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        )
        .with_detail(serde_json::json!({ "reference": reference }))
    }
    pub fn digest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }
    pub fn upload_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        )
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }
    /// The registry's disk is full: 507, so clients and people see why.
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "UNKNOWN",
            STORAGE_FULL_MESSAGE,
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "unknown error",
        )
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let mut entry = serde_json::json!({ "code": self.code, "message": self.message });
        if !self.detail.is_null() {
            entry["detail"] = self.detail;
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut resp = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

impl From<RegistryError> for OciError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::RepositoryNotFound(name) => OciError::name_unknown(&name),
            RegistryError::ImageNotFound => OciError::manifest_unknown(""),
            RegistryError::ManifestInvalid(m) => {
                OciError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "manifest invalid")
                    .with_detail(serde_json::json!({ "reason": m }))
            }
            RegistryError::BlobsUnknown(d) | RegistryError::ManifestsUnknown(d) => {
                let first = d.first().map(|d| d.to_string()).unwrap_or_default();
                OciError::new(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    "blob unknown to registry",
                )
                .with_detail(serde_json::json!({ "digest": first }))
            }
            RegistryError::DigestMismatch { expected, actual } => OciError::digest_invalid(
                "provided digest did not match uploaded content",
            )
            .with_detail(serde_json::json!({ "expected": expected, "actual": actual })),
            RegistryError::DigestInvalid(m) => OciError::digest_invalid(m),
            RegistryError::TagImmutable { tag, repository } => OciError::new(
                StatusCode::BAD_REQUEST,
                "TAG_INVALID",
                format!(
                    "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable."
                ),
            ),
            RegistryError::UploadNotFound(_) => OciError::upload_unknown(),
            // distribution/distribution's code and status for a chunk
            // that does not continue the upload.
            RegistryError::UploadOffset { expected, got } => OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                "invalid content range",
            )
            .with_detail(serde_json::json!({ "offset": expected, "start": got })),
            RegistryError::BlobSizeMismatch {
                digest,
                declared,
                actual,
            } => OciError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "manifest invalid")
                .with_detail(serde_json::json!({
                    "reason": "descriptor size does not match the blob",
                    "digest": digest.to_string(),
                    "size": declared,
                    "blobSize": actual,
                })),
            RegistryError::StorageFull(err) => {
                tracing::error!(error = %err, "registry storage is full");
                OciError::storage_full()
            }
            other => {
                tracing::error!(error = %other, "registry failure");
                OciError::internal()
            }
        }
    }
}
