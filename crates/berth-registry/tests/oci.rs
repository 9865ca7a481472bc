//! The Distribution API in process: the real router over a memory store,
//! a temp data dir and a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use common::{body_bytes, error_code, header, image_manifest, pattern, sha, Fixture};
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;

#[tokio::test]
async fn digest_mismatch_leaves_nothing_behind() {
    let f = Fixture::new();
    f.create("app");
    let data = b"some bytes".to_vec();
    let wrong = sha(b"other bytes");
    let r = f
        .call(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert!(!f.blob_path(&wrong).exists());
    assert!(!f.blob_path(&sha(&data)).exists());
    assert_eq!(f.upload_files(), 0);
    let r = f
        .call(
            "HEAD",
            &format!("/v2/app/blobs/{}", sha(&data)),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_one_blob_are_safe() {
    let f = Arc::new(Fixture::new());
    f.create("app");
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha(&data);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let f = f.clone();
        let data = data.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let r = f
                .call(
                    "POST",
                    &format!("/v2/app/blobs/uploads/?digest={d}"),
                    &[],
                    data,
                )
                .await;
            r.status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(std::fs::read(f.blob_path(&d)).unwrap(), data);
    assert_eq!(f.upload_files(), 0);
    let r = f
        .call("GET", &format!("/v2/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(body_bytes(r).await, data);
}

#[tokio::test]
async fn chunked_upload_and_range_get() {
    let f = Fixture::new();
    f.create("team/app");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = f
        .call("POST", "/v2/team/app/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location");
    let mut offset = 0usize;
    for chunk in data.chunks(3000) {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let r = f
            .call("PATCH", &loc, &[("Content-Range", &range)], chunk.to_vec())
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        offset += chunk.len();
        assert_eq!(header(&r, "range"), format!("0-{}", offset - 1));
    }
    let r = f.call("GET", &loc, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), format!("0-{}", data.len() - 1));
    let r = f
        .call("PATCH", &loc, &[("Content-Range", "0-0")], vec![1])
        .await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let d = sha(&data);
    let r = f
        .call("PUT", &format!("{loc}?digest={d}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = f
        .call(
            "GET",
            &format!("/v2/team/app/blobs/{d}"),
            &[("Range", "bytes=100-199")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 100-199/{}", data.len())
    );
    assert_eq!(body_bytes(r).await, data[100..200].to_vec());
    let r = f
        .call(
            "GET",
            &format!("/v2/team/app/blobs/{d}"),
            &[("Range", "bytes=-10")],
            vec![],
        )
        .await;
    assert_eq!(body_bytes(r).await, data[data.len() - 10..].to_vec());
}

#[tokio::test]
async fn manifest_naming_a_missing_blob_is_refused() {
    let f = Fixture::new();
    f.create("app");
    let cfg = f.push_blob("app", b"{}").await;
    let layer = f.push_blob("app", b"layer").await;
    let missing = sha(b"missing");
    let manifest = |layer: &str| {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}]
        })
        .to_string()
        .into_bytes()
    };
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let r = f
        .call("PUT", "/v2/app/manifests/v1", &ct, manifest(&missing))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    let good = manifest(&layer);
    let r = f
        .call("PUT", "/v2/app/manifests/v1", &ct, good.clone())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), sha(&good));
    let r = f.call("GET", "/v2/app/manifests/v1", &[], vec![]).await;
    assert_eq!(body_bytes(r).await, good);
    // An index naming an unknown child is refused too.
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": missing, "size": 3}]
    });
    let r = f
        .call(
            "PUT",
            "/v2/app/manifests/idx",
            &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
            index.to_string().into_bytes(),
        )
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn tag_and_catalog_pagination_links() {
    let f = Fixture::new();
    for n in ["a1", "b2", "c3"] {
        f.create(n);
    }
    let r = f.call("GET", "/v2/_catalog?n=2", &[], vec![]).await;
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?last=b2&n=2>; rel=\"next\""
    );
    let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(v["repositories"], json!(["a1", "b2"]));
    let r = f.call("GET", "/v2/_catalog?last=b2&n=2", &[], vec![]).await;
    assert_eq!(header(&r, "link"), "");
    let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(v["repositories"], json!(["c3"]));

    let cfg = f.push_blob("a1", b"{}").await;
    let layer = f.push_blob("a1", b"layer").await;
    let m = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}]
    })
    .to_string()
    .into_bytes();
    for t in ["t1", "t2", "t3"] {
        let r = f
            .call("PUT", &format!("/v2/a1/manifests/{t}"), &[], m.clone())
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = f
        .call("GET", "/v2/a1/tags/list?n=1&last=t1", &[], vec![])
        .await;
    assert_eq!(
        header(&r, "link"),
        "</v2/a1/tags/list?last=t2&n=1>; rel=\"next\""
    );
    let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(v, json!({"name": "a1", "tags": ["t2"]}));
}

#[tokio::test]
async fn tokens_expire_after_twelve_hours() {
    let f = Fixture::new();
    let r = f.call("GET", "/v2/", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    f.clock.advance(12 * 3600 * 1000 - 1);
    assert_eq!(
        f.call("GET", "/v2/", &[], vec![]).await.status(),
        StatusCode::OK
    );
    f.clock.advance(1);
    let r = f.call("GET", "/v2/", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").starts_with("Basic realm="));
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    // No credentials at all.
    let r = berth_registry::router(f.registry.clone())
        .oneshot(Request::get("/v2/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token signed by another server's key.
    let other = Fixture::new();
    let r = berth_registry::router(f.registry.clone())
        .oneshot(
            Request::get("/v2/")
                .header("Authorization", &other.auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let _ = base64::engine::general_purpose::STANDARD.encode("unused");
}

#[test]
fn immutable_tags_refuse_moving_on_put_image() {
    let f = Fixture::new();
    f.ecr(
        "CreateRepository",
        json!({"repositoryName": "imm", "imageTagMutability": "IMMUTABLE"}),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (cfg, l1, l2) = rt.block_on(async {
        (
            f.push_blob("imm", b"{}").await,
            f.push_blob("imm", b"one").await,
            f.push_blob("imm", b"two").await,
        )
    });
    let m = |l: &str| String::from_utf8(image_manifest(&cfg, 2, l, 3)).unwrap();
    f.ecr(
        "PutImage",
        json!({"repositoryName": "imm", "imageManifest": m(&l1), "imageTag": "v1"}),
    )
    .unwrap();
    let e = f
        .ecr(
            "PutImage",
            json!({"repositoryName": "imm", "imageManifest": m(&l2), "imageTag": "v1"}),
        )
        .unwrap_err();
    assert_eq!(e.code, "ImageTagAlreadyExistsException");
    let e = f
        .ecr(
            "PutImage",
            json!({"repositoryName": "imm", "imageManifest": m(&l1), "imageTag": "v1"}),
        )
        .unwrap_err();
    assert_eq!(e.code, "ImageAlreadyExistsException");
    let e = f
        .ecr("DeleteRepository", json!({"repositoryName": "imm"}))
        .unwrap_err();
    assert_eq!(e.code, "RepositoryNotEmptyException");
    f.ecr(
        "DeleteRepository",
        json!({"repositoryName": "imm", "force": true}),
    )
    .unwrap();
}

fn frames(data: &[u8], size: usize) -> Body {
    let frames: Vec<Result<bytes::Bytes, std::io::Error>> = data
        .chunks(size)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures_util::stream::iter(frames))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_in_small_and_large_frames_is_stored_exactly() {
    // Small frames are gathered into batches; frames of a batch or more
    // go to the writer as they are; past the writeback window the
    // flusher runs. The blob must come out byte for byte either way.
    let f = Fixture::new();
    f.create("big");
    let data = pattern(21 << 20, 7);
    let d = sha(&data);
    let r = f.call("POST", "/v2/big/blobs/uploads/", &[], vec![]).await;
    let loc = header(&r, "location");
    let split = 9 << 20;
    let r = f
        .call_stream("PATCH", &loc, frames(&data[..split], 32 << 10))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), format!("0-{}", split - 1));
    let r = f
        .call_stream(
            "PUT",
            &format!("{loc}?digest={d}"),
            frames(&data[split..], 3 << 20),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(std::fs::read(f.blob_path(&d)).unwrap(), data);
    assert_eq!(f.upload_files(), 0);
    // Read back whole, and a range across read chunks, in many frames.
    let r = f
        .call("GET", &format!("/v2/big/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert_eq!(body_bytes(r).await, data);
    let (from, to) = ((1 << 20) - 5, (5 << 20) + 7);
    let r = f
        .call(
            "GET",
            &format!("/v2/big/blobs/{d}"),
            &[("Range", &format!("bytes={from}-{to}"))],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body_bytes(r).await, data[from..=to].to_vec());
}

#[tokio::test]
async fn a_body_that_fails_part_way_leaves_a_session_that_resumes() {
    let f = Fixture::new();
    f.create("app");
    let data = pattern(3 << 20, 11);
    let r = f.call("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    let loc = header(&r, "location");
    // Two and a half MiB arrive, then the connection breaks.
    let kept = (5 << 20) / 2;
    let mut parts: Vec<Result<bytes::Bytes, std::io::Error>> = data[..kept]
        .chunks(100_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    parts.push(Err(std::io::Error::other("connection reset")));
    let r = f
        .call_stream(
            "PATCH",
            &loc,
            Body::from_stream(futures_util::stream::iter(parts)),
        )
        .await;
    assert!(!r.status().is_success(), "{}", r.status());
    // Everything that arrived is in the file and counted, nothing more.
    let r = f.call("GET", &loc, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), format!("0-{}", kept - 1));
    let r = f
        .call(
            "PATCH",
            &loc,
            &[("Content-Range", &format!("{kept}-{}", data.len() - 1))],
            data[kept..].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    f.finish_upload(&loc, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_mid_body_leaves_offset_and_file_in_step() {
    // The client goes away while its body is still arriving: the handler
    // future is dropped. The next request on the session must see an
    // offset that matches the file, and resuming from it must work.
    let f = Arc::new(Fixture::new());
    f.create("app");
    let data = pattern(6 << 20, 3);
    let d = sha(&data);
    let r = f.call("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    let loc = header(&r, "location");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<bytes::Bytes, std::io::Error>>();
    // Frames smaller than a write batch, so some are still gathering
    // when the request is dropped.
    for c in data[..3 << 20].chunks(100_000) {
        tx.send(Ok(bytes::Bytes::copy_from_slice(c))).unwrap();
    }
    // A body that never ends: the last frames do not come.
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    }));
    let req = {
        let (f, loc) = (f.clone(), loc.clone());
        tokio::spawn(async move { f.call_stream("PATCH", &loc, body).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    req.abort();
    let _ = req.await;
    drop(tx);
    let r = f.call("GET", &loc, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let upload_file = std::fs::read_dir(f.data.join("registry/uploads"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let written = std::fs::read(&upload_file).unwrap();
    let offset = written.len();
    assert_eq!(
        header(&r, "range"),
        format!("0-{}", offset.saturating_sub(1))
    );
    assert_eq!(written, data[..offset].to_vec());
    let r = f
        .call(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("Content-Range", &format!("{offset}-{}", data.len() - 1))],
            data[offset..].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(std::fs::read(f.blob_path(&d)).unwrap(), data);
}

#[test]
fn slow_clients_hold_no_blocking_thread() {
    // A blocking pool of one thread: if a stalled upload or an unread
    // download kept a thread, every later request would wait forever.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let f = Arc::new(Fixture::new());
        f.create("app");
        let big = pattern(5 << 20, 5);
        let big_digest = f.push_blob("app", &big).await;
        let small = f.push_blob("app", b"small").await;

        // An upload whose client sent 2 MiB and then stalled.
        let r = f.call("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
        let loc = header(&r, "location");
        let (tx, rx) =
            tokio::sync::mpsc::unbounded_channel::<Result<bytes::Bytes, std::io::Error>>();
        tx.send(Ok(bytes::Bytes::from(pattern(2 << 20, 9))))
            .unwrap();
        let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        }));
        let stalled = {
            let f = f.clone();
            tokio::spawn(async move { f.call_stream("PATCH", &loc, body).await })
        };
        // A download whose client read nothing.
        let unread = f
            .call("GET", &format!("/v2/app/blobs/{big_digest}"), &[], vec![])
            .await;
        assert_eq!(unread.status(), StatusCode::OK);

        // Both are open; other requests still get the blocking pool. The
        // timeout only turns a hang into a failure.
        let other = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            f.call("GET", &format!("/v2/app/blobs/{small}"), &[], vec![]),
        )
        .await
        .expect("a request waited behind slow clients");
        assert_eq!(body_bytes(other).await, b"small".to_vec());
        let pushed = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            f.push_blob("app", b"another"),
        )
        .await
        .expect("an upload waited behind slow clients");
        assert_eq!(pushed, sha(b"another"));

        // The download still delivers every byte once read.
        assert_eq!(body_bytes(unread).await, big);
        drop(tx);
        let _ = stalled.await;
    });
}
