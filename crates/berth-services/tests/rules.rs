//! Table tests, one per rule of the service controller.

mod sim;

use berth_services::*;
use sim::*;

const OLD: &str = "ecs-svc/1000";
const NEW: &str = "ecs-svc/2000";

/// A service mid-rollout: OLD (ACTIVE, COMPLETED) has `n` healthy tasks over instances a..d, NEW is
/// the PRIMARY IN_PROGRESS.
fn rollout(n: u32, min: u32, max: u32) -> World {
    let mut new = deployment(NEW, DeploymentStatus::Primary, RolloutState::InProgress);
    new.created_at = T0 - 10.0;
    let svc = service(
        n,
        min,
        max,
        vec![
            deployment(OLD, DeploymentStatus::Active, RolloutState::Completed),
            new,
        ],
    );
    let insts = ["a", "b", "c", "d"];
    let tasks = (0..n)
        .map(|k| running(&format!("old{k}"), OLD, insts[k as usize % 4]))
        .collect();
    World::new(svc, tasks, insts.iter().map(|i| instance(i)).collect())
}

/// A settled service: `n` healthy tasks of NEW (PRIMARY, COMPLETED).
fn settled(n: u32, min: u32, max: u32) -> World {
    let svc = service(
        n,
        min,
        max,
        vec![deployment(
            NEW,
            DeploymentStatus::Primary,
            RolloutState::Completed,
        )],
    );
    let insts = ["a", "b", "c", "d"];
    let tasks = (0..n)
        .map(|k| running(&format!("t{k}"), NEW, insts[k as usize % 4]))
        .collect();
    let mut w = World::new(svc, tasks, insts.iter().map(|i| instance(i)).collect());
    w.service.steady_state = true;
    w
}

fn started(p: &Plan) -> u32 {
    p.starts.iter().map(|s| s.count).sum()
}

fn stopped_of(p: &Plan, cause: StopCause) -> usize {
    p.stops.iter().filter(|s| s.cause == cause).count()
}

fn updated<'a>(p: &'a Plan, id: &str) -> Option<&'a Deployment> {
    p.updated_deployments.iter().find(|d| d.id == id)
}

#[test]
fn limits_round_min_up_and_max_down() {
    let cfg = |min, max| DeploymentConfiguration {
        minimum_healthy_percent: min,
        maximum_percent: max,
        deployment_circuit_breaker: DeploymentCircuitBreaker::default(),
    };
    let table = [
        (100, 200, 4, (4, 8)),
        (50, 200, 4, (2, 8)),
        (50, 150, 3, (2, 4)),
        (0, 100, 5, (0, 5)),
        (33, 133, 1, (1, 1)),
    ];
    for (min, max, d, want) in table {
        assert_eq!(limits(&cfg(min, max), d), want, "{min}/{max} of {d}");
    }
    assert_eq!(
        DeploymentConfiguration::defaults(SchedulingStrategy::Replica),
        cfg(100, 200)
    );
    assert_eq!(
        DeploymentConfiguration::defaults(SchedulingStrategy::Daemon),
        cfg(0, 100)
    );
    for (d, want) in [
        (0, 3),
        (1, 3),
        (6, 3),
        (7, 4),
        (10, 5),
        (399, 200),
        (1000, 200),
    ] {
        assert_eq!(failure_threshold(d), want, "threshold of {d}");
    }
}

#[test]
fn rollout_100_200_starts_new_first_then_stops_old() {
    let mut w = rollout(4, 100, 200);
    // Step 1: four new tasks, nothing stops (healthy would drop below 4).
    let p = w.step();
    assert_eq!(started(&p), 4);
    assert!(p.stops.is_empty());
    assert_eq!(p.starts[0].deployment_id, NEW);
    assert!(!p.steady_state);
    assert_eq!((p.counts.running_count, p.counts.pending_count), (4, 0));
    // Step 2: the new ones are healthy; all four old ones stop.
    let p = w.step();
    assert_eq!(started(&p), 0);
    assert_eq!(stopped_of(&p, StopCause::OldDeployment), 4);
    assert!(p
        .stops
        .iter()
        .all(|s| s.reason == "Scaling activity initiated by (deployment ecs-svc/1000)"));
    assert!(p
        .events
        .iter()
        .any(|e| e.starts_with("(service web) has stopped 4 running tasks: (task old")));
    // Step 3: OLD is INACTIVE, NEW COMPLETED, steady state.
    let p = w.step();
    assert!(matches!(updated(&p, OLD), Some(d) if d.status == DeploymentStatus::Inactive));
    assert!(matches!(updated(&p, NEW), Some(d) if d.rollout_state == RolloutState::Completed));
    assert!(p.steady_state);
    assert_eq!(
        p.events,
        vec![
            "(service web) (deployment ecs-svc/2000) deployment completed.".to_owned(),
            "(service web) has reached a steady state.".to_owned(),
        ]
    );
    // Step 4: nothing more, and no second steady-state event.
    let p = w.step();
    assert!(p.steady_state && p.events.is_empty() && p.stops.is_empty() && p.starts.is_empty());
}

#[test]
fn rollout_0_100_stops_old_first() {
    let mut w = rollout(4, 0, 100);
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::OldDeployment), 4);
    // The starts fit only because the stops made room (max 4).
    assert_eq!(started(&p), 4);
    assert!(w.live() <= 4);
    let p = w.step();
    assert!(p.steady_state);
}

#[test]
fn rollout_50_200_with_desired_4() {
    let mut w = rollout(4, 50, 200);
    let p = w.plan();
    w.apply(&p);
    assert_eq!(stopped_of(&p, StopCause::OldDeployment), 2);
    assert_eq!(started(&p), 4);
    assert_eq!((w.live(), w.healthy()), (6, 2), "max 8, min 2");
    w.advance();
    let p = w.plan();
    w.apply(&p);
    assert_eq!(stopped_of(&p, StopCause::OldDeployment), 2);
    assert_eq!(started(&p), 0);
    assert_eq!((w.live(), w.healthy()), (4, 4));
    w.advance();
    let p = w.step();
    assert!(p.steady_state);
}

#[test]
fn rollout_50_100_alternates() {
    let mut w = rollout(4, 50, 100);
    let p = w.step();
    assert_eq!(
        (stopped_of(&p, StopCause::OldDeployment), started(&p)),
        (2, 2)
    );
    let p = w.step();
    assert_eq!(
        (stopped_of(&p, StopCause::OldDeployment), started(&p)),
        (2, 2)
    );
    let p = w.step();
    assert!(p.steady_state);
}

#[test]
fn scale_out_starts_the_difference() {
    let mut w = settled(2, 100, 200);
    w.service.desired_count = 5;
    let p = w.step();
    assert_eq!(started(&p), 3);
    assert!(p.stops.is_empty() && !p.steady_state);
    assert!(matches!(updated(&p, NEW), Some(d) if d.desired_count == 5));
    let p = w.step();
    assert!(p.steady_state);
}

#[test]
fn scale_in_stops_not_healthy_first_then_spreads() {
    let mut w = settled(4, 100, 200);
    w.tasks.push(pending("t9", NEW, "a"));
    w.service.desired_count = 2;
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::ScaleIn), 3);
    assert_eq!(p.stops[0].task_id, "t9", "the pending task goes first");
    assert!(p.starts.is_empty());
    assert_eq!(w.healthy(), 2);
    let p = w.step();
    assert!(p.steady_state);
}

#[test]
fn scale_in_follows_the_engines_order_then_its_own() {
    // t0..t7 over a, b, c, d (two each), scaled in to 5. Left alone, the
    // planner stops in its own order.
    let mut w = settled(8, 0, 100);
    w.service.desired_count = 5;
    let p = w.step();
    let own: Vec<String> = p.stops.iter().map(|s| s.task_id.clone()).collect();
    assert_eq!(own.len(), 3);
    // The engine's order names t5 and t7 (and a task that is not a
    // candidate): they go first, in that order; the third stop is the
    // first of the planner's own order that is left.
    let mut w = settled(8, 0, 100);
    w.service.desired_count = 5;
    w.service.scale_in_order = vec!["t5".into(), "gone".into(), "t7".into()];
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::ScaleIn), 3);
    let ids: Vec<&str> = p.stops.iter().map(|s| s.task_id.as_str()).collect();
    let third = own
        .iter()
        .find(|id| !["t5", "t7"].contains(&id.as_str()))
        .map(String::as_str);
    assert_eq!(ids, vec!["t5", "t7", third.unwrap_or_default()]);
    assert_ne!(own, ids, "the engine's order changed the choice");
}

#[test]
fn stopped_task_is_replaced() {
    let mut w = settled(3, 100, 200);
    if let Some(t) = w.tasks.first_mut() {
        t.last_status = TaskStatus::Stopped;
        t.desired_status = DesiredStatus::Stopped;
        t.stop_code = Some(TaskStopCode::EssentialContainerExited);
    }
    let p = w.step();
    assert_eq!(started(&p), 1);
    assert!(p.failures_counted.is_empty(), "it had reached RUNNING");
    let p = w.step();
    assert!(p.steady_state);
}

#[test]
fn lost_instance_is_replaced_and_surplus_stops_when_it_returns() {
    let mut w = settled(4, 100, 200);
    // Instance b (tasks t1) and c (t2) lose their agents.
    for i in &mut w.instances {
        if i.id == "b" || i.id == "c" {
            i.agent_connected = false;
        }
    }
    let p = w.step();
    assert_eq!(started(&p), 2);
    assert_eq!(p.counts.running_count, 2, "lost tasks are not running");
    assert!(p.stops.is_empty());
    let p = w.step();
    assert!(p.steady_state);
    // The agents come back: 6 tasks, 2 too many.
    for i in &mut w.instances {
        i.agent_connected = true;
    }
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::ScaleIn), 2);
    assert!(p.starts.is_empty());
    assert_eq!((w.live(), w.healthy()), (4, 4));
    let p = w.step();
    assert!(p.steady_state);
}

#[test]
fn draining_instance_tasks_are_replaced_then_stopped() {
    let mut w = settled(4, 100, 200);
    w.tasks.push(pending("t8", NEW, "a"));
    w.service.desired_count = 5;
    for i in &mut w.instances {
        if i.id == "a" {
            i.status = InstanceStatus::Draining;
        }
    }
    // t0 (healthy, on a) is replaced first; t8 (pending, on a) stops at once.
    let p = w.step();
    assert_eq!(started(&p), 2);
    assert_eq!(p.stops.len(), 1);
    assert!(p.stops[0].task_id == "t8" && p.stops[0].cause == StopCause::InstanceDraining);
    let p = w.step();
    assert_eq!(p.stops.len(), 1);
    assert!(p.stops[0].task_id == "t0" && p.stops[0].cause == StopCause::InstanceDraining);
    assert!(p.starts.is_empty());
    let p = w.step();
    assert!(p.steady_state);
    assert!(w
        .tasks
        .iter()
        .all(|t| t.instance_id != "a" || t.last_status == TaskStatus::Stopped));
}

#[test]
fn draining_with_room_to_spare_stops_at_once() {
    let mut w = settled(4, 50, 100);
    for i in &mut w.instances {
        if i.id == "a" {
            i.status = InstanceStatus::Draining;
        }
    }
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::InstanceDraining), 1);
    assert_eq!(started(&p), 1);
}

fn failing(rollback: bool) -> World {
    let mut w = rollout(2, 100, 200);
    w.service
        .deployment_configuration
        .deployment_circuit_breaker = DeploymentCircuitBreaker {
        enable: true,
        rollback,
    };
    w.tasks.push(failed("f1", NEW, "a", T0 - 30.0));
    w.tasks.push(failed("f2", NEW, "b", T0 - 20.0));
    w.tasks.push(failed("f3", NEW, "c", T0 - 10.0));
    w
}

#[test]
fn circuit_breaker_without_rollback_marks_failed_and_keeps_going() {
    let mut w = failing(false);
    let p = w.step();
    let new = updated(&p, NEW);
    assert!(
        matches!(new, Some(d) if d.rollout_state == RolloutState::Failed
        && d.status == DeploymentStatus::Primary
        && d.failed_tasks == 3
        && d.rollout_state_reason.as_deref() == Some("ECS deployment circuit breaker: tasks failed to start."))
    );
    assert!(p.rollback.is_none());
    assert_eq!(p.failures_counted.len(), 3);
    assert!(p.events.contains(
        &"(service web) deployment ecs-svc/2000 deployment failed: tasks failed to start."
            .to_owned()
    ));
    // Three consecutive failures: starts wait 20 s after the last one.
    assert_eq!(p.retry_after, Some(T0 - 10.0 + 20.0));
    assert!(p.starts.is_empty() && p.stops.is_empty());
    // Counted once: the next plans do not count them again.
    assert_eq!(p.next_check_at, Some(T0 + 10.0));
    let p = w.step();
    assert!(p.failures_counted.is_empty());
    assert!(matches!(w.deployment(NEW), Some(d) if d.failed_tasks == 3));
    assert_eq!(started(&p), 2, "ECS keeps trying after the backoff");
    for _ in 0..3 {
        w.step();
    }
    assert!(
        matches!(w.deployment(NEW), Some(d) if d.rollout_state == RolloutState::Failed
        && d.consecutive_failures == 0)
    );
    assert!(matches!(w.deployment(OLD), Some(d) if d.status == DeploymentStatus::Inactive));
}

#[test]
fn circuit_breaker_with_rollback_asks_for_the_completed_task_definition() {
    let mut w = failing(true);
    let p = w.step();
    assert!(
        matches!(&p.rollback, Some(rb) if rb.failed_deployment_id == NEW
        && rb.target_deployment_id == OLD
        && rb.task_definition.ends_with(":ecs-svc/1000")
        && rb.rollout_state_reason == "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1000.")
    );
    assert!(
        matches!(updated(&p, NEW), Some(d) if d.status != DeploymentStatus::Primary
        && d.rollout_state == RolloutState::Failed)
    );
    assert!(
        p.starts.is_empty() && p.stops.is_empty(),
        "old healthy tasks stay"
    );
    assert!(p
        .events
        .contains(&"(service web) rolling back to deployment ecs-svc/1000.".to_owned()));
    // The new PRIMARY (old task definition) rolls out and the service settles on it.
    let mut last = p;
    for _ in 0..6 {
        last = w.step();
    }
    assert!(last.steady_state);
    let primary = w
        .service
        .deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary);
    assert!(
        matches!(primary, Some(d) if d.task_definition.ends_with(":ecs-svc/1000")
        && d.rollout_state == RolloutState::Completed)
    );
}

#[test]
fn circuit_breaker_counts_failed_health_checks_only_while_in_progress() {
    let mut w = settled(2, 100, 200);
    w.service
        .deployment_configuration
        .deployment_circuit_breaker
        .enable = true;
    for (k, t) in w.tasks.iter_mut().enumerate() {
        t.has_health_check = true;
        t.health_status = if k == 0 {
            HealthStatus::Unhealthy
        } else {
            HealthStatus::Healthy
        };
    }
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::Unhealthy), 1);
    assert!(matches!(updated(&p, NEW), Some(d) if d.failed_tasks == 1
        && d.rollout_state == RolloutState::Completed));
}

#[test]
fn grace_period_protects_then_unhealthy_is_replaced() {
    let mut w = settled(2, 100, 200);
    w.service.health_check_grace_period_seconds = 60;
    if let Some(t) = w.tasks.first_mut() {
        t.has_health_check = true;
        t.health_status = HealthStatus::Unhealthy;
        t.started_at = Some(T0 - 10.0);
    }
    let p = w.plan();
    assert!(p.stops.is_empty() && p.starts.is_empty());
    assert!(!p.steady_state, "a task in its grace period is not healthy");
    assert_eq!(p.next_check_at, Some(T0 + 50.0));
    w.now = T0 + 51.0;
    let p = w.step();
    assert_eq!(p.stops.len(), 1);
    assert!(
        p.stops[0].task_id == "t0" && p.stops[0].reason == "Task failed container health checks"
    );
    assert_eq!(started(&p), 1);
    assert_eq!(
        p.events[0],
        "(service web) (task t0) failed container health checks."
    );
}

#[test]
fn unknown_health_past_grace_waits() {
    let mut w = settled(1, 100, 200);
    if let Some(t) = w.tasks.first_mut() {
        t.has_health_check = true;
        t.health_status = HealthStatus::Unknown;
    }
    let p = w.plan();
    assert!(p.stops.is_empty() && p.starts.is_empty() && !p.steady_state);
    assert_eq!(p.counts.deployments[0].healthy_count, 0);
}

#[test]
fn backoff_grows_and_is_capped() {
    let mut d = deployment(NEW, DeploymentStatus::Primary, RolloutState::InProgress);
    d.last_failure_at = Some(T0);
    let table = [
        (0, None),
        (1, None),
        (2, Some(10.0)),
        (3, Some(20.0)),
        (6, Some(160.0)),
        (7, Some(300.0)),
        (40, Some(300.0)),
    ];
    for (n, want) in table {
        d.consecutive_failures = n;
        assert_eq!(retry_at(&d), want.map(|w| T0 + w), "{n} failures");
    }
}

fn daemon(instances: Vec<InstanceState>, tasks: Vec<ServiceTask>) -> World {
    let mut svc = service(
        0,
        0,
        100,
        vec![deployment(
            NEW,
            DeploymentStatus::Primary,
            RolloutState::Completed,
        )],
    );
    svc.scheduling_strategy = SchedulingStrategy::Daemon;
    World::new(svc, tasks, instances)
}

#[test]
fn daemon_starts_on_each_eligible_instance() {
    let mut lost = instance("c");
    lost.agent_connected = false;
    let mut unfit = instance("d");
    unfit.satisfies_constraints = false;
    let mut draining = instance("e");
    draining.status = InstanceStatus::Draining;
    let mut w = daemon(
        vec![
            instance("a"),
            instance("b"),
            lost,
            unfit,
            draining,
            instance("f"),
        ],
        vec![running("t0", NEW, "a")],
    );
    let p = w.step();
    assert_eq!(p.desired_count, 3);
    assert_eq!(p.starts.len(), 1);
    assert_eq!(
        p.starts[0].instance_ids,
        vec!["b".to_owned(), "f".to_owned()]
    );
    assert_eq!(p.starts[0].count, 2);
    let p = w.step();
    assert!(p.steady_state);
    // A new instance joins.
    w.instances.push(instance("g"));
    let p = w.step();
    assert!(matches!(p.starts.first(), Some(s) if s.instance_ids == vec!["g".to_owned()]));
}

#[test]
fn daemon_task_stops_on_constraint_violation_and_duplicates() {
    let mut unfit = instance("b");
    unfit.satisfies_constraints = false;
    let mut w = daemon(
        vec![instance("a"), unfit],
        vec![
            running("t0", NEW, "a"),
            pending("t1", NEW, "a"),
            running("t2", NEW, "b"),
        ],
    );
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::Duplicate), 1);
    assert_eq!(stopped_of(&p, StopCause::ConstraintViolated), 1);
    assert!(p.stops.iter().any(|s| s.task_id == "t1"));
    assert!(p.starts.is_empty());
}

#[test]
fn daemon_task_on_draining_instance_waits_for_the_other_tasks() {
    let mut busy = instance("b");
    busy.status = InstanceStatus::Draining;
    busy.has_other_tasks = true;
    let w = daemon(
        vec![instance("a"), busy],
        vec![running("t0", NEW, "a"), running("t1", NEW, "b")],
    );
    let p = w.plan();
    assert!(p.stops.is_empty() && p.starts.is_empty());
    assert_eq!(p.desired_count, 1);
    let mut w = w;
    for i in &mut w.instances {
        i.has_other_tasks = false;
    }
    let p = w.plan();
    assert_eq!(p.stops.len(), 1);
    assert!(p.stops[0].task_id == "t1" && p.stops[0].cause == StopCause::InstanceDraining);
}

#[test]
fn daemon_rollout_0_100_replaces_in_place() {
    let mut w = daemon(
        vec![instance("a"), instance("b")],
        vec![running("t0", OLD, "a"), running("t1", OLD, "b")],
    );
    w.service.deployments.insert(
        0,
        deployment(OLD, DeploymentStatus::Active, RolloutState::Completed),
    );
    w.service.deployments[1].rollout_state = RolloutState::InProgress;
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::OldDeployment), 2);
    assert!(matches!(p.starts.first(), Some(s) if s.instance_ids.len() == 2));
    let p = w.step();
    assert!(p.steady_state);
    assert!(p
        .events
        .contains(&"(service web) (deployment ecs-svc/2000) deployment completed.".to_owned()));
}

#[test]
fn delete_stops_everything_then_allows_inactive() {
    let mut w = rollout(3, 100, 200);
    w.tasks.push(pending("p1", NEW, "a"));
    let mut lost = instance("z");
    lost.agent_connected = false;
    w.instances.push(lost);
    w.tasks.push(running("l1", OLD, "z"));
    w.service.status = ServiceStatus::Draining;
    let p = w.step();
    assert_eq!(stopped_of(&p, StopCause::ServiceDeleted), 5);
    assert!(p.starts.is_empty() && !p.can_become_inactive && !p.steady_state);
    assert_eq!(p.desired_count, 0);
    let p = w.step();
    assert!(p.can_become_inactive && p.stops.is_empty());
}

#[test]
fn events_use_ecs_wording() {
    assert_eq!(
        events::started_tasks("web", &["arn:aws:ecs:us-east-1:1:task/c/abc", "def"]),
        "(service web) has started 2 tasks: (task abc) (task def)."
    );
    assert_eq!(
        events::stopped_tasks("web", &["abc"]),
        "(service web) has stopped 1 running tasks: (task abc)."
    );
    assert_eq!(
        events::steady_state("web"),
        "(service web) has reached a steady state."
    );
}

#[test]
fn plan_round_trips_through_json() {
    let w = rollout(4, 100, 200);
    let p = w.plan();
    let text = serde_json::to_string(&p).unwrap_or_default();
    assert!(text.contains("\"deploymentId\":\"ecs-svc/2000\""));
    let back: Option<Plan> = serde_json::from_str(&text).ok();
    assert_eq!(back, Some(p));
    let svc = serde_json::to_value(&w.service).unwrap_or_default();
    assert_eq!(svc["schedulingStrategy"], "REPLICA");
    assert_eq!(svc["deployments"][1]["rolloutState"], "IN_PROGRESS");
}
