//! Blob bytes on disk, content-addressed, and upload sessions.
//!
//! ```text
//! <data-dir>/registry/blobs/sha256/ab/abcdef...   one file per blob, named by digest
//! <data-dir>/registry/uploads/<uuid>               the bytes of an upload in progress
//! ```
//!
//! An upload streams into its temp file while a SHA-256 is computed over
//! the same bytes (on a writer thread, fed batches by the request; a
//! flusher thread syncs finished windows to disk as the upload goes, so
//! the final fsync is short); it becomes a blob only after the digest
//! checks out, with an fsync and an atomic rename into place, so a blob
//! path either does not exist or holds exactly the bytes its name says. A
//! mismatch removes the temp file. Two uploads of the same blob may finish
//! in any order: the second rename replaces a file with identical bytes,
//! which readers cannot tell apart (an open file keeps its inode).
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
        std::fs::create_dir_all(root.join("blobs").join("sha256"))?;
        let uploads = root.join("uploads");
        if uploads.exists() {
            for entry in std::fs::read_dir(&uploads)? {
                let entry = entry?;
                if let Err(err) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %err, "could not remove a stale upload");
                }
            }
        }
        std::fs::create_dir_all(&uploads)?;
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
            std::fs::create_dir_all(parent)?;
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
        std::fs::File::create(&path)?;
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
    /// Appends a request body. The network side gathers the body into
    /// batches of [`WRITE_BATCH`] bytes; a blocking thread hashes and
    /// writes them, and has every [`WRITEBACK_WINDOW`] flushed to disk in
    /// the background, so the fsync at commit finds little left to do.
    /// The hash and the offset only count bytes that reached the file, so
    /// a client that hangs up mid-chunk leaves a consistent session it
    /// can resume.
    ///
    /// The writer thread holds the session's lock until it is done: if
    /// this future is dropped (the client went away), the session stays
    /// locked until every byte received is written and counted, so the
    /// next request sees an offset that matches the file.
    pub async fn append_stream(
        guard: OwnedMutexGuard<Upload>,
        body: axum::body::Body,
        now_ms: i64,
    ) -> Result<(OwnedMutexGuard<Upload>, u64), RegistryError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || write_batches(guard, rx, now_ms));
        let mut stream = body.into_data_stream();
        let mut batch = BytesMut::new();
        let mut received = Ok(());
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let full = if batch.is_empty() && bytes.len() >= WRITE_BATCH {
                        bytes
                    } else {
                        if batch.capacity() == 0 {
                            batch.reserve(WRITE_BATCH);
                        }
                        batch.extend_from_slice(&bytes);
                        if batch.len() < WRITE_BATCH {
                            continue;
                        }
                        std::mem::take(&mut batch).freeze()
                    };
                    if tx.send(full).await.is_err() {
                        // The writer stopped; its result says why.
                        break;
                    }
                }
                Err(e) => {
                    received = Err(RegistryError::Io(std::io::Error::other(e.to_string())));
                    break;
                }
            }
        }
        // What arrived before a hang-up is kept: the session can resume.
        if !batch.is_empty() {
            let _ = tx.send(batch.freeze()).await;
        }
        drop(tx);
        let (guard, written) = match writer.await {
            Ok(r) => r,
            Err(e) => return Err(RegistryError::Io(std::io::Error::other(e.to_string()))),
        };
        written?;
        received?;
        let offset = guard.offset;
        Ok((guard, offset))
    }

    /// Appends bytes (ECR's UploadLayerPart). Blocking.
    pub fn append_bytes(&mut self, bytes: &[u8], now_ms: i64) -> Result<u64, RegistryError> {
        let mut file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        file.write_all(bytes)?;
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

/// Bytes handed to the writer thread at a time: large enough that the
/// hop between threads is rare, small enough to keep memory flat.
const WRITE_BATCH: usize = 1 << 20;
/// Batches that may wait for the writer; with [`WRITE_BATCH`] this bounds
/// the memory of one upload in flight.
const WRITE_QUEUE: usize = 4;
/// Written bytes after which the flusher thread syncs them to disk, so
/// disk writes overlap the transfer instead of all waiting for the fsync
/// at commit.
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// The writer thread of [`Upload::append_stream`]: writes and hashes each
/// batch, in order, until the channel closes or a write fails. A failed
/// write truncates the file back to what the session counts.
///
/// Every [`WRITEBACK_WINDOW`] bytes it asks a flusher thread to
/// `fdatasync` what is written so far (one flush at a time; a window that
/// finds one running skips), so the disk works while bytes still arrive.
/// The flusher is only started by an upload that reaches a window.
fn write_batches(
    mut upload: OwnedMutexGuard<Upload>,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    now_ms: i64,
) -> (OwnedMutexGuard<Upload>, Result<(), RegistryError>) {
    upload.touched_ms = now_ms;
    let mut file = match std::fs::OpenOptions::new().append(true).open(&upload.path) {
        Ok(f) => f,
        Err(e) => return (upload, Err(e.into())),
    };
    let result = std::thread::scope(|scope| {
        let mut flusher: Option<std::sync::mpsc::SyncSender<()>> = None;
        let mut unflushed_from = upload.offset;
        while let Some(batch) = rx.blocking_recv() {
            if let Err(e) = file.write_all(&batch) {
                let _ = file.set_len(upload.offset);
                return Err(e.into());
            }
            upload.hasher.update(&batch);
            upload.offset += batch.len() as u64;
            if upload.offset - unflushed_from < WRITEBACK_WINDOW {
                continue;
            }
            unflushed_from = upload.offset;
            if flusher.is_none() {
                flusher = start_flusher(scope, &file);
            }
            if let Some(tx) = &flusher {
                // Full means a flush is running; the next window covers
                // these bytes too.
                let _ = tx.try_send(());
            }
        }
        Ok(())
    });
    (upload, result)
}

/// A thread that `fdatasync`s a clone of `file` each time it is asked,
/// until the sender is dropped. Only a head start for the fsync at commit
/// that makes the blob durable, so failures are ignored.
fn start_flusher<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    file: &std::fs::File,
) -> Option<std::sync::mpsc::SyncSender<()>> {
    let clone = file.try_clone().ok()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("upload-flush".into())
        .spawn_scoped(scope, move || {
            while rx.recv().is_ok() {
                if let Err(err) = clone.sync_data() {
                    tracing::debug!(error = %err, "background flush of an upload failed");
                }
            }
        });
    spawned.ok().map(|_| tx)
}
