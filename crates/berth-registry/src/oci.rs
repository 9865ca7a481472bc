//! The OCI Distribution API (`/v2/`), as an axum router.
//!
//! Repository names may contain slashes, so one handler takes every path
//! under `/v2/` and parses it from the end (`.../manifests/<ref>`,
//! `.../blobs/<digest>`, `.../blobs/uploads/<id>`, `.../tags/list`,
//! `.../referrers/<digest>`). Every request must carry a registry token
//! (Basic with user `AWS`, or Bearer); without one the answer is 401 with a
//! Basic challenge, as ECR answers. Blob bodies are streamed both ways.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::json;

use crate::digest::{Digest, DigestError};
use crate::error::{OciError, RegistryError};
use crate::manifest::{self, OCI_INDEX};
use crate::meta::{ImageRecord, RepoRecord};
use crate::{keys, state, token, Registry};

/// Query parameter that carries a token in ECR download URLs.
pub const DOWNLOAD_TOKEN_PARAM: &str = "berth-token";

/// The router serving `/v2/` and everything under it.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
        .with_state(registry)
}

/// A parsed `/v2/` path.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, String),
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_path(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |upto: usize| segs[..upto].join("/");
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some(Endpoint::Tags(name(n - 2)));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        if segs[n - 1].is_empty() {
            return Some(Endpoint::UploadStart(name(n - 3)));
        }
        return Some(Endpoint::Upload(name(n - 3), decode(segs[n - 1])));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some(Endpoint::UploadStart(name(n - 2)));
    }
    if n >= 3 && !segs[n - 1].is_empty() {
        let last = decode(segs[n - 1]);
        match segs[n - 2] {
            "manifests" => return Some(Endpoint::Manifest(name(n - 2), last)),
            "blobs" => return Some(Endpoint::Blob(name(n - 2), last)),
            "referrers" => return Some(Endpoint::Referrers(name(n - 2), last)),
            _ => {}
        }
    }
    None
}

fn query_param(req_query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(req_query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = match serve(reg, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(method = %method, path = %path, code = e.code, "registry error");
            e.into_response()
        }
    };
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

fn unauthorized(reg: &Registry, message: &str) -> OciError {
    let mut e = OciError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    e.headers.push((
        "WWW-Authenticate",
        format!(
            "Basic realm=\"http://{}/\",service=\"ecr.amazonaws.com\"",
            reg.config.endpoint
        ),
    ));
    e
}

/// Checks the request's registry token.
fn authenticate(reg: &Registry, req: &Parts, endpoint: &Endpoint) -> Result<(), OciError> {
    let from_header =
        header_str(&req.headers, header::AUTHORIZATION).map(token::from_authorization);
    let tok = match from_header {
        Some(Some(t)) => t,
        Some(None) => return Err(unauthorized(reg, "authentication required")),
        None => {
            // ECR download URLs carry the token in the query (blob GETs only).
            let from_query = matches!(endpoint, Endpoint::Blob(..))
                && (req.method == Method::GET || req.method == Method::HEAD);
            match query_param(req.uri.query(), DOWNLOAD_TOKEN_PARAM).filter(|_| from_query) {
                Some(t) => t,
                None => return Err(unauthorized(reg, "authentication required")),
            }
        }
    };
    match token::verify(reg.token_key(), &tok, reg.clock.now_millis()) {
        // A token is worth no more than the key that got it.
        Ok(claims) if reg.key_is_active(&claims.access_key_id) => {
            let reads = req.method == Method::GET || req.method == Method::HEAD;
            if reads || reg.key_may_push(&claims.access_key_id) {
                Ok(())
            } else {
                tracing::info!(access_key_id = %claims.access_key_id, method = %req.method, "registry write with a pull-only token refused");
                Err(OciError::new(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    "requested access to the resource is denied: this key may only pull",
                ))
            }
        }
        Ok(claims) => {
            tracing::info!(access_key_id = %claims.access_key_id, "registry token of an inactive access key refused");
            Err(unauthorized(reg, "Not Authorized"))
        }
        Err(token::TokenError::Expired) => Err(unauthorized(
            reg,
            "Your authorization token has expired. Reauthenticate and try again.",
        )),
        Err(_) => Err(unauthorized(reg, "Not Authorized")),
    }
}

/// Runs blocking registry work off the async threads.
async fn blocking<T, F>(reg: &Arc<Registry>, f: F) -> Result<T, OciError>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
{
    let reg = reg.clone();
    match tokio::task::spawn_blocking(move || f(&reg)).await {
        Ok(r) => r.map_err(OciError::from),
        Err(err) => {
            tracing::error!(error = %err, "registry task failed");
            Err(OciError::internal())
        }
    }
}

fn parse_digest(s: &str) -> Result<Digest, OciError> {
    s.parse::<Digest>().map_err(|e| match e {
        DigestError::Unsupported(_) => OciError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "digest algorithm not supported",
        ),
        DigestError::Malformed(_) => OciError::digest_invalid("invalid digest"),
    })
}

fn check_name(name: &str) -> Result<(), OciError> {
    if manifest::valid_repository_name(name) {
        Ok(())
    } else {
        Err(OciError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            "invalid repository name",
        )
        .with_detail(json!({ "name": name })))
    }
}

async fn require_repo(reg: &Arc<Registry>, name: &str) -> Result<RepoRecord, OciError> {
    check_name(name)?;
    let n = name.to_string();
    blocking(reg, move |r| r.repository(&n)).await
}

fn respond(status: StatusCode, headers: Vec<(&'static str, String)>, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

async fn serve(reg: Arc<Registry>, req: Request) -> Result<Response, OciError> {
    let (parts, body) = req.into_parts();
    let endpoint = parse_path(parts.uri.path())
        .ok_or_else(|| OciError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "not found"))?;
    authenticate(&reg, &parts, &endpoint)?;
    let method = parts.method.clone();
    let req = &parts;
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => Ok(respond(
            StatusCode::OK,
            vec![("Content-Type", "application/json".into())],
            Body::from("{}"),
        )),
        (Endpoint::Catalog, Method::GET) => catalog(&reg, req).await,
        (Endpoint::Tags(name), Method::GET) => tags_list(&reg, &name, req).await,
        (Endpoint::Manifest(name, r), Method::GET) => get_manifest(&reg, &name, &r, true).await,
        (Endpoint::Manifest(name, r), Method::HEAD) => get_manifest(&reg, &name, &r, false).await,
        (Endpoint::Manifest(name, r), Method::PUT) => {
            put_manifest(&reg, &name, &r, req, body).await
        }
        (Endpoint::Manifest(name, r), Method::DELETE) => delete_manifest(&reg, &name, &r).await,
        (Endpoint::Blob(name, d), Method::GET) => get_blob(&reg, &name, &d, req, true).await,
        (Endpoint::Blob(name, d), Method::HEAD) => get_blob(&reg, &name, &d, req, false).await,
        (Endpoint::Blob(name, d), Method::DELETE) => delete_blob(&reg, &name, &d).await,
        (Endpoint::UploadStart(name), Method::POST) => start_upload(&reg, &name, req, body).await,
        (Endpoint::Upload(name, id), Method::PATCH) => {
            patch_upload(&reg, &name, &id, req, body).await
        }
        (Endpoint::Upload(name, id), Method::PUT) => put_upload(&reg, &name, &id, req, body).await,
        (Endpoint::Upload(name, id), Method::GET) => upload_status(&reg, &name, &id).await,
        (Endpoint::Upload(name, id), Method::DELETE) => {
            require_repo(&reg, &name).await?;
            reg.uploads.get(&id, &name)?;
            reg.uploads.cancel(&id);
            Ok(respond(StatusCode::NO_CONTENT, vec![], Body::empty()))
        }
        (Endpoint::Referrers(name, d), Method::GET) => referrers(&reg, &name, &d, req).await,
        _ => Err(OciError::unsupported("the operation is unsupported")),
    }
}

/// `n` and `last` of a paginated listing; `None` for `n` means no limit.
fn page_params(req: &Parts) -> Result<(Option<usize>, Option<String>), OciError> {
    let q = req.uri.query();
    let n = match query_param(q, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "invalid number of results requested",
            )
        })?),
        None => None,
    };
    Ok((n, query_param(q, "last").filter(|l| !l.is_empty())))
}

/// Takes a page of `items` (already after `last`); returns the page and
/// the `Link` to the next one.
fn paginate(mut items: Vec<String>, n: Option<usize>, base: &str) -> (Vec<String>, Option<String>) {
    match n {
        Some(n) if items.len() > n => {
            items.truncate(n);
            let link = items.last().map(|last| {
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("last", last)
                    .append_pair("n", &n.to_string())
                    .finish();
                format!("<{base}?{q}>; rel=\"next\"")
            });
            (items, link)
        }
        _ => (items, None),
    }
}

async fn catalog(reg: &Arc<Registry>, req: &Parts) -> Result<Response, OciError> {
    let (n, last) = page_params(req)?;
    let names = blocking(reg, move |r| {
        let start = last.map(|l| keys::repo(&l));
        let limit = n.map(|n| n + 1).unwrap_or(0);
        let kvs = state::scan_after(r.store.as_ref(), keys::REPOS, start, limit)?;
        Ok(kvs
            .iter()
            .map(|kv| kv.key[keys::REPOS.len()..].to_string())
            .collect::<Vec<_>>())
    })
    .await?;
    if n == Some(0) {
        return Ok(json_response(json!({ "repositories": [] }), None));
    }
    let (names, link) = paginate(names, n, "/v2/_catalog");
    Ok(json_response(json!({ "repositories": names }), link))
}

fn json_response(body: serde_json::Value, link: Option<String>) -> Response {
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if let Some(l) = link {
        headers.push(("Link", l));
    }
    respond(StatusCode::OK, headers, Body::from(body.to_string()))
}

async fn tags_list(reg: &Arc<Registry>, name: &str, req: &Parts) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let (n, last) = page_params(req)?;
    let repo = name.to_string();
    let tags = blocking(reg, move |r| {
        let prefix = keys::tags(&repo);
        let start = last.map(|l| keys::tag(&repo, &l));
        let limit = n.map(|n| n + 1).unwrap_or(0);
        let kvs = state::scan_after(r.store.as_ref(), &prefix, start, limit)?;
        Ok(kvs
            .iter()
            .map(|kv| kv.key[prefix.len()..].to_string())
            .collect::<Vec<_>>())
    })
    .await?;
    let tags = if n == Some(0) { Vec::new() } else { tags };
    let (tags, link) = paginate(tags, n, &format!("/v2/{name}/tags/list"));
    Ok(json_response(json!({ "name": name, "tags": tags }), link))
}

async fn resolve(
    reg: &Arc<Registry>,
    name: &str,
    reference: &str,
) -> Result<ImageRecord, OciError> {
    if reference.contains(':') {
        parse_digest(reference)?;
    } else if !manifest::valid_tag(reference) {
        return Err(OciError::manifest_unknown(reference));
    }
    let (n, r) = (name.to_string(), reference.to_string());
    blocking(reg, move |reg| reg.resolve(&n, &r))
        .await
        .map_err(|e| match e.code {
            "MANIFEST_UNKNOWN" => OciError::manifest_unknown(reference),
            _ => e,
        })
}

async fn get_manifest(
    reg: &Arc<Registry>,
    name: &str,
    reference: &str,
    with_body: bool,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let image = resolve(reg, name, reference).await?;
    let headers = vec![
        ("Content-Type", image.media_type.clone()),
        ("Docker-Content-Digest", image.digest.clone()),
        ("Content-Length", image.manifest.len().to_string()),
    ];
    if !with_body {
        return Ok(respond(StatusCode::OK, headers, Body::empty()));
    }
    let (n, d) = (name.to_string(), image.digest.clone());
    if let Err(err) = blocking(reg, move |r| r.record_pull(&n, &d)).await {
        tracing::warn!(repository = %name, error = %err, "could not record a pull");
    }
    Ok(respond(StatusCode::OK, headers, Body::from(image.manifest)))
}

async fn put_manifest(
    reg: &Arc<Registry>,
    name: &str,
    reference: &str,
    req: &Parts,
    body: Body,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let (tag, expected) = if reference.contains(':') {
        (None, Some(parse_digest(reference)?))
    } else if manifest::valid_tag(reference) {
        (Some(reference.to_string()), None)
    } else {
        return Err(OciError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            "manifest tag did not match URI",
        )
        .with_detail(json!({ "tag": reference })));
    };
    let declared = header_str(&req.headers, header::CONTENT_TYPE).map(str::to_string);
    let bytes = axum::body::to_bytes(body, manifest::MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| {
            OciError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                "manifest is too large or unreadable",
            )
        })?;
    let n = name.to_string();
    let pushed = blocking(reg, move |r| {
        r.put_manifest(
            &n,
            &bytes,
            declared.as_deref(),
            tag.as_deref(),
            expected.as_ref(),
        )
    })
    .await?;
    let digest = pushed.digest.to_string();
    let mut headers = vec![
        ("Location", format!("/v2/{name}/manifests/{digest}")),
        ("Docker-Content-Digest", digest),
        ("Content-Length", "0".into()),
    ];
    if let Some(s) = &pushed.parsed.subject {
        headers.push(("OCI-Subject", s.digest.to_string()));
    }
    Ok(respond(StatusCode::CREATED, headers, Body::empty()))
}

async fn delete_manifest(
    reg: &Arc<Registry>,
    name: &str,
    reference: &str,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let (n, r) = (name.to_string(), reference.to_string());
    let result = if reference.contains(':') {
        parse_digest(reference)?;
        blocking(reg, move |reg| reg.delete_image(&n, &r).map(|_| ())).await
    } else {
        blocking(reg, move |reg| reg.delete_tag(&n, &r).map(|_| ())).await
    };
    result.map_err(|e| match e.code {
        "MANIFEST_UNKNOWN" => OciError::manifest_unknown(reference),
        _ => e,
    })?;
    Ok(respond(
        StatusCode::ACCEPTED,
        vec![("Content-Length", "0".into())],
        Body::empty(),
    ))
}

/// A parsed `Range: bytes=a-b` against a blob of `size` bytes; `Err` for
/// an unsatisfiable range.
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole blob
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Err(()),
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (s, e) => {
            let e: u64 = e.parse().map_err(|_| ())?;
            (s.parse().map_err(|_| ())?, e.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start > end || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn get_blob(
    reg: &Arc<Registry>,
    name: &str,
    digest: &str,
    req: &Parts,
    with_body: bool,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let d = parse_digest(digest)?;
    let (n, dd) = (name.to_string(), d.clone());
    let Some(size) = blocking(reg, move |r| r.blob_available(&n, &dd)).await? else {
        return Err(OciError::blob_unknown(digest));
    };
    let path = reg.blobs.path(&d);
    let mut headers = vec![
        ("Docker-Content-Digest", d.to_string()),
        ("Content-Type", "application/octet-stream".to_string()),
        ("Accept-Ranges", "bytes".to_string()),
        ("ETag", format!("\"{d}\"")),
    ];
    let range = match header_str(&req.headers, header::RANGE) {
        Some(v) => parse_range(v, size).map_err(|()| {
            let mut e = OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                "requested range not satisfiable",
            );
            e.headers.push(("Content-Range", format!("bytes */{size}")));
            e
        })?,
        None => None,
    };
    let (status, start, len) = match range {
        Some((s, e)) => {
            headers.push(("Content-Range", format!("bytes {s}-{e}/{size}")));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    headers.push(("Content-Length", len.to_string()));
    if !with_body {
        return Ok(respond(status, headers, Body::empty()));
    }
    // Opened here, so a blob that vanished since the lookup is a 404 and
    // not a broken body.
    let file = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
        Ok(Ok(f)) => f,
        _ => return Err(OciError::blob_unknown(digest)),
    };
    Ok(respond(status, headers, file_body(file, start, len)))
}

/// Bytes read from a blob file per body frame.
const READ_CHUNK: u64 = 1 << 20;

/// A read in flight: the file comes back with the bytes, and how many
/// are left after them.
type ReadHandle = tokio::task::JoinHandle<(std::fs::File, u64, std::io::Result<Vec<u8>>)>;

/// Reads the next frame (at most [`READ_CHUNK`] of the `left` bytes) on
/// the blocking pool, straight into the buffer the body will send
/// (`tokio::fs` would copy it once more). The thread is held only for the
/// read, never while the client is slow to take the bytes.
fn read_frame(mut file: std::fs::File, seek: Option<u64>, left: u64) -> ReadHandle {
    use std::io::{Read as _, Seek as _};
    tokio::task::spawn_blocking(move || {
        if let Some(at) = seek {
            if let Err(e) = file.seek(std::io::SeekFrom::Start(at)) {
                return (file, left, Err(e));
            }
        }
        let want = left.min(READ_CHUNK);
        // `read_to_end` fills the spare capacity without zeroing it.
        let mut buf = Vec::with_capacity(want as usize);
        let read = (&mut file).take(want).read_to_end(&mut buf);
        match read {
            Ok(0) => (file, left, Err(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => (file, left - n as u64, Ok(buf)),
            Err(e) => (file, left, Err(e)),
        }
    })
}

/// `len` bytes of `file` from `start`, as a response body, one frame read
/// ahead of the one being sent.
fn file_body(file: std::fs::File, start: u64, len: u64) -> Body {
    let first = (len > 0).then(|| read_frame(file, (start > 0).then_some(start), len));
    Body::from_stream(futures_util::stream::unfold(first, |next| async move {
        let (file, left, read) = match next?.await {
            Ok(done) => done,
            Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
        };
        match read {
            Ok(buf) => {
                let ahead = (left > 0).then(|| read_frame(file, None, left));
                Some((Ok(bytes::Bytes::from(buf)), ahead))
            }
            Err(e) => Some((Err(e), None)),
        }
    }))
}

async fn delete_blob(reg: &Arc<Registry>, name: &str, digest: &str) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let d = parse_digest(digest)?;
    let n = name.to_string();
    if !blocking(reg, move |r| r.unlink_layer(&n, &d)).await? {
        return Err(OciError::blob_unknown(digest));
    }
    Ok(respond(
        StatusCode::ACCEPTED,
        vec![("Content-Length", "0".into())],
        Body::empty(),
    ))
}

fn upload_headers(name: &str, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("Range", format!("0-{}", offset.saturating_sub(1))),
        ("Docker-Upload-UUID", id.to_string()),
        ("Content-Length", "0".into()),
    ]
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    respond(
        StatusCode::CREATED,
        vec![
            ("Location", format!("/v2/{name}/blobs/{digest}")),
            ("Docker-Content-Digest", digest.to_string()),
            ("Content-Length", "0".into()),
        ],
        Body::empty(),
    )
}

async fn start_upload(
    reg: &Arc<Registry>,
    name: &str,
    req: &Parts,
    body: Body,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let q = req.uri.query().map(str::to_string);
    // Cross-repository mount: link the blob if the source has it, else
    // fall back to an ordinary upload (as the spec says).
    if let Some(mount) = query_param(q.as_deref(), "mount") {
        let d = parse_digest(&mount)?;
        if let Some(from) = query_param(q.as_deref(), "from") {
            let (n, f, dd) = (name.to_string(), from.clone(), d.clone());
            let mounted = blocking(reg, move |r| {
                if !manifest::valid_repository_name(&f) {
                    return Ok(false);
                }
                r.mount_blob(&n, &f, &dd)
            })
            .await?;
            if mounted {
                tracing::info!(repository = %name, from = %from, digest = %d, "blob mounted");
                return Ok(blob_created(name, &d));
            }
        }
    }
    let expected = query_param(q.as_deref(), "digest")
        .map(|d| parse_digest(&d))
        .transpose()?;
    let n = name.to_string();
    let id = blocking(reg, move |r| {
        r.uploads.start(&r.blobs, &n, r.clock.now_millis())
    })
    .await?;
    match expected {
        // Monolithic upload: the body is the whole blob.
        Some(d) => {
            let handle = reg.uploads.get(&id, name)?;
            let upload = handle.lock_owned().await;
            finish_upload(reg, name, &id, upload, body, d).await
        }
        None => Ok(respond(
            StatusCode::ACCEPTED,
            upload_headers(name, &id, 0),
            Body::empty(),
        )),
    }
}

/// Streams the rest of the blob in, verifies and commits it, links it.
async fn finish_upload(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    upload: tokio::sync::OwnedMutexGuard<crate::blobs::Upload>,
    body: Body,
    expected: Digest,
) -> Result<Response, OciError> {
    let now = reg.clock.now_millis();
    let upload = match crate::blobs::Upload::append_stream(upload, body, now).await {
        Ok((upload, _)) => upload,
        Err(e) => {
            reg.uploads.cancel(id);
            return Err(e.into());
        }
    };
    // Hash is done; the commit (fsync, rename) and the link are blocking.
    let (path, upload_digest, size) = (upload.path().to_path_buf(), upload.digest(), upload.offset);
    let (n, exp) = (name.to_string(), expected.clone());
    let committed = blocking(reg, move |r| {
        r.commit_blob(&n, &path, &upload_digest, &exp, size)
    })
    .await;
    reg.uploads.cancel(id);
    committed?;
    tracing::info!(repository = %name, digest = %expected, size, "blob uploaded");
    Ok(blob_created(name, &expected))
}

/// `<start>-<end>` of a chunk's `Content-Range` (`bytes ` and `/<total>`
/// allowed); `None` when it does not parse.
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v
        .strip_prefix("bytes ")
        .or_else(|| v.strip_prefix("bytes="))
        .unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    let (a, b) = v.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Checks a chunk's `Content-Range` against the session, before a byte is
/// written: a range that does not start at the session's offset (or is
/// backwards, or unreadable) gets 416 with the headers that tell the
/// client where the upload stands; a `Content-Length` that disagrees with
/// the range gets 400 `SIZE_INVALID`, as distribution/distribution
/// answers. Without `Content-Range` the chunk simply appends.
fn check_content_range(
    headers: &HeaderMap,
    name: &str,
    id: &str,
    offset: u64,
) -> Result<(), OciError> {
    let Some(value) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(());
    };
    let range = parse_content_range(value);
    let (start, end) = match range {
        Some((start, end)) if start == offset && start <= end => (start, end),
        _ => {
            let mut e: OciError = RegistryError::UploadOffset {
                expected: offset,
                got: range.map(|(s, _)| s).unwrap_or(0),
            }
            .into();
            e.headers.extend(
                upload_headers(name, id, offset)
                    .into_iter()
                    .filter(|(k, _)| *k != "Content-Length"),
            );
            return Err(e);
        }
    };
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len != end - start + 1 => Err(OciError::new(
            StatusCode::BAD_REQUEST,
            "SIZE_INVALID",
            "provided length did not match content length",
        )
        .with_detail(json!({ "contentRange": value, "contentLength": len }))),
        _ => Ok(()),
    }
}

async fn patch_upload(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    req: &Parts,
    body: Body,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let handle = reg.uploads.get(id, name)?;
    let upload = handle.lock_owned().await;
    check_content_range(&req.headers, name, id, upload.offset)?;
    let (_upload, offset) =
        crate::blobs::Upload::append_stream(upload, body, reg.clock.now_millis())
            .await
            .map_err(OciError::from)?;
    Ok(respond(
        StatusCode::ACCEPTED,
        upload_headers(name, id, offset),
        Body::empty(),
    ))
}

async fn put_upload(
    reg: &Arc<Registry>,
    name: &str,
    id: &str,
    req: &Parts,
    body: Body,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let handle = reg.uploads.get(id, name)?;
    let expected = match query_param(req.uri.query(), "digest") {
        Some(d) => parse_digest(&d)?,
        None => return Err(OciError::digest_invalid("digest parameter missing")),
    };
    let upload = handle.lock_owned().await;
    check_content_range(&req.headers, name, id, upload.offset)?;
    finish_upload(reg, name, id, upload, body, expected).await
}

async fn upload_status(reg: &Arc<Registry>, name: &str, id: &str) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let handle = reg.uploads.get(id, name)?;
    let upload = handle.lock().await;
    Ok(respond(
        StatusCode::NO_CONTENT,
        upload_headers(name, id, upload.offset),
        Body::empty(),
    ))
}

async fn referrers(
    reg: &Arc<Registry>,
    name: &str,
    digest: &str,
    req: &Parts,
) -> Result<Response, OciError> {
    require_repo(reg, name).await?;
    let d = parse_digest(digest)?.to_string();
    let filter = query_param(req.uri.query(), "artifactType");
    let n = name.to_string();
    let images = blocking(reg, move |r| r.images(&n)).await?;
    let mut manifests = Vec::new();
    for img in images
        .iter()
        .filter(|i| i.subject.as_deref() == Some(d.as_str()))
    {
        if let Some(f) = &filter {
            if img.artifact_type.as_deref() != Some(f.as_str()) {
                continue;
            }
        }
        let annotations = serde_json::from_str::<serde_json::Value>(&img.manifest)
            .ok()
            .and_then(|v| v.get("annotations").cloned());
        let mut desc = json!({
            "mediaType": img.media_type,
            "digest": img.digest,
            "size": img.manifest.len(),
        });
        if let Some(a) = &img.artifact_type {
            desc["artifactType"] = json!(a);
        }
        if let Some(a) = annotations {
            desc["annotations"] = a;
        }
        manifests.push(desc);
    }
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut headers = vec![("Content-Type", OCI_INDEX.to_string())];
    if filter.is_some() {
        headers.push(("OCI-Filters-Applied", "artifactType".into()));
    }
    Ok(respond(
        StatusCode::OK,
        headers,
        Body::from(body.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/v2/"), Some(Endpoint::Base));
        assert_eq!(parse_path("/v2"), Some(Endpoint::Base));
        assert_eq!(parse_path("/v2/_catalog"), Some(Endpoint::Catalog));
        assert_eq!(
            parse_path("/v2/team/app/manifests/latest"),
            Some(Endpoint::Manifest("team/app".into(), "latest".into()))
        );
        assert_eq!(
            parse_path("/v2/a/b/c/blobs/uploads/"),
            Some(Endpoint::UploadStart("a/b/c".into()))
        );
        assert_eq!(
            parse_path("/v2/a/blobs/uploads/123"),
            Some(Endpoint::Upload("a".into(), "123".into()))
        );
        assert_eq!(
            parse_path("/v2/x/blobs/sha256%3Aab"),
            Some(Endpoint::Blob("x".into(), "sha256:ab".into()))
        );
        assert_eq!(
            parse_path("/v2/x/tags/list"),
            Some(Endpoint::Tags("x".into()))
        );
        assert_eq!(
            parse_path("/v2/x/y/referrers/sha256:ab"),
            Some(Endpoint::Referrers("x/y".into(), "sha256:ab".into()))
        );
        assert_eq!(parse_path("/v2/x/unknown"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=9-1", 100), Err(()));
    }

    #[test]
    fn link_pages() {
        let (page, link) = paginate(
            vec!["a".into(), "b".into(), "c".into()],
            Some(2),
            "/v2/_catalog",
        );
        assert_eq!(page, vec!["a", "b"]);
        assert_eq!(
            link.as_deref(),
            Some("</v2/_catalog?last=b&n=2>; rel=\"next\"")
        );
        let (page, link) = paginate(vec!["a".into()], Some(2), "/v2/_catalog");
        assert_eq!(page.len(), 1);
        assert!(link.is_none());
    }
}
