//! Properties of the controller, checked by simulating its plans (see `sim`): convergence from any
//! state, the deployment limits during a rollout, and determinism.

mod sim;

use berth_services::*;
use proptest::prelude::*;
use sim::*;

const MAX_STEPS: usize = 80;

#[derive(Debug, Clone)]
struct TaskSeed {
    dep: usize,
    inst: usize,
    status: u8,
    health: u8,
    check: bool,
    age: u16,
    desired_running: bool,
    counted: bool,
}

fn task_seed() -> impl Strategy<Value = TaskSeed> {
    (
        0usize..3,
        0usize..6,
        0u8..4,
        0u8..3,
        any::<bool>(),
        0u16..200,
        prop::bool::weighted(0.9),
        any::<bool>(),
    )
        .prop_map(
            |(dep, inst, status, health, check, age, desired_running, counted)| TaskSeed {
                dep,
                inst,
                status,
                health,
                check,
                age,
                desired_running,
                counted,
            },
        )
}

#[derive(Debug, Clone)]
struct InstSeed {
    draining: bool,
    connected: bool,
    fits: bool,
    other: bool,
}

fn inst_seed() -> impl Strategy<Value = InstSeed> {
    (
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.85),
        any::<bool>(),
    )
        .prop_map(|(draining, connected, fits, other)| InstSeed {
            draining,
            connected,
            fits,
            other,
        })
}

/// Configurations that can make progress (ECS's own stalls, e.g. 100/100, are left out).
const REPLICA_LIMITS: [(u32, u32); 4] = [(100, 200), (0, 100), (50, 200), (0, 200)];
const DAEMON_LIMITS: [(u32, u32); 3] = [(0, 100), (100, 200), (0, 200)];

prop_compose! {
    fn world()(
        is_daemon in prop::bool::weighted(0.3),
        deleting in prop::bool::weighted(0.15),
        limits_pick in 0usize..4,
        desired in 0u32..7,
        grace in prop::sample::select(vec![0u32, 60]),
        breaker in (any::<bool>(), any::<bool>()),
        n_deps in 1usize..4,
        primary_rollout in 0u8..3,
        failures in (0u32..6, 0u16..100),
        insts in prop::collection::vec(inst_seed(), 1..6),
        seeds in prop::collection::vec(task_seed(), 0..12),
    ) -> World {
        let ids = ["ecs-svc/1", "ecs-svc/2", "ecs-svc/3"];
        let mut deps = Vec::new();
        for (k, id) in ids.iter().enumerate().take(n_deps) {
            let primary = k + 1 == n_deps;
            let mut d = deployment(
                id,
                if primary { DeploymentStatus::Primary } else { DeploymentStatus::Active },
                if primary {
                    [RolloutState::InProgress, RolloutState::Completed, RolloutState::Failed]
                        [primary_rollout as usize]
                } else if k == 0 {
                    RolloutState::Completed
                } else {
                    RolloutState::InProgress
                },
            );
            d.created_at = T0 - 1000.0 + k as f64;
            if primary {
                d.consecutive_failures = failures.0;
                d.failed_tasks = failures.0;
                d.last_failure_at = Some(T0 - f64::from(failures.1));
            }
            deps.push(d);
        }
        let (min, max) = if is_daemon {
            DAEMON_LIMITS[limits_pick % DAEMON_LIMITS.len()]
        } else {
            REPLICA_LIMITS[limits_pick % REPLICA_LIMITS.len()]
        };
        let mut svc = service(desired, min, max, deps);
        if is_daemon {
            svc.scheduling_strategy = SchedulingStrategy::Daemon;
        }
        if deleting {
            svc.status = ServiceStatus::Draining;
        }
        svc.health_check_grace_period_seconds = grace;
        svc.deployment_configuration.deployment_circuit_breaker = DeploymentCircuitBreaker {
            enable: breaker.0,
            rollback: breaker.1,
        };
        let instances: Vec<InstanceState> = insts
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let mut i = instance(&format!("i{k}"));
                // The first instance is always usable, so every state can converge.
                if k > 0 {
                    if s.draining {
                        i.status = InstanceStatus::Draining;
                    }
                    i.agent_connected = s.connected;
                    i.satisfies_constraints = s.fits;
                }
                i.has_other_tasks = s.other;
                i
            })
            .collect();
        let tasks = seeds
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let dep = ids[s.dep % n_deps];
                let inst = format!("i{}", s.inst % instances.len());
                let id = format!("seed{k:02}");
                let mut t = match s.status {
                    0 => pending(&id, dep, &inst),
                    1 | 2 => running(&id, dep, &inst),
                    _ => failed(&id, dep, &inst, T0 - f64::from(s.age)),
                };
                if s.status != 3 {
                    t.has_health_check = s.check;
                    t.health_status = [HealthStatus::Healthy, HealthStatus::Unhealthy, HealthStatus::Unknown]
                        [s.health as usize];
                    if t.started_at.is_some() {
                        t.started_at = Some(T0 - f64::from(s.age));
                    }
                    if !s.desired_running {
                        t.desired_status = DesiredStatus::Stopped;
                    }
                } else {
                    t.failure_counted = s.counted;
                }
                t
            })
            .collect();
        World::new(svc, tasks, instances)
    }
}

fn deployment_limits(w: &World) -> (u32, u32) {
    limits(&w.service.deployment_configuration, w.service.desired_count)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// (1) Simulating the plans from any state reaches steady state (or, for a deleted service,
    /// INACTIVE) within a bounded number of steps, and stays there.
    #[test]
    fn converges(mut w in world()) {
        let deleting = w.service.status == ServiceStatus::Draining;
        let mut reached = None;
        for step in 0..MAX_STEPS {
            let p = w.step();
            if (deleting && p.can_become_inactive) || (!deleting && p.steady_state) {
                reached = Some(step);
                break;
            }
        }
        prop_assert!(reached.is_some(), "not converged: {:#?}", w);
        if !deleting {
            let p = w.step();
            prop_assert!(p.steady_state && p.starts.is_empty() && p.stops.is_empty());
            prop_assert!(p.events.is_empty(), "steady state is announced once: {:?}", p.events);
            let primaries: Vec<&Deployment> = w
                .service
                .deployments
                .iter()
                .filter(|d| d.status != DeploymentStatus::Inactive)
                .collect();
            prop_assert_eq!(primaries.len(), 1);
            prop_assert_eq!(primaries[0].status, DeploymentStatus::Primary);
            prop_assert_eq!(w.live_of(&primaries[0].id) as u32, p.desired_count);
        }
    }

    /// (2) A rollout with unlimited capacity never has more than the upper limit RUNNING or
    /// PENDING, never fewer healthy than the lower limit, and completes.
    #[test]
    fn rollout_keeps_the_limits(
        desired in 1u32..9,
        min in prop::sample::select(vec![0u32, 25, 50, 75, 100]),
        max in prop::sample::select(vec![100u32, 125, 150, 200, 300]),
        n_insts in 1usize..5,
    ) {
        let mut new = deployment("ecs-svc/2", DeploymentStatus::Primary, RolloutState::InProgress);
        new.created_at = T0;
        let svc = service(desired, min, max, vec![
            deployment("ecs-svc/1", DeploymentStatus::Active, RolloutState::Completed),
            new,
        ]);
        let instances: Vec<InstanceState> = (0..n_insts).map(|k| instance(&format!("i{k}"))).collect();
        let tasks = (0..desired)
            .map(|k| running(&format!("old{k:02}"), "ecs-svc/1", &format!("i{}", k as usize % n_insts)))
            .collect();
        let mut w = World::new(svc, tasks, instances);
        let (lower, upper) = deployment_limits(&w);
        let can_progress = lower < desired || upper > desired;
        let mut done = false;
        for _ in 0..30 {
            let p = w.plan();
            w.apply(&p);
            prop_assert!(w.live() as u32 <= upper, "{} live > {}", w.live(), upper);
            prop_assert!(w.healthy() as u32 >= lower, "{} healthy < {}", w.healthy(), lower);
            w.advance();
            if p.steady_state {
                done = true;
                break;
            }
        }
        prop_assert_eq!(done, can_progress);
    }

    /// Stops never take an ACTIVE REPLICA service's healthy tasks below the lower limit (unless they
    /// already were), and starts never take it above the upper one.
    #[test]
    fn one_plan_respects_the_limits(mut w in world()) {
        w.service.scheduling_strategy = SchedulingStrategy::Replica;
        w.service.status = ServiceStatus::Active;
        let (lower, upper) = deployment_limits(&w);
        let healthy_before = w.healthy() as u32;
        let p = w.plan();
        w.apply(&p);
        prop_assert!(w.healthy() as u32 >= lower.min(healthy_before));
        let started: u32 = p.starts.iter().map(|s| s.count).sum();
        prop_assert!(started == 0 || w.live() as u32 <= upper);
    }

    /// (3) The same inputs give the same plan, in whatever order the tasks and instances come.
    #[test]
    fn deterministic(w in world()) {
        let a = w.plan();
        let b = w.plan();
        prop_assert_eq!(&a, &b);
        let mut tasks = w.tasks.clone();
        tasks.reverse();
        let mut instances = w.instances.clone();
        instances.reverse();
        let c = plan(&w.service, &tasks, &instances, w.now);
        prop_assert_eq!(&a, &c);
    }
}
