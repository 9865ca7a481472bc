#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_control::{Caller, ManualClock, SystemClock};
use berth_store::MemoryStore;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::*;
use crate::manifest::OCI_MANIFEST;
use crate::RegistryConfig;

fn d(n: u8) -> Digest {
    Digest::of(&[n])
}

fn link(n: u8, linked_ms: i64, revision: Revision) -> LinkView {
    LinkView {
        digest: d(n),
        linked_ms: Some(linked_ms),
        revision,
    }
}

fn repo(epoch: Revision, referenced: &[u8], links: Vec<LinkView>) -> RepoView {
    RepoView {
        epoch_revision: epoch,
        referenced: Some(referenced.iter().map(|n| d(*n)).collect()),
        links,
    }
}

const NOW: i64 = 10_000_000;
const GRACE: i64 = 60_000;
const OLD: i64 = NOW - GRACE;
const YOUNG: i64 = NOW - GRACE + 1;

#[test]
fn plan_keeps_referenced_young_and_shared_blobs() {
    let mut snap = Snapshot {
        revision: 50,
        ..Snapshot::default()
    };
    // a: 1 referenced, 2 garbage, 3 young (a push in flight), 4 garbage
    // here but referenced by b.
    snap.repos.insert(
        "a".into(),
        repo(
            7,
            &[1],
            vec![
                link(1, OLD, 10),
                link(2, OLD, 11),
                link(3, YOUNG, 12),
                link(4, OLD, 13),
            ],
        ),
    );
    snap.repos
        .insert("b".into(), repo(8, &[4], vec![link(4, OLD, 14)]));
    let files: Vec<(Digest, i64)> = (1..=6).map(|n| (d(n), OLD)).collect();
    let mut files = files;
    files.push((d(7), YOUNG)); // a fresh upload not linked yet
    let p = plan(&snap, &files, NOW, GRACE);
    let unlinked: BTreeSet<(String, Digest)> = p
        .unlink
        .iter()
        .map(|u| (u.repo.clone(), u.digest.clone()))
        .collect();
    assert_eq!(
        unlinked,
        BTreeSet::from([("a".to_string(), d(2)), ("a".to_string(), d(4))])
    );
    let u2 = p.unlink.iter().find(|u| u.digest == d(2)).unwrap();
    assert_eq!((u2.link_revision, u2.epoch_revision), (11, 7));
    // 2: garbage everywhere; 5, 6: no link at all. 4 is still in b.
    let removed: BTreeSet<Digest> = p.remove.iter().cloned().collect();
    assert_eq!(removed, BTreeSet::from([d(2), d(5), d(6)]));
}

#[test]
fn plan_keeps_everything_of_a_repository_it_cannot_read() {
    let mut snap = Snapshot::default();
    snap.repos.insert(
        "x".into(),
        RepoView {
            epoch_revision: 1,
            referenced: None,
            links: vec![link(1, OLD, 2)],
        },
    );
    snap.repos.insert(
        "y".into(),
        repo(
            1,
            &[],
            vec![LinkView {
                digest: d(2),
                linked_ms: None,
                revision: 3,
            }],
        ),
    );
    let p = plan(&snap, &[(d(1), OLD), (d(2), OLD)], NOW, GRACE);
    assert!(p.unlink.is_empty());
    assert!(p.remove.is_empty());
}

/// Random snapshots and files; the plan's every decision is checked
/// against the rules, both ways (nothing live goes, all garbage goes).
#[test]
fn plan_properties_hold_on_random_snapshots() {
    for seed in 0..500u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let grace = rng.gen_range(0..5) * 1000;
        let mut snap = Snapshot {
            revision: 1000,
            ..Snapshot::default()
        };
        let repos = rng.gen_range(0..5);
        let mut rev = 1;
        for r in 0..repos {
            let referenced: Vec<u8> = (0..rng.gen_range(0..5))
                .map(|_| rng.gen_range(0..12))
                .collect();
            let mut view = repo(rng.gen_range(0..100), &referenced, Vec::new());
            if rng.gen_ratio(1, 10) {
                view.referenced = None;
            }
            let mut seen = BTreeSet::new();
            for _ in 0..rng.gen_range(0..8) {
                let n = rng.gen_range(0..12u8);
                if !seen.insert(n) {
                    continue;
                }
                rev += 1;
                view.links.push(LinkView {
                    digest: d(n),
                    linked_ms: if rng.gen_ratio(1, 20) {
                        None
                    } else {
                        Some(NOW - rng.gen_range(0..10) * 1000)
                    },
                    revision: rev,
                });
            }
            snap.repos.insert(format!("r{r}"), view);
        }
        let mut files: Vec<(Digest, i64)> = Vec::new();
        for n in 0..12u8 {
            if rng.gen_ratio(3, 4) {
                files.push((d(n), NOW - rng.gen_range(0..10) * 1000));
            }
        }
        let p = plan(&snap, &files, NOW, grace);
        let old = |t: i64| NOW - t >= grace;
        let mut kept_links: BTreeSet<Digest> = BTreeSet::new();
        for (name, view) in &snap.repos {
            for l in &view.links {
                let live = view
                    .referenced
                    .as_ref()
                    .is_none_or(|r| r.contains(&l.digest))
                    || l.linked_ms.is_none_or(|t| !old(t));
                let unlinked = p
                    .unlink
                    .iter()
                    .filter(|u| &u.repo == name && u.digest == l.digest)
                    .collect::<Vec<_>>();
                if live {
                    assert!(
                        unlinked.is_empty(),
                        "seed {seed}: live link {name} {} unlinked",
                        l.digest
                    );
                    kept_links.insert(l.digest.clone());
                } else {
                    assert_eq!(
                        unlinked.len(),
                        1,
                        "seed {seed}: garbage link {name} {} kept",
                        l.digest
                    );
                    assert_eq!(unlinked[0].link_revision, l.revision);
                    assert_eq!(unlinked[0].epoch_revision, view.epoch_revision);
                }
            }
        }
        assert!(p.unlink.iter().all(|u| snap.repos.contains_key(&u.repo)));
        let removed: BTreeSet<&Digest> = p.remove.iter().collect();
        for (digest, modified) in &files {
            let garbage = old(*modified) && !kept_links.contains(digest);
            assert_eq!(
                removed.contains(digest),
                garbage,
                "seed {seed}: file {digest}"
            );
        }
        assert!(p.remove.iter().all(|r| files.iter().any(|(f, _)| f == r)));
    }
}

#[test]
fn pins_hold_touch_and_sweep_sequence() {
    let clock = Arc::new(ManualClock::new(NOW));
    let pins = BlobPins::new(clock.clone());
    let sweep = pins.begin_sweep();
    let cutoff = NOW - GRACE;
    let idle = |pins: &BlobPins, sweep, cutoff, dg: &Digest| {
        pins.with_idle(&[dg], sweep, cutoff, |i| Ok(i.len() == 1))
            .unwrap()
    };
    assert!(idle(&pins, sweep, cutoff, &d(1)));
    {
        let _h = pins.hold(&d(1));
        assert!(
            !idle(&pins, sweep, i64::MAX, &d(1)),
            "a held digest is never idle"
        );
    }
    // Released after the sweep began: skipped by that sweep even with no
    // grace at all, idle for the next one once the grace has passed.
    assert!(!idle(&pins, sweep, i64::MAX, &d(1)));
    clock.advance(GRACE + 1);
    let next = pins.begin_sweep();
    assert!(!idle(&pins, next, clock.now_millis() - GRACE - 1, &d(1)));
    assert!(idle(&pins, next, clock.now_millis() - GRACE, &d(1)));
    // A touch counts only when the check finds the blob.
    let third = pins.begin_sweep();
    pins.touch_if(&d(2), || Ok(None::<()>)).unwrap();
    assert!(idle(&pins, third, i64::MAX, &d(2)));
    pins.touch_if(&d(2), || Ok(Some(()))).unwrap();
    let fourth = pins.begin_sweep();
    assert!(!idle(&pins, third, i64::MAX, &d(2)));
    assert!(idle(&pins, fourth, i64::MAX, &d(2)));
    pins.prune(fourth, NOW + 10 * GRACE);
    assert!(pins.stripes.iter().all(|s| s.lock().unwrap().is_empty()));
}

// ------------------------------------------------------------------------
// The registry end to end, in process

struct Fx {
    _dir: tempfile::TempDir,
    reg: Arc<Registry>,
}

fn caller() -> Caller {
    Caller::root("arn:aws:iam::000000000000:root", "AKIDTEST")
}

fn fixture(clock: Arc<dyn Clock>) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(
        Arc::new(MemoryStore::new()),
        clock,
        RegistryConfig {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            data_dir: dir.path().to_path_buf(),
            endpoint: "127.0.0.1:9480".into(),
        },
        Arc::new(|_: &str| true),
    )
    .unwrap();
    Fx {
        _dir: dir,
        reg: Arc::new(reg),
    }
}

impl Fx {
    fn create(&self, name: &str) {
        self.reg
            .ecr(
                "CreateRepository",
                format!(r#"{{"repositoryName":"{name}"}}"#).as_bytes(),
                &caller(),
            )
            .unwrap();
    }

    fn upload(&self, repo: &str, bytes: &[u8]) -> Result<Digest, RegistryError> {
        upload(&self.reg, repo, bytes)
    }

    fn on_disk(&self, digest: &Digest) -> bool {
        self.reg.blobs.path(digest).exists()
    }
}

fn upload(reg: &Registry, repo: &str, bytes: &[u8]) -> Result<Digest, RegistryError> {
    let id = reg
        .uploads
        .start(&reg.blobs, repo, reg.clock.now_millis())?;
    let handle = reg.uploads.get(&id, repo)?;
    let mut up = handle.blocking_lock();
    up.append_bytes(bytes, reg.clock.now_millis())?;
    let digest = up.digest();
    let res = reg.commit_blob(repo, up.path(), &digest, &digest, up.offset);
    drop(up);
    reg.uploads.cancel(&id);
    res.map(|()| digest)
}

fn manifest(config: &Digest, layers: &[(&Digest, usize)]) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|(l, size)| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l}","size":{size}}}"#)
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{}]}}"#,
        layers.join(",")
    )
    .into_bytes()
}

#[test]
fn deleted_images_lose_their_blobs_and_nothing_else() {
    let clock = Arc::new(ManualClock::new(SystemClock.now_millis()));
    let fx = fixture(clock.clone());
    fx.create("app");
    fx.create("other");
    let cfg = fx.upload("app", b"{}").unwrap();
    let shared = fx.upload("app", b"shared layer").unwrap();
    let only_a = fx.upload("app", b"only in a").unwrap();
    let only_b = fx.upload("app", b"only in b").unwrap();
    let a = manifest(&cfg, &[(&shared, 12), (&only_a, 9)]);
    let b = manifest(&cfg, &[(&shared, 12), (&only_b, 9)]);
    let pa = fx
        .reg
        .put_manifest("app", &a, Some(OCI_MANIFEST), Some("a"), None)
        .unwrap();
    fx.reg
        .put_manifest("app", &b, Some(OCI_MANIFEST), Some("b"), None)
        .unwrap();
    // `other` has a copy of only_a, mounted, and no image.
    assert!(fx.reg.mount_blob("other", "app", &only_a).unwrap());

    // Nothing is garbage yet, and young garbage is not collected.
    fx.reg.delete_image("app", &pa.digest.to_string()).unwrap();
    let r = fx.reg.collect_garbage(Duration::from_secs(3600)).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 0));

    clock.advance(2 * 3600 * 1000);
    let fresh = fx.upload("app", b"uploaded, no manifest yet").unwrap();
    let r = fx.reg.collect_garbage(Duration::from_secs(3600)).unwrap();
    // only_a goes from both repositories; the rest stays.
    assert_eq!(r.links_removed, 2, "{r:?}");
    assert_eq!(r.blobs_removed, 1, "{r:?}");
    assert!(!fx.on_disk(&only_a));
    assert_eq!(fx.reg.blob_available("app", &only_a).unwrap(), None);
    assert_eq!(fx.reg.blob_available("other", &only_a).unwrap(), None);
    for kept in [&cfg, &shared, &only_b, &fresh] {
        assert!(fx.on_disk(kept), "{kept}");
        assert!(
            fx.reg.blob_available("app", kept).unwrap().is_some(),
            "{kept}"
        );
    }
    // A manifest naming the collected blob is refused, not stored broken.
    assert!(matches!(
        fx.reg
            .put_manifest("app", &a, Some(OCI_MANIFEST), Some("a"), None),
        Err(RegistryError::BlobsUnknown(_))
    ));
    // Pushing it again brings it back.
    assert_eq!(fx.upload("app", b"only in a").unwrap(), only_a);
    fx.reg
        .put_manifest("app", &a, Some(OCI_MANIFEST), Some("a"), None)
        .unwrap();
    assert!(fx.on_disk(&only_a));
}

#[test]
fn a_forced_repository_delete_frees_its_blobs_once_nothing_else_needs_them() {
    let clock = Arc::new(ManualClock::new(SystemClock.now_millis()));
    let fx = fixture(clock.clone());
    fx.create("gone");
    fx.create("stays");
    let cfg = fx.upload("gone", b"{}").unwrap();
    let mine = fx.upload("gone", b"mine").unwrap();
    fx.reg
        .put_manifest(
            "gone",
            &manifest(&cfg, &[(&mine, 4)]),
            Some(OCI_MANIFEST),
            Some("t"),
            None,
        )
        .unwrap();
    let cfg2 = fx.upload("stays", b"{}").unwrap();
    assert_eq!(cfg, cfg2);
    fx.reg
        .put_manifest(
            "stays",
            &manifest(&cfg, &[]),
            Some(OCI_MANIFEST),
            Some("t"),
            None,
        )
        .unwrap();
    fx.reg
        .ecr(
            "DeleteRepository",
            br#"{"repositoryName":"gone","force":true}"#,
            &caller(),
        )
        .unwrap();
    clock.advance(2 * 3600 * 1000);
    let r = fx.reg.collect_garbage(Duration::from_secs(3600)).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 1), "{r:?}");
    assert!(!fx.on_disk(&mine));
    assert!(fx.on_disk(&cfg));
}

#[test]
fn a_sweep_skips_what_a_client_was_just_told_exists() {
    let clock = Arc::new(ManualClock::new(SystemClock.now_millis()));
    let fx = fixture(clock.clone());
    fx.create("app");
    let blob = fx.upload("app", b"layer").unwrap();
    clock.advance(2 * 3600 * 1000);
    // HEAD: found, so the client will skip the upload and name it.
    assert!(fx.reg.blob_available("app", &blob).unwrap().is_some());
    let r = fx.reg.collect_garbage(Duration::from_secs(3600)).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 0));
    // A hold taken before the sweep and not yet released also saves it,
    // even with no grace period at all.
    let hold = fx.reg.pins.hold(&blob);
    let r = fx.reg.collect_garbage(Duration::ZERO).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 0));
    drop(hold);
    clock.advance(2 * 3600 * 1000);
    let r = fx.reg.collect_garbage(Duration::from_secs(3600)).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (1, 1));
}

#[test]
fn a_link_committed_after_the_snapshot_fails_the_guard() {
    let clock = Arc::new(ManualClock::new(SystemClock.now_millis()));
    let fx = fixture(clock.clone());
    fx.create("app");
    let cfg = fx.upload("app", b"{}").unwrap();
    clock.advance(2 * 3600 * 1000);
    let page = fx
        .reg
        .store
        .range(&RangeRequest {
            prefix: keys::ROOT.into(),
            start_after: None,
            limit: 0,
        })
        .unwrap();
    let snap = Snapshot::from_kvs(&page.kvs, page.revision);
    let p = plan(&snap, &[], clock.now_millis(), 1000);
    assert_eq!(p.unlink.len(), 1);
    // A manifest push lands between the snapshot and the deletion.
    fx.reg
        .put_manifest(
            "app",
            &manifest(&cfg, &[]),
            Some(OCI_MANIFEST),
            Some("t"),
            None,
        )
        .unwrap();
    let u = &p.unlink[0];
    let res = fx
        .reg
        .store
        .txn(Txn {
            compares: vec![
                Compare::ModRevision {
                    key: keys::repo_epoch("app"),
                    revision: u.epoch_revision,
                },
                Compare::ModRevision {
                    key: keys::layer("app", &u.digest.to_string()),
                    revision: u.link_revision,
                },
            ],
            success: vec![Op::Delete {
                key: keys::layer("app", &u.digest.to_string()),
            }],
            failure: Vec::new(),
        })
        .unwrap();
    assert!(!res.succeeded);
}

/// Pushers (HEAD, upload what is missing, push the manifest, retry on
/// BLOB_UNKNOWN), a deleter and a collector with no grace period at all
/// run at once. Whatever interleaving happens, every image in the store
/// has every blob linked and on disk with the right bytes.
#[test]
fn concurrent_pushes_deletes_and_sweeps_never_lose_a_blob() {
    let fx = fixture(Arc::new(SystemClock));
    let repos = ["ra", "rb", "rc/dd"];
    for r in repos {
        fx.create(r);
    }
    let contents: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("layer content {i}").into_bytes())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicUsize::new(0));
    let sweeps = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (reg, contents, pushed) = (fx.reg.clone(), &contents, pushed.clone());
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                for i in 0..60 {
                    let repo = repos[rng.gen_range(0..repos.len())];
                    let picks: Vec<&Vec<u8>> = (0..rng.gen_range(1..4))
                        .map(|_| &contents[rng.gen_range(0..contents.len())])
                        .collect();
                    for _attempt in 0..50 {
                        let mut layers = Vec::new();
                        for bytes in picks
                            .iter()
                            .copied()
                            .chain(std::iter::once(&b"{}".to_vec()))
                        {
                            let digest = Digest::of(bytes);
                            if reg.blob_available(repo, &digest).unwrap().is_none() {
                                upload(&reg, repo, bytes).unwrap();
                            }
                            layers.push((digest, bytes.len()));
                        }
                        let cfg = layers.pop().unwrap().0;
                        let refs: Vec<(&Digest, usize)> =
                            layers.iter().map(|(d, n)| (d, *n)).collect();
                        let body = manifest(&cfg, &refs);
                        match reg.put_manifest(
                            repo,
                            &body,
                            Some(OCI_MANIFEST),
                            Some(&format!("t{t}-{i}")),
                            None,
                        ) {
                            Ok(_) => {
                                pushed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(RegistryError::BlobsUnknown(_)) => continue,
                            Err(e) => panic!("push failed: {e}"),
                        }
                    }
                }
            });
        }
        {
            let (reg, stop) = (fx.reg.clone(), stop.clone());
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(99);
                while !stop.load(Ordering::Relaxed) {
                    let repo = repos[rng.gen_range(0..repos.len())];
                    let images = reg.images(repo).unwrap();
                    if images.len() > 3 {
                        let victim = &images[rng.gen_range(0..images.len())];
                        let _ = reg.delete_image(repo, &victim.digest);
                    }
                    std::thread::yield_now();
                }
            });
        }
        {
            let (reg, stop, sweeps) = (fx.reg.clone(), stop.clone(), sweeps.clone());
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    reg.collect_garbage(Duration::ZERO).unwrap();
                    sweeps.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Stop the deleter and the collector once the pushers are done.
        let watcher_pushed = pushed.clone();
        let target = 3 * 60;
        s.spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while watcher_pushed.load(Ordering::Relaxed) < target
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert!(pushed.load(Ordering::Relaxed) > 0);
    assert!(sweeps.load(Ordering::Relaxed) > 0);
    let check = |fx: &Fx| {
        for repo in repos {
            for img in fx.reg.images(repo).unwrap() {
                let parsed =
                    manifest::parse(img.manifest.as_bytes(), Some(&img.media_type)).unwrap();
                for blob in parsed.required_blobs() {
                    assert!(
                        fx.reg.layer(repo, &blob).unwrap().is_some(),
                        "{repo} {blob} unlinked"
                    );
                    let bytes = std::fs::read(fx.reg.blobs.path(&blob)).expect("blob file missing");
                    assert_eq!(Digest::of(&bytes), blob);
                }
            }
        }
    };
    check(&fx);
    // Past the millisecond of the last touch, one more sweep with everything quiet changes nothing for the images,
    // and leaves exactly the blobs they need.
    std::thread::sleep(Duration::from_millis(20));
    fx.reg.collect_garbage(Duration::ZERO).unwrap();
    check(&fx);
    let needed: BTreeSet<Digest> = repos
        .iter()
        .flat_map(|r| fx.reg.images(r).unwrap())
        .flat_map(|i| {
            manifest::parse(i.manifest.as_bytes(), Some(&i.media_type))
                .unwrap()
                .required_blobs()
        })
        .collect();
    let on_disk: BTreeSet<Digest> = fx
        .reg
        .blobs
        .list()
        .unwrap()
        .into_iter()
        .map(|b| b.digest)
        .collect();
    assert_eq!(on_disk, needed);
}

// ------------------------------------------------------------------------
// The interleavings of the module doc, one by one: a sweep is decided,
// something happens, then the sweep is applied. The clock runs hours ahead
// of the files' modification times, so only the guards and pins (not
// mtimes) can save a blob.

fn ahead() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        SystemClock.now_millis() + 10 * 3600 * 1000,
    ))
}

#[test]
fn an_upload_between_the_snapshot_and_the_removal_keeps_its_blob() {
    let clock = ahead();
    let fx = fixture(clock.clone());
    fx.create("app");
    let blob = fx.upload("app", b"layer").unwrap();
    // The blob becomes garbage: its link goes (as by a DELETE of the blob).
    fx.reg.unlink_layer("app", &blob).unwrap();
    clock.advance(2 * 3600 * 1000);
    let sweep = fx.reg.prepare_sweep(Duration::ZERO).unwrap();
    assert_eq!(sweep.plan.remove, vec![blob.clone()]);
    // A push of the same bytes lands now: renamed over, linked.
    assert_eq!(fx.upload("app", b"layer").unwrap(), blob);
    let r = fx.reg.apply_sweep(sweep).unwrap();
    assert_eq!((r.blobs_removed, r.skipped), (0, 1));
    assert!(fx.on_disk(&blob));
    assert!(fx.reg.blob_available("app", &blob).unwrap().is_some());
}

#[test]
fn a_mount_between_the_snapshot_and_the_removal_keeps_its_blob() {
    let clock = ahead();
    let fx = fixture(clock.clone());
    fx.create("src");
    fx.create("dst");
    let blob = fx.upload("src", b"layer").unwrap();
    clock.advance(2 * 3600 * 1000);
    // The source link is old and unreferenced: the plan unlinks it and
    // removes the file.
    let sweep = fx.reg.prepare_sweep(Duration::ZERO).unwrap();
    assert_eq!(sweep.plan.unlink.len(), 1);
    assert_eq!(sweep.plan.remove, vec![blob.clone()]);
    assert!(fx.reg.mount_blob("dst", "src", &blob).unwrap());
    let r = fx.reg.apply_sweep(sweep).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 0));
    assert!(fx.on_disk(&blob));
    assert!(fx.reg.blob_available("dst", &blob).unwrap().is_some());
}

#[test]
fn a_manifest_between_the_snapshot_and_the_unlink_keeps_its_blobs() {
    let clock = ahead();
    let fx = fixture(clock.clone());
    fx.create("app");
    let cfg = fx.upload("app", b"{}").unwrap();
    let layer = fx.upload("app", b"layer").unwrap();
    clock.advance(2 * 3600 * 1000);
    let sweep = fx.reg.prepare_sweep(Duration::ZERO).unwrap();
    assert_eq!(sweep.plan.unlink.len(), 2);
    // Pushed without a HEAD first (the client trusts its cache).
    fx.reg
        .put_manifest(
            "app",
            &manifest(&cfg, &[(&layer, 5)]),
            Some(OCI_MANIFEST),
            Some("t"),
            None,
        )
        .unwrap();
    let r = fx.reg.apply_sweep(sweep).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 0));
    for b in [&cfg, &layer] {
        assert!(fx.on_disk(b));
        assert!(fx.reg.layer("app", b).unwrap().is_some());
    }
}

#[test]
fn a_head_between_the_snapshot_and_the_unlink_keeps_the_blob_for_the_grace_period() {
    let clock = ahead();
    let fx = fixture(clock.clone());
    fx.create("app");
    let layer = fx.upload("app", b"layer").unwrap();
    clock.advance(2 * 3600 * 1000);
    let sweep = fx.reg.prepare_sweep(Duration::from_secs(60)).unwrap();
    assert_eq!(sweep.plan.unlink.len(), 1);
    assert!(fx.reg.blob_available("app", &layer).unwrap().is_some());
    let r = fx.reg.apply_sweep(sweep).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 0));
    // Past the grace period, with no manifest naming it, it goes.
    clock.advance(61_000);
    let r = fx.reg.collect_garbage(Duration::from_secs(60)).unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (1, 1));
    assert_eq!(fx.reg.blob_available("app", &layer).unwrap(), None);
}
