//! ListContainerInstances' `filter`: the cluster query language, parsed and
//! evaluated by the placement engine, against stored instances.

use std::collections::BTreeMap;

use berth_model::ApiError;
use berth_scheduler::model::{ContainerInstance, InstanceStatus, Resources};
use berth_scheduler::query::{self, Expr, InstanceView};

use crate::container_instances::StoredInstance;

/// A parsed filter expression.
#[derive(Debug)]
pub(crate) struct Filter(Expr);

pub(crate) fn compile(text: &str) -> Result<Filter, ApiError> {
    query::parse(text)
        .map(Filter)
        .map_err(|err| ApiError::invalid_parameter(format!("Invalid filter expression: {err}")))
}

/// The placement engine's view of a stored instance, with what the query
/// language can look at: attributes, ids, registration time, task count.
pub(crate) fn scheduler_view(stored: &StoredInstance) -> ContainerInstance {
    let ci = &stored.instance;
    let status = match ci.status.as_deref() {
        Some("ACTIVE") => InstanceStatus::Active,
        Some("DRAINING") => InstanceStatus::Draining,
        _ => InstanceStatus::Inactive,
    };
    let attributes: BTreeMap<String, Option<String>> = ci
        .attributes
        .iter()
        .flatten()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    let mut view = ContainerInstance::new(
        ci.container_instance_arn.clone().unwrap_or_default(),
        Resources::default(),
    );
    view.ec2_instance_id = ci.ec2_instance_id.clone();
    view.status = status;
    view.agent_connected = ci.agent_connected.unwrap_or(false);
    view.registered_at = ci.registered_at.map(|t| t as i64).unwrap_or(0);
    view.dynamic_ports = attributes
        .get(berth_model::container_instance::DYNAMIC_PORT_RANGE_ATTRIBUTE)
        .and_then(|v| v.as_deref())
        .and_then(berth_model::container_instance::parse_port_range);
    view.attributes = attributes;
    view.running_tasks_count = ci.running_tasks_count.unwrap_or(0).max(0) as u32;
    view
}

pub(crate) fn matches(filter: &Filter, stored: &StoredInstance) -> bool {
    let view = scheduler_view(stored);
    filter.0.eval(&InstanceView::new(&view))
}
