//! SQLite-only behaviour: what survives a close and reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use berth_store::{Op, RangeRequest, SqliteStore, Store, StoreError, StoreOptions};
use common::{del, drain, put, write};

#[test]
fn reopen_after_drop_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (before, events_before) = {
        let s = SqliteStore::open(&path).unwrap();
        for i in 0..40 {
            let mut ops = vec![put(&format!("k/{}", i % 7), &i.to_string())];
            if i % 5 == 0 {
                ops.push(del(&format!("k/{}", (i + 3) % 7)));
            }
            if i == 33 {
                ops = vec![Op::DeletePrefix {
                    prefix: "k/".into(),
                }];
            }
            write(&s, ops);
        }
        let mut rx = s.watch("", 0).unwrap();
        (s.range(&RangeRequest::default()).unwrap(), drain(&mut rx))
    };
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.range(&RangeRequest::default()).unwrap(), before);
    assert_eq!(s.revision().unwrap(), before.revision);
    let mut rx = s.watch("", 0).unwrap();
    assert_eq!(drain(&mut rx), events_before);
    let r = write(&s, vec![put("next", "1")]);
    assert_eq!(r.revision, before.revision + 1);
    assert_eq!(rx.try_recv().unwrap().unwrap().kv.key, "next");
}

#[test]
fn watch_streams_end_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("store.db")).unwrap();
    write(&s, vec![put("a", "1")]);
    let mut rx = s.watch("", 0).unwrap();
    drop(s);
    assert_eq!(rx.blocking_recv().unwrap().unwrap().kv.key, "a");
    assert!(rx.blocking_recv().is_none());
}

#[test]
fn compaction_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let s = SqliteStore::open_with(
            &path,
            StoreOptions {
                history: 5,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        for i in 0..10 {
            write(&s, vec![put("a", &i.to_string())]);
        }
    }
    let s = SqliteStore::open(&path).unwrap();
    assert!(matches!(
        s.watch("", 4),
        Err(StoreError::Compacted {
            requested: 5,
            oldest: 6
        })
    ));
    assert_eq!(drain(&mut s.watch("", 5).unwrap()).len(), 5);
}

#[test]
fn opening_something_that_is_not_a_store_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Backend(_))
    ));
}

#[test]
fn a_second_open_of_the_same_store_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path);
    assert!(
        matches!(second, Err(berth_store::StoreError::Backend(ref m)) if m.contains("already open"))
    );
    drop(first);
    assert!(SqliteStore::open(&path).is_ok());
}
