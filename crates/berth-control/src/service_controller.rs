//! The service controller's edge: for each service, gather the service,
//! its tasks and the cluster's instances from the store, let the pure
//! planner (`berth-services`) decide, and carry the plan out: place new
//! tasks through the placement engine, stop tasks with
//! ServiceSchedulerInitiated, and write the deployments, counts and events
//! back. Level-driven: every pass starts from the store, so a pass that
//! fails half-way is repaired by the next one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use berth_model::service::{Deployment as ApiDeployment, ServiceEvent};
use berth_model::task::Task;
use berth_model::ApiError;
use berth_services as planner;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clusters::ACTIVE;
use crate::container_instances::StoredInstance;
use crate::services::{deployment_id, StoredService};
use crate::state::{self, put_op, read_modify_write, scan, Change};
use crate::task_definitions::{load_reference, StoredTaskDefinition};
use crate::tasks::{cluster_tasks, launch_for_service, stop_tasks, StoredTask};
use crate::{keys, ControlPlane, Cx};

/// At most this many events are kept on a service, newest first.
const MAX_EVENTS: usize = 100;
/// Stopped tasks are shown to the planner this long, so their failures are
/// counted once.
const STOPPED_WINDOW_SECS: f64 = 600.0;

/// What the controller remembers of a service between passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ControllerState {
    #[serde(default)]
    pub steady_state: bool,
    /// Stopped tasks whose failure was counted.
    #[serde(default)]
    pub counted: Vec<String>,
    /// Per deployment: consecutive start failures and the last one's time.
    #[serde(default)]
    pub failures: HashMap<String, (u32, Option<f64>)>,
}

/// What one pass did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePass {
    pub services: usize,
    pub started: usize,
    pub stopped: usize,
}

fn status_of(text: Option<&str>) -> planner::TaskStatus {
    use planner::TaskStatus::*;
    match text.unwrap_or("PROVISIONING") {
        "PENDING" => Pending,
        "ACTIVATING" => Activating,
        "RUNNING" => Running,
        "DEACTIVATING" => Deactivating,
        "STOPPING" => Stopping,
        "DEPROVISIONING" => Deprovisioning,
        "STOPPED" => Stopped,
        _ => Provisioning,
    }
}

fn stop_code_of(text: Option<&str>) -> Option<planner::TaskStopCode> {
    use planner::TaskStopCode::*;
    Some(match text? {
        "TaskFailedToStart" => TaskFailedToStart,
        "EssentialContainerExited" => EssentialContainerExited,
        "UserInitiated" => UserInitiated,
        "ServiceSchedulerInitiated" => ServiceSchedulerInitiated,
        "SpotInterruption" => SpotInterruption,
        "TerminationNotice" => TerminationNotice,
        _ => InfrastructureHealth,
    })
}

fn rollout_of(text: Option<&str>) -> planner::RolloutState {
    match text {
        Some("COMPLETED") => planner::RolloutState::Completed,
        Some("FAILED") => planner::RolloutState::Failed,
        _ => planner::RolloutState::InProgress,
    }
}

fn rollout_text(r: planner::RolloutState) -> &'static str {
    match r {
        planner::RolloutState::InProgress => "IN_PROGRESS",
        planner::RolloutState::Completed => "COMPLETED",
        planner::RolloutState::Failed => "FAILED",
    }
}

fn deployment_status_of(text: Option<&str>) -> planner::DeploymentStatus {
    match text {
        Some("PRIMARY") => planner::DeploymentStatus::Primary,
        Some("ACTIVE") => planner::DeploymentStatus::Active,
        _ => planner::DeploymentStatus::Inactive,
    }
}

fn deployment_status_text(s: planner::DeploymentStatus) -> &'static str {
    match s {
        planner::DeploymentStatus::Primary => "PRIMARY",
        planner::DeploymentStatus::Active => "ACTIVE",
        planner::DeploymentStatus::Inactive => "INACTIVE",
    }
}

/// The planner's view of a stored service. A REPLICA service's desired
/// counts are read at most `max_tasks` (the tasks per service quota):
/// CreateService and UpdateService refuse more, and a record written before
/// they did is held to the quota rather than followed.
fn to_planner(stored: &StoredService, now: f64, max_tasks: u32) -> planner::ServiceState {
    let svc = &stored.service;
    let daemon = svc.scheduling_strategy.as_deref() == Some("DAEMON");
    let strategy = if daemon {
        planner::SchedulingStrategy::Daemon
    } else {
        planner::SchedulingStrategy::Replica
    };
    let desired = |n: Option<i32>| {
        let n = n.unwrap_or(0).max(0) as u32;
        if daemon {
            n
        } else {
            n.min(max_tasks)
        }
    };
    let mut config = planner::DeploymentConfiguration::defaults(strategy);
    if let Some(c) = &svc.deployment_configuration {
        if let Some(min) = c.minimum_healthy_percent {
            config.minimum_healthy_percent = min.max(0) as u32;
        }
        if let Some(max) = c.maximum_percent {
            config.maximum_percent = max.max(0) as u32;
        }
        if let Some(cb) = c.deployment_circuit_breaker {
            config.deployment_circuit_breaker = planner::DeploymentCircuitBreaker {
                enable: cb.enable,
                rollback: cb.rollback,
            };
        }
    }
    let deployments = svc
        .deployments
        .iter()
        .flatten()
        .filter(|d| d.status.as_deref() != Some("INACTIVE"))
        .map(|d| {
            let id = d.id.clone().unwrap_or_default();
            let (consecutive, last) = stored
                .controller
                .failures
                .get(&id)
                .copied()
                .unwrap_or((0, None));
            planner::Deployment {
                task_definition: d.task_definition.clone().unwrap_or_default(),
                status: deployment_status_of(d.status.as_deref()),
                rollout_state: rollout_of(d.rollout_state.as_deref()),
                rollout_state_reason: d.rollout_state_reason.clone(),
                created_at: d.created_at.unwrap_or(now),
                desired_count: desired(d.desired_count),
                failed_tasks: d.failed_tasks.unwrap_or(0).max(0) as u32,
                consecutive_failures: consecutive,
                last_failure_at: last,
                id,
            }
        })
        .collect();
    planner::ServiceState {
        name: svc.service_name.clone().unwrap_or_default(),
        status: if svc.status.as_deref() == Some("DRAINING") {
            planner::ServiceStatus::Draining
        } else {
            planner::ServiceStatus::Active
        },
        desired_count: desired(svc.desired_count),
        scheduling_strategy: strategy,
        deployment_configuration: config,
        health_check_grace_period_seconds: svc.health_check_grace_period_seconds.unwrap_or(0).max(0)
            as u32,
        deployments,
        steady_state: stored.controller.steady_state,
        scale_in_order: Vec::new(),
    }
}

fn to_task(
    t: &Task,
    id: &str,
    instance_id: &str,
    has_health_check: bool,
    counted: bool,
) -> planner::ServiceTask {
    let last = status_of(t.last_status.as_deref());
    planner::ServiceTask {
        id: id.to_string(),
        deployment_id: t.started_by.clone().unwrap_or_default(),
        instance_id: instance_id.to_string(),
        last_status: last,
        desired_status: if t.desired_status.as_deref() == Some("STOPPED") {
            planner::DesiredStatus::Stopped
        } else {
            planner::DesiredStatus::Running
        },
        health_status: match t.health_status.as_deref() {
            Some("HEALTHY") => planner::HealthStatus::Healthy,
            Some("UNHEALTHY") => planner::HealthStatus::Unhealthy,
            _ => planner::HealthStatus::Unknown,
        },
        has_health_check,
        created_at: t.created_at.unwrap_or(0.0),
        started_at: t.started_at,
        stopped_at: t.stopped_at,
        stopped_reason: t.stopped_reason.clone(),
        stop_code: stop_code_of(t.stop_code.as_deref()),
        failed_to_start: last == planner::TaskStatus::Stopped
            && (t.started_at.is_none() || t.stop_code.as_deref() == Some("TaskFailedToStart"))
            && t.stop_code.as_deref() != Some("ServiceSchedulerInitiated")
            && t.stop_code.as_deref() != Some("UserInitiated"),
        failure_counted: counted,
    }
}

impl ControlPlane {
    /// One pass of the service controller over every service of every
    /// ACTIVE cluster.
    pub fn reconcile_services(&self) -> Result<ServicePass, ApiError> {
        let caller = self.internal_caller("berth-service-scheduler");
        let cx = self.cx(&caller);
        let mut pass = ServicePass::default();
        for kv in scan(cx.store(), keys::CLUSTERS)? {
            let cluster: berth_model::cluster::Cluster = state::decode(&kv)?;
            if cluster.status.as_deref() != Some(ACTIVE) {
                continue;
            }
            let name = cluster.cluster_name.clone().unwrap_or_default();
            let services: Vec<StoredService> = scan(cx.store(), &keys::services(&name))?
                .iter()
                .map(state::decode)
                .collect::<Result<_, _>>()?;
            if services
                .iter()
                .all(|s| s.service.status.as_deref() == Some("INACTIVE"))
            {
                continue;
            }
            let tasks = cluster_tasks(&cx, &name)?;
            let instances: Vec<StoredInstance> = scan(cx.store(), &keys::instances(&name))?
                .iter()
                .map(state::decode)
                .collect::<Result<_, _>>()?;
            for service in services {
                if service.service.status.as_deref() == Some("INACTIVE") {
                    continue;
                }
                pass.services += 1;
                match reconcile_one(&cx, &name, service, &tasks, &instances) {
                    Ok((started, stopped)) => {
                        pass.started += started;
                        pass.stopped += stopped;
                    }
                    Err(err) => {
                        tracing::warn!(cluster = %name, error = %err.message, "service pass failed; retried next pass")
                    }
                }
            }
        }
        Ok(pass)
    }
}

/// When the PRIMARY deployment of a REPLICA service has more tasks than
/// desired: which of them the placement engine would stop, in order, from
/// the service's placement strategies (ECS's service defaults when it has
/// none). Only the PRIMARY deployment's unfinished tasks on `stoppable`
/// instances (connected and ACTIVE: the planner's scale-in candidates)
/// count as the group, so that the balance kept is the balance of what
/// stays. Empty when there is nothing to scale in; while an agent is lost
/// its tasks and their replacements do not trigger a snapshot every pass.
fn scale_in_order(
    stored: &StoredService,
    group: &str,
    view: &[planner::ServiceTask],
    stoppable: &HashSet<&str>,
    tasks: &[Arc<StoredTask>],
    instances: &[StoredInstance],
) -> Vec<String> {
    let svc = &stored.service;
    if svc.scheduling_strategy.as_deref() == Some("DAEMON")
        || svc.status.as_deref() != Some("ACTIVE")
    {
        return Vec::new();
    }
    let Some(primary) = svc
        .deployments
        .iter()
        .flatten()
        .find(|d| d.status.as_deref() == Some("PRIMARY"))
        .and_then(|d| d.id.as_deref())
    else {
        return Vec::new();
    };
    let ours: HashSet<&str> = view
        .iter()
        .filter(|t| {
            t.deployment_id == primary
                && t.desired_status == planner::DesiredStatus::Running
                && t.last_status != planner::TaskStatus::Stopped
                && stoppable.contains(t.instance_id.as_str())
        })
        .map(|t| t.id.as_str())
        .collect();
    let desired = svc.desired_count.unwrap_or(0).max(0) as usize;
    if ours.len() <= desired {
        return Vec::new();
    }
    let strategies = match crate::tasks::parse_strategies(
        svc.placement_strategy.as_deref().unwrap_or_default(),
    ) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(service = %group, error = %err.message, "stored placement strategy unreadable; scale-in uses the defaults");
            Vec::new()
        }
    };
    let mut snap = crate::tasks::snapshot_of(tasks, instances);
    for inst in &mut snap.instances {
        for t in &mut inst.tasks {
            if t.group == group && !ours.contains(t.id.as_str()) {
                t.group.clear();
            }
        }
    }
    let count = u32::try_from(ours.len() - desired).unwrap_or(u32::MAX);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rand::random());
    berth_scheduler::select_tasks_to_stop(&snap, group, &strategies, count, &mut rng)
        .into_iter()
        .map(|t| t.task_id)
        .collect()
}

/// The tags a task the service starts gets: the service's own
/// (`propagateTags` SERVICE) or its task definition's (TASK_DEFINITION),
/// then, with `enableECSManagedTags`, `aws:ecs:clusterName` and
/// `aws:ecs:serviceName`.
fn task_tags(
    stored: &StoredService,
    cluster: &str,
    td: Option<&StoredTaskDefinition>,
) -> Vec<berth_model::common::Tag> {
    let svc = &stored.service;
    let mut tags = match svc.propagate_tags.as_deref() {
        Some("SERVICE") => svc.tags.clone().unwrap_or_default(),
        Some("TASK_DEFINITION") => td.map(|td| td.tags.clone()).unwrap_or_default(),
        _ => Vec::new(),
    };
    if svc.enable_ecs_managed_tags == Some(true) {
        crate::tasks::add_managed_tags(&mut tags, cluster, svc.service_name.as_deref());
    }
    tags
}

fn has_health_check(td: Option<&StoredTaskDefinition>) -> bool {
    td.is_some_and(|td| {
        td.definition
            .container_definitions
            .iter()
            .flatten()
            .any(|c| c.health_check.is_some())
    })
}

fn reconcile_one(
    cx: &Cx<'_>,
    cluster: &str,
    stored: StoredService,
    tasks: &[Arc<StoredTask>],
    instances: &[StoredInstance],
) -> Result<(usize, usize), ApiError> {
    let now = cx.now();
    let name = stored.service.service_name.clone().unwrap_or_default();
    let group = format!("service:{name}");
    let mut tds: HashMap<String, Option<StoredTaskDefinition>> = HashMap::new();
    for d in stored.service.deployments.iter().flatten() {
        if let Some(arn) = &d.task_definition {
            if !tds.contains_key(arn) {
                tds.insert(arn.clone(), load_reference(cx, arn)?);
            }
        }
    }
    let counted: HashSet<&str> = stored
        .controller
        .counted
        .iter()
        .map(String::as_str)
        .collect();
    let mut view = Vec::new();
    for t in tasks.iter().filter(|t| t.group == group) {
        let stopped = t.task.last_status.as_deref() == Some("STOPPED");
        if stopped && now - t.task.stopped_at.unwrap_or(now) > STOPPED_WINDOW_SECS {
            continue;
        }
        let td = t
            .task
            .task_definition_arn
            .as_ref()
            .and_then(|a| tds.get(a))
            .and_then(Option::as_ref);
        view.push(to_task(
            &t.task,
            &t.id,
            &t.instance_id,
            has_health_check(td),
            counted.contains(t.id.as_str()),
        ));
    }
    let constraints = stored
        .service
        .placement_constraints
        .clone()
        .unwrap_or_default();
    let member_of: Vec<String> = constraints
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("memberOf"))
        .filter_map(|c| {
            c.get("expression")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let filters: Vec<_> = member_of
        .iter()
        .filter_map(|e| crate::query::compile(e).ok())
        .collect();
    // Instances running unfinished tasks of anything but this service, for
    // the DAEMON rule that its task leaves a draining instance last.
    let busy: HashSet<&str> = tasks
        .iter()
        .filter(|t| t.group != group && t.task.last_status.as_deref() != Some("STOPPED"))
        .map(|t| t.instance_id.as_str())
        .collect();
    let mut planner_instances = Vec::new();
    for i in instances {
        let status = match i.instance.status.as_deref() {
            Some("ACTIVE") => planner::InstanceStatus::Active,
            Some("DRAINING") => planner::InstanceStatus::Draining,
            _ => continue,
        };
        planner_instances.push(planner::InstanceState {
            id: i.id.clone(),
            status,
            agent_connected: i.instance.agent_connected.unwrap_or(false),
            satisfies_constraints: filters.iter().all(|f| crate::query::matches(f, i)),
            has_other_tasks: busy.contains(i.id.as_str()),
        });
    }
    let mut input = to_planner(&stored, now, cx.max_tasks_per_service());
    let stoppable: HashSet<&str> = planner_instances
        .iter()
        .filter(|i| i.agent_connected && i.status == planner::InstanceStatus::Active)
        .map(|i| i.id.as_str())
        .collect();
    input.scale_in_order = scale_in_order(&stored, &group, &view, &stoppable, tasks, instances);
    let plan = planner::plan(&input, &view, &planner_instances, now);

    // Carry it out: stops first (they free capacity), then starts.
    // A task whose instance's agent is lost is replaced by the plan; it is
    // also told to stop, as ECS does, so that the agent stops it when it
    // comes back instead of leaving the service above its count.
    // The same goes for a task whose instance was deregistered.
    let reachable: HashSet<&str> = planner_instances
        .iter()
        .filter(|i| i.agent_connected)
        .map(|i| i.id.as_str())
        .collect();
    const LOST: &str =
        "Task stopped because the agent of its container instance stopped responding.";
    let mut stops: Vec<(&str, &str)> = view
        .iter()
        .filter(|t| {
            !reachable.contains(t.instance_id.as_str())
                && t.desired_status == planner::DesiredStatus::Running
                && t.last_status != planner::TaskStatus::Stopped
        })
        .map(|t| (t.id.as_str(), LOST))
        .collect();
    let lost: HashSet<&str> = stops.iter().map(|(id, _)| *id).collect();
    stops.extend(
        plan.stops
            .iter()
            .filter(|s| !lost.contains(s.task_id.as_str()))
            .map(|s| (s.task_id.as_str(), s.reason.as_str())),
    );
    let stopped = stop_tasks(cx, cluster, &stops, "ServiceSchedulerInitiated")?;
    let mut events = plan.events.clone();
    let strategies = stored
        .service
        .placement_strategy
        .clone()
        .unwrap_or_default();
    let mut started = 0;
    let mut new_deployments: Vec<ApiDeployment> = Vec::new();
    if let Some(rb) = &plan.rollback {
        let id = deployment_id();
        new_deployments.push(ApiDeployment {
            rollout_state_reason: Some(rb.rollout_state_reason.clone()),
            id: Some(id),
            status: Some("PRIMARY".into()),
            task_definition: Some(rb.task_definition.clone()),
            desired_count: Some(plan.desired_count as i32),
            pending_count: Some(0),
            running_count: Some(0),
            failed_tasks: Some(0),
            created_at: Some(now),
            updated_at: Some(now),
            launch_type: stored.service.launch_type.clone(),
            rollout_state: Some("IN_PROGRESS".into()),
            ..ApiDeployment::default()
        });
    }
    for start in &plan.starts {
        let only = (!start.instance_ids.is_empty()).then_some(start.instance_ids.as_slice());
        let tags = task_tags(
            &stored,
            cluster,
            tds.get(&start.task_definition).and_then(Option::as_ref),
        );
        // One placement for the whole start: the engine places them all
        // over one snapshot and they are committed in chunks.
        let (ids, unplaced) = launch_for_service(
            cx,
            cluster,
            &start.task_definition,
            start.count,
            &name,
            &start.deployment_id,
            &strategies,
            &constraints,
            only,
            tags,
        )?;
        // ECS names the tasks it started ten to an event.
        for chunk in ids.chunks(10) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            events.push(planner::events::started_tasks(&name, &refs));
        }
        started += ids.len();
        if let Some(message) = unplaced {
            events.push(format!("(service {name}) {message}"));
        }
    }

    // Write back what changed, unless the service changed under us (then
    // the next pass plans again from the new state).
    let key = keys::service(cluster, &name);
    let ids_before: Vec<Option<String>> = stored
        .service
        .deployments
        .iter()
        .flatten()
        .map(|d| d.id.clone())
        .collect();
    let desired_before = stored.service.desired_count;
    let counted_now: Vec<String> = {
        let live: HashSet<&str> = view.iter().map(|t| t.id.as_str()).collect();
        let mut c: Vec<String> = stored
            .controller
            .counted
            .iter()
            .filter(|id| live.contains(id.as_str()))
            .cloned()
            .collect();
        c.extend(plan.failures_counted.iter().cloned());
        c.sort();
        c.dedup();
        c
    };
    read_modify_write(cx.store(), &key, |cur: Option<StoredService>| {
        let Some(mut s) = cur else {
            return Ok(Change::Keep(()));
        };
        let before = serde_json::to_value(&s).ok();
        let original = s.clone();
        let ids_now: Vec<Option<String>> = s
            .service
            .deployments
            .iter()
            .flatten()
            .map(|d| d.id.clone())
            .collect();
        if ids_now != ids_before || s.service.desired_count != desired_before {
            return Ok(Change::Keep(()));
        }
        let svc = &mut s.service;
        let deployments = svc.deployments.get_or_insert_with(Vec::new);
        for updated in &plan.updated_deployments {
            if let Some(d) = deployments
                .iter_mut()
                .find(|d| d.id.as_deref() == Some(updated.id.as_str()))
            {
                d.status = Some(deployment_status_text(updated.status).into());
                d.rollout_state = Some(rollout_text(updated.rollout_state).into());
                d.rollout_state_reason = updated.rollout_state_reason.clone();
                d.desired_count = Some(updated.desired_count as i32);
                d.failed_tasks = Some(updated.failed_tasks as i32);
                d.updated_at = Some(now);
            }
            s.controller.failures.insert(
                updated.id.clone(),
                (updated.consecutive_failures, updated.last_failure_at),
            );
        }
        for counts in &plan.counts.deployments {
            if let Some(d) = deployments
                .iter_mut()
                .find(|d| d.id.as_deref() == Some(counts.deployment_id.as_str()))
            {
                d.running_count = Some(counts.running_count as i32);
                d.pending_count = Some(counts.pending_count as i32);
            }
        }
        // INACTIVE deployments leave the list, as ECS shows it.
        deployments.retain(|d| d.status.as_deref() != Some("INACTIVE"));
        for d in new_deployments.iter().rev() {
            deployments.insert(0, d.clone());
        }
        if let Some(primary) = deployments
            .iter()
            .find(|d| d.status.as_deref() == Some("PRIMARY"))
        {
            svc.task_definition = primary.task_definition.clone();
        }
        svc.running_count = Some(plan.counts.running_count as i32);
        svc.pending_count = Some(plan.counts.pending_count as i32);
        if svc.scheduling_strategy.as_deref() == Some("DAEMON") {
            svc.desired_count = Some(plan.desired_count as i32);
        }
        // Newest first; only the newest MAX_EVENTS are kept, so of a long
        // batch only its tail is ever turned into events.
        let fresh = events
            .iter()
            .rev()
            .take(MAX_EVENTS)
            .map(|message| ServiceEvent {
                id: Some(uuid::Uuid::new_v4().to_string()),
                created_at: Some(now),
                message: Some(message.clone()),
            });
        let mut list: Vec<ServiceEvent> = fresh.collect();
        list.extend(svc.events.take().unwrap_or_default());
        list.truncate(MAX_EVENTS);
        svc.events = Some(list);
        if plan.can_become_inactive {
            svc.status = Some("INACTIVE".into());
        }
        s.controller.steady_state = plan.steady_state;
        s.controller.counted = counted_now.clone();
        let live: HashSet<String> = s
            .service
            .deployments
            .iter()
            .flatten()
            .filter_map(|d| d.id.clone())
            .collect();
        s.controller.failures.retain(|id, _| live.contains(id));
        let record_ops = crate::service_deployments::sync_ops(cx, &original, &s, now)?;
        if record_ops.is_empty() && serde_json::to_value(&s).ok() == before {
            return Ok(Change::Keep(()));
        }
        let mut ops = vec![put_op(key.clone(), &s)?];
        ops.extend(record_ops);
        Ok(Change::Write(ops, ()))
    })?;
    if started + stopped > 0 || !events.is_empty() {
        tracing::info!(cluster, service = %name, started, stopped, events = events.len(), "service pass");
    }
    Ok((started, stopped))
}
