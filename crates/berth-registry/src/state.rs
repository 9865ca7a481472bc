//! Typed access to the store: JSON records, and the one compare-and-swap
//! loop every registry write goes through (the same discipline as
//! `berth-control`'s `state::read_modify_write`, generalised to guards on
//! several keys).

use berth_store::{Compare, KeyValue, Op, RangeRequest, Revision, Store, Txn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RegistryError;

/// How many times a conflicting transaction is retried.
const CAS_ATTEMPTS: usize = 64;

pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, RegistryError> {
    serde_json::from_slice(&kv.value).map_err(|err| {
        tracing::error!(key = %kv.key, error = %err, "undecodable registry record");
        RegistryError::Internal(format!("undecodable record at {}", kv.key))
    })
}

pub fn put_op<T: Serialize>(key: String, value: &T) -> Result<Op, RegistryError> {
    let value = serde_json::to_vec(value)
        .map_err(|err| RegistryError::Internal(format!("unencodable record: {err}")))?;
    Ok(Op::Put { key, value })
}

/// A record with the revision it was read at (0 when absent).
pub struct Read<T> {
    pub value: Option<T>,
    pub revision: Revision,
}

impl<T> Read<T> {
    /// A compare that holds only if the key is still as read.
    pub fn guard(&self, key: &str) -> Compare {
        Compare::ModRevision {
            key: key.to_string(),
            revision: self.revision,
        }
    }
}

pub fn read<T: DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Read<T>, RegistryError> {
    match store.get(key)? {
        Some(kv) => Ok(Read {
            value: Some(decode(&kv)?),
            revision: kv.mod_revision,
        }),
        None => Ok(Read {
            value: None,
            revision: 0,
        }),
    }
}

/// What one attempt of [`transact`] decided.
pub enum Step<T> {
    /// Commit `ops` if every compare holds, then return the value.
    Commit(Vec<Compare>, Vec<Op>, T),
    /// Write nothing and return this.
    Done(T),
}

/// Runs `decide` (which reads the store and returns guards and writes)
/// until its transaction commits without conflict. `decide` may run more
/// than once, so it must not have effects beyond reading.
pub fn transact<T, F>(store: &dyn Store, mut decide: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Result<Step<T>, RegistryError>,
{
    for _ in 0..CAS_ATTEMPTS {
        match decide()? {
            Step::Done(out) => return Ok(out),
            Step::Commit(compares, ops, out) => {
                if ops.is_empty() {
                    return Ok(out);
                }
                let res = store.txn(Txn {
                    compares,
                    success: ops,
                    failure: Vec::new(),
                })?;
                if res.succeeded {
                    return Ok(out);
                }
                tracing::debug!("registry compare-and-swap conflict, retrying");
            }
        }
    }
    Err(RegistryError::Store(
        "too much contention on a repository, try again".into(),
    ))
}

/// Every key-value under `prefix`, in key order.
pub fn scan(store: &dyn Store, prefix: &str) -> Result<Vec<KeyValue>, RegistryError> {
    scan_after(store, prefix, None, 0)
}

/// Key-values under `prefix` after `start_after`, at most `limit` (0: all).
pub fn scan_after(
    store: &dyn Store,
    prefix: &str,
    start_after: Option<String>,
    limit: usize,
) -> Result<Vec<KeyValue>, RegistryError> {
    let mut out = Vec::new();
    let mut start_after = start_after;
    loop {
        let want = if limit == 0 {
            1000
        } else {
            (limit - out.len()).min(1000)
        };
        let page = store.range(&RangeRequest {
            prefix: prefix.to_string(),
            start_after,
            limit: want,
        })?;
        let more = page.more;
        start_after = page.kvs.last().map(|kv| kv.key.clone());
        out.extend(page.kvs);
        if !more || start_after.is_none() || (limit != 0 && out.len() >= limit) {
            return Ok(out);
        }
    }
}
