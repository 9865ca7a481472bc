//! The agent's task reconciler: desired tasks and observed containers in,
//! actions out. Level-driven: it looks at the whole state each time, so a
//! lost event or a restart loses no work, and running it twice on the same
//! state gives the same actions.

use std::collections::{BTreeMap, BTreeSet};

/// How a container waits for another (`dependsOn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Start,
    Complete,
    Success,
    Healthy,
}

impl Condition {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "START" => Self::Start,
            "COMPLETE" => Self::Complete,
            "SUCCESS" => Self::Success,
            "HEALTHY" => Self::Healthy,
            _ => return None,
        })
    }
}

/// One container of a desired task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredContainer {
    pub name: String,
    pub essential: bool,
    pub stop_timeout_secs: u64,
    pub depends_on: Vec<(String, Condition)>,
    /// The container status the control plane has (PENDING, RUNNING, STOPPED).
    pub reported: String,
}

/// A task the control plane has placed on this instance and not yet
/// seen STOPPED.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTask {
    pub arn: String,
    /// desiredStatus is RUNNING (otherwise STOPPED).
    pub run: bool,
    /// lastStatus as the control plane has it.
    pub reported: String,
    pub containers: Vec<DesiredContainer>,
    /// What the control plane has of the task's health checks.
    pub health: ReportedHealth,
}

/// Health as the control plane has it: the task's `healthStatus`, and each
/// container that has a health check with its own `healthStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportedHealth {
    pub task: String,
    /// `(container, healthStatus)` for every container with a health check.
    pub containers: Vec<(String, String)>,
}

/// What the runtime shows of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running {
        healthy: Option<bool>,
    },
    Exited {
        code: Option<i64>,
        finished_millis: Option<i64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub task_arn: String,
    pub container: String,
    pub state: State,
}

/// One step toward the desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create and start the container of the task.
    Launch {
        task: String,
        container: String,
    },
    /// Start a created container.
    Start {
        id: String,
    },
    Stop {
        id: String,
        timeout_secs: u64,
    },
    Remove {
        id: String,
    },
    ReportContainer {
        task: String,
        container: String,
        status: &'static str,
        exit_code: Option<i64>,
        runtime_id: String,
    },
    ReportTask {
        task: String,
        status: &'static str,
        reason: Option<String>,
    },
    /// Tell the control plane the health of the task's checked containers
    /// and of the task.
    ReportHealth {
        task: String,
        containers: Vec<(String, &'static str)>,
        task_health: &'static str,
    },
}

/// Knobs of the reconciler.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long an exited container of a finished task is kept before it
    /// is removed.
    pub cleanup_delay_millis: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cleanup_delay_millis: 3 * 60 * 60 * 1000,
        }
    }
}

fn dependency_met(cond: Condition, dep: Option<&Observed>) -> Option<bool> {
    // Some(true): met; Some(false): can never be met; None: not yet.
    let state = &dep?.state;
    match (cond, state) {
        (Condition::Start, State::Running { .. } | State::Exited { .. }) => Some(true),
        (Condition::Complete, State::Exited { .. }) => Some(true),
        (Condition::Success, State::Exited { code, .. }) => Some(*code == Some(0)),
        (Condition::Healthy, State::Running { healthy: Some(h) }) => h.then_some(true),
        (Condition::Healthy, State::Exited { .. }) => Some(false),
        _ => None,
    }
}

/// The actions that move what runs toward what is wanted.
pub fn reconcile(
    desired: &[DesiredTask],
    observed: &[Observed],
    now_millis: i64,
    options: &Options,
) -> Vec<Action> {
    let mut by_task: BTreeMap<&str, BTreeMap<&str, &Observed>> = BTreeMap::new();
    for o in observed {
        by_task
            .entry(o.task_arn.as_str())
            .or_default()
            .insert(o.container.as_str(), o);
    }
    let mut actions = Vec::new();
    let wanted: BTreeSet<&str> = desired.iter().map(|t| t.arn.as_str()).collect();
    for task in desired {
        let seen = by_task.get(task.arn.as_str()).cloned().unwrap_or_default();
        reconcile_task(task, &seen, &mut actions);
    }
    // Containers of tasks no longer wanted here: stop, then clean up.
    for o in observed {
        if wanted.contains(o.task_arn.as_str()) {
            continue;
        }
        match &o.state {
            State::Running { .. } => actions.push(Action::Stop {
                id: o.id.clone(),
                timeout_secs: 30,
            }),
            State::Created => actions.push(Action::Remove { id: o.id.clone() }),
            State::Exited {
                finished_millis, ..
            } => {
                let finished = finished_millis.unwrap_or(0);
                if now_millis.saturating_sub(finished) >= options.cleanup_delay_millis {
                    actions.push(Action::Remove { id: o.id.clone() });
                }
            }
        }
    }
    actions
}

fn reconcile_task(task: &DesiredTask, seen: &BTreeMap<&str, &Observed>, actions: &mut Vec<Action>) {
    let essential_exited = task.containers.iter().any(|c| {
        c.essential
            && matches!(
                seen.get(c.name.as_str()).map(|o| &o.state),
                Some(State::Exited { .. })
            )
    });
    let mut impossible = None;
    if task.run && !essential_exited {
        for c in &task.containers {
            match seen.get(c.name.as_str()) {
                None => {
                    let mut ready = true;
                    for (dep, cond) in &c.depends_on {
                        match dependency_met(*cond, seen.get(dep.as_str()).copied()) {
                            Some(true) => {}
                            Some(false) => {
                                impossible = Some(format!(
                                    "dependency {dep} of container {} cannot be satisfied",
                                    c.name
                                ));
                                ready = false;
                            }
                            None => ready = false,
                        }
                    }
                    if ready {
                        actions.push(Action::Launch {
                            task: task.arn.clone(),
                            container: c.name.clone(),
                        });
                    }
                }
                Some(o) => match &o.state {
                    State::Created => actions.push(Action::Start { id: o.id.clone() }),
                    State::Running { .. } if c.reported != "RUNNING" => {
                        actions.push(Action::ReportContainer {
                            task: task.arn.clone(),
                            container: c.name.clone(),
                            status: "RUNNING",
                            exit_code: None,
                            runtime_id: o.id.clone(),
                        })
                    }
                    State::Exited { code, .. } if c.reported != "STOPPED" => {
                        actions.push(Action::ReportContainer {
                            task: task.arn.clone(),
                            container: c.name.clone(),
                            status: "STOPPED",
                            exit_code: *code,
                            runtime_id: o.id.clone(),
                        })
                    }
                    _ => {}
                },
            }
        }
        if impossible.is_none() {
            health(task, seen, actions);
            let all_essential_running = task.containers.iter().filter(|c| c.essential).all(|c| {
                matches!(
                    seen.get(c.name.as_str()).map(|o| &o.state),
                    Some(State::Running { .. })
                )
            });
            if all_essential_running && rank(&task.reported) < rank("RUNNING") {
                actions.push(Action::ReportTask {
                    task: task.arn.clone(),
                    status: "RUNNING",
                    reason: None,
                });
            }
            return;
        }
    }
    // The task is to stop: because it was asked to, an essential container
    // exited, or it can never start.
    let reason = if !task.run {
        None
    } else if essential_exited {
        Some("Essential container in task exited".to_string())
    } else {
        impossible
    };
    let mut still_running = false;
    for c in &task.containers {
        if let Some(o) = seen.get(c.name.as_str()) {
            if matches!(o.state, State::Running { .. } | State::Created) {
                still_running = true;
                actions.push(Action::Stop {
                    id: o.id.clone(),
                    timeout_secs: c.stop_timeout_secs,
                });
            }
        }
    }
    if still_running {
        return;
    }
    for c in &task.containers {
        if c.reported == "STOPPED" {
            continue;
        }
        let (code, id) = match seen.get(c.name.as_str()).map(|o| (&o.state, &o.id)) {
            Some((State::Exited { code, .. }, id)) => (*code, id.clone()),
            _ => (None, String::new()),
        };
        actions.push(Action::ReportContainer {
            task: task.arn.clone(),
            container: c.name.clone(),
            status: "STOPPED",
            exit_code: code,
            runtime_id: id,
        });
    }
    actions.push(Action::ReportTask {
        task: task.arn.clone(),
        status: "STOPPED",
        reason,
    });
}

/// Reports health when what the runtime's checks say differs from what the
/// control plane has. A task is UNHEALTHY when an essential container with
/// a check is, HEALTHY when all of them are, else UNKNOWN.
fn health(task: &DesiredTask, seen: &BTreeMap<&str, &Observed>, actions: &mut Vec<Action>) {
    if task.health.containers.is_empty() {
        return;
    }
    let mut containers = Vec::new();
    let mut changed = false;
    let (mut any_unhealthy, mut all_healthy, mut any_essential) = (false, true, false);
    for (name, reported) in &task.health.containers {
        let now: &'static str = match seen.get(name.as_str()).map(|o| &o.state) {
            Some(State::Running {
                healthy: Some(true),
            }) => "HEALTHY",
            Some(State::Running {
                healthy: Some(false),
            }) => "UNHEALTHY",
            _ => "UNKNOWN",
        };
        changed |= now != reported;
        containers.push((name.clone(), now));
        if task
            .containers
            .iter()
            .any(|c| c.name == *name && c.essential)
        {
            any_essential = true;
            any_unhealthy |= now == "UNHEALTHY";
            all_healthy &= now == "HEALTHY";
        }
    }
    let task_health = if any_unhealthy {
        "UNHEALTHY"
    } else if any_essential && all_healthy {
        "HEALTHY"
    } else {
        "UNKNOWN"
    };
    if changed || task_health != task.health.task {
        actions.push(Action::ReportHealth {
            task: task.arn.clone(),
            containers,
            task_health,
        });
    }
}

fn rank(status: &str) -> usize {
    [
        "PROVISIONING",
        "PENDING",
        "ACTIVATING",
        "RUNNING",
        "DEACTIVATING",
        "STOPPING",
        "DEPROVISIONING",
        "STOPPED",
    ]
    .iter()
    .position(|s| *s == status)
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, essential: bool) -> DesiredContainer {
        DesiredContainer {
            name: name.into(),
            essential,
            stop_timeout_secs: 30,
            depends_on: vec![],
            reported: "PENDING".into(),
        }
    }

    #[test]
    fn health_checks_are_reported_when_they_change() {
        let mut t = task(true, vec![container("web", true)]);
        t.reported = "RUNNING".into();
        t.containers[0].reported = "RUNNING".into();
        t.health = ReportedHealth {
            task: "UNKNOWN".into(),
            containers: vec![("web".into(), "UNKNOWN".into())],
        };
        let starting = [seen("web", State::Running { healthy: None })];
        assert!(run(&[t.clone()], &starting).is_empty());
        let sick = [seen(
            "web",
            State::Running {
                healthy: Some(false),
            },
        )];
        assert_eq!(
            run(&[t.clone()], &sick),
            vec![Action::ReportHealth {
                task: t.arn.clone(),
                containers: vec![("web".into(), "UNHEALTHY")],
                task_health: "UNHEALTHY",
            }]
        );
        t.health.containers[0].1 = "UNHEALTHY".into();
        t.health.task = "UNHEALTHY".into();
        assert!(run(&[t], &sick).is_empty(), "reported once, not every pass");
    }

    #[test]
    fn a_non_essential_container_does_not_decide_task_health() {
        let mut t = task(true, vec![container("web", true), container("side", false)]);
        t.reported = "RUNNING".into();
        for c in &mut t.containers {
            c.reported = "RUNNING".into();
        }
        t.health = ReportedHealth {
            task: "UNKNOWN".into(),
            containers: vec![("side".into(), "UNKNOWN".into())],
        };
        let o = [
            seen("web", State::Running { healthy: None }),
            seen(
                "side",
                State::Running {
                    healthy: Some(false),
                },
            ),
        ];
        assert_eq!(
            run(&[t.clone()], &o),
            vec![Action::ReportHealth {
                task: t.arn.clone(),
                containers: vec![("side".into(), "UNHEALTHY")],
                task_health: "UNKNOWN",
            }]
        );
    }

    fn task(run: bool, containers: Vec<DesiredContainer>) -> DesiredTask {
        DesiredTask {
            arn: "t1".into(),
            run,
            reported: "PROVISIONING".into(),
            containers,
            health: ReportedHealth::default(),
        }
    }

    fn seen(container: &str, state: State) -> Observed {
        Observed {
            id: format!("id-{container}"),
            task_arn: "t1".into(),
            container: container.into(),
            state,
        }
    }

    fn run(d: &[DesiredTask], o: &[Observed]) -> Vec<Action> {
        reconcile(d, o, 1_000, &Options::default())
    }

    #[test]
    fn launches_what_is_missing_then_reports_running() {
        let t = task(true, vec![container("a", true), container("b", false)]);
        let a = run(std::slice::from_ref(&t), &[]);
        assert_eq!(
            a,
            vec![
                Action::Launch {
                    task: "t1".into(),
                    container: "a".into()
                },
                Action::Launch {
                    task: "t1".into(),
                    container: "b".into()
                },
            ]
        );
        let a = run(
            &[t],
            &[
                seen("a", State::Running { healthy: None }),
                seen("b", State::Running { healthy: None }),
            ],
        );
        assert!(a.contains(&Action::ReportTask {
            task: "t1".into(),
            status: "RUNNING",
            reason: None
        }));
        assert_eq!(
            a.iter()
                .filter(|x| matches!(
                    x,
                    Action::ReportContainer {
                        status: "RUNNING",
                        ..
                    }
                ))
                .count(),
            2
        );
    }

    #[test]
    fn depends_on_orders_starts() {
        let mut app = container("app", true);
        app.depends_on = vec![("init".into(), Condition::Success)];
        let t = task(true, vec![container("init", false), app]);
        assert_eq!(
            run(std::slice::from_ref(&t), &[]),
            vec![Action::Launch {
                task: "t1".into(),
                container: "init".into()
            }]
        );
        let running = [seen("init", State::Running { healthy: None })];
        assert!(!run(std::slice::from_ref(&t), &running)
            .iter()
            .any(|x| matches!(x, Action::Launch { .. })));
        let ok = [seen(
            "init",
            State::Exited {
                code: Some(0),
                finished_millis: Some(0),
            },
        )];
        assert!(
            run(std::slice::from_ref(&t), &ok).contains(&Action::Launch {
                task: "t1".into(),
                container: "app".into()
            })
        );
        let failed = [seen(
            "init",
            State::Exited {
                code: Some(3),
                finished_millis: Some(0),
            },
        )];
        let a = run(&[t], &failed);
        assert!(
            matches!(a.last(), Some(Action::ReportTask { status: "STOPPED", reason: Some(r), .. }) if r.contains("init"))
        );
    }

    #[test]
    fn healthy_dependency_waits_for_health() {
        let mut app = container("app", true);
        app.depends_on = vec![("db".into(), Condition::Healthy)];
        let t = task(true, vec![container("db", true), app]);
        let starting = [seen("db", State::Running { healthy: None })];
        assert!(!run(std::slice::from_ref(&t), &starting)
            .iter()
            .any(|x| matches!(x, Action::Launch { .. })));
        let healthy = [seen(
            "db",
            State::Running {
                healthy: Some(true),
            },
        )];
        assert!(run(&[t], &healthy).contains(&Action::Launch {
            task: "t1".into(),
            container: "app".into()
        }));
    }

    #[test]
    fn essential_exit_stops_the_task_with_its_exit_code() {
        let t = task(true, vec![container("a", true), container("b", false)]);
        let o = [
            seen(
                "a",
                State::Exited {
                    code: Some(7),
                    finished_millis: Some(0),
                },
            ),
            seen("b", State::Running { healthy: None }),
        ];
        assert_eq!(
            run(std::slice::from_ref(&t), &o),
            vec![Action::Stop {
                id: "id-b".into(),
                timeout_secs: 30
            }]
        );
        let o = [
            seen(
                "a",
                State::Exited {
                    code: Some(7),
                    finished_millis: Some(0),
                },
            ),
            seen(
                "b",
                State::Exited {
                    code: Some(143),
                    finished_millis: Some(0),
                },
            ),
        ];
        let a = run(&[t], &o);
        assert!(a.contains(&Action::ReportContainer {
            task: "t1".into(),
            container: "a".into(),
            status: "STOPPED",
            exit_code: Some(7),
            runtime_id: "id-a".into()
        }));
        assert_eq!(
            a.last(),
            Some(&Action::ReportTask {
                task: "t1".into(),
                status: "STOPPED",
                reason: Some("Essential container in task exited".into())
            })
        );
    }

    #[test]
    fn stop_request_uses_stop_timeout() {
        let mut c = container("a", true);
        c.stop_timeout_secs = 5;
        let t = task(false, vec![c]);
        assert_eq!(
            run(
                std::slice::from_ref(&t),
                &[seen("a", State::Running { healthy: None })]
            ),
            vec![Action::Stop {
                id: "id-a".into(),
                timeout_secs: 5
            }]
        );
        let a = run(
            &[t],
            &[seen(
                "a",
                State::Exited {
                    code: Some(0),
                    finished_millis: Some(0),
                },
            )],
        );
        assert_eq!(
            a.last(),
            Some(&Action::ReportTask {
                task: "t1".into(),
                status: "STOPPED",
                reason: None
            })
        );
    }

    #[test]
    fn orphans_are_stopped_then_cleaned_up_after_the_delay() {
        let o = [Observed {
            id: "x".into(),
            task_arn: "gone".into(),
            container: "a".into(),
            state: State::Running { healthy: None },
        }];
        assert_eq!(
            run(&[], &o),
            vec![Action::Stop {
                id: "x".into(),
                timeout_secs: 30
            }]
        );
        let exited = [Observed {
            id: "x".into(),
            task_arn: "gone".into(),
            container: "a".into(),
            state: State::Exited {
                code: Some(0),
                finished_millis: Some(900),
            },
        }];
        let opts = Options {
            cleanup_delay_millis: 500,
        };
        assert_eq!(reconcile(&[], &exited, 1_000, &opts), vec![]);
        assert_eq!(
            reconcile(&[], &exited, 1_400, &opts),
            vec![Action::Remove { id: "x".into() }]
        );
    }

    #[test]
    fn steady_state_needs_nothing() {
        let mut c = container("a", true);
        c.reported = "RUNNING".into();
        let mut t = task(true, vec![c]);
        t.reported = "RUNNING".into();
        assert_eq!(
            run(&[t], &[seen("a", State::Running { healthy: None })]),
            vec![]
        );
    }
}
