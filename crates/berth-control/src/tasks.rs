//! RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and the agent's
//! SubmitTaskStateChange and SubmitContainerStateChange.
//!
//! RunTask and StartTask build a snapshot of the cluster from the store
//! (instances, and the tasks holding resources on them), let the placement
//! engine choose, and write the new tasks in one transaction guarded by the
//! cluster's placement key, which every placement rewrites: two concurrent
//! placements in one cluster can never both spend the same capacity. Tasks
//! start PROVISIONING with desiredStatus RUNNING; the agent of their
//! instance moves them on and reports back through the Submit operations.
//! A status never moves backwards.

use std::collections::HashMap;
use std::sync::Arc;

use berth_model::arn::Arn;
use berth_model::cluster::Failure;
use berth_model::common::Tag;
use berth_model::container_instance::Resource;
use berth_model::task::{
    Container, ContainerOverride, ContainerStateChange, NetworkBinding, Task, TaskOverride,
};
use berth_model::task_definition::{ContainerDefinition, TaskDefinition};
use berth_model::units::{parse_task_cpu, parse_task_memory};
use berth_model::{ApiError, ErrorCode};
use berth_scheduler::model::{
    ClusterSnapshot, PlacementOptions, PlacementRequest, Resources, TaskOnInstance,
    TaskRequirements,
};
use berth_scheduler::{PlacementConstraint, PlacementStrategy};
use berth_store::{Compare, Op, Txn};
use rand::SeedableRng as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clusters::active;
use crate::container_instances::StoredInstance;
use crate::paging::{decode_token, page, page_size};
use crate::state::{self, put_op, read_modify_write, scan, Change};
use crate::tags::validate_tags;
use crate::task_definitions::active_task_definition;
use crate::{include_list, keys, missing, required, Cx};

/// The user-visible lifecycle, in order. A reported status only ever moves
/// a task forward along it.
pub(crate) const LIFECYCLE: &[&str] = &[
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
];

fn rank(status: &str) -> Option<usize> {
    LIFECYCLE.iter().position(|s| *s == status)
}

/// At most this many tasks per RunTask or StartTask call.
const MAX_TASKS_PER_CALL: usize = 10;

/// A task as stored: the API shape plus what placement needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredTask {
    pub cluster: String,
    pub id: String,
    /// The container instance id (not ARN) the task is placed on.
    pub instance_id: String,
    pub family: String,
    pub group: String,
    pub resources: Resources,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    pub task: Task,
}

impl StoredTask {
    fn last_status(&self) -> &str {
        self.task.last_status.as_deref().unwrap_or("PROVISIONING")
    }
    /// Whether the task still holds resources on its instance.
    pub(crate) fn holds_resources(&self) -> bool {
        self.last_status() != "STOPPED"
    }
}

fn resource_int(resources: &[Resource], name: &str) -> u32 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.integer_value.map(i64::from).or(r.long_value))
        .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

fn resource_ports(resources: &[Resource], name: &str) -> Vec<u16> {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.string_set_value.as_ref())
        .map(|ports| ports.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// The cluster as the placement engine sees it, and each instance's stored
/// record by snapshot index.
/// Every task of `cluster`: from the in-memory index when it is seeded,
/// else from the store.
pub(crate) fn cluster_tasks(cx: &Cx<'_>, cluster: &str) -> Result<Vec<Arc<StoredTask>>, ApiError> {
    if let Some(tasks) = cx.task_index().cluster(cluster) {
        return Ok(tasks);
    }
    scan(cx.store(), &keys::tasks(cluster))?
        .iter()
        .map(|kv| state::decode(kv).map(Arc::new))
        .collect()
}

fn snapshot(
    cx: &Cx<'_>,
    cluster: &str,
) -> Result<(ClusterSnapshot, Vec<StoredInstance>), ApiError> {
    let tasks = cluster_tasks(cx, cluster)?;
    let mut records = Vec::new();
    for kv in scan(cx.store(), &keys::instances(cluster))? {
        let stored: StoredInstance = state::decode(&kv)?;
        if stored.instance.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        records.push(stored);
    }
    let snap = snapshot_of(&tasks, &records);
    Ok((snap, records))
}

/// The placement engine's view of `instances` (INACTIVE ones left out)
/// with the `tasks` that hold resources on them; instance `n` of the
/// snapshot is the `n`th instance of `instances` that is not INACTIVE.
pub(crate) fn snapshot_of(
    tasks: &[Arc<StoredTask>],
    instances: &[StoredInstance],
) -> ClusterSnapshot {
    let mut tasks_by_instance: HashMap<&str, Vec<&StoredTask>> = HashMap::new();
    for t in tasks {
        if t.holds_resources() {
            tasks_by_instance
                .entry(t.instance_id.as_str())
                .or_default()
                .push(t);
        }
    }
    let mut snap = ClusterSnapshot::default();
    for stored in instances {
        if stored.instance.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        let mut view = crate::query::scheduler_view(stored);
        let registered = stored
            .instance
            .registered_resources
            .as_deref()
            .unwrap_or_default();
        let resources = Resources {
            cpu: resource_int(registered, "CPU"),
            memory: resource_int(registered, "MEMORY"),
            gpus: stored
                .platform_devices
                .iter()
                .filter(|d| d.r#type == "GPU")
                .count() as u32,
        };
        view.registered = resources;
        view.remaining = resources;
        view.used_tcp_ports = resource_ports(registered, "PORTS");
        view.used_udp_ports = resource_ports(registered, "PORTS_UDP");
        view.running_tasks_count = 0;
        for t in tasks_by_instance
            .remove(stored.id.as_str())
            .unwrap_or_default()
        {
            view.add_task(TaskOnInstance {
                id: t.id.clone(),
                group: t.group.clone(),
                family: t.family.clone(),
                resources: t.resources,
                tcp_ports: t.tcp_ports.clone(),
                udp_ports: t.udp_ports.clone(),
            });
        }
        snap.instances.push(view);
    }
    snap
}

/// Every setting of `td` that Berth cannot honour (the agent on Docker would
/// ignore it, or the control plane has no such feature yet), named as in the
/// task definition, in the order they appear; empty when every setting is
/// honoured. ECS registers such task definitions, and so does Berth; what
/// would run them refuses them ([`check_runnable`]), all at once.
fn unsupported(td: &TaskDefinition) -> Vec<String> {
    let mut out = Vec::new();
    if td.network_mode.as_deref() == Some("awsvpc") {
        out.push("networkMode 'awsvpc'".to_string());
    }
    let task_level = [
        ("pidMode", td.pid_mode.is_some()),
        ("ipcMode", td.ipc_mode.is_some()),
        ("proxyConfiguration", td.proxy_configuration.is_some()),
        (
            "inferenceAccelerators",
            td.inference_accelerators
                .as_ref()
                .is_some_and(|v| !v.is_empty()),
        ),
    ];
    for (name, _) in task_level.iter().filter(|(_, used)| *used) {
        out.push(format!("'{name}'"));
    }
    for v in td.volumes.iter().flatten() {
        let name = v.name.as_deref().unwrap_or("");
        let fields = [
            (
                "efsVolumeConfiguration",
                v.efs_volume_configuration.is_some(),
            ),
            (
                "fsxWindowsFileServerVolumeConfiguration",
                v.fsx_windows_file_server_volume_configuration.is_some(),
            ),
            ("configuredAtLaunch", v.configured_at_launch == Some(true)),
        ];
        for (field, _) in fields.iter().filter(|(_, used)| *used) {
            out.push(format!("volume '{name}' with '{field}'"));
        }
    }
    for c in td.container_definitions.iter().flatten() {
        let name = c.name.as_deref().unwrap_or("");
        let linux = c.linux_parameters.as_ref();
        let fields = [
            ("repositoryCredentials", c.repository_credentials.is_some()),
            ("restartPolicy", c.restart_policy.is_some()),
            (
                "environmentFiles",
                c.environment_files.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "volumesFrom",
                c.volumes_from.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            ("secrets", c.secrets.as_ref().is_some_and(|v| !v.is_empty())),
            ("startTimeout", c.start_timeout.is_some()),
            ("disableNetworking", c.disable_networking == Some(true)),
            (
                "dockerSecurityOptions",
                c.docker_security_options
                    .as_ref()
                    .is_some_and(|v| !v.is_empty()),
            ),
            ("logConfiguration", c.log_configuration.is_some()),
            (
                "systemControls",
                c.system_controls.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            ("firelensConfiguration", c.firelens_configuration.is_some()),
            (
                "credentialSpecs",
                c.credential_specs.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "linuxParameters.capabilities",
                linux.is_some_and(|l| l.capabilities.is_some()),
            ),
            (
                "linuxParameters.devices",
                linux.is_some_and(|l| l.devices.as_ref().is_some_and(|v| !v.is_empty())),
            ),
            (
                "linuxParameters.sharedMemorySize",
                linux.is_some_and(|l| l.shared_memory_size.is_some()),
            ),
            (
                "linuxParameters.tmpfs",
                linux.is_some_and(|l| l.tmpfs.as_ref().is_some_and(|v| !v.is_empty())),
            ),
            (
                "linuxParameters.maxSwap",
                linux.is_some_and(|l| l.max_swap.is_some()),
            ),
            (
                "linuxParameters.swappiness",
                linux.is_some_and(|l| l.swappiness.is_some()),
            ),
        ];
        for (field, _) in fields.iter().filter(|(_, used)| *used) {
            out.push(format!("'{field}' of container '{name}'"));
        }
    }
    out
}

/// Whether a task of `td` can run on this Berth cluster, as RunTask,
/// StartTask, CreateService and UpdateService check it before anything is
/// placed: every setting Berth cannot honour, listed in one
/// `UnsupportedFeatureException` (so a user fixes them in one go, not one
/// per attempt); then, with `network_configuration` set, ECS's refusal of a
/// networkConfiguration for a networkMode that takes none (every mode Berth
/// runs: awsvpc, the one that needs it, is refused as unsupported above).
pub(crate) fn check_runnable(
    td: &TaskDefinition,
    network_configuration: bool,
) -> Result<(), ApiError> {
    let problems = unsupported(td);
    if !problems.is_empty() {
        let (verb, pronoun) = if problems.len() == 1 {
            ("is", "it")
        } else {
            ("are", "them")
        };
        return Err(ApiError::new(
            ErrorCode::UnsupportedFeatureException,
            format!(
                "This Berth cluster cannot run the task definition yet: {} {verb} not supported, and Berth refuses rather than ignore {pronoun}.",
                problems.join(", ")
            ),
        ));
    }
    if network_configuration {
        return Err(ApiError::invalid_parameter(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ));
    }
    Ok(())
}

/// The model's `LaunchType` enum.
const LAUNCH_TYPES: &[&str] = &["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"];

/// A `launchType` outside the model's enum is refused as ECS refuses any
/// bad enum value (`InvalidParameterException`), before any check of what
/// Berth runs (RunTask, CreateService, ListTasks, ListServices alike).
pub(crate) fn check_launch_type(launch_type: Option<&str>) -> Result<(), ApiError> {
    match launch_type {
        Some(lt) if !LAUNCH_TYPES.contains(&lt) => Err(ApiError::invalid_parameter(format!(
            "Invalid launchType: {lt}. Valid values are [{}].",
            LAUNCH_TYPES.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// ECS takes a launch type or a capacity provider strategy, not both
/// (RunTask, CreateService).
pub(crate) fn refuse_launch_type_with_strategy(
    launch_type: Option<&str>,
    strategy: Option<&[Value]>,
) -> Result<(), ApiError> {
    if launch_type.is_some() && strategy.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    Ok(())
}

/// ECS Exec needs an agent and a session channel Berth does not have: a
/// request that turns it on is refused (RunTask, StartTask, CreateService,
/// UpdateService alike) rather than accepted and not acted on. `false` is
/// accepted.
pub(crate) fn refuse_execute_command(enable: Option<bool>) -> Result<(), ApiError> {
    if enable == Some(true) {
        return Err(ApiError::invalid_parameter(
            "enableExecuteCommand is not supported by this Berth cluster yet: it has no ECS Exec to reach the containers. Set enableExecuteCommand to false.",
        ));
    }
    Ok(())
}

/// One port mapping of one container, and whether its host port is chosen
/// at placement.
struct PortPlan {
    container: usize,
    container_port: u16,
    protocol: String,
    host_port: Option<u16>,
}

/// What a task of `td` with `overrides` needs from an instance.
fn requirements(
    td: &TaskDefinition,
    overrides: &TaskOverride,
) -> Result<(TaskRequirements, Vec<PortPlan>), ApiError> {
    let containers = td.container_definitions.as_deref().unwrap_or_default();
    for o in overrides.container_overrides.iter().flatten() {
        let name = o.name.as_deref().unwrap_or("");
        if !containers.iter().any(|c| c.name.as_deref() == Some(name)) {
            return Err(ApiError::invalid_parameter(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
    }
    let override_for = |c: &ContainerDefinition| -> Option<&ContainerOverride> {
        overrides
            .container_overrides
            .iter()
            .flatten()
            .find(|o| o.name == c.name)
    };
    let mut cpu: u32 = 0;
    let mut memory: u32 = 0;
    for c in containers {
        let o = override_for(c);
        cpu += o.and_then(|o| o.cpu).or(c.cpu).unwrap_or(0).max(0) as u32;
        let reservation = o
            .and_then(|o| o.memory_reservation)
            .or(c.memory_reservation);
        let hard = o.and_then(|o| o.memory).or(c.memory);
        memory += reservation.or(hard).unwrap_or(0).max(0) as u32;
    }
    if let Some(text) = overrides.cpu.as_deref().or(td.cpu.as_deref()) {
        cpu = parse_task_cpu(text)?;
    }
    if let Some(text) = overrides.memory.as_deref().or(td.memory.as_deref()) {
        memory = parse_task_memory(text)?;
    }
    let mode = td.network_mode.as_deref().unwrap_or("bridge");
    let mut req = TaskRequirements {
        resources: Resources {
            cpu,
            memory,
            gpus: 0,
        },
        ..Default::default()
    };
    let mut plans = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        for rr in c.resource_requirements.iter().flatten() {
            if rr.r#type == "GPU" {
                req.resources.gpus += rr.value.parse::<u32>().unwrap_or(0);
            }
        }
        if mode == "none" {
            continue;
        }
        for pm in c.port_mappings.iter().flatten() {
            let Some(container_port) = pm.container_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let protocol = pm.protocol.clone().unwrap_or_else(|| "tcp".into());
            let fixed = match mode {
                "host" => Some(container_port),
                _ => pm
                    .host_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
            };
            match (fixed, protocol.as_str()) {
                (Some(p), "udp") => req.static_udp_ports.push(p),
                (Some(p), _) => req.static_tcp_ports.push(p),
                (None, "udp") => req.dynamic_udp_ports += 1,
                (None, _) => req.dynamic_tcp_ports += 1,
            }
            plans.push(PortPlan {
                container: i,
                container_port,
                protocol,
                host_port: fixed,
            });
        }
    }
    Ok((req, plans))
}

pub(crate) fn parse_strategies(items: &[Value]) -> Result<Vec<PlacementStrategy>, ApiError> {
    if items.len() > 5 {
        return Err(ApiError::invalid_parameter(
            "placementStrategy can have at most 5 items.",
        ));
    }
    items
        .iter()
        .map(|s| {
            PlacementStrategy::from_wire(
                s.get("type").and_then(Value::as_str).unwrap_or(""),
                s.get("field").and_then(Value::as_str),
            )
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))
        })
        .collect()
}

pub(crate) fn parse_constraints(items: &[Value]) -> Result<Vec<PlacementConstraint>, ApiError> {
    if items.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "placementConstraints can have at most 10 items.",
        ));
    }
    items
        .iter()
        .map(|c| {
            PlacementConstraint::from_wire(
                c.get("type").and_then(Value::as_str).unwrap_or(""),
                c.get("expression").and_then(Value::as_str),
            )
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))
        })
        .collect()
}

/// Everything a new task is made of, decided before placement.
struct Launch {
    cluster: String,
    td: TaskDefinition,
    overrides: TaskOverride,
    request: PlacementRequest,
    ports: Vec<PortPlan>,
    started_by: Option<String>,
    tags: Vec<Tag>,
    /// The task definition's tags, for `propagateTags` TASK_DEFINITION.
    td_tags: Vec<Tag>,
}

impl Launch {
    /// Applies RunTask's and StartTask's `propagateTags` (TASK_DEFINITION:
    /// the task definition's tags, under the request's own) and
    /// `enableECSManagedTags` (`aws:ecs:clusterName`). SERVICE is only for
    /// tasks a service starts.
    fn finish_tags(&mut self, propagate: Option<&str>, managed: bool) -> Result<(), ApiError> {
        match propagate {
            None | Some("NONE") => {}
            Some("TASK_DEFINITION") => {
                let mut tags: Vec<Tag> = self
                    .td_tags
                    .iter()
                    .filter(|t| !self.tags.iter().any(|o| o.key == t.key))
                    .cloned()
                    .collect();
                tags.append(&mut self.tags);
                self.tags = tags;
            }
            Some("SERVICE") => {
                return Err(ApiError::invalid_parameter(
                    "propagateTags SERVICE is only valid for tasks started by a service.",
                ))
            }
            Some(other) => {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid propagateTags: {other}. Valid values are [TASK_DEFINITION, SERVICE, NONE]."
                )))
            }
        }
        if managed {
            add_managed_tags(&mut self.tags, &self.cluster, None);
        }
        Ok(())
    }
}

/// ECS's managed tags (`enableECSManagedTags`): `aws:ecs:clusterName` and,
/// for a service's tasks, `aws:ecs:serviceName`, replacing any of the same
/// key.
pub(crate) fn add_managed_tags(tags: &mut Vec<Tag>, cluster: &str, service: Option<&str>) {
    let managed = [
        ("aws:ecs:clusterName", Some(cluster)),
        ("aws:ecs:serviceName", service),
    ];
    for (key, value) in managed {
        let Some(value) = value else { continue };
        tags.retain(|t| t.key.as_deref() != Some(key));
        tags.push(Tag {
            key: Some(key.into()),
            value: Some(value.into()),
        });
    }
}

/// What RunTask and StartTask ask for, before it is checked.
struct LaunchInput<'a> {
    cluster: Option<&'a str>,
    task_definition: Option<&'a String>,
    overrides: Option<TaskOverride>,
    group: Option<String>,
    started_by: Option<String>,
    tags: Option<Vec<Tag>>,
    strategies: &'a [Value],
    constraints: &'a [Value],
    count: u32,
    /// Whether the request carries a networkConfiguration.
    network_configuration: bool,
}

fn prepare(cx: &Cx<'_>, input: LaunchInput<'_>) -> Result<Launch, ApiError> {
    let LaunchInput {
        cluster,
        task_definition,
        overrides,
        group,
        started_by,
        tags,
        strategies,
        constraints,
        count,
        network_configuration,
    } = input;
    let (cluster, _) = active(cx, cluster)?;
    let reference = match task_definition.map(String::as_str) {
        Some(r) if !r.is_empty() => r,
        _ => {
            return Err(ApiError::invalid_parameter(
                "taskDefinition can not be blank.",
            ))
        }
    };
    let stored_td = active_task_definition(cx, reference)?;
    let td_tags = stored_td.tags;
    let td = stored_td.definition;
    check_runnable(&td, network_configuration)?;
    let overrides = overrides.unwrap_or_default();
    let (requirements, ports) = requirements(&td, &overrides)?;
    let tags = tags.unwrap_or_default();
    validate_tags(&tags)?;
    if let Some(s) = &started_by {
        if s.chars().count() > 36 {
            return Err(ApiError::invalid_parameter(
                "startedBy can be at most 36 characters.",
            ));
        }
    }
    let family = td.family.clone().unwrap_or_default();
    let group = group
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| format!("family:{family}"));
    let mut constraints = parse_constraints(constraints)?;
    for c in td.placement_constraints.iter().flatten() {
        constraints.push(
            PlacementConstraint::from_wire(
                c.r#type.as_deref().unwrap_or(""),
                c.expression.as_deref(),
            )
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))?,
        );
    }
    let mut strategies = parse_strategies(strategies)?;
    if strategies.is_empty() {
        strategies = PlacementStrategy::run_task_defaults();
    }
    let request = PlacementRequest {
        group,
        family,
        requirements,
        strategies,
        constraints,
        count,
    };
    Ok(Launch {
        cluster,
        td,
        overrides,
        request,
        ports,
        started_by,
        tags,
        td_tags,
    })
}

/// Builds the stored task for one placement.
fn new_task(
    cx: &Cx<'_>,
    launch: &Launch,
    instance: &StoredInstance,
    dynamic_tcp: &[u16],
    dynamic_udp: &[u16],
) -> StoredTask {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let cluster = &launch.cluster;
    let task_arn = cx.scope().task(cluster, &id);
    let now = cx.now();
    let (mut tcp_iter, mut udp_iter) = (dynamic_tcp.iter(), dynamic_udp.iter());
    let mut bindings: Vec<Vec<NetworkBinding>> =
        vec![Vec::new(); launch.td.container_definitions.as_ref().map_or(0, Vec::len)];
    let (mut tcp_ports, mut udp_ports) = (Vec::new(), Vec::new());
    for p in &launch.ports {
        let host = match (p.host_port, p.protocol.as_str()) {
            (Some(h), _) => Some(h),
            (None, "udp") => udp_iter.next().copied(),
            (None, _) => tcp_iter.next().copied(),
        };
        let Some(host) = host else { continue };
        if p.protocol == "udp" {
            udp_ports.push(host)
        } else {
            tcp_ports.push(host)
        }
        if let Some(list) = bindings.get_mut(p.container) {
            list.push(NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(i32::from(p.container_port)),
                host_port: Some(i32::from(host)),
                protocol: Some(p.protocol.clone()),
                ..Default::default()
            });
        }
    }
    let containers = launch
        .td
        .container_definitions
        .iter()
        .flatten()
        .zip(bindings)
        .map(|(c, network_bindings)| Container {
            container_arn: Some(cx.scope().arn(
                "ecs",
                &format!("container/{cluster}/{id}/{}", uuid::Uuid::new_v4()),
            )),
            task_arn: Some(task_arn.clone()),
            name: c.name.clone(),
            image: c.image.clone(),
            last_status: Some("PENDING".into()),
            network_bindings: Some(network_bindings),
            network_interfaces: Some(Vec::new()),
            health_status: Some("UNKNOWN".into()),
            cpu: Some(c.cpu.unwrap_or(0).to_string()),
            memory: c.memory.map(|m| m.to_string()),
            memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            ..Default::default()
        })
        .collect();
    let zone = instance
        .instance
        .attributes
        .iter()
        .flatten()
        .find(|a| a.name == "ecs.availability-zone")
        .and_then(|a| a.value.clone());
    let req = &launch.request.requirements;
    let task = Task {
        attachments: Some(Vec::new()),
        attributes: Some(Vec::new()),
        availability_zone: zone,
        cluster_arn: Some(cx.scope().cluster(cluster)),
        connectivity: Some("CONNECTED".into()),
        connectivity_at: Some(now),
        container_instance_arn: instance.instance.container_instance_arn.clone(),
        containers: Some(containers),
        cpu: Some(req.resources.cpu.to_string()),
        created_at: Some(now),
        desired_status: Some("RUNNING".into()),
        enable_execute_command: Some(false),
        group: Some(launch.request.group.clone()),
        health_status: Some("UNKNOWN".into()),
        last_status: Some("PROVISIONING".into()),
        launch_type: Some("EC2".into()),
        memory: Some(req.resources.memory.to_string()),
        overrides: Some(TaskOverride {
            container_overrides: Some(
                launch
                    .overrides
                    .container_overrides
                    .clone()
                    .unwrap_or_default(),
            ),
            inference_accelerator_overrides: Some(
                launch
                    .overrides
                    .inference_accelerator_overrides
                    .clone()
                    .unwrap_or_default(),
            ),
            ..launch.overrides.clone()
        }),
        started_by: launch.started_by.clone(),
        tags: Some(launch.tags.clone()),
        task_arn: Some(task_arn),
        task_definition_arn: launch.td.task_definition_arn.clone(),
        version: Some(1),
        ..Default::default()
    };
    StoredTask {
        cluster: cluster.clone(),
        id,
        instance_id: instance.id.clone(),
        family: launch.request.family.clone(),
        group: launch.request.group.clone(),
        resources: req.resources,
        tcp_ports,
        udp_ports,
        task,
    }
}

/// Tasks placed, failures as RunTask lists them, and the placement
/// engine's sentence on why tasks went unplaced (for service events).
type Placed = (Vec<StoredTask>, Vec<Failure>, Option<String>);

/// The most new tasks one store transaction carries. A service start of
/// thousands is placed in one run of the placement engine and committed in
/// transactions of this size, so agents get the first tasks while the rest
/// are still being written and no transaction grows without bound.
const COMMIT_CHUNK: usize = 500;

/// How long a STOPPED task stays visible (DescribeTasks, ListTasks) before
/// [`crate::ControlPlane::reap_stopped_tasks`] deletes it, by default: ECS
/// keeps stopped tasks for at least an hour.
pub const DEFAULT_STOPPED_TASK_RETENTION_SECS: u64 = 3600;

impl crate::ControlPlane {
    /// Deletes the tasks that have been STOPPED for longer than
    /// `retention_secs`, so the store and the task index do not grow with
    /// every task ever run. Each deletion is guarded on the revision the
    /// index holds, so a task written meanwhile is left for the next run.
    /// Returns how many were deleted.
    pub fn reap_stopped_tasks(&self, retention_secs: f64) -> Result<usize, ApiError> {
        let caller = self.internal_caller("berth-task-reaper");
        let cx = self.cx(&caller);
        let cutoff = cx.now() - retention_secs;
        let stale = cx.task_index().stopped_before(cutoff);
        let mut deleted = 0;
        for chunk in stale.chunks(COMMIT_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|(cluster, id, _)| keys::task(cluster, id))
                .collect();
            let txn = |range: std::ops::Range<usize>| Txn {
                compares: range
                    .clone()
                    .map(|n| Compare::ModRevision {
                        key: keys[n].clone(),
                        revision: chunk[n].2,
                    })
                    .collect(),
                success: range
                    .map(|n| Op::Delete {
                        key: keys[n].clone(),
                    })
                    .collect(),
                failure: Vec::new(),
            };
            if cx
                .store()
                .txn(txn(0..chunk.len()))
                .map_err(state::store_error)?
                .succeeded
            {
                deleted += chunk.len();
                continue;
            }
            // Something in the chunk changed since the index saw it: one by
            // one, leaving the changed ones.
            for n in 0..chunk.len() {
                if cx
                    .store()
                    .txn(txn(n..n + 1))
                    .map_err(state::store_error)?
                    .succeeded
                {
                    deleted += 1;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                retention_secs,
                "stopped tasks past their retention deleted"
            );
        }
        Ok(deleted)
    }
}

/// How often a placement is recomputed when its first commit loses a race.
const PLACEMENT_ATTEMPTS: usize = 16;

/// Places `launch` on the instances `only` allows (all when `None`) and
/// commits the new tasks; returns them and the failures.
///
/// Placement runs once over one snapshot, under the cluster's placement
/// lock. Every commit is guarded on the cluster record and on the
/// placement key (which every placement rewrites), so two placements can
/// never spend the same capacity. Up to [`COMMIT_CHUNK`] tasks go in one
/// transaction; when more were placed, each further chunk is guarded on
/// the revision the previous chunk wrote. If a later chunk loses its guard
/// (the cluster changed, or a placement in another process got in), the
/// tasks already committed are returned and the rest dropped, with a
/// message: each committed chunk is whole, and the service controller
/// that asked for many is level-driven and asks again.
fn place_and_commit(
    cx: &Cx<'_>,
    launch: &Launch,
    only: Option<&[String]>,
) -> Result<Placed, ApiError> {
    let cluster = &launch.cluster;
    let placement_key = keys::placement(cluster);
    let cluster_key = keys::cluster(cluster);
    let _guard = cx.locks().lock(&placement_key);
    let seed: u64 = rand::random();
    for _ in 0..PLACEMENT_ATTEMPTS {
        let started = std::time::Instant::now();
        let placement_rev = cx
            .store()
            .get(&placement_key)
            .map_err(state::store_error)?
            .map_or(0, |kv| kv.mod_revision);
        let cluster_rev = match cx.store().get(&cluster_key).map_err(state::store_error)? {
            Some(kv) => kv.mod_revision,
            None => return Err(ApiError::cluster_not_found()),
        };
        let (mut snap, mut records) = snapshot(cx, cluster)?;
        if let Some(ids) = only {
            let keep: Vec<bool> = records.iter().map(|r| ids.contains(&r.id)).collect();
            let mut k = keep.iter();
            snap.instances.retain(|_| *k.next().unwrap_or(&false));
            let mut k = keep.iter();
            records.retain(|_| *k.next().unwrap_or(&false));
        }
        if snap.instances.is_empty() {
            return Err(ApiError::invalid_parameter(
                "No Container Instances were found in your cluster.",
            ));
        }
        let snapshot_ms = started.elapsed().as_millis();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let plan = berth_scheduler::place(
            &snap,
            &launch.request,
            &PlacementOptions::default(),
            &mut rng,
        );
        tracing::debug!(cluster = %cluster, seed, placed = plan.placements.len(), unplaced = plan.unplaced, "placement");
        let mut tasks = Vec::with_capacity(plan.placements.len());
        for p in &plan.placements {
            let Some(record) = records.get(p.instance_index) else {
                continue;
            };
            tasks.push(new_task(
                cx,
                launch,
                record,
                &p.dynamic_tcp_ports,
                &p.dynamic_udp_ports,
            ));
        }
        let mut failures = Vec::new();
        let mut message = None;
        if plan.unplaced > 0 {
            // One failure per rejected instance, as ECS lists them, however
            // many tasks were asked for.
            if let Some(d) = &plan.diagnosis {
                message = Some(d.message.clone());
                for r in &d.rejections {
                    failures.push(Failure {
                        arn: Some(r.instance_id.clone()),
                        reason: Some(r.reason.as_wire().to_string()),
                        detail: None,
                    });
                }
            }
        }
        let placed_ms = started.elapsed().as_millis();
        let mut committed = 0;
        let mut guard_rev = placement_rev;
        for chunk in tasks.chunks(COMMIT_CHUNK) {
            let mut ops = Vec::with_capacity(chunk.len() + 2);
            for t in chunk {
                ops.push(put_op(keys::task(cluster, &t.id), t)?);
            }
            ops.push(Op::Put {
                key: placement_key.clone(),
                value: b"{}".to_vec(),
            });
            ops.push(Op::Put {
                key: keys::cluster_epoch(cluster),
                value: b"task".to_vec(),
            });
            let result = cx
                .store()
                .txn(Txn {
                    compares: vec![
                        Compare::ModRevision {
                            key: cluster_key.clone(),
                            revision: cluster_rev,
                        },
                        Compare::ModRevision {
                            key: placement_key.clone(),
                            revision: guard_rev,
                        },
                    ],
                    success: ops,
                    failure: Vec::new(),
                })
                .map_err(state::store_error)?;
            if !result.succeeded {
                break;
            }
            for t in chunk {
                cx.task_index().put(result.revision, t);
            }
            guard_rev = result.revision;
            committed += chunk.len();
        }
        if tasks.len() > COMMIT_CHUNK {
            tracing::info!(cluster = %cluster, tasks = tasks.len(), committed, snapshot_ms, placed_ms, total_ms = started.elapsed().as_millis(), "large placement");
        }
        if committed == 0 && !tasks.is_empty() {
            if cx
                .store()
                .get(&cluster_key)
                .map_err(state::store_error)?
                .is_none()
            {
                return Err(ApiError::cluster_not_found());
            }
            tracing::debug!(cluster = %cluster, "placement lost a race, placing again");
            continue;
        }
        if committed < tasks.len() {
            tracing::info!(cluster = %cluster, committed, placed = tasks.len(), "placement cut short by a concurrent change");
            tasks.truncate(committed);
            message.get_or_insert_with(|| {
                "the cluster changed while tasks were being placed; the rest are placed again"
                    .to_string()
            });
        }
        return Ok((tasks, failures, message));
    }
    Err(ApiError::server(
        "too much contention on a resource, try again",
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunTaskRequest {
    cluster: Option<String>,
    count: Option<i64>,
    group: Option<String>,
    launch_type: Option<String>,
    capacity_provider_strategy: Option<Vec<Value>>,
    network_configuration: Option<Value>,
    overrides: Option<TaskOverride>,
    placement_constraints: Option<Vec<Value>>,
    placement_strategy: Option<Vec<Value>>,
    started_by: Option<String>,
    tags: Option<Vec<Tag>>,
    task_definition: Option<String>,
    propagate_tags: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    enable_execute_command: Option<bool>,
}

#[derive(Serialize)]
pub(crate) struct TasksResponse {
    tasks: Vec<Task>,
    failures: Vec<Failure>,
}

pub(crate) fn run(cx: &Cx<'_>, req: RunTaskRequest) -> Result<TasksResponse, ApiError> {
    let count = req.count.unwrap_or(1);
    if !(1..=MAX_TASKS_PER_CALL as i64).contains(&count) {
        return Err(ApiError::invalid_parameter(
            "count must be between 1 and 10.",
        ));
    }
    check_launch_type(req.launch_type.as_deref())?;
    refuse_launch_type_with_strategy(
        req.launch_type.as_deref(),
        req.capacity_provider_strategy.as_deref(),
    )?;
    match req.launch_type.as_deref() {
        None | Some("EC2") => {}
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedFeatureException,
                format!("The launch type {other} is not supported by this Berth cluster yet."),
            ))
        }
    }
    if req
        .capacity_provider_strategy
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(ApiError::new(
            ErrorCode::UnsupportedFeatureException,
            "Capacity provider strategies are not supported by this Berth cluster yet.",
        ));
    }
    refuse_execute_command(req.enable_execute_command)?;
    let mut launch = prepare(
        cx,
        LaunchInput {
            cluster: req.cluster.as_deref(),
            task_definition: req.task_definition.as_ref(),
            overrides: req.overrides,
            group: req.group,
            started_by: req.started_by,
            tags: req.tags,
            strategies: req.placement_strategy.as_deref().unwrap_or_default(),
            constraints: req.placement_constraints.as_deref().unwrap_or_default(),
            count: count as u32,
            network_configuration: req.network_configuration.is_some(),
        },
    )?;
    launch.finish_tags(
        req.propagate_tags.as_deref(),
        req.enable_ecs_managed_tags == Some(true),
    )?;
    let (tasks, failures, _) = place_and_commit(cx, &launch, None)?;
    tracing::info!(cluster = %launch.cluster, placed = tasks.len(), failures = failures.len(), "run task");
    Ok(TasksResponse {
        tasks: tasks.into_iter().map(|t| t.task).collect(),
        failures,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartTaskRequest {
    cluster: Option<String>,
    container_instances: Option<Vec<String>>,
    group: Option<String>,
    network_configuration: Option<Value>,
    overrides: Option<TaskOverride>,
    started_by: Option<String>,
    tags: Option<Vec<Tag>>,
    task_definition: Option<String>,
    propagate_tags: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    enable_execute_command: Option<bool>,
}

pub(crate) fn start(cx: &Cx<'_>, req: StartTaskRequest) -> Result<TasksResponse, ApiError> {
    let refs = req.container_instances.clone().unwrap_or_default();
    if refs.is_empty() || refs.len() > MAX_TASKS_PER_CALL {
        return Err(ApiError::invalid_parameter(
            "containerInstances must have between 1 and 10 items.",
        ));
    }
    refuse_execute_command(req.enable_execute_command)?;
    // One task definition, one check: the launch is the same on every
    // instance named.
    let mut launch = prepare(
        cx,
        LaunchInput {
            cluster: req.cluster.as_deref(),
            task_definition: req.task_definition.as_ref(),
            overrides: req.overrides.clone(),
            group: req.group.clone(),
            started_by: req.started_by.clone(),
            tags: req.tags.clone(),
            strategies: &[],
            constraints: &[],
            count: 1,
            network_configuration: req.network_configuration.is_some(),
        },
    )?;
    launch.finish_tags(
        req.propagate_tags.as_deref(),
        req.enable_ecs_managed_tags == Some(true),
    )?;
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for reference in refs {
        let id = reference
            .rsplit('/')
            .next()
            .unwrap_or(&reference)
            .to_string();
        match place_and_commit(cx, &launch, Some(std::slice::from_ref(&id))) {
            Ok((placed, mut failed, _)) => {
                if placed.is_empty() && failed.is_empty() {
                    failed.push(missing(reference.clone()));
                }
                tasks.extend(placed.into_iter().map(|t| t.task));
                failures.append(&mut failed);
            }
            Err(e) if e.code == ErrorCode::InvalidParameterException => {
                failures.push(missing(reference.clone()))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(TasksResponse { tasks, failures })
}

/// Places `count` tasks of a service's deployment: group
/// `service:<name>`, startedBy the deployment id, the service's placement,
/// ECS's service defaults (spread over zones, then instances) when it has
/// none; `only` limits placement to those instance ids (DAEMON). Returns
/// the new task ids and, when some could not be placed, the placement
/// engine's sentence saying why.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_for_service(
    cx: &Cx<'_>,
    cluster: &str,
    task_definition: &str,
    count: u32,
    service: &str,
    deployment_id: &str,
    strategies: &[Value],
    constraints: &[Value],
    only: Option<&[String]>,
    tags: Vec<Tag>,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let td = task_definition.to_string();
    let mut launch = prepare(
        cx,
        LaunchInput {
            cluster: Some(cluster),
            task_definition: Some(&td),
            overrides: None,
            group: Some(format!("service:{service}")),
            started_by: Some(deployment_id.to_string()),
            tags: None,
            strategies,
            constraints,
            count,
            // Checked when the service was created or updated.
            network_configuration: false,
        },
    )?;
    if strategies.is_empty() {
        launch.request.strategies = PlacementStrategy::service_defaults();
    }
    // Propagated and ECS-managed (`aws:`) tags: validated where they were
    // set, or the service's own.
    launch.tags = tags;
    let (tasks, _, message) = place_and_commit(cx, &launch, only)?;
    Ok((tasks.into_iter().map(|t| t.id).collect(), message))
}

/// The id part of a task reference (an ARN or a bare id).
fn task_id(cx: &Cx<'_>, cluster: &str, reference: &str) -> Result<String, ApiError> {
    match Arn::parse(reference) {
        Some(arn) if arn.service == "ecs" => match arn.resource_parts() {
            ("task", rest) => {
                let (c, id) = rest.split_once('/').unwrap_or((cluster, rest));
                if c != cluster || arn.account_id != cx.scope().account_id {
                    return Err(ApiError::invalid_parameter(format!(
                        "Task {reference} does not belong to cluster {cluster}."
                    )));
                }
                Ok(id.to_string())
            }
            _ => Err(ApiError::invalid_parameter(format!(
                "Invalid task ARN: {reference}"
            ))),
        },
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "Invalid task ARN: {reference}"
        ))),
        None => Ok(reference.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StopTaskRequest {
    cluster: Option<String>,
    task: Option<String>,
    reason: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct TaskResponse {
    task: Task,
}

pub(crate) fn stop(cx: &Cx<'_>, req: StopTaskRequest) -> Result<TaskResponse, ApiError> {
    let reference = required(&req.task, "task")?;
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let id = task_id(cx, &cluster, reference)?;
    let reason = req
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "Task stopped by user".into());
    if reason.chars().count() > 255 {
        return Err(ApiError::invalid_parameter(
            "reason can be at most 255 characters.",
        ));
    }
    let task = stop_task(cx, &cluster, &id, &reason, "UserInitiated")?;
    Ok(TaskResponse { task })
}

/// Marks `t` as asked to stop; false when it already was (asking twice
/// changes nothing).
fn mark_stop(t: &mut StoredTask, reason: &str, stop_code: &str, now: f64) -> bool {
    if t.task.desired_status.as_deref() == Some("STOPPED") {
        return false;
    }
    t.task.desired_status = Some("STOPPED".into());
    t.task.stop_code = Some(stop_code.into());
    t.task.stopped_reason = Some(reason.to_string());
    t.task.version = Some(t.task.version.unwrap_or(1) + 1);
    // A task no agent has taken yet stops at once: nothing runs.
    if t.last_status() == "PROVISIONING" {
        t.task.last_status = Some("STOPPED".into());
        t.task.stopping_at = Some(now);
        t.task.stopped_at = Some(now);
        t.task.execution_stopped_at = Some(now);
        for c in t.task.containers.iter_mut().flatten() {
            c.last_status = Some("STOPPED".into());
        }
    }
    true
}

/// Asks task `id` of `cluster` to stop, with a reason and a stop code
/// (UserInitiated for StopTask, ServiceSchedulerInitiated for the service
/// controller). Asking twice changes nothing.
pub(crate) fn stop_task(
    cx: &Cx<'_>,
    cluster: &str,
    id: &str,
    reason: &str,
    stop_code: &str,
) -> Result<Task, ApiError> {
    let key = keys::task(cluster, id);
    let now = cx.now();
    let out = read_modify_write(cx.store(), &key, |cur: Option<StoredTask>| {
        let mut t =
            cur.ok_or_else(|| ApiError::invalid_parameter("The referenced task was not found."))?;
        if !mark_stop(&mut t, reason, stop_code, now) {
            return Ok(Change::Keep(t));
        }
        Ok(Change::Write(vec![put_op(key.clone(), &t)?], t))
    })?;
    tracing::info!(cluster = %cluster, task = %id, stop_code, "task stop requested");
    Ok(out.task)
}

/// [`stop_task`] for many tasks (id, reason) at once, up to
/// [`COMMIT_CHUNK`] to a transaction, each task guarded on the revision it
/// was read at; a chunk that loses a race is redone task by task. Tasks
/// that are gone are skipped. Returns how many were newly asked to stop.
pub(crate) fn stop_tasks(
    cx: &Cx<'_>,
    cluster: &str,
    stops: &[(&str, &str)],
    stop_code: &str,
) -> Result<usize, ApiError> {
    let now = cx.now();
    let mut asked = 0;
    for chunk in stops.chunks(COMMIT_CHUNK) {
        let mut compares = Vec::with_capacity(chunk.len());
        let mut ops = Vec::with_capacity(chunk.len());
        let mut marked = Vec::with_capacity(chunk.len());
        for (id, reason) in chunk {
            let key = keys::task(cluster, id);
            let Some(cur) = state::get::<StoredTask>(cx.store(), &key)? else {
                continue;
            };
            let mut t = cur.value;
            if !mark_stop(&mut t, reason, stop_code, now) {
                continue;
            }
            ops.push(put_op(key.clone(), &t)?);
            compares.push(Compare::ModRevision {
                key,
                revision: cur.mod_revision,
            });
            marked.push(t);
        }
        if ops.is_empty() {
            continue;
        }
        let n = ops.len();
        let result = cx
            .store()
            .txn(Txn {
                compares,
                success: ops,
                failure: Vec::new(),
            })
            .map_err(state::store_error)?;
        if result.succeeded {
            for t in &marked {
                cx.task_index().put(result.revision, t);
            }
            asked += n;
            continue;
        }
        for (id, reason) in chunk {
            match stop_task(cx, cluster, id, reason, stop_code) {
                Ok(_) => asked += 1,
                Err(e) if e.code == ErrorCode::InvalidParameterException => continue,
                Err(e) => return Err(e),
            }
            // Write through, so the next pass sees the stop.
            if let Some(t) = state::get::<StoredTask>(cx.store(), &keys::task(cluster, id))? {
                cx.task_index().put(t.mod_revision, &t.value);
            }
        }
    }
    if asked > 0 {
        tracing::info!(cluster = %cluster, asked, stop_code, "task stops requested");
    }
    Ok(asked)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeTasksRequest {
    cluster: Option<String>,
    tasks: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

pub(crate) fn describe(cx: &Cx<'_>, req: DescribeTasksRequest) -> Result<TasksResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let include_tags = include_list(req.include, &["TAGS"])?
        .iter()
        .any(|f| f == "TAGS");
    let refs = req.tasks.unwrap_or_default();
    if refs.is_empty() || refs.len() > 100 {
        return Err(ApiError::invalid_parameter(
            "tasks must have between 1 and 100 items.",
        ));
    }
    let mut out = TasksResponse {
        tasks: Vec::new(),
        failures: Vec::new(),
    };
    for reference in refs {
        let found = match task_id(cx, &cluster, &reference) {
            Ok(id) => state::get::<StoredTask>(cx.store(), &keys::task(&cluster, &id))?,
            Err(_) => None,
        };
        match found {
            Some(t) => {
                let mut task = t.value.task;
                if !include_tags {
                    task.tags = None;
                }
                out.tasks.push(task);
            }
            None => out.failures.push(missing(reference)),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListTasksRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
    family: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    started_by: Option<String>,
    service_name: Option<String>,
    desired_status: Option<String>,
    launch_type: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListTasksResponse {
    task_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list(cx: &Cx<'_>, req: ListTasksRequest) -> Result<ListTasksResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let limit = page_size(req.max_results, 100, 100)?;
    check_launch_type(req.launch_type.as_deref())?;
    let desired = req.desired_status.as_deref().unwrap_or("RUNNING");
    if !matches!(desired, "RUNNING" | "PENDING" | "STOPPED") {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid desiredStatus: {desired}. Valid values are [RUNNING, PENDING, STOPPED]."
        )));
    }
    let instance = req
        .container_instance
        .as_deref()
        .map(|r| r.rsplit('/').next().unwrap_or(r).to_string());
    let group = req
        .service_name
        .as_deref()
        .map(|s| format!("service:{}", s.rsplit('/').next().unwrap_or(s)));
    let prefix = keys::tasks(&cluster);
    let start_after = decode_token(req.next_token.as_deref(), &prefix)?;
    let keep = |t: &StoredTask| {
        let task_desired = t.task.desired_status.as_deref().unwrap_or("RUNNING");
        task_desired == desired
            && instance.as_ref().is_none_or(|i| *i == t.instance_id)
            && req.family.as_ref().is_none_or(|f| *f == t.family)
            && req
                .started_by
                .as_ref()
                .is_none_or(|s| Some(s) == t.task.started_by.as_ref())
            && group.as_ref().is_none_or(|g| *g == t.group)
            && req
                .launch_type
                .as_ref()
                .is_none_or(|l| Some(l) == t.task.launch_type.as_ref())
    };
    // From the in-memory index when it is seeded (an agent's fallback poll
    // must not cost a scan of the cluster), else from the store.
    if let Some(matching) = cx.task_index().select(&cluster, keep) {
        let after = start_after.as_deref().and_then(|k| k.strip_prefix(&prefix));
        let mut rest = matching
            .iter()
            .filter(|t| after.is_none_or(|a| t.id.as_str() > a))
            .peekable();
        let mut task_arns = Vec::new();
        let mut last = None;
        while task_arns.len() < limit {
            let Some(t) = rest.next() else { break };
            task_arns.push(t.task.task_arn.clone().unwrap_or_default());
            last = Some(keys::task(&cluster, &t.id));
        }
        let next_token = match (rest.peek(), last) {
            (Some(_), Some(key)) => Some(crate::paging::encode_token(&key)),
            _ => None,
        };
        return Ok(ListTasksResponse {
            task_arns,
            next_token,
        });
    }
    let (task_arns, next_token) = page(cx.store(), &prefix, start_after, limit, |kv| {
        let t: StoredTask = state::decode(kv)?;
        Ok(keep(&t).then(|| t.task.task_arn.unwrap_or_default()))
    })?;
    Ok(ListTasksResponse {
        task_arns,
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubmitTaskStateChangeRequest {
    cluster: Option<String>,
    task: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    containers: Option<Vec<ReportedContainer>>,
    /// Berth's extension: the task's health as the agent judges it from
    /// its essential containers' health checks.
    health_status: Option<String>,
    pull_started_at: Option<f64>,
    pull_stopped_at: Option<f64>,
    execution_stopped_at: Option<f64>,
}

/// A container's reported state: ECS's `ContainerStateChange` plus Berth's
/// extension `healthStatus`, the state of its Docker health check.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReportedContainer {
    #[serde(flatten)]
    change: ContainerStateChange,
    health_status: Option<String>,
}

fn health_value(status: Option<&str>) -> Result<Option<String>, ApiError> {
    match status {
        None => Ok(None),
        Some(s @ ("HEALTHY" | "UNHEALTHY" | "UNKNOWN")) => Ok(Some(s.to_string())),
        Some(other) => Err(ApiError::invalid_parameter(format!(
            "Invalid healthStatus: {other}. Valid values are [HEALTHY, UNHEALTHY, UNKNOWN]."
        ))),
    }
}

fn apply_container_health(task: &mut Task, name: Option<&str>, health: &str) {
    if let Some(c) = task
        .containers
        .iter_mut()
        .flatten()
        .find(|c| c.name.as_deref() == name)
    {
        c.health_status = Some(health.to_string());
    }
}

#[derive(Serialize)]
pub(crate) struct Acknowledgment {
    acknowledgment: String,
}

fn ack() -> Acknowledgment {
    Acknowledgment {
        acknowledgment: "ACK".into(),
    }
}

/// Applies one container's reported state.
fn apply_container(task: &mut Task, change: &ContainerStateChange) {
    let Some(c) = task
        .containers
        .iter_mut()
        .flatten()
        .find(|c| c.name == change.container_name)
    else {
        return;
    };
    let forward = match (change.status.as_deref(), c.last_status.as_deref()) {
        (Some(new), Some(old)) => container_rank(new) >= container_rank(old),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if forward {
        c.last_status = change.status.clone();
    }
    if change.exit_code.is_some() {
        c.exit_code = change.exit_code;
    }
    if change.reason.is_some() {
        c.reason = change.reason.clone();
    }
    if change.runtime_id.is_some() {
        c.runtime_id = change.runtime_id.clone();
    }
    if change.image_digest.is_some() {
        c.image_digest = change.image_digest.clone();
    }
    if let Some(b) = &change.network_bindings {
        if !b.is_empty() {
            c.network_bindings = Some(b.clone());
        }
    }
}

fn container_rank(status: &str) -> usize {
    match status {
        "PENDING" => 0,
        "RUNNING" => 1,
        "STOPPED" => 2,
        _ => 0,
    }
}

/// Moves a task to a reported status, never backwards, and stamps the
/// lifecycle timestamps.
fn apply_task_status(t: &mut StoredTask, status: &str, reason: Option<&str>, now: f64) {
    let (Some(new), Some(old)) = (rank(status), rank(t.last_status())) else {
        return;
    };
    if new <= old {
        return;
    }
    t.task.last_status = Some(status.to_string());
    if status == "RUNNING" && t.task.started_at.is_none() {
        t.task.started_at = Some(now);
    }
    if new >= rank("STOPPING").unwrap_or(usize::MAX) && t.task.stopping_at.is_none() {
        t.task.stopping_at = Some(now);
    }
    if status == "STOPPED" {
        t.task.stopped_at = Some(now);
        t.task.desired_status = Some("STOPPED".into());
        if t.task.stop_code.is_none() {
            // A container that ran, even briefly, has an exit code.
            let ran = t.task.started_at.is_some()
                || t.task
                    .containers
                    .iter()
                    .flatten()
                    .any(|c| c.exit_code.is_some());
            let code = if ran {
                "EssentialContainerExited"
            } else {
                "TaskFailedToStart"
            };
            t.task.stop_code = Some(code.into());
        }
        if t.task.stopped_reason.is_none() {
            t.task.stopped_reason = reason.map(str::to_string);
        }
    }
    t.task.version = Some(t.task.version.unwrap_or(1) + 1);
}

pub(crate) fn submit_task_state(
    cx: &Cx<'_>,
    req: SubmitTaskStateChangeRequest,
) -> Result<Acknowledgment, ApiError> {
    let reference = required(&req.task, "task")?;
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let id = task_id(cx, &cluster, reference)?;
    let key = keys::task(&cluster, &id);
    let now = cx.now();
    let status = req.status.clone().unwrap_or_default();
    if !status.is_empty() && rank(&status).is_none() {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid status: {status}."
        )));
    }
    let task_health = health_value(req.health_status.as_deref())?;
    for c in req.containers.iter().flatten() {
        health_value(c.health_status.as_deref())?;
    }
    read_modify_write(cx.store(), &key, |cur: Option<StoredTask>| {
        let mut t =
            cur.ok_or_else(|| ApiError::invalid_parameter("The referenced task was not found."))?;
        for c in req.containers.iter().flatten() {
            apply_container(&mut t.task, &c.change);
            if let Some(h) = &c.health_status {
                apply_container_health(&mut t.task, c.change.container_name.as_deref(), h);
            }
        }
        if let Some(h) = &task_health {
            t.task.health_status = Some(h.clone());
        }
        if req.pull_started_at.is_some() && t.task.pull_started_at.is_none() {
            t.task.pull_started_at = req.pull_started_at;
        }
        if req.pull_stopped_at.is_some() {
            t.task.pull_stopped_at = req.pull_stopped_at;
        }
        if req.execution_stopped_at.is_some() {
            t.task.execution_stopped_at = req.execution_stopped_at;
        }
        if !status.is_empty() {
            apply_task_status(&mut t, &status, req.reason.as_deref(), now);
        }
        Ok(Change::Write(vec![put_op(key.clone(), &t)?], ()))
    })?;
    Ok(ack())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubmitContainerStateChangeRequest {
    cluster: Option<String>,
    task: Option<String>,
    container_name: Option<String>,
    runtime_id: Option<String>,
    status: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
    network_bindings: Option<Vec<NetworkBinding>>,
}

pub(crate) fn submit_container_state(
    cx: &Cx<'_>,
    req: SubmitContainerStateChangeRequest,
) -> Result<Acknowledgment, ApiError> {
    let reference = required(&req.task, "task")?;
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let id = task_id(cx, &cluster, reference)?;
    let key = keys::task(&cluster, &id);
    let change = ContainerStateChange {
        container_name: req.container_name.clone(),
        runtime_id: req.runtime_id.clone(),
        status: req.status.clone(),
        exit_code: req.exit_code,
        reason: req.reason.clone(),
        network_bindings: req.network_bindings.clone(),
        image_digest: None,
    };
    read_modify_write(cx.store(), &key, |cur: Option<StoredTask>| {
        let mut t =
            cur.ok_or_else(|| ApiError::invalid_parameter("The referenced task was not found."))?;
        apply_container(&mut t.task, &change);
        Ok(Change::Write(vec![put_op(key.clone(), &t)?], ()))
    })?;
    Ok(ack())
}
