//! The registry against hostile and careless clients (issue 13): tokens
//! that outlive their key or claim too long a life, chunks off the
//! session's offset, manifests that lie about sizes, a full disk, and the
//! modes of what lands on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_control::{Clock as _, ManualClock};
use berth_registry::Registry;
use berth_store::MemoryStore;
use common::{
    body_bytes, config, error_code, header, image_manifest, pattern, sha, Fixture, ACCESS_KEY_ID,
};
use hmac::{Hmac, Mac};
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;

const HOUR_MS: i64 = 60 * 60 * 1000;

/// A token signed with the registry's real key, as anyone who can read
/// `<data-dir>/registry/token-key` could sign one.
fn forge(f: &Fixture, payload: Value) -> String {
    let key = std::fs::read(f.data.join("registry/token-key")).unwrap();
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(body.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{body}.{sig}")
}

async fn get_with(f: &Fixture, auth: &str) -> http::Response<Body> {
    berth_registry::router(f.registry.clone())
        .oneshot(
            Request::get("/v2/_catalog")
                .header("Authorization", auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_is_refused_once_its_access_key_is_revoked() {
    let f = Fixture::new();
    assert_eq!(get_with(&f, &f.auth).await.status(), StatusCode::OK);
    f.active_keys.lock().unwrap().clear();
    let r = get_with(&f, &f.auth).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").starts_with("Basic realm="));
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    // The same token works again if the key comes back: nothing but the
    // key's existence decided.
    f.active_keys
        .lock()
        .unwrap()
        .push(ACCESS_KEY_ID.to_string());
    assert_eq!(get_with(&f, &f.auth).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn forged_tokens_signed_with_the_real_key_are_refused() {
    let f = Fixture::new();
    let now = f.clock.now_millis();
    let bearer = |t: String| format!("Bearer {t}");
    // The forging itself is right: a well-formed token passes.
    let fair = forge(
        &f,
        json!({"k": ACCESS_KEY_ID, "i": now, "x": now + HOUR_MS}),
    );
    assert_eq!(get_with(&f, &bearer(fair)).await.status(), StatusCode::OK);
    for payload in [
        // A key id that never existed.
        json!({"k": "AKIDBOGUS", "i": now, "x": now + HOUR_MS}),
        // A year of life, with and without an issue time.
        json!({"k": ACCESS_KEY_ID, "i": now, "x": now + 365 * 24 * HOUR_MS}),
        json!({"k": ACCESS_KEY_ID, "x": now + 365 * 24 * HOUR_MS}),
        // Issued long ago with a 24-hour life, used within its last 12.
        json!({"k": ACCESS_KEY_ID, "i": now - 20 * HOUR_MS, "x": now + 4 * HOUR_MS}),
    ] {
        let r = get_with(&f, &bearer(forge(&f, payload.clone()))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{payload}");
        assert_eq!(error_code(r).await, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn get_authorization_token_gives_twelve_hours_from_now() {
    let f = Fixture::new();
    let out = f.ecr("GetAuthorizationToken", json!({})).unwrap();
    let expires = out["authorizationData"][0]["expiresAt"].as_f64().unwrap();
    let now = f.clock.now_millis() as f64 / 1000.0;
    assert_eq!(expires - now, 12.0 * 3600.0);
}

/// Starts a chunked upload and sends its first chunk; returns the
/// session's location.
async fn upload_with_first_chunk(f: &Fixture, repo: &str, chunk: &[u8]) -> String {
    let r = f
        .call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location");
    let range = format!("0-{}", chunk.len() - 1);
    let len = chunk.len().to_string();
    let r = f
        .call(
            "PATCH",
            &loc,
            &[("Content-Range", &range), ("Content-Length", &len)],
            chunk.to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    loc
}

#[tokio::test]
async fn a_chunk_off_the_session_offset_gets_416_and_changes_nothing() {
    let f = Fixture::new();
    f.create("app");
    let data = pattern(10_000, 0);
    let loc = upload_with_first_chunk(&f, "app", &data[..4000]).await;
    let id = loc.rsplit('/').next().unwrap().to_string();
    let rest = data[4000..].to_vec();
    let len = rest.len().to_string();
    // Behind the offset, ahead of it, backwards, unreadable.
    for range in ["0-5999", "5000-10999", "4000-3999", "x-y"] {
        let r = f
            .call(
                "PATCH",
                &loc,
                &[("Content-Range", range), ("Content-Length", &len)],
                rest.clone(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&r, "location"), loc, "{range}");
        assert_eq!(header(&r, "range"), "0-3999", "{range}");
        assert_eq!(header(&r, "docker-upload-uuid"), id, "{range}");
        assert_eq!(error_code(r).await, "RANGE_INVALID");
    }
    // A range that starts right but does not match the body's length.
    let r = f
        .call(
            "PATCH",
            &loc,
            &[("Content-Range", "4000-20000"), ("Content-Length", &len)],
            rest.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    // The session is where it was, and the right chunk completes it.
    let r = f.call("GET", &loc, &[], vec![]).await;
    assert_eq!(header(&r, "range"), "0-3999");
    let range = format!("4000-{}", data.len() - 1);
    let r = f
        .call(
            "PATCH",
            &loc,
            &[("Content-Range", &range), ("Content-Length", &len)],
            rest,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    f.finish_upload(&loc, &data).await;
}

#[tokio::test]
async fn a_manifest_whose_descriptor_sizes_lie_is_refused() {
    let f = Fixture::new();
    f.create("app");
    let cfg = f.push_blob("app", b"{}").await;
    let layer = f.push_blob("app", b"layer").await;
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    for (cfg_size, layer_size) in [(3, 5), (2, 4), (2, 5_000_000)] {
        let m = image_manifest(&cfg, cfg_size, &layer, layer_size);
        let r = f.call("PUT", "/v2/app/manifests/v1", &ct, m.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
        assert_eq!(v["errors"][0]["code"], "MANIFEST_INVALID");
        let wrong = if cfg_size != 2 { &cfg } else { &layer };
        assert_eq!(v["errors"][0]["detail"]["digest"], json!(wrong));
        // The ECR API shares the check.
        let e = f
            .ecr(
                "PutImage",
                json!({"repositoryName": "app", "imageTag": "v1",
                       "imageManifest": String::from_utf8(m).unwrap()}),
            )
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
        assert!(e.message.contains(wrong.as_str()), "{}", e.message);
    }
    let r = f.call("GET", "/v2/app/manifests/v1", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The truth is accepted, and an index must give its children's
    // sizes right too.
    let good = image_manifest(&cfg, 2, &layer, 5);
    let r = f
        .call("PUT", "/v2/app/manifests/v1", &ct, good.clone())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let index = |size: usize| {
        json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": sha(&good), "size": size}]
        })
        .to_string()
        .into_bytes()
    };
    let ict = [("Content-Type", "application/vnd.oci.image.index.v1+json")];
    let r = f
        .call("PUT", "/v2/app/manifests/idx", &ict, index(good.len() + 1))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = f
        .call("PUT", "/v2/app/manifests/idx", &ict, index(good.len()))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Points an upload session's temp file at `/dev/full`, whose writes fail
/// with `ENOSPC` as a full disk's do; returns the real file, moved aside.
fn fill_disk_under(f: &Fixture, loc: &str) -> std::path::PathBuf {
    let id = loc.rsplit('/').next().unwrap();
    let file = f.data.join("registry/uploads").join(id);
    let aside = file.with_extension("aside");
    std::fs::rename(&file, &aside).unwrap();
    std::os::unix::fs::symlink("/dev/full", &file).unwrap();
    aside
}

fn free_disk_under(f: &Fixture, loc: &str, aside: &Path) {
    let id = loc.rsplit('/').next().unwrap();
    let file = f.data.join("registry/uploads").join(id);
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(aside, &file).unwrap();
}

#[tokio::test]
async fn a_full_disk_is_a_clear_507_and_the_session_survives() {
    let f = Fixture::new();
    f.create("app");
    let data = pattern(3 << 20, 0);
    let first = 1 << 20;
    let loc = upload_with_first_chunk(&f, "app", &data[..first]).await;
    let aside = fill_disk_under(&f, &loc);
    let range = format!("{first}-{}", data.len() - 1);
    let rest = data[first..].to_vec();
    let r = f
        .call("PATCH", &loc, &[("Content-Range", &range)], rest.clone())
        .await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("no space left"), "{message}");
    assert_ne!(message, "unknown error");
    // Nothing of the failed chunk counts; once there is room again the
    // same chunk goes through and the blob is exact.
    let r = f.call("GET", &loc, &[], vec![]).await;
    assert_eq!(header(&r, "range"), format!("0-{}", first - 1));
    free_disk_under(&f, &loc, &aside);
    let r = f
        .call("PATCH", &loc, &[("Content-Range", &range)], rest)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    f.finish_upload(&loc, &data).await;
}

#[tokio::test]
async fn a_full_disk_fails_a_final_put_cleanly() {
    let f = Fixture::new();
    f.create("app");
    let data = pattern(100_000, 0);
    let loc = upload_with_first_chunk(&f, "app", &data[..10]).await;
    let aside = fill_disk_under(&f, &loc);
    let d = sha(&data);
    let r = f
        .call(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[],
            data[10..].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    // The session is gone with its file; no blob appeared.
    assert_eq!(
        f.call("GET", &loc, &[], vec![]).await.status(),
        StatusCode::NOT_FOUND
    );
    std::fs::remove_file(aside).unwrap();
    assert_eq!(f.upload_files(), 0);
    assert!(!f.blob_path(&d).exists());
}

#[test]
fn a_full_disk_is_a_server_exception_on_the_ecr_api() {
    let f = Fixture::new();
    f.create("app");
    let out = f
        .ecr("InitiateLayerUpload", json!({"repositoryName": "app"}))
        .unwrap();
    let id = out["uploadId"].as_str().unwrap().to_string();
    let loc = format!("/v2/app/blobs/uploads/{id}");
    let part = |first: usize, bytes: &[u8]| {
        json!({"repositoryName": "app", "uploadId": id, "partFirstByte": first,
               "partLastByte": first + bytes.len() - 1,
               "layerPartBlob": base64::engine::general_purpose::STANDARD.encode(bytes)})
    };
    f.ecr("UploadLayerPart", part(0, b"hello ")).unwrap();
    let aside = fill_disk_under(&f, &loc);
    let e = f.ecr("UploadLayerPart", part(6, b"world")).unwrap_err();
    assert_eq!(e.code, "ServerException");
    assert!(e.message.contains("no space left"), "{}", e.message);
    free_disk_under(&f, &loc, &aside);
    // The part was not counted: sent again, it continues the upload.
    let out = f.ecr("UploadLayerPart", part(6, b"world")).unwrap();
    assert_eq!(out["lastByteReceived"], 10);
    f.ecr(
        "CompleteLayerUpload",
        json!({"repositoryName": "app", "uploadId": id, "layerDigests": [sha(b"hello world")]}),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(f.blob_path(&sha(b"hello world"))).unwrap(),
        b"hello world"
    );
}

/// Every file under `dir` and `dir` itself, with its mode bits.
fn modes(dir: &Path, out: &mut Vec<(std::path::PathBuf, bool, u32)>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    out.push((dir.to_path_buf(), true, meta.permissions().mode() & 0o777));
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            modes(&entry.path(), out);
        } else {
            out.push((entry.path(), false, meta.permissions().mode() & 0o777));
        }
    }
}

#[tokio::test]
async fn everything_the_registry_writes_is_owner_only() {
    let f = Fixture::new();
    f.create("app");
    let cfg = f.push_blob("app", b"{}").await;
    let layer = f.push_blob("app", b"layer").await;
    let r = f
        .call(
            "PUT",
            "/v2/app/manifests/v1",
            &[],
            image_manifest(&cfg, 2, &layer, 5),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // An upload in progress too.
    upload_with_first_chunk(&f, "app", b"partial").await;
    let mut found = Vec::new();
    modes(&f.data.join("registry"), &mut found);
    let files = found.iter().filter(|(_, dir, _)| !dir).count();
    // The token key, two blobs, one upload.
    assert!(files >= 4, "{found:?}");
    for (path, is_dir, mode) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
}

#[test]
fn a_registry_directory_left_open_by_an_older_berth_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    Registry::open(
        Arc::new(MemoryStore::new()),
        Arc::new(ManualClock::new(0)),
        config(dir.path()),
        Arc::new(|_: &str| true),
    )
    .unwrap();
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
