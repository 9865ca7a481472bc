//! Helpers shared by the integration tests: one constructor per backend,
//! so every semantic test runs against both.
#![allow(dead_code)]

use std::sync::Arc;

use berth_store::{
    Compare, EventKind, MemoryStore, Op, SqliteStore, Store, StoreOptions, Txn, TxnResult,
    WatchEvent,
};
use tempfile::TempDir;

/// A store under test; `dir` keeps the SQLite files alive.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub dir: Option<TempDir>,
}

pub type Maker = fn(StoreOptions) -> Fixture;

pub fn memory(options: StoreOptions) -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::with_options(options)),
        dir: None,
    }
}

pub fn sqlite(options: StoreOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path().join("store.db"), options).unwrap();
    Fixture {
        store: Arc::new(store),
        dir: Some(dir),
    }
}

pub fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

pub fn del(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

pub fn mod_rev(key: &str, revision: i64) -> Compare {
    Compare::ModRevision {
        key: key.into(),
        revision,
    }
}

/// A transaction without compares.
pub fn write(store: &dyn Store, ops: Vec<Op>) -> TxnResult {
    store
        .txn(Txn {
            success: ops,
            ..Txn::default()
        })
        .unwrap()
}

/// An event in a form that is easy to compare: (kind, key, value, revision).
pub fn brief(event: &WatchEvent) -> (&'static str, String, String, i64) {
    let kind = match event.kind {
        EventKind::Put => "put",
        EventKind::Delete => "delete",
    };
    (
        kind,
        event.kv.key.clone(),
        String::from_utf8_lossy(&event.kv.value).into_owned(),
        event.kv.mod_revision,
    )
}

/// Takes every event that is already in the channel.
pub fn drain(rx: &mut berth_store::Watch) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event.expect("the watch lagged"));
    }
    events
}
