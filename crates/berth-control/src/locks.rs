//! In-process serialization of writers to one key (for example one task
//! definition family), so that concurrent callers of the same server queue
//! instead of colliding in compare-and-swap retries. Correctness never
//! depends on these locks: every write is still a compare-and-swap.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use parking_lot::{Mutex, MutexGuard};

const SHARDS: usize = 256;

#[derive(Debug)]
pub(crate) struct KeyLocks {
    shards: Vec<Mutex<()>>,
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl KeyLocks {
    /// Locks the shard of `key`; distinct keys may share a shard, which
    /// only costs a little parallelism.
    pub(crate) fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = (hasher.finish() % SHARDS as u64) as usize;
        // `index < SHARDS == shards.len()`, so indexing cannot fail.
        self.shards[index].lock()
    }
}
