//! Typed access to the store: JSON values under keys, read-modify-write with
//! compare-and-swap and retry, and paging over prefixes.

use berth_model::ApiError;
use berth_store::{Compare, KeyValue, Op, RangeRequest, Revision, Store, Txn};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How many times a compare-and-swap is retried before the caller gets a
/// ServerException. Conflicts only happen between concurrent writers of the
/// same key, so a handful of retries is plenty.
const CAS_ATTEMPTS: usize = 64;

pub(crate) fn store_error(err: berth_store::StoreError) -> ApiError {
    tracing::error!(error = %err, "store failure");
    ApiError::server("internal error in the state store")
}

pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, ApiError> {
    serde_json::from_slice(&kv.value).map_err(|err| {
        tracing::error!(key = %kv.key, error = %err, "undecodable record in the store");
        ApiError::server("internal error decoding stored state")
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|err| {
        tracing::error!(error = %err, "unencodable record");
        ApiError::server("internal error encoding state")
    })
}

/// A decoded record with the revision it was read at.
pub(crate) struct Versioned<T> {
    pub value: T,
    pub mod_revision: Revision,
}

pub(crate) fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<Versioned<T>>, ApiError> {
    match store.get(key).map_err(store_error)? {
        Some(kv) => Ok(Some(Versioned {
            value: decode(&kv)?,
            mod_revision: kv.mod_revision,
        })),
        None => Ok(None),
    }
}

/// What a read-modify-write step decides.
pub(crate) enum Change<T> {
    /// Write these ops, guarded by the read revision of `key`.
    Write(Vec<Op>, T),
    /// Write these ops, guarded by the read revision of `key` and by more
    /// compares (for invariants that span keys).
    WriteGuarded(Vec<Compare>, Vec<Op>, T),
    /// Leave the store as it is and return this.
    Keep(T),
}

/// Reads `key`, lets `decide` choose what to write, and commits it only if
/// `key` has not changed in between; retries on conflict. `decide` may run
/// more than once, so it must not have effects beyond reading the store.
pub(crate) fn read_modify_write<S, T, F>(
    store: &dyn Store,
    key: &str,
    mut decide: F,
) -> Result<T, ApiError>
where
    S: DeserializeOwned,
    F: FnMut(Option<S>) -> Result<Change<T>, ApiError>,
{
    for _ in 0..CAS_ATTEMPTS {
        let current = get::<S>(store, key)?;
        let revision = current.as_ref().map(|v| v.mod_revision).unwrap_or(0);
        match decide(current.map(|v| v.value))? {
            Change::Keep(out) => return Ok(out),
            Change::Write(ops, out) => {
                if commit(store, key, revision, Vec::new(), ops)? {
                    return Ok(out);
                }
                tracing::debug!(key, "compare-and-swap conflict, retrying");
            }
            Change::WriteGuarded(guards, ops, out) => {
                if commit(store, key, revision, guards, ops)? {
                    return Ok(out);
                }
                tracing::debug!(key, "compare-and-swap conflict, retrying");
            }
        }
    }
    Err(ApiError::server(
        "too much contention on a resource, try again",
    ))
}

fn commit(
    store: &dyn Store,
    key: &str,
    revision: Revision,
    mut compares: Vec<Compare>,
    ops: Vec<Op>,
) -> Result<bool, ApiError> {
    compares.push(Compare::ModRevision {
        key: key.to_string(),
        revision,
    });
    let txn = Txn {
        compares,
        success: ops,
        failure: Vec::new(),
    };
    Ok(store.txn(txn).map_err(store_error)?.succeeded)
}

pub(crate) fn put_op<T: Serialize>(key: String, value: &T) -> Result<Op, ApiError> {
    Ok(Op::Put {
        key,
        value: encode(value)?,
    })
}

/// Every key-value under `prefix`, in key order.
pub(crate) fn scan(store: &dyn Store, prefix: &str) -> Result<Vec<KeyValue>, ApiError> {
    let mut out = Vec::new();
    let mut start_after = None;
    loop {
        let page = store
            .range(&RangeRequest {
                prefix: prefix.to_string(),
                start_after,
                limit: 1000,
            })
            .map_err(store_error)?;
        let more = page.more;
        start_after = page.kvs.last().map(|kv| kv.key.clone());
        out.extend(page.kvs);
        if !more || start_after.is_none() {
            return Ok(out);
        }
    }
}

/// True when at least one key exists under `prefix` and `keep` accepts it.
pub(crate) fn any_under<T, F>(store: &dyn Store, prefix: &str, keep: F) -> Result<bool, ApiError>
where
    T: DeserializeOwned,
    F: Fn(&T) -> bool,
{
    for kv in scan(store, prefix)? {
        if keep(&decode::<T>(&kv)?) {
            return Ok(true);
        }
    }
    Ok(false)
}
