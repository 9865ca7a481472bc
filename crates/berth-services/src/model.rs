//! The controller's inputs and outputs: plain values the caller builds from the store and the wire
//! (member names in ECS's `camelCase`, enum values in ECS's `SCREAMING_SNAKE_CASE`).

use serde::{Deserialize, Serialize};

/// `schedulingStrategy` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SchedulingStrategy {
    /// Keep `desiredCount` tasks, placed by the placement engine.
    Replica,
    /// One task on every ACTIVE, connected instance that satisfies the placement constraints.
    Daemon,
}

/// The service's own status, as far as the controller cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStatus {
    /// Normal operation.
    Active,
    /// DeleteService was called: every task stops, then the service becomes INACTIVE
    /// ([`crate::Plan::can_become_inactive`]).
    Draining,
}

/// `deploymentCircuitBreaker`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentCircuitBreaker {
    /// Mark the PRIMARY deployment FAILED when too many of its tasks fail.
    pub enable: bool,
    /// On failure, roll back to the last COMPLETED deployment's task definition.
    pub rollback: bool,
}

/// `deploymentConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    /// Lower limit of healthy tasks, in percent of the desired count, rounded up.
    pub minimum_healthy_percent: u32,
    /// Upper limit of RUNNING or PENDING tasks, in percent of the desired count, rounded down.
    pub maximum_percent: u32,
    /// The circuit breaker (disabled by default).
    pub deployment_circuit_breaker: DeploymentCircuitBreaker,
}

impl DeploymentConfiguration {
    /// ECS's defaults: 100/200 for REPLICA, 0/100 for DAEMON, no circuit breaker.
    pub fn defaults(strategy: SchedulingStrategy) -> Self {
        let (min, max) = match strategy {
            SchedulingStrategy::Replica => (100, 200),
            SchedulingStrategy::Daemon => (0, 100),
        };
        Self {
            minimum_healthy_percent: min,
            maximum_percent: max,
            deployment_circuit_breaker: DeploymentCircuitBreaker::default(),
        }
    }
}

/// A deployment's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    /// The newest deployment: the one the service converges to.
    Primary,
    /// An older deployment still draining its tasks.
    Active,
    /// A drained deployment.
    Inactive,
}

/// A deployment's `rolloutState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

/// One deployment of the service, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/<digits>`; tasks name it in `startedBy`.
    pub id: String,
    /// Task definition ARN.
    pub task_definition: String,
    pub status: DeploymentStatus,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: Option<String>,
    /// Epoch seconds.
    pub created_at: f64,
    /// ECS's per-deployment `desiredCount` (the plan sets it: PRIMARY = the service's, others 0).
    pub desired_count: u32,
    /// `failedTasks`: tasks of this deployment that failed to start or failed health checks.
    pub failed_tasks: u32,
    /// Failures since a task of this deployment last became healthy (drives the start backoff).
    /// Berth's own bookkeeping; not on the wire.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Epoch seconds of the last counted failure. Berth's own bookkeeping; not on the wire.
    #[serde(default)]
    pub last_failure_at: Option<f64>,
}

/// The service as the controller sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceState {
    pub name: String,
    pub status: ServiceStatus,
    /// `desiredCount` (ignored for DAEMON: one task per eligible instance).
    pub desired_count: u32,
    pub scheduling_strategy: SchedulingStrategy,
    pub deployment_configuration: DeploymentConfiguration,
    /// While a task with a health check is younger than this (from `startedAt`), a health other than
    /// HEALTHY neither counts as healthy nor gets it replaced.
    pub health_check_grace_period_seconds: u32,
    /// Every deployment the caller keeps, INACTIVE ones included (a rollback looks for the newest
    /// COMPLETED one among them).
    pub deployments: Vec<Deployment>,
    /// [`crate::Plan::steady_state`] of the previous plan, stored back by the caller; the steady-state
    /// event is emitted only when this flips to true.
    #[serde(default)]
    pub steady_state: bool,
    /// Task ids in the order the placement engine would stop them (the service's placement
    /// strategies read for termination), filled by the caller when the PRIMARY deployment has more
    /// tasks than desired. Scale-in of healthy tasks follows it; tasks it does not name come after,
    /// in the planner's own order (most loaded instance first, newest first).
    #[serde(default)]
    pub scale_in_order: Vec<String>,
}

/// A task's `lastStatus` (the lifecycle users see).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    /// PROVISIONING, PENDING or ACTIVATING: counted as `pendingCount`.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Provisioning | Self::Pending | Self::Activating)
    }
}

/// A task's `desiredStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

/// A task's `healthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

/// `stopCode` (TaskStopCode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskStopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    ServiceSchedulerInitiated,
    SpotInterruption,
    TerminationNotice,
    InfrastructureHealth,
}

/// A task of the service (`startedBy` one of its deployments), stopped ones included while the caller
/// keeps them: a STOPPED task whose failure was not counted yet is counted by the next plan.
///
/// Whether its instance is lost or DRAINING is read from the [`InstanceState`] with the same id; a
/// task whose instance is missing from `instances` counts as lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTask {
    /// Task id or ARN (events show the part after the last `/`).
    pub id: String,
    /// The deployment that started it.
    pub deployment_id: String,
    /// Its container instance.
    pub instance_id: String,
    pub last_status: TaskStatus,
    pub desired_status: DesiredStatus,
    pub health_status: HealthStatus,
    /// Its task definition has a container health check (on an essential container).
    pub has_health_check: bool,
    /// Epoch seconds.
    pub created_at: f64,
    /// Epoch seconds; set when it reached RUNNING.
    pub started_at: Option<f64>,
    /// Epoch seconds.
    pub stopped_at: Option<f64>,
    pub stopped_reason: Option<String>,
    pub stop_code: Option<TaskStopCode>,
    /// It stopped before reaching RUNNING (also implied by `stopCode` TaskFailedToStart).
    pub failed_to_start: bool,
    /// Its failure is already in its deployment's `failedTasks` (the caller sets this for the ids of
    /// [`crate::Plan::failures_counted`]).
    #[serde(default)]
    pub failure_counted: bool,
}

/// A container instance's status, as far as the controller cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    Active,
    Draining,
}

/// A container instance of the cluster: every instance a task of the service is on, and for DAEMON
/// every instance of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceState {
    pub id: String,
    pub status: InstanceStatus,
    /// False once the agent has been gone past the timeout: its tasks count as lost (not running) and
    /// are replaced; when it comes back they count again and any surplus is stopped.
    pub agent_connected: bool,
    /// DAEMON: the instance satisfies the service's placement constraints (evaluated by the caller).
    pub satisfies_constraints: bool,
    /// DAEMON: tasks other than this service's daemon tasks are still on the instance. On a DRAINING
    /// instance the daemon task stops only once this is false.
    pub has_other_tasks: bool,
}

/// Why a task is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StopCause {
    /// Its deployment is not the PRIMARY one (rollout), or the service is being deleted.
    OldDeployment,
    /// More tasks than desired (scale-in, or tasks back from a lost instance).
    ScaleIn,
    /// Failed its container health checks past the grace period.
    Unhealthy,
    /// Its instance is DRAINING.
    InstanceDraining,
    /// DAEMON: its instance no longer satisfies the placement constraints.
    ConstraintViolated,
    /// DAEMON: a second task of the service on one instance.
    Duplicate,
    /// The service is DRAINING (DeleteService).
    ServiceDeleted,
}

/// One task to stop: set `desiredStatus` STOPPED, `stoppedReason` = `reason`, `stopCode`
/// ServiceSchedulerInitiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stop {
    pub task_id: String,
    pub deployment_id: String,
    pub cause: StopCause,
    /// ECS's wording for `stoppedReason`.
    pub reason: String,
}

/// Tasks to start for one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    pub deployment_id: String,
    pub task_definition: String,
    /// How many (REPLICA: placed by the placement engine; DAEMON: `instance_ids.len()`).
    pub count: u32,
    /// DAEMON: one task on each of these instances. Empty for REPLICA.
    pub instance_ids: Vec<String>,
}

/// A circuit-breaker rollback: create a new PRIMARY deployment (IN_PROGRESS) with this task definition
/// and reason. The failed deployment is already ACTIVE (INACTIVE if it has no task left) in
/// [`Plan::updated_deployments`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub failed_deployment_id: String,
    /// The COMPLETED deployment rolled back to.
    pub target_deployment_id: String,
    pub task_definition: String,
    /// `rolloutStateReason` of the new deployment.
    pub rollout_state_reason: String,
}

/// Counts of one deployment, observed before the plan (tasks on lost instances and tasks being
/// stopped are not counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentCounts {
    pub deployment_id: String,
    pub running_count: u32,
    pub pending_count: u32,
    /// Healthy as the rules count it (RUNNING, and HEALTHY if it has a health check).
    pub healthy_count: u32,
}

/// The service's counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub running_count: u32,
    pub pending_count: u32,
    /// One entry per deployment of the input, in input order.
    pub deployments: Vec<DeploymentCounts>,
}

/// What the controller decided. Applying it: stop `stops`, start `starts` (REPLICA through the
/// placement engine), replace the stored deployments by `updated_deployments`, create the rollback
/// deployment if any, mark `failures_counted`, append `events` (oldest first, each at `now`; add the
/// "has started" event with [`crate::events::started_tasks`] once the new task ids are known), store
/// `steady_state`, and plan again at `next_check_at` at the latest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub starts: Vec<Start>,
    /// In stopping order. Scale-in picks are the plan's own, deterministic: not healthy first, then from
    /// the instance with the most live tasks of the service, then the newest, then by id.
    pub stops: Vec<Stop>,
    /// The new value of every deployment that changed (status, rollout state and reason,
    /// desired count, failure counters).
    pub updated_deployments: Vec<Deployment>,
    pub rollback: Option<Rollback>,
    /// Ids of STOPPED tasks whose failure this plan counted (set their `failureCounted`), and of
    /// tasks stopped for failing health checks.
    pub failures_counted: Vec<String>,
    pub counts: Counts,
    /// Service events in ECS's wording, oldest first.
    pub events: Vec<String>,
    /// The effective desired count: the service's for REPLICA, the number of eligible instances for
    /// DAEMON (store it as the service's `desiredCount`), 0 while DRAINING.
    pub desired_count: u32,
    /// One deployment with all its tasks, healthy, nothing to start or stop.
    pub steady_state: bool,
    /// Starts are held back until this time (backoff after consecutive failures); the plan then has
    /// fewer starts than needed.
    pub retry_after: Option<f64>,
    /// The earliest time the plan would change with no other input change (backoff end, a grace
    /// period ending); plan again then.
    pub next_check_at: Option<f64>,
    /// DRAINING service with nothing left running: it can become INACTIVE.
    pub can_become_inactive: bool,
}
