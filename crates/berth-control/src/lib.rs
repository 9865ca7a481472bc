//! The ECS control plane: every ECS operation as a function from a request
//! document and a caller to a response document, over a [`Store`].
//!
//! The control plane owns the semantics (validation, defaults, state
//! transitions, pagination) but no transport: the edge crate parses HTTP,
//! verifies signatures and frames errors. Requests and responses are the
//! JSON documents of the ECS API model, deserialized into the domain types
//! of `berth-model`.
//!
//! Calls are synchronous: the store is synchronous and every operation is a
//! few reads and at most one compare-and-swap transaction. The edge runs
//! them on blocking threads.

mod account_settings;
mod agent_keys;
mod agents;
mod clock;
mod clusters;
mod container_instances;
mod keys;
mod locks;
mod paging;
mod query;
mod service_controller;
mod service_deployments;
mod services;
mod state;
mod tags;
mod task_definitions;
mod task_index;
mod tasks;

use std::sync::Arc;

use berth_model::arn::ArnScope;
use berth_model::{ApiError, ErrorCode};
use berth_store::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use agent_keys::{AgentKey, AGENT_CREDENTIALS_MEMBER};
pub use agents::{liveness, AgentSession, InstanceLiveness, Verdict};
pub use clock::{Clock, ManualClock, SystemClock};
pub use service_controller::ServicePass;
pub use service_deployments::DEFAULT_SERVICE_DEPLOYMENT_RETENTION_SECS;
pub use services::DEFAULT_MAX_TASKS_PER_SERVICE;
pub use tasks::DEFAULT_STOPPED_TASK_RETENTION_SECS;

/// Who is calling, as the edge established it from the request signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The IAM principal, e.g. `arn:aws:iam::000000000000:root`.
    pub principal_arn: String,
    pub access_key_id: String,
    /// Set when the key is a container instance's own agent key: the caller
    /// may then act only as that instance's agent (see `agent_keys`).
    pub instance: Option<InstanceScope>,
}

impl Caller {
    /// A caller with the account's full rights (a root key).
    pub fn root(principal_arn: impl Into<String>, access_key_id: impl Into<String>) -> Self {
        Self {
            principal_arn: principal_arn.into(),
            access_key_id: access_key_id.into(),
            instance: None,
        }
    }
}

/// The one container instance an agent key speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceScope {
    pub cluster: String,
    /// The instance's id (the last part of its ARN).
    pub instance_id: String,
    pub instance_arn: String,
}

/// Settings that shape every ARN and default.
#[derive(Clone, Debug)]
pub struct Config {
    pub region: String,
    pub account_id: String,
    /// The most tasks one service may ask for (`desiredCount`): ECS's
    /// adjustable "tasks per service" quota.
    pub max_tasks_per_service: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            max_tasks_per_service: services::DEFAULT_MAX_TASKS_PER_SERVICE,
        }
    }
}

/// The ECS control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    scope: ArnScope,
    clock: Arc<dyn Clock>,
    locks: locks::KeyLocks,
    registrations: task_definitions::Combiner,
    agents: agents::AgentHub,
    tasks: task_index::TaskIndex,
    max_tasks_per_service: u32,
}

/// Every ECS operation in the service model. The ones Berth does not serve
/// yet are refused with `UnsupportedFeatureException`, never faked.
pub const ECS_OPERATIONS: &[&str] = &[
    "ContinueServiceDeployment",
    "CreateCapacityProvider",
    "CreateCluster",
    "CreateDaemon",
    "CreateExpressGatewayService",
    "CreateService",
    "CreateTaskSet",
    "DeleteAccountSetting",
    "DeleteAttributes",
    "DeleteCapacityProvider",
    "DeleteCluster",
    "DeleteDaemon",
    "DeleteDaemonTaskDefinition",
    "DeleteExpressGatewayService",
    "DeleteService",
    "DeleteTaskDefinitions",
    "DeleteTaskSet",
    "DeregisterContainerInstance",
    "DeregisterTaskDefinition",
    "DescribeCapacityProviders",
    "DescribeClusters",
    "DescribeContainerInstances",
    "DescribeDaemon",
    "DescribeDaemonDeployments",
    "DescribeDaemonRevisions",
    "DescribeDaemonTaskDefinition",
    "DescribeExpressGatewayService",
    "DescribeServiceDeployments",
    "DescribeServiceRevisions",
    "DescribeServices",
    "DescribeTaskDefinition",
    "DescribeTaskSets",
    "DescribeTasks",
    "DiscoverPollEndpoint",
    "ExecuteCommand",
    "GetTaskProtection",
    "ListAccountSettings",
    "ListAttributes",
    "ListClusters",
    "ListContainerInstances",
    "ListDaemonDeployments",
    "ListDaemonTaskDefinitions",
    "ListDaemons",
    "ListServiceDeployments",
    "ListServices",
    "ListServicesByNamespace",
    "ListTagsForResource",
    "ListTaskDefinitionFamilies",
    "ListTaskDefinitions",
    "ListTasks",
    "PutAccountSetting",
    "PutAccountSettingDefault",
    "PutAttributes",
    "PutClusterCapacityProviders",
    "RegisterContainerInstance",
    "RegisterDaemonTaskDefinition",
    "RegisterTaskDefinition",
    "RunTask",
    "StartTask",
    "StopServiceDeployment",
    "StopTask",
    "SubmitAttachmentStateChanges",
    "SubmitContainerStateChange",
    "SubmitTaskStateChange",
    "TagResource",
    "UntagResource",
    "UpdateCapacityProvider",
    "UpdateCluster",
    "UpdateClusterSettings",
    "UpdateContainerAgent",
    "UpdateContainerInstancesState",
    "UpdateDaemon",
    "UpdateExpressGatewayService",
    "UpdateService",
    "UpdateServicePrimaryTaskSet",
    "UpdateTaskProtection",
    "UpdateTaskSet",
];

impl ControlPlane {
    pub fn new(store: Arc<dyn Store>, config: Config, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                scope: ArnScope::new(config.region, config.account_id),
                locks: locks::KeyLocks::default(),
                registrations: task_definitions::Combiner::default(),
                agents: agents::AgentHub::new(clock.now_epoch()),
                tasks: task_index::TaskIndex::default(),
                max_tasks_per_service: config.max_tasks_per_service,
                clock,
            }),
        }
    }

    pub fn scope(&self) -> &ArnScope {
        &self.inner.scope
    }

    fn cx<'a>(&'a self, caller: &'a Caller) -> Cx<'a> {
        Cx {
            inner: &self.inner,
            caller,
        }
    }

    /// The caller Berth's own background work acts as: the account root,
    /// with `name` as its access key so the work is told apart in logs.
    fn internal_caller(&self, name: &str) -> Caller {
        Caller::root(self.inner.scope.root_principal(), name)
    }

    /// Runs one ECS operation. `body` is the request's JSON document; the
    /// result is the response's JSON document.
    pub fn ecs(&self, operation: &str, body: &[u8], caller: &Caller) -> Result<Vec<u8>, ApiError> {
        let cx = self.cx(caller);
        if let Some(scope) = &caller.instance {
            agent_keys::authorize(&cx, scope, operation, body)?;
        }
        match operation {
            "CreateCluster" => call(body, |r| clusters::create(&cx, r)),
            "DescribeClusters" => call(body, |r| clusters::describe(&cx, r)),
            "ListClusters" => call(body, |r| clusters::list(&cx, r)),
            "UpdateCluster" => call(body, |r| clusters::update(&cx, r)),
            "UpdateClusterSettings" => call(body, |r| clusters::update_settings(&cx, r)),
            "DeleteCluster" => call(body, |r| clusters::delete(&cx, r)),
            "RegisterTaskDefinition" => call(body, |r| task_definitions::register(&cx, r)),
            "DescribeTaskDefinition" => call(body, |r| task_definitions::describe(&cx, r)),
            "ListTaskDefinitions" => call(body, |r| task_definitions::list(&cx, r)),
            "ListTaskDefinitionFamilies" => call(body, |r| task_definitions::list_families(&cx, r)),
            "DeregisterTaskDefinition" => call(body, |r| task_definitions::deregister(&cx, r)),
            "DeleteTaskDefinitions" => call(body, |r| task_definitions::delete(&cx, r)),
            "RegisterContainerInstance" => call(body, |r| container_instances::register(&cx, r)),
            "DeregisterContainerInstance" => {
                call(body, |r| container_instances::deregister(&cx, r))
            }
            "DescribeContainerInstances" => call(body, |r| container_instances::describe(&cx, r)),
            "ListContainerInstances" => call(body, |r| container_instances::list(&cx, r)),
            "UpdateContainerInstancesState" => {
                call(body, |r| container_instances::update_state(&cx, r))
            }
            "PutAttributes" => call(body, |r| container_instances::put_attributes(&cx, r)),
            "DeleteAttributes" => call(body, |r| container_instances::delete_attributes(&cx, r)),
            "ListAttributes" => call(body, |r| container_instances::list_attributes(&cx, r)),
            "CreateService" => call(body, |r| services::create(&cx, r)),
            "DescribeServices" => call(body, |r| services::describe(&cx, r)),
            "ListServices" => call(body, |r| services::list(&cx, r)),
            "UpdateService" => call(body, |r| services::update(&cx, r)),
            "DeleteService" => call(body, |r| services::delete(&cx, r)),
            "ListServiceDeployments" => call(body, |r| service_deployments::list(&cx, r)),
            "DescribeServiceDeployments" => call(body, |r| service_deployments::describe(&cx, r)),
            "DescribeServiceRevisions" => {
                call(body, |r| service_deployments::describe_revisions(&cx, r))
            }
            "RunTask" => call(body, |r| tasks::run(&cx, r)),
            "StartTask" => call(body, |r| tasks::start(&cx, r)),
            "StopTask" => call(body, |r| tasks::stop(&cx, r)),
            "DescribeTasks" => call(body, |r| tasks::describe(&cx, r)),
            "ListTasks" => call(body, |r| tasks::list(&cx, r)),
            "SubmitTaskStateChange" => call(body, |r| tasks::submit_task_state(&cx, r)),
            "SubmitContainerStateChange" => call(body, |r| tasks::submit_container_state(&cx, r)),
            "TagResource" => call(body, |r| tags::tag(&cx, r)),
            "UntagResource" => call(body, |r| tags::untag(&cx, r)),
            "ListTagsForResource" => call(body, |r| tags::list(&cx, r)),
            "PutAccountSetting" => call(body, |r| account_settings::put(&cx, r)),
            "PutAccountSettingDefault" => call(body, |r| account_settings::put_default(&cx, r)),
            "ListAccountSettings" => call(body, |r| account_settings::list(&cx, r)),
            "DeleteAccountSetting" => call(body, |r| account_settings::delete(&cx, r)),
            "DiscoverPollEndpoint" => Err(ApiError::new(
                ErrorCode::UnsupportedFeatureException,
                "DiscoverPollEndpoint is answered by the edge, which knows its own address.",
            )),
            other if ECS_OPERATIONS.contains(&other) => Err(ApiError::new(
                ErrorCode::UnsupportedFeatureException,
                format!("The {other} operation is not supported by this Berth server yet."),
            )),
            other => Err(ApiError::new(
                ErrorCode::UnknownOperationException,
                format!("Unknown operation {other}"),
            )),
        }
    }
}

/// The context of one call: the control plane and the caller.
pub(crate) struct Cx<'a> {
    inner: &'a Inner,
    caller: &'a Caller,
}

impl Cx<'_> {
    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }
    pub(crate) fn scope(&self) -> &ArnScope {
        &self.inner.scope
    }
    pub(crate) fn now(&self) -> f64 {
        self.inner.clock.now_epoch()
    }
    pub(crate) fn caller(&self) -> &Caller {
        self.caller
    }
    pub(crate) fn locks(&self) -> &locks::KeyLocks {
        &self.inner.locks
    }
    pub(crate) fn registrations(&self) -> &task_definitions::Combiner {
        &self.inner.registrations
    }
    pub(crate) fn task_index(&self) -> &task_index::TaskIndex {
        &self.inner.tasks
    }
    pub(crate) fn max_tasks_per_service(&self) -> u32 {
        self.inner.max_tasks_per_service
    }
}

/// Decodes the request document, runs the operation and encodes its result.
pub(crate) fn call<Req, Resp, F>(body: &[u8], op: F) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Result<Resp, ApiError>,
{
    // An empty body means an empty document, as botocore sends `{}` but other
    // clients may send nothing.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let req: Req = serde_json::from_slice(body)
        .map_err(|err| ApiError::new(ErrorCode::SerializationException, err.to_string()))?;
    let resp = op(req)?;
    state::encode(&resp)
}

/// Checks a required string member.
pub(crate) fn required<'s>(value: &'s Option<String>, name: &str) -> Result<&'s str, ApiError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::invalid_parameter(format!(
            "{name} can not be blank."
        ))),
    }
}

/// Checks an `include` list against the values the operation accepts.
pub(crate) fn include_list(
    values: Option<Vec<String>>,
    allowed: &[&str],
) -> Result<Vec<String>, ApiError> {
    let values = values.unwrap_or_default();
    if let Some(other) = values.iter().find(|v| !allowed.contains(&v.as_str())) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid include value: {other}. Valid values are [{}].",
            allowed.join(", ")
        )));
    }
    Ok(values)
}

/// A batch call's failure for a resource that does not exist.
pub(crate) fn missing(arn: String) -> berth_model::cluster::Failure {
    berth_model::cluster::Failure {
        arn: Some(arn),
        reason: Some("MISSING".into()),
        detail: None,
    }
}
