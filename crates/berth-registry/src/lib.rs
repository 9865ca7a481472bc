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
//! layout); tokens are self-verifying ([`token`]) and honoured only while
//! the access key that got them is active ([`AccessKeys`], wired by the
//! composition root). Everything under `<data-dir>/registry` is created
//! owner-only (files 0600, directories 0700). Blobs no image needs
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

/// Which access keys exist. A registry token names the access key whose
/// caller got it, and is honoured only while that key is active, so
/// revoking a key revokes its tokens too. The composition root decides
/// what counts (the root key, per-instance agent keys, ...); any
/// `Fn(&str) -> bool` will do.
pub trait AccessKeys: Send + Sync {
    fn is_active(&self, access_key_id: &str) -> bool;

    /// Whether tokens of `access_key_id` may write (push, delete); a key
    /// that may not only pulls. Every active key may, unless said otherwise.
    fn may_push(&self, access_key_id: &str) -> bool {
        let _ = access_key_id;
        true
    }
}

impl<F> AccessKeys for F
where
    F: Fn(&str) -> bool + Send + Sync,
{
    fn is_active(&self, access_key_id: &str) -> bool {
        self(access_key_id)
    }
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
    access_keys: KeyCheck,
}

/// The access key check, opaque to `Debug`.
struct KeyCheck(Arc<dyn AccessKeys>);

impl std::fmt::Debug for KeyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKeys")
    }
}

impl Registry {
    /// Opens the registry's directory under the data dir (creating it and
    /// the token key on first use). Tokens are honoured only for access
    /// keys `access_keys` knows.
    pub fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: RegistryConfig,
        access_keys: Arc<dyn AccessKeys>,
    ) -> Result<Self, RegistryError> {
        let root = config.data_dir.join("registry");
        private_dir(&root)?;
        restrict_existing(&root)?;
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
            access_keys: KeyCheck(access_keys),
        })
    }

    /// Whether tokens of `access_key_id` are still honoured.
    pub(crate) fn key_is_active(&self, access_key_id: &str) -> bool {
        self.access_keys.0.is_active(access_key_id)
    }

    pub(crate) fn key_may_push(&self, access_key_id: &str) -> bool {
        self.access_keys.0.may_push(access_key_id)
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

/// Creates `path` and any missing parents owner-only (0700), as they are
/// created: no moment where another user could open them.
pub(crate) fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Opens `path` for writing, created owner-only (0600) and never an
/// existing file.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// A registry directory made by an older Berth may be open to all
/// (0755): closing the top one closes everything under it, whatever the
/// modes of the files inside.
fn restrict_existing(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(root)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        tracing::info!(path = %root.display(), old_mode = format!("{mode:o}"), "registry directory restricted to its owner");
    }
    Ok(())
}

/// Reads the token secret, or creates it (mode 0600) if absent.
fn load_or_create_key(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let mut key = vec![0u8; TOKEN_KEY_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    match create_private_file(path) {
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
