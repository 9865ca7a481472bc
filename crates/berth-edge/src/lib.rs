//! Berth's edge: the one HTTP listener in front of everything. It owns the
//! wire: it verifies SigV4 on every API request, routes AWS JSON 1.1 calls
//! by `X-Amz-Target` and STS query calls by `Action`, frames responses and
//! errors the way botocore parses them, and serves `/healthz` and
//! `/metrics`. Inner crates never see HTTP.

pub mod auth;
pub mod credentials;
pub mod metrics;
mod sts;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_control::ControlPlane;
use berth_model::{ApiError, ErrorCode};

pub use auth::Authenticator;
pub use credentials::{Credentials, RootCredentials};

/// The JSON 1.1 target prefix of ECS.
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// Largest request body accepted (ECS's own limit on task definitions is far
/// smaller).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Edge {
    pub control: ControlPlane,
    pub auth: Authenticator,
    pub metrics: metrics::Metrics,
    pub account_id: String,
}

/// The router of the edge listener.
pub fn router(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .fallback(api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(edge)
}

/// Serves the edge on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(edge).into_make_service_with_connect_info::<SocketAddr>();
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
    Sts(Vec<(String, String)>),
    Unknown(String),
}

fn route(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Route {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
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
    State(edge): State<Arc<Edge>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let route = route(&method, &uri, &headers, &body);
    let (service, operation) = match &route {
        Route::Ecs(op) => ("ecs", op.clone()),
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
            let result = tokio::task::spawn_blocking(move || control.ecs(&op, &body, &caller))
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
