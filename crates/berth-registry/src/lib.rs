//! Berth's ECR: a private image registry.
//!
//! Two faces over one core:
//!
//! - the OCI Distribution API under `/v2/` ([`router`]), which `docker`,
//!   `skopeo` and ECS agents speak, authenticated with Basic (user `AWS`)
//!   or Bearer registry tokens;
//! - the ECR JSON API ([`Registry::ecr`], target prefix
//!   [`ECR_TARGET_PREFIX`]), reached through the edge after SigV4.
//!
//! Blob bytes live on disk, content-addressed ([`blobs`]); repositories,
//! images, tags and layer links live in the Berth store ([`keys`] is the
//! layout); tokens are self-verifying ([`token`]). Blobs no image needs
//! are removed by a garbage collector that never races a push ([`gc`]).
//! Manifest parsing, token minting and the collector's decision are pure
//! and separate from I/O.

pub mod api;
pub mod blobs;
pub mod digest;
pub mod error;
pub mod gc;
pub mod keys;
pub mod lifecycle;
pub mod manifest;
pub mod meta;
pub mod oci;
mod state;
pub mod token;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_control::Clock;
use berth_store::Store;

pub use error::{EcrError, OciError, RegistryError};
pub use oci::router;

/// The JSON 1.1 target prefix of ECR.
pub const ECR_TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// Length of the token-signing secret.
const TOKEN_KEY_LEN: usize = 32;

/// Settings of the registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub region: String,
    pub account_id: String,
    /// The server's data directory; the registry keeps `registry/` in it.
    pub data_dir: PathBuf,
    /// `host:port` of the edge listener, as repository URIs and the proxy
    /// endpoint carry it.
    pub endpoint: String,
}

/// The registry: state handles and settings.
#[derive(Debug)]
pub struct Registry {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: RegistryConfig,
    pub(crate) blobs: blobs::BlobStore,
    pub(crate) uploads: blobs::Uploads,
    pub(crate) pins: gc::BlobPins,
    token_key: Vec<u8>,
}

impl Registry {
    /// Opens the registry's directory under the data dir (creating it and
    /// the token key on first use).
    pub fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: RegistryConfig,
    ) -> Result<Self, RegistryError> {
        let root = config.data_dir.join("registry");
        std::fs::create_dir_all(&root)?;
        let token_key = load_or_create_key(&root.join("token-key"))?;
        let blobs = blobs::BlobStore::open(&root)?;
        Ok(Self {
            store,
            pins: gc::BlobPins::new(clock.clone()),
            clock,
            config,
            blobs,
            uploads: blobs::Uploads::default(),
            token_key,
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub(crate) fn token_key(&self) -> &[u8] {
        &self.token_key
    }

    /// The registry's id (the account id, as in ECR).
    pub fn registry_id(&self) -> &str {
        &self.config.account_id
    }
}

/// Reads the token secret, or creates it (mode 0600) if absent.
fn load_or_create_key(path: &Path) -> Result<Vec<u8>, RegistryError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut key = vec![0u8; TOKEN_KEY_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(&key)?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "registry token key generated");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut existing = Vec::new();
            std::fs::File::open(path)?.read_to_end(&mut existing)?;
            if existing.len() < TOKEN_KEY_LEN {
                return Err(RegistryError::Internal(format!(
                    "token key {} is shorter than {TOKEN_KEY_LEN} bytes",
                    path.display()
                )));
            }
            Ok(existing)
        }
        Err(e) => Err(e.into()),
    }
}
