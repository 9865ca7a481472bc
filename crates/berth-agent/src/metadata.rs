//! The ECS task metadata endpoint, version 4 (version 3 paths serve the
//! same documents), served by the agent to the containers it runs.
//!
//! Each container gets `ECS_CONTAINER_METADATA_URI_V4=<base>/v4/<id>` in
//! its environment ([`crate::spec`] puts it there), where `<id>` is
//! [`EndpointKey::endpoint_id`]: an HMAC of the task ARN and the container
//! name under the agent's secret key, so it is known when the container is
//! created (before Docker has given it an id), is the same after an agent
//! restart (the key is kept in the data directory), and cannot be derived
//! from another task's ARN. An id answers only for its own task, and for
//! its own container on the container routes.
//!
//! Paths, as in ECS: `/v4/<id>` (the container), `/v4/<id>/task`,
//! `/v4/<id>/taskWithTags`, `/v4/<id>/stats` (Docker's stats JSON of the
//! container) and `/v4/<id>/task/stats` (Docker id to stats, for each
//! container of the task). An unknown id is a 404 with a JSON string.
//!
//! The agent loop feeds [`MetadataState`] each pass ([`MetadataState::set_task`]
//! with what the runtime shows of the task's containers); documents are
//! built from it on request. Where containers reach the server:
//! [`bind`] listens on the host's address on Docker's default bridge (the
//! bridge gateway, reachable from bridge-mode containers and, being a
//! local address of the host, from host-mode ones too), else on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_model::task::Task;
use berth_model::task_definition::{ContainerDefinition, TaskDefinition};
use berth_runtime::{
    labels, BoundPort, ContainerId, ContainerRuntime, ContainerState, ContainerStatus,
    HealthStatus, RuntimeError, Stats,
};
use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::spec;

/// The port ECS serves task metadata on.
pub const DEFAULT_PORT: u16 = 51679;

/// Why the metadata server could not run.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("task metadata server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("task metadata key {path}: {source}")]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the key of endpoint ids is kept, in the agent's data directory.
pub const KEY_FILE: &str = "metadata-key";

/// The agent's secret for endpoint ids: 64 random bytes, generated once per
/// agent and kept in `<data-dir>/metadata-key` (mode 0600), so the id of a
/// container stays valid across agent restarts (a container keeps its
/// environment). Without the key, nobody can derive another task's id from
/// its ARN.
#[derive(Clone)]
pub struct EndpointKey([u8; 64]);

impl std::fmt::Debug for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointKey(..)")
    }
}

impl EndpointKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        Self(bytes)
    }

    /// A key with these bytes (tests).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The key kept in `dir` (see [`KEY_FILE`]), created there (mode 0600)
    /// when absent. A file that does not hold a key is replaced: the ids
    /// of earlier containers stop answering, which fails closed.
    pub fn load_or_create(dir: &std::path::Path) -> Result<Self, MetadataError> {
        let path = dir.join(KEY_FILE);
        let io = |source| MetadataError::Key {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(key) = Self::parse(text.trim()) {
                    return Ok(key);
                }
                tracing::warn!(path = %path.display(), "task metadata key file is malformed; replacing it");
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(err)),
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let key = Self::generate();
        let text: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        // Written whole under a temporary name, then renamed: a crash never
        // leaves half a key.
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(key)
    }

    fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 128 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 64];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// The id of a container's metadata endpoint: `<task id>-<32 hex
    /// digits>`, the digits an HMAC-SHA256 of the task ARN and container
    /// name under this key. URL-safe; the same for the same key, task and
    /// container; unguessable without the key.
    pub fn endpoint_id(&self, task_arn: &str, container_name: &str) -> String {
        use hmac::Mac as _;
        let task_id: String = spec::task_id(task_arn)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(64)
            .collect();
        // The key is exactly SHA-256's block size, so it is used as it is
        // and the constructor has no failure case.
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new(&self.0.into());
        mac.update(task_arn.as_bytes());
        mac.update(&[0]);
        mac.update(container_name.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        if task_id.is_empty() {
            hash
        } else {
            format!("{task_id}-{hash}")
        }
    }
}

/// Where the containers of this host reach the endpoint, and the key of
/// their ids: what [`crate::spec`] needs to give a container its URI.
#[derive(Clone, Debug)]
pub struct MetadataEndpoint {
    /// `http://<address>:<port>`, e.g. `http://172.17.0.1:51679`.
    pub base_uri: String,
    pub key: EndpointKey,
}

/// A network a container is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerNetwork {
    /// `bridge`, `host`, `none` or a user network's name.
    pub network_mode: String,
    pub ipv4_addresses: Vec<String>,
}

/// What the runtime shows of one container of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRuntimeInfo {
    /// The container's name in the task definition.
    pub name: String,
    pub docker_id: String,
    /// The runtime's name of the container (without Docker's leading `/`).
    pub docker_name: String,
    /// The image reference the container was created from.
    pub image: String,
    /// `sha256:...`, when known.
    pub image_id: Option<String>,
    pub status: ContainerStatus,
    pub created_millis: Option<i64>,
    pub started_millis: Option<i64>,
    pub finished_millis: Option<i64>,
    /// Set once the container has exited.
    pub exit_code: Option<i64>,
    pub ports: Vec<BoundPort>,
    pub networks: Vec<ContainerNetwork>,
    pub labels: BTreeMap<String, String>,
    pub health: HealthStatus,
    pub health_output: Option<String>,
}

impl ContainerRuntimeInfo {
    /// From an inspected container; `name` is its task-definition name.
    pub fn from_state(name: impl Into<String>, state: &ContainerState) -> Self {
        let mode = match state.network_mode.as_str() {
            "" | "default" => "bridge",
            other => other,
        };
        let networks = vec![ContainerNetwork {
            network_mode: mode.to_string(),
            ipv4_addresses: state.ip_address.iter().cloned().collect(),
        }];
        Self {
            name: name.into(),
            docker_id: state.id.0.clone(),
            docker_name: state.name.clone(),
            image: state.image.clone(),
            image_id: state.image_id.clone(),
            status: state.status,
            created_millis: state.created_millis,
            started_millis: state.started_millis,
            finished_millis: state.finished_millis,
            exit_code: state.exit_code.filter(|_| state.status.is_stopped()),
            ports: state.ports.clone(),
            networks,
            labels: state.labels.clone(),
            health: state.health,
            health_output: state.health_output.clone(),
        }
    }
}

/// Inspected containers grouped by the task ARN of their Berth labels, for
/// [`MetadataState::set_task`]. Containers without the labels are left out.
pub fn runtime_infos_by_task<'a>(
    states: impl IntoIterator<Item = &'a ContainerState>,
) -> HashMap<String, Vec<ContainerRuntimeInfo>> {
    let mut out: HashMap<String, Vec<ContainerRuntimeInfo>> = HashMap::new();
    for state in states {
        let (Some(task), Some(name)) = (
            state.labels.get(labels::TASK_ARN),
            state.labels.get(labels::CONTAINER_NAME),
        ) else {
            continue;
        };
        out.entry(task.clone())
            .or_default()
            .push(ContainerRuntimeInfo::from_state(name.clone(), state));
    }
    out
}

#[derive(Debug, Clone)]
struct TaskEntry {
    task: Task,
    td: Arc<TaskDefinition>,
    containers: Vec<ContainerRuntimeInfo>,
}

#[derive(Debug)]
struct Inner {
    cluster: String,
    container_instance_arn: String,
    availability_zone: Option<String>,
    container_instance_tags: BTreeMap<String, String>,
    tasks: HashMap<String, TaskEntry>,
    /// Endpoint id to (task ARN, container name).
    ids: HashMap<String, (String, String)>,
    key: EndpointKey,
}

/// What the metadata server knows: this host and the tasks on it. Cheap to
/// clone; clones share the same state.
#[derive(Debug, Clone)]
pub struct MetadataState {
    inner: Arc<RwLock<Inner>>,
}

impl MetadataState {
    /// `cluster` is the cluster's name or ARN (a task's own `clusterArn`
    /// wins); `availability_zone` is this host's, when it has one.
    pub fn new(
        cluster: impl Into<String>,
        container_instance_arn: impl Into<String>,
        availability_zone: Option<String>,
        key: EndpointKey,
    ) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                cluster: cluster.into(),
                container_instance_arn: container_instance_arn.into(),
                availability_zone,
                container_instance_tags: BTreeMap::new(),
                tasks: HashMap::new(),
                ids: HashMap::new(),
                key,
            })),
        }
    }

    /// The container instance this host registered as.
    pub fn container_instance_arn(&self) -> String {
        self.inner.read().container_instance_arn.clone()
    }

    /// The tags `/taskWithTags` shows as `ContainerInstanceTags`.
    pub fn set_container_instance_tags(&self, tags: BTreeMap<String, String>) {
        self.inner.write().container_instance_tags = tags;
    }

    /// Records (or replaces) a task with what the runtime shows of its
    /// containers. Every container of the task definition gets its
    /// endpoint, created yet or not. A task without an ARN is ignored. An
    /// entry that would not change is left as it is (the agent calls this
    /// for every task on every pass).
    pub fn set_task(
        &self,
        task: &Task,
        td: &Arc<TaskDefinition>,
        containers: Vec<ContainerRuntimeInfo>,
    ) {
        let Some(arn) = task.task_arn.as_deref().filter(|a| !a.is_empty()) else {
            tracing::debug!("task without an arn left out of task metadata");
            return;
        };
        {
            let inner = self.inner.read();
            if let Some(entry) = inner.tasks.get(arn) {
                if Arc::ptr_eq(&entry.td, td)
                    && entry.containers == containers
                    && entry.task == *task
                {
                    return;
                }
            }
        }
        let arn = arn.to_string();
        let mut inner = self.inner.write();
        inner.ids.retain(|_, (task_arn, _)| *task_arn != arn);
        for name in td
            .container_definitions
            .iter()
            .flatten()
            .filter_map(|c| c.name.clone())
        {
            let id = inner.key.endpoint_id(&arn, &name);
            inner.ids.insert(id, (arn.clone(), name));
        }
        inner.tasks.insert(
            arn,
            TaskEntry {
                task: task.clone(),
                td: Arc::clone(td),
                containers,
            },
        );
    }

    /// Forgets a task: its endpoints answer 404 from now on.
    pub fn remove_task(&self, task_arn: &str) {
        let mut inner = self.inner.write();
        inner.tasks.remove(task_arn);
        inner.ids.retain(|_, (arn, _)| arn != task_arn);
    }

    /// Forgets every task for which `keep` is false.
    pub fn retain_tasks(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut inner = self.inner.write();
        inner.tasks.retain(|arn, _| keep(arn));
        let Inner { tasks, ids, .. } = &mut *inner;
        ids.retain(|_, (arn, _)| tasks.contains_key(arn));
    }

    /// Whether a request from `peer` may read endpoint `id`: not when
    /// `peer` is the address of a container of another task on this host.
    /// (The id is the secret; this is a second wall. Requests from the
    /// host itself, from the task's own containers, and from addresses not
    /// yet known pass.)
    pub fn may_read(&self, id: &str, peer: IpAddr) -> bool {
        let inner = self.inner.read();
        let Some((entry, _)) = inner.lookup(id) else {
            return true;
        };
        let peer = peer.to_canonical().to_string();
        let owner = inner.tasks.values().find(|t| {
            t.containers
                .iter()
                .any(|c| c.networks.iter().any(|n| n.ipv4_addresses.contains(&peer)))
        });
        owner.is_none_or(|t| t.arn() == entry.arn())
    }

    /// The ARNs of the tasks known.
    pub fn task_arns(&self) -> Vec<String> {
        let mut arns: Vec<String> = self.inner.read().tasks.keys().cloned().collect();
        arns.sort();
        arns
    }

    /// The container document of endpoint `id` (`GET /v4/<id>`).
    pub fn container_document(&self, id: &str) -> Option<Value> {
        let inner = self.inner.read();
        let (entry, name) = inner.lookup(id)?;
        let def = entry.definition(name)?;
        Some(container_document(entry, def))
    }

    /// The task document of endpoint `id` (`GET /v4/<id>/task`, or
    /// `/taskWithTags` when `with_tags`).
    pub fn task_document(&self, id: &str, with_tags: bool) -> Option<Value> {
        let inner = self.inner.read();
        let (entry, _) = inner.lookup(id)?;
        Some(task_document(&inner, entry, with_tags))
    }

    /// The Docker id and name of endpoint `id`'s container (`None` inside
    /// when it has not been created yet), and the Docker ids and names of
    /// every created container of its task.
    fn docker_ids(&self, id: &str) -> Option<Targets> {
        let inner = self.inner.read();
        let (entry, name) = inner.lookup(id)?;
        let pick = |c: &ContainerRuntimeInfo| (c.docker_id.clone(), c.docker_name.clone());
        let container = entry.runtime(name).map(pick);
        let task = entry
            .td
            .container_definitions
            .iter()
            .flatten()
            .filter_map(|d| entry.runtime(d.name.as_deref()?))
            .map(pick)
            .collect();
        Some(Targets {
            task_arn: entry.arn().to_string(),
            container_name: name.to_string(),
            container,
            task,
        })
    }
}

struct Targets {
    task_arn: String,
    container_name: String,
    container: Option<(String, String)>,
    task: Vec<(String, String)>,
}

impl Inner {
    fn lookup(&self, id: &str) -> Option<(&TaskEntry, &str)> {
        let (arn, name) = self.ids.get(id)?;
        Some((self.tasks.get(arn)?, name.as_str()))
    }
}

impl TaskEntry {
    fn arn(&self) -> &str {
        self.task.task_arn.as_deref().unwrap_or_default()
    }

    fn definition(&self, name: &str) -> Option<&ContainerDefinition> {
        self.td
            .container_definitions
            .iter()
            .flatten()
            .find(|c| c.name.as_deref() == Some(name))
    }

    /// The runtime's container for `name`: a live one over an exited one,
    /// else the newest.
    fn runtime(&self, name: &str) -> Option<&ContainerRuntimeInfo> {
        self.containers
            .iter()
            .filter(|c| c.name == name && !c.docker_id.is_empty())
            .max_by_key(|c| (c.status.is_running(), c.created_millis))
    }
}

/// Epoch milliseconds as RFC 3339 in UTC, as ECS (Go) writes times.
fn rfc3339_millis(millis: i64) -> Option<String> {
    if millis <= 0 {
        return None;
    }
    let nanos = i128::from(millis).checked_mul(1_000_000)?;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Epoch seconds (the ECS API's timestamps) as RFC 3339.
fn rfc3339_secs(secs: Option<f64>) -> Option<String> {
    let secs = secs.filter(|s| s.is_finite() && *s > 0.0)?;
    // A finite positive f64 casts to i64 saturating, never panicking.
    rfc3339_millis((secs * 1000.0).round() as i64)
}

fn insert_opt(doc: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        doc.insert(key.to_string(), v.into());
    }
}

fn container_document(entry: &TaskEntry, def: &ContainerDefinition) -> Value {
    let task = &entry.task;
    let task_arn = entry.arn();
    let name = def.name.as_deref().unwrap_or_default();
    let rt = entry.runtime(name);
    let reported = task
        .containers
        .iter()
        .flatten()
        .find(|c| c.name.as_deref() == Some(name));
    let overrides = task
        .overrides
        .as_ref()
        .and_then(|o| o.container_overrides.as_ref())
        .and_then(|list| list.iter().find(|o| o.name.as_deref() == Some(name)));
    let cpu = overrides
        .and_then(|o| o.cpu)
        .or(def.cpu)
        .unwrap_or(0)
        .max(0);
    let memory = overrides
        .and_then(|o| o.memory)
        .or(def.memory)
        .unwrap_or(0)
        .max(0);

    let known_status = match rt.map(|c| c.status) {
        Some(ContainerStatus::Created) => "CREATED",
        Some(s) if s.is_running() => "RUNNING",
        Some(_) => "STOPPED",
        None => match reported.and_then(|c| c.last_status.as_deref()) {
            Some("RUNNING") => "RUNNING",
            Some("STOPPED") => "STOPPED",
            _ => "NONE",
        },
    };

    let mut doc = Map::new();
    doc.insert(
        "DockerId".into(),
        json!(rt.map(|c| c.docker_id.as_str()).unwrap_or_default()),
    );
    doc.insert("Name".into(), json!(name));
    doc.insert(
        "DockerName".into(),
        json!(rt
            .map(|c| c.docker_name.clone())
            .unwrap_or_else(|| spec::runtime_name(task_arn, name))),
    );
    doc.insert(
        "Image".into(),
        json!(rt
            .map(|c| c.image.as_str())
            .filter(|i| !i.is_empty())
            .or(def.image.as_deref())
            .unwrap_or_default()),
    );
    doc.insert(
        "ImageID".into(),
        json!(rt.and_then(|c| c.image_id.as_deref()).unwrap_or_default()),
    );

    let ports: Vec<Value> = match rt {
        Some(c) => c
            .ports
            .iter()
            .map(|p| {
                json!({"ContainerPort": p.container_port, "Protocol": p.protocol.as_str(),
                       "HostPort": p.host_port, "HostIp": p.host_ip})
            })
            .collect(),
        None => reported
            .and_then(|c| c.network_bindings.as_ref())
            .into_iter()
            .flatten()
            .map(|b| {
                let mut port = Map::new();
                insert_opt(&mut port, "ContainerPort", b.container_port);
                insert_opt(&mut port, "Protocol", b.protocol.clone());
                insert_opt(&mut port, "HostPort", b.host_port);
                insert_opt(&mut port, "HostIp", b.bind_ip.clone());
                Value::Object(port)
            })
            .collect(),
    };
    if !ports.is_empty() {
        doc.insert("Ports".into(), Value::Array(ports));
    }

    let labels = match rt {
        Some(c) => c.labels.clone(),
        None => def.docker_labels.clone().unwrap_or_default(),
    };
    if !labels.is_empty() {
        doc.insert("Labels".into(), json!(labels));
    }
    doc.insert(
        "DesiredStatus".into(),
        json!(task.desired_status.as_deref().unwrap_or("RUNNING")),
    );
    doc.insert("KnownStatus".into(), json!(known_status));
    insert_opt(
        &mut doc,
        "ExitCode",
        rt.and_then(|c| c.exit_code)
            .or_else(|| reported.and_then(|c| c.exit_code).map(i64::from)),
    );
    doc.insert(
        "Limits".into(),
        json!({"CPU": f64::from(cpu), "Memory": i64::from(memory)}),
    );
    insert_opt(
        &mut doc,
        "CreatedAt",
        rt.and_then(|c| c.created_millis).and_then(rfc3339_millis),
    );
    insert_opt(
        &mut doc,
        "StartedAt",
        rt.and_then(|c| c.started_millis).and_then(rfc3339_millis),
    );
    insert_opt(
        &mut doc,
        "FinishedAt",
        rt.and_then(|c| c.finished_millis).and_then(rfc3339_millis),
    );
    doc.insert("Type".into(), json!("NORMAL"));
    if let Some(log) = &def.log_configuration {
        doc.insert("LogDriver".into(), json!(log.log_driver));
        if let Some(options) = &log.options {
            doc.insert("LogOptions".into(), json!(options));
        }
    }
    insert_opt(
        &mut doc,
        "ContainerARN",
        reported.and_then(|c| c.container_arn.clone()),
    );
    if let Some(c) = rt {
        let networks: Vec<Value> = c
            .networks
            .iter()
            .map(|n| {
                let mut network = Map::new();
                network.insert("NetworkMode".into(), json!(n.network_mode));
                if !n.ipv4_addresses.is_empty() {
                    network.insert("IPv4Addresses".into(), json!(n.ipv4_addresses));
                }
                Value::Object(network)
            })
            .collect();
        if !networks.is_empty() {
            doc.insert("Networks".into(), Value::Array(networks));
        }
    }
    if def.health_check.is_some() {
        let mut health = Map::new();
        health.insert(
            "status".into(),
            json!(rt.map_or(HealthStatus::Unknown, |c| c.health).as_ecs_str()),
        );
        insert_opt(
            &mut health,
            "output",
            rt.and_then(|c| c.health_output.clone())
                .filter(|o| !o.is_empty()),
        );
        doc.insert("Health".into(), Value::Object(health));
    }
    Value::Object(doc)
}

fn task_document(inner: &Inner, entry: &TaskEntry, with_tags: bool) -> Value {
    let task = &entry.task;
    let td = &entry.td;
    let mut doc = Map::new();
    doc.insert(
        "Cluster".into(),
        json!(task
            .cluster_arn
            .as_deref()
            .filter(|c| !c.is_empty())
            .unwrap_or(&inner.cluster)),
    );
    doc.insert("TaskARN".into(), json!(entry.arn()));
    doc.insert(
        "Family".into(),
        json!(td.family.as_deref().unwrap_or_default()),
    );
    doc.insert(
        "Revision".into(),
        json!(td.revision.map(|r| r.to_string()).unwrap_or_default()),
    );
    insert_opt(&mut doc, "DesiredStatus", task.desired_status.clone());
    doc.insert(
        "KnownStatus".into(),
        json!(task.last_status.as_deref().unwrap_or("NONE")),
    );

    let cpu_units = task
        .cpu
        .as_deref()
        .or(td.cpu.as_deref())
        .and_then(|c| berth_model::units::parse_task_cpu(c).ok());
    let memory_mib = task
        .memory
        .as_deref()
        .or(td.memory.as_deref())
        .and_then(|m| berth_model::units::parse_task_memory(m).ok());
    if cpu_units.is_some() || memory_mib.is_some() {
        let mut limits = Map::new();
        insert_opt(
            &mut limits,
            "CPU",
            cpu_units.map(|u| f64::from(u) / f64::from(berth_model::units::CPU_UNITS_PER_VCPU)),
        );
        insert_opt(&mut limits, "Memory", memory_mib);
        doc.insert("Limits".into(), Value::Object(limits));
    }
    insert_opt(
        &mut doc,
        "PullStartedAt",
        rfc3339_secs(task.pull_started_at),
    );
    insert_opt(
        &mut doc,
        "PullStoppedAt",
        rfc3339_secs(task.pull_stopped_at),
    );
    insert_opt(
        &mut doc,
        "ExecutionStoppedAt",
        rfc3339_secs(task.execution_stopped_at),
    );
    insert_opt(
        &mut doc,
        "AvailabilityZone",
        task.availability_zone
            .clone()
            .or_else(|| inner.availability_zone.clone())
            .filter(|z| !z.is_empty()),
    );
    doc.insert(
        "LaunchType".into(),
        json!(task.launch_type.as_deref().unwrap_or("EC2")),
    );
    insert_opt(
        &mut doc,
        "ServiceName",
        task.group
            .as_deref()
            .and_then(|g| g.strip_prefix("service:"))
            .map(str::to_string),
    );
    let containers: Vec<Value> = td
        .container_definitions
        .iter()
        .flatten()
        .map(|def| container_document(entry, def))
        .collect();
    doc.insert("Containers".into(), Value::Array(containers));
    if with_tags {
        let task_tags: BTreeMap<String, String> = task
            .tags
            .iter()
            .flatten()
            .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
            .collect();
        doc.insert("TaskTags".into(), json!(task_tags));
        doc.insert(
            "ContainerInstanceTags".into(),
            json!(inner.container_instance_tags),
        );
    }
    Value::Object(doc)
}

/// Docker's stats JSON: the engine's own document when the runtime has
/// one, else the same shape built from the sample (simulated runtime).
pub fn stats_document(stats: &Stats, docker_id: &str, docker_name: &str) -> Value {
    if let Some(raw) = &stats.raw {
        return raw.clone();
    }
    let networks: Map<String, Value> = stats
        .networks
        .iter()
        .map(|(name, n)| {
            (
                name.clone(),
                json!({"rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets,
                       "rx_errors": n.rx_errors, "rx_dropped": n.rx_dropped,
                       "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                       "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped}),
            )
        })
        .collect();
    let mut doc = json!({
        "id": docker_id,
        "name": format!("/{docker_name}"),
        "read": rfc3339_millis(stats.read_millis),
        "pids_stats": {"current": stats.pids},
        "cpu_stats": {
            "cpu_usage": {"total_usage": stats.cpu_total_ns},
            "system_cpu_usage": stats.system_cpu_ns,
            "online_cpus": stats.online_cpus,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": stats.precpu_total_ns},
            "system_cpu_usage": stats.presystem_cpu_ns,
            "online_cpus": stats.online_cpus,
        },
        "memory_stats": {
            "usage": stats.memory_usage_bytes,
            "max_usage": stats.memory_max_usage_bytes,
            "limit": stats.memory_limit_bytes,
        },
    });
    if !networks.is_empty() {
        doc["networks"] = Value::Object(networks);
    }
    doc
}

#[derive(Clone)]
struct App {
    state: MetadataState,
    runtime: Arc<dyn ContainerRuntime>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(Value::String(message))).into_response()
}

fn unknown(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("task metadata: no container for endpoint id {id}"),
    )
}

async fn container_handler(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.state.container_document(&id) {
        Some(doc) => Json(doc).into_response(),
        None => unknown(&id),
    }
}

async fn task_handler(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.state.task_document(&id, false) {
        Some(doc) => Json(doc).into_response(),
        None => unknown(&id),
    }
}

async fn task_with_tags_handler(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.state.task_document(&id, true) {
        Some(doc) => Json(doc).into_response(),
        None => unknown(&id),
    }
}

async fn sample(
    runtime: &dyn ContainerRuntime,
    docker_id: &str,
    docker_name: &str,
) -> Result<Value, RuntimeError> {
    let stats = runtime.stats(&ContainerId::from(docker_id)).await?;
    Ok(stats_document(&stats, docker_id, docker_name))
}

async fn container_stats_handler(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(targets) = app.state.docker_ids(&id) else {
        return unknown(&id);
    };
    let Some((docker_id, docker_name)) = targets.container else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "task metadata: container {} has not been created yet",
                targets.container_name
            ),
        );
    };
    match sample(app.runtime.as_ref(), &docker_id, &docker_name).await {
        Ok(doc) => Json(doc).into_response(),
        Err(RuntimeError::NotFound(message)) => error(
            StatusCode::NOT_FOUND,
            format!("task metadata: no stats for container {docker_id}: {message}"),
        ),
        Err(err) => {
            tracing::warn!(task = %targets.task_arn, container = %targets.container_name, error = %err, "container stats failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("task metadata: no stats for container {docker_id}: {err}"),
            )
        }
    }
}

async fn task_stats_handler(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(targets) = app.state.docker_ids(&id) else {
        return unknown(&id);
    };
    let runtime = app.runtime.as_ref();
    let samples = futures_util::future::join_all(
        targets
            .task
            .iter()
            .map(|(docker_id, docker_name)| sample(runtime, docker_id, docker_name)),
    )
    .await;
    let mut doc = Map::new();
    for ((docker_id, _), result) in targets.task.iter().zip(samples) {
        let value = match result {
            Ok(v) => v,
            Err(err) => {
                tracing::debug!(task = %targets.task_arn, docker_id = %docker_id, error = %err, "container stats failed");
                Value::Null
            }
        };
        doc.insert(docker_id.clone(), value);
    }
    Json(Value::Object(doc)).into_response()
}

/// Every route under an endpoint id answers only a reader that may read
/// it (`MetadataState::may_read`): one layer checks it for all of them.
async fn only_its_own(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !app.state.may_read(&id, peer.ip()) {
        return unknown(&id);
    }
    next.run(request).await
}

async fn fallback() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "task metadata: no such path".to_string(),
    )
}

/// The metadata routes: `/v4/...` and the same under `/v3/...`.
pub fn router(state: MetadataState, runtime: Arc<dyn ContainerRuntime>) -> Router {
    let mut router = Router::new();
    for version in ["v3", "v4"] {
        router = router
            .route(&format!("/{version}/{{id}}"), get(container_handler))
            .route(&format!("/{version}/{{id}}/task"), get(task_handler))
            .route(
                &format!("/{version}/{{id}}/taskWithTags"),
                get(task_with_tags_handler),
            )
            .route(
                &format!("/{version}/{{id}}/stats"),
                get(container_stats_handler),
            )
            .route(
                &format!("/{version}/{{id}}/task/stats"),
                get(task_stats_handler),
            );
    }
    let app = App { state, runtime };
    router
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            only_its_own,
        ))
        .fallback(fallback)
        .with_state(app)
}

/// Serves the metadata endpoint on `listener` until `shutdown` resolves.
pub async fn serve<F>(
    listener: TcpListener,
    state: MetadataState,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown: F,
) -> Result<(), MetadataError>
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(addr = %addr, "serving task metadata");
    }
    axum::serve(
        listener,
        router(state, runtime).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(MetadataError::Serve)
}

/// A bound metadata listener and the base URI containers reach it at.
#[derive(Debug)]
pub struct MetadataListener {
    pub listener: TcpListener,
    /// `http://<address>:<bound port>`, without a trailing slash: the value
    /// of `HostSettings::metadata_uri_base`.
    pub base_uri: String,
}

/// The base URI of a server listening on `addr`.
pub fn base_uri(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Listens where the containers of this host can reach: the host's address
/// on Docker's default bridge network when the runtime has one and it is
/// an address of this host, else 127.0.0.1 (reachable from host-mode
/// containers only). `port` 0 takes an ephemeral port; the base URI
/// carries the port actually bound.
pub async fn bind(
    runtime: &dyn ContainerRuntime,
    port: u16,
) -> Result<MetadataListener, MetadataError> {
    let gateway = match runtime.bridge_gateway().await {
        Ok(g) => g,
        Err(err) => {
            tracing::warn!(error = %err, "cannot find the docker bridge gateway");
            None
        }
    };
    if let Some(ip) = gateway {
        let addr = SocketAddr::new(ip, port);
        match TcpListener::bind(addr).await {
            Ok(listener) => return finish(listener, addr),
            Err(err) => {
                tracing::warn!(addr = %addr, error = %err, "cannot listen on the bridge gateway; bridge-mode containers will not reach task metadata");
            }
        }
    }
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetadataError::Bind { addr, source })?;
    finish(listener, addr)
}

fn finish(listener: TcpListener, addr: SocketAddr) -> Result<MetadataListener, MetadataError> {
    let local = listener
        .local_addr()
        .map_err(|source| MetadataError::Bind { addr, source })?;
    Ok(MetadataListener {
        listener,
        base_uri: base_uri(local),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use berth_model::common::Tag;
    use berth_model::task::{Container, NetworkBinding};
    use berth_model::task_definition::{HealthCheck, LogConfiguration};
    use berth_runtime::{ManualClock, Protocol, SimulatedConfig, SimulatedRuntime};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TASK_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef";

    fn key() -> EndpointKey {
        EndpointKey::from_bytes([42; 64])
    }

    fn endpoint_id(task_arn: &str, container_name: &str) -> String {
        key().endpoint_id(task_arn, container_name)
    }

    /// The id the endpoint had before it was keyed: FNV-1a of the task ARN
    /// and the container name, which anyone who knows the ARN can compute.
    fn unkeyed_id(task_arn: &str, container_name: &str) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in task_arn
            .bytes()
            .chain(std::iter::once(0))
            .chain(container_name.bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{}-{hash:016x}", spec::task_id(task_arn))
    }

    #[test]
    fn ids_depend_on_the_key_and_cannot_be_derived_from_the_arn() {
        let other = EndpointKey::from_bytes([43; 64]);
        assert_ne!(
            key().endpoint_id(TASK_ARN, "app"),
            other.endpoint_id(TASK_ARN, "app")
        );
        let state = state_with_task();
        // What a container that knows the ARN could compute answers nothing.
        for id in [
            unkeyed_id(TASK_ARN, "app"),
            other.endpoint_id(TASK_ARN, "app"),
            spec::task_id(TASK_ARN).to_string(),
        ] {
            assert!(state.task_document(&id, false).is_none(), "{id}");
            assert!(state.container_document(&id).is_none(), "{id}");
            assert!(state.docker_ids(&id).is_none(), "{id}");
        }
        assert!(state
            .task_document(&endpoint_id(TASK_ARN, "app"), false)
            .is_some());
    }

    #[test]
    fn an_id_answers_for_its_own_task_and_container_only() {
        let state = state_with_task();
        let (mut other, td) = fixture();
        let other_arn = TASK_ARN.replace("0123456789abcdef", "fedcba9876543210");
        other.task_arn = Some(other_arn.clone());
        state.set_task(&other, &Arc::new(td), Vec::new());
        let mine = endpoint_id(TASK_ARN, "app");
        let theirs = endpoint_id(&other_arn, "app");
        assert_eq!(
            state.task_document(&mine, false).unwrap()["TaskARN"],
            TASK_ARN
        );
        assert_eq!(
            state.task_document(&theirs, false).unwrap()["TaskARN"],
            other_arn.as_str()
        );
        assert_eq!(
            state.container_document(&mine).unwrap()["DockerId"],
            "d0c4e7"
        );
        assert_eq!(state.container_document(&theirs).unwrap()["DockerId"], "");
        let sidecar = endpoint_id(TASK_ARN, "sidecar");
        assert_eq!(
            state.container_document(&sidecar).unwrap()["Name"],
            "sidecar"
        );
    }

    #[test]
    fn a_container_of_another_task_is_refused_even_with_the_id() {
        let state = state_with_task();
        let (mut other, td) = fixture();
        let other_arn = TASK_ARN.replace("0123456789abcdef", "fedcba9876543210");
        other.task_arn = Some(other_arn.clone());
        let mut theirs = app_state();
        theirs.id = ContainerId("0th3r".into());
        theirs.ip_address = Some("172.17.0.9".into());
        theirs
            .labels
            .insert(labels::TASK_ARN.into(), other_arn.clone());
        state.set_task(
            &other,
            &Arc::new(td),
            vec![ContainerRuntimeInfo::from_state("app", &theirs)],
        );
        let mine = endpoint_id(TASK_ARN, "app");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Its own container (172.17.0.5), the host, an unknown address.
        for peer in ["172.17.0.5", "172.17.0.1", "127.0.0.1", "10.1.2.3"] {
            assert!(state.may_read(&mine, ip(peer)), "{peer}");
        }
        assert!(!state.may_read(&mine, ip("172.17.0.9")));
        assert!(!state.may_read(&mine, ip("::ffff:172.17.0.9")));
        assert!(state.may_read(&endpoint_id(&other_arn, "app"), ip("172.17.0.9")));
    }

    #[test]
    fn the_key_is_kept_private_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!(
            "berth-metadata-key-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let first = EndpointKey::load_or_create(&dir).unwrap();
        let again = EndpointKey::load_or_create(&dir).unwrap();
        assert_eq!(
            first.endpoint_id(TASK_ARN, "app"),
            again.endpoint_id(TASK_ARN, "app")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{first:?}"), "EndpointKey(..)");
        // Another agent (another data directory) has another key.
        let elsewhere = EndpointKey::load_or_create(&dir.join("other")).unwrap();
        assert_ne!(
            first.endpoint_id(TASK_ARN, "app"),
            elsewhere.endpoint_id(TASK_ARN, "app")
        );
        // A damaged file is replaced rather than trusted.
        std::fs::write(dir.join(KEY_FILE), "not a key").unwrap();
        let replaced = EndpointKey::load_or_create(&dir).unwrap();
        assert_ne!(
            first.endpoint_id(TASK_ARN, "app"),
            replaced.endpoint_id(TASK_ARN, "app")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn fixture() -> (Task, TaskDefinition) {
        let td = TaskDefinition {
            task_definition_arn: Some(
                "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3".into(),
            ),
            family: Some("web".into()),
            revision: Some(3),
            cpu: Some("512".into()),
            memory: Some("1 GB".into()),
            container_definitions: Some(vec![
                ContainerDefinition {
                    name: Some("app".into()),
                    image: Some("busybox:latest".into()),
                    cpu: Some(128),
                    memory: Some(64),
                    docker_labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                    health_check: Some(HealthCheck {
                        command: vec!["CMD-SHELL".into(), "true".into()],
                        ..Default::default()
                    }),
                    log_configuration: Some(LogConfiguration {
                        log_driver: "json-file".into(),
                        options: Some(BTreeMap::from([("max-size".into(), "1m".into())])),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ContainerDefinition {
                    name: Some("sidecar".into()),
                    image: Some("busybox:1.36".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let task = Task {
            task_arn: Some(TASK_ARN.into()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/default".into()),
            desired_status: Some("RUNNING".into()),
            last_status: Some("RUNNING".into()),
            availability_zone: Some("us-east-1a".into()),
            pull_started_at: Some(1_700_000_000.5),
            pull_stopped_at: Some(1_700_000_001.0),
            group: Some("service:api".into()),
            tags: Some(vec![Tag {
                key: Some("env".into()),
                value: Some("test".into()),
            }]),
            containers: Some(vec![
                Container {
                    name: Some("app".into()),
                    container_arn: Some(
                        "arn:aws:ecs:us-east-1:000000000000:container/default/0123456789abcdef/c1"
                            .into(),
                    ),
                    last_status: Some("RUNNING".into()),
                    ..Default::default()
                },
                Container {
                    name: Some("sidecar".into()),
                    last_status: Some("PENDING".into()),
                    network_bindings: Some(vec![NetworkBinding {
                        container_port: Some(80),
                        host_port: Some(49200),
                        protocol: Some("tcp".into()),
                        bind_ip: Some("0.0.0.0".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        (task, td)
    }

    fn app_state() -> ContainerState {
        ContainerState {
            id: ContainerId("d0c4e7".into()),
            name: spec::runtime_name(TASK_ARN, "app"),
            image: "busybox:latest".into(),
            image_id: Some("sha256:abc".into()),
            status: ContainerStatus::Running,
            exit_code: Some(0),
            oom_killed: false,
            error: None,
            health: HealthStatus::Healthy,
            health_output: Some("ok".into()),
            created_millis: Some(1_700_000_002_000),
            started_millis: Some(1_700_000_003_250),
            finished_millis: None,
            ports: vec![BoundPort {
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_ip: "127.0.0.1".into(),
                host_port: 49153,
            }],
            ip_address: Some("172.17.0.5".into()),
            network_mode: "bridge".into(),
            labels: BTreeMap::from([
                (labels::TASK_ARN.to_string(), TASK_ARN.to_string()),
                (labels::CONTAINER_NAME.to_string(), "app".to_string()),
            ]),
            memory_limit_bytes: None,
            memory_reservation_bytes: None,
            cpu_shares: None,
            pid: Some(42),
        }
    }

    fn state_with_task() -> MetadataState {
        let (task, td) = fixture();
        let state = MetadataState::new(
            "default",
            "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i1",
            Some("zone-of-host".into()),
            key(),
        );
        let states = [app_state()];
        let mut infos = runtime_infos_by_task(states.iter());
        state.set_task(
            &task,
            &Arc::new(td),
            infos.remove(TASK_ARN).unwrap_or_default(),
        );
        state
    }

    #[test]
    fn endpoint_ids_are_stable_distinct_and_url_safe() {
        let a = endpoint_id(TASK_ARN, "app");
        assert_eq!(a, endpoint_id(TASK_ARN, "app"));
        assert!(a.starts_with("0123456789abcdef-"), "{a}");
        assert_ne!(a, endpoint_id(TASK_ARN, "sidecar"));
        assert_ne!(a, endpoint_id(&TASK_ARN.replace("0123", "9999"), "app"));
        for id in [a, endpoint_id("weird/ta sk?#", "x/y"), endpoint_id("", "")] {
            assert!(!id.is_empty());
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
    }

    #[test]
    fn container_document_has_the_ecs_fields() {
        let state = state_with_task();
        let doc = state
            .container_document(&endpoint_id(TASK_ARN, "app"))
            .unwrap();
        assert_eq!(doc["DockerId"], "d0c4e7");
        assert_eq!(doc["Name"], "app");
        assert_eq!(doc["DockerName"], spec::runtime_name(TASK_ARN, "app"));
        assert_eq!(doc["Image"], "busybox:latest");
        assert_eq!(doc["ImageID"], "sha256:abc");
        assert_eq!(doc["DesiredStatus"], "RUNNING");
        assert_eq!(doc["KnownStatus"], "RUNNING");
        assert_eq!(doc["Limits"], json!({"CPU": 128.0, "Memory": 64}));
        assert_eq!(doc["CreatedAt"], "2023-11-14T22:13:22Z");
        assert_eq!(doc["StartedAt"], "2023-11-14T22:13:23.25Z");
        assert!(doc.get("FinishedAt").is_none());
        // Running: no exit code yet, even if the engine still shows 0.
        assert!(doc.get("ExitCode").is_none());
        assert_eq!(doc["Type"], "NORMAL");
        assert_eq!(
            doc["Networks"],
            json!([{"NetworkMode": "bridge", "IPv4Addresses": ["172.17.0.5"]}])
        );
        assert_eq!(
            doc["Ports"],
            json!([{"ContainerPort": 8080, "Protocol": "tcp", "HostPort": 49153, "HostIp": "127.0.0.1"}])
        );
        assert_eq!(doc["Labels"][labels::CONTAINER_NAME], "app");
        assert_eq!(
            doc["ContainerARN"],
            "arn:aws:ecs:us-east-1:000000000000:container/default/0123456789abcdef/c1"
        );
        assert_eq!(doc["Health"], json!({"status": "HEALTHY", "output": "ok"}));
        assert_eq!(doc["LogDriver"], "json-file");
        assert_eq!(doc["LogOptions"], json!({"max-size": "1m"}));
    }

    #[test]
    fn a_container_not_yet_created_is_described_from_the_task() {
        let state = state_with_task();
        let doc = state
            .container_document(&endpoint_id(TASK_ARN, "sidecar"))
            .unwrap();
        assert_eq!(doc["DockerId"], "");
        assert_eq!(doc["DockerName"], spec::runtime_name(TASK_ARN, "sidecar"));
        assert_eq!(doc["Image"], "busybox:1.36");
        assert_eq!(doc["KnownStatus"], "NONE");
        assert_eq!(doc["Limits"], json!({"CPU": 0.0, "Memory": 0}));
        assert_eq!(doc["Ports"][0]["HostPort"], 49200);
        assert!(doc.get("Health").is_none());
        assert!(doc.get("Networks").is_none());
    }

    #[test]
    fn exited_container_shows_its_exit_code_and_finish() {
        let (task, td) = fixture();
        let mut exited = app_state();
        exited.status = ContainerStatus::Exited;
        exited.exit_code = Some(3);
        exited.finished_millis = Some(1_700_000_010_000);
        let state = MetadataState::new("default", "ci", None, key());
        state.set_task(
            &task,
            &Arc::new(td),
            vec![ContainerRuntimeInfo::from_state("app", &exited)],
        );
        let doc = state
            .container_document(&endpoint_id(TASK_ARN, "app"))
            .unwrap();
        assert_eq!(doc["KnownStatus"], "STOPPED");
        assert_eq!(doc["ExitCode"], 3);
        assert_eq!(doc["FinishedAt"], "2023-11-14T22:13:30Z");
    }

    #[test]
    fn task_document_has_the_ecs_fields() {
        let state = state_with_task();
        let id = endpoint_id(TASK_ARN, "sidecar");
        let doc = state.task_document(&id, false).unwrap();
        assert_eq!(
            doc["Cluster"],
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
        assert_eq!(doc["TaskARN"], TASK_ARN);
        assert_eq!(doc["Family"], "web");
        assert_eq!(doc["Revision"], "3");
        assert_eq!(doc["DesiredStatus"], "RUNNING");
        assert_eq!(doc["KnownStatus"], "RUNNING");
        assert_eq!(doc["Limits"], json!({"CPU": 0.5, "Memory": 1024}));
        assert_eq!(doc["PullStartedAt"], "2023-11-14T22:13:20.5Z");
        assert_eq!(doc["PullStoppedAt"], "2023-11-14T22:13:21Z");
        assert_eq!(doc["AvailabilityZone"], "us-east-1a");
        assert_eq!(doc["LaunchType"], "EC2");
        assert_eq!(doc["ServiceName"], "api");
        let names: Vec<&str> = doc["Containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["app", "sidecar"]);
        assert_eq!(doc["Containers"][0]["DockerId"], "d0c4e7");
        assert!(doc.get("TaskTags").is_none());

        let tagged = state.task_document(&id, true).unwrap();
        assert_eq!(tagged["TaskTags"], json!({"env": "test"}));
        assert_eq!(tagged["ContainerInstanceTags"], json!({}));
        state.set_container_instance_tags(BTreeMap::from([("rack".into(), "r1".into())]));
        let tagged = state.task_document(&id, true).unwrap();
        assert_eq!(tagged["ContainerInstanceTags"], json!({"rack": "r1"}));
    }

    #[test]
    fn host_settings_fill_what_the_task_lacks() {
        let (mut task, td) = fixture();
        task.cluster_arn = None;
        task.availability_zone = None;
        task.cpu = None;
        let td = TaskDefinition {
            cpu: None,
            memory: None,
            ..td
        };
        let state = MetadataState::new("default", "ci", Some("zone-of-host".into()), key());
        state.set_task(&task, &Arc::new(td), Vec::new());
        let doc = state
            .task_document(&endpoint_id(TASK_ARN, "app"), false)
            .unwrap();
        assert_eq!(doc["Cluster"], "default");
        assert_eq!(doc["AvailabilityZone"], "zone-of-host");
        assert!(doc.get("Limits").is_none());
    }

    #[test]
    fn removed_and_unknown_tasks_have_no_documents() {
        let state = state_with_task();
        let id = endpoint_id(TASK_ARN, "app");
        assert!(state.container_document("nope").is_none());
        assert!(state.task_document("nope", true).is_none());
        assert_eq!(state.task_arns(), [TASK_ARN]);
        state.retain_tasks(|arn| arn == TASK_ARN);
        assert!(state.task_document(&id, false).is_some());
        state.remove_task(TASK_ARN);
        assert!(state.container_document(&id).is_none());
        assert!(state.task_document(&id, false).is_none());
        assert!(state.task_arns().is_empty());

        let state = state_with_task();
        state.retain_tasks(|_| false);
        assert!(state.task_document(&id, false).is_none());
    }

    #[test]
    fn replacing_a_task_drops_endpoints_of_containers_it_no_longer_has() {
        let state = state_with_task();
        let (task, mut td) = fixture();
        if let Some(defs) = td.container_definitions.as_mut() {
            defs.retain(|c| c.name.as_deref() == Some("app"));
        }
        state.set_task(&task, &Arc::new(td), Vec::new());
        assert!(state
            .container_document(&endpoint_id(TASK_ARN, "sidecar"))
            .is_none());
        let doc = state
            .container_document(&endpoint_id(TASK_ARN, "app"))
            .unwrap();
        assert_eq!(doc["DockerId"], "");
    }

    async fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: metadata\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn serves_documents_and_stats_over_http() {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let sim = Arc::new(SimulatedRuntime::new(SimulatedConfig::default(), clock));
        let runtime: Arc<dyn ContainerRuntime> = sim.clone();
        let (task, td) = fixture();
        let host = spec::HostSettings {
            cluster: "default".into(),
            container_instance_arn: "ci".into(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            metadata: None,
        };
        let spec = spec::container_spec(&host, &task, &td, "app").unwrap();
        runtime.ensure_image(&spec.image, None).await.unwrap();
        let docker_id = runtime.create(&spec).await.unwrap();
        runtime.start(&docker_id).await.unwrap();
        let inspected = runtime.inspect(&docker_id).await.unwrap();

        let state = MetadataState::new("default", "ci", None, key());
        let mut infos = runtime_infos_by_task([&inspected]);
        state.set_task(&task, &Arc::new(td), infos.remove(TASK_ARN).unwrap());

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, runtime, async {
            let _ = stopped.await;
        }));

        let id = endpoint_id(TASK_ARN, "app");
        let (status, doc) = http_get(addr, &format!("/v4/{id}/task")).await;
        assert_eq!(status, 200);
        assert_eq!(doc["TaskARN"], TASK_ARN);
        assert_eq!(doc["Containers"][0]["DockerId"], docker_id.0);

        let (status, doc) = http_get(addr, &format!("/v3/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(doc["Name"], "app");

        let (status, doc) = http_get(addr, &format!("/v4/{id}/taskWithTags")).await;
        assert_eq!(status, 200);
        assert_eq!(doc["TaskTags"], json!({"env": "test"}));

        let (status, doc) = http_get(addr, &format!("/v4/{id}/stats")).await;
        assert_eq!(status, 200);
        assert_eq!(doc["id"], docker_id.0);
        assert!(doc["memory_stats"]["usage"].as_u64().unwrap() > 0);

        let (status, doc) = http_get(addr, &format!("/v4/{id}/task/stats")).await;
        assert_eq!(status, 200);
        let map = doc.as_object().unwrap();
        assert_eq!(map.len(), 1);
        assert!(map[&docker_id.0]["cpu_stats"].is_object());

        // The sidecar has no container yet.
        let sidecar = endpoint_id(TASK_ARN, "sidecar");
        let (status, doc) = http_get(addr, &format!("/v4/{sidecar}/stats")).await;
        assert_eq!(status, 404);
        assert!(doc.as_str().unwrap().contains("sidecar"));

        for path in [
            "/v4/unknown-id",
            "/v4/unknown-id/task",
            "/v4/unknown-id/taskWithTags",
            "/v4/unknown-id/stats",
            "/v4/unknown-id/task/stats",
            "/v2/metadata",
        ] {
            let (status, doc) = http_get(addr, path).await;
            assert_eq!(status, 404, "{path}");
            assert!(doc.is_string(), "{path}: {doc}");
        }

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn bind_falls_back_to_loopback_with_the_real_port() {
        let sim = SimulatedRuntime::new(SimulatedConfig::default(), Arc::new(ManualClock::new(0)));
        let bound = bind(&sim, 0).await.unwrap();
        let local = bound.listener.local_addr().unwrap();
        assert_eq!(local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(local.port(), 0);
        assert_eq!(bound.base_uri, format!("http://127.0.0.1:{}", local.port()));
    }

    #[test]
    fn builds_stats_when_the_runtime_has_no_document() {
        let stats = Stats {
            read_millis: 1_700_000_000_000,
            cpu_total_ns: 5,
            system_cpu_ns: Some(10),
            precpu_total_ns: 1,
            presystem_cpu_ns: Some(2),
            online_cpus: Some(2),
            memory_usage_bytes: 1024,
            memory_max_usage_bytes: None,
            memory_limit_bytes: Some(4096),
            networks: BTreeMap::new(),
            pids: Some(1),
            raw: None,
        };
        let doc = stats_document(&stats, "abc", "berth-x");
        assert_eq!(doc["name"], "/berth-x");
        assert_eq!(doc["cpu_stats"]["cpu_usage"]["total_usage"], 5);
        assert_eq!(doc["memory_stats"]["limit"], 4096);
        let raw = Stats {
            raw: Some(json!({"docker": true})),
            ..stats
        };
        assert_eq!(stats_document(&raw, "abc", "x"), json!({"docker": true}));
    }
}
