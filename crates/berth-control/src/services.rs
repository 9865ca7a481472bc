//! Services: CreateService, DescribeServices, ListServices, UpdateService
//! and DeleteService. The records live under `ecs/service/<cluster>/<name>`;
//! every change of what should run (a new task definition, a forced
//! deployment) starts a new PRIMARY deployment, and the service controller
//! converges the tasks toward it. Each such deployment gets its service
//! deployment and service revision records (`service_deployments`) in the
//! same transaction, and every change here brings them up to date.

use std::sync::OnceLock;

use berth_model::arn::Arn;
use berth_model::cluster::Failure;
use berth_model::common::Tag;
use berth_model::service::{
    Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, LoadBalancer, Service,
    ServiceRegistry,
};
use berth_model::{ApiError, ErrorCode};
use rand::Rng as _;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clusters::active;
use crate::paging::{decode_token, page, page_size};
use crate::state::{self, put_op, read_modify_write, Change};
use crate::tags::validate_tags;
use crate::task_definitions::{active_task_definition, load_reference, StoredTaskDefinition};
use crate::tasks::{
    check_launch_type, check_runnable, parse_constraints, parse_strategies, refuse_execute_command,
    refuse_launch_type_with_strategy,
};
use crate::{include_list, keys, missing, required, service_deployments, Cx};

/// A service as stored: the API shape (flattened, so generic readers see
/// `status` and `launchType` at the top) and the cluster's name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredService {
    pub cluster: String,
    #[serde(flatten)]
    pub service: Service,
    /// The service controller's memory between passes.
    #[serde(default)]
    pub controller: crate::service_controller::ControllerState,
}

fn name_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // A literal pattern; see clusters::name_pattern.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| Regex::new(r"^[a-zA-Z0-9_-]{1,255}$").expect("valid regex"))
}

/// The service name of a reference: a name, or a service ARN (long form
/// `service/cluster/name`, or the old `service/name`).
pub(crate) fn service_name(reference: &str) -> String {
    match Arn::parse(reference) {
        Some(arn) => arn
            .resource_parts()
            .1
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        None => reference.to_string(),
    }
}

pub(crate) fn deployment_id() -> String {
    let n: u64 =
        rand::thread_rng().gen_range(1_000_000_000_000_000_000..10_000_000_000_000_000_000);
    format!("ecs-svc/{n}")
}

fn new_deployment(task_definition: &str, desired: i32, launch_type: &str, now: f64) -> Deployment {
    let id = deployment_id();
    Deployment {
        rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
        id: Some(id),
        status: Some("PRIMARY".into()),
        task_definition: Some(task_definition.to_string()),
        desired_count: Some(desired),
        pending_count: Some(0),
        running_count: Some(0),
        failed_tasks: Some(0),
        created_at: Some(now),
        updated_at: Some(now),
        launch_type: Some(launch_type.to_string()),
        rollout_state: Some("IN_PROGRESS".into()),
        ..Deployment::default()
    }
}

fn validate_deployment_configuration(
    config: &DeploymentConfiguration,
    daemon: bool,
) -> Result<(), ApiError> {
    if let Some(min) = config.minimum_healthy_percent {
        if !(0..=100).contains(&min) {
            return Err(ApiError::invalid_parameter(
                "minimumHealthyPercent must be between 0 and 100.",
            ));
        }
    }
    if let Some(max) = config.maximum_percent {
        if daemon && max != 100 {
            return Err(ApiError::invalid_parameter(
                "The maximumPercent of a DAEMON service must be 100.",
            ));
        }
        if !(100..=2000).contains(&max) {
            return Err(ApiError::invalid_parameter(
                "maximumPercent must be between 100 and 2000.",
            ));
        }
    }
    if let Some(bake) = config.bake_time_in_minutes {
        if !(0..=1440).contains(&bake) {
            return Err(ApiError::invalid_parameter(
                "bakeTimeInMinutes must be between 0 and 1440.",
            ));
        }
    }
    if let Some(s) = config.strategy.as_deref() {
        if s != "ROLLING" {
            return Err(ApiError::new(
                ErrorCode::UnsupportedFeatureException,
                format!("The deployment strategy {s} is not supported by this Berth cluster yet."),
            ));
        }
    }
    Ok(())
}

/// ECS's defaults: 100/200 for REPLICA, 0/100 for DAEMON; the circuit
/// breaker off unless asked for.
fn with_defaults(config: Option<DeploymentConfiguration>, daemon: bool) -> DeploymentConfiguration {
    let mut c = config.unwrap_or_default();
    c.maximum_percent
        .get_or_insert(if daemon { 100 } else { 200 });
    c.minimum_healthy_percent
        .get_or_insert(if daemon { 0 } else { 100 });
    c.deployment_circuit_breaker
        .get_or_insert(DeploymentCircuitBreaker {
            enable: false,
            rollback: false,
        });
    c
}

/// Load balancers and registries are stored now and wired later; each
/// must name a container and port of the task definition.
fn validate_targets(
    td: &StoredTaskDefinition,
    load_balancers: &[LoadBalancer],
    registries: &[ServiceRegistry],
) -> Result<(), ApiError> {
    let has_port = |container: &str, port: Option<i32>| {
        td.definition
            .container_definitions
            .iter()
            .flatten()
            .find(|c| c.name.as_deref() == Some(container))
            .map(|c| match port {
                None => true,
                Some(p) => c
                    .port_mappings
                    .iter()
                    .flatten()
                    .any(|m| m.container_port == Some(p)),
            })
    };
    for lb in load_balancers {
        if lb.target_group_arn.is_none() && lb.load_balancer_name.is_none() {
            return Err(ApiError::invalid_parameter(
                "A load balancer needs a targetGroupArn or a loadBalancerName.",
            ));
        }
        let container = lb.container_name.as_deref().unwrap_or("");
        let port = lb.container_port;
        match has_port(container, port) {
            None => {
                return Err(ApiError::invalid_parameter(format!(
                    "The container {container} does not exist in the task definition."
                )))
            }
            Some(false) => {
                return Err(ApiError::invalid_parameter(format!(
                    "The container {container} did not have a container port {} defined.",
                    port.unwrap_or(0)
                )))
            }
            Some(true) => {}
        }
    }
    for r in registries {
        if r.registry_arn.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::invalid_parameter(
                "A service registry needs a registryArn.",
            ));
        }
        if let Some(container) = r.container_name.as_deref() {
            if has_port(container, r.container_port) != Some(true) {
                return Err(ApiError::invalid_parameter(format!(
                    "The container {container} did not have a container port {} defined.",
                    r.container_port.unwrap_or(0)
                )));
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateServiceRequest {
    cluster: Option<String>,
    service_name: Option<String>,
    task_definition: Option<String>,
    load_balancers: Option<Vec<LoadBalancer>>,
    service_registries: Option<Vec<ServiceRegistry>>,
    desired_count: Option<i32>,
    launch_type: Option<String>,
    capacity_provider_strategy: Option<Vec<Value>>,
    platform_version: Option<String>,
    role: Option<String>,
    deployment_configuration: Option<DeploymentConfiguration>,
    placement_constraints: Option<Vec<Value>>,
    placement_strategy: Option<Vec<Value>>,
    network_configuration: Option<Value>,
    health_check_grace_period_seconds: Option<i32>,
    scheduling_strategy: Option<String>,
    deployment_controller: Option<Value>,
    tags: Option<Vec<Tag>>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    propagate_tags: Option<String>,
    enable_execute_command: Option<bool>,
    availability_zone_rebalancing: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct ServiceResponse {
    service: Service,
}

fn check_propagate(p: Option<&str>) -> Result<(), ApiError> {
    match p {
        None | Some("TASK_DEFINITION" | "SERVICE" | "NONE") => Ok(()),
        Some(other) => Err(ApiError::invalid_parameter(format!(
            "Invalid propagateTags: {other}. Valid values are [TASK_DEFINITION, SERVICE, NONE]."
        ))),
    }
}

/// ECS's default quota of tasks per service: the most a service's
/// `desiredCount` may be unless the server is started with another
/// (`--max-tasks-per-service`, as an ECS quota is raised on request).
pub const DEFAULT_MAX_TASKS_PER_SERVICE: u32 = 5000;

/// Checks a requested `desiredCount`: at least 0 and at most the tasks per
/// service quota, so that no request can ask the controller for more tasks
/// than the server is set up to hold.
fn check_desired_count(cx: &Cx<'_>, n: i32) -> Result<(), ApiError> {
    if n < 0 {
        return Err(ApiError::invalid_parameter(
            "desiredCount must be at least 0.",
        ));
    }
    let max = cx.max_tasks_per_service();
    if n.unsigned_abs() > max {
        return Err(ApiError::invalid_parameter(format!(
            "Desired count exceeds limit. desiredCount is {n}; a service can have at most {max} tasks (the tasks per service quota of this Berth server)."
        )));
    }
    Ok(())
}

fn check_grace(g: Option<i32>) -> Result<(), ApiError> {
    match g {
        Some(g) if !(0..=2_147_483_647).contains(&g) => Err(ApiError::invalid_parameter(
            "healthCheckGracePeriodSeconds must be at least 0.",
        )),
        _ => Ok(()),
    }
}

pub(crate) fn create(cx: &Cx<'_>, req: CreateServiceRequest) -> Result<ServiceResponse, ApiError> {
    let name = required(&req.service_name, "serviceName")?.to_string();
    if !name_pattern().is_match(&name) {
        return Err(ApiError::invalid_parameter(
            "Service names can contain up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens.",
        ));
    }
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let scheduling = req
        .scheduling_strategy
        .clone()
        .unwrap_or_else(|| "REPLICA".into());
    let daemon = match scheduling.as_str() {
        "REPLICA" => false,
        "DAEMON" => true,
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid schedulingStrategy: {other}. Valid values are [REPLICA, DAEMON]."
            )))
        }
    };
    check_launch_type(req.launch_type.as_deref())?;
    refuse_launch_type_with_strategy(
        req.launch_type.as_deref(),
        req.capacity_provider_strategy.as_deref(),
    )?;
    let launch_type = req.launch_type.clone().unwrap_or_else(|| "EC2".into());
    if matches!(launch_type.as_str(), "FARGATE" | "MANAGED_INSTANCES") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedFeatureException,
            format!("The launch type {launch_type} is not supported by this Berth cluster yet."),
        ));
    }
    if req.capacity_provider_strategy.is_some() {
        return Err(ApiError::new(
            ErrorCode::UnsupportedFeatureException,
            "Capacity provider strategies are not supported by this Berth cluster yet.",
        ));
    }
    if let Some(controller) = &req.deployment_controller {
        let kind = controller
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ECS");
        if kind != "ECS" {
            return Err(ApiError::new(
                ErrorCode::UnsupportedFeatureException,
                format!(
                    "The deployment controller {kind} is not supported by this Berth cluster yet."
                ),
            ));
        }
    }
    let desired = match (daemon, req.desired_count) {
        (false, None) => {
            return Err(ApiError::invalid_parameter(
                "desiredCount is required for a service with the REPLICA scheduling strategy.",
            ))
        }
        (false, Some(n)) => {
            check_desired_count(cx, n)?;
            n
        }
        (true, _) => 0,
    };
    if daemon
        && req
            .placement_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::invalid_parameter(
            "Placement strategies are not supported with the DAEMON scheduling strategy.",
        ));
    }
    refuse_execute_command(req.enable_execute_command)?;
    let td = active_task_definition(cx, required(&req.task_definition, "taskDefinition")?)?;
    let td_arn = td
        .definition
        .task_definition_arn
        .clone()
        .unwrap_or_default();
    check_runnable(&td.definition, req.network_configuration.is_some())?;
    let strategies = req.placement_strategy.clone().unwrap_or_default();
    let constraints = req.placement_constraints.clone().unwrap_or_default();
    parse_strategies(&strategies)?;
    parse_constraints(&constraints)?;
    let config = req.deployment_configuration.clone();
    if let Some(c) = &config {
        validate_deployment_configuration(c, daemon)?;
    }
    let config = with_defaults(config, daemon);
    let load_balancers = req.load_balancers.clone().unwrap_or_default();
    let registries = req.service_registries.clone().unwrap_or_default();
    validate_targets(&td, &load_balancers, &registries)?;
    check_propagate(req.propagate_tags.as_deref())?;
    check_grace(req.health_check_grace_period_seconds)?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let now = cx.now();
    let scope = cx.scope();
    let service = Service {
        service_arn: Some(scope.service(&cluster, &name)),
        service_name: Some(name.clone()),
        cluster_arn: Some(scope.cluster(&cluster)),
        load_balancers: Some(load_balancers),
        service_registries: Some(registries),
        status: Some("ACTIVE".into()),
        desired_count: Some(desired),
        running_count: Some(0),
        pending_count: Some(0),
        launch_type: Some(launch_type.clone()),
        task_definition: Some(td_arn.clone()),
        deployment_configuration: Some(config),
        deployments: Some(vec![new_deployment(&td_arn, desired, &launch_type, now)]),
        role_arn: req.role.clone(),
        events: Some(Vec::new()),
        created_at: Some(now),
        placement_constraints: Some(constraints),
        placement_strategy: Some(strategies),
        network_configuration: req.network_configuration.clone(),
        health_check_grace_period_seconds: req.health_check_grace_period_seconds,
        scheduling_strategy: Some(scheduling),
        deployment_controller: Some(
            req.deployment_controller
                .clone()
                .unwrap_or_else(|| serde_json::json!({"type": "ECS"})),
        ),
        tags: Some(tags),
        created_by: Some(cx.caller().principal_arn.clone()),
        enable_ecs_managed_tags: Some(req.enable_ecs_managed_tags.unwrap_or(false)),
        propagate_tags: Some(req.propagate_tags.clone().unwrap_or_else(|| "NONE".into())),
        enable_execute_command: Some(req.enable_execute_command.unwrap_or(false)),
        availability_zone_rebalancing: Some(
            req.availability_zone_rebalancing
                .clone()
                .unwrap_or_else(|| "DISABLED".into()),
        ),
        platform_version: req.platform_version.clone(),
        ..Service::default()
    };
    let key = keys::service(&cluster, &name);
    let epoch = keys::cluster_epoch(&cluster);
    let stored = StoredService {
        cluster: cluster.clone(),
        service,
        controller: Default::default(),
    };
    let first_deployment = stored
        .service
        .deployments
        .iter()
        .flatten()
        .find_map(|d| d.id.clone())
        .unwrap_or_default();
    let images = service_deployments::container_images(Some(&td));
    let out = read_modify_write(cx.store(), &key, |cur: Option<StoredService>| {
        if let Some(existing) = cur {
            if existing.service.status.as_deref() != Some("INACTIVE") {
                return Err(ApiError::invalid_parameter(
                    "Creation of service was not idempotent.",
                ));
            }
        }
        let mut ops = vec![put_op(key.clone(), &stored)?, put_op(epoch.clone(), &now)?];
        ops.extend(service_deployments::api_ops(
            cx,
            None,
            &stored,
            Some((&first_deployment, images.clone())),
            now,
        )?);
        Ok(Change::Write(ops, stored.service.clone()))
    })?;
    tracing::info!(cluster = %cluster, service = %name, "service created");
    Ok(ServiceResponse { service: out })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeServicesRequest {
    cluster: Option<String>,
    services: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

#[derive(Serialize)]
pub(crate) struct DescribeServicesResponse {
    services: Vec<Service>,
    failures: Vec<Failure>,
}

pub(crate) fn describe(
    cx: &Cx<'_>,
    req: DescribeServicesRequest,
) -> Result<DescribeServicesResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let include_tags = include_list(req.include, &["TAGS"])?
        .iter()
        .any(|f| f == "TAGS");
    let refs = req.services.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "services must have between 1 and 10 items.",
        ));
    }
    let mut out = DescribeServicesResponse {
        services: Vec::new(),
        failures: Vec::new(),
    };
    for reference in refs {
        let key = keys::service(&cluster, &service_name(&reference));
        match state::get::<StoredService>(cx.store(), &key)? {
            Some(s) => {
                let mut service = s.value.service;
                if !include_tags {
                    service.tags = None;
                }
                out.services.push(service);
            }
            None => out.failures.push(missing(
                cx.scope().service(&cluster, &service_name(&reference)),
            )),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListServicesRequest {
    cluster: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
    resource_management_type: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListServicesResponse {
    service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list(
    cx: &Cx<'_>,
    req: ListServicesRequest,
) -> Result<ListServicesResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    check_launch_type(req.launch_type.as_deref())?;
    if let Some(s) = req.scheduling_strategy.as_deref() {
        if !["REPLICA", "DAEMON"].contains(&s) {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid schedulingStrategy: {s}. Valid values are [REPLICA, DAEMON]."
            )));
        }
    }
    if let Some(r) = req.resource_management_type.as_deref() {
        if r != "CUSTOMER" {
            return Ok(ListServicesResponse {
                service_arns: Vec::new(),
                next_token: None,
            });
        }
    }
    let limit = page_size(req.max_results, 10, 100)?;
    let prefix = keys::services(&cluster);
    let start_after = decode_token(req.next_token.as_deref(), &prefix)?;
    let (service_arns, next_token) = page(cx.store(), &prefix, start_after, limit, |kv| {
        let s: StoredService = state::decode(kv)?;
        let svc = &s.service;
        let keep = svc.status.as_deref() != Some("INACTIVE")
            && req
                .launch_type
                .as_deref()
                .is_none_or(|lt| svc.launch_type.as_deref() == Some(lt))
            && req
                .scheduling_strategy
                .as_deref()
                .is_none_or(|st| svc.scheduling_strategy.as_deref() == Some(st));
        Ok(keep.then(|| svc.service_arn.clone().unwrap_or_default()))
    })?;
    Ok(ListServicesResponse {
        service_arns,
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateServiceRequest {
    cluster: Option<String>,
    service: Option<String>,
    desired_count: Option<i32>,
    task_definition: Option<String>,
    capacity_provider_strategy: Option<Value>,
    deployment_configuration: Option<DeploymentConfiguration>,
    availability_zone_rebalancing: Option<String>,
    network_configuration: Option<Value>,
    placement_constraints: Option<Vec<Value>>,
    placement_strategy: Option<Vec<Value>>,
    platform_version: Option<String>,
    force_new_deployment: Option<bool>,
    health_check_grace_period_seconds: Option<i32>,
    enable_execute_command: Option<bool>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    load_balancers: Option<Vec<LoadBalancer>>,
    propagate_tags: Option<String>,
    service_registries: Option<Vec<ServiceRegistry>>,
}

pub(crate) fn update(cx: &Cx<'_>, req: UpdateServiceRequest) -> Result<ServiceResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let name = service_name(required(&req.service, "service")?);
    let key = keys::service(&cluster, &name);
    if req.capacity_provider_strategy.is_some() {
        return Err(ApiError::new(
            ErrorCode::UnsupportedFeatureException,
            "Capacity provider strategies are not supported by this Berth cluster yet.",
        ));
    }
    if let Some(n) = req.desired_count {
        check_desired_count(cx, n)?;
    }
    refuse_execute_command(req.enable_execute_command)?;
    check_propagate(req.propagate_tags.as_deref())?;
    check_grace(req.health_check_grace_period_seconds)?;
    if let Some(s) = &req.placement_strategy {
        parse_strategies(s)?;
    }
    if let Some(c) = &req.placement_constraints {
        parse_constraints(c)?;
    }
    let new_td = match req.task_definition.as_deref() {
        Some(r) if !r.is_empty() => Some(active_task_definition(cx, r)?),
        _ => None,
    };
    if let Some(td) = &new_td {
        check_runnable(&td.definition, req.network_configuration.is_some())?;
    }
    let now = cx.now();
    let out = read_modify_write(cx.store(), &key, |cur: Option<StoredService>| {
        let mut s = cur.ok_or_else(|| {
            ApiError::new(ErrorCode::ServiceNotFoundException, "Service not found.")
        })?;
        let before = s.clone();
        let svc = &mut s.service;
        if svc.status.as_deref() != Some("ACTIVE") {
            return Err(ApiError::new(
                ErrorCode::ServiceNotActiveException,
                "Service was not ACTIVE.",
            ));
        }
        let daemon = svc.scheduling_strategy.as_deref() == Some("DAEMON");
        if let Some(c) = &req.deployment_configuration {
            validate_deployment_configuration(c, daemon)?;
            let mut merged = svc.deployment_configuration.clone().unwrap_or_default();
            if c.maximum_percent.is_some() {
                merged.maximum_percent = c.maximum_percent;
            }
            if c.minimum_healthy_percent.is_some() {
                merged.minimum_healthy_percent = c.minimum_healthy_percent;
            }
            if c.deployment_circuit_breaker.is_some() {
                merged.deployment_circuit_breaker = c.deployment_circuit_breaker;
            }
            if c.alarms.is_some() {
                merged.alarms = c.alarms.clone();
            }
            if c.bake_time_in_minutes.is_some() {
                merged.bake_time_in_minutes = c.bake_time_in_minutes;
            }
            svc.deployment_configuration = Some(with_defaults(Some(merged), daemon));
        }
        if daemon && req.desired_count.is_some() {
            return Err(ApiError::invalid_parameter(
                "The desiredCount of a DAEMON service cannot be set.",
            ));
        }
        if let Some(n) = req.desired_count {
            svc.desired_count = Some(n);
        }
        let desired = svc.desired_count.unwrap_or(0);
        let td_arn = match &new_td {
            Some(td) => td
                .definition
                .task_definition_arn
                .clone()
                .unwrap_or_default(),
            None => svc.task_definition.clone().unwrap_or_default(),
        };
        if new_td.is_none() && req.network_configuration.is_some() {
            // A networkConfiguration for the task definition the service
            // keeps (a new one was checked above).
            if let Some(td) = load_reference(cx, &td_arn)? {
                check_runnable(&td.definition, true)?;
            }
        }
        if let Some(td) = &new_td {
            validate_targets(
                td,
                req.load_balancers
                    .as_deref()
                    .or(svc.load_balancers.as_deref())
                    .unwrap_or_default(),
                req.service_registries
                    .as_deref()
                    .or(svc.service_registries.as_deref())
                    .unwrap_or_default(),
            )?;
        }
        let redeploy = req.force_new_deployment == Some(true)
            || svc.task_definition.as_deref() != Some(td_arn.as_str());
        let launch_type = svc.launch_type.clone().unwrap_or_else(|| "EC2".into());
        let deployments = svc.deployments.get_or_insert_with(Vec::new);
        let mut started = None;
        if redeploy {
            for d in deployments.iter_mut() {
                if d.status.as_deref() == Some("PRIMARY") {
                    d.status = Some("ACTIVE".into());
                    d.updated_at = Some(now);
                }
            }
            let deployment = new_deployment(&td_arn, desired, &launch_type, now);
            let images = match &new_td {
                Some(td) => service_deployments::container_images(Some(td)),
                None => {
                    service_deployments::container_images(load_reference(cx, &td_arn)?.as_ref())
                }
            };
            started = deployment.id.clone().map(|id| (id, images));
            deployments.insert(0, deployment);
        } else if let Some(primary) = deployments
            .iter_mut()
            .find(|d| d.status.as_deref() == Some("PRIMARY"))
        {
            if primary.desired_count != Some(desired) {
                primary.desired_count = Some(desired);
                primary.updated_at = Some(now);
            }
        }
        svc.task_definition = Some(td_arn);
        if let Some(v) = &req.placement_strategy {
            svc.placement_strategy = Some(v.clone());
        }
        if let Some(v) = &req.placement_constraints {
            svc.placement_constraints = Some(v.clone());
        }
        if let Some(v) = &req.load_balancers {
            svc.load_balancers = Some(v.clone());
        }
        if let Some(v) = &req.service_registries {
            svc.service_registries = Some(v.clone());
        }
        if req.network_configuration.is_some() {
            svc.network_configuration = req.network_configuration.clone();
        }
        if req.health_check_grace_period_seconds.is_some() {
            svc.health_check_grace_period_seconds = req.health_check_grace_period_seconds;
        }
        if let Some(v) = &req.propagate_tags {
            svc.propagate_tags = Some(v.clone());
        }
        if req.enable_execute_command.is_some() {
            svc.enable_execute_command = req.enable_execute_command;
        }
        if req.enable_ecs_managed_tags.is_some() {
            svc.enable_ecs_managed_tags = req.enable_ecs_managed_tags;
        }
        if req.platform_version.is_some() {
            svc.platform_version = req.platform_version.clone();
        }
        if req.availability_zone_rebalancing.is_some() {
            svc.availability_zone_rebalancing = req.availability_zone_rebalancing.clone();
        }
        let mut ops = vec![put_op(key.clone(), &s)?];
        ops.extend(service_deployments::api_ops(
            cx,
            Some(&before),
            &s,
            started
                .as_ref()
                .map(|(id, images)| (id.as_str(), images.clone())),
            now,
        )?);
        let out = s.service.clone();
        Ok(Change::Write(ops, out))
    })?;
    tracing::info!(cluster = %cluster, service = %name, "service updated");
    Ok(ServiceResponse { service: out })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteServiceRequest {
    cluster: Option<String>,
    service: Option<String>,
    force: Option<bool>,
}

pub(crate) fn delete(cx: &Cx<'_>, req: DeleteServiceRequest) -> Result<ServiceResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let name = service_name(required(&req.service, "service")?);
    let key = keys::service(&cluster, &name);
    let now = cx.now();
    let out = read_modify_write(cx.store(), &key, |cur: Option<StoredService>| {
        let mut s = cur.ok_or_else(|| {
            ApiError::new(ErrorCode::ServiceNotFoundException, "Service not found.")
        })?;
        let before = s.clone();
        let svc = &mut s.service;
        match svc.status.as_deref() {
            Some("ACTIVE") => {}
            Some("DRAINING") => return Ok(Change::Keep(s.service)),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::ServiceNotActiveException,
                    "Service was not ACTIVE.",
                ))
            }
        }
        let replica = svc.scheduling_strategy.as_deref() != Some("DAEMON");
        if replica && svc.desired_count.unwrap_or(0) > 0 && req.force != Some(true) {
            return Err(ApiError::invalid_parameter(
                "The service cannot be stopped while it is scaled above 0.",
            ));
        }
        svc.status = Some("DRAINING".into());
        svc.desired_count = Some(0);
        for d in svc.deployments.iter_mut().flatten() {
            d.desired_count = Some(0);
            d.updated_at = Some(now);
        }
        let mut ops = vec![put_op(key.clone(), &s)?];
        ops.extend(service_deployments::api_ops(
            cx,
            Some(&before),
            &s,
            None,
            now,
        )?);
        let out = s.service.clone();
        Ok(Change::Write(ops, out))
    })?;
    tracing::info!(cluster = %cluster, service = %name, "service deleted (draining)");
    Ok(ServiceResponse { service: out })
}
