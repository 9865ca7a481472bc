//! Berth's edge: the one HTTP listener in front of everything. It owns the
//! wire: it verifies SigV4 on every API request, routes AWS JSON 1.1 calls
//! by `X-Amz-Target` and STS query calls by `Action`, frames responses and
//! errors the way botocore parses them, and serves `/healthz` and
//! `/metrics`. Inner crates never see HTTP, except the registry
//! (`berth-registry`), whose OCI Distribution API under `/v2/` is HTTP by
//! nature: its router is merged in front of the SigV4 fallback, and ECR
//! JSON calls reach it after SigV4 like ECS calls.
//!
//! A request's head is authenticated before its body is read (see
//! [`Authenticator::precheck`]), and the body is then read only up to what
//! its route may carry. The listener (`listener`) bounds connections and
//! how long they may stay silent.

pub mod auth;
pub mod channel;
pub mod credentials;
pub mod listener;
pub mod metrics;
mod sts;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_control::ControlPlane;
use berth_model::{ApiError, ErrorCode};
use berth_registry::Registry;

pub use auth::Authenticator;
/// The registry crate, re-exported so the binary can build one.
pub use berth_registry as registry;
pub use credentials::{Credentials, RootCredentials};
pub use listener::ServeOptions;

/// The JSON 1.1 target prefix of ECS.
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Edge {
    pub control: ControlPlane,
    pub auth: Authenticator,
    pub metrics: metrics::Metrics,
    pub account_id: String,
    pub channel: channel::ChannelSettings,
}

/// The state of the edge's handlers: the edge, and the registry when one
/// is served.
#[derive(Clone)]
struct App {
    edge: Arc<Edge>,
    registry: Option<Arc<Registry>>,
}

impl FromRef<App> for Arc<Edge> {
    fn from_ref(app: &App) -> Arc<Edge> {
        app.edge.clone()
    }
}

/// The router of the edge listener.
pub fn router(edge: Arc<Edge>) -> Router {
    router_with_registry(edge, None)
}

/// The router of the edge listener, with the registry's `/v2/` routes
/// (which authenticate with registry tokens, not SigV4) ahead of the
/// SigV4-verified fallback, and ECR JSON calls routed to it.
pub fn router_with_registry(edge: Arc<Edge>, registry: Option<Arc<Registry>>) -> Router {
    let api_router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route(berth_model::channel::PATH, get(channel::handle))
        // The fallback reads its body itself, within the limit of its route
        // and only once the request's head has passed authentication.
        .fallback(api)
        .layer(DefaultBodyLimit::disable())
        .with_state(App {
            edge,
            registry: registry.clone(),
        });
    match registry {
        Some(reg) => berth_registry::router(reg).merge(api_router),
        None => api_router,
    }
}

/// Serves the edge on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_registry(listener, edge, None, ServeOptions::default(), shutdown).await
}

/// Serves the edge, and the registry if given, until `shutdown` resolves.
pub async fn serve_with_registry(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    registry: Option<Arc<Registry>>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = router_with_registry(edge.clone(), registry);
    listener::serve(listener, router, options, edge, shutdown).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics_text(State(edge): State<Arc<Edge>>) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        edge.metrics.render(),
    )
        .into_response()
}

/// Which API a request is for, decided before authentication so that the
/// error comes back in the right protocol.
enum Route {
    Ecs(String),
    Ecr(String),
    Sts(Vec<(String, String)>),
    Unknown(String),
    /// A service Berth does not serve yet: its signing name and the
    /// operation asked for.
    Foreign(Foreign, String, String),
}

/// The wire protocol of a service Berth does not serve yet, so that the
/// refusal reaches its clients in a form they parse (botocore's parser of
/// each protocol reads the code and message from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Foreign {
    /// AWS JSON 1.0/1.1 (an `X-Amz-Target` no served service owns).
    Json,
    /// The query protocol (IAM, ELBv2, CloudWatch's form API, ...).
    Query,
    /// EC2's own protocol: query in, `<Response><Errors>` out.
    Ec2,
    /// REST with XML bodies (Route 53, S3, CloudFront).
    RestXml,
    /// REST with JSON bodies (EventBridge Scheduler, and the rest).
    RestJson,
}

impl Foreign {
    /// The protocol of a request signed for `service` that carries no
    /// `X-Amz-Target`; `query` when it has an `Action` parameter.
    fn of(service: &str, query: bool) -> Self {
        match (service, query) {
            ("ec2", _) => Foreign::Ec2,
            (_, true) => Foreign::Query,
            ("route53" | "s3" | "cloudfront", false) => Foreign::RestXml,
            _ => Foreign::RestJson,
        }
    }

    fn protocol(self) -> auth::Protocol {
        match self {
            Foreign::Json | Foreign::RestJson => auth::Protocol::Json,
            Foreign::Query | Foreign::Ec2 | Foreign::RestXml => auth::Protocol::Query,
        }
    }

    /// The protocol's own "no such operation" error, naming the service.
    fn refusal(self, service: &str, operation: &str, request_id: &str) -> (Response, &'static str) {
        let message =
            format!("Berth does not serve the {service} API yet: {operation} is not implemented");
        match self {
            Foreign::Json | Foreign::RestJson => {
                let err = ApiError::new(ErrorCode::UnknownOperationException, message);
                (wire::json_error(&err, request_id), err.code.as_str())
            }
            Foreign::Query | Foreign::RestXml => {
                let err = ApiError::new(ErrorCode::InvalidAction, message);
                (wire::xml_error(&err, request_id), err.code.as_str())
            }
            Foreign::Ec2 => {
                let err = ApiError::new(ErrorCode::InvalidAction, message);
                (wire::ec2_error(&err, request_id), err.code.as_str())
            }
        }
    }

    /// An authentication failure in this protocol.
    fn error(self, err: &ApiError, request_id: &str) -> Response {
        match self {
            Foreign::Json | Foreign::RestJson => wire::json_error(err, request_id),
            Foreign::Query | Foreign::RestXml => wire::xml_error(err, request_id),
            Foreign::Ec2 => wire::ec2_error(err, request_id),
        }
    }
}

/// The service a request's credential scope names (`Credential=` of the
/// `Authorization` header, or `X-Amz-Credential` of a presigned URL).
fn scope_service<'h>(uri: &'h Uri, headers: &'h HeaderMap) -> Option<std::borrow::Cow<'h, str>> {
    let credential: std::borrow::Cow<'h, str> = match headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(auth) => {
            let (_, rest) = auth.split_once("Credential=")?;
            std::borrow::Cow::Borrowed(rest.split([',', ' ']).next()?)
        }
        None => form_urlencoded::parse(uri.query()?.as_bytes())
            .find(|(k, _)| k == "X-Amz-Credential")
            .map(|(_, v)| v)?,
    };
    match credential {
        std::borrow::Cow::Borrowed(c) => c.split('/').nth(3).map(std::borrow::Cow::Borrowed),
        std::borrow::Cow::Owned(c) => c
            .split('/')
            .nth(3)
            .map(|s| std::borrow::Cow::Owned(s.to_string())),
    }
}

/// Whether a signing name is one of the services Berth serves here.
fn served(service: &str) -> bool {
    matches!(service, "ecs" | "ecr" | "sts")
}

/// What the head of a request says it is for, before its body is read: a
/// JSON 1.1 target, or the query protocol (STS), or nothing known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    Ecs,
    Ecr,
    /// `Action` in the query string, or a form body that may carry it.
    Query,
    Unknown,
    /// Signed for a service Berth does not serve yet.
    Foreign(Foreign),
}

impl Head {
    fn of<'h>(method: &Method, uri: &Uri, headers: &'h HeaderMap) -> (Head, Option<&'h str>) {
        let scope = scope_service(uri, headers);
        let foreign = scope.as_deref().filter(|s| !served(s));
        if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
            if let Some(op) = target.strip_prefix(berth_registry::ECR_TARGET_PREFIX) {
                return (Head::Ecr, Some(op));
            }
            return match (target.strip_prefix(ECS_TARGET_PREFIX), foreign) {
                (Some(op), _) => (Head::Ecs, Some(op)),
                (None, Some(_)) => (Head::Foreign(Foreign::Json), None),
                (None, None) => (Head::Unknown, None),
            };
        }
        let in_query = uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "Action"));
        let is_form = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let query = in_query || (*method == Method::POST && is_form);
        match (foreign, query) {
            (Some(service), _) => (Head::Foreign(Foreign::of(service, query)), None),
            (None, true) => (Head::Query, None),
            (None, false) => (Head::Unknown, None),
        }
    }

    /// The service label and signing name of the request.
    fn service(self) -> &'static str {
        match self {
            Head::Ecs => "ecs",
            Head::Ecr => "ecr",
            Head::Query => "sts",
            Head::Unknown | Head::Foreign(_) => "unknown",
        }
    }

    fn protocol(self) -> auth::Protocol {
        match self {
            Head::Query => auth::Protocol::Query,
            Head::Foreign(f) => f.protocol(),
            _ => auth::Protocol::Json,
        }
    }

    /// The most a request of this kind may send. ECS requests are JSON
    /// documents whose largest, a task definition, ECS limits to 64 KiB;
    /// ECR's UploadLayerPart carries up to 20 MiB base64-encoded (27 MiB)
    /// and a manifest is at most 4 MiB; STS's are a few parameters.
    fn body_limit(self, operation: Option<&str>) -> usize {
        match (self, operation) {
            (Head::Ecr, Some("UploadLayerPart")) => {
                berth_registry::api::MAX_LAYER_PART.div_ceil(3) * 4 + 1024 * 1024
            }
            (Head::Ecr, _) => 8 * 1024 * 1024,
            _ => MAX_API_BODY,
        }
    }
}

/// Largest body of an ECS or STS request: sixteen times ECS's 64 KiB
/// limit on a task definition, the largest document ECS takes.
const MAX_API_BODY: usize = 1024 * 1024;

/// Bodies at least this large are hashed on the blocking pool, not on an
/// async worker (hashing 27 MiB takes tens of milliseconds).
const HASH_INLINE_MAX: usize = 64 * 1024;

fn route(
    head: Head,
    target_op: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Route {
    match head {
        Head::Foreign(kind) => return foreign_route(kind, uri, headers, body),
        Head::Ecs => return Route::Ecs(target_op.unwrap_or_default().to_string()),
        Head::Ecr => return Route::Ecr(target_op.unwrap_or_default().to_string()),
        Head::Unknown => {
            return Route::Unknown(
                headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
            )
        }
        Head::Query => {}
    }
    // The query protocol: parameters in a form body (POST) or the query
    // string (GET, as presigned URLs use).
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(q) = uri.query() {
        params.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    params.extend(form_urlencoded::parse(body).into_owned());
    if params.iter().any(|(k, _)| k == "Action") {
        return Route::Sts(params);
    }
    Route::Unknown(String::new())
}

/// The route of a request for a service Berth does not serve: which
/// operation it asked for, as its protocol names it.
fn foreign_route(kind: Foreign, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Route {
    let service = scope_service(uri, headers)
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let operation = match kind {
        Foreign::Json => headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_string()),
        Foreign::Query | Foreign::Ec2 => uri
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect::<Vec<_>>()
            })
            .into_iter()
            .flatten()
            .chain(form_urlencoded::parse(body).into_owned())
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v),
        Foreign::RestXml | Foreign::RestJson => Some(uri.path().to_string()),
    };
    // Echoed into an error message: keep it short.
    let mut operation = operation.unwrap_or_else(|| "the request".to_string());
    if operation.len() > 128 {
        let mut end = 128;
        while !operation.is_char_boundary(end) {
            end -= 1;
        }
        operation.truncate(end);
    }
    Route::Foreign(kind, service, operation)
}

/// Reads a request's body, refusing one longer than `limit` before reading
/// it when it says so, else once it has sent more.
async fn read_body(body: axum::body::Body, headers: &HeaderMap, limit: usize) -> Option<Bytes> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return None;
    }
    axum::body::to_bytes(body, limit).await.ok()
}

fn too_large(request_id: &str) -> Response {
    let mut resp = (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(axum::http::header::CONTENT_TYPE, wire::JSON_CONTENT_TYPE)],
        r#"{"message":"Request Entity Too Large"}"#,
    )
        .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

async fn api(State(app): State<App>, request: axum::extract::Request) -> Response {
    let edge = app.edge;
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let (head, target_op) = Head::of(&method, &uri, &headers);
    let service = head.service();
    // A request for a service Berth does not serve is still authenticated,
    // under whatever service its scope names.
    let signing_name = (!matches!(head, Head::Unknown | Head::Foreign(_))).then_some(service);
    // What the head alone can tell is checked before the body is read, so
    // an unauthenticated client never makes the server buffer its body.
    let refused = |err: ApiError, edge: &Edge| {
        let response = match head {
            Head::Query => wire::xml_error(&err, &request_id),
            Head::Foreign(f) => f.error(&err, &request_id),
            _ => wire::json_error(&err, &request_id),
        };
        edge.metrics.observe(
            service,
            metrics::UNAUTHENTICATED,
            err.code.as_str(),
            started.elapsed().as_secs_f64(),
        );
        response
    };
    if let Err(err) = edge.auth.precheck(
        method.as_str(),
        &uri,
        &headers,
        signing_name,
        head.protocol(),
    ) {
        return refused(err, &edge);
    }
    let operation_label = metrics::operation_label(service, target_op.unwrap_or_default());
    let Some(body) = read_body(body, &headers, head.body_limit(target_op)).await else {
        edge.metrics.observe(
            service,
            operation_label,
            "RequestEntityTooLarge",
            started.elapsed().as_secs_f64(),
        );
        return too_large(&request_id);
    };
    let route = route(head, target_op, &uri, &headers, &body);
    let operation = match &route {
        Route::Sts(params) => params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| metrics::operation_label("sts", v))
            .unwrap_or(metrics::OTHER),
        _ => operation_label,
    };
    let authenticated = if body.len() < HASH_INLINE_MAX {
        edge.auth.authenticate(
            method.as_str(),
            &uri,
            &headers,
            &body,
            signing_name,
            head.protocol(),
        )
    } else {
        let (edge, method, uri, headers, body) = (
            edge.clone(),
            method.clone(),
            uri.clone(),
            headers.clone(),
            body.clone(),
        );
        let protocol = head.protocol();
        tokio::task::spawn_blocking(move || {
            edge.auth.authenticate(
                method.as_str(),
                &uri,
                &headers,
                &body,
                signing_name,
                protocol,
            )
        })
        .await
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "authentication task failed");
            Err(ApiError::server("internal error"))
        })
    };
    let authenticated = match authenticated {
        Ok(caller) => caller,
        Err(err) => return refused(err, &edge),
    };
    let (response, code) = match route {
        Route::Ecs(op) => {
            let control = edge.control.clone();
            let caller = authenticated;
            let base_url = format!(
                "http://{}/",
                headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1:9480")
            );
            let result = tokio::task::spawn_blocking(move || {
                if op == "DiscoverPollEndpoint" {
                    control.discover_poll_endpoint(&body, &caller, &base_url)
                } else {
                    control.ecs(&op, &body, &caller)
                }
            })
            .await
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "operation task failed");
                Err(ApiError::server("internal error"))
            });
            match result {
                Ok(out) => (wire::json_ok(out, &request_id), "ok"),
                Err(err) => (wire::json_error(&err, &request_id), err.code.as_str()),
            }
        }
        Route::Ecr(op) if authenticated.instance.is_some() && op != "GetAuthorizationToken" => {
            // An agent key pulls images with a registry token, nothing more.
            let err = ApiError::new(
                ErrorCode::AccessDeniedException,
                format!(
                    "User: {} is not authorized to perform: ecr:{op} because a container \
                     instance's agent key may only get registry tokens",
                    authenticated.principal_arn
                ),
            );
            (wire::json_error(&err, &request_id), err.code.as_str())
        }
        Route::Ecr(op) => match app.registry {
            Some(registry) => {
                let caller = authenticated;
                let result = tokio::task::spawn_blocking(move || registry.ecr(&op, &body, &caller))
                    .await
                    .unwrap_or_else(|err| {
                        tracing::error!(error = %err, "operation task failed");
                        Err(berth_registry::EcrError::server("internal error"))
                    });
                match result {
                    Ok(out) => (wire::json_ok(out, &request_id), "ok"),
                    Err(err) => (ecr_error(&err, &request_id), err.code),
                }
            }
            None => {
                let err = ApiError::new(
                    ErrorCode::UnknownOperationException,
                    format!("Unknown operation {op}: the registry is not served"),
                );
                (wire::json_error(&err, &request_id), err.code.as_str())
            }
        },
        Route::Sts(params) => {
            match sts::handle(&params, &authenticated, &edge.account_id, &request_id) {
                Ok(xml) => (wire::xml_ok(xml, &request_id), "ok"),
                Err(err) => (wire::xml_error(&err, &request_id), err.code.as_str()),
            }
        }
        Route::Foreign(kind, service, operation) => kind.refusal(&service, &operation, &request_id),
        Route::Unknown(target) => {
            let err = ApiError::new(
                ErrorCode::UnknownOperationException,
                if target.is_empty() {
                    "Missing X-Amz-Target header or Action parameter".to_string()
                } else {
                    format!("Unknown target {target}")
                },
            );
            (wire::json_error(&err, &request_id), err.code.as_str())
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    edge.metrics.observe(service, operation, code, elapsed);
    tracing::debug!(service, operation, code, request_id = %request_id, elapsed_ms = elapsed * 1000.0, "request");
    response
}

/// An ECR error in the JSON 1.1 framing of [`wire::json_error`].
fn ecr_error(err: &berth_registry::EcrError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (
        status,
        [(axum::http::header::CONTENT_TYPE, wire::JSON_CONTENT_TYPE)],
        err.body(),
    )
        .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}
