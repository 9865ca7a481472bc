//! Berth's state store: revisioned keys, compare-and-swap transactions and
//! watches, shaped like etcd's v3 API so that controllers written against
//! [`Store`] run unchanged on the embedded SQLite backend or, later, on etcd.
//!
//! # Data model
//!
//! Every committed transaction that changes something advances one global
//! revision by exactly one. Each key keeps the revision that created it, the
//! revision that last modified it and a per-key version (1 on create, +1 on
//! each put). Deleting a key forgets it; a later put creates it anew.
//!
//! A transaction "changes something" when it puts a key or deletes a key that
//! exists. A transaction whose chosen branch is empty, or only deletes
//! missing keys, leaves the revision where it was (as etcd does). All the
//! writes of one transaction share its single revision.
//!
//! As in etcd, one branch of a transaction may not name the same key twice
//! for writing: two puts of one key, or a put of a key that a delete or a
//! delete-prefix of the same branch also covers, make the whole transaction
//! fail with [`StoreError::InvalidTxn`] before anything is evaluated.
//! Overlapping deletes are allowed. Keys written by `Put` and `Delete` must
//! not be empty.
//!
//! # History and watches
//!
//! Each change is also appended to an event log, which [`Store::watch`]
//! replays before it streams live changes. The log is bounded: after the
//! store reaches revision `r`, the events of revisions `<= r - history`
//! (see [`StoreOptions::history`]) are dropped, and a watch that would need
//! one of them fails with [`StoreError::Compacted`]. A controller that sees
//! that error re-lists (range) and watches again from the listed revision.
//!
//! A watch's live buffer is bounded too: a watcher holds at most
//! [`StoreOptions::watch_buffer`] undelivered live events (besides what its
//! replay handed it). One that falls further behind is cancelled: its last
//! item is [`StoreError::WatchLagged`] and its stream ends there. Like a
//! compacted watch, it re-lists and watches again from the listed revision;
//! a slow watcher never makes the store hold memory on its behalf, nor
//! slows the writer.
//!
//! # Backends
//!
//! - [`SqliteStore`]: embedded and durable (SQLite in WAL mode, `synchronous
//!   = FULL`), with group commit: concurrent transactions share one fsync.
//!   See the [`sqlite`] module for the design.
//! - [`MemoryStore`]: the same semantics in memory, for controller tests.
//!
//! Both share the transaction logic in `apply` and the watcher registry in
//! `hub`, so they cannot drift apart; a property test checks that they
//! agree on random transaction sequences.

use std::fmt;

mod apply;
mod hub;
mod memory;
pub mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// The global revision counter of a store. Starts at 0 for an empty store;
/// the first committed transaction that writes gets revision 1.
pub type Revision = i64;

/// One stored key with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
}

/// A condition a transaction checks before it chooses its branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals the given one (0 means "does not exist").
    ModRevision { key: String, revision: Revision },
    /// The key's version equals the given one (0 means "does not exist").
    Version { key: String, version: i64 },
    /// The key exists.
    Exists { key: String },
    /// The key does not exist.
    Missing { key: String },
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Deletes every key that starts with the prefix (the empty prefix
    /// deletes every key).
    DeletePrefix {
        prefix: String,
    },
}

/// An etcd-style transaction: if every compare holds, apply `success`,
/// otherwise apply `failure`. Both branches may be empty. The ops of a
/// branch are applied in order and all get the transaction's revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// What a committed transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// True when every compare held and `success` was applied.
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged if it wrote nothing).
    pub revision: Revision,
}

/// A page of keys in lexical (byte) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// True when more keys matched than `limit` allowed.
    pub more: bool,
    /// The store revision the page was read at.
    pub revision: Revision,
}

/// A request for keys under a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: String,
    /// Only keys strictly greater than this one (for pagination).
    pub start_after: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
}

/// One change seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a put, the new key-value; for a delete, the key with an empty
    /// value, `mod_revision` set to the deleting revision and
    /// `create_revision` and `version` set to 0 (as etcd reports them).
    pub kv: KeyValue,
}

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend error: {0}")]
    Backend(String),
    /// A watch needed events that history no longer holds. `requested` is
    /// the first revision the watch needed (`after + 1`), `oldest` the
    /// oldest revision whose events are still kept.
    #[error("revision {requested} has been compacted (oldest kept is {oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("store is closed")]
    Closed,
    /// A watcher fell more than its buffer behind the live events and was
    /// cancelled: it must re-list and watch again.
    #[error("watcher fell behind by more than its buffer; re-list and watch again")]
    WatchLagged,
    /// The transaction is malformed (an empty key, or one branch writing
    /// the same key twice); nothing was evaluated or written.
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The stream of a watch: events, and at most one error,
/// [`StoreError::WatchLagged`], after which it ends.
pub type Watch = tokio::sync::mpsc::Receiver<Result<WatchEvent>>;

/// Settings shared by every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// How many revisions of history the event log keeps for watches.
    /// At least 1; default 100 000.
    pub history: i64,
    /// Read connections of the SQLite backend (WAL lets them read while the
    /// writer commits). At least 1; default 4. Ignored by [`MemoryStore`].
    pub read_connections: usize,
    /// Live events a watcher may leave undelivered before it is cancelled
    /// with [`StoreError::WatchLagged`]. At least 1; default 65 536.
    pub watch_buffer: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history: 100_000,
            read_connections: 4,
            watch_buffer: 65_536,
        }
    }
}

/// The narrow interface every controller uses. Implementations must be safe
/// to share between threads; each call is atomic and, once it returns `Ok`
/// for a write, durable.
///
/// The methods block the calling thread (a `txn` on the SQLite backend
/// waits for an fsync); async callers should use `spawn_blocking`.
pub trait Store: Send + Sync + fmt::Debug {
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    fn range(&self, req: &RangeRequest) -> Result<RangeResult>;
    fn txn(&self, txn: Txn) -> Result<TxnResult>;
    fn revision(&self) -> Result<Revision>;
    /// Streams every change under `prefix` with a revision greater than
    /// `after`, first the ones already in history, then live ones, in
    /// revision order (and, within one revision, in the order of the
    /// transaction's ops), with no gap and no duplicate. When `txn`
    /// returns, its events are already queued to every live watcher.
    /// Dropping the receiver ends the watch; closing the store ends the
    /// stream. A watcher more than [`StoreOptions::watch_buffer`] live
    /// events behind gets [`StoreError::WatchLagged`] and nothing after
    /// it. A negative `after` counts as 0.
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch>;
}
