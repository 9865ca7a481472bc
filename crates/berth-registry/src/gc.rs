//! Garbage collection of blobs no manifest needs any more.
//!
//! Blobs become garbage when the images naming them go (BatchDeleteImage,
//! a manifest DELETE, lifecycle expiry, a forced DeleteRepository). A
//! sweep is mark-and-sweep in two stages:
//!
//! 1. **Links.** A layer link `ecr/layer/<repo>/<digest>` is kept while an
//!    image of its repository references the blob (config or layer), or
//!    while the link is younger than the grace period (a push in flight:
//!    layers are pushed before their manifest). Other links are deleted.
//! 2. **Files.** A blob file is deleted when no kept link names it, in any
//!    repository, and its file is older than the grace period.
//!
//! The decision ([`plan`]) is a pure function of one snapshot: every key
//! under `ecr/`, read in one range at one store revision, so the images
//! and the links it compares are the same moment's. The effects
//! ([`Registry::collect_garbage`]) then apply it under guards that make a
//! stale decision fail instead of destroy.
//!
//! # Why a concurrent push cannot lose a blob
//!
//! Two invariants, which together say that every blob of every image is
//! on disk:
//!
//! - **(I1) An image's blobs are linked into its repository.** A manifest
//!   push reads the links it needs and commits with `Exists` guards on
//!   them, and rewrites `ecr/repo-epoch/<repo>`. A link deletion commits
//!   with guards on the epoch and on the link's mod revision, both as the
//!   snapshot read them. Either the push commits first (the epoch moved:
//!   the deletion fails, the link stays) or the deletion does (the push's
//!   guard fails; it retries, finds the link missing, and answers
//!   `BLOB_UNKNOWN`, so the client uploads again). With the epoch
//!   unchanged, the repository's images are a subset of the snapshot's,
//!   none of which references the link. A link re-created after the
//!   snapshot has a new mod revision and is not deleted.
//! - **(I2) A linked blob's file exists.** Links are created only under a
//!   *hold* on the digest ([`BlobPins::hold`]): an upload takes it before
//!   renaming its verified bytes into place and releases it after its
//!   link commits; a cross-repository mount holds it across its check and
//!   its link. Releasing stamps the pin with the sweep sequence number.
//!   A sweep draws its number *before* it reads the snapshot, and deletes
//!   a file only under the digest's pin lock, only if the digest is not
//!   held and was not released since the sweep began. So a link missing
//!   from the snapshot was either created before the snapshot (then the
//!   snapshot has it; it is kept, or deleted by this sweep under the
//!   guards above) or its hold is still held or was released after the
//!   sweep began (then the file is skipped). The file check and the
//!   unlink-then-remove happen under the same lock as the hold, so an
//!   upload either renames its file in after the removal (the new bytes
//!   stay) or holds the digest before the check (the file is skipped).
//!
//! Correctness rests on the sequence number and the locks, not on clocks.
//! The grace period is policy on top: how long a push may take between
//! its layers and its manifest, and how long a client that was told "the
//! blob exists" (a `HEAD` or `GET` of a blob, BatchCheckLayerAvailability,
//! a mount, an upload) may wait before naming it in a manifest. Each of
//! those answers *touches* the pin under the same lock, and a sweep skips
//! (neither unlinks nor removes) a digest touched within the grace period.
//! A client slower than the grace period gets `BLOB_UNKNOWN` on its
//! manifest and pushes the blob again; it never gets an image with a
//! missing blob. Pins live in memory: after a restart nothing is in flight
//! (abandoned uploads are cleared at start), and file modification times
//! still keep blobs written within the grace period.
//!
//! Interleavings, with `U` an upload of digest `d`, `M` a manifest push
//! naming `d`, `H` a client's `HEAD d`, and `G` a sweep:
//!
//! | order | outcome |
//! |---|---|
//! | `G` removes `d`'s file, then `U` renames and links | the new bytes stay, linked |
//! | `U` holds `d`, then `G` checks `d` | `G` skips `d` (held) |
//! | `U` links and releases, then `G` begins | the snapshot has the link: kept while young |
//! | `G` begins, `U` links and releases, `G` checks `d` | `G` skips `d` (released since it began) |
//! | `M` commits, then `G` unlinks | `G`'s epoch guard fails: nothing deleted in that repository |
//! | `G` unlinks, then `M` commits | `M` fails `BLOB_UNKNOWN`; the client uploads again |
//! | `H` answers 200, then `G` checks `d` | `G` skips `d` for the grace period |
//! | `G` unlinks `d`, then `H` | `H` answers 404; the client uploads |
//!
//! A registry's blobs live on one machine's disk, so one process serves
//! them and in-process pins see every upload.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_control::Clock;
use berth_store::{Compare, KeyValue, Op, RangeRequest, Revision, Txn};

use crate::digest::Digest;
use crate::error::RegistryError;
use crate::keys;
use crate::meta::{ImageRecord, LayerRecord};
use crate::{manifest, Registry};

/// Default time between sweeps.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);

/// Links deleted per transaction.
const UNLINK_BATCH: usize = 256;

// ------------------------------------------------------------------------
// The pure decision

/// A layer link as the snapshot shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkView {
    pub digest: Digest,
    /// When the blob was last linked (epoch milliseconds); `None` when the
    /// record did not decode, which keeps the link.
    pub linked_ms: Option<i64>,
    pub revision: Revision,
}

/// One repository in the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoView {
    /// Mod revision of `ecr/repo-epoch/<repo>` (0 when absent).
    pub epoch_revision: Revision,
    /// Blobs the repository's images reference; `None` when an image
    /// record or manifest could not be read, which keeps every link.
    pub referenced: Option<BTreeSet<Digest>>,
    pub links: Vec<LinkView>,
}

/// The registry's metadata at one store revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: Revision,
    pub repos: BTreeMap<String, RepoView>,
}

/// A link to delete, with the revisions its deletion is guarded on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlink {
    pub repo: String,
    pub digest: Digest,
    pub link_revision: Revision,
    pub epoch_revision: Revision,
}

/// What a sweep means to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub unlink: Vec<Unlink>,
    /// Blob files to remove. A file whose digest also appears in `unlink`
    /// may only go if every one of those deletions commits.
    pub remove: Vec<Digest>,
}

impl Snapshot {
    /// Builds the snapshot from every key under [`keys::ROOT`], read at
    /// `revision`.
    pub fn from_kvs(kvs: &[KeyValue], revision: Revision) -> Self {
        let mut repos: BTreeMap<String, RepoView> = BTreeMap::new();
        let fresh = || RepoView {
            referenced: Some(BTreeSet::new()),
            ..RepoView::default()
        };
        for kv in kvs {
            match keys::parse(&kv.key) {
                keys::Parsed::RepoEpoch { repo } => {
                    repos.entry(repo).or_insert_with(fresh).epoch_revision = kv.mod_revision;
                }
                keys::Parsed::Image { repo, .. } => {
                    let view = repos.entry(repo.clone()).or_insert_with(fresh);
                    let blobs = serde_json::from_slice::<ImageRecord>(&kv.value)
                        .ok()
                        .and_then(|img| {
                            manifest::parse(img.manifest.as_bytes(), Some(&img.media_type)).ok()
                        })
                        .map(|parsed| parsed.required_blobs());
                    match (blobs, view.referenced.as_mut()) {
                        (Some(blobs), Some(set)) => set.extend(blobs),
                        (None, _) => {
                            tracing::warn!(repository = %repo, key = %kv.key, "unreadable image record: keeping every blob of the repository");
                            view.referenced = None;
                        }
                        (Some(_), None) => {}
                    }
                }
                keys::Parsed::Layer { repo, digest } => {
                    // A key that is not a digest names no file; skip it.
                    let Ok(digest) = digest.parse::<Digest>() else {
                        continue;
                    };
                    let linked_ms = serde_json::from_slice::<LayerRecord>(&kv.value)
                        .ok()
                        .map(|l| (l.pushed_at * 1000.0) as i64);
                    repos
                        .entry(repo)
                        .or_insert_with(fresh)
                        .links
                        .push(LinkView {
                            digest,
                            linked_ms,
                            revision: kv.mod_revision,
                        });
                }
                keys::Parsed::Other => {}
            }
        }
        Snapshot { revision, repos }
    }
}

/// Decides a sweep: which links go and which files go, at `now_ms` with
/// a grace period of `grace_ms`. Pure.
pub fn plan(snapshot: &Snapshot, files: &[(Digest, i64)], now_ms: i64, grace_ms: i64) -> Plan {
    let old = |t: i64| now_ms.saturating_sub(t) >= grace_ms;
    let mut kept: HashSet<&Digest> = HashSet::new();
    let mut unlink = Vec::new();
    for (repo, view) in &snapshot.repos {
        for link in &view.links {
            let referenced = view
                .referenced
                .as_ref()
                .is_none_or(|r| r.contains(&link.digest));
            let young = link.linked_ms.is_none_or(|t| !old(t));
            if referenced || young {
                kept.insert(&link.digest);
            } else {
                unlink.push(Unlink {
                    repo: repo.clone(),
                    digest: link.digest.clone(),
                    link_revision: link.revision,
                    epoch_revision: view.epoch_revision,
                });
            }
        }
    }
    let mut remove: Vec<Digest> = files
        .iter()
        .filter(|(d, modified)| !kept.contains(d) && old(*modified))
        .map(|(d, _)| d.clone())
        .collect();
    remove.sort();
    remove.dedup();
    Plan { unlink, remove }
}

// ------------------------------------------------------------------------
// Pins: holds and touches of digests, shared by uploads and sweeps

const STRIPES: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
struct Pin {
    /// Holds not yet released.
    busy: u32,
    /// The sweep sequence number at the last touch or release.
    seq: u64,
    /// Clock time of the last touch or release.
    touched_ms: i64,
}

/// In-memory pins of digests (see the module doc). Striped locks: a
/// digest's stripe lock is what makes a sweep's check-and-remove atomic
/// with respect to holds and touches of that digest.
#[derive(Debug)]
pub struct BlobPins {
    stripes: Vec<Mutex<HashMap<Digest, Pin>>>,
    seq: AtomicU64,
    clock: Arc<dyn Clock>,
}

/// A hold on a digest: while it lives, no sweep removes the digest's
/// file or links; its release counts as a touch.
#[derive(Debug)]
pub struct BlobHold<'a> {
    pins: &'a BlobPins,
    digest: Digest,
}

impl Drop for BlobHold<'_> {
    fn drop(&mut self) {
        let seq = self.pins.seq.load(Ordering::SeqCst);
        let now = self.pins.clock.now_millis();
        let mut stripe = self.pins.lock(&self.digest);
        let pin = stripe.entry(self.digest.clone()).or_default();
        pin.busy = pin.busy.saturating_sub(1);
        pin.seq = pin.seq.max(seq);
        pin.touched_ms = pin.touched_ms.max(now);
    }
}

impl BlobHold<'_> {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl BlobPins {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            seq: AtomicU64::new(0),
            clock,
        }
    }

    fn stripe_of(digest: &Digest) -> usize {
        digest
            .hex()
            .get(..2)
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .unwrap_or(0)
            % STRIPES
    }

    fn lock_stripe(&self, i: usize) -> MutexGuard<'_, HashMap<Digest, Pin>> {
        // A poisoned stripe is still a consistent map: entries are updated
        // whole by code that does not panic.
        self.stripes[i % STRIPES]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self, digest: &Digest) -> MutexGuard<'_, HashMap<Digest, Pin>> {
        self.lock_stripe(Self::stripe_of(digest))
    }

    /// Holds `digest` until the returned guard drops. Blocking: waits for
    /// a sweep working on the digest.
    pub fn hold(&self, digest: &Digest) -> BlobHold<'_> {
        let now = self.clock.now_millis();
        let mut stripe = self.lock(digest);
        let pin = stripe.entry(digest.clone()).or_default();
        pin.busy += 1;
        pin.touched_ms = pin.touched_ms.max(now);
        BlobHold {
            pins: self,
            digest: digest.clone(),
        }
    }

    /// Runs `check` under the digest's lock and touches the digest when it
    /// answers `Some` (the blob was found and a client is told so).
    pub fn touch_if<T>(
        &self,
        digest: &Digest,
        check: impl FnOnce() -> Result<Option<T>, RegistryError>,
    ) -> Result<Option<T>, RegistryError> {
        let mut stripe = self.lock(digest);
        let found = check()?;
        if found.is_some() {
            let seq = self.seq.load(Ordering::SeqCst);
            let now = self.clock.now_millis();
            let pin = stripe.entry(digest.clone()).or_default();
            pin.seq = pin.seq.max(seq);
            pin.touched_ms = pin.touched_ms.max(now);
        }
        Ok(found)
    }

    /// Starts a sweep: its sequence number. Call before reading the
    /// snapshot.
    fn begin_sweep(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Runs `act` with the digests of `digests` that are idle for the
    /// sweep `sweep` (not held, not touched since it began nor at or after
    /// `cutoff_ms`), holding every one of their locks meanwhile.
    fn with_idle<T>(
        &self,
        digests: &[&Digest],
        sweep: u64,
        cutoff_ms: i64,
        act: impl FnOnce(&[&Digest]) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        // Locks in stripe order, each once: no deadlock with another sweep.
        let wanted: BTreeSet<usize> = digests.iter().map(|d| Self::stripe_of(d)).collect();
        let guards: BTreeMap<usize, MutexGuard<'_, HashMap<Digest, Pin>>> = wanted
            .into_iter()
            .map(|i| (i, self.lock_stripe(i)))
            .collect();
        let idle: Vec<&Digest> = digests
            .iter()
            .copied()
            .filter(|d| {
                guards
                    .get(&Self::stripe_of(d))
                    .and_then(|g| g.get(*d))
                    .is_none_or(|p| p.busy == 0 && p.seq < sweep && p.touched_ms < cutoff_ms)
            })
            .collect();
        act(&idle)
    }

    /// Forgets pins that no sweep from `sweep` on would honour.
    fn prune(&self, sweep: u64, cutoff_ms: i64) {
        for i in 0..STRIPES {
            self.lock_stripe(i)
                .retain(|_, p| p.busy > 0 || p.seq >= sweep || p.touched_ms >= cutoff_ms);
        }
    }
}

// ------------------------------------------------------------------------
// The effects

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The store revision the sweep decided on.
    pub revision: Revision,
    pub links_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    /// Links and files the plan named but a guard or a pin saved.
    pub skipped: usize,
}

/// A decided sweep, not yet applied.
#[derive(Debug)]
pub(crate) struct Sweep {
    seq: u64,
    cutoff_ms: i64,
    revision: Revision,
    plan: Plan,
}

impl Registry {
    /// One garbage collection sweep (see the module doc). Blocking.
    pub fn collect_garbage(&self, grace: Duration) -> Result<GcReport, RegistryError> {
        let sweep = self.prepare_sweep(grace)?;
        self.apply_sweep(sweep)
    }

    /// Draws the sweep's sequence number, reads the snapshot and the blob
    /// files, and plans.
    pub(crate) fn prepare_sweep(&self, grace: Duration) -> Result<Sweep, RegistryError> {
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let seq = self.pins.begin_sweep();
        let now = self.clock.now_millis();
        let page = self.store.range(&RangeRequest {
            prefix: keys::ROOT.to_string(),
            start_after: None,
            limit: 0, // everything, in one read: one revision
        })?;
        let snapshot = Snapshot::from_kvs(&page.kvs, page.revision);
        let files: Vec<(Digest, i64)> = self
            .blobs
            .list()?
            .into_iter()
            .map(|b| (b.digest, b.modified_ms))
            .collect();
        Ok(Sweep {
            seq,
            cutoff_ms: now.saturating_sub(grace_ms),
            revision: snapshot.revision,
            plan: plan(&snapshot, &files, now, grace_ms),
        })
    }

    /// Applies a planned sweep under the guards and pins.
    pub(crate) fn apply_sweep(&self, sweep: Sweep) -> Result<GcReport, RegistryError> {
        let Sweep {
            seq: sweep,
            cutoff_ms: cutoff,
            revision,
            plan,
        } = sweep;
        let mut report = GcReport {
            revision,
            ..GcReport::default()
        };

        // Stage 1: links, per repository, in guarded batches.
        let mut saved: HashSet<Digest> = HashSet::new();
        let mut by_repo: BTreeMap<&str, Vec<&Unlink>> = BTreeMap::new();
        for u in &plan.unlink {
            by_repo.entry(u.repo.as_str()).or_default().push(u);
        }
        for (repo, unlinks) in by_repo {
            for batch in unlinks.chunks(UNLINK_BATCH) {
                let digests: Vec<&Digest> = batch.iter().map(|u| &u.digest).collect();
                let removed = self.pins.with_idle(&digests, sweep, cutoff, |idle| {
                    let idle: HashSet<&Digest> = idle.iter().copied().collect();
                    let chosen: Vec<&&Unlink> =
                        batch.iter().filter(|u| idle.contains(&u.digest)).collect();
                    let Some(first) = chosen.first() else {
                        return Ok(Vec::new());
                    };
                    let mut compares = vec![Compare::ModRevision {
                        key: keys::repo_epoch(repo),
                        revision: first.epoch_revision,
                    }];
                    let mut ops = Vec::new();
                    for u in &chosen {
                        let key = keys::layer(repo, &u.digest.to_string());
                        compares.push(Compare::ModRevision {
                            key: key.clone(),
                            revision: u.link_revision,
                        });
                        ops.push(Op::Delete { key });
                    }
                    let res = self.store.txn(Txn {
                        compares,
                        success: ops,
                        failure: Vec::new(),
                    })?;
                    if !res.succeeded {
                        tracing::debug!(repository = %repo, "repository changed since the gc snapshot; its links stay");
                        return Ok(Vec::new());
                    }
                    Ok(chosen.iter().map(|u| u.digest.clone()).collect())
                })?;
                let removed: HashSet<Digest> = removed.into_iter().collect();
                for u in batch {
                    if removed.contains(&u.digest) {
                        report.links_removed += 1;
                        tracing::debug!(repository = %repo, digest = %u.digest, "blob unlinked by gc");
                    } else {
                        report.skipped += 1;
                        saved.insert(u.digest.clone());
                    }
                }
            }
        }

        // Stage 2: files no kept link names.
        for digest in plan.remove.iter().filter(|d| !saved.contains(*d)) {
            let freed = self.pins.with_idle(&[digest], sweep, cutoff, |idle| {
                if idle.is_empty() {
                    return Ok(None);
                }
                self.blobs.remove_unless_newer(digest, cutoff)
            })?;
            match freed {
                Some(bytes) => {
                    report.blobs_removed += 1;
                    report.bytes_freed += bytes;
                    tracing::info!(digest = %digest, bytes, "blob removed by gc");
                }
                None => report.skipped += 1,
            }
        }
        self.pins.prune(sweep, cutoff);
        tracing::info!(
            revision = report.revision,
            links_removed = report.links_removed,
            blobs_removed = report.blobs_removed,
            bytes_freed = report.bytes_freed,
            skipped = report.skipped,
            "registry gc sweep done"
        );
        Ok(report)
    }

    /// Whether `digest` is linked into `repo` with its bytes on disk; its
    /// size if so. A found blob is touched: a sweep leaves it alone for
    /// the grace period, so a client told it exists can name it in a
    /// manifest. Blocking.
    pub fn blob_available(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        self.pins.touch_if(digest, || {
            if self.layer(repo, digest)?.is_none() {
                return Ok(None);
            }
            Ok(self.blobs.size(digest))
        })
    }

    /// Moves a finished upload into the blob store (verified against
    /// `expected`) and links it into `repo`, under a hold. Blocking.
    pub fn commit_blob(
        &self,
        repo: &str,
        temp: &std::path::Path,
        actual: &Digest,
        expected: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        let hold = self.pins.hold(expected);
        self.blobs.commit(temp, actual, expected)?;
        self.link_layer(
            repo,
            expected,
            i64::try_from(size).unwrap_or(i64::MAX),
            &hold,
        )
    }

    /// Links `digest` from repository `from` into `repo` if `from` has it;
    /// false (nothing done) otherwise. Blocking.
    pub fn mount_blob(
        &self,
        repo: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let hold = self.pins.hold(digest);
        match (self.layer(from, digest)?, self.blobs.size(digest)) {
            (Some(l), Some(_)) => {
                self.link_layer(repo, digest, l.size, &hold)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Runs a garbage collection sweep every `every` with grace period
/// `grace`, until the runtime stops. The first sweep comes one interval
/// after the start.
pub fn spawn_garbage_collection(
    registry: Arc<Registry>,
    every: Duration,
    grace: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + every;
        let mut tick = tokio::time::interval_at(start, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let reg = registry.clone();
            match tokio::task::spawn_blocking(move || reg.collect_garbage(grace)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "registry gc failed"),
                Err(err) => tracing::error!(error = %err, "registry gc task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests;
