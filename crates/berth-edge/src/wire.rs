//! The two AWS wire protocols the edge speaks: JSON 1.1 (ECS, ECR) and the
//! query protocol with XML responses (STS). Every error leaves through here.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_model::ApiError;

pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

pub fn json_ok(body: Vec<u8>, request_id: &str) -> Response {
    let resp = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
        body,
    )
        .into_response();
    with_request_id(resp, request_id)
}

pub fn json_error(err: &ApiError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({ "__type": err.code.as_str(), "message": err.message });
    let resp = (
        status,
        [(axum::http::header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response();
    with_request_id(resp, request_id)
}

/// Escapes text for an XML element.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

pub fn xml_ok(body: String, request_id: &str) -> Response {
    let resp = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/xml")],
        body,
    )
        .into_response();
    with_request_id(resp, request_id)
}

/// An error in EC2's protocol: `<Response><Errors><Error>` with the
/// request id in `RequestID`, as botocore's ec2 parser reads it.
pub fn ec2_error(err: &ApiError, request_id: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        err.code.as_str(),
        xml_escape(&err.message),
        xml_escape(request_id)
    );
    xml_error_response(err, body, request_id)
}

/// An error in the query protocol's `ErrorResponse` form.
pub fn xml_error(err: &ApiError, request_id: &str) -> Response {
    let kind = if err.code.is_server_fault() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        err.code.as_str(),
        xml_escape(&err.message),
        xml_escape(request_id)
    );
    xml_error_response(err, body, request_id)
}

/// An XML error `body` with the status of `err`'s code.
fn xml_error_response(err: &ApiError, body: String, request_id: &str) -> Response {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let resp = (
        status,
        [(axum::http::header::CONTENT_TYPE, "text/xml")],
        body,
    )
        .into_response();
    with_request_id(resp, request_id)
}
