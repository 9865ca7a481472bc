//! `maxResults` / `nextToken` pagination. A token is the opaque, base64
//! form of the last key returned; a token that does not decode to a key
//! under the listing's prefix is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_model::ApiError;
use berth_store::{KeyValue, RangeRequest, Store};

use crate::state::store_error;

/// How many keys one store read fetches while paging.
const CHUNK: usize = 1000;

/// One page of a listing: walks the keys under `prefix` after `start_after`
/// in key order, keeps the items `keep` maps to `Some`, and stops at
/// `limit` items. The token is returned only when another matching item
/// exists beyond the page, and resumes right after the page's last key.
pub(crate) fn page<T, F>(
    store: &dyn Store,
    prefix: &str,
    start_after: Option<String>,
    limit: usize,
    mut keep: F,
) -> Result<(Vec<T>, Option<String>), ApiError>
where
    F: FnMut(&KeyValue) -> Result<Option<T>, ApiError>,
{
    let mut items = Vec::new();
    let mut last_key: Option<String> = None;
    let mut start_after = start_after;
    loop {
        let chunk = store
            .range(&RangeRequest {
                prefix: prefix.to_string(),
                start_after,
                limit: CHUNK,
            })
            .map_err(store_error)?;
        for kv in &chunk.kvs {
            let Some(item) = keep(kv)? else { continue };
            if items.len() == limit {
                return Ok((items, last_key.as_deref().map(encode_token)));
            }
            items.push(item);
            last_key = Some(kv.key.clone());
        }
        match chunk.kvs.last() {
            Some(kv) if chunk.more => start_after = Some(kv.key.clone()),
            _ => return Ok((items, None)),
        }
    }
}

/// Checks `maxResults` against the operation's bounds and returns the page
/// size to use.
pub(crate) fn page_size(
    max_results: Option<i64>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match max_results {
        None => Ok(default),
        Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "maxResults must be between 1 and {max}."
        ))),
    }
}

pub(crate) fn encode_token(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key.as_bytes())
}

/// The key a token resumes after; it must lie under `prefix`.
pub(crate) fn decode_token(token: Option<&str>, prefix: &str) -> Result<Option<String>, ApiError> {
    let Some(token) = token else { return Ok(None) };
    let invalid = || ApiError::invalid_parameter("Invalid nextToken provided.");
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| invalid())?;
    let key = String::from_utf8(bytes).map_err(|_| invalid())?;
    if key.starts_with(prefix) {
        Ok(Some(key))
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_scope() {
        let t = encode_token("ecs/cluster/a");
        assert_eq!(
            decode_token(Some(&t), "ecs/cluster/").ok(),
            Some(Some("ecs/cluster/a".into()))
        );
        assert!(decode_token(Some(&t), "ecs/family/").is_err());
        assert!(decode_token(Some("!!"), "ecs/").is_err());
        assert_eq!(decode_token(None, "ecs/").ok(), Some(None));
    }

    proptest::proptest! {
        /// Paging through a filtered prefix returns every kept item once, in
        /// order, and never hands out a token that leads to an empty page.
        #[test]
        fn pages_cover_everything_once(
            keys in proptest::collection::btree_set("[a-e]{1,3}", 0..60),
            keep_mod in 1usize..4,
            limit in 1usize..7,
        ) {
            use berth_store::{MemoryStore, Op, Txn};
            let store = MemoryStore::new();
            let ops = keys.iter().map(|k| Op::Put { key: format!("p/{k}"), value: k.len().to_string().into_bytes() }).collect();
            store.txn(Txn { compares: vec![], success: ops, failure: vec![] }).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            // Unrelated keys around the prefix must never leak in.
            store.txn(Txn { compares: vec![], success: vec![
                Op::Put { key: "o/x".into(), value: vec![] }, Op::Put { key: "q/x".into(), value: vec![] }], failure: vec![] })
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let want: Vec<String> = keys.iter().filter(|k| k.len() % keep_mod == 0).cloned().collect();
            let mut got = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..100 {
                let after = decode_token(token.as_deref(), "p/").map_err(|e| proptest::test_runner::TestCaseError::fail(e.message))?;
                let (items, next) = page(&store, "p/", after, limit, |kv| {
                    let k = kv.key.trim_start_matches("p/").to_string();
                    Ok((k.len() % keep_mod == 0).then_some(k))
                }).map_err(|e| proptest::test_runner::TestCaseError::fail(e.message))?;
                proptest::prop_assert!(items.len() <= limit);
                proptest::prop_assert!(next.is_none() || items.len() == limit);
                let done = next.is_none();
                proptest::prop_assert!(done || !items.is_empty());
                got.extend(items);
                token = next;
                if done { break; }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(page_size(None, 100, 100).ok(), Some(100));
        assert_eq!(page_size(Some(5), 100, 100).ok(), Some(5));
        assert!(page_size(Some(0), 100, 100).is_err());
        assert!(page_size(Some(101), 100, 100).is_err());
    }
}
