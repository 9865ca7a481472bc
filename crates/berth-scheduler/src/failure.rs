//! Why a task could not be placed, in ECS's words.
//!
//! Each feasibility stage rejects an instance with one [`FailureReason`]. When no instance is left for
//! a task, the engine writes a [`Diagnosis`]: how many instances each reason rejected, one
//! `(arn, reason)` pair per instance (the shape of RunTask's `failures` list), the closest instance and
//! what it lacked, and the sentence a service event shows.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ECS placement failure reason (the `reason` of an ECS `Failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FailureReason {
    /// The agent is disconnected, or the instance is not ACTIVE (DRAINING, INACTIVE). Wire: `AGENT`.
    Agent,
    /// A `memberOf` constraint (or another attribute requirement) does not hold. Wire: `ATTRIBUTE`.
    Attribute,
    /// `distinctInstance`: the instance already runs a task of the group. ECS reports this as
    /// `ATTRIBUTE` on the wire.
    DistinctInstance,
    /// Not enough CPU units. Wire: `RESOURCE:CPU`.
    Cpu,
    /// Not enough memory. Wire: `RESOURCE:MEMORY`.
    Memory,
    /// Not enough GPUs. Wire: `RESOURCE:GPU`.
    Gpu,
    /// A static TCP port is taken, or too few dynamic TCP ports are free. Wire: `RESOURCE:PORTS`.
    PortsTcp,
    /// A static UDP port is taken, or too few dynamic UDP ports are free. Wire: `RESOURCE:PORTS_UDP`.
    PortsUdp,
}

impl FailureReason {
    /// Every reason, in pipeline order.
    pub const ALL: [FailureReason; 8] = [
        Self::Agent,
        Self::Attribute,
        Self::DistinctInstance,
        Self::Cpu,
        Self::Memory,
        Self::Gpu,
        Self::PortsTcp,
        Self::PortsUdp,
    ];

    /// The `reason` string ECS puts in a `Failure`.
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Agent => "AGENT",
            Self::Attribute | Self::DistinctInstance => "ATTRIBUTE",
            Self::Cpu => "RESOURCE:CPU",
            Self::Memory => "RESOURCE:MEMORY",
            Self::Gpu => "RESOURCE:GPU",
            Self::PortsTcp => "RESOURCE:PORTS",
            Self::PortsUdp => "RESOURCE:PORTS_UDP",
        }
    }

    /// What the closest instance lacked, as the tail of an ECS service event sentence.
    pub fn lacking(self) -> &'static str {
        match self {
            Self::Agent => "is not connected to its agent or is not ACTIVE",
            Self::Attribute => "is missing an attribute required by your task",
            Self::DistinctInstance => "is already running a task of this group (distinctInstance)",
            Self::Cpu => "has insufficient CPU units available",
            Self::Memory => "has insufficient memory available",
            Self::Gpu => "has insufficient GPU available",
            Self::PortsTcp => "is already using a port required by your task",
            Self::PortsUdp => "is already using a UDP port required by your task",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_wire())
    }
}

/// How many instances one reason rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// The reason.
    pub reason: FailureReason,
    /// Instances whose first failing stage was this one.
    pub instances: u32,
}

/// One rejected instance: the first stage that rejected it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Instance id (container instance ARN).
    pub instance_id: String,
    /// The first failing stage.
    pub reason: FailureReason,
}

/// The instance that came closest to taking the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosestInstance {
    /// Instance id.
    pub instance_id: String,
    /// Every check it failed, in pipeline order (at least one).
    pub lacking: Vec<FailureReason>,
}

/// Why the unplaced tasks of a request could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Per reason, how many instances it rejected (first failing stage only), in pipeline order;
    /// reasons that rejected nothing are left out.
    pub reasons: Vec<ReasonCount>,
    /// One entry per instance, in snapshot order: RunTask's `failures` list is these, as
    /// `{"arn": instance_id, "reason": reason.as_wire()}`.
    pub rejections: Vec<Rejection>,
    /// The instance with the fewest failed checks (the first such in snapshot order), if any.
    pub closest: Option<ClosestInstance>,
    /// The sentence for a service event, e.g. `service web was unable to place a task because no
    /// container instance met all of its requirements. The closest matching container-instance
    /// 1f2e... has insufficient memory available.`
    pub message: String,
}

impl Diagnosis {
    /// Builds the diagnosis from per-instance results. `subject` names who failed to place, e.g.
    /// `service web` or `task group family:batch`.
    pub(crate) fn new(
        subject: &str,
        rejections: Vec<Rejection>,
        closest: Option<ClosestInstance>,
    ) -> Self {
        let mut counts = [0u32; FailureReason::ALL.len()];
        for r in &rejections {
            counts[reason_slot(r.reason)] += 1;
        }
        let reasons = FailureReason::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(reason, instances)| ReasonCount {
                reason: *reason,
                instances,
            })
            .collect();
        let message = match &closest {
            None => format!(
                "{subject} was unable to place a task. Reason: No Container Instances were found in your cluster."
            ),
            Some(c) => {
                let what: Vec<&str> = c.lacking.iter().map(|r| r.lacking()).collect();
                format!(
                    "{subject} was unable to place a task because no container instance met all of its requirements. \
                     The closest matching container-instance {} {}.",
                    short_id(&c.instance_id),
                    what.join(" and ")
                )
            }
        };
        Self {
            reasons,
            rejections,
            closest,
            message,
        }
    }

    /// The distinct wire reasons, in pipeline order (what a single-task failure entry would show).
    pub fn wire_reasons(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for r in &self.reasons {
            let w = r.reason.as_wire();
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }
}

fn reason_slot(r: FailureReason) -> usize {
    FailureReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

/// The part of an ARN after the last `/` (ECS events name container instances by id).
pub fn short_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// The subject of a service event for a task group: `service web` for `service:web`, otherwise
/// `task group <group>`.
pub fn event_subject(group: &str) -> String {
    match group.strip_prefix("service:") {
        Some(name) => format!("service {name}"),
        None => format!("task group {group}"),
    }
}
