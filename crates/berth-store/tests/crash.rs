//! Crash test: a child process commits transactions in a tight loop and is
//! killed with SIGKILL at random moments; after each kill the store must
//! open, its invariants must hold and every revision the child saw
//! acknowledged must be there.
//!
//! The child is this test binary itself, re-executed with
//! `BERTH_STORE_CRASH_CHILD` set and filtered to the `crash_child` test,
//! which does nothing when the variable is unset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use berth_store::{RangeRequest, SqliteStore, Store, Txn};
use common::{mod_rev, put};

const CHILD_ENV: &str = "BERTH_STORE_CRASH_CHILD";
const WRITERS: usize = 4;

fn number(s: &dyn Store, key: &str) -> (u64, i64) {
    match s.get(key).unwrap() {
        Some(kv) => (
            String::from_utf8(kv.value).unwrap().parse().unwrap(),
            kv.mod_revision,
        ),
        None => (0, 0),
    }
}

/// The child's body: increments `inv/counter` by CAS, keeping
/// `inv/sum = counter * (counter + 1) / 2` and one `inv/items/<n>` key per
/// increment, and prints `committed <revision> <n>` after each Ok.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(Path::new(&path)).unwrap());
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let s = Arc::clone(&store);
            thread::spawn(move || loop {
                let (n, rev) = number(&*s, "inv/counter");
                let (sum, _) = number(&*s, "inv/sum");
                let next = n + 1;
                let r = s
                    .txn(Txn {
                        compares: vec![mod_rev("inv/counter", rev)],
                        success: vec![
                            put("inv/counter", &next.to_string()),
                            put("inv/sum", &(sum + next).to_string()),
                            put(&format!("inv/items/{next:08}"), &next.to_string()),
                        ],
                        failure: vec![],
                    })
                    .unwrap();
                if r.succeeded {
                    println!("committed {} {next}", r.revision);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
}

fn random_below(limit: u64, salt: u64) -> u64 {
    RandomState::new().hash_one(salt) % limit
}

/// Checks the invariants and that each acknowledged `(revision, n)` is in
/// the store; returns the counter.
fn check(path: &Path, acked: &[(i64, u64)]) -> u64 {
    let s = SqliteStore::open(path).unwrap();
    let (n, counter_rev) = number(&s, "inv/counter");
    let (sum, sum_rev) = number(&s, "inv/sum");
    assert_eq!(counter_rev, sum_rev, "counter and sum written together");
    assert_eq!(sum, n * (n + 1) / 2, "sum matches counter {n}");
    let items = s
        .range(&RangeRequest {
            prefix: "inv/items/".into(),
            ..RangeRequest::default()
        })
        .unwrap();
    assert_eq!(items.kvs.len() as u64, n, "one item per increment");
    assert_eq!(items.revision, counter_rev, "the last txn set the counter");
    assert_eq!(
        s.revision().unwrap(),
        n as i64,
        "one revision per increment"
    );
    for &(rev, k) in acked {
        let item = s.get(&format!("inv/items/{k:08}")).unwrap();
        let item = item.unwrap_or_else(|| panic!("acknowledged item {k} (revision {rev}) lost"));
        assert_eq!(
            item.mod_revision, rev,
            "item {k} has its acknowledged revision"
        );
    }
    n
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let exe = std::env::current_exe().unwrap();
    let mut total_acked = 0;
    let mut last_counter = 0;
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                if words.next() != Some("committed") {
                    continue;
                }
                let rev: i64 = words.next().unwrap().parse().unwrap();
                let n: u64 = words.next().unwrap().parse().unwrap();
                if acked.is_empty() {
                    let _ = first_tx.send(());
                }
                acked.push((rev, n));
            }
            acked
        });
        // Most rounds kill mid-stream; every third may also hit the open.
        if round % 3 != 2 {
            first_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        }
        thread::sleep(Duration::from_millis(random_below(250, round)));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        let counter = check(&path, &acked);
        assert!(counter >= last_counter);
        if let Some(&(_, max_n)) = acked.iter().max() {
            assert!(counter >= max_n);
        }
        eprintln!("round {round}: {} acked, counter {counter}", acked.len());
        total_acked += acked.len();
        last_counter = counter;
    }
    assert!(total_acked > 0, "the child committed nothing");
}
