//! CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
//! UpdateClusterSettings, DeleteCluster.
//!
//! A cluster record keeps its configuration; its counts are computed from
//! the instances, tasks and services stored under it when it is described.
//! A deleted cluster stays visible as INACTIVE, as in ECS, and CreateCluster
//! with its name starts it afresh.

use std::sync::OnceLock;

use berth_model::arn::{cluster_name, Arn};
use berth_model::cluster::{
    CapacityProviderStrategyItem, Cluster, ClusterConfiguration, ClusterServiceConnectDefaults,
    ClusterSetting, Failure,
};
use berth_model::common::{KeyValuePair, Tag};
use berth_model::{ApiError, ErrorCode};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::container_instances::StoredInstance;
use crate::paging::{decode_token, page, page_size};
use crate::state::{self, put_op, read_modify_write, scan, Change};
use crate::tags::validate_tags;
use crate::tasks::StoredTask;
use crate::{include_list, keys, missing, required, Cx};

pub(crate) const ACTIVE: &str = "ACTIVE";
const INACTIVE: &str = "INACTIVE";

fn name_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The pattern is a literal that compiles; a failure would be a bug
    // caught by every test that creates a cluster.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| Regex::new("^[a-zA-Z0-9_-]{1,255}$").expect("valid regex"))
}

/// Resolves a `cluster` member (name or ARN, default `default`) to a name,
/// refusing ARNs of another account or region.
pub(crate) fn resolve_name(cx: &Cx<'_>, reference: Option<&str>) -> Result<String, ApiError> {
    let reference = reference.filter(|r| !r.is_empty()).unwrap_or("default");
    if let Some(arn) = Arn::parse(reference) {
        let (kind, name) = arn.resource_parts();
        if arn.service != "ecs" || kind != "cluster" || name.is_empty() {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid cluster ARN: {reference}"
            )));
        }
        if arn.region != cx.scope().region || arn.account_id != cx.scope().account_id {
            return Err(ApiError::cluster_not_found());
        }
    }
    Ok(cluster_name(reference).to_string())
}

/// The ACTIVE cluster a request names, or ClusterNotFoundException.
pub(crate) fn active(cx: &Cx<'_>, reference: Option<&str>) -> Result<(String, Cluster), ApiError> {
    let name = resolve_name(cx, reference)?;
    match state::get::<Cluster>(cx.store(), &keys::cluster(&name))? {
        Some(c) if c.value.status.as_deref() == Some(ACTIVE) => Ok((name, c.value)),
        _ => Err(ApiError::cluster_not_found()),
    }
}

fn validate_settings(settings: &[ClusterSetting]) -> Result<(), ApiError> {
    for s in settings {
        match s.name.as_deref() {
            Some("containerInsights") => {}
            other => {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid cluster setting name: {}. Valid names are [containerInsights].",
                    other.unwrap_or("")
                )))
            }
        }
        match s.value.as_deref() {
            Some("enabled" | "disabled" | "enhanced") => {}
            other => {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid value for containerInsights: {}. Valid values are [enabled, disabled, enhanced].",
                    other.unwrap_or("")
                )))
            }
        }
    }
    Ok(())
}

fn validate_configuration(configuration: &ClusterConfiguration) -> Result<(), ApiError> {
    if let Some(logging) = configuration
        .execute_command_configuration
        .as_ref()
        .and_then(|e| e.logging.as_deref())
    {
        if !matches!(logging, "NONE" | "DEFAULT" | "OVERRIDE") {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid executeCommandConfiguration logging value: {logging}."
            )));
        }
    }
    Ok(())
}

fn validate_strategy(items: &[CapacityProviderStrategyItem]) -> Result<(), ApiError> {
    for item in items {
        if item.weight.is_some_and(|w| !(0..=1000).contains(&w)) {
            return Err(ApiError::invalid_parameter(
                "Capacity provider strategy weight must be between 0 and 1000.",
            ));
        }
        if item.base.is_some_and(|b| !(0..=100000).contains(&b)) {
            return Err(ApiError::invalid_parameter(
                "Capacity provider strategy base must be between 0 and 100000.",
            ));
        }
    }
    Ok(())
}

/// Merges settings by name, later ones winning.
fn merge_settings(existing: &[ClusterSetting], new: &[ClusterSetting]) -> Vec<ClusterSetting> {
    let mut out: Vec<ClusterSetting> = existing
        .iter()
        .filter(|s| !new.iter().any(|n| n.name == s.name))
        .cloned()
        .collect();
    out.extend(new.iter().cloned());
    out
}

/// Counts of what a cluster holds, computed from the store.
#[derive(Default)]
struct Counts {
    instances: i32,
    running: i32,
    pending: i32,
    services_active: i32,
    services_draining: i32,
    running_by_launch: [i32; 3],
    pending_by_launch: [i32; 3],
    active_services_by_launch: [i32; 3],
    draining_services_by_launch: [i32; 3],
}

fn launch_index(value: &Value) -> usize {
    match value.get("launchType").and_then(Value::as_str) {
        Some("FARGATE") => 1,
        Some("EXTERNAL") => 2,
        _ => 0,
    }
}

fn counts(cx: &Cx<'_>, name: &str) -> Result<Counts, ApiError> {
    let store = cx.store();
    let mut c = Counts::default();
    for kv in scan(store, &keys::instances(name))? {
        let ci: StoredInstance = state::decode(&kv)?;
        if matches!(ci.instance.status.as_deref(), Some("ACTIVE" | "DRAINING")) {
            c.instances += 1;
        }
    }
    for kv in scan(store, &keys::tasks(name))? {
        let task: StoredTask = state::decode(&kv)?;
        let i = match task.task.launch_type.as_deref() {
            Some("FARGATE") => 1,
            Some("EXTERNAL") => 2,
            _ => 0,
        };
        match task.task.last_status.as_deref() {
            Some("RUNNING") => {
                c.running += 1;
                c.running_by_launch[i] += 1;
            }
            Some("STOPPED") => {}
            _ => {
                c.pending += 1;
                c.pending_by_launch[i] += 1;
            }
        }
    }
    // Services are read generically by their status member until the
    // service scheduler defines their record.
    for kv in scan(store, &keys::services(name))? {
        let service: Value = state::decode(&kv)?;
        let i = launch_index(&service);
        match service.get("status").and_then(Value::as_str) {
            Some("ACTIVE") => {
                c.services_active += 1;
                c.active_services_by_launch[i] += 1;
            }
            Some("DRAINING") => {
                c.services_draining += 1;
                c.draining_services_by_launch[i] += 1;
            }
            _ => {}
        }
    }
    Ok(c)
}

fn statistics(c: &Counts) -> Vec<KeyValuePair> {
    let kv = |name: &str, value: i32| KeyValuePair {
        name: Some(name.to_string()),
        value: Some(value.to_string()),
    };
    vec![
        kv("runningEC2TasksCount", c.running_by_launch[0]),
        kv("runningFargateTasksCount", c.running_by_launch[1]),
        kv("runningExternalTasksCount", c.running_by_launch[2]),
        kv("pendingEC2TasksCount", c.pending_by_launch[0]),
        kv("pendingFargateTasksCount", c.pending_by_launch[1]),
        kv("pendingExternalTasksCount", c.pending_by_launch[2]),
        kv("activeEC2ServiceCount", c.active_services_by_launch[0]),
        kv("activeFargateServiceCount", c.active_services_by_launch[1]),
        kv("activeExternalServiceCount", c.active_services_by_launch[2]),
        kv("drainingEC2ServiceCount", c.draining_services_by_launch[0]),
        kv(
            "drainingFargateServiceCount",
            c.draining_services_by_launch[1],
        ),
        kv(
            "drainingExternalServiceCount",
            c.draining_services_by_launch[2],
        ),
    ]
}

/// Which optional parts of a cluster a response carries.
#[derive(Clone, Copy, Default)]
struct Include {
    attachments: bool,
    configurations: bool,
    settings: bool,
    statistics: bool,
    tags: bool,
}

impl Include {
    fn all() -> Self {
        Self {
            attachments: true,
            configurations: true,
            settings: true,
            statistics: false,
            tags: true,
        }
    }
}

/// The cluster as a response shows it: stored record, live counts, and the
/// optional parts asked for.
fn render(cx: &Cx<'_>, stored: &Cluster, include: Include) -> Result<Cluster, ApiError> {
    let mut out = stored.clone();
    let name = stored.cluster_name.clone().unwrap_or_default();
    let c = if stored.status.as_deref() == Some(ACTIVE) {
        counts(cx, &name)?
    } else {
        Counts::default()
    };
    out.registered_container_instances_count = Some(c.instances);
    out.running_tasks_count = Some(c.running);
    out.pending_tasks_count = Some(c.pending);
    out.active_services_count = Some(c.services_active);
    out.statistics = Some(if include.statistics {
        statistics(&c)
    } else {
        Vec::new()
    });
    if !include.tags {
        out.tags = None;
    }
    if !include.settings {
        out.settings = None;
    }
    if !include.configurations {
        out.configuration = None;
    }
    if !include.attachments {
        out.attachments = None;
        out.attachments_status = None;
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateClusterRequest {
    cluster_name: Option<String>,
    tags: Option<Vec<Tag>>,
    settings: Option<Vec<ClusterSetting>>,
    configuration: Option<ClusterConfiguration>,
    capacity_providers: Option<Vec<String>>,
    default_capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    service_connect_defaults: Option<ClusterServiceConnectDefaults>,
}

#[derive(Serialize)]
pub(crate) struct ClusterResponse {
    cluster: Cluster,
}

pub(crate) fn create(cx: &Cx<'_>, req: CreateClusterRequest) -> Result<ClusterResponse, ApiError> {
    let name = req
        .cluster_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    if !name_pattern().is_match(&name) {
        return Err(ApiError::invalid_parameter(
            "Cluster name must be between 1 and 255 characters and may contain only letters (uppercase and lowercase), numbers, underscores, and hyphens.",
        ));
    }
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let settings = req.settings.clone().unwrap_or_default();
    validate_settings(&settings)?;
    if let Some(conf) = &req.configuration {
        validate_configuration(conf)?;
    }
    validate_strategy(
        req.default_capacity_provider_strategy
            .as_deref()
            .unwrap_or_default(),
    )?;
    if req
        .service_connect_defaults
        .as_ref()
        .is_some_and(|d| d.namespace.as_deref().unwrap_or("").is_empty())
    {
        return Err(ApiError::invalid_parameter(
            "serviceConnectDefaults.namespace can not be blank.",
        ));
    }
    let key = keys::cluster(&name);
    let arn = cx.scope().cluster(&name);
    let stored = read_modify_write(cx.store(), &key, |current: Option<Cluster>| {
        if let Some(existing) = current.filter(|c| c.status.as_deref() == Some(ACTIVE)) {
            // CreateCluster is idempotent: an ACTIVE cluster of that name is
            // returned as it is.
            return Ok(Change::Keep(existing));
        }
        let mut merged_settings = vec![ClusterSetting {
            name: Some("containerInsights".into()),
            value: Some("disabled".into()),
        }];
        merged_settings = merge_settings(&merged_settings, &settings);
        let cluster = Cluster {
            cluster_arn: Some(arn.clone()),
            cluster_name: Some(name.clone()),
            configuration: req.configuration.clone(),
            status: Some(ACTIVE.into()),
            tags: Some(tags.clone()),
            settings: Some(merged_settings),
            capacity_providers: Some(req.capacity_providers.clone().unwrap_or_default()),
            default_capacity_provider_strategy: Some(
                req.default_capacity_provider_strategy
                    .clone()
                    .unwrap_or_default(),
            ),
            attachments: Some(Vec::new()),
            attachments_status: None,
            service_connect_defaults: req.service_connect_defaults.clone(),
            ..Cluster::default()
        };
        Ok(Change::Write(vec![put_op(key.clone(), &cluster)?], cluster))
    })?;
    tracing::info!(cluster = %name, "cluster created");
    Ok(ClusterResponse {
        cluster: render(cx, &stored, Include::all())?,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeClustersRequest {
    clusters: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

#[derive(Serialize)]
pub(crate) struct DescribeClustersResponse {
    clusters: Vec<Cluster>,
    failures: Vec<Failure>,
}

pub(crate) fn describe(
    cx: &Cx<'_>,
    req: DescribeClustersRequest,
) -> Result<DescribeClustersResponse, ApiError> {
    let mut include = Include::default();
    let allowed = [
        "ATTACHMENTS",
        "CONFIGURATIONS",
        "SETTINGS",
        "STATISTICS",
        "TAGS",
    ];
    for field in include_list(req.include, &allowed)? {
        match field.as_str() {
            "ATTACHMENTS" => include.attachments = true,
            "CONFIGURATIONS" => include.configurations = true,
            "SETTINGS" => include.settings = true,
            "STATISTICS" => include.statistics = true,
            _ => include.tags = true,
        }
    }
    let names = req
        .clusters
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["default".into()]);
    if names.len() > 100 {
        return Err(ApiError::invalid_parameter(
            "clusters can have at most 100 items.",
        ));
    }
    let mut out = DescribeClustersResponse {
        clusters: Vec::new(),
        failures: Vec::new(),
    };
    for reference in names {
        let found = match resolve_name(cx, Some(&reference)) {
            Ok(name) => state::get::<Cluster>(cx.store(), &keys::cluster(&name))?,
            Err(err) if err.code == ErrorCode::ClusterNotFoundException => None,
            Err(err) => return Err(err),
        };
        match found {
            Some(c) => out.clusters.push(render(cx, &c.value, include)?),
            None => out.failures.push(missing(if reference.starts_with("arn:") {
                reference.clone()
            } else {
                cx.scope().cluster(&reference)
            })),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListClustersRequest {
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListClustersResponse {
    cluster_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list(
    cx: &Cx<'_>,
    req: ListClustersRequest,
) -> Result<ListClustersResponse, ApiError> {
    let limit = page_size(req.max_results, 100, 100)?;
    let start_after = decode_token(req.next_token.as_deref(), keys::CLUSTERS)?;
    let (cluster_arns, next_token) = page(cx.store(), keys::CLUSTERS, start_after, limit, |kv| {
        let c: Cluster = state::decode(kv)?;
        Ok((c.status.as_deref() == Some(ACTIVE)).then(|| c.cluster_arn.unwrap_or_default()))
    })?;
    Ok(ListClustersResponse {
        cluster_arns,
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateClusterRequest {
    cluster: Option<String>,
    settings: Option<Vec<ClusterSetting>>,
    configuration: Option<ClusterConfiguration>,
    service_connect_defaults: Option<ClusterServiceConnectDefaults>,
}

fn update_active<F>(cx: &Cx<'_>, reference: &str, edit: F) -> Result<ClusterResponse, ApiError>
where
    F: Fn(&mut Cluster),
{
    let name = resolve_name(cx, Some(reference))?;
    let key = keys::cluster(&name);
    let stored = read_modify_write(cx.store(), &key, |current: Option<Cluster>| match current {
        Some(mut c) if c.status.as_deref() == Some(ACTIVE) => {
            edit(&mut c);
            Ok(Change::Write(vec![put_op(key.clone(), &c)?], c))
        }
        _ => Err(ApiError::cluster_not_found()),
    })?;
    Ok(ClusterResponse {
        cluster: render(cx, &stored, Include::all())?,
    })
}

pub(crate) fn update(cx: &Cx<'_>, req: UpdateClusterRequest) -> Result<ClusterResponse, ApiError> {
    let reference = required(&req.cluster, "cluster")?;
    let settings = req.settings.unwrap_or_default();
    validate_settings(&settings)?;
    if let Some(conf) = &req.configuration {
        validate_configuration(conf)?;
    }
    update_active(cx, reference, |c| {
        if !settings.is_empty() {
            c.settings = Some(merge_settings(
                c.settings.as_deref().unwrap_or_default(),
                &settings,
            ));
        }
        if let Some(conf) = &req.configuration {
            c.configuration = Some(conf.clone());
        }
        if let Some(defaults) = &req.service_connect_defaults {
            c.service_connect_defaults = Some(defaults.clone());
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateClusterSettingsRequest {
    cluster: Option<String>,
    settings: Option<Vec<ClusterSetting>>,
}

pub(crate) fn update_settings(
    cx: &Cx<'_>,
    req: UpdateClusterSettingsRequest,
) -> Result<ClusterResponse, ApiError> {
    let reference = required(&req.cluster, "cluster")?;
    let settings = req
        .settings
        .ok_or_else(|| ApiError::invalid_parameter("settings can not be null."))?;
    validate_settings(&settings)?;
    update_active(cx, reference, |c| {
        c.settings = Some(merge_settings(
            c.settings.as_deref().unwrap_or_default(),
            &settings,
        ));
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteClusterRequest {
    cluster: Option<String>,
}

pub(crate) fn delete(cx: &Cx<'_>, req: DeleteClusterRequest) -> Result<ClusterResponse, ApiError> {
    let reference = required(&req.cluster, "cluster")?;
    let name = resolve_name(cx, Some(reference))?;
    let key = keys::cluster(&name);
    let epoch_key = keys::cluster_epoch(&name);
    let stored = read_modify_write(cx.store(), &key, |current: Option<Cluster>| {
        let mut c = match current {
            Some(c) if c.status.as_deref() == Some(ACTIVE) => c,
            _ => return Err(ApiError::cluster_not_found()),
        };
        // Read the epoch before counting: if anything joins after this
        // read, the guarded commit below fails and the check runs again.
        let epoch = cx.store().get(&epoch_key).map_err(state::store_error)?;
        let epoch_revision = epoch.map(|kv| kv.mod_revision).unwrap_or(0);
        let n = counts(cx, &name)?;
        if n.services_active + n.services_draining > 0 {
            return Err(ApiError::new(
                ErrorCode::ClusterContainsServicesException,
                "The Cluster cannot be deleted while Services are active.",
            ));
        }
        if n.instances > 0 {
            return Err(ApiError::new(
                ErrorCode::ClusterContainsContainerInstancesException,
                "The Cluster cannot be deleted while Container Instances are active or draining.",
            ));
        }
        if n.running + n.pending > 0 {
            return Err(ApiError::new(
                ErrorCode::ClusterContainsTasksException,
                "The Cluster cannot be deleted while Tasks are active.",
            ));
        }
        c.status = Some(INACTIVE.into());
        let guard = berth_store::Compare::ModRevision {
            key: epoch_key.clone(),
            revision: epoch_revision,
        };
        Ok(Change::WriteGuarded(
            vec![guard],
            vec![put_op(key.clone(), &c)?],
            c,
        ))
    })?;
    tracing::info!(cluster = %name, "cluster deleted");
    Ok(ClusterResponse {
        cluster: render(cx, &stored, Include::all())?,
    })
}
