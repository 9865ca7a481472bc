//! The fixture the registry's integration tests share: the real router
//! over a memory store, a temp data dir, a manual clock, and an access key
//! set a test can revoke keys from.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use berth_control::{Caller, ManualClock};
use berth_registry::{Registry, RegistryConfig};
use berth_store::MemoryStore;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use tower::ServiceExt as _;

/// The access key the fixture's caller signs with.
pub const ACCESS_KEY_ID: &str = "AKIDTEST";

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub registry: Arc<Registry>,
    pub clock: Arc<ManualClock>,
    pub auth: String,
    /// The access keys the registry counts as active.
    pub active_keys: Arc<Mutex<Vec<String>>>,
}

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn caller() -> Caller {
    Caller::root("arn:aws:iam::000000000000:root", ACCESS_KEY_ID)
}

/// The registry's configuration over `data_dir`.
pub fn config(data_dir: &Path) -> RegistryConfig {
    RegistryConfig {
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        data_dir: data_dir.to_path_buf(),
        endpoint: "127.0.0.1:9480".into(),
    }
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let active_keys = Arc::new(Mutex::new(vec![ACCESS_KEY_ID.to_string()]));
        let keys = active_keys.clone();
        let registry = Arc::new(
            Registry::open(
                Arc::new(MemoryStore::new()),
                clock.clone(),
                config(dir.path()),
                Arc::new(move |id: &str| keys.lock().unwrap().iter().any(|k| k == id)),
            )
            .unwrap(),
        );
        let out = registry
            .ecr("GetAuthorizationToken", b"{}", &caller())
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let token = v["authorizationData"][0]["authorizationToken"]
            .as_str()
            .unwrap()
            .to_string();
        Fixture {
            data: dir.path().to_path_buf(),
            _dir: dir,
            registry,
            clock,
            auth: format!("Basic {token}"),
            active_keys,
        }
    }

    pub fn ecr(&self, op: &str, body: Value) -> Result<Value, berth_registry::EcrError> {
        self.registry
            .ecr(op, body.to_string().as_bytes(), &caller())
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    pub fn create(&self, name: &str) {
        self.ecr("CreateRepository", json!({ "repositoryName": name }))
            .unwrap();
    }

    /// Sends a request whose body is a stream (arriving in frames, or
    /// failing part way, as a real client's can).
    pub async fn call_stream(&self, method: &str, uri: &str, body: Body) -> Response<Body> {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Authorization", &self.auth)
            .body(body)
            .unwrap();
        berth_registry::router(self.registry.clone())
            .oneshot(req)
            .await
            .unwrap()
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response<Body> {
        let mut req = Request::builder().method(method).uri(uri);
        req = req.header("Authorization", &self.auth);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        berth_registry::router(self.registry.clone())
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap()
    }

    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha(data);
        let r = self
            .call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        d
    }

    /// Closes the upload session at `loc` with the digest of `data`, and
    /// checks that exactly `data` was stored.
    pub async fn finish_upload(&self, loc: &str, data: &[u8]) {
        let d = sha(data);
        let r = self
            .call("PUT", &format!("{loc}?digest={d}"), &[], vec![])
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(std::fs::read(self.blob_path(&d)).unwrap(), data);
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.data
            .join("registry/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
    }

    pub fn upload_files(&self) -> usize {
        std::fs::read_dir(self.data.join("registry/uploads"))
            .unwrap()
            .count()
    }
}

pub async fn body_bytes(r: Response<Body>) -> Vec<u8> {
    r.into_body().collect().await.unwrap().to_bytes().to_vec()
}

pub async fn error_code(r: Response<Body>) -> String {
    let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

pub fn header(r: &Response<Body>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `len` bytes that are not all one value, so a misplaced frame changes
/// the digest; `seed` makes blobs of one length differ.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// An OCI image manifest with one config and one layer.
pub fn image_manifest(cfg: &str, cfg_size: usize, layer: &str, layer_size: usize) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]
    })
    .to_string()
    .into_bytes()
}
