#![allow(clippy::unwrap_used)]
use berth_store::*;
use std::sync::Arc;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("p.db")).unwrap());
    let writers: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let t = std::time::Instant::now();
    let hs: Vec<_> = (0..writers)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..(6400 / writers) {
                    s.txn(Txn {
                        compares: vec![],
                        success: vec![
                            Op::Put {
                                key: format!("f/{w}"),
                                value: i.to_string().into_bytes(),
                            },
                            Op::Put {
                                key: format!("t/{w}/{i:010}"),
                                value: vec![b'x'; 2048],
                            },
                        ],
                        failure: vec![],
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    eprintln!(
        "writers={writers} rate={:.0}/s",
        6400.0 / t.elapsed().as_secs_f64()
    );
}
