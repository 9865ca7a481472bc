//! [`SqliteStore`]: the embedded, durable store.
//!
//! # Storage
//!
//! One SQLite database in WAL mode with `synchronous = FULL`, so a commit is
//! on disk (the WAL is fsynced) before it is acknowledged. Three tables:
//!
//! - `kv (key, value, create_revision, mod_revision, version)`: the current
//!   keys. Keys are stored as BLOBs so that SQLite compares them byte-wise,
//!   the same order as Rust's `str`, and a prefix scan is the index range
//!   `[prefix, prefix_end)`.
//! - `events (id, revision, key, kind, value, create_revision, version)`:
//!   the change log that watches replay, indexed by revision; `id` grows
//!   with insertion and orders the changes of one revision. Events of
//!   revisions `<= compact_revision` are deleted.
//! - `meta (revision, compact_revision)`: one row.
//!
//! Both big tables are ordinary rowid tables, not `WITHOUT ROWID`: values
//! of a few KiB (task definitions) fit in a rowid table's leaf page but
//! would spill into overflow pages of a `WITHOUT ROWID` b-tree, which
//! measured about 1.5x slower. Checkpoints are SQLite's automatic ones, run
//! by the writer.
//!
//! # Group commit
//!
//! A single writer thread owns the only write connection. [`Store::txn`]
//! validates the transaction, queues it with a reply channel and blocks.
//! The writer takes everything queued (up to [`MAX_BATCH`]), opens one
//! `BEGIN IMMEDIATE` transaction and applies the queued transactions in
//! arrival order, each inside its own SAVEPOINT: a transaction that fails
//! with an error is rolled back alone and its caller gets the error, the
//! others go on. Compares are evaluated against the state left by the
//! earlier transactions of the batch, exactly as if they had committed one
//! by one. Each transaction that changes something gets the next revision,
//! so revisions stay consecutive and one per transaction. The writer then
//! writes `meta`, drops events that fell out of history, and commits once:
//! one fsync for the whole batch. Only after the commit returns does it
//! publish the batch's events to the watchers and then answer the callers
//! (so when `txn` returns, every live watcher has its events queued, as
//! with [`MemoryStore`](crate::MemoryStore)). If the commit fails every caller of the batch gets the error
//! and nothing of the batch is visible.
//!
//! While the writer waits on an fsync, new transactions queue up, so the
//! batch size grows with the load by itself, and a lone writer pays no
//! added latency.
//!
//! # Reads
//!
//! `get`, `range`, `revision` and the replay of `watch` use a small pool of
//! read-only connections. WAL gives each read transaction a snapshot of the
//! last commit, so reads see only committed data and never wait for the
//! writer; `range` reads its page and its revision in one snapshot.
//!
//! # Watch replay
//!
//! `watch(prefix, after)` must hand over from history to live events with
//! no gap and no duplicate, while the writer keeps committing. It does:
//!
//! 1. Outside any lock, in one read snapshot at revision `R`, replay the
//!    events in `(after, R]`. Set `cursor = max(after, R)`.
//! 2. Lock the watcher hub. The writer publishes under that lock, in
//!    revision order, after commit, so `published <= committed`. If
//!    `published > cursor`, replay `(cursor, published]` from a fresh
//!    snapshot (those revisions are committed) and set `cursor =
//!    published`. Register the subscriber with `after = cursor` and unlock.
//!
//! Every later publish delivers only revisions `> cursor`; any revision in
//! `(published, cursor]` was replayed in step 1 and is filtered out when the
//! writer publishes it. Step 2 usually replays nothing or a few events.

use std::fmt;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tracing::{debug, info, warn};

use crate::apply::{self, Applied, KvState};
use crate::hub::{self, Hub};
use crate::{
    EventKind, KeyValue, RangeRequest, RangeResult, Result, Revision, Store, StoreError,
    StoreOptions, Txn, TxnResult, Watch, WatchEvent,
};

/// The most transactions the writer commits with one fsync.
pub const MAX_BATCH: usize = 1024;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    revision INTEGER NOT NULL,
    key BLOB NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_revision ON events (revision);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compact_revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compact_revision) VALUES (1, 0, 0);
";

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

fn db(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// The embedded durable [`Store`]; see the module documentation.
///
/// Only one `SqliteStore` may have a database open at a time (the writer
/// and the watchers live in this process): `open` takes an exclusive lock
/// on `<path>.lock` and fails if another process holds it. Dropping the
/// store finishes the queued transactions, stops the writer, ends every
/// watch stream and releases the lock.
pub struct SqliteStore {
    path: PathBuf,
    /// Held for the store's lifetime; the OS releases it if we die.
    _lock: std::fs::File,
    readers: Readers,
    hub: Arc<Mutex<Hub>>,
    watch_buffer: usize,
    queue: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

struct Request {
    txn: Txn,
    reply: mpsc::SyncSender<Result<TxnResult>>,
}

/// Takes the exclusive lock beside the database file.
/// Creates the database file readable by its owner only (mode 0600), or
/// narrows an existing one to that. SQLite gives its WAL and shared-memory
/// files the database file's mode, so they follow.
fn owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Backend(format!("cannot create the database file: {e}")))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::Backend(format!("cannot restrict the database file: {e}")))?;
    for suffix in ["-wal", "-shm"] {
        let mut other = path.as_os_str().to_owned();
        other.push(suffix);
        // Left by an earlier run under the old mode; absent is fine.
        let _ = std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

fn lock_exclusive(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| StoreError::Backend(format!("cannot open lock file: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Backend(format!(
            "the store {} is already open in another process",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Backend(format!("cannot lock the store: {e}")))
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let history = options.history.max(1);
        let lock = lock_exclusive(&path)?;
        owner_only(&path)?;
        let mut conn = Connection::open(&path).map_err(db)?;
        configure(&conn, false)?;
        let (revision, compact_revision) = init_schema(&mut conn)?;
        let readers = Readers::open(&path, options.read_connections.max(1))?;
        let hub = Arc::new(Mutex::new(Hub::new(revision)));
        let (queue, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            rx,
            hub: Arc::clone(&hub),
            history,
        };
        let handle = std::thread::Builder::new()
            .name("berth-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        info!(path = %path.display(), revision, compact_revision, history, "store opened");
        Ok(SqliteStore {
            path,
            _lock: lock,
            readers,
            hub,
            watch_buffer: options.watch_buffer.max(1),
            queue: Some(queue),
            writer: Some(handle),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replays the events of `(after, upto]` under `prefix` into `tx` from
    /// one snapshot, and returns the snapshot's revision. Fails when the
    /// range reaches into compacted history.
    fn replay(
        &self,
        prefix: &str,
        after: Revision,
        upto: Option<Revision>,
        out: &mut Vec<WatchEvent>,
    ) -> Result<Revision> {
        self.readers.with(|conn| {
            let snapshot = conn.transaction().map_err(db)?;
            let (revision, compact_revision) = read_meta(&snapshot)?;
            apply::check_not_compacted(after, compact_revision)?;
            let upto = upto.unwrap_or(revision).min(revision);
            let end = apply::prefix_end(prefix);
            let sql = if end.is_some() {
                "SELECT revision, key, kind, value, create_revision, version FROM events
                 WHERE revision > ?1 AND revision <= ?2 AND key >= ?3 AND key < ?4
                 ORDER BY revision, id"
            } else {
                "SELECT revision, key, kind, value, create_revision, version FROM events
                 WHERE revision > ?1 AND revision <= ?2 AND key >= ?3
                 ORDER BY revision, id"
            };
            let mut stmt = snapshot.prepare_cached(sql).map_err(db)?;
            let mut rows = match &end {
                Some(end) => stmt.query(params![after, upto, prefix.as_bytes(), end]),
                None => stmt.query(params![after, upto, prefix.as_bytes()]),
            }
            .map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                let kind = match row.get::<_, i64>(2).map_err(db)? {
                    KIND_PUT => EventKind::Put,
                    KIND_DELETE => EventKind::Delete,
                    other => {
                        return Err(StoreError::Backend(format!("unknown event kind {other}")))
                    }
                };
                let event = WatchEvent {
                    kind,
                    kv: KeyValue {
                        key: key_string(row.get(1).map_err(db)?)?,
                        value: row.get(3).map_err(db)?,
                        create_revision: row.get(4).map_err(db)?,
                        mod_revision: row.get(0).map_err(db)?,
                        version: row.get(5).map_err(db)?,
                    },
                };
                out.push(event);
            }
            Ok(revision)
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit.
        self.queue.take();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                warn!(path = %self.path.display(), "store writer thread panicked");
            }
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("read_connections", &self.readers.conns.len())
            .finish()
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.readers.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT value, create_revision, mod_revision, version FROM kv WHERE key = ?1",
                )
                .map_err(db)?;
            stmt.query_row([key.as_bytes()], |row| {
                Ok(KeyValue {
                    key: key.to_owned(),
                    value: row.get(0)?,
                    create_revision: row.get(1)?,
                    mod_revision: row.get(2)?,
                    version: row.get(3)?,
                })
            })
            .optional()
            .map_err(db)
        })
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResult> {
        self.readers.with(|conn| {
            let snapshot = conn.transaction().map_err(db)?;
            let (revision, _) = read_meta(&snapshot)?;
            let (lower, lower_op) = match &req.start_after {
                Some(after) if after.as_str() >= req.prefix.as_str() => (after.as_str(), ">"),
                _ => (req.prefix.as_str(), ">="),
            };
            let end = apply::prefix_end(&req.prefix);
            let upper = if end.is_some() { "AND key < ?3" } else { "" };
            let sql = format!(
                "SELECT key, value, create_revision, mod_revision, version FROM kv
                 WHERE key {lower_op} ?1 {upper} ORDER BY key LIMIT ?2"
            );
            // One more row than asked tells whether there are more.
            let fetch: i64 = if req.limit == 0 {
                -1
            } else {
                i64::try_from(req.limit).unwrap_or(i64::MAX - 1) + 1
            };
            let mut stmt = snapshot.prepare_cached(&sql).map_err(db)?;
            let mut rows = match &end {
                Some(end) => stmt.query(params![lower.as_bytes(), fetch, end]),
                None => stmt.query(params![lower.as_bytes(), fetch]),
            }
            .map_err(db)?;
            let mut kvs = Vec::new();
            let mut more = false;
            while let Some(row) = rows.next().map_err(db)? {
                if req.limit != 0 && kvs.len() == req.limit {
                    more = true;
                    break;
                }
                kvs.push(KeyValue {
                    key: key_string(row.get(0).map_err(db)?)?,
                    value: row.get(1).map_err(db)?,
                    create_revision: row.get(2).map_err(db)?,
                    mod_revision: row.get(3).map_err(db)?,
                    version: row.get(4).map_err(db)?,
                });
            }
            Ok(RangeResult {
                kvs,
                more,
                revision,
            })
        })
    }

    fn txn(&self, txn: Txn) -> Result<TxnResult> {
        apply::validate(&txn)?;
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = mpsc::sync_channel(1);
        queue
            .send(Request { txn, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.recv().map_err(|_| StoreError::Closed)?
    }

    fn revision(&self) -> Result<Revision> {
        self.readers.with(|conn| Ok(read_meta(conn)?.0))
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        let after = after.max(0);
        // The replay is bounded by the history the log keeps.
        let mut replayed = Vec::new();
        // Step 1: the bulk of the history, without blocking the writer.
        let snapshot_revision = self.replay(prefix, after, None, &mut replayed)?;
        let mut cursor = after.max(snapshot_revision);
        // Step 2: catch up to what has been published, then subscribe.
        let mut hub = self.hub.lock();
        let published = hub.published();
        if published > cursor {
            self.replay(prefix, cursor, Some(published), &mut replayed)?;
            cursor = published;
        }
        let (tx, rx) = hub::channel(replayed, self.watch_buffer);
        hub.subscribe(prefix.to_owned(), cursor, tx);
        debug!(prefix, after, cursor, "watch started");
        Ok(rx)
    }
}

/// A small pool of read-only connections.
struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    fn open(path: &Path, count: usize) -> Result<Self> {
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(db)?;
            configure(&conn, true)?;
            conns.push(Mutex::new(conn));
        }
        Ok(Readers {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on a free connection, or waits for one.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Some(mut conn) = self.conns[(start + i) % n].try_lock() {
                return f(&mut conn);
            }
        }
        let mut conn = self.conns[start].lock();
        f(&mut conn)
    }
}

fn configure(conn: &Connection, read_only: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db)?;
    if read_only {
        conn.pragma_update(None, "query_only", true).map_err(db)?;
        return Ok(());
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "cannot switch the database to wal mode (it is in {mode} mode)"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    // Every transaction of a group commit runs in a savepoint; the pages a
    // savepoint changes are journaled to a temporary file unless temporary
    // storage is in memory (that file's writes profiled at a tenth of the
    // server's CPU under a 50,000-task placement). Durability is unchanged:
    // the sub-journal only serves rolling back a savepoint.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db)?;
    // 64 MiB of page cache for the writer (SQLite's default is 2 MiB):
    // task keys are random, so inserts land all over the tree.
    conn.pragma_update(None, "cache_size", -65536).map_err(db)?;
    Ok(())
}

fn init_schema(conn: &mut Connection) -> Result<(Revision, Revision)> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {version} is newer than this build supports ({SCHEMA_VERSION})"
        )));
    }
    tx.execute_batch(SCHEMA).map_err(db)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(db)?;
    let meta = read_meta(&tx)?;
    tx.commit().map_err(db)?;
    Ok(meta)
}

fn read_meta(conn: &Connection) -> Result<(Revision, Revision)> {
    conn.prepare_cached("SELECT revision, compact_revision FROM meta WHERE id = 1")
        .map_err(db)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(db)
}

fn key_string(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| StoreError::Backend("stored key is not utf-8".into()))
}

/// The writer thread: the only connection that writes.
struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Request>,
    hub: Arc<Mutex<Hub>>,
    history: i64,
}

/// What a committed batch produced.
struct Batch {
    results: Vec<Result<TxnResult>>,
    events: Vec<WatchEvent>,
    revision: Revision,
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut requests = vec![first];
            while requests.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            match self.commit(&requests) {
                Ok(batch) => {
                    debug!(
                        txns = requests.len(),
                        events = batch.events.len(),
                        revision = batch.revision,
                        "batch committed"
                    );
                    // Publish before answering: once a txn returns, every
                    // watcher already has its events in its channel.
                    self.hub.lock().publish(&batch.events, batch.revision);
                    for (request, result) in requests.into_iter().zip(batch.results) {
                        // A caller that went away no longer needs its answer.
                        let _ = request.reply.send(result);
                    }
                }
                Err(err) => {
                    warn!(txns = requests.len(), error = %err, "batch commit failed");
                    let message = err.to_string();
                    for request in requests {
                        let _ = request
                            .reply
                            .send(Err(StoreError::Backend(message.clone())));
                    }
                }
            }
        }
        debug!("store writer stopped");
    }

    fn commit(&mut self, requests: &[Request]) -> Result<Batch> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let (start, mut compact_revision) = read_meta(&tx)?;
        let mut revision = start;
        let mut results = Vec::with_capacity(requests.len());
        let mut events = Vec::new();
        for request in requests {
            let savepoint = tx.savepoint().map_err(db)?;
            match apply_logged(&savepoint, &request.txn, revision + 1) {
                Ok(applied) => {
                    savepoint.commit().map_err(db)?;
                    if !applied.events.is_empty() {
                        revision += 1;
                        events.extend(applied.events);
                    }
                    results.push(Ok(TxnResult {
                        succeeded: applied.succeeded,
                        revision,
                    }));
                }
                Err(err) => {
                    warn!(error = %err, "transaction failed and was rolled back");
                    // Dropping a savepoint rolls it back; finish reports
                    // a failure to do so, which must fail the batch.
                    savepoint.finish().map_err(db)?;
                    results.push(Err(err));
                }
            }
        }
        if revision != start {
            let target = apply::compact_target(revision, self.history);
            if target > compact_revision {
                tx.prepare_cached("DELETE FROM events WHERE revision <= ?1")
                    .map_err(db)?
                    .execute([target])
                    .map_err(db)?;
                compact_revision = target;
            }
            tx.prepare_cached("UPDATE meta SET revision = ?1, compact_revision = ?2 WHERE id = 1")
                .map_err(db)?
                .execute([revision, compact_revision])
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(Batch {
            results,
            events,
            revision,
        })
    }
}

/// Applies one transaction and appends its events to the log.
fn apply_logged(conn: &Connection, txn: &Txn, revision: Revision) -> Result<Applied> {
    let applied = apply::apply(&mut SqlState(conn), txn, revision)?;
    if !applied.events.is_empty() {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO events (revision, key, kind, value, create_revision, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(db)?;
        for event in &applied.events {
            let kind = match event.kind {
                EventKind::Put => KIND_PUT,
                EventKind::Delete => KIND_DELETE,
            };
            insert
                .execute(params![
                    revision,
                    event.kv.key.as_bytes(),
                    kind,
                    event.kv.value,
                    event.kv.create_revision,
                    event.kv.version
                ])
                .map_err(db)?;
        }
    }
    Ok(applied)
}

/// [`KvState`] on the writer's open transaction.
struct SqlState<'a>(&'a Connection);

impl KvState for SqlState<'_> {
    fn key_meta(&mut self, key: &str) -> Result<Option<(Revision, i64)>> {
        self.0
            .prepare_cached("SELECT mod_revision, version FROM kv WHERE key = ?1")
            .map_err(db)?
            .query_row([key.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(db)
    }

    fn put(&mut self, key: &str, value: &[u8], revision: Revision) -> Result<KeyValue> {
        let (create_revision, version) = self
            .0
            .prepare_cached(
                "INSERT INTO kv (key, value, create_revision, mod_revision, version)
                 VALUES (?1, ?2, ?3, ?3, 1)
                 ON CONFLICT (key) DO UPDATE SET
                     value = excluded.value,
                     mod_revision = excluded.mod_revision,
                     version = kv.version + 1
                 RETURNING create_revision, version",
            )
            .map_err(db)?
            .query_row(params![key.as_bytes(), value, revision], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(db)?;
        Ok(KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision,
            mod_revision: revision,
            version,
        })
    }

    fn delete(&mut self, key: &str) -> Result<bool> {
        let n = self
            .0
            .prepare_cached("DELETE FROM kv WHERE key = ?1")
            .map_err(db)?
            .execute([key.as_bytes()])
            .map_err(db)?;
        Ok(n > 0)
    }

    fn delete_prefix(&mut self, prefix: &str) -> Result<Vec<String>> {
        let keys: Vec<Vec<u8>> = match apply::prefix_end(prefix) {
            Some(end) => self
                .0
                .prepare_cached("DELETE FROM kv WHERE key >= ?1 AND key < ?2 RETURNING key")
                .map_err(db)?
                .query_map(params![prefix.as_bytes(), end], |row| row.get(0))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?,
            None => self
                .0
                .prepare_cached("DELETE FROM kv WHERE key >= ?1 RETURNING key")
                .map_err(db)?
                .query_map(params![prefix.as_bytes()], |row| row.get(0))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?,
        };
        let mut keys = keys
            .into_iter()
            .map(key_string)
            .collect::<Result<Vec<_>>>()?;
        keys.sort_unstable();
        Ok(keys)
    }
}
