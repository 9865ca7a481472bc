//! Property tests against the `aws-sigv4` signer (the Rust SDK's): random
//! requests signed by it must verify, and any change to what was signed, a
//! wrong secret, or a clock more than 15 minutes off must be refused with
//! the right error.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use berth_sigv4::{
    payload_sha256, Secret, SignedRequest, Verified, Verifier, VerifyError, VerifyOptions,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 2020-01-01T00:00:00Z
const BASE_TIME: u64 = 1_577_836_800;

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    authority: &'static str,
    host_header: bool,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    token: Option<String>,
    presigned: bool,
    expires: u64,
    s3_style: bool,
    content_sha_header: bool,
    unsigned_payload: bool,
    signed_at: u64,
    region: &'static str,
    service: &'static str,
}

/// Percent-encodes one character (its UTF-8 bytes).
fn escape(c: char) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

/// One piece of a raw path segment: a literal allowed in paths, or an escape.
fn path_atom() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._~-]".prop_map(|s| s),
        1 => "[!$&'()*+,;=:@]".prop_map(|s| s),
        1 => any::<char>().prop_map(escape),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(path_atom(), 1..6).prop_map(|v| v.concat()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(String::new()),
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..5), any::<bool>()).prop_map(|(segs, trailing)| {
        let mut p = format!("/{}", segs.join("/"));
        if trailing && !p.ends_with('/') {
            p.push('/');
        }
        p
    })
}

/// One piece of a raw query key or value.
fn query_atom() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._~-]".prop_map(|s| s),
        1 => "[!$'()*,;:@/?+]".prop_map(|s| s),
        1 => any::<char>().prop_map(escape),
    ]
}

fn raw_query() -> impl Strategy<Value = String> {
    let part = || prop::collection::vec(query_atom(), 0..5).prop_map(|v| v.concat());
    prop::collection::vec((part(), part(), any::<bool>()), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v, eq)| {
                if eq || !v.is_empty() {
                    format!("{k}={v}")
                } else {
                    k
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        3 => "x-[a-z0-9-]{1,10}".prop_map(|s| s),
        1 => Just("content-type".to_owned()),
        1 => Just("x-amz-target".to_owned()),
    ];
    prop::collection::vec((name, "[ -~]{0,20}"), 0..4)
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
            prop::sample::select(vec!["example.com", "127.0.0.1:9480", "ecs.localhost:8443"]),
            any::<bool>(),
            raw_path(),
            raw_query(),
            headers(),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        (
            prop::option::of("[A-Za-z0-9/+=]{1,40}"),
            any::<bool>(),
            1u64..=604_800,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u64..100_000_000,
            prop::sample::select(vec!["us-east-1", "eu-west-3", "local"]),
            prop::sample::select(vec!["ecs", "ecr", "service"]),
        ),
    )
        .prop_map(
            |(
                (method, authority, host_header, path, query, headers, body),
                (
                    token,
                    presigned,
                    expires,
                    s3_style,
                    content_sha_header,
                    unsigned_payload,
                    offset,
                    region,
                    service,
                ),
            )| Case {
                method,
                authority,
                host_header,
                path,
                query,
                headers,
                body,
                token,
                presigned,
                expires,
                s3_style,
                content_sha_header,
                // an unsigned body must be declared in a header, except in
                // presigned URLs
                unsigned_payload: unsigned_payload && (content_sha_header || presigned),
                signed_at: BASE_TIME + offset,
                region,
                service,
            },
        )
}

/// A request as the server receives it.
#[derive(Debug, Clone)]
struct Wire {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    authority: Option<String>,
}

fn strict_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs `case` with `aws-sigv4` and returns the request as sent.
fn sign_case(case: &Case) -> Wire {
    let identity: Identity =
        Credentials::new(AKID, SECRET, case.token.clone(), None, "roundtrip").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = if case.presigned {
        SignatureLocation::QueryParams
    } else {
        SignatureLocation::Headers
    };
    settings.expires_in = case.presigned.then(|| Duration::from_secs(case.expires));
    settings.payload_checksum_kind = if case.content_sha_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    if case.s3_style {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(case.region)
        .name(case.service)
        .time(SystemTime::UNIX_EPOCH + Duration::from_secs(case.signed_at))
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let uri = if case.query.is_empty() {
        format!("https://{}{}", case.authority, case.path)
    } else {
        format!("https://{}{}?{}", case.authority, case.path, case.query)
    };
    let body = if case.unsigned_payload {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(&case.body)
    };
    let signable = SignableRequest::new(
        case.method,
        uri,
        case.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .expect("signable request");
    let (instructions, _signature) = sign(signable, &params).expect("sign").into_parts();
    let (new_headers, new_params) = instructions.into_parts();

    let mut headers = HeaderMap::new();
    if case.host_header {
        headers.insert(http::header::HOST, HeaderValue::from_static(case.authority));
    }
    for (k, v) in &case.headers {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    for h in new_headers {
        headers.insert(
            HeaderName::from_bytes(h.name().as_bytes()).expect("signed header name"),
            HeaderValue::from_str(h.value()).expect("signed header value"),
        );
    }
    let mut query = case.query.clone();
    for (k, v) in new_params {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(k);
        query.push('=');
        query.push_str(&strict_encode(&v));
    }
    Wire {
        method: case.method.to_owned(),
        path: case.path.clone(),
        query,
        headers,
        body: case.body.clone(),
        authority: (!case.host_header).then(|| case.authority.to_owned()),
    }
}

fn keys(secret: &str, token: Option<&str>) -> HashMap<String, Secret> {
    let mut keys = HashMap::new();
    keys.insert(
        AKID.to_owned(),
        Secret {
            secret_access_key: secret.to_owned(),
            principal: "arn:aws:iam::000000000000:user/test".to_owned(),
            session_token: token.map(str::to_owned),
        },
    );
    keys
}

fn verify_wire(
    verifier: &Verifier<HashMap<String, Secret>>,
    wire: &Wire,
    case: &Case,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    let body_hash = payload_sha256(&wire.body);
    let request = SignedRequest {
        method: &wire.method,
        path: &wire.path,
        query: Some(&wire.query),
        headers: &wire.headers,
        payload_sha256: &body_hash,
        authority: wire.authority.as_deref(),
    };
    let options = VerifyOptions {
        s3_style_path: case.s3_style,
        expected_service: Some(case.service),
    };
    verifier.verify(&request, &options, now)
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Method,
    Path,
    Query,
    Header,
    Body,
    Signature,
}

fn mutate(wire: &Wire, case: &Case, m: Mutation) -> Option<Wire> {
    let mut w = wire.clone();
    match m {
        Mutation::Method => {
            w.method = if w.method == "GET" { "POST" } else { "GET" }.to_owned();
        }
        Mutation::Path => w.path.push('z'),
        Mutation::Query => {
            if !w.query.is_empty() {
                w.query.push('&');
            }
            w.query.push_str("zz=1");
        }
        Mutation::Header => {
            let (name, value) = case.headers.first()?;
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let mut v = w.headers.get(&name)?.as_bytes().to_vec();
            v.push(b'z');
            w.headers.insert(name, HeaderValue::from_bytes(&v).ok()?);
            let _ = value;
        }
        Mutation::Body => {
            if case.unsigned_payload {
                return None;
            }
            w.body.push(0);
        }
        Mutation::Signature => {
            let flip = |s: &str| -> Option<String> {
                // flip the last hex digit of the 64-digit signature
                let idx = s.find("Signature=")? + "Signature=".len() + 63;
                let mut b = s.as_bytes().to_vec();
                b[idx] = if b[idx] == b'0' { b'1' } else { b'0' };
                String::from_utf8(b).ok()
            };
            if case.presigned {
                w.query = flip(&w.query).expect("signature in query");
            } else {
                let auth = w.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
                let auth = flip(auth).expect("signature in header");
                w.headers.insert(
                    http::header::AUTHORIZATION,
                    HeaderValue::from_str(&auth).ok()?,
                );
            }
        }
    }
    Some(w)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn signed_by_aws_sigv4_verifies(case in case(), skew in -899i64..=899) {
        let wire = sign_case(&case);
        let verifier = Verifier::new(keys(SECRET, case.token.as_deref()));
        let now = if case.presigned {
            // anywhere from 899 s before signing to the expiry
            let spread = i64::try_from(case.expires).unwrap_or(0) + 899;
            case.signed_at as i64 - 899 + skew.rem_euclid(spread + 1)
        } else {
            case.signed_at as i64 + skew
        };
        let verified = verify_wire(&verifier, &wire, &case, at(now as u64));
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                prop_assert!(false, "{e:?}\n{wire:#?}");
                return Ok(());
            }
        };
        prop_assert_eq!(&verified.access_key_id, AKID);
        prop_assert_eq!(&verified.principal, "arn:aws:iam::000000000000:user/test");
        prop_assert_eq!(&verified.region, case.region);
        prop_assert_eq!(&verified.service, case.service);
        prop_assert_eq!(&verified.session_token, &case.token);
        prop_assert_eq!(verified.presigned, case.presigned);
        prop_assert_eq!(verified.unsigned_payload, case.unsigned_payload);
        // the cached signing key gives the same answer
        prop_assert!(verify_wire(&verifier, &wire, &case, at(now as u64)).is_ok());
    }

    #[test]
    fn changed_requests_are_refused(
        case in case(),
        m in prop::sample::select(vec![
            Mutation::Method, Mutation::Path, Mutation::Query,
            Mutation::Header, Mutation::Body, Mutation::Signature,
        ]),
    ) {
        let wire = sign_case(&case);
        let verifier = Verifier::new(keys(SECRET, case.token.as_deref()));
        let now = at(case.signed_at);
        prop_assert!(verify_wire(&verifier, &wire, &case, now).is_ok());
        let Some(bad) = mutate(&wire, &case, m) else { return Ok(()); };
        let err = verify_wire(&verifier, &bad, &case, now).expect_err("mutated request verified");
        match (m, case.content_sha_header) {
            (Mutation::Body, true) if !case.presigned => {
                prop_assert_eq!(err, VerifyError::ContentSha256Mismatch)
            }
            _ => prop_assert!(
                matches!(err, VerifyError::SignatureMismatch(_)),
                "{:?}: {:?}", m, err
            ),
        }
    }

    #[test]
    fn other_secret_is_refused(case in case()) {
        let wire = sign_case(&case);
        let verifier = Verifier::new(keys("not-the-secret", case.token.as_deref()));
        let err = verify_wire(&verifier, &wire, &case, at(case.signed_at)).expect_err("verified");
        prop_assert!(matches!(err, VerifyError::SignatureMismatch(_)), "{:?}", err);
    }

    #[test]
    fn skewed_clock_is_refused(case in case(), extra in 1u64..100_000) {
        let wire = sign_case(&case);
        let verifier = Verifier::new(keys(SECRET, case.token.as_deref()));
        // server clock behind the signer by more than 15 minutes
        let early = at(case.signed_at - 900 - extra);
        let err = verify_wire(&verifier, &wire, &case, early).expect_err("verified early");
        prop_assert!(matches!(err, VerifyError::SignatureNotYetCurrent { .. }), "{:?}", err);
        // server clock past the validity window
        if case.presigned {
            let late = at(case.signed_at + case.expires + extra);
            let err = verify_wire(&verifier, &wire, &case, late).expect_err("verified late");
            prop_assert!(matches!(err, VerifyError::PresignedExpired { .. }), "{:?}", err);
        } else {
            let late = at(case.signed_at + 900 + extra);
            let err = verify_wire(&verifier, &wire, &case, late).expect_err("verified late");
            prop_assert!(matches!(err, VerifyError::SignatureExpired { .. }), "{:?}", err);
        }
    }

    #[test]
    fn unknown_key_and_wrong_service_are_refused(case in case()) {
        let wire = sign_case(&case);
        let mut other = HashMap::new();
        other.insert("AKIDOTHER".to_owned(), Secret::new(SECRET, "x"));
        let verifier = Verifier::new(other);
        let err = verify_wire(&verifier, &wire, &case, at(case.signed_at)).expect_err("verified");
        prop_assert_eq!(err, VerifyError::UnrecognizedClient);

        let verifier = Verifier::new(keys(SECRET, case.token.as_deref()));
        let body_hash = payload_sha256(&wire.body);
        let request = SignedRequest {
            method: &wire.method,
            path: &wire.path,
            query: Some(&wire.query),
            headers: &wire.headers,
            payload_sha256: &body_hash,
            authority: wire.authority.as_deref(),
        };
        let options = VerifyOptions { s3_style_path: case.s3_style, expected_service: Some("sts") };
        let err = verifier.verify(&request, &options, at(case.signed_at)).expect_err("verified");
        prop_assert!(matches!(err, VerifyError::CredentialScopeMismatch(_)), "{:?}", err);
    }

    /// The head check run before a body is read refuses exactly what the
    /// full verification refuses for reasons other than the signature (and
    /// what only the body or the token decides), and passes the rest.
    #[test]
    fn precheck_agrees_with_verify_on_everything_but_the_signature(
        case in case(),
        offset in -2_000i64..2_000,
        unknown_key in any::<bool>(),
        other_service in any::<bool>(),
        secret_ok in any::<bool>(),
    ) {
        let wire = sign_case(&case);
        let verifier = if unknown_key {
            let mut other = HashMap::new();
            other.insert("AKIDOTHER".to_owned(), Secret::new(SECRET, "x"));
            Verifier::new(other)
        } else {
            Verifier::new(keys(if secret_ok { SECRET } else { "not-the-secret" }, case.token.as_deref()))
        };
        let body_hash = payload_sha256(&wire.body);
        let request = SignedRequest {
            method: &wire.method,
            path: &wire.path,
            query: Some(&wire.query),
            headers: &wire.headers,
            payload_sha256: &body_hash,
            authority: wire.authority.as_deref(),
        };
        let options = VerifyOptions {
            s3_style_path: case.s3_style,
            expected_service: Some(if other_service { "sts" } else { case.service }),
        };
        let now = at((case.signed_at as i64 + offset) as u64);
        let full = verifier.verify(&request, &options, now);
        let head = verifier.precheck(&request, &options, now);
        match full {
            Ok(v) => {
                let p = head.expect("verified but refused by the precheck");
                prop_assert_eq!(p.access_key_id, v.access_key_id);
                prop_assert_eq!(p.region, v.region);
            }
            Err(VerifyError::SignatureMismatch(_)
                | VerifyError::ContentSha256Mismatch
                | VerifyError::InvalidSecurityToken
                | VerifyError::ExpiredSecurityToken) => {
                prop_assert!(head.is_ok(), "{:?}", head);
            }
            Err(e) => prop_assert_eq!(head.expect_err("passed the precheck"), e),
        }
    }
}
