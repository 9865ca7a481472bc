//! Berth's state store: revisioned keys, compare-and-swap transactions and
//! watches, shaped like etcd's v3 API so that controllers written against
//! [`Store`] run unchanged on the embedded SQLite backend or, later, on etcd.
//!
//! Every committed transaction advances one global revision. Each key keeps
//! the revision that created it, the revision that last modified it and a
//! per-key version (1 on create, +1 on each put). Deleting a key forgets it;
//! a later put creates it anew.

use std::fmt;

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
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
    /// Deletes every key that starts with the prefix.
    DeletePrefix { prefix: String },
}

/// An etcd-style transaction: if every compare holds, apply `success`,
/// otherwise apply `failure`. Both branches may be empty.
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

/// A page of keys in lexical order.
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
    /// value and `mod_revision` set to the deleting revision.
    pub kv: KeyValue,
}

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("revision {requested} has been compacted (oldest kept is {oldest})")]
    Compacted { requested: Revision, oldest: Revision },
    #[error("store is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The narrow interface every controller uses. Implementations must be safe
/// to share between threads; each call is atomic and, once it returns `Ok`
/// for a write, durable.
pub trait Store: Send + Sync + fmt::Debug {
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    fn range(&self, req: &RangeRequest) -> Result<RangeResult>;
    fn txn(&self, txn: Txn) -> Result<TxnResult>;
    fn revision(&self) -> Result<Revision>;
    /// Streams every change under `prefix` with a revision greater than
    /// `after`, first the ones already in history, then live ones, in
    /// revision order. Dropping the receiver ends the watch.
    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<WatchEvent>>;
}
