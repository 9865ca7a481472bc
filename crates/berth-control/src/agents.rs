//! Agent sessions: which agents hold a channel, when each was last heard
//! from, and the fan-out of task changes to the agent of the instance each
//! task is placed on.
//!
//! One watcher thread follows every task key in the store from the revision
//! at which the server started and hands each new version of a task to the
//! sessions of its instance. It also keeps an index, instance to the keys
//! of its unfinished tasks, so that a channel opening reads its snapshot
//! from a handful of keys instead of scanning the cluster's tasks (a
//! reconnect storm of thousands of agents must not cost thousands of
//! scans). A session subscribes and reads the index under the same lock
//! the watcher dispatches under, and takes as its snapshot revision the
//! last revision the watcher has fully applied: every later version
//! reaches it as an update, and a version it sees twice (once in the
//! snapshot, once from the watcher) carries the same store revision in
//! `Task::version`, which is how the agent keeps the newest copy.
//!
//! An instance has at most one session: a channel opening for an instance
//! that has one ends the older (the newest wins; the agent behind the older
//! one, if alive, reconnects), so liveness follows the live channel and a
//! stale or forged second channel cannot keep a dead agent "connected".
//!
//! Queues are bounded. A session buffers at most [`SESSION_BUFFER`] task
//! versions; one that falls that far behind is ended, and its agent
//! reconnects for a full snapshot. The store watch is bounded too
//! (`berth_store::StoreError::WatchLagged`): when the watcher falls behind
//! it re-lists the tasks, rebuilds its indexes, ends every session (they
//! may have missed versions; their agents reconnect for full snapshots) and
//! watches again from the re-listed revision.
//!
//! Liveness is decided by [`liveness`], a pure function of the instances,
//! the times they were last heard from and `now`: an instance whose agent
//! has not been heard from for the timeout has `agentConnected` set false,
//! and set true again the moment a channel opens.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use berth_model::container_instance::ContainerInstance;
use berth_model::task::Task;
use berth_model::{ApiError, ErrorCode};
use berth_store::{EventKind, StoreError, Watch};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::clusters::active;
use crate::container_instances::{instance_id, StoredInstance};
use crate::state::{self, put_op, read_modify_write, scan, Change};
use crate::tasks::StoredTask;
use crate::{keys, ControlPlane, Cx};

/// Task versions a session may leave unsent before it is ended.
pub const SESSION_BUFFER: usize = 4096;

/// Why sessions end, as the edge logs it.
pub const ENDED_SUPERSEDED: &str = "a newer channel for the instance opened";
pub const ENDED_LAGGING: &str = "the channel fell too far behind its updates";
pub const ENDED_RELISTED: &str = "the task watcher re-listed the tasks";
pub const ENDED_CLOSING: &str = "the control plane is closing";

/// The open session of one instance: its id, where its updates go, and
/// where the reason it was ended is left for it.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Task>,
    ended: Arc<OnceLock<&'static str>>,
}

impl Subscriber {
    /// Ends the session (its updates stream ends once drained).
    fn end(self, reason: &'static str) {
        let _ = self.ended.set(reason);
    }
}

/// Who receives a task's new versions, and which tasks each instance has.
#[derive(Debug, Default)]
struct Routing {
    sessions: HashMap<String, Subscriber>,
    /// Instance ARN to the store keys of its unfinished tasks, kept by the
    /// task watcher.
    index: HashMap<String, HashSet<String>>,
    /// The reverse of `index`: task key to its instance ARN.
    owner: HashMap<String, String>,
    /// Every revision at or below this one is in `index`; `None` until the
    /// watcher has seeded it (sessions then read the store instead).
    applied: Option<i64>,
}

impl Routing {
    fn index(&mut self, key: &str, instance: &str) {
        self.index
            .entry(instance.to_string())
            .or_default()
            .insert(key.to_string());
        self.owner.insert(key.to_string(), instance.to_string());
    }

    fn unindex(&mut self, key: &str) {
        let Some(instance) = self.owner.remove(key) else {
            return;
        };
        if let Some(keys) = self.index.get_mut(&instance) {
            keys.remove(key);
            if keys.is_empty() {
                self.index.remove(&instance);
            }
        }
    }
}

/// Sessions and last-heard times, shared by every connection.
#[derive(Debug)]
pub(crate) struct AgentHub {
    routing: Mutex<Routing>,
    last_heard: Mutex<HashMap<String, f64>>,
    next_id: AtomicU64,
    /// When this control plane started: an agent is given the timeout from
    /// then to reconnect before it is called disconnected.
    started_at: f64,
}

impl AgentHub {
    pub(crate) fn new(started_at: f64) -> Self {
        Self {
            routing: Mutex::new(Routing::default()),
            last_heard: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            started_at,
        }
    }

    /// Records a new version (or the deletion, `task` = `None`) of the task
    /// at `key`, written at `revision`, and hands it to its instance's
    /// sessions.
    fn apply(&self, key: &str, revision: i64, task: Option<Task>) {
        let mut routing = self.routing.lock();
        // Other keys of this revision may still come: only the one before
        // is known to be complete.
        routing.applied = Some(revision - 1);
        let instance = task.as_ref().and_then(|t| t.container_instance_arn.clone());
        let live = task.as_ref().is_some_and(unfinished);
        routing.unindex(key);
        let Some(task) = task else { return };
        let Some(instance) = instance else { return };
        if live {
            routing.index(key, &instance);
        }
        let full = match routing.sessions.get(&instance) {
            Some(sub) => match sub.tx.try_send(task) {
                Ok(()) => false,
                Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    routing.sessions.remove(&instance);
                    false
                }
            },
            None => false,
        };
        if full {
            if let Some(sub) = routing.sessions.remove(&instance) {
                tracing::warn!(container_instance = %instance, buffer = SESSION_BUFFER, "agent session fell behind its updates and was ended");
                sub.end(ENDED_LAGGING);
            }
        }
    }

    pub(crate) fn heard(&self, instance_arn: &str, now: f64) {
        self.last_heard.lock().insert(instance_arn.to_string(), now);
    }

    fn connected(&self, instance_arn: &str) -> bool {
        self.routing
            .lock()
            .sessions
            .get(instance_arn)
            .is_some_and(|s| !s.tx.is_closed())
    }
}

/// An open agent channel: the snapshot to send first, then every later
/// version of the instance's tasks. Dropping it ends the subscription.
#[derive(Debug)]
pub struct AgentSession {
    pub cluster_arn: String,
    pub container_instance_arn: String,
    /// The instance's unfinished tasks, each with `version` set to the store
    /// revision that wrote it.
    pub snapshot: Vec<Task>,
    /// A revision at or below which the snapshot holds every version: an
    /// update with a `version` at or below it is no newer than what the
    /// snapshot holds and must not be sent after it.
    pub snapshot_revision: i64,
    /// Bounded by `SESSION_BUFFER`; ends when the session is ended (see
    /// [`AgentSession::ended`]).
    pub updates: mpsc::Receiver<Task>,
    id: u64,
    ended: Arc<OnceLock<&'static str>>,
    control: ControlPlane,
}

impl AgentSession {
    /// Why the session was ended, once its `updates` have ended.
    pub fn ended(&self) -> &'static str {
        self.ended.get().copied().unwrap_or(ENDED_CLOSING)
    }
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        let mut routing = self.control.inner.agents.routing.lock();
        // Only this session's own entry: a newer one may have replaced it.
        if routing
            .sessions
            .get(&self.container_instance_arn)
            .is_some_and(|s| s.id == self.id)
        {
            routing.sessions.remove(&self.container_instance_arn);
        }
    }
}

/// A task worth sending to its agent: not yet stopped there.
fn unfinished(task: &Task) -> bool {
    task.last_status.as_deref() != Some("STOPPED")
}

fn versioned(mut t: StoredTask, revision: i64) -> Task {
    t.task.version = Some(revision);
    t.task
}

/// One liveness verdict: the instance's `agentConnected` should become
/// `connected`.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub container_instance_arn: String,
    pub connected: bool,
}

/// What liveness knows of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceLiveness {
    pub container_instance_arn: String,
    pub agent_connected: bool,
    pub registered_at: f64,
    /// When its agent was last heard from, if ever since the start.
    pub last_heard: Option<f64>,
    /// Whether a channel is open right now.
    pub channel_open: bool,
}

/// Decides which instances change connectedness. An open channel means
/// connected; otherwise an instance not heard from (nor registered, nor
/// given the grace after `started_at`) within `timeout` seconds is not.
pub fn liveness(
    instances: &[InstanceLiveness],
    started_at: f64,
    now: f64,
    timeout: f64,
) -> Vec<Verdict> {
    instances
        .iter()
        .filter_map(|i| {
            let last = i
                .last_heard
                .unwrap_or(f64::MIN)
                .max(i.registered_at)
                .max(started_at);
            let connected = i.channel_open || now - last <= timeout;
            (connected != i.agent_connected).then(|| Verdict {
                container_instance_arn: i.container_instance_arn.clone(),
                connected,
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DiscoverPollEndpointRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DiscoverPollEndpointResponse {
    endpoint: String,
    telemetry_endpoint: String,
    service_connect_endpoint: String,
}

fn instance_record(
    cx: &Cx<'_>,
    cluster: Option<&str>,
    reference: Option<&str>,
) -> Result<(String, StoredInstance), ApiError> {
    let (cluster, _) = active(cx, cluster)?;
    let reference = reference.ok_or_else(|| {
        ApiError::invalid_parameter("containerInstance can not be blank.".to_string())
    })?;
    let id = instance_id(cx, &cluster, reference)?;
    match state::get::<StoredInstance>(cx.store(), &keys::instance(&cluster, &id))? {
        Some(s) if s.value.instance.status.as_deref() != Some("INACTIVE") => Ok((cluster, s.value)),
        _ => Err(ApiError::invalid_parameter(format!(
            "Container instance {reference} is not registered in cluster {cluster}."
        ))),
    }
}

impl ControlPlane {
    /// DiscoverPollEndpoint: where the agent opens its channel. The edge
    /// passes its own base URL (`http://host:port/`) as the client reached it.
    pub fn discover_poll_endpoint(
        &self,
        body: &[u8],
        caller: &crate::Caller,
        base_url: &str,
    ) -> Result<Vec<u8>, ApiError> {
        self.authorize_agent_call("DiscoverPollEndpoint", body, caller)?;
        // ECS answers its endpoint whatever the cluster named (the model lists
        // no ClusterNotFoundException here); an instance named in a cluster
        // that exists must be registered there (InvalidParameterException).
        let cx = self.cx(caller);
        crate::call(body, |r: DiscoverPollEndpointRequest| {
            if r.container_instance.is_some() {
                match instance_record(&cx, r.cluster.as_deref(), r.container_instance.as_deref()) {
                    Err(e) if e.code == ErrorCode::ClusterNotFoundException => {}
                    other => {
                        other?;
                    }
                }
            }
            Ok(DiscoverPollEndpointResponse {
                endpoint: base_url.to_string(),
                telemetry_endpoint: base_url.to_string(),
                service_connect_endpoint: base_url.to_string(),
            })
        })
    }

    /// Opens a channel for the agent of an ACTIVE or DRAINING instance:
    /// subscribes it to its tasks, reads the snapshot and marks the agent
    /// connected.
    pub fn open_agent_session(
        &self,
        caller: &crate::Caller,
        cluster: &str,
        container_instance: &str,
    ) -> Result<AgentSession, ApiError> {
        self.authorize_channel(caller, cluster, container_instance)?;
        let cx = self.cx(caller);
        let (cluster, stored) = instance_record(&cx, Some(cluster), Some(container_instance))?;
        let arn = stored
            .instance
            .container_instance_arn
            .clone()
            .unwrap_or_default();
        let hub = &self.inner.agents;
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        let ended = Arc::new(OnceLock::new());
        // Subscribe and read the index in one critical section with the
        // watcher's dispatch: what the index does not hold yet arrives as
        // an update. The newest channel wins: an older one is ended.
        let (indexed, applied) = {
            let mut routing = hub.routing.lock();
            let newer = Subscriber {
                id,
                tx,
                ended: ended.clone(),
            };
            if let Some(older) = routing.sessions.insert(arn.clone(), newer) {
                tracing::info!(container_instance = %arn, "a newer agent channel replaces the open one");
                older.end(ENDED_SUPERSEDED);
            }
            let keys: Vec<String> = routing
                .index
                .get(&arn)
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default();
            (keys, routing.applied)
        };
        let mut session = AgentSession {
            cluster_arn: cx.scope().cluster(&cluster),
            container_instance_arn: arn.clone(),
            snapshot: Vec::new(),
            snapshot_revision: 0,
            updates: rx,
            id,
            ended,
            control: self.clone(),
        };
        hub.heard(&arn, cx.now());
        self.set_agent_connected(&cluster, &stored.id, true)?;
        let mine = |t: &StoredTask| t.instance_id == stored.id && unfinished(&t.task);
        match applied {
            Some(applied) => {
                session.snapshot_revision = applied;
                for key in indexed {
                    if let Some(t) = state::get::<StoredTask>(cx.store(), &key)? {
                        if mine(&t.value) {
                            session.snapshot.push(versioned(t.value, t.mod_revision));
                        }
                    }
                }
            }
            None => {
                // No watcher (or not seeded yet): read the store itself.
                session.snapshot_revision = cx.store().revision().map_err(state::store_error)?;
                for kv in scan(cx.store(), &keys::tasks(&cluster))? {
                    let t: StoredTask = state::decode(&kv)?;
                    if mine(&t) {
                        session.snapshot.push(versioned(t, kv.mod_revision));
                    }
                }
            }
        }
        tracing::info!(container_instance = %arn, tasks = session.snapshot.len(), "agent channel opened");
        Ok(session)
    }

    /// Records that the agent of `container_instance_arn` was heard from.
    pub fn agent_heard(&self, container_instance_arn: &str) {
        let now = self.inner.clock.now_epoch();
        self.inner.agents.heard(container_instance_arn, now);
    }

    fn set_agent_connected(
        &self,
        cluster: &str,
        id: &str,
        connected: bool,
    ) -> Result<(), ApiError> {
        let key = keys::instance(cluster, id);
        read_modify_write(
            self.inner.store.as_ref(),
            &key,
            |cur: Option<StoredInstance>| match cur {
                Some(mut s)
                    if s.instance.agent_connected != Some(connected)
                        && s.instance.status.as_deref() != Some("INACTIVE") =>
                {
                    s.instance.agent_connected = Some(connected);
                    Ok(Change::Write(vec![put_op(key.clone(), &s)?], ()))
                }
                _ => Ok(Change::Keep(())),
            },
        )
    }

    /// One liveness pass over every cluster: flips `agentConnected` where
    /// [`liveness`] says so. Returns the verdicts it applied.
    pub fn check_agents(&self, timeout_secs: f64) -> Result<Vec<Verdict>, ApiError> {
        let now = self.inner.clock.now_epoch();
        let hub = &self.inner.agents;
        let mut records: HashMap<String, (String, String)> = HashMap::new();
        let mut view = Vec::new();
        for kv in scan(self.inner.store.as_ref(), "ecs/instance/")? {
            let s: StoredInstance = state::decode(&kv)?;
            let ci: &ContainerInstance = &s.instance;
            if ci.status.as_deref() == Some("INACTIVE") {
                continue;
            }
            let arn = ci.container_instance_arn.clone().unwrap_or_default();
            view.push(InstanceLiveness {
                agent_connected: ci.agent_connected.unwrap_or(false),
                registered_at: ci.registered_at.unwrap_or(0.0),
                last_heard: hub.last_heard.lock().get(&arn).copied(),
                channel_open: hub.connected(&arn),
                container_instance_arn: arn.clone(),
            });
            records.insert(arn, (s.cluster.clone(), s.id.clone()));
        }
        let verdicts = liveness(&view, hub.started_at, now, timeout_secs);
        for v in &verdicts {
            if let Some((cluster, id)) = records.get(&v.container_instance_arn) {
                self.set_agent_connected(cluster, id, v.connected)?;
                tracing::info!(container_instance = %v.container_instance_arn, connected = v.connected, "agent connectivity changed");
            }
        }
        Ok(verdicts)
    }

    /// Starts the thread that hands every new version of a task to the
    /// channel of its instance's agent. It follows the store from its
    /// current revision, re-lists when it falls behind, and ends when the
    /// store closes.
    pub fn start_task_fanout(&self) -> Result<std::thread::JoinHandle<()>, ApiError> {
        let mut events = self.list_and_watch_tasks()?;
        let control = self.clone();
        std::thread::Builder::new()
            .name("berth-task-fanout".into())
            .spawn(move || {
                loop {
                    match events.blocking_recv() {
                        Some(Ok(event)) => control.fan_out(event),
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "task watch ended: re-listing the tasks");
                            match control.relist_tasks() {
                                Some(again) => events = again,
                                None => break,
                            }
                        }
                        None => break,
                    }
                }
                tracing::info!("task fan-out ended");
            })
            .map_err(|e| ApiError::server(format!("cannot start the task fan-out: {e}")))
    }

    /// Re-lists after a lagging watch, retrying while the store fails;
    /// `None` once the store is closed.
    fn relist_tasks(&self) -> Option<Watch> {
        loop {
            match self.list_and_watch_tasks() {
                Ok(events) => return Some(events),
                Err(err)
                    if self
                        .inner
                        .store
                        .revision()
                        .is_err_and(|e| matches!(e, StoreError::Closed)) =>
                {
                    tracing::info!(error = %err.message, "task fan-out ended");
                    return None;
                }
                Err(err) => {
                    tracing::error!(error = %err.message, "re-listing the tasks failed; retrying");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }

    /// Watches `ecs/task/` from the store's current revision and (re)builds
    /// the instance index and the task index from a listing made at or
    /// after it; the watch replays everything after it on top, which leaves
    /// every key as its newest version says. Every open session is ended:
    /// after a lag it may have missed versions, and its agent reconnects
    /// for a full snapshot.
    fn list_and_watch_tasks(&self) -> Result<Watch, ApiError> {
        let store = self.inner.store.clone();
        let after = store.revision().map_err(state::store_error)?;
        let events = store
            .watch("ecs/task/", after)
            .map_err(state::store_error)?;
        let hub = &self.inner.agents;
        let mut seed = Vec::new();
        let mut index: Vec<(String, String)> = Vec::new();
        for kv in scan(store.as_ref(), "ecs/task/")? {
            let t: StoredTask = state::decode(&kv)?;
            if let Some(arn) = t.task.container_instance_arn.clone() {
                if unfinished(&t.task) {
                    index.push((kv.key.clone(), arn));
                }
            }
            seed.push((kv.mod_revision, t));
        }
        let ended: Vec<Subscriber> = {
            let mut routing = hub.routing.lock();
            routing.index.clear();
            routing.owner.clear();
            for (key, arn) in &index {
                routing.index(key, arn);
            }
            routing.applied = Some(after);
            routing.sessions.drain().map(|(_, s)| s).collect()
        };
        if !ended.is_empty() {
            tracing::info!(
                sessions = ended.len(),
                "agent sessions ended by the re-listing"
            );
        }
        for s in ended {
            s.end(ENDED_RELISTED);
        }
        self.inner.tasks.reseed(after, seed);
        Ok(events)
    }

    /// Hands one watched change to the task index and the sessions.
    fn fan_out(&self, event: berth_store::WatchEvent) {
        let agents = &self.inner.agents;
        let index = &self.inner.tasks;
        let revision = event.kv.mod_revision;
        if event.kind != EventKind::Put {
            index.apply(&event.kv.key, revision, None);
            agents.apply(&event.kv.key, revision, None);
            return;
        }
        match serde_json::from_slice::<StoredTask>(&event.kv.value) {
            Ok(t) => {
                index.apply(&event.kv.key, revision, Some(&t));
                agents.apply(&event.kv.key, revision, Some(versioned(t, revision)))
            }
            Err(err) => {
                tracing::error!(key = %event.kv.key, error = %err, "undecodable task in the store")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod sessions {
        #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use berth_store::{MemoryStore, Op, Store, StoreOptions, Txn};
        use tokio::sync::mpsc::error::TryRecvError;

        use super::super::*;
        use crate::{Caller, Config, ManualClock};

        fn caller() -> Caller {
            Caller::root("arn:aws:iam::000000000000:root", "AKID")
        }

        /// A control plane over a memory store whose watches buffer
        /// `buffer` events, with cluster `c` and one instance.
        fn plane(buffer: usize) -> (ControlPlane, Arc<MemoryStore>, Arc<ManualClock>, String) {
            let store = Arc::new(MemoryStore::with_options(StoreOptions {
                watch_buffer: buffer,
                ..StoreOptions::default()
            }));
            let clock = Arc::new(ManualClock::new(1_000_000_000));
            let cp = ControlPlane::new(store.clone(), Config::default(), clock.clone());
            cp.ecs("CreateCluster", br#"{"clusterName":"c"}"#, &caller())
                .unwrap();
            let out = cp
                .ecs(
                    "RegisterContainerInstance",
                    br#"{"cluster":"c","totalResources":[{"name":"CPU","type":"INTEGER","integerValue":1024},{"name":"MEMORY","type":"INTEGER","integerValue":1024}]}"#,
                    &caller(),
                )
                .unwrap();
            let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let arn = out["containerInstance"]["containerInstanceArn"]
                .as_str()
                .unwrap()
                .to_string();
            (cp, store, clock, arn)
        }

        fn put_task(store: &MemoryStore, id: &str, instance_arn: &str) {
            let instance_id = instance_arn.rsplit('/').next().unwrap();
            let t = StoredTask {
                cluster: "c".into(),
                id: id.into(),
                instance_id: instance_id.into(),
                family: "f".into(),
                group: "family:f".into(),
                resources: Default::default(),
                tcp_ports: Vec::new(),
                udp_ports: Vec::new(),
                task: Task {
                    task_arn: Some(format!("arn:aws:ecs:us-east-1:000000000000:task/c/{id}")),
                    container_instance_arn: Some(instance_arn.into()),
                    last_status: Some("PENDING".into()),
                    desired_status: Some("RUNNING".into()),
                    ..Task::default()
                },
            };
            store
                .txn(Txn {
                    success: vec![Op::Put {
                        key: keys::task("c", id),
                        value: serde_json::to_vec(&t).unwrap(),
                    }],
                    ..Txn::default()
                })
                .unwrap();
        }

        #[test]
        fn the_newest_channel_of_an_instance_wins_and_liveness_follows_it() {
            let (cp, _store, clock, arn) = plane(64);
            let mut older = cp.open_agent_session(&caller(), "c", &arn).unwrap();
            let newer = cp.open_agent_session(&caller(), "c", &arn).unwrap();
            assert!(
                matches!(older.updates.try_recv(), Err(TryRecvError::Disconnected)),
                "the older channel is ended"
            );
            assert_eq!(older.ended(), ENDED_SUPERSEDED);
            clock.advance(60_000);
            assert!(
                cp.check_agents(30.0).unwrap().is_empty(),
                "the newer is live"
            );
            // The newer dies; the ended older one (still held) keeps nothing alive.
            drop(newer);
            let verdicts = cp.check_agents(30.0).unwrap();
            assert_eq!(
                verdicts,
                vec![Verdict {
                    container_instance_arn: arn.clone(),
                    connected: false
                }]
            );
            drop(older);
        }

        #[test]
        fn a_session_a_buffer_behind_is_ended_and_its_agent_starts_over() {
            let (cp, store, _clock, arn) = plane(1 << 16);
            cp.start_task_fanout().unwrap();
            let mut session = cp.open_agent_session(&caller(), "c", &arn).unwrap();
            // Nobody reads the session while more than its buffer arrives.
            for i in 0..=SESSION_BUFFER {
                put_task(&store, &format!("t{i:05}"), &arn);
            }
            // Wait until the watcher has handed out the last of them.
            let last = store.revision().unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while cp.inner.agents.routing.lock().applied < Some(last - 1) {
                assert!(Instant::now() < deadline, "the watcher never caught up");
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut received = 0;
            loop {
                match session.updates.try_recv() {
                    Ok(_) => received += 1,
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        assert!(Instant::now() < deadline, "the session was never ended");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            assert_eq!(received, SESSION_BUFFER);
            assert_eq!(session.ended(), ENDED_LAGGING);
            drop(session);
            // Reconnecting, the agent gets everything in its snapshot.
            let again = cp.open_agent_session(&caller(), "c", &arn).unwrap();
            assert_eq!(again.snapshot.len(), SESSION_BUFFER + 1);
        }

        #[test]
        fn a_lagging_task_watch_relists_and_ends_the_sessions() {
            let (cp, store, _clock, arn) = plane(4);
            cp.start_task_fanout().unwrap();
            let mut session = cp.open_agent_session(&caller(), "c", &arn).unwrap();
            {
                // Stall the watcher while more than its buffer is written.
                let _stalled = cp.inner.agents.routing.lock();
                for i in 0..20 {
                    put_task(&store, &format!("t{i:02}"), &arn);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match session.updates.try_recv() {
                    Ok(_) => {}
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        assert!(Instant::now() < deadline, "the session was never ended");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            assert_eq!(session.ended(), ENDED_RELISTED);
            drop(session);
            // The re-listed index serves the reconnecting agent every task,
            // and the resumed watch delivers what comes next.
            let mut again = cp.open_agent_session(&caller(), "c", &arn).unwrap();
            assert_eq!(again.snapshot.len(), 20);
            put_task(&store, "t99", &arn);
            let next = again.updates.blocking_recv().unwrap();
            assert_eq!(
                next.task_arn.as_deref(),
                Some("arn:aws:ecs:us-east-1:000000000000:task/c/t99")
            );
        }
    }

    fn inst(
        arn: &str,
        connected: bool,
        registered: f64,
        heard: Option<f64>,
        open: bool,
    ) -> InstanceLiveness {
        InstanceLiveness {
            container_instance_arn: arn.into(),
            agent_connected: connected,
            registered_at: registered,
            last_heard: heard,
            channel_open: open,
        }
    }

    #[test]
    fn silent_agents_go_disconnected_after_the_timeout() {
        let v = liveness(
            &[inst("a", true, 0.0, Some(100.0), false)],
            0.0,
            130.0,
            30.0,
        );
        assert!(v.is_empty(), "exactly at the timeout it is still connected");
        let v = liveness(
            &[inst("a", true, 0.0, Some(100.0), false)],
            0.0,
            130.5,
            30.0,
        );
        assert_eq!(
            v,
            vec![Verdict {
                container_instance_arn: "a".into(),
                connected: false
            }]
        );
    }

    #[test]
    fn an_open_channel_is_connected_whatever_the_clock_says() {
        let v = liveness(&[inst("a", false, 0.0, Some(0.0), true)], 0.0, 1e6, 30.0);
        assert!(v[0].connected);
    }

    #[test]
    fn a_restart_gives_every_agent_the_timeout_to_come_back() {
        // Registered long ago, never heard from since this start.
        let i = [inst("a", true, 10.0, None, false)];
        assert!(liveness(&i, 1000.0, 1020.0, 30.0).is_empty());
        assert_eq!(liveness(&i, 1000.0, 1031.0, 30.0).len(), 1);
    }

    #[test]
    fn a_fresh_registration_counts_as_heard() {
        let i = [inst("a", true, 500.0, Some(100.0), false)];
        assert!(liveness(&i, 0.0, 520.0, 30.0).is_empty());
    }

    #[test]
    fn a_heartbeat_reconnects_a_disconnected_instance() {
        let i = [inst("a", false, 0.0, Some(990.0), false)];
        assert!(liveness(&i, 0.0, 1000.0, 30.0)[0].connected);
    }
}
