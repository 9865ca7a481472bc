//! The controller's decision: one pure function of the service, its tasks, the instances and `now`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use crate::events;
use crate::model::{
    Counts, Deployment, DeploymentConfiguration, DeploymentCounts, DeploymentStatus, DesiredStatus,
    HealthStatus, InstanceState, InstanceStatus, Plan, Rollback, RolloutState, SchedulingStrategy,
    ServiceState, ServiceStatus, ServiceTask, Start, Stop, StopCause, TaskStatus, TaskStopCode,
};

/// First delay of the start backoff, in seconds; it doubles with each consecutive failure.
pub const BACKOFF_BASE_SECS: f64 = 10.0;
/// Longest delay of the start backoff, in seconds.
pub const BACKOFF_CAP_SECS: f64 = 300.0;

/// ECS's circuit-breaker threshold: half the desired count, rounded up, at least 3 and at most 200.
pub fn failure_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// The deployment limits for `desired` tasks: `(lower, upper)`, where lower is the fewest healthy
/// tasks (minimumHealthyPercent, rounded up) and upper the most RUNNING or PENDING tasks
/// (maximumPercent, rounded down).
pub fn limits(config: &DeploymentConfiguration, desired: u32) -> (u32, u32) {
    let d = u64::from(desired);
    let min = (u64::from(config.minimum_healthy_percent) * d).div_ceil(100);
    let max = u64::from(config.maximum_percent) * d / 100;
    (
        u32::try_from(min).unwrap_or(u32::MAX),
        u32::try_from(max).unwrap_or(u32::MAX),
    )
}

/// When the deployment may start a task again after `n` consecutive failures: the first failure is
/// retried at once, then the last failure plus `BACKOFF_BASE_SECS * 2^(n-2)`, at most
/// `BACKOFF_CAP_SECS`. None when nothing holds it back.
pub fn retry_at(deployment: &Deployment) -> Option<f64> {
    let n = deployment.consecutive_failures;
    if n < 2 {
        return None;
    }
    let last = deployment.last_failure_at?;
    let exp = i32::try_from(n.saturating_sub(2).min(16)).unwrap_or(16);
    Some(last + (BACKOFF_BASE_SECS * 2f64.powi(exp)).min(BACKOFF_CAP_SECS))
}

/// How a live task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Health {
    /// Not RUNNING yet.
    Pending,
    /// RUNNING with a health check that is not HEALTHY, inside the grace period or UNKNOWN: neither
    /// healthy nor replaced.
    Waiting,
    /// RUNNING with a failed health check past the grace period: replaced.
    Unhealthy,
    /// RUNNING, and HEALTHY if it has a health check.
    Healthy,
}

/// A task that is RUNNING or on its way there, on a connected instance.
#[derive(Debug, Clone, Copy)]
struct Live<'a> {
    task: &'a ServiceTask,
    health: Health,
    primary: bool,
    instance: &'a InstanceState,
}

impl Live<'_> {
    fn id(&self) -> &str {
        &self.task.id
    }
}

fn health_of(task: &ServiceTask, grace: f64, now: f64) -> Health {
    if task.last_status.is_pending() {
        return Health::Pending;
    }
    if !task.has_health_check || task.health_status == HealthStatus::Healthy {
        return Health::Healthy;
    }
    let in_grace = task.started_at.is_none_or(|s| now < s + grace);
    if in_grace || task.health_status == HealthStatus::Unknown {
        Health::Waiting
    } else {
        Health::Unhealthy
    }
}

/// Accumulates stops, keeping each task once.
struct Stops<'a> {
    out: Vec<Stop>,
    ids: BTreeSet<&'a str>,
}

impl<'a> Stops<'a> {
    fn has(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn push(&mut self, task: &'a ServiceTask, cause: StopCause) {
        if !self.ids.insert(task.id.as_str()) {
            return;
        }
        let reason = match cause {
            StopCause::OldDeployment
            | StopCause::ScaleIn
            | StopCause::Duplicate
            | StopCause::ServiceDeleted => events::reason_scaling(&task.deployment_id),
            StopCause::Unhealthy => events::REASON_UNHEALTHY.to_owned(),
            StopCause::InstanceDraining => events::reason_draining(&task.instance_id),
            StopCause::ConstraintViolated => events::REASON_CONSTRAINT.to_owned(),
        };
        self.out.push(Stop {
            task_id: task.id.clone(),
            deployment_id: task.deployment_id.clone(),
            cause,
            reason,
        });
    }
}

/// Scale-in order among `cands`: not healthy first, then from the instance with the most live tasks
/// of the service (`load`, updated as tasks are picked), then the newest, then by id.
///
/// O(n log n): within one instance the order does not depend on `load`, so each instance's
/// candidates are sorted once, and a heap over instances (keyed by the instance's next candidate
/// and its current load) yields the next task to stop; only the picked instance's key changes.
fn pick<'a>(
    cands: Vec<Live<'a>>,
    count: usize,
    load: &mut BTreeMap<&'a str, u32>,
) -> Vec<Live<'a>> {
    let mut groups: BTreeMap<&'a str, Vec<Live<'a>>> = BTreeMap::new();
    for c in cands {
        groups.entry(c.instance.id.as_str()).or_default().push(c);
    }
    // Ascending, so that each group's next pick is its last element.
    for group in groups.values_mut() {
        group.sort_by(|a, b| better_within(a, b));
    }
    let load_of =
        |load: &BTreeMap<&'a str, u32>, instance: &str| load.get(instance).copied().unwrap_or(0);
    let mut heap = BinaryHeap::new();
    for (instance, group) in &groups {
        if let Some(next) = group.last() {
            heap.push(StopKey::of(next, load_of(load, instance), instance));
        }
    }
    let mut out = Vec::new();
    while out.len() < count {
        let Some(top) = heap.pop() else { break };
        let Some(group) = groups.get_mut(top.instance) else {
            continue;
        };
        let Some(chosen) = group.pop() else { continue };
        if let Some(n) = load.get_mut(top.instance) {
            *n = n.saturating_sub(1);
        }
        if let Some(next) = group.last() {
            heap.push(StopKey::of(next, load_of(load, top.instance), top.instance));
        }
        out.push(chosen);
    }
    out
}

/// Scale-in of healthy tasks: the candidates `order` names first, in its order (the placement
/// engine's selection), then [`pick`] over the rest for any shortfall.
fn pick_in_order<'a>(
    cands: Vec<Live<'a>>,
    count: usize,
    order: &[String],
    load: &mut BTreeMap<&'a str, u32>,
) -> Vec<Live<'a>> {
    if order.is_empty() || count == 0 {
        return pick(cands, count, load);
    }
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(n, id)| (id.as_str(), n))
        .collect();
    let (mut named, rest): (Vec<Live<'a>>, Vec<Live<'a>>) =
        cands.into_iter().partition(|l| rank.contains_key(l.id()));
    named.sort_by_key(|l| rank.get(l.id()).copied().unwrap_or(usize::MAX));
    named.truncate(count);
    for l in &named {
        if let Some(n) = load.get_mut(l.instance.id.as_str()) {
            *n = n.saturating_sub(1);
        }
    }
    let short = count - named.len();
    named.extend(pick(rest, short, load));
    named
}

/// The part of [`better_to_stop`] that does not depend on the instance's load.
fn better_within(a: &Live<'_>, b: &Live<'_>) -> Ordering {
    let healthy = |l: &Live<'_>| l.health == Health::Healthy;
    healthy(b)
        .cmp(&healthy(a))
        .then_with(|| a.task.created_at.total_cmp(&b.task.created_at))
        .then_with(|| b.task.id.cmp(&a.task.id))
}

/// An instance's next scale-in candidate with the instance's load, ordered as
/// [`better_to_stop`] orders tasks (greatest = stop first).
struct StopKey<'a> {
    unhealthy: bool,
    load: u32,
    created_at: f64,
    task_id: &'a str,
    instance: &'a str,
}

impl<'a> StopKey<'a> {
    fn of(l: &Live<'a>, load: u32, instance: &'a str) -> Self {
        StopKey {
            unhealthy: l.health != Health::Healthy,
            load,
            created_at: l.task.created_at,
            task_id: l.task.id.as_str(),
            instance,
        }
    }
}

impl Ord for StopKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.unhealthy
            .cmp(&other.unhealthy)
            .then_with(|| self.load.cmp(&other.load))
            .then_with(|| self.created_at.total_cmp(&other.created_at))
            .then_with(|| other.task_id.cmp(self.task_id))
            .then_with(|| other.instance.cmp(self.instance))
    }
}

impl PartialOrd for StopKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for StopKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for StopKey<'_> {}

#[cfg(test)]
fn better_to_stop(a: &Live<'_>, b: &Live<'_>, load: &BTreeMap<&str, u32>) -> Ordering {
    let healthy = |l: &Live<'_>| l.health == Health::Healthy;
    let load_of = |l: &Live<'_>| load.get(l.instance.id.as_str()).copied().unwrap_or(0);
    healthy(b)
        .cmp(&healthy(a))
        .then_with(|| load_of(a).cmp(&load_of(b)))
        .then_with(|| a.task.created_at.total_cmp(&b.task.created_at))
        .then_with(|| b.task.id.cmp(&a.task.id))
}

/// Keep order among a daemon instance's primary tasks: healthy first, then furthest along, then
/// the oldest, then by id.
fn keep_order(a: &Live<'_>, b: &Live<'_>) -> Ordering {
    let rank = |l: &Live<'_>| match l.health {
        Health::Healthy => 0,
        Health::Waiting => 1,
        Health::Pending => 2,
        Health::Unhealthy => 3,
    };
    rank(a)
        .cmp(&rank(b))
        .then_with(|| a.task.created_at.total_cmp(&b.task.created_at))
        .then_with(|| a.task.id.cmp(&b.task.id))
}

fn min_opt(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Plans one step of the service controller. Pure: the same inputs give the same plan, whatever the
/// order of `tasks` and `instances`.
///
/// `instances` must hold every instance a task of the service is on (a task on an instance not in
/// the list counts as lost) and, for DAEMON, every instance of the cluster.
pub fn plan(
    service: &ServiceState,
    tasks: &[ServiceTask],
    instances: &[InstanceState],
    now: f64,
) -> Plan {
    let name = service.name.as_str();
    let config = &service.deployment_configuration;
    let grace = f64::from(service.health_check_grace_period_seconds);
    let deleting = service.status == ServiceStatus::Draining;
    let daemon = service.scheduling_strategy == SchedulingStrategy::Daemon;
    let by_id: BTreeMap<&str, &InstanceState> =
        instances.iter().map(|i| (i.id.as_str(), i)).collect();

    let mut deps: Vec<Deployment> = service.deployments.clone();
    let mut primary: Option<usize> = deps
        .iter()
        .enumerate()
        .filter(|(_, d)| d.status == DeploymentStatus::Primary)
        .max_by(|(_, a), (_, b)| {
            a.created_at
                .total_cmp(&b.created_at)
                .then_with(|| b.id.cmp(&a.id))
        })
        .map(|(i, _)| i);
    let dep_index: BTreeMap<&str, usize> = service
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let primary_id: Option<&str> = primary.map(|i| service.deployments[i].id.as_str());

    let mut eligible: Vec<&InstanceState> = instances
        .iter()
        .filter(|i| {
            i.status == InstanceStatus::Active && i.agent_connected && i.satisfies_constraints
        })
        .collect();
    eligible.sort_by(|a, b| a.id.cmp(&b.id));
    eligible.dedup_by(|a, b| a.id == b.id);
    let desired: u32 = if deleting {
        0
    } else if daemon {
        u32::try_from(eligible.len()).unwrap_or(u32::MAX)
    } else {
        service.desired_count
    };
    let (min_limit, max_limit) = limits(config, desired);

    let mut sorted: Vec<&ServiceTask> = tasks.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted.dedup_by(|a, b| a.id == b.id);

    let connected = |t: &ServiceTask| -> Option<&InstanceState> {
        by_id
            .get(t.instance_id.as_str())
            .copied()
            .filter(|i| i.agent_connected)
    };
    let mut live: Vec<Live<'_>> = Vec::new();
    let mut next_check_at: Option<f64> = None;
    for &t in &sorted {
        let on_the_way = t.last_status.is_pending() || t.last_status == TaskStatus::Running;
        if t.desired_status != DesiredStatus::Running || !on_the_way {
            continue;
        }
        let Some(instance) = connected(t) else {
            continue;
        };
        let health = health_of(t, grace, now);
        if health == Health::Waiting && t.health_status != HealthStatus::Unknown {
            if let Some(s) = t.started_at {
                next_check_at = min_opt(next_check_at, s + grace);
            }
        }
        live.push(Live {
            task: t,
            health,
            primary: primary_id == Some(t.deployment_id.as_str()),
            instance,
        });
    }

    let mut counts = Counts::default();
    for d in &service.deployments {
        let mine = live.iter().filter(|l| l.task.deployment_id == d.id);
        let mut c = DeploymentCounts {
            deployment_id: d.id.clone(),
            running_count: 0,
            pending_count: 0,
            healthy_count: 0,
        };
        for l in mine {
            if l.health == Health::Pending {
                c.pending_count += 1;
            } else {
                c.running_count += 1;
            }
            if l.health == Health::Healthy {
                c.healthy_count += 1;
            }
        }
        counts.running_count += c.running_count;
        counts.pending_count += c.pending_count;
        counts.deployments.push(c);
    }
    let live_of = |dep: &str| live.iter().filter(|l| l.task.deployment_id == dep).count();

    let mut out = Plan {
        desired_count: desired,
        ..Plan::default()
    };
    let mut stops = Stops {
        out: Vec::new(),
        ids: BTreeSet::new(),
    };
    let mut health_events = Vec::new();

    // Failures: tasks that stopped before RUNNING, counted once; tasks failing health checks.
    let mut new_failures: BTreeMap<usize, (u32, f64)> = BTreeMap::new();
    let mut add_failure = |dep: usize, at: f64| {
        let e = new_failures.entry(dep).or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.max(at);
    };
    for &t in &sorted {
        let failed = t.failed_to_start || t.stop_code == Some(TaskStopCode::TaskFailedToStart);
        if t.last_status == TaskStatus::Stopped && failed && !t.failure_counted {
            if let Some(&d) = dep_index.get(t.deployment_id.as_str()) {
                add_failure(d, t.stopped_at.unwrap_or(now));
                out.failures_counted.push(t.id.clone());
            }
        }
    }

    if deleting {
        for &t in &sorted {
            if t.desired_status == DesiredStatus::Running && t.last_status != TaskStatus::Stopped {
                stops.push(t, StopCause::ServiceDeleted);
            }
        }
    } else {
        for l in &live {
            if l.health == Health::Unhealthy {
                stops.push(l.task, StopCause::Unhealthy);
                health_events.push(events::failed_health_checks(name, l.id()));
                if let Some(&d) = dep_index.get(l.task.deployment_id.as_str()) {
                    add_failure(d, now);
                    out.failures_counted.push(l.task.id.clone());
                }
            }
        }
    }

    // Failure counters and the backoff.
    let mut throttled = false;
    for (i, d) in deps.iter_mut().enumerate() {
        if let Some(&(n, at)) = new_failures.get(&i) {
            let before = d.consecutive_failures;
            d.failed_tasks = d.failed_tasks.saturating_add(n);
            d.consecutive_failures = before.saturating_add(n);
            d.last_failure_at = Some(d.last_failure_at.map_or(at, |l| l.max(at)));
            if Some(i) == primary && before < 3 && d.consecutive_failures >= 3 {
                throttled = true;
            }
        } else if d.consecutive_failures > 0 {
            let since = d.last_failure_at.unwrap_or(f64::NEG_INFINITY);
            let recovered = live.iter().any(|l| {
                l.task.deployment_id == d.id
                    && l.health == Health::Healthy
                    && l.task.started_at.is_some_and(|s| s >= since)
            });
            if recovered {
                d.consecutive_failures = 0;
            }
        }
    }
    if throttled {
        health_events.push(events::unable_to_start(name));
    }

    // The circuit breaker.
    let mut deployment_events = Vec::new();
    let breaker = config.deployment_circuit_breaker;
    if let Some(p) = primary {
        let tripped = !deleting
            && breaker.enable
            && deps[p].rollout_state == RolloutState::InProgress
            && deps[p].failed_tasks >= failure_threshold(desired);
        if tripped {
            deps[p].rollout_state = RolloutState::Failed;
            deps[p].rollout_state_reason = Some(events::REASON_CIRCUIT_BREAKER.to_owned());
            deployment_events.push(events::deployment_failed(name, &deps[p].id));
            let target = deps
                .iter()
                .enumerate()
                .filter(|&(i, d)| {
                    i != p
                        && d.rollout_state == RolloutState::Completed
                        && d.task_definition != deps[p].task_definition
                })
                .max_by(|(_, a), (_, b)| {
                    a.created_at
                        .total_cmp(&b.created_at)
                        .then_with(|| b.id.cmp(&a.id))
                })
                .map(|(_, d)| d.clone());
            if let (true, Some(target)) = (breaker.rollback, target) {
                deps[p].status = DeploymentStatus::Active;
                deployment_events.push(events::rolling_back(name, &target.id));
                out.rollback = Some(Rollback {
                    failed_deployment_id: deps[p].id.clone(),
                    target_deployment_id: target.id.clone(),
                    task_definition: target.task_definition.clone(),
                    rollout_state_reason: events::reason_rolling_back(&target.id),
                });
                primary = None;
            }
        }
    }

    // The load of each instance, for the scale-in order.
    let mut load: BTreeMap<&str, u32> = BTreeMap::new();
    for l in &live {
        *load.entry(l.instance.id.as_str()).or_insert(0) += 1;
    }

    if let (false, Some(p)) = (deleting, primary) {
        let mut want_start: u32;
        let mut daemon_targets: Vec<String> = Vec::new();
        if daemon {
            let eligible_ids: BTreeSet<&str> = eligible.iter().map(|i| i.id.as_str()).collect();
            let mut per_instance: BTreeMap<&str, Vec<Live<'_>>> = BTreeMap::new();
            let remaining: Vec<Live<'_>> = live
                .iter()
                .copied()
                .filter(|l| !stops.has(l.id()))
                .collect();
            for l in remaining {
                let inst = l.instance;
                if inst.status == InstanceStatus::Draining {
                    if !inst.has_other_tasks {
                        stops.push(l.task, StopCause::InstanceDraining);
                    }
                } else if !inst.satisfies_constraints {
                    stops.push(l.task, StopCause::ConstraintViolated);
                } else if eligible_ids.contains(inst.id.as_str()) {
                    per_instance.entry(inst.id.as_str()).or_default().push(l);
                }
            }
            let mut budgeted: Vec<Live<'_>> = Vec::new();
            let mut covered: BTreeSet<&str> = BTreeSet::new();
            for (inst, here) in &per_instance {
                let mut mine: Vec<Live<'_>> = here.iter().copied().filter(|l| l.primary).collect();
                mine.sort_by(keep_order);
                let kept = mine.first().copied();
                for extra in mine.iter().skip(1) {
                    stops.push(extra.task, StopCause::Duplicate);
                }
                if kept.is_some() {
                    covered.insert(inst);
                }
                let kept_healthy = kept.is_some_and(|k| k.health == Health::Healthy);
                for old in here.iter().filter(|l| !l.primary) {
                    if old.health != Health::Healthy || kept_healthy {
                        stops.push(old.task, StopCause::OldDeployment);
                    } else {
                        budgeted.push(*old);
                    }
                }
            }
            let on_eligible = |stops: &Stops<'_>, healthy_only: bool| {
                per_instance
                    .values()
                    .flatten()
                    .filter(|l| !stops.has(l.id()))
                    .filter(|l| !healthy_only || l.health == Health::Healthy)
                    .count()
            };
            let healthy = u32::try_from(on_eligible(&stops, true)).unwrap_or(u32::MAX);
            let budget = healthy.saturating_sub(min_limit) as usize;
            for old in budgeted.into_iter().take(budget) {
                stops.push(old.task, StopCause::OldDeployment);
            }
            let occupied = u32::try_from(on_eligible(&stops, false)).unwrap_or(u32::MAX);
            let room = max_limit.saturating_sub(occupied) as usize;
            daemon_targets = eligible
                .iter()
                .filter(|i| !covered.contains(i.id.as_str()))
                .take(room)
                .map(|i| i.id.clone())
                .collect();
            want_start = u32::try_from(daemon_targets.len()).unwrap_or(u32::MAX);
        } else {
            // Not healthy tasks of other deployments, and not healthy primary tasks on draining
            // instances, stop at once: they hold no healthy capacity.
            let remaining: Vec<Live<'_>> = live
                .iter()
                .copied()
                .filter(|l| !stops.has(l.id()))
                .collect();
            for l in remaining {
                if l.health == Health::Healthy {
                    continue;
                }
                if !l.primary {
                    stops.push(l.task, StopCause::OldDeployment);
                } else if l.instance.status == InstanceStatus::Draining {
                    stops.push(l.task, StopCause::InstanceDraining);
                }
            }
            let good: Vec<Live<'_>> = live
                .iter()
                .copied()
                .filter(|l| {
                    l.primary && l.instance.status == InstanceStatus::Active && !stops.has(l.id())
                })
                .collect();
            let mut surplus = good.len().saturating_sub(desired as usize);
            // Surplus that is not healthy goes for free.
            let not_healthy: Vec<Live<'_>> = good
                .iter()
                .copied()
                .filter(|l| l.health != Health::Healthy)
                .collect();
            for l in pick(not_healthy, surplus, &mut load) {
                stops.push(l.task, StopCause::ScaleIn);
                surplus -= 1;
            }
            // Healthy tasks stop only down to the lower limit: old deployments first, then tasks on
            // draining instances, then the surplus.
            let healthy_now = live
                .iter()
                .filter(|l| l.health == Health::Healthy && !stops.has(l.id()))
                .count();
            let mut budget = healthy_now.saturating_sub(min_limit as usize);
            let old: Vec<Live<'_>> = live
                .iter()
                .copied()
                .filter(|l| !l.primary && !stops.has(l.id()))
                .collect();
            let n = old.len();
            for l in pick(old, budget.min(n), &mut load) {
                stops.push(l.task, StopCause::OldDeployment);
                budget -= 1;
            }
            let drained: Vec<Live<'_>> = live
                .iter()
                .copied()
                .filter(|l| {
                    l.primary && l.instance.status == InstanceStatus::Draining && !stops.has(l.id())
                })
                .collect();
            let n = drained.len();
            for l in pick(drained, budget.min(n), &mut load) {
                stops.push(l.task, StopCause::InstanceDraining);
                budget -= 1;
            }
            let healthy_good: Vec<Live<'_>> = good
                .iter()
                .copied()
                .filter(|l| !stops.has(l.id()))
                .collect();
            for l in pick_in_order(
                healthy_good,
                surplus.min(budget),
                &service.scale_in_order,
                &mut load,
            ) {
                stops.push(l.task, StopCause::ScaleIn);
            }
            let kept_good = good.iter().filter(|l| !stops.has(l.id())).count();
            let occupied = live.iter().filter(|l| !stops.has(l.id())).count();
            let need = (desired as usize).saturating_sub(kept_good);
            let room = (max_limit as usize).saturating_sub(occupied);
            want_start = u32::try_from(need.min(room)).unwrap_or(u32::MAX);
        }

        if want_start > 0 {
            if let Some(at) = retry_at(&deps[p]).filter(|&at| now < at) {
                out.retry_after = Some(at);
                next_check_at = min_opt(next_check_at, at);
                want_start = 0;
                daemon_targets.clear();
            }
        }
        if want_start > 0 {
            out.starts.push(Start {
                deployment_id: deps[p].id.clone(),
                task_definition: deps[p].task_definition.clone(),
                count: want_start,
                instance_ids: daemon_targets,
            });
        }
    }

    // Deployment statuses.
    let nothing_to_do = stops.out.is_empty() && out.starts.is_empty() && out.retry_after.is_none();
    let others_drained = deps
        .iter()
        .enumerate()
        .all(|(i, d)| Some(i) == primary || live_of(&d.id) == 0);
    let mut settled = false;
    if let (false, Some(p)) = (deleting, primary) {
        let pid = deps[p].id.clone();
        let mine = live.iter().filter(|l| l.task.deployment_id == pid);
        let healthy = mine.clone().filter(|l| l.health == Health::Healthy).count();
        settled = nothing_to_do
            && others_drained
            && out.rollback.is_none()
            && mine.count() == desired as usize
            && healthy == desired as usize;
        deps[p].desired_count = desired;
        if settled && deps[p].rollout_state == RolloutState::InProgress {
            deps[p].rollout_state = RolloutState::Completed;
            deps[p].rollout_state_reason = Some(events::reason_completed(&pid));
            deployment_events.push(events::deployment_completed(name, &pid));
        }
    }
    for (i, d) in deps.iter_mut().enumerate() {
        if Some(i) == primary && !deleting {
            continue;
        }
        d.desired_count = 0;
        if d.status == DeploymentStatus::Active && live_of(&d.id) == 0 && !deleting {
            d.status = DeploymentStatus::Inactive;
        }
    }
    out.updated_deployments = deps
        .into_iter()
        .zip(&service.deployments)
        .filter(|(new, old)| new != *old)
        .map(|(new, _)| new)
        .collect();

    // Events, oldest first.
    out.events = health_events;
    if !stops.out.is_empty() {
        let ids: Vec<&str> = stops.out.iter().map(|s| s.task_id.as_str()).collect();
        out.events.push(events::stopped_tasks(name, &ids));
    }
    out.events.extend(deployment_events);
    out.steady_state = settled;
    if settled && !service.steady_state {
        out.events.push(events::steady_state(name));
    }
    out.stops = stops.out;
    out.counts = counts;
    out.next_check_at = next_check_at;
    out.can_become_inactive = deleting
        && sorted.iter().all(|t| {
            t.last_status == TaskStatus::Stopped
                || (t.desired_status == DesiredStatus::Stopped && connected(t).is_none())
        });
    out
}

#[cfg(test)]
mod pick_tests {
    use super::*;
    use crate::model::{DesiredStatus, HealthStatus, InstanceStatus, TaskStatus};
    use proptest::prelude::*;

    /// The definition of the scale-in order: pick the best task, one at a time, over all of them.
    fn naive<'a>(
        mut cands: Vec<Live<'a>>,
        count: usize,
        load: &mut BTreeMap<&'a str, u32>,
    ) -> Vec<Live<'a>> {
        let mut out = Vec::new();
        while out.len() < count && !cands.is_empty() {
            let mut best = 0;
            for i in 1..cands.len() {
                if better_to_stop(&cands[i], &cands[best], load) == Ordering::Greater {
                    best = i;
                }
            }
            let chosen = cands.swap_remove(best);
            if let Some(n) = load.get_mut(chosen.instance.id.as_str()) {
                *n = n.saturating_sub(1);
            }
            out.push(chosen);
        }
        out
    }

    fn task(id: usize, instance: usize, created_at: u8) -> ServiceTask {
        ServiceTask {
            id: format!("t{id:03}"),
            deployment_id: "d".into(),
            instance_id: format!("i{instance}"),
            last_status: TaskStatus::Running,
            desired_status: DesiredStatus::Running,
            health_status: HealthStatus::Unknown,
            has_health_check: false,
            created_at: f64::from(created_at),
            started_at: None,
            stopped_at: None,
            stopped_reason: None,
            stop_code: None,
            failed_to_start: false,
            failure_counted: false,
        }
    }

    proptest! {
        /// The heap-based pick stops exactly the tasks, in exactly the order, of the one-at-a-time
        /// definition.
        #[test]
        fn heap_pick_matches_the_definition(
            spec in proptest::collection::vec((0usize..5, 0u8..4, any::<bool>()), 0..40),
            count in 0usize..45,
        ) {
            let instances: Vec<InstanceState> = (0..5)
                .map(|i| InstanceState {
                    id: format!("i{i}"),
                    status: InstanceStatus::Active,
                    agent_connected: true,
                    satisfies_constraints: true,
                    has_other_tasks: false,
                })
                .collect();
            let tasks: Vec<ServiceTask> =
                spec.iter().enumerate().map(|(n, (i, c, _))| task(n, *i, *c)).collect();
            let lives: Vec<Live<'_>> = tasks
                .iter()
                .zip(&spec)
                .map(|(t, (i, _, healthy))| Live {
                    task: t,
                    health: if *healthy { Health::Healthy } else { Health::Pending },
                    primary: true,
                    instance: &instances[*i],
                })
                .collect();
            let mut load: BTreeMap<&str, u32> = BTreeMap::new();
            for l in &lives {
                *load.entry(l.instance.id.as_str()).or_default() += 1;
            }
            let mut load2 = load.clone();
            let want: Vec<String> =
                naive(lives.clone(), count, &mut load).iter().map(|l| l.task.id.clone()).collect();
            let got: Vec<String> =
                pick(lives, count, &mut load2).iter().map(|l| l.task.id.clone()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(load, load2);
        }
    }
}
