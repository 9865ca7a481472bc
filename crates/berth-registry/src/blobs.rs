//! Blob bytes on disk, content-addressed, and upload sessions.
//!
//! ```text
//! <data-dir>/registry/blobs/sha256/ab/abcdef...   one file per blob, named by digest
//! <data-dir>/registry/uploads/<uuid>               the bytes of an upload in progress
//! ```
//!
//! An upload streams into its temp file while a SHA-256 is computed over
//! the same bytes (in batches on the blocking pool, one written while the
//! next arrives; finished windows are synced to disk as the upload goes, so
//! the final fsync is short); it becomes a blob only after the digest
//! checks out, with an fsync and an atomic rename into place, so a blob
//! path either does not exist or holds exactly the bytes its name says. A
//! mismatch removes the temp file. Two uploads of the same blob may finish
//! in any order: the second rename replaces a file with identical bytes,
//! which readers cannot tell apart (an open file keeps its inode).
//!
//! Every file and directory is created owner-only (0600, 0700); a blob
//! keeps the mode of the upload file it is renamed from. A full disk
//! surfaces as [`RegistryError::StorageFull`]: a failed write leaves the
//! session as it was before the write (its file truncated back), so a
//! chunk can be retried once there is space.
//!
//! Upload sessions live in memory (the temp file plus the running hash);
//! a restart abandons them and clears the uploads directory. Sessions
//! idle for a day are dropped.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

use crate::digest::Digest;
use crate::error::RegistryError;

/// Idle upload sessions older than this are dropped.
const UPLOAD_MAX_IDLE_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating) the blob tree under `root` and clears leftover
    /// uploads of a previous run.
    pub fn open(root: &Path) -> Result<Self, RegistryError> {
        crate::private_dir(&root.join("blobs").join("sha256"))?;
        let uploads = root.join("uploads");
        if uploads.exists() {
            for entry in std::fs::read_dir(&uploads)? {
                let entry = entry?;
                if let Err(err) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %err, "could not remove a stale upload");
                }
            }
        }
        crate::private_dir(&uploads)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join("sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// The size of a stored blob, if it is stored.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Moves a finished upload into place if its digest is `expected`;
    /// otherwise removes it. Blocking (fsync).
    pub fn commit(
        &self,
        temp: &Path,
        actual: &Digest,
        expected: &Digest,
    ) -> Result<(), RegistryError> {
        if actual != expected {
            let _ = std::fs::remove_file(temp);
            return Err(RegistryError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let file = std::fs::OpenOptions::new().write(true).open(temp)?;
        file.sync_all()?;
        drop(file);
        let dest = self.path(expected);
        if let Some(parent) = dest.parent() {
            crate::private_dir(parent)?;
        }
        std::fs::rename(temp, &dest)?;
        if let Some(parent) = dest.parent() {
            // Make the rename itself durable.
            if let Ok(dir) = std::fs::File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// Every stored blob with its modification time (epoch milliseconds),
    /// for garbage collection. Files whose names are not digests are
    /// skipped; a file that disappears while listing is simply absent.
    pub fn list(&self) -> Result<Vec<StoredBlob>, RegistryError> {
        let mut out = Vec::new();
        let top = self.root.join("blobs").join("sha256");
        for shard in std::fs::read_dir(&top)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            let entries = match std::fs::read_dir(shard.path()) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in entries {
                let entry = entry?;
                let Some(digest) = entry
                    .file_name()
                    .to_str()
                    .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
                else {
                    continue;
                };
                match entry.metadata() {
                    Ok(m) if m.is_file() => out.push(StoredBlob {
                        digest,
                        size: m.len(),
                        modified_ms: modified_ms(&m),
                    }),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }

    /// Removes a blob's bytes unless the file was modified after
    /// `cutoff_ms` (a fresh upload renamed over it); returns the bytes
    /// freed, `None` when nothing was removed. Only garbage collection
    /// calls this, holding the digest's pin lock (see [`crate::gc`]).
    pub fn remove_unless_newer(
        &self,
        digest: &Digest,
        cutoff_ms: i64,
    ) -> Result<Option<u64>, RegistryError> {
        let path = self.path(digest);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if modified_ms(&meta) > cutoff_ms {
            return Ok(None);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A blob file as garbage collection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// Last modification, epoch milliseconds: when its upload wrote its
    /// last byte (a rename keeps the time).
    pub modified_ms: i64,
}

/// A file's modification time in epoch milliseconds; "now-ish" (never
/// collectable) when the platform cannot tell.
fn modified_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(i64::MAX)
}

/// One upload in progress.
#[derive(Debug)]
pub struct Upload {
    pub id: String,
    pub repository: String,
    path: PathBuf,
    /// Bytes received so far (also the temp file's length).
    pub offset: u64,
    hasher: Sha256,
    pub touched_ms: i64,
}

pub type UploadHandle = Arc<tokio::sync::Mutex<Upload>>;

/// The open upload sessions.
#[derive(Debug, Default)]
pub struct Uploads {
    sessions: Mutex<HashMap<String, UploadHandle>>,
}

impl Uploads {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, UploadHandle>> {
        // A poisoned map is still a consistent map: entries are inserted
        // and removed whole.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an upload into `repository`. Blocking (creates the file).
    pub fn start(
        &self,
        blobs: &BlobStore,
        repository: &str,
        now_ms: i64,
    ) -> Result<String, RegistryError> {
        self.sweep(now_ms);
        let id = uuid::Uuid::new_v4().to_string();
        let path = blobs.upload_path(&id);
        // Owner-only from the start: the blob is renamed from this file
        // and keeps its mode.
        crate::create_private_file(&path)?;
        let upload = Upload {
            id: id.clone(),
            repository: repository.to_string(),
            path,
            offset: 0,
            hasher: Sha256::new(),
            touched_ms: now_ms,
        };
        self.sessions()
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(upload)));
        Ok(id)
    }

    /// The session `id` if it belongs to `repository`.
    pub fn get(&self, id: &str, repository: &str) -> Result<UploadHandle, RegistryError> {
        let handle = self
            .sessions()
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::UploadNotFound(id.to_string()))?;
        // The repository never changes, so try_lock failing only means a
        // request is writing; compare the name through the lock then.
        if let Ok(u) = handle.try_lock() {
            if u.repository != repository {
                return Err(RegistryError::UploadNotFound(id.to_string()));
            }
        }
        Ok(handle)
    }

    /// Forgets a session and removes its temp file.
    pub fn cancel(&self, id: &str) {
        if let Some(handle) = self.sessions().remove(id) {
            if let Ok(u) = handle.try_lock() {
                let _ = std::fs::remove_file(&u.path);
            }
        }
    }

    fn sweep(&self, now_ms: i64) {
        let mut sessions = self.sessions();
        let stale: Vec<String> = sessions
            .iter()
            .filter_map(|(id, h)| {
                h.try_lock()
                    .ok()
                    .filter(|u| now_ms - u.touched_ms > UPLOAD_MAX_IDLE_MS)
                    .map(|u| {
                        let _ = std::fs::remove_file(&u.path);
                        id.clone()
                    })
            })
            .collect();
        for id in stale {
            tracing::info!(upload = %id, "dropping an idle upload");
            sessions.remove(&id);
        }
    }
}

impl Upload {
    /// Appends a request body. The request gathers the body into batches
    /// of [`WRITE_BATCH`] bytes; each batch is hashed and written on the
    /// blocking pool while the next one arrives, and every
    /// [`WRITEBACK_WINDOW`] is synced to disk in the background, so the
    /// fsync at commit finds little left to do. The hash and the offset only
    /// count bytes that reached the file, so a client that hangs up
    /// mid-chunk leaves a consistent session it can resume.
    ///
    /// The session's lock travels with each write: if this future is
    /// dropped (the client went away) while a batch is being written, the
    /// lock is released only after that batch is written and counted, so
    /// the next request sees an offset that matches the file. No thread is
    /// held while the client is slow to send.
    pub async fn append_stream(
        guard: OwnedMutexGuard<Upload>,
        body: axum::body::Body,
        now_ms: i64,
    ) -> Result<(OwnedMutexGuard<Upload>, u64), RegistryError> {
        let mut stage = Stage::Idle(Sink::open(guard, now_ms).await?);
        let mut stream = body.into_data_stream();
        let mut batch = BytesMut::new();
        let mut received = Ok(());
        loop {
            let full = match stream.next().await {
                Some(Ok(bytes)) if batch.is_empty() && bytes.len() >= WRITE_BATCH => bytes,
                Some(Ok(bytes)) => {
                    if batch.capacity() == 0 {
                        batch.reserve(WRITE_BATCH);
                    }
                    batch.extend_from_slice(&bytes);
                    if batch.len() < WRITE_BATCH {
                        continue;
                    }
                    std::mem::take(&mut batch).freeze()
                }
                Some(Err(e)) => {
                    received = Err(RegistryError::Io(std::io::Error::other(e.to_string())));
                    break;
                }
                None => break,
            };
            // One batch is written while the next one gathers.
            stage = Stage::Writing(stage.settle().await?.write(full));
        }
        let mut sink = stage.settle().await?;
        // What arrived before a hang-up is kept: the session can resume.
        if !batch.is_empty() {
            sink = Stage::Writing(sink.write(batch.freeze())).settle().await?;
        }
        received?;
        let guard = sink.upload;
        let offset = guard.offset;
        Ok((guard, offset))
    }

    /// Appends bytes (ECR's UploadLayerPart). Blocking. A failed write
    /// (a full disk) truncates the file back to what the session counts,
    /// so the part can be sent again.
    pub fn append_bytes(&mut self, bytes: &[u8], now_ms: i64) -> Result<u64, RegistryError> {
        let mut file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        if let Err(e) = file.write_all(bytes) {
            let _ = file.set_len(self.offset);
            return Err(e.into());
        }
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        self.touched_ms = now_ms;
        Ok(self.offset)
    }

    /// The temp file the bytes go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digest of everything received so far.
    pub fn digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }
}

/// Bytes written per blocking call: large enough that the hop to the
/// blocking pool is rare, small enough to keep memory flat (one batch is
/// written while the next one gathers).
const WRITE_BATCH: usize = 1 << 20;
/// Written bytes after which they are synced to disk in the background,
/// so disk writes overlap the transfer instead of all waiting for the
/// fsync at commit.
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// An upload being appended to: the session (its lock held), its file
/// open for appending, and the background flush.
struct Sink {
    upload: OwnedMutexGuard<Upload>,
    file: Arc<std::fs::File>,
    unflushed_from: u64,
    flushing: Arc<std::sync::atomic::AtomicBool>,
}

/// A batch being written: the sink comes back with the result.
type WriteHandle = tokio::task::JoinHandle<(Sink, Result<(), RegistryError>)>;

/// The sink, between writes or in one.
enum Stage {
    Idle(Sink),
    Writing(WriteHandle),
}

impl Stage {
    /// The sink once no write is running. A failed write ends the append
    /// (the sink, and with it the session's lock, is dropped).
    async fn settle(self) -> Result<Sink, RegistryError> {
        match self {
            Stage::Idle(sink) => Ok(sink),
            Stage::Writing(handle) => match handle.await {
                Ok((sink, Ok(()))) => Ok(sink),
                Ok((_, Err(e))) => Err(e),
                Err(e) => Err(RegistryError::Io(std::io::Error::other(e.to_string()))),
            },
        }
    }
}

impl Sink {
    async fn open(mut upload: OwnedMutexGuard<Upload>, now_ms: i64) -> Result<Self, RegistryError> {
        upload.touched_ms = now_ms;
        let path = upload.path.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new().append(true).open(path)
        })
        .await
        .map_err(|e| RegistryError::Io(std::io::Error::other(e.to_string())))??;
        let unflushed_from = upload.offset;
        Ok(Sink {
            upload,
            file: Arc::new(file),
            unflushed_from,
            flushing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Writes and hashes `batch` on the blocking pool. A failed write
    /// truncates the file back to what the session counts.
    fn write(mut self, batch: Bytes) -> WriteHandle {
        tokio::task::spawn_blocking(move || {
            if let Err(e) = (&*self.file).write_all(&batch) {
                let _ = self.file.set_len(self.upload.offset);
                return (self, Err(e.into()));
            }
            self.upload.hasher.update(&batch);
            self.upload.offset += batch.len() as u64;
            if self.upload.offset - self.unflushed_from >= WRITEBACK_WINDOW {
                self.unflushed_from = self.upload.offset;
                self.start_flush();
            }
            (self, Ok(()))
        })
    }

    /// Syncs what is written so far on the blocking pool, unless a sync is
    /// already running (the next window covers these bytes too). Only a
    /// head start for the fsync at commit, so failures are ignored.
    fn start_flush(&self) {
        use std::sync::atomic::Ordering;
        if self.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (file, flushing) = (self.file.clone(), self.flushing.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(err) = file.sync_data() {
                tracing::debug!(error = %err, "background flush of an upload failed");
            }
            flushing.store(false, Ordering::Release);
        });
    }
}
