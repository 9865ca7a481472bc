//! [`MemoryStore`]: the store's semantics in memory, for tests of
//! controllers. One mutex guards the keys, the event log and the watcher
//! registry, so every call is trivially atomic and a watch's replay and
//! subscription happen in one critical section (no gap, no duplicate).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;

use parking_lot::Mutex;

use crate::apply::{self, KvState};
use crate::hub::{self, Hub};
use crate::{
    KeyValue, RangeRequest, RangeResult, Result, Revision, Store, StoreOptions, Txn, TxnResult,
    Watch, WatchEvent,
};

/// An in-memory [`Store`] with the same semantics as
/// [`SqliteStore`](crate::SqliteStore), including bounded history and
/// [`StoreError::Compacted`](crate::StoreError::Compacted). Nothing is
/// durable.
pub struct MemoryStore {
    history: i64,
    watch_buffer: usize,
    state: Mutex<State>,
}

struct State {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    compact_revision: Revision,
    /// Events of revisions `> compact_revision`, in order.
    events: VecDeque<WatchEvent>,
    hub: Hub,
}

impl KvState for BTreeMap<String, KeyValue> {
    fn key_meta(&mut self, key: &str) -> Result<Option<(Revision, i64)>> {
        Ok(self.get(key).map(|kv| (kv.mod_revision, kv.version)))
    }

    fn put(&mut self, key: &str, value: &[u8], revision: Revision) -> Result<KeyValue> {
        let kv = match self.get(key) {
            Some(old) => KeyValue {
                key: key.to_owned(),
                value: value.to_vec(),
                create_revision: old.create_revision,
                mod_revision: revision,
                version: old.version + 1,
            },
            None => KeyValue {
                key: key.to_owned(),
                value: value.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            },
        };
        self.insert(key.to_owned(), kv.clone());
        Ok(kv)
    }

    fn delete(&mut self, key: &str) -> Result<bool> {
        Ok(self.remove(key).is_some())
    }

    fn delete_prefix(&mut self, prefix: &str) -> Result<Vec<String>> {
        let keys: Vec<String> = self
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.remove(key);
        }
        Ok(keys)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_options(StoreOptions::default())
    }

    /// Uses `options.history`; the other options concern SQLite only.
    pub fn with_options(options: StoreOptions) -> Self {
        MemoryStore {
            history: options.history.max(1),
            watch_buffer: options.watch_buffer.max(1),
            state: Mutex::new(State {
                kvs: BTreeMap::new(),
                revision: 0,
                compact_revision: 0,
                events: VecDeque::new(),
                hub: Hub::new(0),
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("MemoryStore")
            .field("keys", &state.kvs.len())
            .field("revision", &state.revision)
            .finish()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.state.lock().kvs.get(key).cloned())
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResult> {
        let state = self.state.lock();
        let lower = match &req.start_after {
            Some(after) if after.as_str() >= req.prefix.as_str() => Bound::Excluded(after.as_str()),
            _ => Bound::Included(req.prefix.as_str()),
        };
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit
        };
        let mut kvs = Vec::new();
        let mut more = false;
        for (key, kv) in state.kvs.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.starts_with(&req.prefix) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(kv.clone());
        }
        Ok(RangeResult {
            kvs,
            more,
            revision: state.revision,
        })
    }

    fn txn(&self, txn: Txn) -> Result<TxnResult> {
        apply::validate(&txn)?;
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let applied = apply::apply(&mut state.kvs, &txn, state.revision + 1)?;
        if !applied.events.is_empty() {
            state.revision += 1;
            state.events.extend(applied.events.iter().cloned());
            let target = apply::compact_target(state.revision, self.history);
            if target > state.compact_revision {
                while state
                    .events
                    .front()
                    .is_some_and(|e| e.kv.mod_revision <= target)
                {
                    state.events.pop_front();
                }
                state.compact_revision = target;
            }
            state.hub.publish(&applied.events, state.revision);
        }
        Ok(TxnResult {
            succeeded: applied.succeeded,
            revision: state.revision,
        })
    }

    fn revision(&self) -> Result<Revision> {
        Ok(self.state.lock().revision)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        let after = after.max(0);
        let mut state = self.state.lock();
        apply::check_not_compacted(after, state.compact_revision)?;
        let first = state.events.partition_point(|e| e.kv.mod_revision <= after);
        let replayed: Vec<WatchEvent> = state
            .events
            .range(first..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let (tx, rx) = hub::channel(replayed, self.watch_buffer);
        let replayed = state.revision.max(after);
        state.hub.subscribe(prefix.to_owned(), replayed, tx);
        Ok(rx)
    }
}
