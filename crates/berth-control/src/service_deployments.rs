//! Service deployments and service revisions: ListServiceDeployments,
//! DescribeServiceDeployments and DescribeServiceRevisions, and the pure
//! mapping from a service's `deployments` to those records.
//!
//! Every deployment that CreateService or UpdateService starts gets a
//! [`StoredServiceDeployment`] and a `ServiceRevision` (the configuration it
//! deploys), written in the same transaction as the service. From then on,
//! every write of the service (UpdateService, DeleteService, the service
//! controller's write-back) also carries the record updates [`sync`]
//! derives from the service before and after the write, so a record never
//! disagrees with a committed service.
//!
//! How a record's `status` follows its deployment (terminal statuses never
//! change again, and counts are frozen with them):
//!
//! | record now           | the service after the write                               | becomes              |
//! |----------------------|-----------------------------------------------------------|----------------------|
//! | PENDING              | the controller has looked at the deployment               | IN_PROGRESS          |
//! | PENDING, IN_PROGRESS | rolloutState COMPLETED                                    | SUCCESSFUL           |
//! | PENDING, IN_PROGRESS | circuit breaker FAILED it and the controller rolled back  | ROLLBACK_IN_PROGRESS |
//! | PENDING, IN_PROGRESS | circuit breaker FAILED it, no rollback                    | STOPPED              |
//! | PENDING, IN_PROGRESS | ACTIVE (a newer deployment superseded it) or gone         | STOPPED              |
//! | ROLLBACK_IN_PROGRESS | the rollback deployment COMPLETED                         | ROLLBACK_SUCCESSFUL  |
//! | ROLLBACK_IN_PROGRESS | the rollback deployment FAILED                            | ROLLBACK_FAILED      |
//! | ROLLBACK_IN_PROGRESS | the rollback deployment superseded or gone                | STOPPED              |
//! | any but terminal     | the service is no longer ACTIVE (DeleteService)           | STOPPED              |
//!
//! A circuit-breaker rollback in Berth is a new deployment the controller
//! makes; it gets no record of its own. The failed deployment's record
//! takes it as its `rollback` (the revision rolled back to, the reason and
//! when) and follows it to the end, and a link key lets later passes find
//! that record from the rollback deployment's id.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::arn::{Arn, ArnScope};
use berth_model::cluster::Failure;
use berth_model::service::{
    ContainerImage, Deployment, DeploymentConfiguration, Rollback, ServiceDeployment,
    ServiceDeploymentAlarms, ServiceDeploymentBrief, ServiceDeploymentCircuitBreaker,
    ServiceRevision, ServiceRevisionSummary,
};
use berth_model::{ApiError, ErrorCode};
use berth_store::{Op, Store};
use serde::{Deserialize, Serialize};

use crate::clusters::active;
use crate::paging::{decode_token, page, page_size};
use crate::services::{service_name, StoredService};
use crate::state::{self, put_op};
use crate::task_definitions::StoredTaskDefinition;
use crate::{keys, missing, required, Cx};

pub(crate) const PENDING: &str = "PENDING";
pub(crate) const IN_PROGRESS: &str = "IN_PROGRESS";
pub(crate) const SUCCESSFUL: &str = "SUCCESSFUL";
pub(crate) const STOPPED: &str = "STOPPED";
pub(crate) const ROLLBACK_IN_PROGRESS: &str = "ROLLBACK_IN_PROGRESS";
pub(crate) const ROLLBACK_SUCCESSFUL: &str = "ROLLBACK_SUCCESSFUL";
pub(crate) const ROLLBACK_FAILED: &str = "ROLLBACK_FAILED";

/// Every `ServiceDeploymentStatus` of the model (filters accept all).
const STATUSES: &[&str] = &[
    "PENDING",
    "SUCCESSFUL",
    "STOPPED",
    "STOP_REQUESTED",
    "IN_PROGRESS",
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_SUCCESSFUL",
    "ROLLBACK_FAILED",
];

/// `ServiceDeploymentRollbackMonitorsStatus` values.
const MONITORING: &str = "MONITORING";
const MONITORING_COMPLETE: &str = "MONITORING_COMPLETE";
const TRIGGERED: &str = "TRIGGERED";
const DISABLED: &str = "DISABLED";

/// At most this many ARNs per Describe call.
const MAX_DESCRIBE: usize = 20;

const REASON_SUPERSEDED: &str = "Stopped because a newer service deployment started.";
const REASON_SERVICE_DELETED: &str = "Stopped because the service was deleted.";
const REASON_GONE: &str = "Stopped because its deployment ended before it finished.";

/// A service deployment as stored: the API shape plus what ties it to the
/// service's `deployments`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredServiceDeployment {
    /// The last part of both ARNs and of the keys.
    pub id: String,
    /// The `ecs-svc/...` deployment of the service this record follows.
    pub deployment_id: String,
    /// The controller-made deployment that rolls this one back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_deployment_id: Option<String>,
    #[serde(flatten)]
    pub deployment: ServiceDeployment,
}

impl StoredServiceDeployment {
    fn status(&self) -> &str {
        self.deployment.status.as_deref().unwrap_or(PENDING)
    }
}

/// Where a controller-made rollback deployment reports: the record of the
/// deployment it rolls back, and the revision it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentLink {
    pub record_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_arn: Option<String>,
}

/// Who changes the service: the API (Create/Update/DeleteService) or the
/// service controller. Only the controller starts a deployment's rollout
/// (PENDING to IN_PROGRESS) and rolls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Actor {
    Api,
    Controller,
}

/// The records a change may touch, as read from the store.
#[derive(Clone, Debug, Default)]
pub(crate) struct Known {
    pub records: Vec<StoredServiceDeployment>,
    /// Links by the deployment id of the rollback deployment.
    pub links: BTreeMap<String, DeploymentLink>,
}

/// A store write that [`sync`] or [`started`] decided.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Write {
    Record(Box<StoredServiceDeployment>),
    Revision {
        id: String,
        revision: Box<ServiceRevision>,
    },
    /// The listing index entry of a new record.
    Order {
        id: String,
        created_at: f64,
    },
    Link {
        deployment_id: String,
        link: DeploymentLink,
    },
}

/// How long a finished service deployment stays listed after it ended,
/// by default: ECS keeps a service's deployment history for 90 days.
pub const DEFAULT_SERVICE_DEPLOYMENT_RETENTION_SECS: u64 = 90 * 24 * 60 * 60;

/// A stored record as the reaper reads it: where it is and its revision.
#[derive(Clone, Debug)]
pub(crate) struct HeldRecord {
    pub cluster: String,
    pub service: String,
    pub mod_revision: berth_store::Revision,
    pub record: StoredServiceDeployment,
}

/// When a finished record ended: its finish or stop time, else its last
/// update.
fn ended_at(r: &StoredServiceDeployment) -> Option<f64> {
    let d = &r.deployment;
    d.finished_at.or(d.stopped_at).or(d.updated_at)
}

/// The records past their retention (indexes into `records`): finished
/// (a terminal status), ended before `cutoff`, and neither their
/// deployment nor their rollback deployment still one of the service's
/// deployments. `live` holds `(cluster, service, deployment id)` of every
/// deployment the services still have.
pub(crate) fn expired(
    records: &[HeldRecord],
    live: &BTreeSet<(String, String, String)>,
    cutoff: f64,
) -> Vec<usize> {
    let is_live = |h: &HeldRecord, id: &str| {
        live.contains(&(h.cluster.clone(), h.service.clone(), id.to_string()))
    };
    records
        .iter()
        .enumerate()
        .filter(|(_, h)| is_terminal(h.record.status()))
        .filter(|(_, h)| ended_at(&h.record).is_some_and(|t| t < cutoff))
        .filter(|(_, h)| !is_live(h, &h.record.deployment_id))
        .filter(|(_, h)| {
            h.record
                .rollback_deployment_id
                .as_deref()
                .is_none_or(|id| !is_live(h, id))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Every revision ARN a record names: its target, its sources and the
/// revision it rolled back to.
fn revisions_named(r: &StoredServiceDeployment) -> impl Iterator<Item = &str> {
    let d = &r.deployment;
    d.target_service_revision
        .iter()
        .chain(d.source_service_revisions.iter().flatten())
        .filter_map(|s| s.arn.as_deref())
        .chain(
            d.rollback
                .as_ref()
                .and_then(|rb| rb.service_revision_arn.as_deref()),
        )
}

/// Every rollback link of a service: its key and the record id it names.
fn links_of(
    store: &dyn Store,
    cluster: &str,
    service: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let kvs = state::scan(store, &keys::service_deployment_links(cluster, service))?;
    Ok(kvs
        .into_iter()
        .filter_map(|kv| {
            let link = serde_json::from_slice::<DeploymentLink>(&kv.value).ok()?;
            Some((kv.key, link.record_id))
        })
        .collect())
}

/// The store key of a revision ARN (`.../service-revision/<cluster>/<service>/<id>`).
fn revision_key(arn: &str) -> Option<String> {
    let (_, rest) = arn.split_once(":service-revision/")?;
    let mut parts = rest.splitn(3, '/');
    let (cluster, service, id) = (parts.next()?, parts.next()?, parts.next()?);
    Some(keys::service_revision(cluster, service, id))
}

impl crate::ControlPlane {
    /// Deletes the service deployment records that finished more than
    /// `retention_secs` ago and whose deployment the service no longer
    /// has, with their listing entries and links, and the revisions they
    /// name (their own, their sources, the one rolled back to) unless a
    /// remaining record still names them. Each record's deletion
    /// is guarded on the revision it was read at, so a record written
    /// meanwhile is left for the next run. Returns how many were deleted.
    pub fn reap_service_deployments(&self, retention_secs: f64) -> Result<usize, ApiError> {
        let caller = self.internal_caller("berth-service-deployment-reaper");
        let cx = self.cx(&caller);
        let cutoff = cx.now() - retention_secs;
        let mut held = Vec::new();
        for kv in state::scan(cx.store(), keys::SERVICE_DEPLOYMENTS)? {
            let mut parts = kv.key[keys::SERVICE_DEPLOYMENTS.len()..].splitn(3, '/');
            let (Some(cluster), Some(service), Some(_)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<StoredServiceDeployment>(&kv.value) else {
                tracing::warn!(key = %kv.key, "undecodable service deployment record skipped");
                continue;
            };
            held.push(HeldRecord {
                cluster: cluster.to_string(),
                service: service.to_string(),
                mod_revision: kv.mod_revision,
                record,
            });
        }
        let mut services: BTreeSet<(String, String)> = BTreeSet::new();
        for h in &held {
            if is_terminal(h.record.status()) && ended_at(&h.record).is_some_and(|t| t < cutoff) {
                services.insert((h.cluster.clone(), h.service.clone()));
            }
        }
        if services.is_empty() {
            return Ok(0);
        }
        let mut live = BTreeSet::new();
        for (cluster, service) in &services {
            let Some(svc) =
                state::get::<StoredService>(cx.store(), &keys::service(cluster, service))?
            else {
                continue;
            };
            // A deleted service's deployments are over.
            if svc.value.service.status.as_deref() == Some("INACTIVE") {
                continue;
            }
            for d in svc.value.service.deployments.iter().flatten() {
                if let Some(id) = &d.id {
                    live.insert((cluster.clone(), service.clone(), id.clone()));
                }
            }
        }
        let doomed: BTreeSet<usize> = expired(&held, &live, cutoff).into_iter().collect();
        let named: BTreeSet<&str> = held
            .iter()
            .enumerate()
            .filter(|(i, _)| !doomed.contains(i))
            .flat_map(|(_, h)| revisions_named(&h.record))
            .collect();
        // A service's links, read once: (link key, record id it names).
        let mut links: BTreeMap<(&str, &str), Vec<(String, String)>> = BTreeMap::new();
        let mut deleted = 0;
        for &i in &doomed {
            let h = &held[i];
            let (cluster, service, id) =
                (h.cluster.as_str(), h.service.as_str(), h.record.id.as_str());
            let key = keys::service_deployment(cluster, service, id);
            let mut ops = vec![Op::Delete { key: key.clone() }];
            if let Some(created_at) = h.record.deployment.created_at {
                ops.push(Op::Delete {
                    key: keys::service_deployment_order(
                        cluster,
                        service,
                        inverted_micros(created_at),
                        id,
                    ),
                });
            }
            // Its own revision and the ones it came from or rolled back
            // to, unless a record that stays still names them.
            let own = revision_arn(cx.scope(), cluster, service, id);
            let revisions: BTreeSet<&str> = revisions_named(&h.record)
                .chain(std::iter::once(own.as_str()))
                .filter(|arn| !named.contains(arn))
                .collect();
            for arn in revisions {
                if let Some(key) = revision_key(arn) {
                    ops.push(Op::Delete { key });
                }
            }
            let service_links = match links.entry((cluster, service)) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(links_of(cx.store(), cluster, service)?)
                }
            };
            for (key, _) in service_links.iter().filter(|(_, record)| record == id) {
                ops.push(Op::Delete { key: key.clone() });
            }
            let txn = berth_store::Txn {
                compares: vec![berth_store::Compare::ModRevision {
                    key,
                    revision: h.mod_revision,
                }],
                success: ops,
                failure: Vec::new(),
            };
            if cx.store().txn(txn).map_err(state::store_error)?.succeeded {
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                retention_secs,
                "service deployments past their retention deleted"
            );
        }
        Ok(deleted)
    }
}

/// The id of the record (and revision) of a deployment: the number of
/// `ecs-svc/<number>`, or the id with anything outside `[A-Za-z0-9_-]`
/// replaced, so it is one segment of a key and of an ARN.
pub(crate) fn record_id(deployment_id: &str) -> String {
    let raw = deployment_id
        .strip_prefix("ecs-svc/")
        .unwrap_or(deployment_id);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn deployment_arn(scope: &ArnScope, cluster: &str, service: &str, id: &str) -> String {
    scope.arn(
        "ecs",
        &format!("service-deployment/{cluster}/{service}/{id}"),
    )
}

fn revision_arn(scope: &ArnScope, cluster: &str, service: &str, id: &str) -> String {
    scope.arn("ecs", &format!("service-revision/{cluster}/{service}/{id}"))
}

/// The listing index position of a creation time: newest first, to the
/// microsecond (two deployments of one service are never that close).
fn inverted_micros(created_at: f64) -> u64 {
    let us = (created_at * 1_000_000.0).round();
    let us = if us.is_finite() && us > 0.0 {
        // Saturates at the cap: `as` on a float clamps into u64's range.
        (us as u64).min(keys::SERVICE_DEPLOYMENT_ORDER_MAX)
    } else {
        0
    };
    keys::SERVICE_DEPLOYMENT_ORDER_MAX - us
}

/// The container images of a task definition, as a revision lists them.
pub(crate) fn container_images(td: Option<&StoredTaskDefinition>) -> Vec<ContainerImage> {
    td.into_iter()
        .flat_map(|td| td.definition.container_definitions.iter().flatten())
        .map(|c| ContainerImage {
            container_name: c.name.clone(),
            image: c.image.clone(),
            image_digest: None,
        })
        .collect()
}

fn deployments_of(s: &StoredService) -> impl Iterator<Item = &Deployment> {
    s.service
        .deployments
        .iter()
        .flatten()
        .filter(|d| d.status.as_deref() != Some("INACTIVE"))
}

fn find<'a>(s: &'a StoredService, id: &str) -> Option<&'a Deployment> {
    deployments_of(s).find(|d| d.id.as_deref() == Some(id))
}

fn count(n: Option<i32>) -> i32 {
    n.unwrap_or(0).max(0)
}

/// The revision each deployment runs, by deployment id.
fn revisions(known: &Known) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in &known.records {
        if let Some(arn) = r
            .deployment
            .target_service_revision
            .as_ref()
            .and_then(|t| t.arn.clone())
        {
            out.insert(r.deployment_id.clone(), arn);
        }
    }
    for (id, link) in &known.links {
        if let Some(arn) = &link.revision_arn {
            out.insert(id.clone(), arn.clone());
        }
    }
    out
}

/// The summaries of `arns` with the task counts of the deployments (of
/// `after`, except `own`) that run each of them.
fn source_summaries(
    arns: &[String],
    after: &StoredService,
    own: &str,
    revision_of: &BTreeMap<String, String>,
) -> Vec<ServiceRevisionSummary> {
    arns.iter()
        .map(|arn| {
            let mut s = ServiceRevisionSummary {
                arn: Some(arn.clone()),
                requested_task_count: Some(0),
                running_task_count: Some(0),
                pending_task_count: Some(0),
                ..ServiceRevisionSummary::default()
            };
            for d in deployments_of(after) {
                let Some(id) = d.id.as_deref() else { continue };
                if id == own || revision_of.get(id) != Some(arn) {
                    continue;
                }
                let add = |slot: &mut Option<i32>, n: Option<i32>| {
                    *slot = Some(slot.unwrap_or(0).saturating_add(count(n)));
                };
                add(&mut s.requested_task_count, d.desired_count);
                add(&mut s.running_task_count, d.running_count);
                add(&mut s.pending_task_count, d.pending_count);
            }
            s
        })
        .collect()
}

fn breaker_enabled(config: Option<&DeploymentConfiguration>) -> bool {
    config
        .and_then(|c| c.deployment_circuit_breaker)
        .is_some_and(|b| b.enable)
}

fn threshold(desired: Option<i32>) -> i32 {
    let desired = u32::try_from(count(desired)).unwrap_or(0);
    i32::try_from(berth_services::failure_threshold(desired)).unwrap_or(i32::MAX)
}

/// The records and revision of a deployment CreateService or UpdateService
/// just started: `deployment_id` must be in `after`. Its sources are the
/// revisions of the service's other deployments.
pub(crate) fn started(
    scope: &ArnScope,
    after: &StoredService,
    deployment_id: &str,
    known: &Known,
    images: Vec<ContainerImage>,
    now: f64,
) -> Vec<Write> {
    let Some(d) = find(after, deployment_id) else {
        return Vec::new();
    };
    let svc = &after.service;
    let cluster = after.cluster.as_str();
    let service = svc.service_name.as_deref().unwrap_or_default();
    let id = record_id(deployment_id);
    let target_arn = revision_arn(scope, cluster, service, &id);
    let revision = ServiceRevision {
        service_revision_arn: Some(target_arn.clone()),
        service_arn: svc.service_arn.clone(),
        cluster_arn: svc.cluster_arn.clone(),
        task_definition: d.task_definition.clone(),
        capacity_provider_strategy: svc.capacity_provider_strategy.clone(),
        launch_type: d.launch_type.clone().or_else(|| svc.launch_type.clone()),
        platform_version: svc.platform_version.clone(),
        platform_family: svc.platform_family.clone(),
        load_balancers: svc.load_balancers.clone(),
        service_registries: svc.service_registries.clone(),
        network_configuration: svc.network_configuration.clone(),
        container_images: Some(images),
        created_at: Some(now),
        ..ServiceRevision::default()
    };
    let revision_of = revisions(known);
    let mut sources: Vec<String> = Vec::new();
    for other in deployments_of(after) {
        let Some(other_id) = other.id.as_deref() else {
            continue;
        };
        if other_id == deployment_id {
            continue;
        }
        if let Some(arn) = revision_of.get(other_id) {
            if !sources.contains(arn) {
                sources.push(arn.clone());
            }
        }
    }
    let created_at = d.created_at.unwrap_or(now);
    let config = svc.deployment_configuration.clone();
    let mut record = ServiceDeployment {
        service_deployment_arn: Some(deployment_arn(scope, cluster, service, &id)),
        service_arn: svc.service_arn.clone(),
        cluster_arn: svc.cluster_arn.clone(),
        created_at: Some(created_at),
        updated_at: Some(now),
        source_service_revisions: Some(source_summaries(
            &sources,
            after,
            deployment_id,
            &revision_of,
        )),
        target_service_revision: Some(ServiceRevisionSummary {
            arn: Some(target_arn),
            requested_task_count: Some(count(d.desired_count)),
            running_task_count: Some(count(d.running_count)),
            pending_task_count: Some(count(d.pending_count)),
            ..ServiceRevisionSummary::default()
        }),
        status: Some(PENDING.into()),
        alarms: Some(ServiceDeploymentAlarms {
            // Berth does not watch CloudWatch alarms: say so.
            status: Some(DISABLED.into()),
            alarm_names: None,
            triggered_alarm_names: None,
        }),
        deployment_configuration: config,
        ..ServiceDeployment::default()
    };
    record.deployment_circuit_breaker = Some(ServiceDeploymentCircuitBreaker {
        status: Some(
            if breaker_enabled(record.deployment_configuration.as_ref()) {
                MONITORING
            } else {
                DISABLED
            }
            .into(),
        ),
        failure_count: Some(count(d.failed_tasks)),
        threshold: Some(threshold(d.desired_count)),
    });
    vec![
        Write::Revision {
            id: id.clone(),
            revision: Box::new(revision),
        },
        Write::Order {
            id: id.clone(),
            created_at,
        },
        Write::Record(Box::new(StoredServiceDeployment {
            id,
            deployment_id: deployment_id.to_string(),
            rollback_deployment_id: None,
            deployment: record,
        })),
    ]
}

/// The state of one deployment of the service, as a record sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen<'a> {
    pub primary: bool,
    /// `rolloutState`: IN_PROGRESS, COMPLETED or FAILED.
    pub rollout: &'a str,
}

/// What a record's status becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Next {
    pub status: &'static str,
    /// Why it ended, when it ended for another reason than its own rollout
    /// state (which the caller takes from the deployment).
    pub reason: Option<&'static str>,
    /// The circuit breaker stopped it.
    pub triggered: bool,
}

/// The status transition of a record: `own` is its deployment after the
/// change (None when it left the service), `rollback` the deployment that
/// rolls it back (for ROLLBACK_IN_PROGRESS). A rollback that starts in this
/// change is decided by [`sync`], not here.
pub(crate) fn next_status(
    current: &str,
    own: Option<Seen<'_>>,
    rollback: Option<Seen<'_>>,
    service_active: bool,
    actor: Actor,
) -> Option<Next> {
    let to = |status, reason, triggered| {
        Some(Next {
            status,
            reason,
            triggered,
        })
    };
    match current {
        PENDING | IN_PROGRESS => {
            if !service_active {
                return to(STOPPED, Some(REASON_SERVICE_DELETED), false);
            }
            let Some(own) = own else {
                return to(STOPPED, Some(REASON_GONE), false);
            };
            match own.rollout {
                "COMPLETED" => to(SUCCESSFUL, None, false),
                "FAILED" => to(STOPPED, None, true),
                _ if !own.primary => to(STOPPED, Some(REASON_SUPERSEDED), false),
                _ if current == PENDING && actor == Actor::Controller => {
                    to(IN_PROGRESS, None, false)
                }
                _ => None,
            }
        }
        ROLLBACK_IN_PROGRESS => {
            if !service_active {
                return to(STOPPED, Some(REASON_SERVICE_DELETED), true);
            }
            let Some(rb) = rollback else {
                return to(STOPPED, Some(REASON_GONE), true);
            };
            match rb.rollout {
                "COMPLETED" => to(ROLLBACK_SUCCESSFUL, None, true),
                "FAILED" => to(ROLLBACK_FAILED, None, true),
                _ if !rb.primary => to(STOPPED, Some(REASON_SUPERSEDED), true),
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_terminal(status: &str) -> bool {
    !matches!(status, PENDING | IN_PROGRESS | ROLLBACK_IN_PROGRESS)
}

fn seen(d: &Deployment) -> Seen<'_> {
    Seen {
        primary: d.status.as_deref() == Some("PRIMARY"),
        rollout: d.rollout_state.as_deref().unwrap_or("IN_PROGRESS"),
    }
}

/// The record updates a change of the service from `before` to `after`
/// implies; nothing when nothing changed. `known` holds the records of the
/// deployments in either (see [`load`]).
pub(crate) fn sync(
    before: Option<&StoredService>,
    after: &StoredService,
    known: &Known,
    actor: Actor,
    now: f64,
) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut revision_of = revisions(known);
    let service_active = after.service.status.as_deref() == Some("ACTIVE");
    let mut records: Vec<StoredServiceDeployment> = known.records.clone();

    // A rollback the controller started in this change: a new deployment
    // nobody tracks, and the deployment that was PRIMARY before, now FAILED
    // (or already gone, when none of its tasks was left).
    if let (Actor::Controller, Some(before)) = (actor, before) {
        let tracked = |id: &str| {
            records.iter().any(|r| r.deployment_id == id) || known.links.contains_key(id)
        };
        let rollback = deployments_of(after).find(|d| {
            d.status.as_deref() == Some("PRIMARY")
                && d.id
                    .as_deref()
                    .is_some_and(|id| find(before, id).is_none() && !tracked(id))
        });
        let failed = deployments_of(before).find(|d| {
            d.status.as_deref() == Some("PRIMARY")
                && d.rollout_state.as_deref() != Some("FAILED")
                && d.id.as_deref().is_some_and(|id| {
                    find(after, id).is_none_or(|a| a.rollout_state.as_deref() == Some("FAILED"))
                })
        });
        if let (Some(rb), Some(failed)) = (rollback, failed) {
            let failed_id = failed.id.clone().unwrap_or_default();
            let rb_id = rb.id.clone().unwrap_or_default();
            // The revision rolled back to: the newest COMPLETED deployment
            // before the change that runs the rollback's task definition.
            let target = deployments_of(before)
                .filter(|d| {
                    d.rollout_state.as_deref() == Some("COMPLETED")
                        && d.task_definition == rb.task_definition
                })
                .max_by(|a, b| {
                    a.created_at
                        .unwrap_or(0.0)
                        .total_cmp(&b.created_at.unwrap_or(0.0))
                })
                .and_then(|d| d.id.as_deref())
                .and_then(|id| revision_of.get(id).cloned());
            if let Some(r) = records
                .iter_mut()
                .find(|r| r.deployment_id == failed_id && !is_terminal(r.status()))
            {
                let after_failed = find(after, &failed_id);
                let d = &mut r.deployment;
                d.status = Some(ROLLBACK_IN_PROGRESS.into());
                d.status_reason = after_failed
                    .and_then(|a| a.rollout_state_reason.clone())
                    .or_else(|| Some(berth_services::events::REASON_CIRCUIT_BREAKER.to_string()));
                d.started_at.get_or_insert(now);
                d.rollback = Some(Rollback {
                    reason: rb.rollout_state_reason.clone(),
                    started_at: Some(now),
                    service_revision_arn: target.clone(),
                });
                let cb = d
                    .deployment_circuit_breaker
                    .get_or_insert_with(Default::default);
                cb.status = Some(TRIGGERED.into());
                // A failed deployment with no task left is gone from the
                // service already; it failed at the threshold at least.
                let failures = after_failed
                    .map(|a| count(a.failed_tasks))
                    .unwrap_or_else(|| {
                        cb.failure_count.unwrap_or(0).max(cb.threshold.unwrap_or(0))
                    });
                cb.failure_count = Some(failures);
                r.rollback_deployment_id = Some(rb_id.clone());
                let link = DeploymentLink {
                    record_id: r.id.clone(),
                    revision_arn: target.clone(),
                };
                if let Some(arn) = &target {
                    revision_of.insert(rb_id.clone(), arn.clone());
                }
                writes.push(Write::Link {
                    deployment_id: rb_id,
                    link,
                });
            }
        }
    }

    for (r, old) in records.iter_mut().zip(&known.records) {
        if is_terminal(old.status()) {
            continue;
        }
        let own = find(after, &r.deployment_id);
        let rollback = r
            .rollback_deployment_id
            .as_deref()
            .and_then(|id| find(after, id));
        let current: &'static str = match r.status() {
            PENDING => PENDING,
            IN_PROGRESS => IN_PROGRESS,
            ROLLBACK_IN_PROGRESS => ROLLBACK_IN_PROGRESS,
            _ => continue,
        };
        let transition = next_status(
            current,
            own.map(seen),
            rollback.map(seen),
            service_active,
            actor,
        );
        let d = &mut r.deployment;
        if let Some(t) = &transition {
            if actor == Actor::Controller && current == PENDING && t.status != STOPPED {
                d.started_at.get_or_insert(now);
            }
            d.status = Some(t.status.into());
            let ended_by = match t.status {
                ROLLBACK_SUCCESSFUL | ROLLBACK_FAILED => rollback,
                _ => own,
            };
            if let Some(reason) = t.reason {
                d.status_reason = Some(reason.into());
            } else if is_terminal(t.status) && t.status != ROLLBACK_SUCCESSFUL {
                // Why the rollout ended, in the deployment's own words; a
                // successful rollback keeps why it was rolled back.
                if let Some(reason) = ended_by.and_then(|e| e.rollout_state_reason.clone()) {
                    d.status_reason = Some(reason);
                }
            }
            if is_terminal(t.status) {
                d.finished_at.get_or_insert(now);
                if t.status == STOPPED {
                    d.stopped_at.get_or_insert(now);
                }
            }
            let cb = d
                .deployment_circuit_breaker
                .get_or_insert_with(Default::default);
            cb.status = Some(
                if !breaker_enabled(d.deployment_configuration.as_ref()) {
                    DISABLED
                } else if t.triggered {
                    TRIGGERED
                } else if is_terminal(t.status) {
                    MONITORING_COMPLETE
                } else {
                    MONITORING
                }
                .into(),
            );
        }
        // Counts, while the record is open and at the change that ends it.
        if let Some(o) = own {
            let target = d
                .target_service_revision
                .get_or_insert_with(Default::default);
            target.requested_task_count = Some(count(o.desired_count));
            target.running_task_count = Some(count(o.running_count));
            target.pending_task_count = Some(count(o.pending_count));
            let cb = d
                .deployment_circuit_breaker
                .get_or_insert_with(Default::default);
            cb.failure_count = Some(cb.failure_count.unwrap_or(0).max(count(o.failed_tasks)));
            if o.status.as_deref() == Some("PRIMARY") && old.status() != ROLLBACK_IN_PROGRESS {
                cb.threshold = Some(threshold(o.desired_count));
            }
        } else if let Some(target) = d.target_service_revision.as_mut() {
            target.requested_task_count = Some(0);
            target.running_task_count = Some(0);
            target.pending_task_count = Some(0);
        }
        let arns: Vec<String> = d
            .source_service_revisions
            .iter()
            .flatten()
            .filter_map(|s| s.arn.clone())
            .collect();
        if !arns.is_empty() {
            d.source_service_revisions = Some(source_summaries(
                &arns,
                after,
                &r.deployment_id,
                &revision_of,
            ));
        }
    }
    for (r, old) in records.into_iter().zip(&known.records) {
        if &r != old {
            let mut r = r;
            r.deployment.updated_at = Some(now);
            writes.push(Write::Record(Box::new(r)));
        }
    }
    writes
}

/// Reads the records of the deployments of `before` and `after` (their own
/// records, or the record a rollback deployment reports to). An undecodable
/// record is left out with a warning: it must not stop the service.
pub(crate) fn load(
    store: &dyn Store,
    before: Option<&StoredService>,
    after: &StoredService,
) -> Result<Known, ApiError> {
    let cluster = after.cluster.as_str();
    let service = after.service.service_name.as_deref().unwrap_or_default();
    let ids: BTreeSet<String> = before
        .into_iter()
        .flat_map(deployments_of)
        .chain(deployments_of(after))
        .filter_map(|d| d.id.clone())
        .collect();
    let mut known = Known::default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let read = |key: &str| -> Result<Option<StoredServiceDeployment>, ApiError> {
        match store.get(key).map_err(state::store_error)? {
            None => Ok(None),
            Some(kv) => match serde_json::from_slice(&kv.value) {
                Ok(r) => Ok(Some(r)),
                Err(err) => {
                    tracing::warn!(key, error = %err, "undecodable service deployment record skipped");
                    Ok(None)
                }
            },
        }
    };
    for id in ids {
        let rid = record_id(&id);
        if let Some(r) = read(&keys::service_deployment(cluster, service, &rid))? {
            if seen.insert(r.id.clone()) {
                known.records.push(r);
            }
            continue;
        }
        let link_key = keys::service_deployment_link(cluster, service, &rid);
        let Some(kv) = store.get(&link_key).map_err(state::store_error)? else {
            continue;
        };
        let Ok(link) = serde_json::from_slice::<DeploymentLink>(&kv.value) else {
            tracing::warn!(key = %link_key, "undecodable service deployment link skipped");
            continue;
        };
        if let Some(r) = read(&keys::service_deployment(cluster, service, &link.record_id))? {
            if seen.insert(r.id.clone()) {
                known.records.push(r);
            }
        }
        known.links.insert(id, link);
    }
    Ok(known)
}

/// The store ops of `writes`, for the service of `after`.
pub(crate) fn to_ops(after: &StoredService, writes: Vec<Write>) -> Result<Vec<Op>, ApiError> {
    let cluster = after.cluster.as_str();
    let service = after.service.service_name.as_deref().unwrap_or_default();
    writes
        .into_iter()
        .map(|w| match w {
            Write::Record(r) => put_op(keys::service_deployment(cluster, service, &r.id), &*r),
            Write::Revision { id, revision } => {
                put_op(keys::service_revision(cluster, service, &id), &revision)
            }
            Write::Order { id, created_at } => Ok(Op::Put {
                key: keys::service_deployment_order(
                    cluster,
                    service,
                    inverted_micros(created_at),
                    &id,
                ),
                value: Vec::new(),
            }),
            Write::Link {
                deployment_id,
                link,
            } => put_op(
                keys::service_deployment_link(cluster, service, &record_id(&deployment_id)),
                &link,
            ),
        })
        .collect()
}

/// The service controller's hook: the record updates of its write-back
/// from `before` to `after`, to commit with the service.
pub(crate) fn sync_ops(
    cx: &Cx<'_>,
    before: &StoredService,
    after: &StoredService,
    now: f64,
) -> Result<Vec<Op>, ApiError> {
    let known = load(cx.store(), Some(before), after)?;
    to_ops(
        after,
        sync(Some(before), after, &known, Actor::Controller, now),
    )
}

/// The record writes of an API change of a service: updates of the
/// existing records and, when the change started deployment
/// `started_id`, its new records with these container images.
pub(crate) fn api_ops(
    cx: &Cx<'_>,
    before: Option<&StoredService>,
    after: &StoredService,
    started_id: Option<(&str, Vec<ContainerImage>)>,
    now: f64,
) -> Result<Vec<Op>, ApiError> {
    let known = load(cx.store(), before, after)?;
    let mut writes = sync(before, after, &known, Actor::Api, now);
    if let Some((id, images)) = started_id {
        writes.extend(started(cx.scope(), after, id, &known, images, now));
    }
    to_ops(after, writes)
}

// ---------------------------------------------------------------------------
// The operations

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedAtFilter {
    before: Option<f64>,
    after: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListServiceDeploymentsRequest {
    service: Option<String>,
    cluster: Option<String>,
    status: Option<Vec<String>>,
    created_at: Option<CreatedAtFilter>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListServiceDeploymentsResponse {
    service_deployments: Vec<ServiceDeploymentBrief>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list(
    cx: &Cx<'_>,
    req: ListServiceDeploymentsRequest,
) -> Result<ListServiceDeploymentsResponse, ApiError> {
    let name = service_name(required(&req.service, "service")?);
    let statuses = req.status.unwrap_or_default();
    if let Some(bad) = statuses.iter().find(|s| !STATUSES.contains(&s.as_str())) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid status: {bad}. Valid values are [{}].",
            STATUSES.join(", ")
        )));
    }
    let limit = page_size(req.max_results, 20, 100)?;
    let (cluster, _) = active(cx, req.cluster.as_deref())?;
    let service = state::get::<StoredService>(cx.store(), &keys::service(&cluster, &name))?
        .ok_or_else(|| ApiError::new(ErrorCode::ServiceNotFoundException, "Service not found."))?
        .value;
    // Records of an earlier service of the same name (deleted, then created
    // again) are not this service's.
    let since = service.service.created_at.unwrap_or(0.0);
    let (before, after) = match &req.created_at {
        Some(c) => (c.before, c.after),
        None => (None, None),
    };
    let prefix = keys::service_deployment_orders(&cluster, &name);
    let start_after = decode_token(req.next_token.as_deref(), &prefix)?;
    let (service_deployments, next_token) = page(cx.store(), &prefix, start_after, limit, |kv| {
        let Some(id) = kv.key.rsplit('/').next() else {
            return Ok(None);
        };
        let key = keys::service_deployment(&cluster, &name, id);
        let Some(r) = state::get::<StoredServiceDeployment>(cx.store(), &key)? else {
            return Ok(None);
        };
        let d = r.value.deployment;
        let created = d.created_at.unwrap_or(0.0);
        let keep = created >= since
            && before.is_none_or(|b| created < b)
            && after.is_none_or(|a| created > a)
            && (statuses.is_empty() || statuses.iter().any(|s| d.status.as_deref() == Some(s)));
        Ok(keep.then(|| d.brief()))
    })?;
    Ok(ListServiceDeploymentsResponse {
        service_deployments,
        next_token,
    })
}

/// The cluster, service and id of a service-deployment or service-revision
/// ARN (`kind`); None when it is not in this account and region;
/// InvalidParameterException when it is not such an ARN at all.
fn parse_arn(
    cx: &Cx<'_>,
    text: &str,
    kind: &str,
    what: &str,
) -> Result<Option<(String, String, String)>, ApiError> {
    let invalid = || ApiError::invalid_parameter(format!("Invalid {what} ARN: {text}"));
    let arn = Arn::parse(text).ok_or_else(invalid)?;
    let (k, rest) = arn.resource_parts();
    let parts: Vec<&str> = rest.split('/').collect();
    let [cluster, service, id] = parts.as_slice() else {
        return Err(invalid());
    };
    if arn.service != "ecs"
        || k != kind
        || cluster.is_empty()
        || service.is_empty()
        || id.is_empty()
    {
        return Err(invalid());
    }
    if arn.region != cx.scope().region || arn.account_id != cx.scope().account_id {
        return Ok(None);
    }
    Ok(Some((
        cluster.to_string(),
        service.to_string(),
        id.to_string(),
    )))
}

fn check_batch(arns: &Option<Vec<String>>, member: &str) -> Result<Vec<String>, ApiError> {
    let arns = arns.clone().unwrap_or_default();
    if arns.is_empty() || arns.len() > MAX_DESCRIBE {
        return Err(ApiError::invalid_parameter(format!(
            "{member} must have between 1 and {MAX_DESCRIBE} items."
        )));
    }
    Ok(arns)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeServiceDeploymentsRequest {
    service_deployment_arns: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeServiceDeploymentsResponse {
    service_deployments: Vec<ServiceDeployment>,
    failures: Vec<Failure>,
}

pub(crate) fn describe(
    cx: &Cx<'_>,
    req: DescribeServiceDeploymentsRequest,
) -> Result<DescribeServiceDeploymentsResponse, ApiError> {
    let arns = check_batch(&req.service_deployment_arns, "serviceDeploymentArns")?;
    let (found, failures) = fetch_batch(
        cx,
        arns,
        ("service-deployment", "service deployment"),
        keys::service_deployment,
    )?;
    Ok(DescribeServiceDeploymentsResponse {
        service_deployments: found
            .into_iter()
            .map(|r: StoredServiceDeployment| r.deployment)
            .collect(),
        failures,
    })
}

/// The records the ARNs name (resource `kind`, named `label` in errors),
/// each read from the key `key(cluster, service, id)` builds; an ARN that
/// names nothing is a MISSING failure.
fn fetch_batch<T: serde::de::DeserializeOwned>(
    cx: &Cx<'_>,
    arns: Vec<String>,
    (kind, label): (&str, &str),
    key: fn(&str, &str, &str) -> String,
) -> Result<(Vec<T>, Vec<Failure>), ApiError> {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for text in arns {
        let record = match parse_arn(cx, &text, kind, label)? {
            Some((cluster, service, id)) => {
                state::get::<T>(cx.store(), &key(&cluster, &service, &id))?
            }
            None => None,
        };
        match record {
            Some(r) => found.push(r.value),
            None => failures.push(missing(text)),
        }
    }
    Ok((found, failures))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeServiceRevisionsRequest {
    service_revision_arns: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeServiceRevisionsResponse {
    service_revisions: Vec<ServiceRevision>,
    failures: Vec<Failure>,
}

pub(crate) fn describe_revisions(
    cx: &Cx<'_>,
    req: DescribeServiceRevisionsRequest,
) -> Result<DescribeServiceRevisionsResponse, ApiError> {
    let arns = check_batch(&req.service_revision_arns, "serviceRevisionArns")?;
    let (service_revisions, failures) = fetch_batch(
        cx,
        arns,
        ("service-revision", "service revision"),
        keys::service_revision,
    )?;
    Ok(DescribeServiceRevisionsResponse {
        service_revisions,
        failures,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use berth_model::service::{DeploymentCircuitBreaker, Service};
    use berth_store::MemoryStore;
    use serde_json::{json, Value};

    use super::*;
    use crate::{Caller, Config, ControlPlane, ManualClock};

    const T0: f64 = 1_700_000_000.0;

    fn scope() -> ArnScope {
        ArnScope::new("us-east-1", "000000000000")
    }

    fn dep(id: &str, status: &str, rollout: &str, td: &str, desired: i32) -> Deployment {
        Deployment {
            id: Some(id.into()),
            status: Some(status.into()),
            rollout_state: Some(rollout.into()),
            rollout_state_reason: Some(format!("reason of {id} {rollout}")),
            task_definition: Some(td.into()),
            desired_count: Some(desired),
            running_count: Some(0),
            pending_count: Some(0),
            failed_tasks: Some(0),
            created_at: Some(T0),
            ..Deployment::default()
        }
    }

    fn set_rollout(d: &mut Deployment, rollout: &str) {
        d.rollout_state = Some(rollout.into());
        d.rollout_state_reason = Some(format!("reason of {} {rollout}", d.id.as_deref().unwrap()));
    }

    fn service(deployments: Vec<Deployment>, breaker: bool) -> StoredService {
        let scope = scope();
        StoredService {
            cluster: "c".into(),
            service: Service {
                service_arn: Some(scope.service("c", "web")),
                cluster_arn: Some(scope.cluster("c")),
                service_name: Some("web".into()),
                status: Some("ACTIVE".into()),
                launch_type: Some("EC2".into()),
                deployment_configuration: Some(DeploymentConfiguration {
                    deployment_circuit_breaker: Some(DeploymentCircuitBreaker {
                        enable: breaker,
                        rollback: breaker,
                    }),
                    maximum_percent: Some(200),
                    minimum_healthy_percent: Some(100),
                    ..DeploymentConfiguration::default()
                }),
                deployments: Some(deployments),
                ..Service::default()
            },
            controller: Default::default(),
        }
    }

    /// Applies `writes` to `known`, as committing them and loading again
    /// would.
    fn apply(known: &mut Known, writes: &[Write]) {
        for w in writes {
            match w {
                Write::Record(r) => {
                    known.records.retain(|k| k.id != r.id);
                    known.records.push((**r).clone());
                }
                Write::Link {
                    deployment_id,
                    link,
                } => {
                    known.links.insert(deployment_id.clone(), link.clone());
                }
                _ => {}
            }
        }
    }

    fn record<'a>(known: &'a Known, deployment: &str) -> &'a ServiceDeployment {
        &known
            .records
            .iter()
            .find(|r| r.deployment_id == deployment)
            .expect("record")
            .deployment
    }

    fn status<'a>(known: &'a Known, deployment: &str) -> &'a str {
        record(known, deployment).status.as_deref().unwrap_or("")
    }

    fn seen(primary: bool, rollout: &str) -> Option<Seen<'_>> {
        Some(Seen { primary, rollout })
    }

    #[test]
    fn status_transitions() {
        use Actor::{Api, Controller};
        type Row<'a> = (
            &'a str,
            Option<Seen<'a>>,
            Option<Seen<'a>>,
            bool,
            Actor,
            Option<(&'a str, bool)>,
        );
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            // current, own, rollback, service ACTIVE, actor => (status, triggered)
            (PENDING, seen(true, "IN_PROGRESS"), None, true, Controller, Some((IN_PROGRESS, false))),
            (PENDING, seen(true, "IN_PROGRESS"), None, true, Api, None),
            (IN_PROGRESS, seen(true, "IN_PROGRESS"), None, true, Controller, None),
            (IN_PROGRESS, seen(true, "COMPLETED"), None, true, Controller, Some((SUCCESSFUL, false))),
            (PENDING, seen(true, "COMPLETED"), None, true, Controller, Some((SUCCESSFUL, false))),
            (IN_PROGRESS, seen(false, "IN_PROGRESS"), None, true, Api, Some((STOPPED, false))),
            (PENDING, seen(false, "IN_PROGRESS"), None, true, Api, Some((STOPPED, false))),
            (IN_PROGRESS, seen(true, "FAILED"), None, true, Controller, Some((STOPPED, true))),
            (IN_PROGRESS, None, None, true, Controller, Some((STOPPED, false))),
            (IN_PROGRESS, seen(true, "IN_PROGRESS"), None, false, Api, Some((STOPPED, false))),
            (ROLLBACK_IN_PROGRESS, None, seen(true, "IN_PROGRESS"), true, Controller, None),
            (ROLLBACK_IN_PROGRESS, None, seen(true, "COMPLETED"), true, Controller, Some((ROLLBACK_SUCCESSFUL, true))),
            (ROLLBACK_IN_PROGRESS, None, seen(true, "FAILED"), true, Controller, Some((ROLLBACK_FAILED, true))),
            (ROLLBACK_IN_PROGRESS, None, seen(false, "IN_PROGRESS"), true, Api, Some((STOPPED, true))),
            (ROLLBACK_IN_PROGRESS, None, None, true, Controller, Some((STOPPED, true))),
            (ROLLBACK_IN_PROGRESS, None, seen(true, "IN_PROGRESS"), false, Api, Some((STOPPED, true))),
            (SUCCESSFUL, seen(false, "COMPLETED"), None, false, Controller, None),
            (STOPPED, seen(true, "COMPLETED"), None, true, Controller, None),
            (ROLLBACK_SUCCESSFUL, None, seen(true, "FAILED"), true, Controller, None),
            (ROLLBACK_FAILED, None, None, false, Controller, None),
        ];
        for (i, (current, own, rollback, active, actor, want)) in table.into_iter().enumerate() {
            let got = next_status(current, own, rollback, active, actor);
            assert_eq!(
                got.as_ref().map(|n| (n.status, n.triggered)),
                want,
                "row {i}: {current} {own:?} {rollback:?} active={active} {actor:?}"
            );
        }
    }

    #[test]
    fn ids_and_order() {
        assert_eq!(
            record_id("ecs-svc/1234567890123456789"),
            "1234567890123456789"
        );
        assert_eq!(record_id("odd/id:x"), "odd-id-x");
        assert!(inverted_micros(T0 + 1.0) < inverted_micros(T0));
        assert_eq!(
            inverted_micros(f64::NAN),
            keys::SERVICE_DEPLOYMENT_ORDER_MAX
        );
        assert_eq!(inverted_micros(1e300), 0);
        let a = keys::service_deployment_order("c", "s", inverted_micros(T0 + 0.000_001), "9");
        let b = keys::service_deployment_order("c", "s", inverted_micros(T0), "1");
        assert!(a < b, "newer sorts first");
    }

    #[test]
    fn a_started_deployment_gets_a_pending_record_and_a_revision() {
        let after = service(
            vec![dep("ecs-svc/2", "PRIMARY", "IN_PROGRESS", "td:2", 3)],
            true,
        );
        let images = vec![ContainerImage {
            container_name: Some("app".into()),
            image: Some("busybox".into()),
            image_digest: None,
        }];
        let writes = started(&scope(), &after, "ecs-svc/2", &Known::default(), images, T0);
        assert_eq!(writes.len(), 3);
        let Write::Revision { id, revision } = &writes[0] else {
            panic!("{writes:?}")
        };
        assert_eq!(id, "2");
        assert_eq!(
            revision.service_revision_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:service-revision/c/web/2")
        );
        assert_eq!(revision.task_definition.as_deref(), Some("td:2"));
        assert_eq!(revision.launch_type.as_deref(), Some("EC2"));
        assert_eq!(revision.container_images.as_ref().map(Vec::len), Some(1));
        assert!(matches!(&writes[1], Write::Order { id, .. } if id == "2"));
        let Write::Record(r) = &writes[2] else {
            panic!("{writes:?}")
        };
        let d = &r.deployment;
        assert_eq!(
            d.service_deployment_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web/2")
        );
        assert_eq!(d.status.as_deref(), Some(PENDING));
        assert_eq!(d.source_service_revisions, Some(vec![]));
        let target = d.target_service_revision.as_ref().unwrap();
        assert_eq!(target.arn, revision.service_revision_arn);
        assert_eq!(target.requested_task_count, Some(3));
        let cb = d.deployment_circuit_breaker.as_ref().unwrap();
        assert_eq!(
            (cb.status.as_deref(), cb.threshold),
            (Some(MONITORING), Some(3))
        );
        // Not a deployment of the service: nothing.
        assert!(started(&scope(), &after, "ecs-svc/9", &Known::default(), vec![], T0).is_empty());
    }

    /// Create, roll out, update while the first runs, supersede an
    /// unfinished one: every status and time the records go through.
    #[test]
    fn rollout_success_and_supersession() {
        let s = scope();
        let mut known = Known::default();
        let v1 = service(
            vec![dep("ecs-svc/1", "PRIMARY", "IN_PROGRESS", "td:1", 2)],
            false,
        );
        let w = started(&s, &v1, "ecs-svc/1", &known, vec![], T0);
        apply(&mut known, &w);
        assert_eq!(status(&known, "ecs-svc/1"), PENDING);

        // The API changing nothing of it leaves it PENDING, and no write.
        assert!(sync(Some(&v1), &v1, &known, Actor::Api, T0 + 1.0).is_empty());
        // The controller picks it up.
        let mut v1b = v1.clone();
        v1b.service.deployments.as_mut().unwrap()[0].pending_count = Some(2);
        let w = sync(Some(&v1), &v1b, &known, Actor::Controller, T0 + 1.0);
        apply(&mut known, &w);
        let r = record(&known, "ecs-svc/1");
        assert_eq!(r.status.as_deref(), Some(IN_PROGRESS));
        assert_eq!(r.started_at, Some(T0 + 1.0));
        assert_eq!(r.updated_at, Some(T0 + 1.0));
        assert_eq!(
            r.target_service_revision
                .as_ref()
                .unwrap()
                .pending_task_count,
            Some(2)
        );
        assert_eq!(
            r.deployment_circuit_breaker
                .as_ref()
                .unwrap()
                .status
                .as_deref(),
            Some(DISABLED)
        );
        // A pass that changes nothing writes nothing.
        assert!(sync(Some(&v1b), &v1b, &known, Actor::Controller, T0 + 2.0).is_empty());

        let mut done = v1b.clone();
        {
            let d = &mut done.service.deployments.as_mut().unwrap()[0];
            set_rollout(d, "COMPLETED");
            d.running_count = Some(2);
            d.pending_count = Some(0);
        }
        let w = sync(Some(&v1b), &done, &known, Actor::Controller, T0 + 3.0);
        apply(&mut known, &w);
        let r = record(&known, "ecs-svc/1");
        assert_eq!(r.status.as_deref(), Some(SUCCESSFUL));
        assert_eq!(r.finished_at, Some(T0 + 3.0));
        assert_eq!(r.stopped_at, None);
        assert_eq!(
            r.status_reason.as_deref(),
            Some("reason of ecs-svc/1 COMPLETED")
        );
        assert_eq!(
            r.target_service_revision
                .as_ref()
                .unwrap()
                .running_task_count,
            Some(2)
        );

        // UpdateService: deployment 2 starts, 1 is its source.
        let mut v2 = done.clone();
        {
            let list = v2.service.deployments.as_mut().unwrap();
            list[0].status = Some("ACTIVE".into());
            list.insert(0, dep("ecs-svc/2", "PRIMARY", "IN_PROGRESS", "td:2", 2));
        }
        let w = sync(Some(&done), &v2, &known, Actor::Api, T0 + 4.0);
        assert!(w.is_empty(), "a finished record does not change: {w:?}");
        let w = started(&s, &v2, "ecs-svc/2", &known, vec![], T0 + 4.0);
        apply(&mut known, &w);
        let r2 = record(&known, "ecs-svc/2");
        let sources = r2.source_service_revisions.as_ref().unwrap();
        let rev1 = record(&known, "ecs-svc/1")
            .target_service_revision
            .as_ref()
            .unwrap()
            .arn
            .clone();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].arn, rev1);
        assert_eq!(sources[0].running_task_count, Some(2));

        // Another update before 2 finished: 2 is STOPPED.
        let mut v3 = v2.clone();
        {
            let list = v3.service.deployments.as_mut().unwrap();
            list[0].status = Some("ACTIVE".into());
            list.insert(0, dep("ecs-svc/3", "PRIMARY", "IN_PROGRESS", "td:3", 2));
        }
        let w = sync(Some(&v2), &v3, &known, Actor::Api, T0 + 5.0);
        apply(&mut known, &w);
        let r2 = record(&known, "ecs-svc/2");
        assert_eq!(r2.status.as_deref(), Some(STOPPED));
        assert_eq!(r2.stopped_at, Some(T0 + 5.0));
        assert_eq!(r2.finished_at, Some(T0 + 5.0));
        assert_eq!(r2.status_reason.as_deref(), Some(REASON_SUPERSEDED));
        // Deployment 1's tasks drain: the record of 3 counts them among its
        // sources, 2's record is frozen.
        let w = started(&s, &v3, "ecs-svc/3", &known, vec![], T0 + 5.0);
        apply(&mut known, &w);
        assert_eq!(
            record(&known, "ecs-svc/3")
                .source_service_revisions
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        let mut v3b = v3.clone();
        v3b.service.deployments.as_mut().unwrap()[2].running_count = Some(1);
        let w = sync(Some(&v3), &v3b, &known, Actor::Controller, T0 + 6.0);
        apply(&mut known, &w);
        let r3 = record(&known, "ecs-svc/3");
        let src1 = r3
            .source_service_revisions
            .as_ref()
            .unwrap()
            .iter()
            .find(|x| x.arn == rev1)
            .unwrap();
        assert_eq!(src1.running_task_count, Some(1));
        assert_eq!(r3.status.as_deref(), Some(IN_PROGRESS));
        assert_eq!(record(&known, "ecs-svc/2").updated_at, Some(T0 + 5.0));
    }

    /// The circuit breaker fails deployment 2, whose tasks are all gone, and
    /// the controller rolls back to 1 with a new deployment 9.
    #[test]
    fn circuit_breaker_rollback() {
        let s = scope();
        let mut known = Known::default();
        let mut one = dep("ecs-svc/1", "PRIMARY", "COMPLETED", "td:1", 3);
        one.running_count = Some(3);
        let v1 = service(vec![one.clone()], true);
        let w = started(&s, &v1, "ecs-svc/1", &known, vec![], T0);
        apply(&mut known, &w);
        let mut r1 = known.records[0].clone();
        r1.deployment.status = Some(SUCCESSFUL.into());
        known.records = vec![r1];
        let rev1 = record(&known, "ecs-svc/1")
            .target_service_revision
            .as_ref()
            .unwrap()
            .arn
            .clone();

        one.status = Some("ACTIVE".into());
        let mut two = dep("ecs-svc/2", "PRIMARY", "IN_PROGRESS", "td:2", 3);
        two.failed_tasks = Some(1);
        let v2 = service(vec![two.clone(), one.clone()], true);
        let w = started(&s, &v2, "ecs-svc/2", &known, vec![], T0 + 1.0);
        apply(&mut known, &w);
        let w = sync(Some(&v2), &v2, &known, Actor::Controller, T0 + 2.0);
        apply(&mut known, &w);
        assert_eq!(status(&known, "ecs-svc/2"), IN_PROGRESS);

        // The trip: 2 left the list (no task left), 9 is the rollback.
        let mut nine = dep("ecs-svc/9", "PRIMARY", "IN_PROGRESS", "td:1", 3);
        nine.rollout_state_reason = Some("rolling back to ecs-svc/1".into());
        let v3 = service(vec![nine.clone(), one.clone()], true);
        let w = sync(Some(&v2), &v3, &known, Actor::Controller, T0 + 3.0);
        assert!(w
            .iter()
            .any(|w| matches!(w, Write::Link { deployment_id, link }
            if deployment_id == "ecs-svc/9" && link.revision_arn == rev1)));
        apply(&mut known, &w);
        let r2 = record(&known, "ecs-svc/2");
        assert_eq!(r2.status.as_deref(), Some(ROLLBACK_IN_PROGRESS));
        let rb = r2.rollback.as_ref().unwrap();
        assert_eq!(rb.service_revision_arn, rev1);
        assert_eq!(rb.started_at, Some(T0 + 3.0));
        assert_eq!(rb.reason.as_deref(), Some("rolling back to ecs-svc/1"));
        let cb = r2.deployment_circuit_breaker.as_ref().unwrap();
        assert_eq!(cb.status.as_deref(), Some(TRIGGERED));
        assert_eq!(cb.failure_count, Some(3), "at least the threshold");
        assert_eq!(
            r2.target_service_revision
                .as_ref()
                .unwrap()
                .running_task_count,
            Some(0)
        );

        // Later passes reach record 2 through the link (2 is in neither
        // service, see `load`): the rollback's tasks count for revision 1.
        let mut v4 = v3.clone();
        v4.service.deployments.as_mut().unwrap()[0].running_count = Some(2);
        let w = sync(Some(&v3), &v4, &known, Actor::Controller, T0 + 4.0);
        apply(&mut known, &w);
        let src = &record(&known, "ecs-svc/2")
            .source_service_revisions
            .clone()
            .unwrap()[0];
        assert_eq!(src.arn, rev1);
        assert_eq!(
            src.running_task_count,
            Some(5),
            "3 of deployment 1 and 2 of 9"
        );
        assert_eq!(status(&known, "ecs-svc/2"), ROLLBACK_IN_PROGRESS);

        let mut v5 = v4.clone();
        {
            let list = v5.service.deployments.as_mut().unwrap();
            set_rollout(&mut list[0], "COMPLETED");
            list.truncate(1);
        }
        let w = sync(Some(&v4), &v5, &known, Actor::Controller, T0 + 5.0);
        apply(&mut known, &w);
        let r2 = record(&known, "ecs-svc/2");
        assert_eq!(r2.status.as_deref(), Some(ROLLBACK_SUCCESSFUL));
        assert_eq!(r2.finished_at, Some(T0 + 5.0));
        assert_eq!(
            r2.status_reason.as_deref(),
            Some(berth_services::events::REASON_CIRCUIT_BREAKER)
        );
        // The API never takes a new deployment for a rollback.
        let mut fresh = Known::default();
        let w = started(&s, &v2, "ecs-svc/2", &fresh, vec![], T0);
        apply(&mut fresh, &w);
        let w = sync(Some(&v2), &v3, &fresh, Actor::Api, T0);
        assert!(!w.iter().any(|w| matches!(w, Write::Link { .. })), "{w:?}");
    }

    #[test]
    fn a_failure_without_rollback_and_a_deleted_service_stop_the_record() {
        let s = scope();
        let mut known = Known::default();
        let mut cfg = service(
            vec![dep("ecs-svc/1", "PRIMARY", "IN_PROGRESS", "td:1", 1)],
            true,
        );
        cfg.service
            .deployment_configuration
            .as_mut()
            .unwrap()
            .deployment_circuit_breaker = Some(DeploymentCircuitBreaker {
            enable: true,
            rollback: false,
        });
        let w = started(&s, &cfg, "ecs-svc/1", &known, vec![], T0);
        apply(&mut known, &w);
        let mut failed = cfg.clone();
        {
            let d = &mut failed.service.deployments.as_mut().unwrap()[0];
            set_rollout(d, "FAILED");
            d.failed_tasks = Some(3);
        }
        let w = sync(Some(&cfg), &failed, &known, Actor::Controller, T0 + 1.0);
        apply(&mut known, &w);
        let r = record(&known, "ecs-svc/1");
        assert_eq!(r.status.as_deref(), Some(STOPPED));
        assert_eq!(
            r.status_reason.as_deref(),
            Some("reason of ecs-svc/1 FAILED")
        );
        let cb = r.deployment_circuit_breaker.as_ref().unwrap();
        assert_eq!(
            (cb.status.as_deref(), cb.failure_count),
            (Some(TRIGGERED), Some(3))
        );

        let mut known = Known::default();
        let w = started(&s, &cfg, "ecs-svc/1", &known, vec![], T0);
        apply(&mut known, &w);
        let mut deleted = cfg.clone();
        deleted.service.status = Some("DRAINING".into());
        let w = sync(Some(&cfg), &deleted, &known, Actor::Api, T0 + 1.0);
        apply(&mut known, &w);
        let r = record(&known, "ecs-svc/1");
        assert_eq!(r.status.as_deref(), Some(STOPPED));
        assert_eq!(r.status_reason.as_deref(), Some(REASON_SERVICE_DELETED));
        assert_eq!(
            r.deployment_circuit_breaker
                .as_ref()
                .unwrap()
                .status
                .as_deref(),
            Some(MONITORING_COMPLETE)
        );
    }

    // -----------------------------------------------------------------------
    // Through the control plane: the API, the controller's hook, the store.

    struct Plane {
        cp: ControlPlane,
        clock: Arc<ManualClock>,
    }

    fn caller() -> Caller {
        Caller::root("arn:aws:iam::000000000000:root", "AKID")
    }

    impl Plane {
        fn new() -> Self {
            let clock = Arc::new(ManualClock::new(1_700_000_000_000));
            let cp = ControlPlane::new(
                Arc::new(MemoryStore::new()),
                Config::default(),
                clock.clone(),
            );
            Self { cp, clock }
        }

        fn call(&self, op: &str, body: Value) -> Result<Value, ApiError> {
            let out = self.cp.ecs(op, body.to_string().as_bytes(), &caller())?;
            Ok(serde_json::from_slice(&out).unwrap())
        }

        fn ok(&self, op: &str, body: Value) -> Value {
            self.call(op, body)
                .unwrap_or_else(|e| panic!("{op} failed: {e}"))
        }

        fn err(&self, op: &str, body: Value) -> ApiError {
            match self.call(op, body) {
                Ok(v) => panic!("{op} unexpectedly succeeded: {v}"),
                Err(e) => e,
            }
        }

        /// One controller pass, then an agent's answer: tasks of image
        /// `bad` fail to start, others run, tasks told to stop stop.
        fn step(&self) {
            self.clock.advance(1000);
            self.cp.reconcile_services().unwrap();
            self.clock.advance(1000);
            for desired in ["RUNNING", "STOPPED"] {
                let arns = self.ok(
                    "ListTasks",
                    json!({"cluster": "c", "desiredStatus": desired}),
                )["taskArns"]
                    .clone();
                if arns.as_array().is_none_or(Vec::is_empty) {
                    continue;
                }
                let tasks = self.ok("DescribeTasks", json!({"cluster": "c", "tasks": arns}));
                for t in tasks["tasks"].as_array().unwrap() {
                    let last = t["lastStatus"].as_str().unwrap();
                    let bad = t["containers"][0]["image"] == "bad";
                    let to = match (desired, last) {
                        ("STOPPED", "STOPPED") | ("RUNNING", "RUNNING") => continue,
                        ("STOPPED", _) => "STOPPED",
                        _ if bad => "STOPPED",
                        _ => "RUNNING",
                    };
                    self.ok(
                        "SubmitTaskStateChange",
                        json!({"cluster": "c", "task": t["taskArn"], "status": to}),
                    );
                }
            }
        }

        fn list(&self, extra: Value) -> Value {
            let mut body = json!({"cluster": "c", "service": "web"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            self.ok("ListServiceDeployments", body)
        }

        fn statuses(&self) -> Vec<String> {
            self.list(json!({}))["serviceDeployments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["status"].as_str().unwrap().to_string())
                .collect()
        }

        fn run_until(&self, what: &str, done: impl Fn(&Self) -> bool) {
            for _ in 0..30 {
                if done(self) {
                    return;
                }
                self.step();
            }
            panic!("never reached: {what}; deployments {:?}", self.statuses());
        }
    }

    fn setup() -> Plane {
        let p = Plane::new();
        p.ok("CreateCluster", json!({"clusterName": "c"}));
        p.ok(
            "RegisterContainerInstance",
            json!({"cluster": "c", "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192}]}),
        );
        for image in ["good", "good2", "bad"] {
            p.ok(
                "RegisterTaskDefinition",
                json!({"family": image, "containerDefinitions": [
                    {"name": "app", "image": image.trim_end_matches('2'), "memory": 16}]}),
            );
        }
        p
    }

    #[test]
    fn operations_follow_the_service_through_the_controller() {
        let p = setup();
        p.ok(
            "CreateService",
            json!({"cluster": "c", "serviceName": "web", "taskDefinition": "good",
                   "desiredCount": 3, "deploymentConfiguration": {
                       "deploymentCircuitBreaker": {"enable": true, "rollback": true}}}),
        );
        assert_eq!(p.statuses(), ["PENDING"]);
        p.run_until("first rollout", |p| p.statuses() == ["SUCCESSFUL"]);

        p.ok(
            "UpdateService",
            json!({"cluster": "c", "service": "web", "taskDefinition": "good2"}),
        );
        // The manual clock stands still unless moved; real deployments of
        // one service are always apart in time (the listing orders them by
        // creation time, newest first).
        p.clock.advance(1);
        p.ok(
            "UpdateService",
            json!({"cluster": "c", "service": "web", "forceNewDeployment": true}),
        );
        assert_eq!(p.statuses(), ["PENDING", "STOPPED", "SUCCESSFUL"]);
        p.run_until("second rollout", |p| {
            p.statuses() == ["SUCCESSFUL", "STOPPED", "SUCCESSFUL"]
        });

        // A broken revision trips the breaker and rolls back.
        p.ok(
            "UpdateService",
            json!({"cluster": "c", "service": "web", "taskDefinition": "bad"}),
        );
        p.run_until("rollback", |p| p.statuses()[0] == "ROLLBACK_SUCCESSFUL");
        let briefs = p.list(json!({}))["serviceDeployments"].clone();
        let arns: Vec<Value> = briefs
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["serviceDeploymentArn"].clone())
            .collect();
        let out = p.ok(
            "DescribeServiceDeployments",
            json!({"serviceDeploymentArns": [arns[0], arns[1],
                "arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web/404"]}),
        );
        let failed = &out["serviceDeployments"][0];
        let forced = &out["serviceDeployments"][1];
        assert_eq!(failed["status"], "ROLLBACK_SUCCESSFUL");
        assert_eq!(failed["deploymentCircuitBreaker"]["status"], "TRIGGERED");
        assert!(failed["deploymentCircuitBreaker"]["failureCount"].as_i64() >= Some(3));
        assert_eq!(
            failed["rollback"]["serviceRevisionArn"], forced["targetServiceRevision"]["arn"],
            "rolled back to the last successful revision"
        );
        assert_eq!(
            failed["sourceServiceRevisions"][0]["arn"],
            forced["targetServiceRevision"]["arn"]
        );
        assert!(failed["finishedAt"].as_f64() >= failed["rollback"]["startedAt"].as_f64());
        assert_eq!(
            out["failures"],
            json!([{"arn": "arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web/404", "reason": "MISSING"}])
        );
        let revs = p.ok(
            "DescribeServiceRevisions",
            json!({"serviceRevisionArns": [failed["targetServiceRevision"]["arn"],
                "arn:aws:ecs:us-east-1:000000000000:service-revision/c/web/404"]}),
        );
        let rev = &revs["serviceRevisions"][0];
        assert!(rev["taskDefinition"]
            .as_str()
            .unwrap()
            .ends_with("task-definition/bad:1"));
        assert_eq!(
            rev["containerImages"],
            json!([{"containerName": "app", "image": "bad"}])
        );
        assert_eq!(rev["launchType"], "EC2");
        assert_eq!(revs["failures"][0]["reason"], "MISSING");
        // The service runs the good revision again, with no further record.
        let svc = p.ok(
            "DescribeServices",
            json!({"cluster": "c", "services": ["web"]}),
        );
        assert!(svc["services"][0]["taskDefinition"]
            .as_str()
            .unwrap()
            .ends_with("good2:1"));
        assert_eq!(p.statuses().len(), 4);

        // Filters and pages.
        let ok = p.list(json!({"status": ["SUCCESSFUL"]}))["serviceDeployments"].clone();
        assert_eq!(ok.as_array().unwrap().len(), 2);
        let mut seen = Vec::new();
        let mut token: Option<Value> = None;
        loop {
            let mut body = json!({"maxResults": 1});
            if let Some(t) = &token {
                body["nextToken"] = t.clone();
            }
            let page = p.list(body);
            seen.extend(page["serviceDeployments"].as_array().unwrap().clone());
            match page.get("nextToken") {
                Some(t) => token = Some(t.clone()),
                None => break,
            }
        }
        assert_eq!(Value::Array(seen), briefs);
        let first_created = briefs[3]["createdAt"].as_f64().unwrap();
        let newer = p.list(json!({"createdAt": {"after": first_created}}));
        assert_eq!(newer["serviceDeployments"].as_array().unwrap().len(), 3);
        let older = p.list(json!({"createdAt": {"before": first_created + 0.5}}));
        assert_eq!(older["serviceDeployments"], json!([briefs[3]]));

        // Deleting the service stops nothing finished, and lists still work.
        p.ok(
            "DeleteService",
            json!({"cluster": "c", "service": "web", "force": true}),
        );
        assert_eq!(p.statuses().len(), 4);
    }

    #[test]
    fn finished_deployments_are_reaped_after_their_retention() {
        let p = setup();
        p.ok(
            "CreateService",
            json!({"cluster": "c", "serviceName": "web", "taskDefinition": "good", "desiredCount": 2}),
        );
        p.run_until("first rollout", |p| p.statuses() == ["SUCCESSFUL"]);
        p.clock.advance(1);
        p.ok(
            "UpdateService",
            json!({"cluster": "c", "service": "web", "taskDefinition": "good2"}),
        );
        p.run_until("second rollout", |p| {
            p.statuses() == ["SUCCESSFUL", "SUCCESSFUL"]
        });
        let briefs = p.list(json!({}))["serviceDeployments"].clone();
        let (current, old) = (&briefs[0], &briefs[1]);
        let revision = |b: &Value| b["targetServiceRevisionArn"].clone();
        let describe = |arn: &Value| {
            p.ok(
                "DescribeServiceDeployments",
                json!({"serviceDeploymentArns": [arn]}),
            )
        };
        let revisions = |arns: Value| {
            p.ok(
                "DescribeServiceRevisions",
                json!({"serviceRevisionArns": arns}),
            )
        };

        // Within the retention nothing goes.
        assert_eq!(p.cp.reap_service_deployments(3600.0).unwrap(), 0);
        // Past it, the old record goes; the current one is past it too but
        // is still the service's deployment, so it stays.
        p.clock.advance(2 * 3600 * 1000);
        assert_eq!(p.cp.reap_service_deployments(3600.0).unwrap(), 1);
        assert_eq!(p.statuses(), ["SUCCESSFUL"]);
        assert_eq!(
            p.list(json!({}))["serviceDeployments"][0]["serviceDeploymentArn"],
            current["serviceDeploymentArn"]
        );
        assert_eq!(
            describe(&old["serviceDeploymentArn"])["failures"][0]["reason"],
            "MISSING"
        );
        // The old revision stays while the current record names it as its
        // source.
        let src = &describe(&current["serviceDeploymentArn"])["serviceDeployments"][0]
            ["sourceServiceRevisions"][0]["arn"];
        assert_eq!(*src, revision(old));
        let revs = revisions(json!([revision(old), revision(current)]));
        assert_eq!(revs["serviceRevisions"].as_array().unwrap().len(), 2);
        assert_eq!(p.cp.reap_service_deployments(3600.0).unwrap(), 0);

        // Once the service is deleted its last record goes too, and with it
        // both revisions.
        p.ok(
            "DeleteService",
            json!({"cluster": "c", "service": "web", "force": true}),
        );
        for _ in 0..5 {
            p.step();
        }
        p.clock.advance(2 * 3600 * 1000);
        assert_eq!(p.cp.reap_service_deployments(3600.0).unwrap(), 1);
        assert!(p.statuses().is_empty());
        let revs = revisions(json!([revision(old), revision(current)]));
        assert_eq!(revs["serviceRevisions"], json!([]));
        assert_eq!(revs["failures"].as_array().unwrap().len(), 2);
        // Nothing of it is left in the store.
        for prefix in [
            "ecs/service-deployment/",
            "ecs/service-deployment-order/",
            "ecs/service-deployment-link/",
            "ecs/service-revision/",
        ] {
            assert!(
                state::scan(p.cp.inner.store.as_ref(), prefix)
                    .unwrap()
                    .is_empty(),
                "{prefix}"
            );
        }
    }

    #[test]
    fn reaping_picks_finished_records_no_service_still_runs() {
        let rec = |id: &str, status: &str, ended: Option<f64>, rollback: Option<&str>| HeldRecord {
            cluster: "c".into(),
            service: "web".into(),
            mod_revision: 1,
            record: StoredServiceDeployment {
                id: id.into(),
                deployment_id: format!("ecs-svc/{id}"),
                rollback_deployment_id: rollback.map(str::to_string),
                deployment: ServiceDeployment {
                    status: Some(status.into()),
                    finished_at: ended,
                    ..Default::default()
                },
            },
        };
        let records = vec![
            rec("1", SUCCESSFUL, Some(T0), None),
            rec("2", STOPPED, Some(T0), None),
            rec("3", IN_PROGRESS, Some(T0), None),
            rec("4", SUCCESSFUL, Some(T0 + 100.0), None),
            rec("5", SUCCESSFUL, Some(T0), None),
            rec("6", ROLLBACK_SUCCESSFUL, Some(T0), Some("ecs-svc/r6")),
            rec("7", ROLLBACK_FAILED, None, None),
        ];
        let live: BTreeSet<(String, String, String)> = ["ecs-svc/5", "ecs-svc/r6"]
            .iter()
            .map(|id| ("c".to_string(), "web".to_string(), id.to_string()))
            .collect();
        // 1 and 2 are finished, old and gone from the service; 3 is not
        // finished; 4 ended after the cutoff; 5 is still the service's;
        // 6's rollback deployment is still the service's; 7 has no time.
        assert_eq!(expired(&records, &live, T0 + 50.0), vec![0, 1]);
    }

    #[test]
    fn bad_requests() {
        let p = setup();
        p.ok(
            "CreateService",
            json!({"cluster": "c", "serviceName": "web", "taskDefinition": "good", "desiredCount": 0}),
        );
        let code = |op, body| p.err(op, body).code;
        use ErrorCode::*;
        assert_eq!(
            code("ListServiceDeployments", json!({"cluster": "c"})),
            InvalidParameterException
        );
        assert_eq!(
            code(
                "ListServiceDeployments",
                json!({"cluster": "nope", "service": "web"})
            ),
            ClusterNotFoundException
        );
        assert_eq!(
            code(
                "ListServiceDeployments",
                json!({"cluster": "c", "service": "nope"})
            ),
            ServiceNotFoundException
        );
        assert_eq!(
            code(
                "ListServiceDeployments",
                json!({"cluster": "c", "service": "web", "status": ["DONE"]})
            ),
            InvalidParameterException
        );
        assert_eq!(
            code(
                "ListServiceDeployments",
                json!({"cluster": "c", "service": "web", "maxResults": 101})
            ),
            InvalidParameterException
        );
        assert_eq!(
            code(
                "ListServiceDeployments",
                json!({"cluster": "c", "service": "web", "nextToken": "bm9wZQ"})
            ),
            InvalidParameterException
        );
        assert_eq!(
            code(
                "DescribeServiceDeployments",
                json!({"serviceDeploymentArns": []})
            ),
            InvalidParameterException
        );
        assert_eq!(
            code("DescribeServiceDeployments", json!({})),
            InvalidParameterException
        );
        let many: Vec<String> = (0..21)
            .map(|i| format!("arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web/{i}"))
            .collect();
        assert_eq!(
            code(
                "DescribeServiceDeployments",
                json!({"serviceDeploymentArns": many})
            ),
            InvalidParameterException
        );
        assert_eq!(
            code(
                "DescribeServiceDeployments",
                json!({"serviceDeploymentArns": ["web"]})
            ),
            InvalidParameterException
        );
        assert_eq!(
            code(
                "DescribeServiceRevisions",
                json!({"serviceRevisionArns": ["arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web/1"]})
            ),
            InvalidParameterException
        );
        // Another region's ARN is well formed but not here.
        let out = p.ok(
            "DescribeServiceRevisions",
            json!({"serviceRevisionArns": ["arn:aws:ecs:eu-west-1:000000000000:service-revision/c/web/1"]}),
        );
        assert_eq!(out["failures"][0]["reason"], "MISSING");
        // The service as an ARN works like its name.
        let by_arn = p.ok(
            "ListServiceDeployments",
            json!({"cluster": "c", "service": "arn:aws:ecs:us-east-1:000000000000:service/c/web"}),
        );
        assert_eq!(by_arn["serviceDeployments"].as_array().unwrap().len(), 1);
    }
}
