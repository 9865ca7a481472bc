//! The domain types the scheduler reads and writes: a cluster snapshot, a placement request, and the
//! plan that comes back.
//!
//! These are plain Rust values, converted from the wire and the store at the control plane's edge. The
//! scheduler never mutates a snapshot while it plans; [`ClusterSnapshot::apply`] and
//! [`ClusterSnapshot::remove_task`] are the only writers, and they are exact inverses of each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::failure::Diagnosis;
use crate::strategy::{PlacementConstraint, PlacementStrategy};

/// Attribute name of the availability zone, set by the agent.
pub const ATTR_AVAILABILITY_ZONE: &str = "ecs.availability-zone";
/// Attribute name of the EC2 instance type, set by the agent.
pub const ATTR_INSTANCE_TYPE: &str = "ecs.instance-type";
/// Attribute name of the operating system family (`linux`, `windows`).
pub const ATTR_OS_TYPE: &str = "ecs.os-type";
/// Attribute name of the CPU architecture (`x86_64`, `arm64`).
pub const ATTR_CPU_ARCHITECTURE: &str = "ecs.cpu-architecture";
/// Attribute name of the machine image id.
pub const ATTR_AMI_ID: &str = "ecs.ami-id";

/// The counted resources of an instance or a task: CPU units (1024 per vCPU), memory in MiB, GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU units; 1024 units are one vCPU.
    pub cpu: u32,
    /// Memory in MiB.
    pub memory: u32,
    /// Whole GPUs.
    pub gpus: u32,
}

/// ECS container instance status, as far as placement cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Accepts new tasks.
    Active,
    /// Being drained: keeps its tasks for now but takes no new ones.
    Draining,
    /// Registered but not (yet, or any longer) usable: takes no new tasks.
    Inactive,
}

/// A task already on an instance (any desired state other than STOPPED), with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOnInstance {
    /// Task ARN or id.
    pub id: String,
    /// Task group, e.g. `service:web` or `family:batch`.
    pub group: String,
    /// Task definition family.
    pub family: String,
    /// What the task holds on the instance.
    pub resources: Resources,
    /// Host TCP ports the task holds (static and dynamic).
    pub tcp_ports: Vec<u16>,
    /// Host UDP ports the task holds.
    pub udp_ports: Vec<u16>,
}

/// One container instance as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInstance {
    /// Container instance ARN (or id). Placements and failures name instances by this.
    pub id: String,
    /// EC2 (or host) instance id, the `ec2InstanceId` of the query language.
    pub ec2_instance_id: Option<String>,
    /// ACTIVE, DRAINING or INACTIVE.
    pub status: InstanceStatus,
    /// Whether the agent is connected; a disconnected agent cannot start tasks (`AGENT`).
    pub agent_connected: bool,
    /// Registration time, seconds since the Unix epoch (`registeredAt`).
    pub registered_at: i64,
    /// Attributes, built-in (`ecs.availability-zone`, ...) and custom. ECS attributes may have no value.
    pub attributes: BTreeMap<String, Option<String>>,
    /// Resources registered by the agent.
    pub registered: Resources,
    /// Resources not yet held by a task.
    pub remaining: Resources,
    /// TCP host ports that are reserved or in use, in any order (duplicates are harmless).
    pub used_tcp_ports: Vec<u16>,
    /// UDP host ports that are reserved or in use.
    pub used_udp_ports: Vec<u16>,
    /// `runningTasksCount` of the query language: tasks running or about to run here.
    pub running_tasks_count: u32,
    /// The tasks on this instance, with their groups (for spread, distinctInstance and `task:group`).
    pub tasks: Vec<TaskOnInstance>,
    /// The instance's own dynamic host port range, `(first, last)` inclusive, as its agent sets it
    /// (`ECS_DYNAMIC_HOST_PORT_RANGE`); `None` means the engine-wide range of [`PlacementOptions`].
    /// Dynamic ports of tasks placed here are drawn from it, and the static ports of a task that fall
    /// in it count against it. A range with `first > last` offers no dynamic ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_ports: Option<(u16, u16)>,
}

impl ContainerInstance {
    /// A new ACTIVE, connected instance with the given resources free and nothing on it.
    pub fn new(id: impl Into<String>, resources: Resources) -> Self {
        Self {
            id: id.into(),
            ec2_instance_id: None,
            status: InstanceStatus::Active,
            agent_connected: true,
            registered_at: 0,
            attributes: BTreeMap::new(),
            registered: resources,
            remaining: resources,
            used_tcp_ports: Vec::new(),
            used_udp_ports: Vec::new(),
            running_tasks_count: 0,
            tasks: Vec::new(),
            dynamic_ports: None,
        }
    }

    /// Builder helper: gives the instance its own dynamic host port range, `first..=last`.
    #[must_use]
    pub fn with_dynamic_ports(mut self, first: u16, last: u16) -> Self {
        self.dynamic_ports = Some((first, last));
        self
    }

    /// Builder helper: sets an attribute with a value.
    #[must_use]
    pub fn with_attribute(mut self, name: &str, value: &str) -> Self {
        self.attributes
            .insert(name.to_owned(), Some(value.to_owned()));
        self
    }

    /// The value of an attribute: `None` if absent, `Some(None)` if present without a value.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(|v| v.as_deref())
    }
}

/// An immutable view of the cluster that one planning run reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// Every registered container instance, in a stable order (ties are broken from the seed, not from
    /// this order, but the same order and seed always give the same plan).
    pub instances: Vec<ContainerInstance>,
}

/// What one task needs from an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRequirements {
    /// CPU, memory and GPUs (task level, or the sum over containers).
    pub resources: Resources,
    /// Static TCP host ports (`hostPort` set and non-zero).
    pub static_tcp_ports: Vec<u16>,
    /// Static UDP host ports.
    pub static_udp_ports: Vec<u16>,
    /// Number of TCP port mappings with a dynamic host port (`hostPort` 0 or absent in bridge mode).
    pub dynamic_tcp_ports: u16,
    /// Number of UDP port mappings with a dynamic host port.
    pub dynamic_udp_ports: u16,
}

/// A request to place `count` identical tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// Task group: `service:<name>` for a service, `family:<family>` by default for RunTask.
    pub group: String,
    /// Task definition family.
    pub family: String,
    /// What each task needs.
    pub requirements: TaskRequirements,
    /// Strategies, in order; later ones break the ties of earlier ones. Empty means "any feasible
    /// instance, chosen from the seed"; callers fill ECS's defaults with
    /// [`PlacementStrategy::run_task_defaults`] or [`PlacementStrategy::service_defaults`].
    pub strategies: Vec<PlacementStrategy>,
    /// Constraints; all must hold.
    pub constraints: Vec<PlacementConstraint>,
    /// How many tasks to place.
    pub count: u32,
}

/// Engine settings that are not part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementOptions {
    /// First port of the dynamic host port range (inclusive), for instances without their own
    /// ([`ContainerInstance::dynamic_ports`]).
    pub dynamic_port_first: u16,
    /// Last port of the dynamic host port range (inclusive), for instances without their own.
    pub dynamic_port_last: u16,
}

impl Default for PlacementOptions {
    /// The ECS agent's fallback range, 49153-65535.
    fn default() -> Self {
        Self {
            dynamic_port_first: 49153,
            dynamic_port_last: 65535,
        }
    }
}

/// One placed task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Which task of the request (0-based, in placement order).
    pub task_index: u32,
    /// Index of the instance in [`ClusterSnapshot::instances`].
    pub instance_index: usize,
    /// The instance's id.
    pub instance_id: String,
    /// Dynamic TCP host ports assigned, one per dynamic TCP mapping, in mapping order.
    pub dynamic_tcp_ports: Vec<u16>,
    /// Dynamic UDP host ports assigned, one per dynamic UDP mapping, in mapping order.
    pub dynamic_udp_ports: Vec<u16>,
}

/// The answer of one planning run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The tasks placed, in order.
    pub placements: Vec<Placement>,
    /// How many tasks of the request could not be placed: the last `unplaced` of them, since the
    /// tasks of one request are identical and once one finds no instance, none after it can. A
    /// count, not a list: a request for millions of tasks that fit nowhere costs what a request
    /// for one does.
    pub unplaced: u32,
    /// Why, when `unplaced` is not zero: one record per rejected instance (its first failing
    /// stage), however many tasks failed. A failed placement changes nothing, so every unplaced
    /// task failed for these same reasons.
    pub diagnosis: Option<Diagnosis>,
}

impl ClusterSnapshot {
    /// Records a plan in the snapshot: each placed task is added to its instance, takes its resources
    /// and ports, and counts as running. `task_id` names each new task.
    pub fn apply(
        &mut self,
        request: &PlacementRequest,
        plan: &Plan,
        mut task_id: impl FnMut(&Placement) -> String,
    ) {
        let req = &request.requirements;
        for p in &plan.placements {
            let Some(inst) = self.instances.get_mut(p.instance_index) else {
                continue;
            };
            let mut tcp = req.static_tcp_ports.clone();
            tcp.extend_from_slice(&p.dynamic_tcp_ports);
            let mut udp = req.static_udp_ports.clone();
            udp.extend_from_slice(&p.dynamic_udp_ports);
            let task = TaskOnInstance {
                id: task_id(p),
                group: request.group.clone(),
                family: request.family.clone(),
                resources: req.resources,
                tcp_ports: tcp,
                udp_ports: udp,
            };
            inst.add_task(task);
        }
    }

    /// Removes a task from an instance and gives back what it held. Returns the task, or `None` if
    /// the instance index or task id is unknown.
    pub fn remove_task(&mut self, instance_index: usize, task_id: &str) -> Option<TaskOnInstance> {
        let inst = self.instances.get_mut(instance_index)?;
        let pos = inst.tasks.iter().rposition(|t| t.id == task_id)?;
        let task = inst.tasks.remove(pos);
        inst.remaining.cpu += task.resources.cpu;
        inst.remaining.memory += task.resources.memory;
        inst.remaining.gpus += task.resources.gpus;
        remove_ports(&mut inst.used_tcp_ports, &task.tcp_ports);
        remove_ports(&mut inst.used_udp_ports, &task.udp_ports);
        inst.running_tasks_count = inst.running_tasks_count.saturating_sub(1);
        Some(task)
    }
}

impl ContainerInstance {
    /// Adds a task: it takes its resources and ports and counts as running.
    pub fn add_task(&mut self, task: TaskOnInstance) {
        self.remaining.cpu = self.remaining.cpu.saturating_sub(task.resources.cpu);
        self.remaining.memory = self.remaining.memory.saturating_sub(task.resources.memory);
        self.remaining.gpus = self.remaining.gpus.saturating_sub(task.resources.gpus);
        self.used_tcp_ports.extend_from_slice(&task.tcp_ports);
        self.used_udp_ports.extend_from_slice(&task.udp_ports);
        self.running_tasks_count += 1;
        self.tasks.push(task);
    }
}

/// Removes one occurrence of each port, searching from the end (the newest additions).
fn remove_ports(used: &mut Vec<u16>, ports: &[u16]) {
    for port in ports {
        if let Some(pos) = used.iter().rposition(|p| p == port) {
            used.remove(pos);
        }
    }
}
