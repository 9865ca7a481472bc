//! Transaction throughput of the durable SQLite store with 1 and 32
//! concurrent writers. With group commit, 32 writers share fsyncs, so their
//! throughput should be many times the single writer's.
//!
//! Each transaction looks like a RegisterTaskDefinition: a CAS on a family
//! key plus a put of a ~2 KiB task definition.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_store::{Compare, MemoryStore, Op, SqliteStore, Store, Txn};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn register(store: &dyn Store, writer: usize, seq: u64, body: &[u8]) {
    let family = format!("bench/families/{writer}");
    let revision = store.get(&family).unwrap().map_or(0, |kv| kv.mod_revision);
    let r = store
        .txn(Txn {
            compares: vec![Compare::ModRevision {
                key: family.clone(),
                revision,
            }],
            success: vec![
                Op::Put {
                    key: family,
                    value: seq.to_string().into_bytes(),
                },
                Op::Put {
                    key: format!("bench/taskdefs/{writer}/{seq:010}"),
                    value: body.to_vec(),
                },
            ],
            failure: vec![],
        })
        .unwrap();
    assert!(r.succeeded);
}

fn run(store: &Arc<dyn Store>, writers: usize, iters: u64, seq: &Arc<AtomicU64>) -> Duration {
    let body = Arc::new(vec![b'x'; 2048]);
    let per_writer = iters.div_ceil(writers as u64);
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(store);
            let seq = Arc::clone(seq);
            let body = Arc::clone(&body);
            std::thread::spawn(move || {
                for _ in 0..per_writer {
                    register(&*store, w, seq.fetch_add(1, Ordering::Relaxed), &body);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Normalise to the requested iteration count.
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_writer * writers as u64) as f64)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("txn");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for writers in [1usize, 32] {
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join(format!("w{writers}.db"))).unwrap());
        let seq = Arc::new(AtomicU64::new(0));
        group.bench_function(format!("sqlite/{writers}_writers"), |b| {
            b.iter_custom(|iters| run(&sqlite, writers, iters, &seq))
        });
    }
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let seq = Arc::new(AtomicU64::new(0));
    group.bench_function("memory/1_writers", |b| {
        b.iter_custom(|iters| run(&memory, 1, iters, &seq))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
