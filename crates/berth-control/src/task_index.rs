//! The tasks of every cluster, in memory, as the scheduler and the service
//! controller need them.
//!
//! Placement and the service controller look at every task of a cluster on
//! every run. Reading and decoding them from the store each time costs
//! O(tasks) per pass (tens of thousands of JSON documents a second at
//! scale); this index is kept instead, O(changes):
//!
//! - the task watcher (`agents.rs`) seeds it from one scan when it starts
//!   and then applies every put and delete under `ecs/task/`;
//! - the writers that decide from it (placement, the service controller's
//!   stops) also write their own commits through to it, so a pass always
//!   sees what the previous one wrote, however far the watcher lags.
//!
//! Every entry keeps the store revision that wrote it and only a newer one
//! replaces it, so the two feeds can arrive in any order. What may be
//! stale is only what others wrote (an agent's state change): the scheduler
//! then counts a stopped task's resources a little longer (never too few),
//! and the level-driven controller sees the change on its next pass.
//!
//! Entries are slim copies: the task's API document keeps only the fields
//! the controller and the scheduler read, so 50,000 tasks stay within tens
//! of MiB.

use std::collections::HashMap;
use std::sync::Arc;

use berth_model::task::Task;
use parking_lot::Mutex;

use crate::tasks::StoredTask;

/// A slim task and the store revision that wrote it.
type Entry = (i64, Arc<StoredTask>);

#[derive(Debug, Default)]
struct Inner {
    /// False until the watcher has seeded the index; readers then go to the
    /// store.
    ready: bool,
    clusters: HashMap<String, HashMap<String, Entry>>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct TaskIndex {
    inner: Mutex<Inner>,
}

/// The fields of a task that placement and the service controller read.
pub(crate) fn slim(t: &StoredTask) -> StoredTask {
    let s = &t.task;
    StoredTask {
        cluster: t.cluster.clone(),
        id: t.id.clone(),
        instance_id: t.instance_id.clone(),
        family: t.family.clone(),
        group: t.group.clone(),
        resources: t.resources,
        tcp_ports: t.tcp_ports.clone(),
        udp_ports: t.udp_ports.clone(),
        task: Task {
            task_arn: s.task_arn.clone(),
            task_definition_arn: s.task_definition_arn.clone(),
            container_instance_arn: s.container_instance_arn.clone(),
            started_by: s.started_by.clone(),
            launch_type: s.launch_type.clone(),
            last_status: s.last_status.clone(),
            desired_status: s.desired_status.clone(),
            health_status: s.health_status.clone(),
            created_at: s.created_at,
            started_at: s.started_at,
            stopped_at: s.stopped_at,
            stopped_reason: s.stopped_reason.clone(),
            stop_code: s.stop_code.clone(),
            version: s.version,
            ..Task::default()
        },
    }
}

/// `(cluster, id)` of a key `ecs/task/<cluster>/<id>`.
fn parse_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix("ecs/task/")?.split_once('/')
}

impl TaskIndex {
    /// Records the version of task `t` written at `revision` (older
    /// versions than the one held are ignored).
    pub(crate) fn put(&self, revision: i64, t: &StoredTask) {
        let mut inner = self.inner.lock();
        Self::put_locked(&mut inner, revision, t);
    }

    fn put_locked(inner: &mut Inner, revision: i64, t: &StoredTask) {
        let tasks = inner.clusters.entry(t.cluster.clone()).or_default();
        match tasks.get(&t.id) {
            Some((held, _)) if *held >= revision => {}
            _ => {
                tasks.insert(t.id.clone(), (revision, Arc::new(slim(t))));
            }
        }
    }

    /// Applies a watched change of `key` at `revision`: a new version, or
    /// a deletion when `task` is `None`.
    pub(crate) fn apply(&self, key: &str, revision: i64, task: Option<&StoredTask>) {
        let mut inner = self.inner.lock();
        match task {
            Some(t) => Self::put_locked(&mut inner, revision, t),
            None => {
                let Some((cluster, id)) = parse_key(key) else {
                    return;
                };
                if let Some(tasks) = inner.clusters.get_mut(cluster) {
                    if tasks.get(id).is_some_and(|(held, _)| *held < revision) {
                        tasks.remove(id);
                    }
                }
            }
        }
    }

    /// Loads `tasks` (read from the store at or after the revision the
    /// watcher starts from) and marks the index ready.
    pub(crate) fn seed(&self, tasks: impl IntoIterator<Item = (i64, StoredTask)>) {
        let mut inner = self.inner.lock();
        for (revision, t) in tasks {
            Self::put_locked(&mut inner, revision, &t);
        }
        inner.ready = true;
    }

    /// Replaces the index with `tasks`, a re-listing of the store made at
    /// or after revision `after` (the watcher's lag policy): entries the
    /// listing lacks are forgotten unless written after `after` (a
    /// write-through the watch will confirm).
    pub(crate) fn reseed(&self, after: i64, tasks: Vec<(i64, StoredTask)>) {
        let listed: std::collections::HashSet<(String, String)> = tasks
            .iter()
            .map(|(_, t)| (t.cluster.clone(), t.id.clone()))
            .collect();
        let mut inner = self.inner.lock();
        for (cluster, held) in inner.clusters.iter_mut() {
            held.retain(|id, (revision, _)| {
                *revision > after || listed.contains(&(cluster.clone(), id.clone()))
            });
        }
        drop(inner);
        self.seed(tasks);
    }

    /// The tasks of `cluster` that `keep` selects, in key (id) order, or
    /// `None` when the index is not seeded.
    pub(crate) fn select(
        &self,
        cluster: &str,
        keep: impl Fn(&StoredTask) -> bool,
    ) -> Option<Vec<Arc<StoredTask>>> {
        let inner = self.inner.lock();
        if !inner.ready {
            return None;
        }
        let mut out: Vec<Arc<StoredTask>> = inner
            .clusters
            .get(cluster)
            .map(|tasks| {
                tasks
                    .values()
                    .filter(|(_, t)| keep(t))
                    .map(|(_, t)| t.clone())
                    .collect()
            })
            .unwrap_or_default();
        drop(inner);
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Some(out)
    }

    /// `(cluster, id, revision)` of every task whose last status is STOPPED
    /// and that stopped before `cutoff` (epoch seconds), oldest first; empty
    /// when the index is not seeded.
    pub(crate) fn stopped_before(&self, cutoff: f64) -> Vec<(String, String, i64)> {
        let inner = self.inner.lock();
        if !inner.ready {
            return Vec::new();
        }
        let mut out: Vec<(f64, String, String, i64)> = Vec::new();
        for (cluster, tasks) in &inner.clusters {
            for (id, (revision, t)) in tasks {
                if t.task.last_status.as_deref() != Some("STOPPED") {
                    continue;
                }
                if let Some(at) = t.task.stopped_at.filter(|at| *at < cutoff) {
                    out.push((at, cluster.clone(), id.clone(), *revision));
                }
            }
        }
        drop(inner);
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        out.into_iter()
            .map(|(_, c, id, rev)| (c, id, rev))
            .collect()
    }

    /// Every task of `cluster`, or `None` when the index is not seeded.
    pub(crate) fn cluster(&self, cluster: &str) -> Option<Vec<Arc<StoredTask>>> {
        let inner = self.inner.lock();
        if !inner.ready {
            return None;
        }
        Some(
            inner
                .clusters
                .get(cluster)
                .map(|tasks| tasks.values().map(|(_, t)| t.clone()).collect())
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(cluster: &str, id: &str, status: &str) -> StoredTask {
        StoredTask {
            cluster: cluster.into(),
            id: id.into(),
            instance_id: "i".into(),
            family: "f".into(),
            group: "g".into(),
            resources: Default::default(),
            tcp_ports: vec![80],
            udp_ports: vec![],
            task: Task {
                last_status: Some(status.into()),
                overrides: Some(Default::default()),
                ..Task::default()
            },
        }
    }

    #[test]
    fn stopped_before_names_only_tasks_stopped_long_enough() {
        let index = TaskIndex::default();
        let mut old = task("c", "old", "STOPPED");
        old.task.stopped_at = Some(100.0);
        let mut fresh = task("c", "fresh", "STOPPED");
        fresh.task.stopped_at = Some(500.0);
        let mut running = task("d", "running", "RUNNING");
        running.task.stopped_at = Some(50.0);
        let mut older = task("d", "older", "STOPPED");
        older.task.stopped_at = Some(10.0);
        assert!(index.stopped_before(1e9).is_empty(), "not seeded yet");
        index.seed([(4, old), (5, fresh), (6, running), (7, older)]);
        assert_eq!(
            index.stopped_before(400.0),
            vec![
                ("d".into(), "older".into(), 7),
                ("c".into(), "old".into(), 4)
            ]
        );
        assert!(index.stopped_before(10.0).is_empty());
    }

    #[test]
    fn readers_go_to_the_store_until_seeded() {
        let index = TaskIndex::default();
        index.put(3, &task("c", "a", "PENDING"));
        assert!(index.cluster("c").is_none());
        index.seed(Vec::new());
        assert_eq!(index.cluster("c").map(|t| t.len()), Some(1));
        assert_eq!(index.cluster("other").map(|t| t.len()), Some(0));
    }

    #[test]
    fn only_a_newer_revision_replaces_an_entry() {
        let index = TaskIndex::default();
        index.seed(vec![(5, task("c", "a", "RUNNING"))]);
        index.apply("ecs/task/c/a", 4, Some(&task("c", "a", "PENDING")));
        let held = index.cluster("c").unwrap_or_default();
        assert_eq!(held[0].task.last_status.as_deref(), Some("RUNNING"));
        index.put(7, &task("c", "a", "STOPPED"));
        index.apply("ecs/task/c/a", 6, Some(&task("c", "a", "RUNNING")));
        let held = index.cluster("c").unwrap_or_default();
        assert_eq!(held[0].task.last_status.as_deref(), Some("STOPPED"));
    }

    #[test]
    fn a_delete_removes_only_older_versions() {
        let index = TaskIndex::default();
        index.seed(vec![(5, task("c", "a", "RUNNING"))]);
        index.apply("ecs/task/c/a", 4, None);
        assert_eq!(index.cluster("c").map(|t| t.len()), Some(1));
        index.apply("ecs/task/c/a", 6, None);
        assert_eq!(index.cluster("c").map(|t| t.len()), Some(0));
        index.apply("not-a-task-key", 9, None);
    }

    #[test]
    fn entries_are_slim_but_keep_what_scheduling_reads() {
        let index = TaskIndex::default();
        index.seed(vec![(1, task("c", "a", "RUNNING"))]);
        let held = index.cluster("c").unwrap_or_default();
        assert!(held[0].task.overrides.is_none());
        assert_eq!(held[0].tcp_ports, vec![80]);
        assert_eq!(held[0].task.last_status.as_deref(), Some("RUNNING"));
    }
}
