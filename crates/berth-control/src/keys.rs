//! The key layout of ECS state in the store. Every key the control plane
//! reads or writes is built here, so the layout can be read in one place.
//!
//! ```text
//! ecs/cluster/<name>                       Cluster (JSON)
//! ecs/cluster-epoch/<name>                 bumped by anything that joins the cluster
//! ecs/instance/<cluster>/<id>              StoredInstance (JSON)
//! ecs/task/<cluster>/<id>                  StoredTask (JSON)
//! ecs/placement/<cluster>                  placement guard, rewritten by every placement
//! ecs/service/<cluster>/<name>             StoredService (JSON)
//! ecs/service-deployment/<cluster>/<service>/<id>
//!                                          StoredServiceDeployment (JSON), one per deployment
//!                                          that CreateService/UpdateService started
//! ecs/service-deployment-order/<cluster>/<service>/<inverted-created-us:016>/<id>
//!                                          empty; lists a service's deployments newest first
//! ecs/service-deployment-link/<cluster>/<service>/<deployment-number>
//!                                          DeploymentLink (JSON): the record a controller-made
//!                                          rollback deployment reports to
//! ecs/service-revision/<cluster>/<service>/<id>
//!                                          ServiceRevision (JSON), written once
//! ecs/family/<family>                      FamilyRecord (JSON)
//! ecs/taskdef/<family>/<revision:010>      StoredTaskDefinition (JSON)
//! ecs/tdstatus/<family>/<revision:010>     the revision's status, a small index for listing
//! ecs/setting/<principal-arn>/<name>       Setting set for one principal
//! ecs/setting-default/<name>               Setting set as the account default
//! ecs/agent-key/<access-key-id>            StoredAgentKey (JSON): a container instance's
//!                                          own credentials, written and deleted with it
//! ```
//!
//! Revisions are zero-padded so that lexical key order is numeric order.
//! A service deployment's and its revision's `<id>` is the number of the
//! `ecs-svc/<number>` deployment it follows.

pub const CLUSTERS: &str = "ecs/cluster/";
pub const FAMILIES: &str = "ecs/family/";
pub const TASKDEFS: &str = "ecs/taskdef/";
pub const TASKDEF_STATUS: &str = "ecs/tdstatus/";
pub const SETTING_DEFAULTS: &str = "ecs/setting-default/";

pub fn agent_key(access_key_id: &str) -> String {
    format!("ecs/agent-key/{access_key_id}")
}

pub fn cluster(name: &str) -> String {
    format!("{CLUSTERS}{name}")
}

/// A key rewritten whenever an instance, task or service joins the cluster,
/// so that DeleteCluster can check, in the same transaction that marks the
/// cluster INACTIVE, that nothing joined after it counted.
pub fn cluster_epoch(name: &str) -> String {
    format!("ecs/cluster-epoch/{name}")
}

pub fn instances(cluster: &str) -> String {
    format!("ecs/instance/{cluster}/")
}

pub fn instance(cluster: &str, id: &str) -> String {
    format!("ecs/instance/{cluster}/{id}")
}

pub fn tasks(cluster: &str) -> String {
    format!("ecs/task/{cluster}/")
}

pub fn task(cluster: &str, id: &str) -> String {
    format!("ecs/task/{cluster}/{id}")
}

/// Rewritten by every placement in the cluster; placements guard on it so
/// that two can never spend the same capacity.
pub fn placement(cluster: &str) -> String {
    format!("ecs/placement/{cluster}")
}

pub fn service(cluster: &str, name: &str) -> String {
    format!("ecs/service/{cluster}/{name}")
}

pub fn services(cluster: &str) -> String {
    format!("ecs/service/{cluster}/")
}

pub fn service_deployment(cluster: &str, service: &str, id: &str) -> String {
    format!("{SERVICE_DEPLOYMENTS}{cluster}/{service}/{id}")
}

/// Every service deployment record, of every cluster and service.
pub const SERVICE_DEPLOYMENTS: &str = "ecs/service-deployment/";

/// The listing index of a service's deployments: `inverted` is
/// `SERVICE_DEPLOYMENT_ORDER_MAX` minus the creation time in microseconds,
/// so that key order is newest first.
pub fn service_deployment_order(cluster: &str, service: &str, inverted: u64, id: &str) -> String {
    format!("ecs/service-deployment-order/{cluster}/{service}/{inverted:016}/{id}")
}

pub fn service_deployment_orders(cluster: &str, service: &str) -> String {
    format!("ecs/service-deployment-order/{cluster}/{service}/")
}

/// The largest creation time (µs) the listing index orders; later times
/// sort as if they were this one.
pub const SERVICE_DEPLOYMENT_ORDER_MAX: u64 = 9_999_999_999_999_999;

pub fn service_deployment_link(cluster: &str, service: &str, deployment: &str) -> String {
    format!("ecs/service-deployment-link/{cluster}/{service}/{deployment}")
}

pub fn service_deployment_links(cluster: &str, service: &str) -> String {
    format!("ecs/service-deployment-link/{cluster}/{service}/")
}

pub fn service_revision(cluster: &str, service: &str, id: &str) -> String {
    format!("ecs/service-revision/{cluster}/{service}/{id}")
}

pub fn family(family: &str) -> String {
    format!("{FAMILIES}{family}")
}

pub fn taskdef(family: &str, revision: i64) -> String {
    format!("{TASKDEFS}{family}/{revision:010}")
}

pub fn taskdef_status(family: &str, revision: i64) -> String {
    format!("{TASKDEF_STATUS}{family}/{revision:010}")
}

pub fn taskdef_statuses(family: &str) -> String {
    format!("{TASKDEF_STATUS}{family}/")
}

pub fn setting(principal: &str, name: &str) -> String {
    format!("ecs/setting/{principal}/{name}")
}

pub fn setting_default(name: &str) -> String {
    format!("{SETTING_DEFAULTS}{name}")
}
