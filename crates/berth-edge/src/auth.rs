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
        let request = SignedRequest {
            method,
            path: uri.path(),
            query: uri.query(),
            headers,
            payload_sha256: &payload,
            authority: uri.authority().map(|a| a.as_str()),
        };
        let options = VerifyOptions {
            s3_style_path: false,
            expected_service: service,
        };
        match self.verifier.verify(&request, &options, SystemTime::now()) {
            Ok(v) if v.region != self.region => {
                let code = match protocol {
                    Protocol::Json => ErrorCode::InvalidSignatureException,
                    Protocol::Query => ErrorCode::SignatureDoesNotMatch,
                };
                Err(ApiError::new(
                    code,
                    format!(
                        "Credential should be scoped to a valid region, not '{}'.",
                        v.region
                    ),
                ))
            }
            Ok(v) => Ok(Caller {
                instance: self
                    .verifier
                    .lookup()
                    .get(&v.access_key_id)
                    .and_then(|k| k.instance),
                principal_arn: v.principal,
                access_key_id: v.access_key_id,
            }),
            Err(err) => {
                tracing::debug!(error = %err, "request authentication failed");
                Err(to_api_error(&err, protocol))
            }
        }
    }
}

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
