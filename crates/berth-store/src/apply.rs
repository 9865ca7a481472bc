//! The transaction logic both backends share: validation, compare
//! evaluation and the application of one branch, over a small key-value
//! state trait that each backend implements on its own storage.

use std::collections::HashSet;

use crate::{Compare, EventKind, KeyValue, Op, Result, Revision, StoreError, Txn, WatchEvent};

/// The storage a transaction is applied to. Each backend implements it on
/// its own tables or maps; `apply` holds the semantics.
pub(crate) trait KvState {
    /// The key's `(mod_revision, version)`, or `None` when it is missing.
    fn key_meta(&mut self, key: &str) -> Result<Option<(Revision, i64)>>;
    /// Creates or updates the key at `revision` and returns the stored kv
    /// (create revision kept and version + 1 on update; both fresh on
    /// create).
    fn put(&mut self, key: &str, value: &[u8], revision: Revision) -> Result<KeyValue>;
    /// Deletes the key; true when it existed.
    fn delete(&mut self, key: &str) -> Result<bool>;
    /// Deletes every key under the prefix and returns them in key order.
    fn delete_prefix(&mut self, prefix: &str) -> Result<Vec<String>>;
}

/// The outcome of applying one transaction: which branch ran and the
/// changes it made, in op order. No events means the revision stays.
#[derive(Debug)]
pub(crate) struct Applied {
    pub succeeded: bool,
    pub events: Vec<WatchEvent>,
}

/// Rejects malformed transactions the way etcd does: no empty key, and no
/// key written twice by one branch (put/put or put/delete overlap).
pub(crate) fn validate(txn: &Txn) -> Result<()> {
    for cmp in &txn.compares {
        if compare_key(cmp).is_empty() {
            return Err(StoreError::InvalidTxn("compare on an empty key".into()));
        }
    }
    validate_branch(&txn.success, "success")?;
    validate_branch(&txn.failure, "failure")
}

fn validate_branch(ops: &[Op], branch: &str) -> Result<()> {
    let mut puts: HashSet<&str> = HashSet::new();
    let mut deletes: HashSet<&str> = HashSet::new();
    let mut prefixes: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            Op::Put { key, .. } => {
                if key.is_empty() {
                    return Err(StoreError::InvalidTxn(format!(
                        "put of an empty key in {branch}"
                    )));
                }
                if !puts.insert(key) {
                    return Err(StoreError::InvalidTxn(format!(
                        "key {key:?} is put twice in {branch}"
                    )));
                }
            }
            Op::Delete { key } => {
                if key.is_empty() {
                    return Err(StoreError::InvalidTxn(format!(
                        "delete of an empty key in {branch}"
                    )));
                }
                deletes.insert(key);
            }
            Op::DeletePrefix { prefix } => prefixes.push(prefix),
        }
    }
    for key in &puts {
        if deletes.contains(key) || prefixes.iter().any(|p| key.starts_with(p)) {
            return Err(StoreError::InvalidTxn(format!(
                "key {key:?} is both put and deleted in {branch}"
            )));
        }
    }
    Ok(())
}

fn compare_key(cmp: &Compare) -> &str {
    match cmp {
        Compare::ModRevision { key, .. }
        | Compare::Version { key, .. }
        | Compare::Exists { key }
        | Compare::Missing { key } => key,
    }
}

fn holds(state: &mut impl KvState, cmp: &Compare) -> Result<bool> {
    let meta = state.key_meta(compare_key(cmp))?;
    Ok(match cmp {
        Compare::ModRevision { revision, .. } => meta.map_or(0, |(m, _)| m) == *revision,
        Compare::Version { version, .. } => meta.map_or(0, |(_, v)| v) == *version,
        Compare::Exists { .. } => meta.is_some(),
        Compare::Missing { .. } => meta.is_none(),
    })
}

/// Evaluates the compares and applies the chosen branch at `revision`
/// (the revision the transaction gets if it changes anything). The caller
/// makes the whole application atomic (a savepoint, or a lock) and
/// advances the store revision only when events came back.
pub(crate) fn apply(state: &mut impl KvState, txn: &Txn, revision: Revision) -> Result<Applied> {
    let mut succeeded = true;
    for cmp in &txn.compares {
        if !holds(state, cmp)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let mut events = Vec::new();
    for op in ops {
        match op {
            Op::Put { key, value } => {
                let kv = state.put(key, value, revision)?;
                events.push(WatchEvent {
                    kind: EventKind::Put,
                    kv,
                });
            }
            Op::Delete { key } => {
                if state.delete(key)? {
                    events.push(delete_event(key.clone(), revision));
                }
            }
            Op::DeletePrefix { prefix } => {
                for key in state.delete_prefix(prefix)? {
                    events.push(delete_event(key, revision));
                }
            }
        }
    }
    Ok(Applied { succeeded, events })
}

pub(crate) fn delete_event(key: String, revision: Revision) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            value: Vec::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
        },
    }
}

/// The first revision whose events must be dropped once the store is at
/// `revision` with `history` revisions kept: everything `<=` it goes.
pub(crate) fn compact_target(revision: Revision, history: i64) -> Revision {
    (revision - history).max(0)
}

/// Checks that a watch from `after` can be served when every event of a
/// revision `<= compact_revision` has been dropped.
pub(crate) fn check_not_compacted(after: Revision, compact_revision: Revision) -> Result<()> {
    if after < compact_revision {
        return Err(StoreError::Compacted {
            requested: after + 1,
            oldest: compact_revision + 1,
        });
    }
    Ok(())
}

/// The exclusive upper bound of the keys under `prefix`, in byte order, or
/// `None` when the prefix bounds nothing (empty, or all 0xff bytes).
pub(crate) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn validate_rejects_overlapping_writes() {
        let put = |k: &str| Op::Put {
            key: k.into(),
            value: vec![],
        };
        let txn = Txn {
            success: vec![put("a"), put("a")],
            ..Txn::default()
        };
        assert!(matches!(validate(&txn), Err(StoreError::InvalidTxn(_))));
        let txn = Txn {
            failure: vec![Op::DeletePrefix { prefix: "a".into() }, put("ab")],
            ..Txn::default()
        };
        assert!(matches!(validate(&txn), Err(StoreError::InvalidTxn(_))));
        let txn = Txn {
            success: vec![
                Op::Delete { key: "a".into() },
                Op::DeletePrefix { prefix: "".into() },
            ],
            failure: vec![put("a")],
            ..Txn::default()
        };
        assert!(validate(&txn).is_ok());
    }
}
