//! Authentication of API requests: SigV4 verification (by `berth-sigv4`)
//! against the accepted access keys, turned into a [`Caller`] or an API
//! error in the vocabulary of the protocol the request used.

use std::time::SystemTime;

use axum::http::{HeaderMap, Uri};
use berth_control::Caller;
use berth_model::{ApiError, ErrorCode};
use berth_sigv4::{Secret, SecretLookup, SignedRequest, Verifier, VerifyError, VerifyOptions};

use crate::credentials::Credentials;

impl SecretLookup for Credentials {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        self.get(access_key_id)
            .map(|k| Secret::new(k.secret_access_key, k.principal_arn))
    }
}

/// The protocol family an error must be spelled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.x (`...Exception` codes).
    Json,
    /// The query protocol (STS spellings).
    Query,
}

#[derive(Debug)]
pub struct Authenticator {
    verifier: Verifier<Credentials>,
    /// The region signatures must be scoped to.
    region: String,
}

impl Authenticator {
    pub fn new(credentials: Credentials, region: impl Into<String>) -> Self {
        Self {
            verifier: Verifier::new(credentials),
            region: region.into(),
        }
    }

    /// Verifies the request's signature now. `service` is the signing name
    /// the credential scope must carry, when the route is known.
    pub fn authenticate(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        service: Option<&str>,
        protocol: Protocol,
    ) -> Result<Caller, ApiError> {
        let payload = berth_sigv4::payload_sha256(body);
        self.verify(method, uri, headers, &payload, service, protocol)
            .map_err(|err| match err {
                Refusal::Api(e) => e,
                Refusal::Signature(e) => {
                    tracing::debug!(error = %e, "request authentication failed");
                    to_api_error(&e, protocol)
                }
            })
    }

    /// Checks everything of the request's signature that its head decides,
    /// before a byte of its body is read: an `Authorization` header or
    /// presigned query that parses, a known access key, a date within the
    /// window, the scope's service and region, and, when the client declares
    /// the body's hash (`x-amz-content-sha256`), the signature itself. Only a
    /// signature that could still match once the body is hashed passes
    /// undecided; [`Authenticator::authenticate`] decides it then.
    pub fn precheck(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        service: Option<&str>,
        protocol: Protocol,
    ) -> Result<(), ApiError> {
        let declared = headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        if let Some(declared) = declared {
            // The signature covers a hash the client declared: it can be
            // checked in full now.
            return match self.verify(method, uri, headers, declared, service, protocol) {
                Ok(_) => Ok(()),
                Err(Refusal::Api(e)) => Err(e),
                Err(Refusal::Signature(e)) => {
                    tracing::debug!(error = %e, "request refused before its body was read");
                    Err(to_api_error(&e, protocol))
                }
            };
        }
        // Otherwise everything but the signature, which needs the body's
        // hash; no HMAC is computed twice for one request.
        let request = SignedRequest {
            method,
            path: uri.path(),
            query: uri.query(),
            headers,
            payload_sha256: UNKNOWN_PAYLOAD,
            authority: uri.authority().map(|a| a.as_str()),
        };
        let options = VerifyOptions {
            s3_style_path: false,
            expected_service: service,
        };
        match self
            .verifier
            .precheck(&request, &options, SystemTime::now())
        {
            Ok(p) if p.region != self.region => Err(wrong_region(&p.region, protocol)),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "request refused before its body was read");
                Err(to_api_error(&e, protocol))
            }
        }
    }

    fn verify(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        payload_sha256: &str,
        service: Option<&str>,
        protocol: Protocol,
    ) -> Result<Caller, Refusal> {
        let request = SignedRequest {
            method,
            path: uri.path(),
            query: uri.query(),
            headers,
            payload_sha256,
            authority: uri.authority().map(|a| a.as_str()),
        };
        let options = VerifyOptions {
            s3_style_path: false,
            expected_service: service,
        };
        match self.verifier.verify(&request, &options, SystemTime::now()) {
            Ok(v) if v.region != self.region => {
                Err(Refusal::Api(wrong_region(&v.region, protocol)))
            }
            Ok(v) => Ok(Caller {
                instance: self.verifier.lookup().instance_scope(&v.access_key_id),
                principal_arn: v.principal,
                access_key_id: v.access_key_id,
            }),
            Err(err) => Err(Refusal::Signature(err)),
        }
    }
}

/// A signature scoped to a region this edge does not serve.
fn wrong_region(region: &str, protocol: Protocol) -> ApiError {
    let code = match protocol {
        Protocol::Json => ErrorCode::InvalidSignatureException,
        Protocol::Query => ErrorCode::SignatureDoesNotMatch,
    };
    ApiError::new(
        code,
        format!("Credential should be scoped to a valid region, not '{region}'."),
    )
}

/// Why a request was refused: its signature, or a check of the edge's own.
enum Refusal {
    Signature(VerifyError),
    Api(ApiError),
}

/// A payload hash no body has (the SHA-256 of nothing is `e3b0…`), for
/// checking a signature before the body is read.
const UNKNOWN_PAYLOAD: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Maps a verification failure to the code AWS uses for it in `protocol`.
pub fn to_api_error(err: &VerifyError, protocol: Protocol) -> ApiError {
    use ErrorCode::*;
    let json = match err.error_code() {
        "MissingAuthenticationTokenException" => MissingAuthenticationTokenException,
        "IncompleteSignatureException" => IncompleteSignatureException,
        "InvalidSignatureException" => InvalidSignatureException,
        "UnrecognizedClientException" => UnrecognizedClientException,
        "ExpiredTokenException" => ExpiredTokenException,
        "AccessDeniedException" => AccessDeniedException,
        "XAmzContentSHA256Mismatch" => XAmzContentSHA256Mismatch,
        _ => InvalidSignatureException,
    };
    let code = match protocol {
        Protocol::Json => json,
        Protocol::Query => match json {
            MissingAuthenticationTokenException => MissingAuthenticationToken,
            IncompleteSignatureException => IncompleteSignature,
            InvalidSignatureException => SignatureDoesNotMatch,
            UnrecognizedClientException => InvalidClientTokenId,
            ExpiredTokenException => ExpiredToken,
            other => other,
        },
    };
    ApiError::new(code, err.aws_message().into_owned())
}
