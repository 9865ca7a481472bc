//! Every `VerifyError` variant, with the code, status and AWS message it
//! maps to; plus the less common accepted forms (`Date` header,
//! `UNSIGNED-PAYLOAD`, session tokens, HTTP/2 authority).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use berth_sigv4::{
    payload_sha256, Secret, SecretLookup, SignedRequest, TokenRejection, Verified, Verifier,
    VerifyError, VerifyOptions,
};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const HOST: &str = "example.amazonaws.com";
/// 2015-08-30T12:36:00Z
const T0: u64 = 1_440_938_160;
const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A request on the wire.
struct Wire {
    method: &'static str,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Wire {
    fn new() -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static(HOST));
        Self {
            method: "GET",
            path: "/".to_owned(),
            query: String::new(),
            headers,
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
        self
    }

    fn query(mut self, q: &str) -> Self {
        self.query = q.to_owned();
        self
    }

    fn set(&mut self, name: &str, value: &str) {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }

    fn authorization(&self) -> String {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Clone, Copy)]
struct Signing {
    presigned: bool,
    token: Option<&'static str>,
    service: &'static str,
    content_sha_header: bool,
    unsigned: bool,
}

const HEADER: Signing = Signing {
    presigned: false,
    token: None,
    service: "ecs",
    content_sha_header: false,
    unsigned: false,
};

/// Signs `wire` with aws-sigv4 at T0 (host from the `Host` header).
fn signed(mut wire: Wire, s: Signing) -> Wire {
    let identity: Identity =
        Credentials::new(AKID, SECRET, s.token.map(str::to_owned), None, "test").into();
    let mut settings = SigningSettings::default();
    if s.presigned {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
    }
    if s.content_sha_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(s.service)
        .time(at(T0))
        .settings(settings)
        .build()
        .expect("params")
        .into();
    let uri = if wire.query.is_empty() {
        format!("https://{HOST}{}", wire.path)
    } else {
        format!("https://{HOST}{}?{}", wire.path, wire.query)
    };
    let headers: Vec<(String, String)> = wire
        .headers
        .iter()
        .filter(|(k, _)| *k != http::header::HOST)
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
        .collect();
    let body = if s.unsigned {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(&wire.body)
    };
    let signable = SignableRequest::new(
        wire.method,
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let (new_headers, new_params) = instructions.into_parts();
    for h in new_headers {
        wire.set(h.name(), h.value());
    }
    for (k, v) in new_params {
        if !wire.query.is_empty() {
            wire.query.push('&');
        }
        let v: String = v
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        wire.query.push_str(&format!("{k}={v}"));
    }
    wire
}

fn keys() -> HashMap<String, Secret> {
    let mut keys = HashMap::new();
    keys.insert(
        AKID.to_owned(),
        Secret::new(SECRET, "arn:aws:iam::000000000000:root"),
    );
    keys
}

fn verify_with<L: SecretLookup>(
    lookup: L,
    wire: &Wire,
    options: VerifyOptions<'_>,
    now: u64,
) -> Result<Verified, VerifyError> {
    let hash = payload_sha256(&wire.body);
    let request = SignedRequest {
        method: wire.method,
        path: &wire.path,
        query: Some(&wire.query),
        headers: &wire.headers,
        payload_sha256: &hash,
        authority: None,
    };
    Verifier::new(lookup).verify(&request, &options, at(now))
}

fn verify(wire: &Wire) -> Result<Verified, VerifyError> {
    verify_with(keys(), wire, VerifyOptions::default(), T0)
}

fn assert_err(result: Result<Verified, VerifyError>, code: &str, message: &str) -> VerifyError {
    let err = result.expect_err("request should have been refused");
    assert_eq!(err.error_code(), code, "{err:?}");
    assert_eq!(err.aws_message(), message, "{err:?}");
    assert!(!err.to_string().is_empty());
    let first = err.to_string().chars().next().unwrap_or('a');
    assert!(
        !first.is_ascii_uppercase(),
        "display should be lower-case: {err}"
    );
    err
}

#[test]
fn baseline_header_and_presigned_requests_verify() {
    let v = verify(&signed(Wire::new(), HEADER)).expect("header form");
    assert_eq!(v.access_key_id, AKID);
    assert_eq!(v.principal, "arn:aws:iam::000000000000:root");
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "ecs");
    assert_eq!(v.date, "20150830T123600Z");
    assert!(!v.presigned && !v.unsigned_payload && v.session_token.is_none());

    let presigned = Signing {
        presigned: true,
        ..HEADER
    };
    let v = verify(&signed(Wire::new(), presigned)).expect("presigned");
    assert!(v.presigned);
}

#[test]
fn missing_authentication_token() {
    let msg = "Missing Authentication Token";
    let code = "MissingAuthenticationTokenException";
    let err = assert_err(verify(&Wire::new()), code, msg);
    assert_eq!(err.http_status(), 400);
    assert_err(
        verify(&Wire::new().header("authorization", "Basic Zm9vOmJhcg==")),
        code,
        msg,
    );
    // presigned parameters without X-Amz-Algorithm are not a signature
    assert_err(
        verify(&Wire::new().query("X-Amz-Credential=a&X-Amz-Signature=b")),
        code,
        msg,
    );
}

#[test]
fn ambiguous_authentication() {
    let wire = signed(Wire::new(), HEADER).query("X-Amz-Algorithm=AWS4-HMAC-SHA256");
    assert_err(
        verify(&wire),
        "InvalidSignatureException",
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
    );
}

#[test]
fn incomplete_authorization_header() {
    let wire = Wire::new().header("authorization", "AWS4-HMAC-SHA256");
    let err = assert_err(
        verify(&wire),
        "IncompleteSignatureException",
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256",
    );
    assert!(matches!(
        err,
        VerifyError::IncompleteAuthorizationHeader { .. }
    ));

    let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=";
    let wire = Wire::new()
        .header("authorization", auth)
        .header("x-amz-date", "20150830T123600Z");
    assert_err(
        verify(&wire),
        "IncompleteSignatureException",
        &format!("Authorization header requires 'Signature' parameter. Authorization={auth}"),
    );
}

#[test]
fn malformed_authorization_pair() {
    let wire = Wire::new()
        .header("authorization", "AWS4-HMAC-SHA256 FooBar, BazBurp")
        .header("x-amz-date", "20150830T123600Z");
    assert_err(
        verify(&wire),
        "IncompleteSignatureException",
        "'FooBar' not a valid key=value pair (missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 FooBar, BazBurp'.",
    );
}

#[test]
fn incomplete_query_parameters() {
    let wire = Wire::new().query("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20150830T123600Z");
    assert_err(
        verify(&wire),
        "IncompleteSignatureException",
        "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.",
    );
}

#[test]
fn unsupported_algorithm() {
    let mut wire = signed(Wire::new(), HEADER);
    let auth = wire
        .authorization()
        .replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA25");
    wire.set("authorization", &auth);
    assert_err(
        verify(&wire),
        "IncompleteSignatureException",
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA25' (only AWS4-HMAC-SHA256 for now). ",
    );
}

#[test]
fn malformed_date() {
    let mut wire = signed(Wire::new(), HEADER);
    wire.set("x-amz-date", "201");
    assert_err(
        verify(&wire),
        "IncompleteSignatureException",
        "Date must be in ISO-8601 'basic format'. Got '201'. See http://en.wikipedia.org/wiki/ISO_8601",
    );
    wire.set("x-amz-date", "20150230T123600Z"); // 30 February
    assert!(matches!(
        verify(&wire),
        Err(VerifyError::MalformedDate { .. })
    ));
    let mut wire = signed(Wire::new(), HEADER);
    wire.headers.remove("x-amz-date");
    wire.set("date", "yesterday");
    assert!(matches!(
        verify(&wire),
        Err(VerifyError::MalformedDate { .. })
    ));
}

#[test]
fn malformed_credential() {
    let mut wire = signed(Wire::new(), HEADER);
    let auth = wire
        .authorization()
        .replace("AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request", "a/b/c/d");
    wire.set("authorization", &auth);
    assert_err(
        verify(&wire),
        "IncompleteSignatureException",
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'a/b/c/d'",
    );
}

#[test]
fn invalid_expires() {
    let presigned = Signing {
        presigned: true,
        ..HEADER
    };
    let wire = signed(Wire::new(), presigned);
    let too_long = Wire::new().query(
        &wire
            .query
            .replace("X-Amz-Expires=300", "X-Amz-Expires=604801"),
    );
    assert_err(
        verify(&too_long),
        "IncompleteSignatureException",
        "X-Amz-Expires must be less than a week (in seconds) that is 604800",
    );
    let nan = Wire::new().query(
        &wire
            .query
            .replace("X-Amz-Expires=300", "X-Amz-Expires=soon"),
    );
    assert_err(
        verify(&nan),
        "IncompleteSignatureException",
        "X-Amz-Expires should be a number",
    );
}

#[test]
fn host_not_signed() {
    let mut wire = signed(Wire::new(), HEADER);
    let auth = wire
        .authorization()
        .replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date");
    wire.set("authorization", &auth);
    assert_err(
        verify(&wire),
        "InvalidSignatureException",
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
    );
}

#[test]
fn security_token_not_signed() {
    let wire = signed(Wire::new(), HEADER).header("x-amz-security-token", "tok");
    assert_err(
        verify(&wire),
        "InvalidSignatureException",
        "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.",
    );
}

#[test]
fn credential_scope_mismatch() {
    let mut wire = signed(Wire::new(), HEADER);
    let auth = wire.authorization().replace(
        "AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request",
        "AKIDEXAMPLE/20150831/us-east-1/ecr/aws5_request",
    );
    wire.set("authorization", &auth);
    let options = VerifyOptions {
        s3_style_path: false,
        expected_service: Some("ecs"),
    };
    let err = assert_err(
        verify_with(keys(), &wire, options, T0),
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'ecs'. Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20150831' != '20150830', from '20150830T123600Z'.",
    );
    assert!(matches!(err, VerifyError::CredentialScopeMismatch(_)));

    // the service alone, and no service check at all
    let wire = signed(Wire::new(), HEADER);
    let options = VerifyOptions {
        s3_style_path: false,
        expected_service: Some("ecr"),
    };
    assert_err(
        verify_with(keys(), &wire, options, T0),
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'ecr'. ",
    );
    assert!(verify(&wire).is_ok());
}

#[test]
fn unrecognized_client() {
    let wire = signed(Wire::new(), HEADER);
    let err = assert_err(
        verify_with(
            HashMap::<String, Secret>::new(),
            &wire,
            VerifyOptions::default(),
            T0,
        ),
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
    assert_eq!(err, VerifyError::UnrecognizedClient);
}

fn temp_keys(token: &str) -> HashMap<String, Secret> {
    let mut keys = HashMap::new();
    keys.insert(
        AKID.to_owned(),
        Secret {
            secret_access_key: SECRET.to_owned(),
            principal: "arn:aws:sts::000000000000:assumed-role/r/s".to_owned(),
            session_token: Some(token.to_owned()),
        },
    );
    keys
}

#[test]
fn session_tokens() {
    let with_token = Signing {
        token: Some("session-token"),
        ..HEADER
    };
    // header form: signed token accepted and passed through
    let wire = signed(Wire::new(), with_token);
    let v = verify_with(
        temp_keys("session-token"),
        &wire,
        VerifyOptions::default(),
        T0,
    )
    .expect("token accepted");
    assert_eq!(v.session_token.as_deref(), Some("session-token"));
    assert_eq!(v.principal, "arn:aws:sts::000000000000:assumed-role/r/s");

    // presigned form
    let presigned = Signing {
        presigned: true,
        ..with_token
    };
    let wire = signed(Wire::new(), presigned);
    let v = verify_with(
        temp_keys("session-token"),
        &wire,
        VerifyOptions::default(),
        T0,
    )
    .expect("presigned token accepted");
    assert_eq!(v.session_token.as_deref(), Some("session-token"));

    let msg = "The security token included in the request is invalid.";
    let code = "UnrecognizedClientException";
    // wrong token
    let wire = signed(Wire::new(), with_token);
    let err = assert_err(
        verify_with(temp_keys("other"), &wire, VerifyOptions::default(), T0),
        code,
        msg,
    );
    assert_eq!(err, VerifyError::InvalidSecurityToken);
    // a token sent with a long-term key
    assert_err(verify(&wire), code, msg);
    // temporary credentials used without their token
    let wire = signed(Wire::new(), HEADER);
    assert_err(
        verify_with(
            temp_keys("session-token"),
            &wire,
            VerifyOptions::default(),
            T0,
        ),
        code,
        msg,
    );
}

struct ExpiringTokens;

impl SecretLookup for ExpiringTokens {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        (access_key_id == AKID).then(|| Secret::new(SECRET, "p"))
    }
    fn check_session_token(
        &self,
        _access_key_id: &str,
        _secret: &Secret,
        presented: Option<&str>,
    ) -> Result<(), TokenRejection> {
        match presented {
            Some("expired") => Err(TokenRejection::Expired),
            Some(_) => Ok(()),
            None => Err(TokenRejection::Invalid),
        }
    }
}

#[test]
fn expired_security_token() {
    let signing = Signing {
        token: Some("expired"),
        ..HEADER
    };
    let wire = signed(Wire::new(), signing);
    let err = assert_err(
        verify_with(ExpiringTokens, &wire, VerifyOptions::default(), T0),
        "ExpiredTokenException",
        "The security token included in the request is expired",
    );
    assert_eq!(err, VerifyError::ExpiredSecurityToken);
    let signing = Signing {
        token: Some("fresh"),
        ..HEADER
    };
    let wire = signed(Wire::new(), signing);
    assert!(verify_with(ExpiringTokens, &wire, VerifyOptions::default(), T0).is_ok());
}

#[test]
fn signature_mismatch() {
    let wire = signed(Wire::new(), HEADER);
    let mut other = HashMap::new();
    other.insert(AKID.to_owned(), Secret::new("another secret", "p"));
    let err = assert_err(
        verify_with(other, &wire, VerifyOptions::default(), T0),
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    );
    let VerifyError::SignatureMismatch(detail) = err else {
        panic!("not a mismatch");
    };
    assert_eq!(
        detail.canonical_request,
        format!(
            "GET\n/\n\nhost:{HOST}\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA}"
        )
    );
    assert!(detail
        .string_to_sign
        .starts_with("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/ecs/aws4_request\n"));

    // a signature that is not hex at all
    let mut wire = signed(Wire::new(), HEADER);
    let auth = wire.authorization();
    let (head, _) = auth.split_once("Signature=").expect("signature");
    wire.set("authorization", &format!("{head}Signature=zz"));
    assert!(matches!(
        verify(&wire),
        Err(VerifyError::SignatureMismatch(_))
    ));
}

#[test]
fn signature_expired_and_not_yet_current() {
    let wire = signed(Wire::new(), HEADER);
    // exactly 15 minutes either way is still fine
    assert!(verify_with(keys(), &wire, VerifyOptions::default(), T0 + 900).is_ok());
    assert!(verify_with(keys(), &wire, VerifyOptions::default(), T0 - 900).is_ok());
    assert_err(
        verify_with(keys(), &wire, VerifyOptions::default(), T0 + 20 * 60),
        "InvalidSignatureException",
        "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z (20150830T125600Z - 15 min.)",
    );
    assert_err(
        verify_with(keys(), &wire, VerifyOptions::default(), T0 - 16 * 60),
        "InvalidSignatureException",
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z (20150830T122000Z + 15 min.)",
    );
}

#[test]
fn presigned_expired() {
    let presigned = Signing {
        presigned: true,
        ..HEADER
    };
    let wire = signed(Wire::new(), presigned);
    // valid for X-Amz-Expires (300 s), even past the 15-minute skew rule
    assert!(verify_with(keys(), &wire, VerifyOptions::default(), T0 + 300).is_ok());
    let err = assert_err(
        verify_with(keys(), &wire, VerifyOptions::default(), T0 + 301),
        "AccessDeniedException",
        "Request has expired",
    );
    assert_eq!(err.http_status(), 403);
    assert_eq!(
        err,
        VerifyError::PresignedExpired {
            expired_at: "20150830T124100Z".to_owned(),
            now: "20150830T124101Z".to_owned(),
        }
    );
    assert!(matches!(
        verify_with(keys(), &wire, VerifyOptions::default(), T0 - 901),
        Err(VerifyError::SignatureNotYetCurrent { .. })
    ));
}

#[test]
fn content_sha256() {
    let signing = Signing {
        content_sha_header: true,
        ..HEADER
    };
    let mut wire = Wire::new();
    wire.method = "POST";
    wire.body = b"{}".to_vec();
    let wire = signed(wire, signing);
    assert!(verify(&wire).is_ok());
    let mut tampered = Wire {
        body: b"{\"x\":1}".to_vec(),
        ..wire
    };
    assert_err(
        verify(&tampered),
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );
    tampered.set("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    assert_eq!(
        verify(&tampered).err(),
        Some(VerifyError::ContentSha256Mismatch)
    );

    // UNSIGNED-PAYLOAD: the body is not covered, and the result says so
    let unsigned = Signing {
        content_sha_header: true,
        unsigned: true,
        ..HEADER
    };
    let mut wire = Wire::new();
    wire.method = "PUT";
    wire.body = b"anything".to_vec();
    let mut wire = signed(wire, unsigned);
    assert_eq!(
        wire.headers
            .get("x-amz-content-sha256")
            .map(|v| v.as_bytes()),
        Some(&b"UNSIGNED-PAYLOAD"[..])
    );
    wire.body = b"something else".to_vec();
    let v = verify(&wire).expect("unsigned payload");
    assert!(v.unsigned_payload);
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn date_header_instead_of_x_amz_date() {
    // signed by hand: aws-sigv4 always uses X-Amz-Date
    let date = "Sun, 30 Aug 2015 12:36:00 GMT";
    let canonical = format!("GET\n/\n\ndate:{date}\nhost:{HOST}\n\ndate;host\n{EMPTY_SHA}");
    let sts = format!(
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/ecs/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = [&b"20150830"[..], b"us-east-1", b"ecs", b"aws4_request"]
        .iter()
        .fold(format!("AWS4{SECRET}").into_bytes(), |k, part| {
            hmac(&k, part)
        });
    let signature = hex::encode(hmac(&key, sts.as_bytes()));
    let wire = Wire::new().header("date", date).header(
        "authorization",
        &format!("AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/ecs/aws4_request,SignedHeaders=date;host,Signature={signature}"),
    );
    let v = verify(&wire).expect("date header");
    assert_eq!(v.date, "20150830T123600Z");
}

#[test]
fn http2_authority_stands_in_for_host() {
    let wire = signed(Wire::new(), HEADER);
    let mut headers = wire.headers.clone();
    headers.remove(http::header::HOST);
    let hash = payload_sha256(&[]);
    let mut request = SignedRequest {
        method: "GET",
        path: "/",
        query: None,
        headers: &headers,
        payload_sha256: &hash,
        authority: Some(HOST),
    };
    let verifier = Verifier::new(keys());
    assert!(verifier
        .verify(&request, &VerifyOptions::default(), at(T0))
        .is_ok());
    request.authority = Some("evil.example.com");
    assert!(matches!(
        verifier.verify(&request, &VerifyOptions::default(), at(T0)),
        Err(VerifyError::SignatureMismatch(_))
    ));
}

#[test]
fn secret_debug_is_redacted() {
    let s = format!("{:?}", Secret::new(SECRET, "p"));
    assert!(!s.contains(SECRET), "{s}");
}
