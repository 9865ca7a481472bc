//! Property test: random transaction sequences give identical results and
//! identical final state on SqliteStore and MemoryStore.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use berth_store::{
    Compare, MemoryStore, Op, RangeRequest, SqliteStore, Store, StoreError, StoreOptions, Txn,
};
use common::drain;
use proptest::prelude::*;

const KEYS: &[&str] = &["a", "b", "d/1", "d/2", "d/3", "e"];
const PREFIXES: &[&str] = &["d/", "d", "", "z"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

fn compare() -> impl Strategy<Value = Compare> {
    prop_oneof![
        (key(), 0..10i64).prop_map(|(key, revision)| Compare::ModRevision { key, revision }),
        (key(), 0..4i64).prop_map(|(key, version)| Compare::Version { key, version }),
        key().prop_map(|key| Compare::Exists { key }),
        key().prop_map(|key| Compare::Missing { key }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), any::<u8>()).prop_map(|(key, v)| Op::Put { key, value: vec![v] }),
        2 => key().prop_map(|key| Op::Delete { key }),
        1 => prop::sample::select(PREFIXES).prop_map(|p| Op::DeletePrefix { prefix: p.into() }),
    ]
}

fn txn() -> impl Strategy<Value = Txn> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op(), 0..4),
        prop::collection::vec(op(), 0..3),
    )
        .prop_map(|(compares, success, failure)| Txn {
            compares,
            success,
            failure,
        })
}

/// A comparable form of a call's outcome.
fn outcome<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(StoreError::Compacted { requested, oldest }) => {
            format!("compacted {requested} {oldest}")
        }
        Err(StoreError::InvalidTxn(_)) => "invalid".into(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_and_memory_agree(txns in prop::collection::vec(txn(), 1..25)) {
        let options = StoreOptions { history: 6, ..StoreOptions::default() };
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open_with(dir.path().join("s.db"), options.clone()).unwrap();
        let memory = MemoryStore::with_options(options);
        let stores: [&dyn Store; 2] = [&sqlite, &memory];
        // A live watcher on each, started before anything happens.
        let mut live: Vec<_> = stores.iter().map(|s| s.watch("d/", 0).unwrap()).collect();
        for txn in txns {
            let results: Vec<_> = stores.iter().map(|s| outcome(s.txn(txn.clone()))).collect();
            prop_assert_eq!(&results[0], &results[1], "txn {:?}", txn);
        }
        let revision = sqlite.revision().unwrap();
        prop_assert_eq!(revision, memory.revision().unwrap());
        for prefix in PREFIXES {
            for limit in [0, 1, 2] {
                let req = RangeRequest { prefix: (*prefix).into(), start_after: Some("b".into()), limit };
                prop_assert_eq!(sqlite.range(&req).unwrap(), memory.range(&req).unwrap());
            }
            for after in 0..=revision + 1 {
                let replay: Vec<_> = stores
                    .iter()
                    .map(|s| outcome(s.watch(prefix, after).map(|mut rx| drain(&mut rx))))
                    .collect();
                prop_assert_eq!(&replay[0], &replay[1]);
            }
        }
        for key in KEYS {
            prop_assert_eq!(sqlite.get(key).unwrap(), memory.get(key).unwrap());
        }
        let live_events: Vec<_> = live.iter_mut().map(drain).collect();
        prop_assert_eq!(&live_events[0], &live_events[1]);
        // The live stream is the complete history of the prefix, in order.
        let revs: Vec<_> = live_events[0].iter().map(|e| e.kv.mod_revision).collect();
        prop_assert!(revs.windows(2).all(|w| w[0] <= w[1]));
    }
}
