//! A small simulator of the world around the controller: it applies a plan the way the executor and
//! the agents would (stops take effect at once, starts appear PENDING and are RUNNING and HEALTHY on the
//! next step), and builders for the inputs.

#![allow(dead_code)]

use berth_services::*;

pub const T0: f64 = 1_700_000_000.0;
pub const STEP_SECS: f64 = 15.0;

pub fn instance(id: &str) -> InstanceState {
    InstanceState {
        id: id.to_owned(),
        status: InstanceStatus::Active,
        agent_connected: true,
        satisfies_constraints: true,
        has_other_tasks: false,
    }
}

pub fn deployment(id: &str, status: DeploymentStatus, rollout: RolloutState) -> Deployment {
    Deployment {
        id: id.to_owned(),
        task_definition: format!("arn:aws:ecs:us-east-1:000000000000:task-definition/web:{id}"),
        status,
        rollout_state: rollout,
        rollout_state_reason: None,
        created_at: T0 - 1000.0,
        desired_count: 0,
        failed_tasks: 0,
        consecutive_failures: 0,
        last_failure_at: None,
    }
}

pub fn service(desired: u32, min: u32, max: u32, deployments: Vec<Deployment>) -> ServiceState {
    ServiceState {
        name: "web".to_owned(),
        status: ServiceStatus::Active,
        desired_count: desired,
        scheduling_strategy: SchedulingStrategy::Replica,
        deployment_configuration: DeploymentConfiguration {
            minimum_healthy_percent: min,
            maximum_percent: max,
            deployment_circuit_breaker: DeploymentCircuitBreaker::default(),
        },
        health_check_grace_period_seconds: 0,
        deployments,
        steady_state: false,
        scale_in_order: Vec::new(),
    }
}

/// A RUNNING, healthy task (no health check).
pub fn running(id: &str, dep: &str, inst: &str) -> ServiceTask {
    ServiceTask {
        id: id.to_owned(),
        deployment_id: dep.to_owned(),
        instance_id: inst.to_owned(),
        last_status: TaskStatus::Running,
        desired_status: DesiredStatus::Running,
        health_status: HealthStatus::Unknown,
        has_health_check: false,
        created_at: T0 - 500.0,
        started_at: Some(T0 - 490.0),
        stopped_at: None,
        stopped_reason: None,
        stop_code: None,
        failed_to_start: false,
        failure_counted: false,
    }
}

pub fn pending(id: &str, dep: &str, inst: &str) -> ServiceTask {
    ServiceTask {
        last_status: TaskStatus::Pending,
        started_at: None,
        ..running(id, dep, inst)
    }
}

/// A task that stopped before reaching RUNNING.
pub fn failed(id: &str, dep: &str, inst: &str, at: f64) -> ServiceTask {
    ServiceTask {
        last_status: TaskStatus::Stopped,
        desired_status: DesiredStatus::Stopped,
        started_at: None,
        stopped_at: Some(at),
        stopped_reason: Some("CannotPullContainerError".to_owned()),
        stop_code: Some(TaskStopCode::TaskFailedToStart),
        failed_to_start: true,
        ..running(id, dep, inst)
    }
}

pub fn healthy(t: &ServiceTask) -> bool {
    t.desired_status == DesiredStatus::Running
        && t.last_status == TaskStatus::Running
        && (!t.has_health_check || t.health_status == HealthStatus::Healthy)
}

#[derive(Debug, Clone)]
pub struct World {
    pub service: ServiceState,
    pub tasks: Vec<ServiceTask>,
    pub instances: Vec<InstanceState>,
    pub now: f64,
    pub inactive: bool,
    serial: u32,
}

impl World {
    pub fn new(
        service: ServiceState,
        tasks: Vec<ServiceTask>,
        instances: Vec<InstanceState>,
    ) -> Self {
        Self {
            service,
            tasks,
            instances,
            now: T0,
            inactive: false,
            serial: 0,
        }
    }

    pub fn plan(&self) -> Plan {
        plan(&self.service, &self.tasks, &self.instances, self.now)
    }

    fn connected(&self, inst: &str) -> bool {
        self.instances
            .iter()
            .any(|i| i.id == inst && i.agent_connected)
    }

    /// Live tasks the way the limits count them: desired RUNNING, not STOPPED, on a connected instance.
    pub fn live(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| {
                t.desired_status == DesiredStatus::Running
                    && t.last_status != TaskStatus::Stopped
                    && self.connected(&t.instance_id)
            })
            .count()
    }

    pub fn healthy(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| healthy(t) && self.connected(&t.instance_id))
            .count()
    }

    pub fn live_of(&self, dep: &str) -> usize {
        self.tasks
            .iter()
            .filter(|t| {
                t.deployment_id == dep
                    && t.desired_status == DesiredStatus::Running
                    && t.last_status != TaskStatus::Stopped
                    && self.connected(&t.instance_id)
            })
            .count()
    }

    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.service.deployments.iter().find(|d| d.id == id)
    }

    /// Applies the plan's effects (stops, starts as PENDING, deployments, rollback, counters).
    pub fn apply(&mut self, plan: &Plan) {
        let now = self.now;
        for stop in &plan.stops {
            if let Some(t) = self.tasks.iter_mut().find(|t| t.id == stop.task_id) {
                t.desired_status = DesiredStatus::Stopped;
                t.last_status = TaskStatus::Stopped;
                t.stopped_at = Some(now);
                t.stopped_reason = Some(stop.reason.clone());
                t.stop_code = Some(TaskStopCode::ServiceSchedulerInitiated);
            }
        }
        for id in &plan.failures_counted {
            if let Some(t) = self.tasks.iter_mut().find(|t| &t.id == id) {
                t.failure_counted = true;
            }
        }
        for d in &plan.updated_deployments {
            if let Some(old) = self.service.deployments.iter_mut().find(|o| o.id == d.id) {
                *old = d.clone();
            }
        }
        self.service.steady_state = plan.steady_state;
        if self.service.scheduling_strategy == SchedulingStrategy::Daemon {
            self.service.desired_count = plan.desired_count;
        }
        let targets: Vec<String> = self
            .instances
            .iter()
            .filter(|i| i.status == InstanceStatus::Active && i.agent_connected)
            .map(|i| i.id.clone())
            .collect();
        for start in &plan.starts {
            let places: Vec<String> = if start.instance_ids.is_empty() {
                (0..start.count as usize)
                    .filter_map(|k| {
                        targets
                            .get((self.serial as usize + k) % targets.len().max(1))
                            .cloned()
                    })
                    .collect()
            } else {
                start.instance_ids.clone()
            };
            for inst in places {
                self.serial += 1;
                let mut t = pending(
                    &format!("task/{:05}", self.serial),
                    &start.deployment_id,
                    &inst,
                );
                t.created_at = now;
                self.tasks.push(t);
            }
        }
        if let Some(rb) = &plan.rollback {
            self.serial += 1;
            self.service.deployments.push(Deployment {
                id: format!("ecs-svc/rb{:05}", self.serial),
                task_definition: rb.task_definition.clone(),
                status: DeploymentStatus::Primary,
                rollout_state: RolloutState::InProgress,
                rollout_state_reason: Some(rb.rollout_state_reason.clone()),
                created_at: now,
                desired_count: self.service.desired_count,
                failed_tasks: 0,
                consecutive_failures: 0,
                last_failure_at: None,
            });
        }
        if plan.can_become_inactive {
            self.inactive = true;
        }
    }

    /// Time passes: agents stop what should stop, PENDING tasks are RUNNING and HEALTHY, drained
    /// instances lose their other tasks.
    pub fn advance(&mut self) {
        self.now += STEP_SECS;
        let now = self.now;
        let connected: Vec<String> = self
            .instances
            .iter()
            .filter(|i| i.agent_connected)
            .map(|i| i.id.clone())
            .collect();
        for t in &mut self.tasks {
            if t.desired_status == DesiredStatus::Stopped
                && t.last_status != TaskStatus::Stopped
                && connected.contains(&t.instance_id)
            {
                t.last_status = TaskStatus::Stopped;
                t.stopped_at = Some(now);
            } else if t.desired_status == DesiredStatus::Running && t.last_status.is_pending() {
                t.last_status = TaskStatus::Running;
                t.started_at = Some(now);
                t.health_status = HealthStatus::Healthy;
            } else if t.last_status == TaskStatus::Running
                && t.health_status == HealthStatus::Unknown
            {
                t.health_status = HealthStatus::Healthy;
            }
        }
        for i in &mut self.instances {
            if i.status == InstanceStatus::Draining {
                i.has_other_tasks = false;
            }
        }
    }

    /// Plan, apply, let time pass.
    pub fn step(&mut self) -> Plan {
        let p = self.plan();
        self.apply(&p);
        self.advance();
        p
    }
}
