//! AWS Signature Version 4 verification for Berth's edge.
//!
//! Every request to Berth is signed the way the `aws` CLI, boto3 and the AWS
//! SDKs sign requests to AWS. This crate checks those signatures: it is a
//! pure library (no I/O, no clock reads: the caller passes `now`) built
//! around [`Verifier::verify`].
//!
//! Both places a signature can live are supported:
//!
//! * the `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
//!   Signature=…` header, dated by `X-Amz-Date` (or `Date`), accepted within
//!   15 minutes of `now` either way;
//! * presigned URLs (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
//!   `X-Amz-Expires` up to 7 days, `X-Amz-SignedHeaders`, `X-Amz-Signature`).
//!
//! Canonicalization follows the SigV4 specification and is checked against
//! AWS's published test suite and, by property tests, against the
//! `aws-sigv4` signer used by the Rust SDK. Failures come back as
//! [`VerifyError`], whose [`aws_message`](VerifyError::aws_message),
//! [`error_code`](VerifyError::error_code) and
//! [`http_status`](VerifyError::http_status) give what AWS would answer.
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::SystemTime;
//! use berth_sigv4::{Secret, SignedRequest, Verifier, VerifyOptions};
//!
//! let mut keys = HashMap::new();
//! keys.insert("AKIDEXAMPLE".to_owned(), Secret::new("secret", "arn:aws:iam::000000000000:root"));
//! let verifier = Verifier::new(keys);
//! let headers = http::HeaderMap::new();
//! let request = SignedRequest {
//!     method: "GET",
//!     path: "/",
//!     query: None,
//!     headers: &headers,
//!     payload_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
//!     authority: None,
//! };
//! let err = verifier
//!     .verify(&request, &VerifyOptions::default(), SystemTime::now())
//!     .unwrap_err();
//! assert_eq!(err.aws_message(), "Missing Authentication Token");
//! ```

pub mod canonical;
mod error;
mod key;
mod verify;

pub use error::{MismatchDetail, ScopeMismatch, VerifyError};
pub use verify::{
    Prechecked, Secret, SecretLookup, SignedRequest, TokenRejection, Verified, Verifier,
    VerifyOptions, ALGORITHM, MAX_CLOCK_SKEW, MAX_PRESIGNED_EXPIRES_SECS, UNSIGNED_PAYLOAD,
};

/// Lower-case hex SHA-256 of `payload`, the form [`SignedRequest::payload_sha256`] takes.
pub fn payload_sha256(payload: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(payload))
}
