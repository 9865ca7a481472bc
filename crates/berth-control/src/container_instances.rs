//! RegisterContainerInstance, DeregisterContainerInstance,
//! DescribeContainerInstances, ListContainerInstances, and the attribute
//! operations (PutAttributes, DeleteAttributes, ListAttributes), whose only
//! target type in ECS is the container instance.

use std::collections::HashMap;
use std::sync::OnceLock;

use berth_model::arn::Arn;
use berth_model::cluster::{Cluster, Failure};
use berth_model::common::{Attribute, Tag};
use berth_model::container_instance::{ContainerInstance, PlatformDevice, Resource, VersionInfo};
use berth_model::{ApiError, ErrorCode};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clusters::{active, resolve_name};
use crate::paging::{decode_token, encode_token, page, page_size};
use crate::state::{self, put_op, read_modify_write, scan, Change};
use crate::tags::validate_tags;
use crate::{include_list, keys, missing, required, Cx};

/// A container instance as stored: the API shape plus what the control
/// plane needs to find it again.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredInstance {
    pub cluster: String,
    pub id: String,
    pub instance: ContainerInstance,
    #[serde(default)]
    pub platform_devices: Vec<PlatformDevice>,
    /// The instance's own agent key (see `agent_keys`), deleted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_access_key_id: Option<String>,
}

/// At most this many custom attributes on one resource.
const MAX_CUSTOM_ATTRIBUTES: usize = 10;

fn is_builtin(name: &str) -> bool {
    name.starts_with("ecs.") || name.starts_with("com.amazonaws.ecs.")
}

fn attr_name_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // A literal pattern; see clusters::name_pattern.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| Regex::new(r"^[a-zA-Z0-9_./\\-]{1,128}$").expect("valid regex"))
}

fn attr_value_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // A literal pattern; see clusters::name_pattern.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| Regex::new(r"^[a-zA-Z0-9_.@/\\: -]{1,128}$").expect("valid regex"))
}

fn validate_attribute(a: &Attribute) -> Result<(), ApiError> {
    if !attr_name_pattern().is_match(&a.name) {
        return Err(ApiError::invalid_parameter(format!(
            "Attribute name '{}' is invalid. Names are 1 to 128 letters, numbers, hyphens, underscores, periods, forward slashes or back slashes.",
            a.name
        )));
    }
    if let Some(v) = &a.value {
        if !attr_value_pattern().is_match(v) || v.starts_with(' ') || v.ends_with(' ') {
            return Err(ApiError::invalid_parameter(format!(
                "Attribute value '{v}' is invalid. Values are 1 to 128 letters, numbers, hyphens, underscores, periods, at signs, forward slashes, back slashes, colons or spaces, and do not start or end with a space."
            )));
        }
    }
    if let Some(t) = &a.target_type {
        if t != "container-instance" {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid targetType: {t}. Valid values are [container-instance]."
            )));
        }
    }
    Ok(())
}

/// The id part of a container instance reference (an ARN or a bare id).
pub(crate) fn instance_id(cx: &Cx<'_>, cluster: &str, reference: &str) -> Result<String, ApiError> {
    match Arn::parse(reference) {
        Some(arn) => match arn.resource_parts() {
            ("container-instance", rest) if arn.service == "ecs" => {
                // Long form `cluster/id`, or the old short form `id`.
                let (arn_cluster, id) = rest.split_once('/').unwrap_or((cluster, rest));
                if arn_cluster != cluster
                    || arn.account_id != cx.scope().account_id
                    || arn.region != cx.scope().region
                {
                    return Err(ApiError::invalid_parameter(format!(
                        "Container instance {reference} does not belong to cluster {cluster}."
                    )));
                }
                Ok(id.to_string())
            }
            _ => Err(ApiError::invalid_parameter(format!(
                "Invalid container instance ARN: {reference}"
            ))),
        },
        None => Ok(reference.to_string()),
    }
}

/// What the tasks placed on one instance hold there.
#[derive(Default)]
struct Usage {
    cpu: i64,
    memory: i64,
    tcp_ports: Vec<u16>,
    udp_ports: Vec<u16>,
    running: i32,
    pending: i32,
}

/// The usage of every instance of `cluster`, from its tasks.
fn usage(cx: &Cx<'_>, cluster: &str) -> Result<HashMap<String, Usage>, ApiError> {
    let mut out: HashMap<String, Usage> = HashMap::new();
    for kv in scan(cx.store(), &keys::tasks(cluster))? {
        let t: crate::tasks::StoredTask = state::decode(&kv)?;
        if !t.holds_resources() {
            continue;
        }
        let u = out.entry(t.instance_id.clone()).or_default();
        u.cpu += i64::from(t.resources.cpu);
        u.memory += i64::from(t.resources.memory);
        u.tcp_ports.extend(&t.tcp_ports);
        u.udp_ports.extend(&t.udp_ports);
        if t.task.last_status.as_deref() == Some("RUNNING") {
            u.running += 1;
        } else {
            u.pending += 1;
        }
    }
    Ok(out)
}

/// The instance as responses show it: remaining resources and task counts
/// follow the tasks placed on it.
fn render(stored: &StoredInstance, include_tags: bool, usage: Option<&Usage>) -> ContainerInstance {
    let mut ci = stored.instance.clone();
    if !include_tags {
        ci.tags = None;
    }
    let empty = Usage::default();
    let u = usage.unwrap_or(&empty);
    ci.running_tasks_count = Some(u.running);
    ci.pending_tasks_count = Some(u.pending);
    ci.remaining_resources = ci.registered_resources.as_ref().map(|registered| {
        registered
            .iter()
            .map(|r| {
                let mut r = r.clone();
                match r.name.as_deref() {
                    Some("CPU") => {
                        r.integer_value = r
                            .integer_value
                            .map(|v| (i64::from(v) - u.cpu).max(0) as i32)
                    }
                    Some("MEMORY") => {
                        r.integer_value = r
                            .integer_value
                            .map(|v| (i64::from(v) - u.memory).max(0) as i32)
                    }
                    Some("PORTS") => add_ports(&mut r.string_set_value, &u.tcp_ports),
                    Some("PORTS_UDP") => add_ports(&mut r.string_set_value, &u.udp_ports),
                    _ => {}
                }
                r
            })
            .collect()
    });
    ci
}

fn add_ports(set: &mut Option<Vec<String>>, ports: &[u16]) {
    let list = set.get_or_insert_with(Vec::new);
    list.extend(ports.iter().map(u16::to_string));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegisterContainerInstanceRequest {
    cluster: Option<String>,
    instance_identity_document: Option<String>,
    total_resources: Option<Vec<Resource>>,
    version_info: Option<VersionInfo>,
    container_instance_arn: Option<String>,
    attributes: Option<Vec<Attribute>>,
    platform_devices: Option<Vec<PlatformDevice>>,
    tags: Option<Vec<Tag>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerInstanceResponse {
    container_instance: ContainerInstance,
    /// A newly issued agent key (registration by an account key only).
    #[serde(
        rename = "berthAgentCredentials",
        skip_serializing_if = "Option::is_none"
    )]
    agent_credentials: Option<crate::agent_keys::IssuedKey>,
}

fn ec2_instance_id(document: Option<&str>, id: &str) -> String {
    document
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .and_then(|v| {
            v.get("instanceId")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("i-{}", &id[..17.min(id.len())]))
}

pub(crate) fn register(
    cx: &Cx<'_>,
    req: RegisterContainerInstanceRequest,
) -> Result<ContainerInstanceResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let attributes = req.attributes.clone().unwrap_or_default();
    for a in &attributes {
        validate_attribute(a)?;
    }
    if attributes.iter().filter(|a| !is_builtin(&a.name)).count() > MAX_CUSTOM_ATTRIBUTES {
        return Err(ApiError::new(
            ErrorCode::AttributeLimitExceededException,
            format!("You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."),
        ));
    }
    let id = match &req.container_instance_arn {
        Some(arn) => instance_id(cx, &cluster, arn)?,
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let arn = cx.scope().container_instance(&cluster, &id);
    let key = keys::instance(&cluster, &id);
    let cluster_key = keys::cluster(&cluster);
    let now = cx.now();
    let resources = req.total_resources.clone().unwrap_or_default();
    // An account key registering (or re-registering) the instance issues it
    // a new agent key; its agent re-registering keeps the one it signs with.
    let issued = cx
        .caller()
        .instance
        .is_none()
        .then(crate::agent_keys::generate);
    let out = read_modify_write(cx.store(), &key, |current: Option<StoredInstance>| {
        // The cluster must still be ACTIVE when the instance joins: guard on
        // its revision and bump the cluster's epoch (see keys::cluster_epoch).
        let cluster_rec = cx.store().get(&cluster_key).map_err(state::store_error)?;
        let cluster_rev = match &cluster_rec {
            Some(kv) => {
                let c: Cluster = state::decode(kv)?;
                if c.status.as_deref() != Some("ACTIVE") {
                    return Err(ApiError::cluster_not_found());
                }
                kv.mod_revision
            }
            None => return Err(ApiError::cluster_not_found()),
        };
        let (version, registered_at, mut existing_tags) = match &current {
            Some(s) => (
                s.instance.version.unwrap_or(1) + 1,
                s.instance.registered_at.unwrap_or(now),
                s.instance.tags.clone().unwrap_or_default(),
            ),
            None if req.container_instance_arn.is_some() => {
                return Err(ApiError::invalid_parameter(format!(
                    "Container instance {} is not registered.",
                    req.container_instance_arn.as_deref().unwrap_or("")
                )))
            }
            None => (1, now, Vec::new()),
        };
        existing_tags = crate::tags::merge_tags(&existing_tags, &tags);
        // A re-registration (an agent restarting, or reporting new
        // resources such as host ports it cannot use) replaces what the
        // agent reports: resources, version, the ecs.* and berth.*
        // attributes. What was set on the instance through the API stays:
        // DRAINING, and custom attributes the request does not name.
        let (status, status_reason) = match &current {
            Some(s) if s.instance.status.as_deref() == Some("DRAINING") => {
                (s.instance.status.clone(), s.instance.status_reason.clone())
            }
            _ => (Some("ACTIVE".into()), None),
        };
        let mut attributes = attributes.clone();
        if let Some(s) = &current {
            let kept: Vec<Attribute> = s
                .instance
                .attributes
                .iter()
                .flatten()
                .filter(|a| !is_builtin(&a.name) && !a.name.starts_with("berth."))
                .filter(|a| !attributes.iter().any(|n| n.name == a.name))
                .cloned()
                .collect();
            attributes.extend(kept);
        }
        let instance = ContainerInstance {
            container_instance_arn: Some(arn.clone()),
            ec2_instance_id: Some(ec2_instance_id(
                req.instance_identity_document.as_deref(),
                &id,
            )),
            capacity_provider_name: None,
            version: Some(version),
            version_info: req.version_info.clone(),
            remaining_resources: Some(resources.clone()),
            registered_resources: Some(resources.clone()),
            status,
            status_reason,
            agent_connected: Some(true),
            running_tasks_count: Some(0),
            pending_tasks_count: Some(0),
            agent_update_status: None,
            attributes: Some(attributes),
            registered_at: Some(registered_at),
            attachments: Some(Vec::new()),
            tags: Some(existing_tags),
            health_status: None,
        };
        let previous_key = current.as_ref().and_then(|s| s.agent_access_key_id.clone());
        let stored = StoredInstance {
            cluster: cluster.clone(),
            id: id.clone(),
            instance,
            platform_devices: req.platform_devices.clone().unwrap_or_default(),
            agent_access_key_id: match &issued {
                Some(k) => Some(k.access_key_id.clone()),
                None => previous_key.clone(),
            },
        };
        let guard = berth_store::Compare::ModRevision {
            key: cluster_key.clone(),
            revision: cluster_rev,
        };
        let mut ops = vec![
            put_op(key.clone(), &stored)?,
            berth_store::Op::Put {
                key: keys::cluster_epoch(&cluster),
                value: id.clone().into_bytes(),
            },
        ];
        if let Some(k) = &issued {
            if let Some(old) = &previous_key {
                ops.push(berth_store::Op::Delete {
                    key: keys::agent_key(old),
                });
            }
            ops.push(put_op(
                keys::agent_key(&k.access_key_id),
                &crate::agent_keys::StoredAgentKey {
                    secret_access_key: k.secret_access_key.clone(),
                    cluster: cluster.clone(),
                    instance_id: id.clone(),
                    instance_arn: arn.clone(),
                    created_at: now,
                },
            )?);
        }
        Ok(Change::WriteGuarded(vec![guard], ops, stored))
    })?;
    tracing::info!(cluster = %cluster, container_instance = %id, agent_key_issued = issued.is_some(), "container instance registered");
    Ok(ContainerInstanceResponse {
        container_instance: render(&out, true, None),
        agent_credentials: issued,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeregisterContainerInstanceRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
    force: Option<bool>,
}

pub(crate) fn deregister(
    cx: &Cx<'_>,
    req: DeregisterContainerInstanceRequest,
) -> Result<ContainerInstanceResponse, ApiError> {
    let reference = required(&req.container_instance, "containerInstance")?;
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let id = instance_id(cx, &cluster, reference)?;
    let key = keys::instance(&cluster, &id);
    let force = req.force.unwrap_or(false);
    let out = read_modify_write(cx.store(), &key, |current: Option<StoredInstance>| {
        let mut s = match current {
            Some(s) if s.instance.status.as_deref() != Some("INACTIVE") => s,
            _ => {
                return Err(ApiError::invalid_parameter(format!(
                    "Container instance {reference} not found."
                )))
            }
        };
        if !force {
            let busy = state::any_under(
                cx.store(),
                &keys::tasks(&cluster),
                |t: &crate::tasks::StoredTask| t.instance_id == id && t.holds_resources(),
            )?;
            if busy {
                return Err(ApiError::invalid_parameter(
                    "Found running tasks on the instance. Use force to deregister it anyway.",
                ));
            }
        }
        s.instance.status = Some("INACTIVE".into());
        s.instance.agent_connected = Some(false);
        s.instance.version = Some(s.instance.version.unwrap_or(1) + 1);
        // The instance's agent key goes with it.
        let mut ops = Vec::new();
        if let Some(k) = s.agent_access_key_id.take() {
            ops.push(berth_store::Op::Delete {
                key: keys::agent_key(&k),
            });
        }
        ops.insert(0, put_op(key.clone(), &s)?);
        Ok(Change::Write(ops, s))
    })?;
    tracing::info!(cluster = %cluster, container_instance = %id, "container instance deregistered");
    Ok(ContainerInstanceResponse {
        container_instance: render(&out, true, None),
        agent_credentials: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeContainerInstancesRequest {
    cluster: Option<String>,
    container_instances: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeContainerInstancesResponse {
    container_instances: Vec<ContainerInstance>,
    failures: Vec<Failure>,
}

pub(crate) fn describe(
    cx: &Cx<'_>,
    req: DescribeContainerInstancesRequest,
) -> Result<DescribeContainerInstancesResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let include_tags = include_list(req.include, &["TAGS", "CONTAINER_INSTANCE_HEALTH"])?
        .iter()
        .any(|f| f == "TAGS");
    let refs = req.container_instances.unwrap_or_default();
    if refs.is_empty() || refs.len() > 100 {
        return Err(ApiError::invalid_parameter(
            "containerInstances must have between 1 and 100 items.",
        ));
    }
    let used = usage(cx, &cluster)?;
    let mut out = DescribeContainerInstancesResponse {
        container_instances: vec![],
        failures: vec![],
    };
    for reference in refs {
        let found = match instance_id(cx, &cluster, &reference) {
            Ok(id) => state::get::<StoredInstance>(cx.store(), &keys::instance(&cluster, &id))?,
            Err(_) => None,
        };
        match found {
            Some(s) => {
                out.container_instances
                    .push(render(&s.value, include_tags, used.get(&s.value.id)))
            }
            None => out.failures.push(missing(reference)),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListContainerInstancesRequest {
    cluster: Option<String>,
    filter: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    status: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListContainerInstancesResponse {
    container_instance_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list(
    cx: &Cx<'_>,
    req: ListContainerInstancesRequest,
) -> Result<ListContainerInstancesResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let limit = page_size(req.max_results, 100, 100)?;
    let status = req.status.as_deref();
    if let Some(s) = status {
        if !matches!(
            s,
            "ACTIVE" | "DRAINING" | "REGISTERING" | "DEREGISTERING" | "REGISTRATION_FAILED"
        ) {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid status: {s}. Valid values are [ACTIVE, DRAINING, REGISTERING, DEREGISTERING, REGISTRATION_FAILED]."
            )));
        }
    }
    let filter = match req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(text) => Some(crate::query::compile(text)?),
        None => None,
    };
    let prefix = keys::instances(&cluster);
    let start_after = decode_token(req.next_token.as_deref(), &prefix)?;
    let (arns, next_token) = page(cx.store(), &prefix, start_after, limit, |kv| {
        let s: StoredInstance = state::decode(kv)?;
        let st = s.instance.status.as_deref().unwrap_or("");
        let wanted = match status {
            Some(want) => st == want,
            None => st == "ACTIVE" || st == "DRAINING",
        };
        if !wanted
            || filter
                .as_ref()
                .is_some_and(|f| !crate::query::matches(f, &s))
        {
            return Ok(None);
        }
        Ok(Some(s.instance.container_instance_arn.unwrap_or_default()))
    })?;
    Ok(ListContainerInstancesResponse {
        container_instance_arns: arns,
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttributesRequest {
    cluster: Option<String>,
    attributes: Option<Vec<Attribute>>,
}

#[derive(Serialize)]
pub(crate) struct AttributesResponse {
    attributes: Vec<Attribute>,
}

/// Groups attributes by the instance they target, checking each.
fn by_target(
    cx: &Cx<'_>,
    cluster: &str,
    attributes: &[Attribute],
) -> Result<Vec<(String, Vec<Attribute>)>, ApiError> {
    if attributes.is_empty() {
        return Err(ApiError::invalid_parameter("attributes can not be empty."));
    }
    let mut groups: Vec<(String, Vec<Attribute>)> = Vec::new();
    for a in attributes {
        validate_attribute(a)?;
        let target = a
            .target_id
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::invalid_parameter(format!("Attribute {} must have a targetId.", a.name))
            })?;
        let id = instance_id(cx, cluster, target)?;
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, list)) => list.push(a.clone()),
            None => groups.push((id, vec![a.clone()])),
        }
    }
    Ok(groups)
}

fn target_missing(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TargetNotFoundException,
        format!("Could not find {id}."),
    )
}

pub(crate) fn put_attributes(
    cx: &Cx<'_>,
    req: AttributesRequest,
) -> Result<AttributesResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let attributes = req.attributes.unwrap_or_default();
    let groups = by_target(cx, &cluster, &attributes)?;
    // Check every target first so that a bad one leaves nothing half-applied.
    for (id, new) in &groups {
        let s = state::get::<StoredInstance>(cx.store(), &keys::instance(&cluster, id))?
            .filter(|s| s.value.instance.status.as_deref() != Some("INACTIVE"))
            .ok_or_else(|| target_missing(id))?;
        let merged = merge(
            s.value.instance.attributes.as_deref().unwrap_or_default(),
            new,
        );
        if merged.iter().filter(|a| !is_builtin(&a.name)).count() > MAX_CUSTOM_ATTRIBUTES {
            return Err(ApiError::new(
                ErrorCode::AttributeLimitExceededException,
                format!(
                    "You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."
                ),
            ));
        }
    }
    for (id, new) in &groups {
        let key = keys::instance(&cluster, id);
        read_modify_write(cx.store(), &key, |cur: Option<StoredInstance>| {
            let mut s = cur.ok_or_else(|| target_missing(id))?;
            let merged = merge(s.instance.attributes.as_deref().unwrap_or_default(), new);
            s.instance.attributes = Some(merged);
            Ok(Change::Write(vec![put_op(key.clone(), &s)?], ()))
        })?;
    }
    Ok(AttributesResponse {
        attributes: with_targets(cx, &cluster, &attributes),
    })
}

/// Attributes as responses show them: each with its full target ARN.
fn with_targets(cx: &Cx<'_>, cluster: &str, attributes: &[Attribute]) -> Vec<Attribute> {
    attributes
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.target_type = Some("container-instance".into());
            if let Some(t) = &a.target_id {
                if Arn::parse(t).is_none() {
                    a.target_id = Some(cx.scope().container_instance(cluster, t));
                }
            }
            a
        })
        .collect()
}

fn merge(existing: &[Attribute], new: &[Attribute]) -> Vec<Attribute> {
    let strip = |a: &Attribute| Attribute {
        name: a.name.clone(),
        value: a.value.clone(),
        target_type: None,
        target_id: None,
    };
    let mut out: Vec<Attribute> = existing
        .iter()
        .filter(|e| !new.iter().any(|n| n.name == e.name))
        .cloned()
        .collect();
    out.extend(new.iter().map(strip));
    out
}

pub(crate) fn delete_attributes(
    cx: &Cx<'_>,
    req: AttributesRequest,
) -> Result<AttributesResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let attributes = req.attributes.unwrap_or_default();
    let groups = by_target(cx, &cluster, &attributes)?;
    for (id, _) in &groups {
        state::get::<StoredInstance>(cx.store(), &keys::instance(&cluster, id))?
            .ok_or_else(|| target_missing(id))?;
    }
    for (id, gone) in &groups {
        let key = keys::instance(&cluster, id);
        read_modify_write(cx.store(), &key, |cur: Option<StoredInstance>| {
            let mut s = cur.ok_or_else(|| target_missing(id))?;
            let kept = s
                .instance
                .attributes
                .unwrap_or_default()
                .into_iter()
                .filter(|a| !gone.iter().any(|g| g.name == a.name))
                .collect();
            s.instance.attributes = Some(kept);
            Ok(Change::Write(vec![put_op(key.clone(), &s)?], ()))
        })?;
    }
    Ok(AttributesResponse {
        attributes: with_targets(cx, &cluster, &attributes),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListAttributesRequest {
    cluster: Option<String>,
    target_type: Option<String>,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListAttributesResponse {
    attributes: Vec<Attribute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list_attributes(
    cx: &Cx<'_>,
    req: ListAttributesRequest,
) -> Result<ListAttributesResponse, ApiError> {
    let name = resolve_name(cx, req.cluster.as_deref())?;
    let (cluster, _) = active(cx, Some(&name))?;
    match req.target_type.as_deref() {
        Some("container-instance") => {}
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid targetType: {}. Valid values are [container-instance].",
                other.unwrap_or("")
            )))
        }
    }
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(ApiError::invalid_parameter(
            "attributeValue can only be specified with attributeName.",
        ));
    }
    let limit = page_size(req.max_results, 100, 100)?;
    let prefix = keys::instances(&cluster);
    // A position is `<instance key>\u{1}<attribute name>`.
    let start_after = decode_token(req.next_token.as_deref(), &prefix)?;
    let mut out = Vec::new();
    let mut last = None;
    for kv in scan(cx.store(), &prefix)? {
        let s: StoredInstance = state::decode(&kv)?;
        if s.instance.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        let arn = s
            .instance
            .container_instance_arn
            .clone()
            .unwrap_or_default();
        let mut attrs = s.instance.attributes.clone().unwrap_or_default();
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        for a in attrs {
            let position = format!("{}\u{1}{}", kv.key, a.name);
            if start_after
                .as_deref()
                .is_some_and(|s| position.as_str() <= s)
            {
                continue;
            }
            if req.attribute_name.as_deref().is_some_and(|n| n != a.name) {
                continue;
            }
            if req.attribute_value.is_some() && req.attribute_value != a.value {
                continue;
            }
            if out.len() == limit {
                return Ok(ListAttributesResponse {
                    attributes: out,
                    next_token: last.as_deref().map(encode_token),
                });
            }
            out.push(Attribute {
                name: a.name,
                value: a.value,
                target_type: Some("container-instance".into()),
                target_id: Some(arn.clone()),
            });
            last = Some(position);
        }
    }
    Ok(ListAttributesResponse {
        attributes: out,
        next_token: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateContainerInstancesStateRequest {
    cluster: Option<String>,
    container_instances: Option<Vec<String>>,
    status: Option<String>,
}

/// Moves instances between ACTIVE and DRAINING. A DRAINING instance takes
/// no new tasks (the placement engine rejects it).
pub(crate) fn update_state(
    cx: &Cx<'_>,
    req: UpdateContainerInstancesStateRequest,
) -> Result<DescribeContainerInstancesResponse, ApiError> {
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let status = match req.status.as_deref() {
        Some(s @ ("ACTIVE" | "DRAINING")) => s.to_string(),
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid status: {}. Valid values are [ACTIVE, DRAINING].",
                other.unwrap_or("")
            )))
        }
    };
    let refs = req.container_instances.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "containerInstances must have between 1 and 10 items.",
        ));
    }
    let used = usage(cx, &cluster)?;
    let mut out = DescribeContainerInstancesResponse {
        container_instances: vec![],
        failures: vec![],
    };
    for reference in refs {
        let Ok(id) = instance_id(cx, &cluster, &reference) else {
            out.failures.push(missing(reference.clone()));
            continue;
        };
        let key = keys::instance(&cluster, &id);
        let updated =
            read_modify_write(cx.store(), &key, |cur: Option<StoredInstance>| match cur {
                Some(mut s)
                    if matches!(s.instance.status.as_deref(), Some("ACTIVE" | "DRAINING")) =>
                {
                    if s.instance.status.as_deref() == Some(status.as_str()) {
                        return Ok(Change::Keep(Some(s)));
                    }
                    s.instance.status = Some(status.clone());
                    s.instance.version = Some(s.instance.version.unwrap_or(1) + 1);
                    Ok(Change::Write(vec![put_op(key.clone(), &s)?], Some(s)))
                }
                _ => Ok(Change::Keep(None)),
            })?;
        match updated {
            Some(s) => out
                .container_instances
                .push(render(&s, false, used.get(&s.id))),
            None => out.failures.push(missing(reference.clone())),
        }
    }
    Ok(out)
}
