//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition,
//! DeleteTaskDefinitions.
//!
//! A family record holds the latest revision number, the latest ACTIVE one
//! and how many are ACTIVE; each revision is stored whole, with a small
//! status index beside it so listings never decode whole definitions. Every
//! write updates the family record and the revision in one transaction
//! guarded by the family record's revision, so revisions are dense and never
//! reused, even under concurrent registration.

use berth_model::arn::Arn;
use berth_model::cluster::Failure;
use berth_model::common::Tag;
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;

use berth_model::task_definition::{
    build_task_definition, validate, RegisterTaskDefinitionRequest, Registration, TaskDefinition,
    ValidatedTaskDefinition,
};
use berth_model::ApiError;
use berth_store::{Compare, Op};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::paging::{decode_token, encode_token, page, page_size};
use crate::state::{self, put_op, read_modify_write, Change};
use crate::{include_list, keys, required, Cx};

const ACTIVE: &str = "ACTIVE";
const INACTIVE: &str = "INACTIVE";
const DELETE_IN_PROGRESS: &str = "DELETE_IN_PROGRESS";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredTaskDefinition {
    pub definition: TaskDefinition,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FamilyRecord {
    pub name: String,
    pub latest_revision: i64,
    /// The highest ACTIVE revision, if any.
    pub latest_active: Option<i64>,
    pub active_count: i64,
}

fn unable_to_describe() -> ApiError {
    ApiError::client("Unable to describe task definition.")
}

/// A task definition reference: `family`, `family:revision`, or an ARN.
struct Reference {
    family: String,
    revision: Option<i64>,
}

fn parse_reference(cx: &Cx<'_>, text: &str) -> Result<Reference, ApiError> {
    let body = match Arn::parse(text) {
        Some(arn) => match arn.resource_parts() {
            ("task-definition", rest)
                if arn.service == "ecs"
                    && arn.region == cx.scope().region
                    && arn.account_id == cx.scope().account_id =>
            {
                rest
            }
            _ => return Err(unable_to_describe()),
        },
        None => text,
    };
    match body.rsplit_once(':') {
        Some((family, revision)) => {
            let revision = revision
                .parse::<i64>()
                .ok()
                .filter(|r| *r >= 1)
                .ok_or_else(|| {
                    ApiError::client(format!("Invalid revision number. Number: {revision}"))
                })?;
            Ok(Reference {
                family: family.to_string(),
                revision: Some(revision),
            })
        }
        None => Ok(Reference {
            family: body.to_string(),
            revision: None,
        }),
    }
}

/// Loads the revision a reference names: the given revision, or the latest
/// ACTIVE one of the family.
fn load(cx: &Cx<'_>, reference: &Reference) -> Result<Option<StoredTaskDefinition>, ApiError> {
    let revision = match reference.revision {
        Some(r) => r,
        None => match state::get::<FamilyRecord>(cx.store(), &keys::family(&reference.family))? {
            Some(f) => match f.value.latest_active {
                Some(r) => r,
                None => return Ok(None),
            },
            None => return Ok(None),
        },
    };
    Ok(
        state::get::<StoredTaskDefinition>(
            cx.store(),
            &keys::taskdef(&reference.family, revision),
        )?
        .map(|v| v.value),
    )
}

/// The stored revision a reference (`family`, `family:revision` or ARN)
/// names, if any.
pub(crate) fn load_reference(
    cx: &Cx<'_>,
    text: &str,
) -> Result<Option<StoredTaskDefinition>, ApiError> {
    match parse_reference(cx, text) {
        Ok(reference) => load(cx, &reference),
        Err(_) => Ok(None),
    }
}

/// The ACTIVE revision a reference names: what RunTask, StartTask and
/// services may launch. ClientException when it is missing or inactive.
pub(crate) fn active_task_definition(
    cx: &Cx<'_>,
    reference: &str,
) -> Result<StoredTaskDefinition, ApiError> {
    let stored = load_reference(cx, reference)?
        .ok_or_else(|| ApiError::client("TaskDefinition not found."))?;
    if stored.definition.status.as_deref() != Some("ACTIVE") {
        return Err(ApiError::client(format!(
            "TaskDefinition is inactive: {}",
            stored
                .definition
                .task_definition_arn
                .as_deref()
                .unwrap_or(reference)
        )));
    }
    Ok(stored)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskDefinitionResponse {
    task_definition: TaskDefinition,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<Tag>>,
}

/// One registration waiting for its family's next commit.
struct Pending {
    req: RegisterTaskDefinitionRequest,
    validated: ValidatedTaskDefinition,
    principal: String,
    reply: mpsc::SyncSender<Result<StoredTaskDefinition, ApiError>>,
}

/// Combines concurrent registrations into one family into one transaction.
///
/// Revisions of a family are dense, so registrations into it are ordered
/// through the family record; committing them one by one would cost one
/// durable commit each. Instead each caller queues its registration and
/// takes the family lock; whoever holds the lock commits everything queued
/// for the family at once (flat combining) and answers the others, who find
/// their answer waiting when they get the lock.
#[derive(Debug, Default)]
pub(crate) struct Combiner {
    queues: Mutex<HashMap<String, VecDeque<Pending>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("family", &self.req.family)
            .finish_non_exhaustive()
    }
}

/// At most this many registrations go into one transaction.
const MAX_COMBINED: usize = 128;

impl Combiner {
    fn push(&self, pending: Pending) {
        self.queues
            .lock()
            .entry(pending.req.family.clone())
            .or_default()
            .push_back(pending);
    }

    fn take(&self, family: &str) -> Vec<Pending> {
        let mut queues = self.queues.lock();
        let Some(queue) = queues.get_mut(family) else {
            return Vec::new();
        };
        let n = queue.len().min(MAX_COMBINED);
        let batch: Vec<Pending> = queue.drain(..n).collect();
        if queue.is_empty() {
            queues.remove(family);
        }
        batch
    }
}

pub(crate) fn register(
    cx: &Cx<'_>,
    req: RegisterTaskDefinitionRequest,
) -> Result<TaskDefinitionResponse, ApiError> {
    let validated = validate(&req)?;
    let family = req.family.clone();
    let family_key = keys::family(&family);
    let (reply, answer) = mpsc::sync_channel(1);
    let principal = cx.caller().principal_arn.clone();
    cx.registrations().push(Pending {
        req,
        validated,
        principal,
        reply,
    });
    let stored = {
        let _guard = cx.locks().lock(&family_key);
        loop {
            if let Ok(result) = answer.try_recv() {
                break result?;
            }
            let batch = cx.registrations().take(&family);
            if batch.is_empty() {
                // Ours was taken by a holder of the lock before us, who
                // answered before releasing it; nothing can be left.
                break answer
                    .try_recv()
                    .map_err(|_| ApiError::server("registration was lost, try again"))??;
            }
            commit_registrations(cx, &family, batch);
        }
    };
    tracing::info!(
        family = %family,
        revision = stored.definition.revision.unwrap_or_default(),
        "task definition registered"
    );
    Ok(TaskDefinitionResponse {
        task_definition: stored.definition,
        tags: Some(stored.tags),
    })
}

/// Commits a batch of registrations into one family in one transaction and
/// answers each of them.
fn commit_registrations(cx: &Cx<'_>, family: &str, batch: Vec<Pending>) {
    let family_key = keys::family(family);
    let result = read_modify_write(cx.store(), &family_key, |current: Option<FamilyRecord>| {
        let mut record = current.unwrap_or_else(|| FamilyRecord {
            name: family.to_string(),
            ..Default::default()
        });
        let mut ops = Vec::with_capacity(batch.len() * 2 + 1);
        let mut stored_all = Vec::with_capacity(batch.len());
        let now = cx.now();
        for pending in &batch {
            let revision = record.latest_revision + 1;
            let revision_i32 = i32::try_from(revision).map_err(|_| {
                ApiError::client("The family has reached the maximum number of revisions.")
            })?;
            let registration = Registration {
                revision: revision_i32,
                task_definition_arn: cx.scope().task_definition(family, revision),
                registered_at: now,
                registered_by: Some(pending.principal.clone()),
            };
            let definition = build_task_definition(&pending.req, &pending.validated, &registration);
            record.latest_revision = revision;
            record.latest_active = Some(revision);
            record.active_count += 1;
            let stored = StoredTaskDefinition {
                definition,
                tags: pending.req.tags.clone().unwrap_or_default(),
            };
            ops.push(put_op(keys::taskdef(family, revision), &stored)?);
            ops.push(Op::Put {
                key: keys::taskdef_status(family, revision),
                value: ACTIVE.as_bytes().to_vec(),
            });
            stored_all.push(stored);
        }
        ops.push(put_op(family_key.clone(), &record)?);
        Ok(Change::Write(ops, stored_all))
    });
    match result {
        Ok(stored_all) => {
            for (pending, stored) in batch.into_iter().zip(stored_all) {
                // A caller that gave up no longer listens; nothing to do.
                let _ = pending.reply.send(Ok(stored));
            }
        }
        Err(err) => {
            for pending in batch {
                let _ = pending.reply.send(Err(err.clone()));
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeTaskDefinitionRequest {
    task_definition: Option<String>,
    include: Option<Vec<String>>,
}

pub(crate) fn describe(
    cx: &Cx<'_>,
    req: DescribeTaskDefinitionRequest,
) -> Result<TaskDefinitionResponse, ApiError> {
    let text = required(&req.task_definition, "taskDefinition")?;
    let include_tags = include_list(req.include, &["TAGS"])?
        .iter()
        .any(|f| f == "TAGS");
    let reference = parse_reference(cx, text)?;
    let stored = load(cx, &reference)?.ok_or_else(unable_to_describe)?;
    Ok(TaskDefinitionResponse {
        task_definition: stored.definition,
        tags: include_tags.then_some(stored.tags),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListTaskDefinitionsRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListTaskDefinitionsResponse {
    task_definition_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// Splits a status-index key into family and revision.
fn index_parts(key: &str) -> Option<(&str, i64)> {
    let rest = key.strip_prefix(keys::TASKDEF_STATUS)?;
    let (family, revision) = rest.rsplit_once('/')?;
    Some((family, revision.parse().ok()?))
}

pub(crate) fn list(
    cx: &Cx<'_>,
    req: ListTaskDefinitionsRequest,
) -> Result<ListTaskDefinitionsResponse, ApiError> {
    let status = req.status.as_deref().unwrap_or(ACTIVE);
    if !matches!(status, ACTIVE | INACTIVE | DELETE_IN_PROGRESS) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid status: {status}. Valid values are [ACTIVE, INACTIVE, DELETE_IN_PROGRESS]."
        )));
    }
    let descending = match req.sort.as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(other) => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid sort: {other}. Valid values are [ASC, DESC]."
            )))
        }
    };
    let limit = page_size(req.max_results, 100, 100)?;
    // familyPrefix names one whole family, as in ECS.
    let prefix = match req.family_prefix.as_deref().filter(|f| !f.is_empty()) {
        Some(family) => keys::taskdef_statuses(family),
        None => keys::TASKDEF_STATUS.to_string(),
    };
    let after = decode_token(req.next_token.as_deref(), &prefix)?;
    let matching = |kv: &berth_store::KeyValue| kv.value == status.as_bytes();
    let page_keys: Vec<String>;
    let more;
    if descending {
        let mut all: Vec<String> = state::scan(cx.store(), &prefix)?
            .into_iter()
            .filter(|kv| matching(kv))
            .map(|kv| kv.key)
            .filter(|k| after.as_deref().is_none_or(|a| k.as_str() < a))
            .collect();
        all.reverse();
        more = all.len() > limit;
        all.truncate(limit);
        page_keys = all;
    } else {
        let (keys, token) = page(cx.store(), &prefix, after, limit, |kv| {
            Ok(matching(kv).then(|| kv.key.clone()))
        })?;
        more = token.is_some();
        page_keys = keys;
    }
    let next_token = if more {
        page_keys.last().map(|k| encode_token(k))
    } else {
        None
    };
    let arns = page_keys
        .iter()
        .filter_map(|k| index_parts(k))
        .map(|(family, revision)| cx.scope().task_definition(family, revision))
        .collect();
    Ok(ListTaskDefinitionsResponse {
        task_definition_arns: arns,
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListTaskDefinitionFamiliesRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListTaskDefinitionFamiliesResponse {
    families: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) fn list_families(
    cx: &Cx<'_>,
    req: ListTaskDefinitionFamiliesRequest,
) -> Result<ListTaskDefinitionFamiliesResponse, ApiError> {
    let status = req.status.as_deref().unwrap_or(ACTIVE);
    if !matches!(status, ACTIVE | INACTIVE | "ALL") {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid status: {status}. Valid values are [ACTIVE, INACTIVE, ALL]."
        )));
    }
    let limit = page_size(req.max_results, 100, 100)?;
    let prefix = format!(
        "{}{}",
        keys::FAMILIES,
        req.family_prefix.as_deref().unwrap_or("")
    );
    let start_after = decode_token(req.next_token.as_deref(), keys::FAMILIES)?;
    let (families, next_token) = page(cx.store(), &prefix, start_after, limit, |kv| {
        let f: FamilyRecord = state::decode(kv)?;
        let keep = match status {
            ACTIVE => f.active_count > 0,
            INACTIVE => f.active_count == 0,
            _ => true,
        };
        Ok(keep.then_some(f.name))
    })?;
    Ok(ListTaskDefinitionFamiliesResponse {
        families,
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeregisterTaskDefinitionRequest {
    task_definition: Option<String>,
}

/// The highest ACTIVE revision of a family other than `except`.
fn latest_active_except(cx: &Cx<'_>, family: &str, except: i64) -> Result<Option<i64>, ApiError> {
    let mut best = None;
    for kv in state::scan(cx.store(), &keys::taskdef_statuses(family))? {
        if kv.value == ACTIVE.as_bytes() {
            if let Some((_, revision)) = index_parts(&kv.key) {
                if revision != except {
                    best = Some(revision);
                }
            }
        }
    }
    Ok(best)
}

/// Moves one revision from ACTIVE to another status, keeping the family
/// record right, in one guarded transaction.
fn change_status<F>(
    cx: &Cx<'_>,
    reference: &Reference,
    allowed_from: &[&str],
    mut apply: F,
) -> Result<Result<StoredTaskDefinition, String>, ApiError>
where
    F: FnMut(&mut TaskDefinition),
{
    let Some(revision) = reference.revision else {
        return Err(ApiError::client(
            "A revision number is required: use family:revision or the full ARN.",
        ));
    };
    let family = &reference.family;
    let family_key = keys::family(family);
    let td_key = keys::taskdef(family, revision);
    let _guard = cx.locks().lock(&family_key);
    read_modify_write(cx.store(), &family_key, |record: Option<FamilyRecord>| {
        let current = state::get::<StoredTaskDefinition>(cx.store(), &td_key)?;
        let (Some(mut record), Some(current)) = (record, current) else {
            return Ok(Change::Keep(Err("not found".to_string())));
        };
        let mut stored = current.value;
        let status = stored.definition.status.clone().unwrap_or_default();
        if !allowed_from.contains(&status.as_str()) {
            return Ok(Change::Keep(Err(status)));
        }
        let was_active = status == ACTIVE;
        apply(&mut stored.definition);
        let new_status = stored.definition.status.clone().unwrap_or_default();
        if was_active && new_status != ACTIVE {
            record.active_count -= 1;
            if record.latest_active == Some(revision) {
                record.latest_active = latest_active_except(cx, family, revision)?;
            }
        }
        let guard = Compare::ModRevision {
            key: td_key.clone(),
            revision: current.mod_revision,
        };
        let ops = vec![
            put_op(family_key.clone(), &record)?,
            put_op(td_key.clone(), &stored)?,
            Op::Put {
                key: keys::taskdef_status(family, revision),
                value: new_status.into_bytes(),
            },
        ];
        Ok(Change::WriteGuarded(vec![guard], ops, Ok(stored)))
    })
}

pub(crate) fn deregister(
    cx: &Cx<'_>,
    req: DeregisterTaskDefinitionRequest,
) -> Result<TaskDefinitionResponse, ApiError> {
    let text = required(&req.task_definition, "taskDefinition")?;
    let reference = parse_reference(cx, text)?;
    if reference.revision.is_none() {
        return Err(ApiError::client(
            "Invalid revision number. A task definition must be deregistered as family:revision or by ARN.",
        ));
    }
    let now = cx.now();
    match change_status(cx, &reference, &[ACTIVE], |td| {
        td.status = Some(INACTIVE.into());
        td.deregistered_at = Some(now);
    })? {
        Ok(stored) => Ok(TaskDefinitionResponse {
            task_definition: stored.definition,
            tags: None,
        }),
        Err(status) if status == "not found" => Err(unable_to_describe()),
        Err(_) => {
            // Already INACTIVE or being deleted: answer with it as it is.
            let stored = load(cx, &reference)?.ok_or_else(unable_to_describe)?;
            Ok(TaskDefinitionResponse {
                task_definition: stored.definition,
                tags: None,
            })
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteTaskDefinitionsRequest {
    task_definitions: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteTaskDefinitionsResponse {
    task_definitions: Vec<TaskDefinition>,
    failures: Vec<Failure>,
}

pub(crate) fn delete(
    cx: &Cx<'_>,
    req: DeleteTaskDefinitionsRequest,
) -> Result<DeleteTaskDefinitionsResponse, ApiError> {
    let refs = req.task_definitions.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "taskDefinitions must have between 1 and 10 items.",
        ));
    }
    let now = cx.now();
    let mut out = DeleteTaskDefinitionsResponse {
        task_definitions: Vec::new(),
        failures: Vec::new(),
    };
    for text in refs {
        let failure = |reason: &str| Failure {
            arn: Some(text.clone()),
            reason: Some(reason.to_string()),
            detail: None,
        };
        let reference = match parse_reference(cx, &text) {
            Ok(r) if r.revision.is_some() => r,
            _ => {
                out.failures.push(failure("The specified task definition identifier is invalid. Specify a valid name or ARN and try again."));
                continue;
            }
        };
        match change_status(cx, &reference, &[INACTIVE], |td| {
            td.status = Some(DELETE_IN_PROGRESS.into());
            td.delete_requested_at = Some(now);
        })? {
            Ok(stored) => out.task_definitions.push(stored.definition),
            Err(status) if status == DELETE_IN_PROGRESS => {
                if let Some(stored) = load(cx, &reference)? {
                    out.task_definitions.push(stored.definition);
                }
            }
            Err(status) if status == ACTIVE => out.failures.push(failure(
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
            )),
            Err(_) => out.failures.push(failure("The specified task definition does not exist.")),
        }
    }
    Ok(out)
}
