//! The edge's wire behaviour, in process: requests signed by the
//! `aws-sigv4` crate (the SDKs' signer) go through the real router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use axum::body::Body;
use berth_control::{Config, ControlPlane, SystemClock};
use berth_edge::{Authenticator, Credentials, Edge, RootCredentials};
use berth_store::MemoryStore;
use http::Request;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

const KEY: &str = "AKIDEXAMPLE000000000";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn app() -> axum::Router {
    let root = RootCredentials {
        access_key_id: KEY.into(),
        secret_access_key: SECRET.into(),
    };
    let edge = Edge {
        control: ControlPlane::new(
            Arc::new(MemoryStore::new()),
            Config::default(),
            Arc::new(SystemClock),
        ),
        auth: Authenticator::new(Credentials::with_root(&root, "000000000000"), "us-east-1"),
        metrics: Default::default(),
        account_id: "000000000000".into(),
        channel: Default::default(),
    };
    berth_edge::router(Arc::new(edge))
}

struct Signing<'a> {
    secret: &'a str,
    key: &'a str,
    service: &'a str,
    region: &'a str,
    time: SystemTime,
    presigned: bool,
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Self {
            secret: SECRET,
            key: KEY,
            service: "ecs",
            region: "us-east-1",
            time: SystemTime::now(),
            presigned: false,
        }
    }
}

fn signed(mut req: Request<Body>, body: &[u8], s: Signing<'_>) -> Request<Body> {
    let identity = AwsCredentials::new(s.key, s.secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    if s.presigned {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(s.region)
        .name(s.service)
        .time(s.time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    req
}

fn ecs_request(op: &str, body: &str) -> Request<Body> {
    Request::post("http://127.0.0.1:9480/")
        .header("host", "127.0.0.1:9480")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AmazonEC2ContainerServiceV20141113.{op}"),
        )
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn send(app: &axum::Router, req: Request<Body>) -> (u16, http::HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn ecs(
    app: &axum::Router,
    op: &str,
    body: &str,
    s: Signing<'_>,
) -> (u16, http::HeaderMap, Value) {
    let req = signed(ecs_request(op, body), body.as_bytes(), s);
    let (status, headers, text) = send(app, req).await;
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn signed_call_succeeds_with_json_1_1_framing() {
    let app = app();
    let (status, headers, body) = ecs(
        &app,
        "CreateCluster",
        r#"{"clusterName":"a"}"#,
        Signing::default(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
    assert!(headers.get("x-amzn-requestid").is_some());
    assert_eq!(body["cluster"]["clusterName"], "a");
}

#[tokio::test]
async fn api_errors_carry_type_message_status_and_request_id() {
    let app = app();
    let (status, headers, body) = ecs(
        &app,
        "DeleteCluster",
        r#"{"cluster":"ghost"}"#,
        Signing::default(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "ClusterNotFoundException");
    assert_eq!(body["message"], "Cluster not found.");
    assert!(headers.get("x-amzn-requestid").is_some());
    let (status, _, body) = ecs(&app, "ListClusters", "{oops", Signing::default()).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("SerializationException"))
    );
    let (status, _, body) = ecs(&app, "Nope", "{}", Signing::default()).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("UnknownOperationException"))
    );
}

#[tokio::test]
async fn authentication_failures() {
    let app = app();
    // Unsigned.
    let (status, _, text) = send(&app, ecs_request("ListClusters", "{}")).await;
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("MissingAuthenticationTokenException"))
    );
    // Wrong secret.
    let (status, _, body) = ecs(
        &app,
        "ListClusters",
        "{}",
        Signing {
            secret: "wrong",
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("InvalidSignatureException"))
    );
    // Unknown key.
    let (status, _, body) = ecs(
        &app,
        "ListClusters",
        "{}",
        Signing {
            key: "AKIDUNKNOWN",
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("UnrecognizedClientException"))
    );
    // Twenty minutes of skew.
    let old = SystemTime::now() - Duration::from_secs(20 * 60);
    let (status, _, body) = ecs(
        &app,
        "ListClusters",
        "{}",
        Signing {
            time: old,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("InvalidSignatureException"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired"),
        "{body}"
    );
    // Signed for another service.
    let (status, _, body) = ecs(
        &app,
        "ListClusters",
        "{}",
        Signing {
            service: "ecr",
            ..Default::default()
        },
    )
    .await;
    assert!((400..500).contains(&status), "{status} {body}");
    // Scoped to another region.
    let (status, _, body) = ecs(
        &app,
        "ListClusters",
        "{}",
        Signing {
            region: "eu-west-3",
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("InvalidSignatureException"))
    );
    assert_eq!(
        body["message"],
        "Credential should be scoped to a valid region, not 'eu-west-3'."
    );
    // A malformed Authorization header.
    let mut req = ecs_request("ListClusters", "{}");
    req.headers_mut().insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=x".parse().unwrap(),
    );
    req.headers_mut()
        .insert("x-amz-date", "20240101T000000Z".parse().unwrap());
    let (status, _, text) = send(&app, req).await;
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("IncompleteSignatureException"))
    );
    // A tampered body.
    let req = signed(
        ecs_request("ListClusters", "{}"),
        b"{\"maxResults\":1}",
        Signing::default(),
    );
    let (status, _, _) = send(&app, req).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn presigned_query_signatures_work() {
    let app = app();
    // ECS JSON call with the signature in the query string.
    let (status, _, body) = ecs(
        &app,
        "ListClusters",
        "{}",
        Signing {
            presigned: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // STS GetCallerIdentity as a presigned GET.
    let req = Request::get("http://127.0.0.1:9480/?Action=GetCallerIdentity&Version=2011-06-15")
        .header("host", "127.0.0.1:9480")
        .body(Body::empty())
        .unwrap();
    let req = signed(
        req,
        b"",
        Signing {
            service: "sts",
            presigned: true,
            ..Default::default()
        },
    );
    let (status, headers, text) = send(&app, req).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/xml");
    assert!(text.contains("<Account>000000000000</Account>"));
    assert!(text.contains("<Arn>arn:aws:iam::000000000000:root</Arn>"));
}

#[tokio::test]
async fn sts_errors_are_xml_in_query_vocabulary() {
    let app = app();
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let req = Request::post("http://127.0.0.1:9480/")
        .header("host", "127.0.0.1:9480")
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Body::from(body))
        .unwrap();
    let req = signed(
        req,
        body.as_bytes(),
        Signing {
            service: "sts",
            secret: "bad",
            ..Default::default()
        },
    );
    let (status, _, text) = send(&app, req).await;
    assert_eq!(status, 403);
    assert!(
        text.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{text}"
    );
    assert!(text.contains("<ErrorResponse"));
}

#[tokio::test]
async fn health_and_metrics() {
    let app = app();
    ecs(&app, "ListClusters", "{}", Signing::default()).await;
    let (status, _, text) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, text.as_str()), (200, "ok\n"));
    let (status, _, text) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    assert!(
        text.contains(
            "berth_api_requests_total{service=\"ecs\",operation=\"ListClusters\",code=\"ok\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("berth_api_request_duration_seconds_count{service=\"ecs\",operation=\"ListClusters\"} 1"), "{text}");
}

/// A body that never ends, counting how many chunks were taken from it.
fn endless_body(polled: Arc<std::sync::atomic::AtomicUsize>) -> Body {
    let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::repeat_with(move || {
        polled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::io::Error>(chunk.clone())
    });
    Body::from_stream(stream)
}

#[tokio::test]
async fn unsigned_requests_are_refused_before_their_body_is_read() {
    let app = app();
    let polled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Unsigned, and signed with an unknown key: neither body is read.
    let unsigned = Request::post("http://127.0.0.1:9480/")
        .header("host", "127.0.0.1:9480")
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.UploadLayerPart",
        )
        .header("content-length", "30000000")
        .body(endless_body(polled.clone()))
        .unwrap();
    let (status, _, text) = send(&app, unsigned).await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("MissingAuthenticationTokenException"),
        "{text}"
    );
    let foreign = signed(
        ecs_request("ListClusters", "{}"),
        b"{}",
        Signing {
            key: "AKIDUNKNOWN000000000",
            ..Signing::default()
        },
    );
    let (parts, _) = foreign.into_parts();
    let foreign = Request::from_parts(parts, endless_body(polled.clone()));
    let (status, _, text) = send(&app, foreign).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("UnrecognizedClientException"), "{text}");
    assert_eq!(polled.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn signed_requests_may_send_only_what_their_route_needs() {
    let app = app();
    // A signed ECS call of 2 MiB: well past any ECS document.
    let big = format!("{{\"cluster\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let (status, _, body) = ecs(&app, "ListServices", &big, Signing::default()).await;
    assert_eq!(status, 413, "{body}");
    // A signed call of the usual size still goes through.
    let (status, _, body) = ecs(&app, "ListClusters", "{}", Signing::default()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unauthenticated_requests_cannot_grow_or_forge_metrics() {
    let app = app();
    for i in 0..100 {
        // A quote in a header, a newline in a form parameter.
        let req = Request::post("http://127.0.0.1:9480/")
            .header("host", "127.0.0.1:9480")
            .header(
                "x-amz-target",
                format!("AmazonEC2ContainerServiceV20141113.Op{i}\"}} 1 fake_series{{a=\"b"),
            )
            .body(Body::empty())
            .unwrap();
        send(&app, req).await;
        let req = Request::post("http://127.0.0.1:9480/")
            .header("host", "127.0.0.1:9480")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "Action=Op{i}%22%7D%201%0Afake_series%7Ba%3D%22b&Version=2011-06-15"
            )))
            .unwrap();
        send(&app, req).await;
    }
    // Signed, but for operations no model has: one label between them.
    for i in 0..20 {
        ecs(
            &app,
            &format!("NoSuchOperation{i}"),
            "{}",
            Signing::default(),
        )
        .await;
    }
    let (_, _, text) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(!text.contains("fake_series"), "{text}");
    assert!(!text.contains("Op1"), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("berth_api_requests_total{"))
        .count();
    assert_eq!(series, 3, "{text}");
    assert!(
        text.contains("service=\"ecs\",operation=\"unauthenticated\",code=\"MissingAuthenticationTokenException\"} 100"),
        "{text}"
    );
    assert!(
        text.contains("service=\"sts\",operation=\"unauthenticated\",code=\"MissingAuthenticationToken\"} 100"),
        "{text}"
    );
    assert!(text.contains("operation=\"other\""), "{text}");
}
