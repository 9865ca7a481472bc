//! Verification failures, one variant per failure AWS reports.
//!
//! `Display` gives a short lower-case description for logs. What goes on the
//! wire comes from [`VerifyError::error_code`], [`VerifyError::http_status`]
//! and [`VerifyError::aws_message`], which follow what AWS JSON-protocol
//! services (ECS, ECR) answer, AWS wording included.

use std::borrow::Cow;

/// The canonical request and string-to-sign the server computed, kept for
/// debugging a [`VerifyError::SignatureMismatch`]. They contain nothing
/// secret (only what the client sent), but they can be large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MismatchDetail {
    /// The canonical request the server computed.
    pub canonical_request: String,
    /// The string to sign the server computed.
    pub string_to_sign: String,
}

/// The credential scope checks that failed (each `Some` is one failure).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeMismatch {
    /// The service the request should have been scoped to, when the scope
    /// named another one.
    pub expected_service: Option<String>,
    /// The terminator found instead of `aws4_request`.
    pub terminator: Option<String>,
    /// `(date in scope, request timestamp)` when they disagree.
    pub date: Option<(String, String)>,
}

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Neither an `Authorization: AWS4-…` header nor `X-Amz-Algorithm` in
    /// the query.
    #[error("request carries no aws sigv4 authentication")]
    MissingAuthenticationToken,

    /// Both an `Authorization` header and presigned query parameters.
    #[error("request has both an authorization header and presigned query parameters")]
    AmbiguousAuthentication,

    /// The `Authorization` header lacks parameters, or there is no date
    /// header. `missing` lists the absent parameter names in AWS order.
    #[error("authorization header is incomplete (missing {missing:?}, date header missing: {date_missing})")]
    IncompleteAuthorizationHeader {
        /// Missing parameter names: `Credential`, `Signature`, `SignedHeaders`.
        missing: Vec<&'static str>,
        /// Neither `X-Amz-Date` nor `Date` was present.
        date_missing: bool,
        /// The header as received (echoed by AWS).
        authorization: String,
    },

    /// An `Authorization` header element without `=`.
    #[error("authorization header element {pair:?} is not a key=value pair")]
    MalformedAuthorizationPair {
        /// The offending element.
        pair: String,
        /// The header as received.
        authorization: String,
    },

    /// Presigned query parameters are missing.
    #[error("presigned query is missing {missing:?}")]
    IncompleteQueryParameters {
        /// Missing parameter names, in AWS order.
        missing: Vec<&'static str>,
    },

    /// An algorithm other than `AWS4-HMAC-SHA256`.
    #[error("unsupported signing algorithm {algorithm:?}")]
    UnsupportedAlgorithm {
        /// The algorithm named by the request.
        algorithm: String,
    },

    /// `X-Amz-Date` (or `Date`) is not a valid timestamp.
    #[error("request date {value:?} is not an iso-8601 basic timestamp")]
    MalformedDate {
        /// The value received.
        value: String,
    },

    /// The credential is not `akid/date/region/service/terminator`.
    #[error("credential {credential:?} does not have five slash-separated elements")]
    MalformedCredential {
        /// The credential as received.
        credential: String,
    },

    /// `X-Amz-Expires` is not a number, or is over 604800 (7 days).
    #[error("invalid presigned expiry {value:?}")]
    InvalidExpires {
        /// The value received.
        value: String,
    },

    /// `host` is not among the signed headers.
    #[error("the host header is not signed")]
    HostNotSigned,

    /// An `X-Amz-Security-Token` header is present but not signed.
    #[error("the x-amz-security-token header is not signed")]
    SecurityTokenNotSigned,

    /// Wrong terminator, wrong service, or scope date differing from the
    /// request date.
    #[error("credential scope mismatch: {0:?}")]
    CredentialScopeMismatch(ScopeMismatch),

    /// Unknown access key id.
    #[error("unknown access key id")]
    UnrecognizedClient,

    /// The session token is missing, unknown, or does not belong to the key.
    #[error("invalid session token")]
    InvalidSecurityToken,

    /// The session token has expired.
    #[error("expired session token")]
    ExpiredSecurityToken,

    /// The signature does not match.
    #[error("signature mismatch")]
    SignatureMismatch(Box<MismatchDetail>),

    /// The request date is more than the allowed skew in the past.
    #[error("signature expired: {signed} is earlier than {earliest}")]
    SignatureExpired {
        /// Request timestamp (ISO-8601 basic).
        signed: String,
        /// Earliest acceptable timestamp (`now` minus the skew).
        earliest: String,
        /// The server's `now`.
        now: String,
    },

    /// The request date is more than the allowed skew in the future.
    #[error("signature not yet current: {signed} is later than {latest}")]
    SignatureNotYetCurrent {
        /// Request timestamp (ISO-8601 basic).
        signed: String,
        /// Latest acceptable timestamp (`now` plus the skew).
        latest: String,
        /// The server's `now`.
        now: String,
    },

    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`.
    #[error("presigned request expired at {expired_at} (now {now})")]
    PresignedExpired {
        /// When it expired (ISO-8601 basic).
        expired_at: String,
        /// The server's `now`.
        now: String,
    },

    /// `x-amz-content-sha256` is neither `UNSIGNED-PAYLOAD` nor the SHA-256
    /// of the body.
    #[error("x-amz-content-sha256 does not match the payload")]
    ContentSha256Mismatch,
}

const MSG_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
const MSG_BAD_TOKEN: &str = "The security token included in the request is invalid.";

impl VerifyError {
    /// The error code, as the `__type` of an AWS JSON-protocol error body.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteAuthorizationHeader { .. }
            | Self::MalformedAuthorizationPair { .. }
            | Self::IncompleteQueryParameters { .. }
            | Self::UnsupportedAlgorithm { .. }
            | Self::MalformedDate { .. }
            | Self::MalformedCredential { .. }
            | Self::InvalidExpires { .. } => "IncompleteSignatureException",
            Self::AmbiguousAuthentication
            | Self::HostNotSigned
            | Self::SecurityTokenNotSigned
            | Self::CredentialScopeMismatch(_)
            | Self::SignatureMismatch(_)
            | Self::SignatureExpired { .. }
            | Self::SignatureNotYetCurrent { .. } => "InvalidSignatureException",
            Self::UnrecognizedClient | Self::InvalidSecurityToken => "UnrecognizedClientException",
            Self::ExpiredSecurityToken => "ExpiredTokenException",
            Self::PresignedExpired { .. } => "AccessDeniedException",
            Self::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status AWS JSON-protocol services answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::PresignedExpired { .. } => 403,
            _ => 400,
        }
    }

    /// The message AWS gives for this failure, in AWS's wording.
    pub fn aws_message(&self) -> Cow<'static, str> {
        match self {
            Self::MissingAuthenticationToken => Cow::Borrowed("Missing Authentication Token"),
            Self::AmbiguousAuthentication => Cow::Borrowed(
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
            ),
            Self::IncompleteAuthorizationHeader {
                missing,
                date_missing,
                authorization,
            } => {
                let mut m = String::new();
                for p in missing {
                    m.push_str("Authorization header requires '");
                    m.push_str(p);
                    m.push_str("' parameter. ");
                }
                if *date_missing {
                    m.push_str(
                        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
                    );
                }
                m.push_str("Authorization=");
                m.push_str(authorization);
                Cow::Owned(m)
            }
            Self::MalformedAuthorizationPair {
                pair,
                authorization,
            } => Cow::Owned(format!(
                "'{pair}' not a valid key=value pair (missing equal-sign) in Authorization header: '{authorization}'."
            )),
            Self::IncompleteQueryParameters { missing } => {
                let mut m = String::new();
                for p in missing {
                    m.push_str("AWS query-string parameters must include '");
                    m.push_str(p);
                    m.push_str("'. ");
                }
                m.push_str("Re-examine the query-string parameters.");
                Cow::Owned(m)
            }
            Self::UnsupportedAlgorithm { algorithm } => Cow::Owned(format!(
                "Unsupported AWS 'algorithm': '{algorithm}' (only AWS4-HMAC-SHA256 for now). "
            )),
            Self::MalformedDate { value } => Cow::Owned(format!(
                "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
            )),
            Self::MalformedCredential { credential } => Cow::Owned(format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
            )),
            Self::InvalidExpires { value } => {
                if value.parse::<u64>().is_ok() {
                    Cow::Borrowed(
                        "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                    )
                } else {
                    Cow::Borrowed("X-Amz-Expires should be a number")
                }
            }
            Self::HostNotSigned => Cow::Borrowed(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ),
            Self::SecurityTokenNotSigned => Cow::Borrowed(
                "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.",
            ),
            Self::CredentialScopeMismatch(s) => {
                let mut m = String::new();
                if let Some(service) = &s.expected_service {
                    m.push_str("Credential should be scoped to correct service: '");
                    m.push_str(service);
                    m.push_str("'. ");
                }
                if let Some(term) = &s.terminator {
                    m.push_str(
                        "Credential should be scoped with a valid terminator: 'aws4_request', not '",
                    );
                    m.push_str(term);
                    m.push_str("'. ");
                }
                if let Some((scope_date, timestamp)) = &s.date {
                    let day = timestamp.get(..8).unwrap_or(timestamp);
                    m.push_str(&format!(
                        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{day}', from '{timestamp}'."
                    ));
                }
                Cow::Owned(m)
            }
            Self::UnrecognizedClient | Self::InvalidSecurityToken => Cow::Borrowed(MSG_BAD_TOKEN),
            Self::ExpiredSecurityToken => {
                Cow::Borrowed("The security token included in the request is expired")
            }
            Self::SignatureMismatch(_) => Cow::Borrowed(MSG_MISMATCH),
            Self::SignatureExpired {
                signed,
                earliest,
                now,
            } => Cow::Owned(format!(
                "Signature expired: {signed} is now earlier than {earliest} ({now} - 15 min.)"
            )),
            Self::SignatureNotYetCurrent {
                signed,
                latest,
                now,
            } => Cow::Owned(format!(
                "Signature not yet current: {signed} is still later than {latest} ({now} + 15 min.)"
            )),
            Self::PresignedExpired { .. } => Cow::Borrowed("Request has expired"),
            Self::ContentSha256Mismatch => Cow::Borrowed(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ),
        }
    }
}
