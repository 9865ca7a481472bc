//! Berth's edge: the one HTTP listener in front of everything. It owns the
//! wire: it verifies SigV4 on every API request, routes AWS JSON 1.1 calls
//! by `X-Amz-Target` and STS query calls by `Action`, frames responses and
//! errors the way botocore parses them, and serves `/healthz` and
//! `/metrics`. Inner crates never see HTTP, except the registry
//! (`berth-registry`), whose OCI Distribution API under `/v2/` is HTTP by
//! nature: its router is merged in front of the SigV4 fallback, and ECR
//! JSON calls reach it after SigV4 like ECS calls.

pub mod auth;
pub mod channel;
pub mod credentials;
pub mod metrics;
mod sts;
pub mod wire;

use std::net::SocketAddr;
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

/// The JSON 1.1 target prefix of ECS.
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// Largest request body accepted: ECR's UploadLayerPart carries up to
/// 20 MiB, base64-encoded in JSON (ECS's own limits are far smaller).
const MAX_BODY: usize = 32 * 1024 * 1024;

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
        .fallback(api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
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
    serve_with_registry(listener, edge, None, shutdown).await
}

/// Serves the edge, and the registry if given, until `shutdown` resolves.
pub async fn serve_with_registry(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    registry: Option<Arc<Registry>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app =
        router_with_registry(edge, registry).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
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
}

fn route(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Route {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        if let Some(op) = target.strip_prefix(berth_registry::ECR_TARGET_PREFIX) {
            return Route::Ecr(op.to_string());
        }
        return match target.strip_prefix(ECS_TARGET_PREFIX) {
            Some(op) => Route::Ecs(op.to_string()),
            None => Route::Unknown(target.to_string()),
        };
    }
    // The query protocol: parameters in a form body (POST) or the query
    // string (GET, as presigned URLs use).
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(q) = uri.query() {
        params.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if *method == Method::POST && is_form {
        params.extend(form_urlencoded::parse(body).into_owned());
    }
    if params.iter().any(|(k, _)| k == "Action") {
        return Route::Sts(params);
    }
    Route::Unknown(String::new())
}

async fn api(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let edge = app.edge;
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let route = route(&method, &uri, &headers, &body);
    let (service, operation) = match &route {
        Route::Ecs(op) => ("ecs", op.clone()),
        Route::Ecr(op) => ("ecr", op.clone()),
        Route::Sts(params) => (
            "sts",
            params
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        ),
        Route::Unknown(_) => ("unknown", String::new()),
    };
    let authenticated = edge.auth.authenticate(
        method.as_str(),
        &uri,
        &headers,
        &body,
        if service == "unknown" {
            None
        } else {
            Some(service)
        },
        if service == "sts" {
            auth::Protocol::Query
        } else {
            auth::Protocol::Json
        },
    );
    let (response, code) = match (route, authenticated) {
        (Route::Sts(_), Err(err)) => (wire::xml_error(&err, &request_id), err.code.as_str()),
        (_, Err(err)) => (wire::json_error(&err, &request_id), err.code.as_str()),
        (Route::Ecs(op), Ok(caller)) => {
            let control = edge.control.clone();
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
        (Route::Ecr(op), Ok(caller))
            if caller.instance.is_some() && op != "GetAuthorizationToken" =>
        {
            // An agent key pulls images with a registry token, nothing more.
            let err = ApiError::new(
                ErrorCode::AccessDeniedException,
                format!(
                    "User: {} is not authorized to perform: ecr:{op} because a container \
                     instance's agent key may only get registry tokens",
                    caller.principal_arn
                ),
            );
            (wire::json_error(&err, &request_id), err.code.as_str())
        }
        (Route::Ecr(op), Ok(caller)) => match app.registry {
            Some(registry) => {
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
        (Route::Sts(params), Ok(caller)) => {
            match sts::handle(&params, &caller, &edge.account_id, &request_id) {
                Ok(xml) => (wire::xml_ok(xml, &request_id), "ok"),
                Err(err) => (wire::xml_error(&err, &request_id), err.code.as_str()),
            }
        }
        (Route::Unknown(target), Ok(_)) => {
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
    edge.metrics.observe(service, &operation, code, elapsed);
    tracing::debug!(service, operation = %operation, code, request_id = %request_id, elapsed_ms = elapsed * 1000.0, "request");
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
