//! The key layout of ECS state in the store. Every key the control plane
//! reads or writes is built here, so the layout can be read in one place.
//!
//! ```text
//! ecs/cluster/<name>                       Cluster (JSON)
//! ecs/cluster-epoch/<name>                 bumped by anything that joins the cluster
//! ecs/instance/<cluster>/<id>              StoredInstance (JSON)
//! ecs/task/<cluster>/<id>                  StoredTask (JSON)
//! ecs/placement/<cluster>                  placement guard, rewritten by every placement
//! ecs/service/<cluster>/<name>             services (later issues)
//! ecs/family/<family>                      FamilyRecord (JSON)
//! ecs/taskdef/<family>/<revision:010>      StoredTaskDefinition (JSON)
//! ecs/tdstatus/<family>/<revision:010>     the revision's status, a small index for listing
//! ecs/setting/<principal-arn>/<name>       Setting set for one principal
//! ecs/setting-default/<name>               Setting set as the account default
//! ```
//!
//! Revisions are zero-padded so that lexical key order is numeric order.

pub const CLUSTERS: &str = "ecs/cluster/";
pub const FAMILIES: &str = "ecs/family/";
pub const TASKDEFS: &str = "ecs/taskdef/";
pub const TASKDEF_STATUS: &str = "ecs/tdstatus/";
pub const SETTING_DEFAULTS: &str = "ecs/setting-default/";

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
