//! The verifier: parses the signature (header or presigned query), checks
//! dates and credential scope, looks the key up, recomputes the signature
//! and compares it in constant time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::canonical::{
    canonical_headers_into, canonical_query_into, canonical_uri_into, query_decode, raw_pairs,
};
use crate::error::{MismatchDetail, ScopeMismatch, VerifyError};
use crate::key::{KeyCache, SigningKey};

/// The only algorithm SigV4 defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Payload hash value a client uses to leave the body unsigned.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Largest `X-Amz-Expires` AWS accepts: 7 days.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;
/// Allowed clock skew between client and server.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The secret behind an access key id, as returned by a [`SecretLookup`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The secret access key.
    pub secret_access_key: String,
    /// Who the key belongs to, opaque to this crate (an IAM user ARN later).
    pub principal: String,
    /// For temporary credentials: the session token the request must carry.
    /// `None` for long-term keys (a request then must carry no token).
    pub session_token: Option<String>,
}

impl Secret {
    /// A long-term key without session token.
    pub fn new(secret_access_key: impl Into<String>, principal: impl Into<String>) -> Self {
        Self {
            secret_access_key: secret_access_key.into(),
            principal: principal.into(),
            session_token: None,
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("secret_access_key", &"** redacted **")
            .field("principal", &self.principal)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Why [`SecretLookup::check_session_token`] refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// Missing, unexpected, or not the key's token.
    Invalid,
    /// The token (temporary credential) has expired.
    Expired,
}

/// Where the verifier finds secrets; implement it over the credential store.
pub trait SecretLookup {
    /// The secret for `access_key_id`, or `None` when the key is unknown.
    fn secret(&self, access_key_id: &str) -> Option<Secret>;

    /// Decides whether the session token carried by a correctly signed
    /// request (`presented`, from `X-Amz-Security-Token`) is acceptable for
    /// `secret`. The default requires it to equal `secret.session_token`
    /// (both absent is fine), compared in constant time.
    fn check_session_token(
        &self,
        access_key_id: &str,
        secret: &Secret,
        presented: Option<&str>,
    ) -> Result<(), TokenRejection> {
        let _ = access_key_id;
        match (secret.session_token.as_deref(), presented) {
            (None, None) => Ok(()),
            (Some(expected), Some(presented))
                if constant_time_eq(expected.as_bytes(), presented.as_bytes()) =>
            {
                Ok(())
            }
            _ => Err(TokenRejection::Invalid),
        }
    }
}

impl<T: SecretLookup + ?Sized> SecretLookup for &T {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        (**self).secret(access_key_id)
    }
    fn check_session_token(
        &self,
        access_key_id: &str,
        secret: &Secret,
        presented: Option<&str>,
    ) -> Result<(), TokenRejection> {
        (**self).check_session_token(access_key_id, secret, presented)
    }
}

impl<T: SecretLookup + ?Sized> SecretLookup for Arc<T> {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        (**self).secret(access_key_id)
    }
    fn check_session_token(
        &self,
        access_key_id: &str,
        secret: &Secret,
        presented: Option<&str>,
    ) -> Result<(), TokenRejection> {
        (**self).check_session_token(access_key_id, secret, presented)
    }
}

/// A fixed table of keys, handy for tests and the bootstrap admin key.
impl<S: std::hash::BuildHasher> SecretLookup for HashMap<String, Secret, S> {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        self.get(access_key_id).cloned()
    }
}

/// Constant-time byte-string equality (length is not hidden).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request as received, borrowed from the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// HTTP method (`req.method().as_str()`).
    pub method: &'a str,
    /// Raw path as received, still percent-encoded (`req.uri().path()`).
    pub path: &'a str,
    /// Raw query string without `?` (`req.uri().query()`).
    pub query: Option<&'a str>,
    /// All request headers.
    pub headers: &'a HeaderMap,
    /// Lower-case hex SHA-256 of the body, computed by the caller.
    pub payload_sha256: &'a str,
    /// URI authority, used as `host` when there is no `Host` header (HTTP/2
    /// `:authority`); `req.uri().authority().map(|a| a.as_str())`.
    pub authority: Option<&'a str>,
}

/// Per-request verification options.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// Use the raw path as the canonical URI (S3 rules: no normalization,
    /// no second encoding). `false` is right for ECS, ECR's JSON API and
    /// every other non-S3 AWS service.
    pub s3_style_path: bool,
    /// When set, the credential scope must name this service.
    pub expected_service: Option<&'a str>,
}

/// A successfully verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// The principal from the key's [`Secret`].
    pub principal: String,
    /// Region from the credential scope (not checked).
    pub region: String,
    /// Service from the credential scope.
    pub service: String,
    /// Request timestamp, ISO-8601 basic (`20150830T123600Z`).
    pub date: String,
    /// `X-Amz-Security-Token` as presented (header or query).
    pub session_token: Option<String>,
    /// The signature came in the query string (presigned URL).
    pub presigned: bool,
    /// The client signed `UNSIGNED-PAYLOAD`: the body is not authenticated.
    pub unsigned_payload: bool,
}

/// What [`Verifier::precheck`] established from a request's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prechecked {
    /// The access key id named by the credential (a known one).
    pub access_key_id: String,
    /// Region from the credential scope (not checked).
    pub region: String,
    /// Service from the credential scope.
    pub service: String,
}

/// The head checks' result, for the signature check that follows.
struct Head {
    auth: AuthParams,
    akid: String,
    scope_date: String,
    region: String,
    service: String,
    secret: Secret,
}

/// Verifies SigV4 signatures against a [`SecretLookup`].
///
/// Cheap to share (`Arc<Verifier<_>>`); `verify` takes `&self` and is safe to
/// call from many threads.
pub struct Verifier<L> {
    lookup: L,
    cache: KeyCache,
}

impl<L> std::fmt::Debug for Verifier<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

/// The signature's parameters, from either location.
struct AuthParams {
    presigned: bool,
    algorithm: String,
    credential: String,
    signed_headers: String,
    signature: String,
    /// ISO-8601 basic timestamp used in the string to sign.
    timestamp: String,
    signed_at: OffsetDateTime,
    expires: Option<u64>,
    session_token: Option<String>,
}

fn fmt_basic(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_basic(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    let hour = u8::try_from(num(9..11)?).ok()?;
    let minute = u8::try_from(num(11..13)?).ok()?;
    let second = u8::try_from(num(13..15)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let t = time::Time::from_hms(hour, minute, second).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// Parses an HTTP `Date` header (RFC 7231 IMF-fixdate, or RFC 2822).
fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Some(rest) = s.strip_suffix(" GMT") {
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second]"
        );
        if let Ok(t) = time::PrimitiveDateTime::parse(rest, &fmt) {
            return Some(t.assume_utc());
        }
    }
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822).ok()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl<L: SecretLookup> Verifier<L> {
    /// A verifier over `lookup`.
    pub fn new(lookup: L) -> Self {
        Self {
            lookup,
            cache: KeyCache::new(),
        }
    }

    /// The lookup this verifier uses.
    pub fn lookup(&self) -> &L {
        &self.lookup
    }

    /// Checks what the request's head alone decides, before any payload
    /// hash is known: parameters that parse, the clock window, the signed
    /// headers, the algorithm, the credential scope and a known key. The
    /// signature itself is not computed (see [`Verifier::verify`]), so this
    /// is cheap enough to run on every request before its body is read.
    pub fn precheck(
        &self,
        request: &SignedRequest<'_>,
        options: &VerifyOptions<'_>,
        now: SystemTime,
    ) -> Result<Prechecked, VerifyError> {
        let head = self.head(request, options, OffsetDateTime::from(now))?;
        Ok(Prechecked {
            access_key_id: head.akid,
            region: head.region,
            service: head.service,
        })
    }

    fn head(
        &self,
        request: &SignedRequest<'_>,
        options: &VerifyOptions<'_>,
        now: OffsetDateTime,
    ) -> Result<Head, VerifyError> {
        let auth = parse_auth(request)?;

        // Clock checks.
        let skew = time::Duration::try_from(MAX_CLOCK_SKEW).unwrap_or(time::Duration::ZERO);
        if auth.signed_at > now + skew {
            return Err(VerifyError::SignatureNotYetCurrent {
                signed: auth.timestamp.clone(),
                latest: fmt_basic(now + skew),
                now: fmt_basic(now),
            });
        }
        match auth.expires {
            Some(expires) => {
                let expiry = auth.signed_at
                    + time::Duration::seconds(i64::try_from(expires).unwrap_or(i64::MAX));
                if now > expiry {
                    return Err(VerifyError::PresignedExpired {
                        expired_at: fmt_basic(expiry),
                        now: fmt_basic(now),
                    });
                }
            }
            None => {
                if auth.signed_at < now - skew {
                    return Err(VerifyError::SignatureExpired {
                        signed: auth.timestamp.clone(),
                        earliest: fmt_basic(now - skew),
                        now: fmt_basic(now),
                    });
                }
            }
        }

        // Required signed headers.
        let signed = |name: &str| {
            auth.signed_headers
                .split(';')
                .any(|h| h.eq_ignore_ascii_case(name))
        };
        if !signed("host") {
            return Err(VerifyError::HostNotSigned);
        }
        if !auth.presigned
            && request.headers.contains_key("x-amz-security-token")
            && !signed("x-amz-security-token")
        {
            return Err(VerifyError::SecurityTokenNotSigned);
        }

        if auth.algorithm != ALGORITHM {
            return Err(VerifyError::UnsupportedAlgorithm {
                algorithm: auth.algorithm,
            });
        }

        // Credential scope.
        let parts: Vec<&str> = auth.credential.trim_end_matches('/').split('/').collect();
        let [akid, scope_date, region, service, terminator] = parts.as_slice() else {
            return Err(VerifyError::MalformedCredential {
                credential: auth.credential.clone(),
            });
        };
        let mut mismatch = ScopeMismatch::default();
        if let Some(expected) = options.expected_service {
            if *service != expected {
                mismatch.expected_service = Some(expected.to_owned());
            }
        }
        if *terminator != "aws4_request" {
            mismatch.terminator = Some((*terminator).to_owned());
        }
        if auth.timestamp.get(..8) != Some(*scope_date) {
            mismatch.date = Some(((*scope_date).to_owned(), auth.timestamp.clone()));
        }
        if mismatch != ScopeMismatch::default() {
            return Err(VerifyError::CredentialScopeMismatch(mismatch));
        }

        let secret = self
            .lookup
            .secret(akid)
            .ok_or(VerifyError::UnrecognizedClient)?;
        let (akid, scope_date, region, service) = (
            (*akid).to_owned(),
            (*scope_date).to_owned(),
            (*region).to_owned(),
            (*service).to_owned(),
        );
        Ok(Head {
            auth,
            akid,
            scope_date,
            region,
            service,
            secret,
        })
    }

    /// Verifies `request` at time `now`.
    pub fn verify(
        &self,
        request: &SignedRequest<'_>,
        options: &VerifyOptions<'_>,
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let Head {
            auth,
            akid,
            scope_date,
            region,
            service,
            secret,
        } = self.head(request, options, OffsetDateTime::from(now))?;
        let (akid, scope_date, region, service) = (
            akid.as_str(),
            scope_date.as_str(),
            region.as_str(),
            service.as_str(),
        );

        // Payload hash(es) to try.
        let content_sha = header_str(request.headers, "x-amz-content-sha256");
        let mut candidates: [Option<&str>; 2] = [None, None];
        let mut unsigned = [false, false];
        match content_sha {
            Some(v) if v == UNSIGNED_PAYLOAD => {
                candidates[0] = Some(v);
                unsigned[0] = true;
            }
            Some(v) => {
                if v.len() != 64 || !v.eq_ignore_ascii_case(request.payload_sha256) {
                    return Err(VerifyError::ContentSha256Mismatch);
                }
                candidates[0] = Some(v);
            }
            None if auth.presigned => {
                // Presigned URLs sign UNSIGNED-PAYLOAD (S3 and most SDKs) or,
                // for some non-S3 signers, the real body hash. Try the more
                // likely one for this kind of endpoint first.
                if options.s3_style_path {
                    candidates = [Some(UNSIGNED_PAYLOAD), Some(request.payload_sha256)];
                    unsigned = [true, false];
                } else {
                    candidates = [Some(request.payload_sha256), Some(UNSIGNED_PAYLOAD)];
                    unsigned = [false, true];
                }
            }
            None => candidates[0] = Some(request.payload_sha256),
        }

        let mut provided = [0u8; 32];
        let provided_ok = hex::decode_to_slice(auth.signature.as_bytes(), &mut provided).is_ok();
        let key = self
            .cache
            .get(&secret.secret_access_key, scope_date, region, service);
        let scope_len = auth.credential.len() - akid.len();

        let mut buf: Vec<u8> = Vec::with_capacity(512);
        let mut first_detail: Option<MismatchDetail> = None;
        let mut matched: Option<bool> = None;
        for (i, candidate) in candidates.iter().enumerate() {
            let Some(payload_hash) = candidate else {
                continue;
            };
            buf.clear();
            build_canonical_request(&mut buf, request, options, &auth, payload_hash);
            let cr_hash = hex::encode(Sha256::digest(&buf));
            let mut sts = String::with_capacity(ALGORITHM.len() + scope_len + 90);
            sts.push_str(ALGORITHM);
            sts.push('\n');
            sts.push_str(&auth.timestamp);
            sts.push('\n');
            sts.push_str(scope_date);
            sts.push('/');
            sts.push_str(region);
            sts.push('/');
            sts.push_str(service);
            sts.push_str("/aws4_request\n");
            sts.push_str(&cr_hash);
            if provided_ok && signature_matches(&key, sts.as_bytes(), &provided) {
                matched = Some(unsigned[i]);
                break;
            }
            if first_detail.is_none() {
                first_detail = Some(MismatchDetail {
                    canonical_request: String::from_utf8_lossy(&buf).into_owned(),
                    string_to_sign: sts,
                });
            }
        }
        let Some(unsigned_payload) = matched else {
            return Err(VerifyError::SignatureMismatch(Box::new(
                first_detail.unwrap_or(MismatchDetail {
                    canonical_request: String::new(),
                    string_to_sign: String::new(),
                }),
            )));
        };

        match self
            .lookup
            .check_session_token(akid, &secret, auth.session_token.as_deref())
        {
            Ok(()) => {}
            Err(TokenRejection::Invalid) => return Err(VerifyError::InvalidSecurityToken),
            Err(TokenRejection::Expired) => return Err(VerifyError::ExpiredSecurityToken),
        }

        self.cache
            .insert(&secret.secret_access_key, scope_date, region, service, key);

        Ok(Verified {
            access_key_id: akid.to_owned(),
            principal: secret.principal,
            region: region.to_owned(),
            service: service.to_owned(),
            date: auth.timestamp,
            session_token: auth.session_token,
            presigned: auth.presigned,
            unsigned_payload,
        })
    }
}

fn signature_matches(key: &SigningKey, string_to_sign: &[u8], provided: &[u8; 32]) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return false;
    };
    mac.update(string_to_sign);
    // constant-time comparison
    mac.verify_slice(provided).is_ok()
}

fn build_canonical_request(
    buf: &mut Vec<u8>,
    request: &SignedRequest<'_>,
    options: &VerifyOptions<'_>,
    auth: &AuthParams,
    payload_hash: &str,
) {
    buf.extend_from_slice(request.method.as_bytes());
    buf.push(b'\n');
    canonical_uri_into(buf, request.path, options.s3_style_path);
    buf.push(b'\n');
    canonical_query_into(buf, request.query.unwrap_or(""), auth.presigned);
    buf.push(b'\n');
    canonical_headers_into(
        buf,
        request.headers,
        &auth.signed_headers,
        request.authority,
    );
    buf.push(b'\n');
    buf.extend_from_slice(auth.signed_headers.as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(payload_hash.as_bytes());
}

/// Finds the signature parameters in the `Authorization` header or the
/// query string.
fn parse_auth(request: &SignedRequest<'_>) -> Result<AuthParams, VerifyError> {
    let authorization = request
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let query = request.query.unwrap_or("");
    let presigned = raw_pairs(query).any(|(k, _)| query_decode(k) == "X-Amz-Algorithm");

    match (authorization, presigned) {
        (Some(_), true) => Err(VerifyError::AmbiguousAuthentication),
        (Some(h), false) if h.trim_start().starts_with("AWS4-") => {
            parse_header_auth(request, h.trim())
        }
        (None | Some(_), false) => Err(VerifyError::MissingAuthenticationToken),
        (None, true) => parse_query_auth(query),
    }
}

fn parse_header_auth(
    request: &SignedRequest<'_>,
    authorization: &str,
) -> Result<AuthParams, VerifyError> {
    let (algorithm, rest) = authorization
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((authorization, ""));
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for element in rest
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|e| !e.is_empty())
    {
        let Some((k, v)) = element.split_once('=') else {
            return Err(VerifyError::MalformedAuthorizationPair {
                pair: element.to_owned(),
                authorization: authorization.to_owned(),
            });
        };
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.is_none() && !v.is_empty() {
            *slot = Some(v);
        }
    }

    let amz_date = request.headers.get("x-amz-date");
    let date_header = request.headers.get(http::header::DATE);
    let mut missing = Vec::new();
    if credential.is_none() {
        missing.push("Credential");
    }
    if signature.is_none() {
        missing.push("Signature");
    }
    if signed_headers.is_none() {
        missing.push("SignedHeaders");
    }
    let date_missing = amz_date.is_none() && date_header.is_none();
    let (Some(credential), Some(signed_headers), Some(signature), false) =
        (credential, signed_headers, signature, date_missing)
    else {
        return Err(VerifyError::IncompleteAuthorizationHeader {
            missing,
            date_missing,
            authorization: authorization.to_owned(),
        });
    };

    let (timestamp, signed_at) = match (amz_date, date_header) {
        (Some(v), _) => {
            let raw = String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
            let t = parse_basic(&raw)
                .ok_or_else(|| VerifyError::MalformedDate { value: raw.clone() })?;
            (raw, t)
        }
        (None, Some(v)) => {
            let raw = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let t = parse_http_date(&raw).ok_or(VerifyError::MalformedDate { value: raw })?;
            (fmt_basic(t), t)
        }
        (None, None) => {
            return Err(VerifyError::IncompleteAuthorizationHeader {
                missing,
                date_missing: true,
                authorization: authorization.to_owned(),
            })
        }
    };

    Ok(AuthParams {
        presigned: false,
        algorithm: algorithm.to_owned(),
        credential: credential.to_owned(),
        signed_headers: signed_headers.to_owned(),
        signature: signature.to_owned(),
        timestamp,
        signed_at,
        expires: None,
        session_token: header_str(request.headers, "x-amz-security-token").map(str::to_owned),
    })
}

fn parse_query_auth(query: &str) -> Result<AuthParams, VerifyError> {
    const NAMES: [&str; 7] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-Security-Token",
    ];
    let mut values: [Option<String>; 7] = Default::default();
    for (k, v) in raw_pairs(query) {
        let key = query_decode(k);
        if let Some(i) = NAMES.iter().position(|n| *n == key) {
            if values[i].is_none() {
                let v = query_decode(v);
                if !v.is_empty() {
                    values[i] = Some(v);
                }
            }
        }
    }
    let [algorithm, credential, signature, signed_headers, date, expires, token] = values;
    let missing: Vec<&'static str> = NAMES[..5]
        .iter()
        .zip([&algorithm, &credential, &signature, &signed_headers, &date])
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    let (Some(algorithm), Some(credential), Some(signature), Some(signed_headers), Some(timestamp)) =
        (algorithm, credential, signature, signed_headers, date)
    else {
        return Err(VerifyError::IncompleteQueryParameters { missing });
    };
    let signed_at = parse_basic(&timestamp).ok_or_else(|| VerifyError::MalformedDate {
        value: timestamp.clone(),
    })?;
    let expires = match expires {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= MAX_PRESIGNED_EXPIRES_SECS => Some(n),
            _ => return Err(VerifyError::InvalidExpires { value: v }),
        },
    };
    Ok(AuthParams {
        presigned: true,
        algorithm,
        credential,
        signed_headers,
        signature,
        timestamp,
        signed_at,
        expires,
        session_token: token,
    })
}
