//! Service events and stopped reasons in ECS's wording. Clients and people match on these strings.

/// The part of a task id or ARN after the last `/`: what ECS events show.
pub fn short_task_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn task_list(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("(task {})", short_task_id(id)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(service NAME) has started N tasks: (task ID) (task ID).` The caller emits it once placement has
/// given the new tasks their ids.
pub fn started_tasks(service: &str, task_ids: &[&str]) -> String {
    format!(
        "(service {service}) has started {} tasks: {}.",
        task_ids.len(),
        task_list(task_ids)
    )
}

/// `(service NAME) has stopped N running tasks: (task ID) (task ID).`
pub fn stopped_tasks(service: &str, task_ids: &[&str]) -> String {
    format!(
        "(service {service}) has stopped {} running tasks: {}.",
        task_ids.len(),
        task_list(task_ids)
    )
}

/// `(service NAME) has reached a steady state.`
pub fn steady_state(service: &str) -> String {
    format!("(service {service}) has reached a steady state.")
}

/// `(service NAME) (deployment ecs-svc/ID) deployment completed.`
pub fn deployment_completed(service: &str, deployment: &str) -> String {
    format!("(service {service}) (deployment {deployment}) deployment completed.")
}

/// `(service NAME) deployment ecs-svc/ID deployment failed: tasks failed to start.`
pub fn deployment_failed(service: &str, deployment: &str) -> String {
    format!("(service {service}) deployment {deployment} deployment failed: tasks failed to start.")
}

/// `(service NAME) rolling back to deployment ecs-svc/ID.`
pub fn rolling_back(service: &str, deployment: &str) -> String {
    format!("(service {service}) rolling back to deployment {deployment}.")
}

/// `(service NAME) (task ID) failed container health checks.`
pub fn failed_health_checks(service: &str, task_id: &str) -> String {
    format!(
        "(service {service}) (task {}) failed container health checks.",
        short_task_id(task_id)
    )
}

/// `(service NAME) is unable to consistently start tasks successfully.`
pub fn unable_to_start(service: &str) -> String {
    format!("(service {service}) is unable to consistently start tasks successfully.")
}

/// `rolloutStateReason` of a deployment the circuit breaker failed.
pub const REASON_CIRCUIT_BREAKER: &str = "ECS deployment circuit breaker: tasks failed to start.";

/// `rolloutStateReason` of a rollback deployment.
pub fn reason_rolling_back(target: &str) -> String {
    format!("ECS deployment circuit breaker: rolling back to deploymentId {target}.")
}

/// `rolloutStateReason` of a completed deployment.
pub fn reason_completed(deployment: &str) -> String {
    format!("ECS deployment {deployment} completed.")
}

/// `stoppedReason` of a task stopped by scaling (scale-in, an old deployment draining, deletion).
pub fn reason_scaling(deployment: &str) -> String {
    format!("Scaling activity initiated by (deployment {deployment})")
}

/// `stoppedReason` of a task that failed its container health checks.
pub const REASON_UNHEALTHY: &str = "Task failed container health checks";

/// `stoppedReason` of a task replaced because its instance is draining.
pub fn reason_draining(instance: &str) -> String {
    format!("Task is being replaced: container instance {instance} is DRAINING")
}

/// `stoppedReason` of a daemon task whose instance no longer satisfies the placement constraints.
pub const REASON_CONSTRAINT: &str = "Task no longer satisfies the service's placement constraints";
