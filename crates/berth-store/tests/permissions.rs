#![allow(clippy::unwrap_used)]
//! The database and its WAL are readable by their owner only.

use std::os::unix::fs::PermissionsExt as _;

use berth_store::{Op, SqliteStore, Store, Txn};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn database_wal_and_lock_files_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // An existing database left world-readable by an older version is
    // narrowed too.
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store
        .txn(Txn {
            compares: vec![],
            success: vec![Op::Put {
                key: "k".into(),
                value: b"secret".to_vec(),
            }],
            failure: vec![],
        })
        .unwrap();
    for name in ["state.db", "state.db-wal", "state.db-shm", "state.db.lock"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
}
