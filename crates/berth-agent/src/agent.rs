//! The agent's loop: register the host, then repeatedly gather the tasks
//! the control plane placed here and the containers the runtime shows, let
//! [`crate::reconcile`] decide, and carry the actions out. Every step is
//! idempotent, so a crash or a lost report is repaired by the next pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use berth_model::task::Task;
use berth_model::task_definition::TaskDefinition;
use berth_runtime::{labels, ContainerRuntime, ContainerStatus, LabelFilter, RegistryAuth};
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use crate::channel::{Channel, ChannelSettings};
use crate::reconcile::{self, Action, DesiredTask, Observed, Options, ReportedHealth, State};
use crate::spec::{self, HostSettings};
use berth_client::{CallError, EcsClient};

/// How many containers one pass launches at once.
const LAUNCH_CONCURRENCY: usize = 8;

/// Ports the host keeps for itself, as the ECS agent reserves them.
pub const RESERVED_PORTS: &[u16] = &[22, 2375, 2376, 51678, 51679];

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub cluster: String,
    pub availability_zone: Option<String>,
    pub instance_type: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub bind_ip: IpAddr,
    pub poll_interval: Duration,
    /// Memory kept back from tasks for the host itself.
    pub memory_reserve_mib: u64,
    pub cleanup_delay: Duration,
    /// Timing of the channel to the control plane.
    pub channel: ChannelSettings,
    /// Port of the task metadata endpoint (ECS uses 51679; 0 picks a free
    /// one); `None` serves none.
    pub metadata_port: Option<u16>,
    /// This host's dynamic host port range, when not the default
    /// 49153-65535; registered as an attribute placement reads.
    pub dynamic_port_range: Option<(u16, u16)>,
    /// What listens on this host's ports: the ports of the dynamic range
    /// held by something other than this agent's tasks are registered as
    /// unusable (`ProcNetTcp` for Docker, `NoHostPorts` for simulated
    /// hosts).
    pub host_ports: Arc<dyn berth_runtime::HostPorts>,
}

/// The task metadata endpoint this agent serves, and what it knows.
#[derive(Debug)]
struct Metadata {
    state: crate::metadata::MetadataState,
    endpoint: crate::metadata::MetadataEndpoint,
    /// Dropped with the agent, which ends the server.
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("control plane call {operation} failed: {source}")]
    Call {
        operation: &'static str,
        source: CallError,
    },
    #[error("container runtime failed: {0}")]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error("agent state file: {0}")]
    State(String),
}

/// A registered, running agent.
#[derive(Debug)]
pub struct Agent {
    client: EcsClient,
    runtime: Arc<dyn ContainerRuntime>,
    config: AgentConfig,
    instance_arn: String,
    task_definitions: HashMap<String, Arc<TaskDefinition>>,
    channel: Option<Channel>,
    /// Berth's registry token, until a little before it expires.
    registry_token: tokio::sync::Mutex<Option<(RegistryAuth, f64)>>,
    metadata: Option<Metadata>,
    stops: StopsInFlight,
    /// The RegisterContainerInstance body (with this instance's ARN), sent
    /// again when the host ports it cannot use change.
    registration: Value,
    ports: tokio::sync::Mutex<UnusablePorts>,
}

/// The dynamic range when the agent is given none (ECS's).
const DEFAULT_DYNAMIC_PORT_RANGE: (u16, u16) = (49153, 65535);
/// How often (at most) the agent looks at which host ports are in use.
const PORT_SCAN_INTERVAL_MILLIS: i64 = 5_000;
/// How long a host port a container could not bind stays reported
/// unusable; then it is offered again (whatever held it may be gone).
const FAILED_PORT_HOLD_MILLIS: i64 = 10 * 60 * 1000;
/// At most this many unusable ports are registered (the lowest), so that a
/// host full of listeners keeps a small registration.
const MAX_UNUSABLE_PORTS: usize = 1024;

/// Host ports of this agent's dynamic range that its tasks cannot have.
#[derive(Debug, Default)]
struct UnusablePorts {
    /// What the registration says now (besides [`RESERVED_PORTS`]).
    registered: BTreeSet<u16>,
    /// Ports a container could not bind (at most one entry per port
    /// number, each ending within [`FAILED_PORT_HOLD_MILLIS`]).
    failed: BTreeMap<u16, FailedPort>,
    /// Host ports this agent's tasks hold, as of the last pass.
    own: BTreeSet<u16>,
    /// When the host's ports were last looked at (epoch ms).
    scanned_millis: Option<i64>,
}

/// A host port a container could not bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FailedPort {
    /// Reported unusable until then (epoch ms) at the latest.
    until_millis: i64,
    /// A look at the host has seen something listen on it since: once
    /// nothing does, it is free again. (Docker can refuse a port that no
    /// socket shows, e.g. one allocated to another container: that one is
    /// held until `until_millis`.)
    seen_listening: bool,
}

impl UnusablePorts {
    /// What to report unusable, given what listens on the host now; ends
    /// the hold of failed ports that are free again.
    fn observe(
        &mut self,
        listening: &BTreeSet<u16>,
        range: (u16, u16),
        now_millis: i64,
    ) -> BTreeSet<u16> {
        self.failed.retain(|port, f| {
            if listening.contains(port) {
                f.seen_listening = true;
                true
            } else {
                !f.seen_listening && f.until_millis > now_millis
            }
        });
        let failed: BTreeMap<u16, i64> = self
            .failed
            .iter()
            .map(|(p, f)| (*p, f.until_millis))
            .collect();
        unusable_ports(listening, range, &self.own, &failed, now_millis)
    }
}

/// The host ports to report unusable: those something listens on within
/// `range` that no task of this agent holds, and those a container could
/// not bind until their hold ends; at most [`MAX_UNUSABLE_PORTS`].
pub fn unusable_ports(
    listening: &BTreeSet<u16>,
    range: (u16, u16),
    own: &BTreeSet<u16>,
    failed: &BTreeMap<u16, i64>,
    now_millis: i64,
) -> BTreeSet<u16> {
    let (first, last) = range;
    listening
        .range(first..=last.max(first))
        .filter(|p| !own.contains(p))
        .chain(
            failed
                .iter()
                .filter(|(_, until)| **until > now_millis)
                .map(|(p, _)| p),
        )
        .copied()
        .collect::<BTreeSet<u16>>()
        .into_iter()
        .take(MAX_UNUSABLE_PORTS)
        .collect()
}

/// The host ports of `candidates` that a bind error names (Docker says
/// `Bind for 0.0.0.0:49153 failed` or `listen tcp4 127.0.0.1:49153: bind`);
/// all of them when it names none.
pub fn ports_named_in(message: &str, candidates: &[u16]) -> Vec<u16> {
    let named: Vec<u16> = candidates
        .iter()
        .copied()
        .filter(|p| {
            let needle = format!(":{p}");
            message.match_indices(&needle).any(|(at, _)| {
                !message[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .collect();
    if named.is_empty() {
        candidates.to_vec()
    } else {
        named
    }
}

/// The `PORTS` resource of a registration: the ports the host keeps for
/// itself and the ones found unusable.
fn ports_resource(unusable: &BTreeSet<u16>) -> Value {
    let ports: BTreeSet<u16> = RESERVED_PORTS
        .iter()
        .chain(unusable.iter())
        .copied()
        .collect();
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    json!({"name": "PORTS", "type": "STRINGSET", "stringSetValue": ports})
}

/// The container stops under way, by container id. A stop waits out the
/// container's grace period while passes go on, and each pass that still
/// sees the container running asks to stop it again: only the first ask
/// starts a stop, until that one finishes or fails. At most one entry per
/// container of this host.
#[derive(Clone, Debug, Default)]
struct StopsInFlight(Arc<parking_lot::Mutex<std::collections::HashSet<String>>>);

impl StopsInFlight {
    /// Stops container `id` in the background unless a stop of it is
    /// already under way; true when this call started one.
    fn start(&self, runtime: &Arc<dyn ContainerRuntime>, id: &str, timeout: Duration) -> bool {
        if !self.0.lock().insert(id.to_string()) {
            return false;
        }
        // Forgets the stop when the task ends, however it ends.
        struct Done(StopsInFlight, String);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0 .0.lock().remove(&self.1);
            }
        }
        let done = Done(self.clone(), id.to_string());
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let id = berth_runtime::ContainerId(done.1.clone());
            if let Err(err) = runtime.stop(&id, timeout).await {
                tracing::warn!(error = %err, container = %id.0, "stop failed");
            }
            drop(done);
        });
        true
    }
}

fn state_file(config: &AgentConfig) -> PathBuf {
    config.data_dir.join("agent-instance.json")
}

impl Agent {
    /// Registers this host (again, under its earlier ARN, when it has one).
    pub async fn register(
        client: EcsClient,
        runtime: Arc<dyn ContainerRuntime>,
        config: AgentConfig,
    ) -> Result<Self, AgentError> {
        let info = runtime.info().await?;
        let memory_mib =
            (info.memory_bytes / (1024 * 1024)).saturating_sub(config.memory_reserve_mib);
        let arch = match info.architecture.as_str() {
            "aarch64" | "arm64" => "arm64",
            _ => "x86_64",
        };
        let mut attributes = vec![
            json!({"name": "ecs.os-type", "value": info.os_type}),
            json!({"name": "ecs.cpu-architecture", "value": arch}),
            json!({"name": "com.amazonaws.ecs.capability.docker-remote-api.1.17"}),
            json!({"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}),
            json!({"name": "com.amazonaws.ecs.capability.docker-remote-api.1.19"}),
            json!({"name": "com.amazonaws.ecs.capability.docker-remote-api.1.21"}),
            json!({"name": "com.amazonaws.ecs.capability.docker-remote-api.1.24"}),
            json!({"name": "com.amazonaws.ecs.capability.docker-remote-api.1.29"}),
            json!({"name": "ecs.capability.container-health-check"}),
            json!({"name": "ecs.capability.container-ordering"}),
        ];
        if info.simulated {
            attributes.push(json!({"name": "berth.runtime", "value": "simulated"}));
        }
        if let Some(z) = &config.availability_zone {
            attributes.push(json!({"name": "ecs.availability-zone", "value": z}));
        }
        if let Some(t) = &config.instance_type {
            attributes.push(json!({"name": "ecs.instance-type", "value": t}));
        }
        if let Some((first, last)) = config.dynamic_port_range {
            attributes.push(json!({"name": berth_model::container_instance::DYNAMIC_PORT_RANGE_ATTRIBUTE, "value": format!("{first}-{last}")}));
        }
        for (k, v) in &config.attributes {
            attributes.push(json!({"name": k, "value": v}));
        }
        let now = now_millis();
        let unusable = match config.host_ports.listening_tcp_ports() {
            Ok(listening) => unusable_ports(
                &listening,
                config
                    .dynamic_port_range
                    .unwrap_or(DEFAULT_DYNAMIC_PORT_RANGE),
                &BTreeSet::new(),
                &BTreeMap::new(),
                now,
            ),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the host's listening ports");
                BTreeSet::new()
            }
        };
        if !unusable.is_empty() {
            tracing::info!(ports = ?unusable, "host ports in use, not offered to tasks");
        }
        let mut body = json!({
            "cluster": config.cluster,
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": info.cpus.saturating_mul(1024)},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": memory_mib.min(i32::MAX as u64)},
                ports_resource(&unusable),
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
            ],
            "versionInfo": {"agentVersion": env!("CARGO_PKG_VERSION"), "dockerVersion": info.server_version},
            "attributes": attributes,
            "instanceIdentityDocument": json!({"instanceId": info.hostname.clone().unwrap_or_default()}).to_string(),
        });
        let saved = std::fs::read_to_string(state_file(&config)).ok();
        if let Some(arn) = saved
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .and_then(|v| {
                v.get("containerInstanceArn")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        {
            body["containerInstanceArn"] = json!(arn);
        }
        let (client, resp) = register_when_cluster_exists(&client, &config, body.clone())
            .await
            .map_err(|err| match err {
                crate::identity::RegisterError::Call(source) => AgentError::Call {
                    operation: "RegisterContainerInstance",
                    source,
                },
                crate::identity::RegisterError::Save(e) => AgentError::State(e),
            })?;
        let instance_arn = resp["containerInstance"]["containerInstanceArn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        body["containerInstanceArn"] = json!(instance_arn);
        std::fs::create_dir_all(&config.data_dir).map_err(|e| AgentError::State(e.to_string()))?;
        std::fs::write(
            state_file(&config),
            json!({"containerInstanceArn": instance_arn}).to_string(),
        )
        .map_err(|e| AgentError::State(e.to_string()))?;
        tracing::info!(cluster = %config.cluster, container_instance = %instance_arn, runtime = runtime.name(), "registered");
        let metadata = match config.metadata_port {
            None => None,
            Some(port) => match crate::metadata::bind(runtime.as_ref(), port).await {
                Ok(bound) => {
                    let key = crate::metadata::EndpointKey::load_or_create(&config.data_dir)
                        .map_err(|e| AgentError::State(e.to_string()))?;
                    let state = crate::metadata::MetadataState::new(
                        config.cluster.clone(),
                        instance_arn.clone(),
                        config.availability_zone.clone(),
                        key.clone(),
                    );
                    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                    tokio::spawn(crate::metadata::serve(
                        bound.listener,
                        state.clone(),
                        runtime.clone(),
                        async {
                            let _ = stopped.await;
                        },
                    ));
                    tracing::info!(uri = %bound.base_uri, "task metadata endpoint");
                    Some(Metadata {
                        state,
                        endpoint: crate::metadata::MetadataEndpoint {
                            base_uri: bound.base_uri,
                            key,
                        },
                        _stop: stop,
                    })
                }
                Err(err) => {
                    tracing::warn!(error = %err, "task metadata endpoint disabled");
                    None
                }
            },
        };
        Ok(Self {
            client,
            runtime,
            config,
            instance_arn,
            task_definitions: HashMap::new(),
            channel: None,
            registry_token: tokio::sync::Mutex::new(None),
            metadata,
            stops: StopsInFlight::default(),
            registration: body,
            ports: tokio::sync::Mutex::new(UnusablePorts {
                registered: unusable,
                scanned_millis: Some(now),
                ..Default::default()
            }),
        })
    }

    /// Looks at the host's ports (at most every few seconds, unless
    /// `force`) and registers again under this instance's ARN when the
    /// ports it cannot offer changed, so placement stops choosing them.
    async fn refresh_unusable_ports(&self, force: bool) {
        let mut ports = self.ports.lock().await;
        let now = now_millis();
        let due = ports
            .scanned_millis
            .is_none_or(|at| now.saturating_sub(at) >= PORT_SCAN_INTERVAL_MILLIS);
        if !force && !due {
            return;
        }
        ports.scanned_millis = Some(now);
        let host_ports = self.config.host_ports.clone();
        let listening =
            match tokio::task::spawn_blocking(move || host_ports.listening_tcp_ports()).await {
                Ok(Ok(listening)) => listening,
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "cannot read the host's listening ports");
                    BTreeSet::new()
                }
                Err(err) => {
                    tracing::debug!(error = %err, "host port scan failed");
                    BTreeSet::new()
                }
            };
        let unusable = ports.observe(
            &listening,
            self.config
                .dynamic_port_range
                .unwrap_or(DEFAULT_DYNAMIC_PORT_RANGE),
            now,
        );
        if unusable == ports.registered {
            return;
        }
        let mut body = self.registration.clone();
        if let Some(resources) = body["totalResources"].as_array_mut() {
            for r in resources.iter_mut() {
                if r["name"] == "PORTS" {
                    *r = ports_resource(&unusable);
                }
            }
        }
        match self.client.call("RegisterContainerInstance", &body).await {
            Ok(_) => {
                tracing::info!(ports = ?unusable, "host ports not offered to tasks changed; registered again");
                ports.registered = unusable;
            }
            // Tried again at the next look.
            Err(err) => tracing::warn!(error = %err, "cannot register the host ports in use"),
        }
    }

    /// Records that containers could not bind `failed` and reports them
    /// unusable at once, before the task is reported stopped, so that its
    /// replacement goes to another port.
    async fn host_ports_failed(&self, failed: &[u16]) {
        {
            let mut ports = self.ports.lock().await;
            let until_millis = now_millis().saturating_add(FAILED_PORT_HOLD_MILLIS);
            for p in failed {
                ports.failed.insert(
                    *p,
                    FailedPort {
                        until_millis,
                        seen_listening: false,
                    },
                );
            }
        }
        self.refresh_unusable_ports(true).await;
    }

    pub fn instance_arn(&self) -> &str {
        &self.instance_arn
    }

    /// Runs passes until `shutdown` resolves; a failed pass is logged and
    /// retried on the next tick.
    ///
    /// Passes run when the channel brings a change, right after a pass that
    /// launched or started containers (to report them running), and every
    /// poll interval (to see containers exit).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let channel = Channel::start(
            self.client.clone(),
            self.config.cluster.clone(),
            self.instance_arn.clone(),
            self.config.channel,
        );
        self.channel = Some(channel.clone());
        let mut again = 0u32;
        loop {
            match self.sync_once().await {
                Ok(pass) if pass.launched && again < 20 => {
                    again += 1;
                    continue;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "agent pass failed"),
            }
            again = 0;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = channel.changed() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        tracing::info!("agent stopped");
    }

    /// Credentials for pulling `image` when it lives in Berth's own registry
    /// (the control plane's address): an ECR authorization token, fetched
    /// with the agent's credentials and cached until shortly before it
    /// expires. Other registries are pulled from anonymously.
    async fn registry_credentials(&self, image: &str) -> Option<RegistryAuth> {
        let reference = berth_runtime::ImageRef::parse(image);
        if reference.registry() != Some(self.client.authority()) {
            return None;
        }
        let now = now_millis() as f64 / 1000.0;
        let mut cached = self.registry_token.lock().await;
        if let Some((auth, expires)) = cached.as_ref() {
            if now < expires - 300.0 {
                return Some(auth.clone());
            }
        }
        let resp = match self
            .client
            .call_ecr("GetAuthorizationToken", &json!({}))
            .await
        {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(error = %err, image, "cannot get a registry token; pulling anonymously");
                return None;
            }
        };
        let data = &resp["authorizationData"][0];
        let decoded = data["authorizationToken"]
            .as_str()
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .and_then(|b| String::from_utf8(b).ok())?;
        let (username, password) = decoded.split_once(':')?;
        let auth = RegistryAuth {
            username: username.to_string(),
            password: password.to_string(),
            server_address: Some(self.client.authority().to_string()),
        };
        let expires = data["expiresAt"].as_f64().unwrap_or(now + 3600.0);
        *cached = Some((auth.clone(), expires));
        Some(auth)
    }

    /// Sends a state change over the channel, or through the API when the
    /// channel cannot take it.
    async fn submit(&self, operation: &'static str, body: Value) -> Result<(), AgentError> {
        if let Some(channel) = &self.channel {
            match channel.submit(operation, body.clone()).await {
                Some(Ok(())) => return Ok(()),
                Some(Err(source)) => return Err(AgentError::Call { operation, source }),
                None => {}
            }
        }
        self.call(operation, body).await.map(|_| ())
    }

    async fn call(&self, operation: &'static str, body: Value) -> Result<Value, AgentError> {
        self.client
            .call(operation, &body)
            .await
            .map_err(|source| AgentError::Call { operation, source })
    }

    /// The tasks placed here that are not yet STOPPED: from the channel
    /// when it is in sync, else from the API.
    async fn desired_tasks(&self) -> Result<Vec<Task>, AgentError> {
        if let Some(channel) = &self.channel {
            if let Some(tasks) = channel.tasks().await {
                return Ok(tasks);
            }
        }
        let mut arns = Vec::new();
        for desired in ["RUNNING", "STOPPED"] {
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({"cluster": self.config.cluster, "containerInstance": self.instance_arn, "desiredStatus": desired});
                if let Some(t) = &token {
                    body["nextToken"] = json!(t);
                }
                let page = self.call("ListTasks", body).await?;
                arns.extend(
                    page["taskArns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string),
                );
                token = page["nextToken"].as_str().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let resp = self
                .call(
                    "DescribeTasks",
                    json!({"cluster": self.config.cluster, "tasks": chunk}),
                )
                .await?;
            for t in resp["tasks"].as_array().into_iter().flatten() {
                if let Ok(task) = serde_json::from_value::<Task>(t.clone()) {
                    if task.last_status.as_deref() != Some("STOPPED") {
                        tasks.push(task);
                    }
                }
            }
        }
        Ok(tasks)
    }

    async fn task_definition(&mut self, arn: &str) -> Result<Arc<TaskDefinition>, AgentError> {
        if let Some(td) = self.task_definitions.get(arn) {
            return Ok(Arc::clone(td));
        }
        let resp = self
            .call("DescribeTaskDefinition", json!({"taskDefinition": arn}))
            .await?;
        let td: TaskDefinition = serde_json::from_value(resp["taskDefinition"].clone())
            .map_err(|e| AgentError::State(format!("undecodable task definition: {e}")))?;
        let td = Arc::new(td);
        self.task_definitions
            .insert(arn.to_string(), Arc::clone(&td));
        Ok(td)
    }

    /// The containers the runtime shows for this instance, as the
    /// reconciler sees them and as inspected.
    async fn observed(
        &self,
    ) -> Result<(Vec<Observed>, Vec<berth_runtime::ContainerState>), AgentError> {
        let filter = LabelFilter::managed()
            .with(labels::CLUSTER, self.config.cluster.clone())
            .with(labels::CONTAINER_INSTANCE_ARN, self.instance_arn.clone());
        let mut out = Vec::new();
        let mut states = Vec::new();
        for summary in self.runtime.list(&filter).await? {
            let state = match self.runtime.inspect(&summary.id).await {
                Ok(s) => s,
                Err(err) => {
                    tracing::debug!(error = %err, container = %summary.name, "inspect failed");
                    continue;
                }
            };
            let observed_state = match state.status {
                ContainerStatus::Created => State::Created,
                s if s.is_running() => State::Running {
                    healthy: match state.health {
                        berth_runtime::HealthStatus::Healthy => Some(true),
                        berth_runtime::HealthStatus::Unhealthy => Some(false),
                        berth_runtime::HealthStatus::Unknown => None,
                    },
                },
                _ => State::Exited {
                    code: state.exit_code,
                    finished_millis: state.finished_millis,
                },
            };
            out.push(Observed {
                id: summary.id.0.clone(),
                task_arn: summary
                    .labels
                    .get(labels::TASK_ARN)
                    .cloned()
                    .unwrap_or_default(),
                container: summary
                    .labels
                    .get(labels::CONTAINER_NAME)
                    .cloned()
                    .unwrap_or_default(),
                state: observed_state,
            });
            states.push(state);
        }
        Ok((out, states))
    }

    /// One reconciliation pass.
    pub async fn sync_once(&mut self) -> Result<Pass, AgentError> {
        let tasks = self.desired_tasks().await?;
        let mut desired = Vec::with_capacity(tasks.len());
        let mut by_arn: HashMap<String, (Task, Arc<TaskDefinition>)> =
            HashMap::with_capacity(tasks.len());
        for task in tasks {
            let Some(td_arn) = task.task_definition_arn.clone() else {
                continue;
            };
            let td = self.task_definition(&td_arn).await?;
            let arn = task.task_arn.clone().unwrap_or_default();
            desired.push(DesiredTask {
                arn: arn.clone(),
                run: task.desired_status.as_deref() != Some("STOPPED"),
                reported: task
                    .last_status
                    .clone()
                    .unwrap_or_else(|| "PROVISIONING".into()),
                containers: spec::desired_containers(&task, &td),
                health: reported_health(&task, &td),
            });
            by_arn.insert(arn, (task, td));
        }
        let (observed, states) = self.observed().await?;
        {
            let own = by_arn
                .values()
                .flat_map(|(t, _)| t.containers.iter().flatten())
                .flat_map(|c| c.network_bindings.iter().flatten())
                .filter_map(|b| b.host_port.and_then(|p| u16::try_from(p).ok()))
                .chain(
                    states
                        .iter()
                        .flat_map(|s| s.ports.iter().map(|p| p.host_port)),
                )
                .collect();
            self.ports.lock().await.own = own;
        }
        self.refresh_unusable_ports(false).await;
        if let Some(m) = &self.metadata {
            let mut infos = crate::metadata::runtime_infos_by_task(&states);
            for (arn, (task, td)) in &by_arn {
                m.state
                    .set_task(task, td, infos.remove(arn).unwrap_or_default());
            }
            m.state.retain_tasks(|arn| by_arn.contains_key(arn));
        }
        let now = now_millis();
        let options = Options {
            cleanup_delay_millis: self.config.cleanup_delay.as_millis() as i64,
        };
        let actions = reconcile::reconcile(&desired, &observed, now, &options);
        let pass = Pass {
            actions: actions.len(),
            launched: actions
                .iter()
                .any(|a| matches!(a, Action::Launch { .. } | Action::Start { .. })),
        };
        // Launches (pull, create, start) run a few at a time; every other
        // action runs in order.
        let (launches, rest): (Vec<Action>, Vec<Action>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::Launch { .. }));
        for step in merge_reports(rest) {
            let result = match &step {
                Step::One(action) => self.execute(action, &by_arn).await,
                Step::TaskWithContainers(task, containers) => {
                    self.report_task(task, containers).await
                }
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, ?step, "action failed");
            }
        }
        let this = &*self;
        let by_arn = &by_arn;
        futures_util::stream::iter(launches)
            .for_each_concurrent(LAUNCH_CONCURRENCY, |action| async move {
                if let Err(err) = this.execute(&action, by_arn).await {
                    tracing::warn!(error = %err, ?action, "action failed");
                }
            })
            .await;
        Ok(pass)
    }

    /// A container's reported state as SubmitContainerStateChange and the
    /// `containers` of SubmitTaskStateChange both carry it.
    async fn container_body(
        &self,
        container: &str,
        status: &str,
        exit_code: Option<i64>,
        runtime_id: &str,
    ) -> Value {
        let mut body = json!({"containerName": container, "status": status});
        if !runtime_id.is_empty() {
            body["runtimeId"] = json!(runtime_id);
        }
        if let Some(code) = exit_code {
            body["exitCode"] = json!(code);
        }
        if status == "RUNNING" && !runtime_id.is_empty() {
            if let Ok(state) = self
                .runtime
                .inspect(&berth_runtime::ContainerId(runtime_id.to_string()))
                .await
            {
                let bindings: Vec<Value> = state
                    .ports
                    .iter()
                    .map(|p| json!({"bindIP": p.host_ip, "containerPort": p.container_port, "hostPort": p.host_port, "protocol": p.protocol.as_str()}))
                    .collect();
                body["networkBindings"] = json!(bindings);
            }
        }
        body
    }

    /// Reports a task's status (a `ReportTask` action) together with the
    /// container reports of the same task from the same pass, in one
    /// SubmitTaskStateChange.
    async fn report_task(&self, action: &Action, containers: &[Action]) -> Result<(), AgentError> {
        let Action::ReportTask {
            task,
            status,
            reason,
        } = action
        else {
            return Ok(());
        };
        let mut body = json!({"cluster": self.config.cluster, "task": task, "status": status});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        if *status == "STOPPED" {
            body["executionStoppedAt"] = json!(now_millis() as f64 / 1000.0);
        }
        let mut changes = Vec::new();
        for c in containers {
            if let Action::ReportContainer {
                container,
                status,
                exit_code,
                runtime_id,
                ..
            } = c
            {
                changes.push(
                    self.container_body(container, status, *exit_code, runtime_id)
                        .await,
                );
            }
        }
        if !changes.is_empty() {
            body["containers"] = json!(changes);
        }
        self.submit("SubmitTaskStateChange", body).await
    }

    async fn execute(
        &self,
        action: &Action,
        tasks: &HashMap<String, (Task, Arc<TaskDefinition>)>,
    ) -> Result<(), AgentError> {
        let cluster = &self.config.cluster;
        match action {
            Action::Launch { task, container } => {
                let Some((t, td)) = tasks.get(task) else {
                    return Ok(());
                };
                let host = HostSettings {
                    cluster: cluster.clone(),
                    container_instance_arn: self.instance_arn.clone(),
                    bind_ip: self.config.bind_ip,
                    metadata: self.metadata.as_ref().map(|m| m.endpoint.clone()),
                };
                let spec = spec::container_spec(&host, t, td, container)
                    .map_err(|e| AgentError::State(e.to_string()))?;
                let result = async {
                    let auth = self.registry_credentials(&spec.image).await;
                    let image = self.runtime.ensure_image(&spec.image, auth.as_ref()).await?;
                    if let (Some(a), Some(b)) = (image.pull_started_millis, image.pull_stopped_millis) {
                        let _ = self
                            .submit("SubmitTaskStateChange", json!({"cluster": cluster, "task": task,
                                "pullStartedAt": a as f64 / 1000.0, "pullStoppedAt": b as f64 / 1000.0}))
                            .await;
                    }
                    let id = self.runtime.create(&spec).await?;
                    self.runtime.start(&id).await?;
                    Ok::<_, berth_runtime::RuntimeError>(id)
                }
                .await;
                match result {
                    Ok(id) => {
                        tracing::info!(task = %task, container = %container, id = %id.0, "container started");
                        Ok(())
                    }
                    Err(err) => {
                        // The task cannot start: say why and stop it.
                        let mut reason = format!("CannotStartContainerError: {err}");
                        if let berth_runtime::RuntimeError::PortInUse(message) = &err {
                            // Held by something else on this host: report
                            // the port unusable before the task stops, so
                            // its replacement is placed on another.
                            let candidates: Vec<u16> =
                                spec.ports.iter().filter_map(|p| p.host_port).collect();
                            let failed = ports_named_in(message, &candidates);
                            self.host_ports_failed(&failed).await;
                            let list: Vec<String> = failed.iter().map(u16::to_string).collect();
                            reason = format!(
                                "CannotStartContainerError: host port {} already in use on this host: {err}",
                                list.join(", ")
                            );
                        }
                        tracing::warn!(task = %task, container = %container, error = %err, "container failed to start");
                        self.submit("SubmitTaskStateChange", json!({"cluster": cluster, "task": task, "status": "STOPPED",
                            "reason": reason,
                            "containers": [{"containerName": container, "status": "STOPPED", "reason": reason}]})).await?;
                        Ok(())
                    }
                }
            }
            Action::Start { id } => Ok(self
                .runtime
                .start(&berth_runtime::ContainerId(id.clone()))
                .await?),
            Action::Stop { id, timeout_secs } => {
                // Stopping waits for the grace period; do not hold up the pass.
                self.stops
                    .start(&self.runtime, id, Duration::from_secs(*timeout_secs));
                Ok(())
            }
            Action::Remove { id } => Ok(self
                .runtime
                .remove(&berth_runtime::ContainerId(id.clone()))
                .await?),
            Action::ReportContainer {
                task,
                container,
                status,
                exit_code,
                runtime_id,
            } => {
                let mut body = self
                    .container_body(container, status, *exit_code, runtime_id)
                    .await;
                body["cluster"] = json!(cluster);
                body["task"] = json!(task);
                self.submit("SubmitContainerStateChange", body).await
            }
            Action::ReportTask { .. } => self.report_task(action, &[]).await,
            Action::ReportHealth {
                task,
                containers,
                task_health,
            } => {
                let containers: Vec<Value> = containers
                    .iter()
                    .map(|(name, h)| json!({"containerName": name, "healthStatus": h}))
                    .collect();
                tracing::info!(task = %task, health = task_health, "task health changed");
                self.submit(
                    "SubmitTaskStateChange",
                    json!({"cluster": cluster, "task": task, "containers": containers, "healthStatus": task_health}),
                )
                .await
            }
        }
    }
}

/// RegisterContainerInstance, waiting for the cluster when it does not
/// exist yet (an agent may well start before its cluster is created): one
/// line says so, then it retries with backoff (1 s doubling to 30 s),
/// quietly, until the cluster exists. Any other error is returned.
async fn register_when_cluster_exists(
    client: &EcsClient,
    config: &AgentConfig,
    body: Value,
) -> Result<(EcsClient, Value), crate::identity::RegisterError> {
    let cluster = &config.cluster;
    let mut delay = Duration::from_secs(1);
    let mut waited = false;
    loop {
        match crate::identity::register(client, &config.data_dir, body.clone()).await {
            Err(crate::identity::RegisterError::Call(CallError::Api { code, .. }))
                if code == "ClusterNotFoundException" =>
            {
                if waited {
                    tracing::debug!(cluster = %cluster, retry_in_ms = delay.as_millis() as u64, "cluster still does not exist");
                } else {
                    tracing::info!(
                        cluster = %cluster,
                        "cluster does not exist yet; retrying until it is created"
                    );
                    waited = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            other => {
                if waited && other.is_ok() {
                    tracing::info!(cluster = %cluster, "cluster exists now");
                }
                return other;
            }
        }
    }
}

/// One thing a pass sends or does, in order.
#[derive(Debug)]
enum Step {
    One(Action),
    /// A `ReportTask` and the `ReportContainer`s of the same task.
    TaskWithContainers(Action, Vec<Action>),
}

/// Puts the container reports of a task that the same pass also reports
/// on into that task report, so they go up in one SubmitTaskStateChange
/// (one durable write in the control plane instead of one per container
/// plus one for the task), as the ECS agent does. Everything else keeps
/// its order.
fn merge_reports(actions: Vec<Action>) -> Vec<Step> {
    let reported: std::collections::HashSet<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ReportTask { task, .. } => Some(task.clone()),
            _ => None,
        })
        .collect();
    let mut held: HashMap<String, Vec<Action>> = HashMap::new();
    let mut out = Vec::new();
    for action in actions {
        match &action {
            Action::ReportContainer { task, .. } if reported.contains(task) => {
                held.entry(task.clone()).or_default().push(action);
            }
            Action::ReportTask { task, .. } => {
                let containers = held.remove(task).unwrap_or_default();
                out.push(Step::TaskWithContainers(action, containers));
            }
            _ => out.push(Step::One(action)),
        }
    }
    // Container reports of a task reported earlier in the pass go after it.
    let mut rest: Vec<(String, Vec<Action>)> = held.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(rest.into_iter().flat_map(|(_, v)| v).map(Step::One));
    out
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub actions: usize,
    /// It launched or started containers, so another pass should follow
    /// at once to report them.
    pub launched: bool,
}

/// The health the control plane has of a task's checked containers.
fn reported_health(task: &Task, td: &TaskDefinition) -> ReportedHealth {
    let containers = td
        .container_definitions
        .iter()
        .flatten()
        .filter(|c| c.health_check.is_some())
        .filter_map(|c| {
            let name = c.name.clone()?;
            let reported = task
                .containers
                .iter()
                .flatten()
                .find(|tc| tc.name.as_deref() == Some(name.as_str()))
                .and_then(|tc| tc.health_status.clone())
                .unwrap_or_else(|| "UNKNOWN".into());
            Some((name, reported))
        })
        .collect();
    ReportedHealth {
        task: task
            .health_status
            .clone()
            .unwrap_or_else(|| "UNKNOWN".into()),
        containers,
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn container(task: &str, name: &str) -> Action {
        Action::ReportContainer {
            task: task.into(),
            container: name.into(),
            status: "RUNNING",
            exit_code: None,
            runtime_id: String::new(),
        }
    }

    fn task(task: &str) -> Action {
        Action::ReportTask {
            task: task.into(),
            status: "RUNNING",
            reason: None,
        }
    }

    fn shape(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::One(Action::ReportContainer {
                    task, container, ..
                }) => {
                    format!("container {task}/{container}")
                }
                Step::One(other) => format!("{other:?}"),
                Step::TaskWithContainers(Action::ReportTask { task, .. }, cs) => {
                    format!("task {task} with {}", cs.len())
                }
                Step::TaskWithContainers(other, _) => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn container_reports_ride_with_their_task_report() {
        let steps = merge_reports(vec![
            container("a", "web"),
            container("b", "web"),
            container("a", "sidecar"),
            task("a"),
            Action::Remove { id: "x".into() },
        ]);
        assert_eq!(
            shape(&steps),
            vec![
                "container b/web".to_string(),
                "task a with 2".to_string(),
                format!("{:?}", Action::Remove { id: "x".into() }),
            ]
        );
    }

    #[test]
    fn container_reports_after_their_task_report_keep_coming_after_it() {
        let steps = merge_reports(vec![task("a"), container("a", "web")]);
        assert_eq!(
            shape(&steps),
            vec!["task a with 0".to_string(), "container a/web".to_string()]
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod stop_tests {
    use super::*;
    use berth_runtime::{
        ContainerId, ContainerSpec, ContainerState, ContainerSummary, EventStream, ImageInfo,
        ManualClock, RuntimeInfo, SimulatedConfig, SimulatedRuntime, Stats,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The simulated runtime, with stops that count themselves and wait
    /// for the test's permission: a container in its grace period.
    #[derive(Debug)]
    struct SlowStops {
        sim: SimulatedRuntime,
        stops: AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    type R<T> = berth_runtime::Result<T>;

    #[async_trait::async_trait]
    impl ContainerRuntime for SlowStops {
        fn name(&self) -> &'static str {
            self.sim.name()
        }
        async fn info(&self) -> R<RuntimeInfo> {
            self.sim.info().await
        }
        async fn ensure_image(&self, image: &str, c: Option<&RegistryAuth>) -> R<ImageInfo> {
            self.sim.ensure_image(image, c).await
        }
        async fn create(&self, spec: &ContainerSpec) -> R<ContainerId> {
            self.sim.create(spec).await
        }
        async fn start(&self, id: &ContainerId) -> R<()> {
            self.sim.start(id).await
        }
        async fn stop(&self, id: &ContainerId, timeout: Duration) -> R<()> {
            self.stops.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await;
            self.sim.stop(id, timeout).await
        }
        async fn kill(&self, id: &ContainerId, signal: &str) -> R<()> {
            self.sim.kill(id, signal).await
        }
        async fn inspect(&self, id: &ContainerId) -> R<ContainerState> {
            self.sim.inspect(id).await
        }
        async fn remove(&self, id: &ContainerId) -> R<()> {
            self.sim.remove(id).await
        }
        async fn remove_volume(&self, name: &str) -> R<()> {
            self.sim.remove_volume(name).await
        }
        async fn list(&self, filter: &LabelFilter) -> R<Vec<ContainerSummary>> {
            self.sim.list(filter).await
        }
        fn events(&self, filter: &LabelFilter) -> EventStream {
            self.sim.events(filter)
        }
        async fn stats(&self, id: &ContainerId) -> R<Stats> {
            self.sim.stats(id).await
        }
    }

    fn agent(runtime: Arc<dyn ContainerRuntime>) -> Agent {
        Agent {
            client: EcsClient::new("http://127.0.0.1:9", "us-east-1", "AKIA", "secret", None)
                .unwrap(),
            runtime,
            config: AgentConfig {
                cluster: "default".into(),
                availability_zone: None,
                instance_type: None,
                attributes: Vec::new(),
                data_dir: PathBuf::from("/nonexistent"),
                bind_ip: IpAddr::from([127, 0, 0, 1]),
                poll_interval: Duration::from_secs(1),
                memory_reserve_mib: 0,
                cleanup_delay: Duration::from_secs(60),
                channel: Default::default(),
                metadata_port: None,
                dynamic_port_range: None,
                host_ports: Arc::new(berth_runtime::NoHostPorts),
            },
            instance_arn: "ci".into(),
            task_definitions: HashMap::new(),
            channel: None,
            registry_token: tokio::sync::Mutex::new(None),
            metadata: None,
            stops: StopsInFlight::default(),
            registration: json!({}),
            ports: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_container_in_its_grace_period_is_stopped_once_however_many_passes_ask() {
        let runtime = Arc::new(SlowStops {
            sim: SimulatedRuntime::new(SimulatedConfig::default(), Arc::new(ManualClock::new(0))),
            stops: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        });
        let spec = ContainerSpec {
            name: "web".into(),
            image: "app:1".into(),
            ..Default::default()
        };
        runtime.ensure_image(&spec.image, None).await.unwrap();
        let id = runtime.create(&spec).await.unwrap();
        runtime.start(&id).await.unwrap();
        let agent = agent(runtime.clone());
        let stop = Action::Stop {
            id: id.0.clone(),
            timeout_secs: 30,
        };
        // Every pass during the grace period asks again.
        for _ in 0..5 {
            agent.execute(&stop, &HashMap::new()).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(runtime.stops.load(Ordering::SeqCst), 1);
        assert_eq!(agent.stops.0.lock().len(), 1);

        // Once the stop has finished, a later ask stops again.
        runtime.gate.add_permits(1);
        for _ in 0..100 {
            if agent.stops.0.lock().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(agent.stops.0.lock().is_empty());
        assert!(runtime.inspect(&id).await.unwrap().status.is_stopped());
        agent.execute(&stop, &HashMap::new()).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(runtime.stops.load(Ordering::SeqCst), 2);
        runtime.gate.add_permits(1);
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn ports_held_on_the_host_in_the_range_and_not_by_own_tasks_are_unusable() {
        let listening = BTreeSet::from([22, 9480, 41000, 41001, 41002, 41005]);
        let own = BTreeSet::from([41001]);
        let got = unusable_ports(&listening, (41000, 41003), &own, &BTreeMap::new(), 0);
        assert_eq!(got, BTreeSet::from([41000, 41002]));
    }

    #[test]
    fn a_port_that_failed_to_bind_stays_unusable_until_its_hold_ends() {
        let failed = BTreeMap::from([(41003, 1_000)]);
        let own = BTreeSet::from([41003]);
        let none = BTreeSet::new();
        // Even when the task that failed still "holds" it.
        assert_eq!(
            unusable_ports(&none, (41000, 41003), &own, &failed, 999),
            BTreeSet::from([41003])
        );
        assert!(unusable_ports(&none, (41000, 41003), &own, &failed, 1_000).is_empty());
    }

    #[test]
    fn a_failed_port_is_offered_again_once_nothing_listens_on_it() {
        let failed = |seen_listening| FailedPort {
            until_millis: 1_000,
            seen_listening,
        };
        let mut ports = UnusablePorts {
            own: BTreeSet::from([41000]),
            failed: BTreeMap::from([(41000, failed(false)), (41001, failed(false))]),
            ..Default::default()
        };
        let range = (41000, 41003);
        // 41000 is held by a listener; 41001 by nothing a socket shows.
        let held = BTreeSet::from([41000]);
        assert_eq!(
            ports.observe(&held, range, 10),
            BTreeSet::from([41000, 41001])
        );
        assert_eq!(ports.failed[&41000], failed(true));
        // The listener goes: 41000 is free again; 41001 waits out its hold.
        let none = BTreeSet::new();
        assert_eq!(ports.observe(&none, range, 20), BTreeSet::from([41001]));
        assert!(ports.observe(&none, range, 1_000).is_empty());
        assert!(ports.failed.is_empty());
    }

    #[test]
    fn a_host_full_of_listeners_reports_a_bounded_set() {
        let listening: BTreeSet<u16> = (40000..=65535).collect();
        let got = unusable_ports(
            &listening,
            DEFAULT_DYNAMIC_PORT_RANGE,
            &BTreeSet::new(),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(got.len(), MAX_UNUSABLE_PORTS);
        assert_eq!(got.first(), Some(&49153));
    }

    #[test]
    fn the_port_a_bind_error_names_is_the_one_marked() {
        let docker = "driver failed programming external connectivity on endpoint x: \
                      Error starting userland proxy: listen tcp4 127.0.0.1:41001: bind: address already in use";
        assert_eq!(ports_named_in(docker, &[41000, 41001]), [41001]);
        let allocated = "Bind for 0.0.0.0:49153 failed: port is already allocated";
        assert_eq!(ports_named_in(allocated, &[4915, 49153]), [49153]);
        // A prefix of a longer number is not a match; nothing named: all.
        assert_eq!(ports_named_in("port 4 in use", &[4, 5]), [4, 5]);
        assert_eq!(ports_named_in("x:491530 y", &[49153]), [49153]);
    }

    #[test]
    fn the_ports_resource_has_the_reserved_and_the_unusable_ports() {
        let r = ports_resource(&BTreeSet::from([49153, 22]));
        assert_eq!(r["name"], "PORTS");
        assert_eq!(
            r["stringSetValue"],
            json!(["22", "2375", "2376", "49153", "51678", "51679"])
        );
    }
}
