//! The store's semantics, checked against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::thread;

use berth_store::{Compare, Op, RangeRequest, StoreError, StoreOptions, Txn};
use common::{brief, del, drain, mod_rev, put, write, Maker};

/// Runs each listed test function once per backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $name() { super::$name(super::common::memory) } )*
        }
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::common::sqlite) } )*
        }
    };
}

on_every_backend!(
    empty_store,
    cas_mod_revision,
    cas_version_exists_missing,
    failure_branch_and_noop_revision,
    revision_bookkeeping,
    delete_then_recreate,
    delete_prefix,
    range_pagination,
    invalid_txn_is_rejected,
    watch_replay_then_live,
    watch_hands_over_without_gap_under_load,
    watch_from_compacted_revision,
    a_lagging_watcher_is_cancelled_and_told_to_relist,
    concurrent_cas_increments_lose_nothing,
);

fn store(make: Maker) -> common::Fixture {
    make(StoreOptions::default())
}

fn empty_store(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    assert_eq!(s.revision().unwrap(), 0);
    assert_eq!(s.get("a").unwrap(), None);
    let all = s.range(&RangeRequest::default()).unwrap();
    assert!(all.kvs.is_empty());
    assert!(!all.more);
    assert_eq!(all.revision, 0);
}

fn cas_mod_revision(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    let create = Txn {
        compares: vec![mod_rev("a", 0)],
        success: vec![put("a", "1")],
        failure: vec![],
    };
    let r = s.txn(create.clone()).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 1);
    // 0 means absent: a second create fails and writes nothing.
    let r = s.txn(create).unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.revision, 1);
    // The right mod revision wins, a stale one loses.
    let update = |rev| Txn {
        compares: vec![mod_rev("a", rev)],
        success: vec![put("a", "2")],
        failure: vec![],
    };
    assert!(s.txn(update(1)).unwrap().succeeded);
    let r = s.txn(update(1)).unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.revision, 2);
    assert_eq!(s.get("a").unwrap().unwrap().value, b"2");
    // Several compares must all hold.
    let r = s
        .txn(Txn {
            compares: vec![mod_rev("a", 2), mod_rev("b", 1)],
            success: vec![put("c", "x")],
            failure: vec![],
        })
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(s.get("c").unwrap(), None);
}

fn cas_version_exists_missing(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    let version = |v| Compare::Version {
        key: "k".into(),
        version: v,
    };
    let exists = Compare::Exists { key: "k".into() };
    let missing = Compare::Missing { key: "k".into() };
    let check = |c: Compare| {
        s.txn(Txn {
            compares: vec![c],
            ..Txn::default()
        })
        .unwrap()
        .succeeded
    };
    assert!(check(version(0)));
    assert!(check(missing.clone()));
    assert!(!check(exists.clone()));
    assert!(!check(version(1)));
    write(s, vec![put("k", "a")]);
    write(s, vec![put("k", "b")]);
    assert!(check(version(2)));
    assert!(!check(version(0)));
    assert!(check(exists.clone()));
    assert!(!check(missing.clone()));
    write(s, vec![del("k")]);
    assert!(check(version(0)));
    assert!(check(missing));
    assert!(!check(exists));
}

fn failure_branch_and_noop_revision(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    let r = s
        .txn(Txn {
            compares: vec![Compare::Exists { key: "x".into() }],
            success: vec![put("s", "1")],
            failure: vec![put("f", "1")],
        })
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.revision, 1);
    assert!(s.get("s").unwrap().is_none());
    assert_eq!(s.get("f").unwrap().unwrap().mod_revision, 1);
    // Deleting what does not exist changes nothing: no new revision.
    let r = write(
        s,
        vec![
            del("nope"),
            Op::DeletePrefix {
                prefix: "zz".into(),
            },
        ],
    );
    assert_eq!(r.revision, 1);
    let r = s.txn(Txn::default()).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 1);
    assert_eq!(s.revision().unwrap(), 1);
}

fn revision_bookkeeping(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    let r = write(s, vec![put("a", "1"), put("b", "1")]);
    assert_eq!(r.revision, 1);
    write(s, vec![put("a", "2")]);
    write(s, vec![put("c", "1")]);
    let r = write(s, vec![put("a", "3")]);
    assert_eq!(r.revision, 4);
    let a = s.get("a").unwrap().unwrap();
    assert_eq!(
        (
            a.create_revision,
            a.mod_revision,
            a.version,
            a.value.as_slice()
        ),
        (1, 4, 3, &b"3"[..])
    );
    let b = s.get("b").unwrap().unwrap();
    assert_eq!((b.create_revision, b.mod_revision, b.version), (1, 1, 1));
    let c = s.get("c").unwrap().unwrap();
    assert_eq!((c.create_revision, c.mod_revision, c.version), (3, 3, 1));
    assert_eq!(s.revision().unwrap(), 4);
}

fn delete_then_recreate(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    write(s, vec![put("a", "1")]);
    write(s, vec![put("a", "2")]);
    let r = write(s, vec![del("a")]);
    assert_eq!(r.revision, 3);
    assert_eq!(s.get("a").unwrap(), None);
    write(s, vec![put("a", "new")]);
    let a = s.get("a").unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (4, 4, 1));
    let mut rx = s.watch("a", 0).unwrap();
    let events: Vec<_> = drain(&mut rx).iter().map(brief).collect();
    assert_eq!(
        events,
        vec![
            ("put", "a".into(), "1".into(), 1),
            ("put", "a".into(), "2".into(), 2),
            ("delete", "a".into(), "".into(), 3),
            ("put", "a".into(), "new".into(), 4),
        ]
    );
}

fn delete_prefix(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    write(
        s,
        vec![
            put("app/a", "1"),
            put("app/b", "1"),
            put("app/c/d", "1"),
            put("app", "1"),
            put("apple", "1"),
            put("b", "1"),
        ],
    );
    let r = write(
        s,
        vec![Op::DeletePrefix {
            prefix: "app/".into(),
        }],
    );
    assert_eq!(r.revision, 2);
    let keys: Vec<_> = s
        .range(&RangeRequest::default())
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, vec!["app", "apple", "b"]);
    let mut rx = s.watch("", 1).unwrap();
    let events: Vec<_> = drain(&mut rx).iter().map(brief).collect();
    assert_eq!(
        events,
        vec![
            ("delete", "app/a".into(), "".into(), 2),
            ("delete", "app/b".into(), "".into(), 2),
            ("delete", "app/c/d".into(), "".into(), 2),
        ]
    );
    // The empty prefix deletes everything.
    let r = write(
        s,
        vec![Op::DeletePrefix {
            prefix: String::new(),
        }],
    );
    assert_eq!(r.revision, 3);
    assert!(s.range(&RangeRequest::default()).unwrap().kvs.is_empty());
}

fn range_pagination(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    let mut ops: Vec<Op> = (0..10).map(|i| put(&format!("p/{i:02}"), "v")).collect();
    ops.extend([
        put("p", "out"),
        put("p0", "out"),
        put("o", "out"),
        put("q", "out"),
    ]);
    write(s, ops);
    write(s, vec![put("p/05", "v2")]);
    let mut seen = Vec::new();
    let mut start_after = None;
    let mut pages = 0;
    loop {
        let page = s
            .range(&RangeRequest {
                prefix: "p/".into(),
                start_after: start_after.clone(),
                limit: 3,
            })
            .unwrap();
        assert_eq!(page.revision, 2);
        pages += 1;
        assert!(page.kvs.len() <= 3);
        start_after = page.kvs.last().map(|kv| kv.key.clone());
        seen.extend(page.kvs.into_iter().map(|kv| kv.key));
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 4);
    let expected: Vec<String> = (0..10).map(|i| format!("p/{i:02}")).collect();
    assert_eq!(seen, expected);
    // A page that exactly fits has no more.
    let page = s
        .range(&RangeRequest {
            prefix: "p/".into(),
            start_after: Some("p/06".into()),
            limit: 3,
        })
        .unwrap();
    assert_eq!(page.kvs.len(), 3);
    assert!(!page.more);
    // limit 0 is unlimited; start_after below the prefix is harmless.
    let all = s
        .range(&RangeRequest {
            prefix: "p/".into(),
            start_after: Some("a".into()),
            limit: 0,
        })
        .unwrap();
    assert_eq!(all.kvs.len(), 10);
    assert!(!all.more);
    let v = &all.kvs[5];
    assert_eq!((v.key.as_str(), v.version, v.mod_revision), ("p/05", 2, 2));
    // start_after beyond the prefix gives nothing.
    let none = s
        .range(&RangeRequest {
            prefix: "p/".into(),
            start_after: Some("p0".into()),
            limit: 0,
        })
        .unwrap();
    assert!(none.kvs.is_empty());
    assert_eq!(s.range(&RangeRequest::default()).unwrap().kvs.len(), 14);
}

fn invalid_txn_is_rejected(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    write(s, vec![put("a", "1")]);
    let bad = [
        Txn {
            success: vec![put("a", "1"), put("a", "2")],
            ..Txn::default()
        },
        Txn {
            failure: vec![del("b"), put("b", "2")],
            ..Txn::default()
        },
        Txn {
            success: vec![
                Op::DeletePrefix {
                    prefix: "x/".into(),
                },
                put("x/1", "2"),
            ],
            ..Txn::default()
        },
        Txn {
            success: vec![put("", "2")],
            ..Txn::default()
        },
    ];
    for txn in bad {
        assert!(matches!(s.txn(txn), Err(StoreError::InvalidTxn(_))));
    }
    assert_eq!(s.revision().unwrap(), 1);
    assert_eq!(s.get("a").unwrap().unwrap().version, 1);
}

fn watch_replay_then_live(make: Maker) {
    let f = store(make);
    let s = &*f.store;
    write(s, vec![put("w/a", "1")]);
    write(s, vec![put("other", "1")]);
    write(s, vec![put("w/b", "1"), put("w/a", "2")]);
    let mut all = s.watch("w/", 0).unwrap();
    let mut recent = s.watch("w/", 2).unwrap();
    let mut future = s.watch("w/", 10).unwrap();
    let replayed: Vec<_> = drain(&mut all).iter().map(brief).collect();
    assert_eq!(
        replayed,
        vec![
            ("put", "w/a".into(), "1".into(), 1),
            ("put", "w/b".into(), "1".into(), 3),
            ("put", "w/a".into(), "2".into(), 3),
        ]
    );
    assert_eq!(drain(&mut recent).len(), 2);
    write(s, vec![put("other", "2")]);
    write(s, vec![del("w/a")]);
    let live: Vec<_> = drain(&mut all).iter().map(brief).collect();
    assert_eq!(live, vec![("delete", "w/a".into(), "".into(), 5)]);
    assert_eq!(drain(&mut recent).len(), 1);
    assert!(drain(&mut future).is_empty());
    let put_event = s.watch("w/b", 0).unwrap().try_recv().unwrap().unwrap();
    assert_eq!(put_event.kv.create_revision, 3);
    assert_eq!(put_event.kv.version, 1);
    // A dropped watcher does not disturb the others.
    drop(recent);
    for i in 0..6 {
        write(s, vec![put("w/c", &i.to_string())]);
    }
    assert!(drain(&mut future).iter().all(|e| e.kv.mod_revision > 10));
    assert_eq!(drain(&mut all).len(), 6);
}

/// Watches started while writers commit see every revision exactly once,
/// in order, from where they started.
fn watch_hands_over_without_gap_under_load(make: Maker) {
    let f = store(make);
    let s = Arc::clone(&f.store);
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 60;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                for i in 0..PER_WRITER {
                    write(&*s, vec![put(&format!("k/{w}"), &i.to_string())]);
                }
            })
        })
        .collect();
    let mut watchers = Vec::new();
    while watchers.len() < 20 {
        let after = s.revision().unwrap();
        watchers.push((after, s.watch("k/", (after - 3).max(0)).unwrap()));
        thread::yield_now();
    }
    for w in writers {
        w.join().unwrap();
    }
    let last = s.revision().unwrap();
    assert_eq!(last, (WRITERS * PER_WRITER) as i64);
    for (after, mut rx) in watchers {
        let from = (after - 3).max(0);
        let mut expected = from + 1;
        while expected <= last {
            let event = rx.blocking_recv().unwrap().unwrap();
            assert_eq!(event.kv.mod_revision, expected, "watch from {from}");
            expected += 1;
        }
        assert!(rx.try_recv().is_err());
    }
}

fn watch_from_compacted_revision(make: Maker) {
    let f = make(StoreOptions {
        history: 5,
        ..StoreOptions::default()
    });
    let s = &*f.store;
    for i in 0..20 {
        write(s, vec![put("c", &i.to_string())]);
    }
    // Events of revisions <= 15 are gone; 16..=20 remain.
    match s.watch("", 0) {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (1, 16));
        }
        other => panic!("expected compacted, got {other:?}"),
    }
    assert!(matches!(
        s.watch("c", 14),
        Err(StoreError::Compacted { .. })
    ));
    let mut rx = s.watch("c", 15).unwrap();
    let revs: Vec<_> = drain(&mut rx).iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, vec![16, 17, 18, 19, 20]);
    // The keys themselves are not compacted.
    assert_eq!(s.get("c").unwrap().unwrap().version, 20);
}

/// The overflow policy: a watcher that leaves more than `watch_buffer`
/// live events undelivered gets `WatchLagged` as its last item, while a
/// watcher that keeps up, and a new watch, see everything.
fn a_lagging_watcher_is_cancelled_and_told_to_relist(make: Maker) {
    let f = make(StoreOptions {
        watch_buffer: 4,
        ..StoreOptions::default()
    });
    let s = &*f.store;
    for i in 0..3 {
        write(s, vec![put("r", &i.to_string())]);
    }
    // Replayed history does not count against the buffer.
    let mut slow = s.watch("", 0).unwrap();
    let mut keeping_up = s.watch("", 0).unwrap();
    assert_eq!(drain(&mut keeping_up).len(), 3);
    for i in 0..10 {
        write(s, vec![put("l", &i.to_string())]);
        assert_eq!(drain(&mut keeping_up).len(), 1);
    }
    let mut items = Vec::new();
    while let Ok(item) = slow.try_recv() {
        items.push(item);
    }
    // The 3 replayed, the 4 the buffer holds, then the notice, and the
    // stream has ended.
    assert_eq!(items.len(), 8, "{items:?}");
    assert!(items[..7].iter().all(|i| i.is_ok()));
    assert!(matches!(items[7], Err(StoreError::WatchLagged)));
    assert!(slow.blocking_recv().is_none(), "nothing after the notice");
    // Re-listing and watching again from the listed revision resumes.
    let listed = s.revision().unwrap();
    let mut again = s.watch("", listed).unwrap();
    write(s, vec![put("after", "x")]);
    assert_eq!(drain(&mut again).len(), 1);
}

/// N threads increment one counter with read-modify-write CAS and retry;
/// the final value is the number of successful increments.
fn concurrent_cas_increments_lose_nothing(make: Maker) {
    let f = store(make);
    const THREADS: usize = 8;
    const INCREMENTS: usize = 40;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let s = Arc::clone(&f.store);
            thread::spawn(move || {
                let mut done = 0;
                let mut conflicts = 0;
                while done < INCREMENTS {
                    let (value, rev) = match s.get("counter").unwrap() {
                        Some(kv) => (
                            String::from_utf8(kv.value).unwrap().parse::<u64>().unwrap(),
                            kv.mod_revision,
                        ),
                        None => (0, 0),
                    };
                    let r = s
                        .txn(Txn {
                            compares: vec![mod_rev("counter", rev)],
                            success: vec![put("counter", &(value + 1).to_string())],
                            failure: vec![],
                        })
                        .unwrap();
                    if r.succeeded {
                        done += 1;
                    } else {
                        conflicts += 1;
                    }
                }
                (done, conflicts)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().unwrap().0;
    }
    let kv = f.store.get("counter").unwrap().unwrap();
    assert_eq!(String::from_utf8(kv.value).unwrap(), total.to_string());
    assert_eq!(kv.version as usize, THREADS * INCREMENTS);
    assert_eq!(f.store.revision().unwrap() as usize, THREADS * INCREMENTS);
}
