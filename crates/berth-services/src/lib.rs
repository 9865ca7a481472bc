//! Berth's ECS service controller: the decisions of the service scheduler as one pure function.
//!
//! [`plan`] takes a service (its deployments and configuration), its tasks, the container instances
//! and `now`, and returns a [`Plan`]: tasks to start per deployment (a count for REPLICA, instances for
//! DAEMON), tasks to stop with ECS's reasons, the deployments' new states (rollout COMPLETED or FAILED,
//! ACTIVE to INACTIVE, a circuit-breaker rollback), counts, service events in ECS's wording, the
//! steady state, and when to look again (start backoff, grace periods).
//!
//! The rules, as ECS applies them:
//! - A task is healthy when RUNNING and, if it has a health check, HEALTHY. Inside
//!   `healthCheckGracePeriodSeconds` after `startedAt` (and while UNKNOWN) it is neither healthy nor
//!   replaced; UNHEALTHY past the grace period it is stopped and replaced.
//! - Rolling deployments keep RUNNING + PENDING at most `floor(maximumPercent * desired / 100)` and
//!   healthy at least `ceil(minimumHealthyPercent * desired / 100)` ([`limits`]): old deployments'
//!   tasks stop down to the lower limit, new ones start up to the upper one. Not healthy tasks of old
//!   deployments stop at once. Old deployments with no task left become INACTIVE; the PRIMARY one
//!   becomes COMPLETED when it has all its tasks healthy and nothing else runs.
//! - Tasks that stopped, or whose instance's agent is gone (lost: not counted), are replaced; tasks on
//!   DRAINING instances are replaced within the limits, then stopped; surplus tasks (a lost instance
//!   back, a scale-in) stop, not healthy ones first.
//! - The circuit breaker fails the PRIMARY deployment once [`failure_threshold`] of its tasks failed
//!   to start or failed health checks while IN_PROGRESS, and with rollback asks for a new PRIMARY on
//!   the last COMPLETED deployment's task definition.
//! - Starts after consecutive failures wait for an exponential backoff ([`retry_at`]).
//! - DAEMON: one task per ACTIVE, connected instance satisfying the constraints; on a DRAINING
//!   instance the daemon task stops once the instance's other tasks are gone.
//! - A DRAINING service (DeleteService) stops everything and reports when it can become INACTIVE.
//!
//! Architecture invariant: this crate is pure. It knows nothing of the store, HTTP, the clock or
//! the placement engine; the caller applies the plan.

pub mod events;
pub mod model;
pub mod plan;

pub use model::{
    Counts, Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentCounts,
    DeploymentStatus, DesiredStatus, HealthStatus, InstanceState, InstanceStatus, Plan, Rollback,
    RolloutState, SchedulingStrategy, ServiceState, ServiceStatus, ServiceTask, Start, Stop,
    StopCause, TaskStatus, TaskStopCode,
};
pub use plan::{failure_threshold, limits, plan, retry_at, BACKOFF_BASE_SECS, BACKOFF_CAP_SECS};
