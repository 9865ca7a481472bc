//! TagResource, UntagResource, ListTagsForResource, and the tag rules every
//! taggable resource shares.

use berth_model::arn::Arn;
use berth_model::cluster::Cluster;
use berth_model::common::Tag;
use berth_model::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::container_instances::StoredInstance;
use crate::services::StoredService;
use crate::state::{self, put_op, read_modify_write, Change};
use crate::task_definitions::StoredTaskDefinition;
use crate::{keys, required, Cx};

/// ECS allows this many tags on one resource.
pub(crate) const MAX_TAGS: usize = 50;

/// Tags are checked by the model's rules (shared by every resource).
pub(crate) use berth_model::task_definition::validate_tags;

/// Merges `new` into `existing`: a new value for a key replaces the old one.
pub(crate) fn merge_tags(existing: &[Tag], new: &[Tag]) -> Vec<Tag> {
    let mut out: Vec<Tag> = existing
        .iter()
        .filter(|t| !new.iter().any(|n| n.key == t.key))
        .cloned()
        .collect();
    out.extend(new.iter().cloned());
    out
}

/// A resource that can carry tags, located from its ARN.
enum Target {
    Cluster(String),
    TaskDefinition(String, i64),
    ContainerInstance(String, String),
    Service(String, String),
}

fn target(cx: &Cx<'_>, resource_arn: &str) -> Result<Target, ApiError> {
    let invalid = || ApiError::invalid_parameter(format!("Invalid resource ARN: {resource_arn}"));
    let arn = Arn::parse(resource_arn).ok_or_else(invalid)?;
    if arn.service != "ecs"
        || arn.region != cx.scope().region
        || arn.account_id != cx.scope().account_id
    {
        return Err(invalid());
    }
    match arn.resource_parts() {
        ("cluster", name) if !name.is_empty() => Ok(Target::Cluster(name.to_string())),
        ("task-definition", rest) => {
            let (family, revision) = rest.rsplit_once(':').ok_or_else(invalid)?;
            let revision = revision.parse::<i64>().map_err(|_| invalid())?;
            Ok(Target::TaskDefinition(family.to_string(), revision))
        }
        ("container-instance", rest) => {
            let (cluster, id) = rest.split_once('/').ok_or_else(invalid)?;
            Ok(Target::ContainerInstance(
                cluster.to_string(),
                id.to_string(),
            ))
        }
        ("service", rest) => {
            let (cluster, name) = rest.split_once('/').ok_or_else(invalid)?;
            Ok(Target::Service(cluster.to_string(), name.to_string()))
        }
        _ => Err(invalid()),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::ResourceNotFoundException,
        "The specified resource could not be found.",
    )
}

/// Applies `edit` to the tags of the resource behind `resource_arn`.
fn edit_tags<F>(cx: &Cx<'_>, resource_arn: &str, edit: F) -> Result<(), ApiError>
where
    F: Fn(&[Tag]) -> Result<Vec<Tag>, ApiError>,
{
    let store = cx.store();
    match target(cx, resource_arn)? {
        Target::Cluster(name) => {
            let key = keys::cluster(&name);
            read_modify_write(store, &key, |cur: Option<Cluster>| match cur {
                Some(mut c) if c.status.as_deref() == Some("ACTIVE") => {
                    c.tags = Some(edit(c.tags.as_deref().unwrap_or_default())?);
                    Ok(Change::Write(vec![put_op(key.clone(), &c)?], ()))
                }
                _ => Err(ApiError::cluster_not_found()),
            })
        }
        Target::TaskDefinition(family, revision) => {
            let key = keys::taskdef(&family, revision);
            read_modify_write(store, &key, |cur: Option<StoredTaskDefinition>| match cur {
                Some(mut td) => {
                    td.tags = edit(&td.tags)?;
                    Ok(Change::Write(vec![put_op(key.clone(), &td)?], ()))
                }
                None => Err(not_found()),
            })
        }
        Target::ContainerInstance(cluster, id) => {
            let key = keys::instance(&cluster, &id);
            read_modify_write(store, &key, |cur: Option<StoredInstance>| match cur {
                Some(mut ci) => {
                    ci.instance.tags = Some(edit(ci.instance.tags.as_deref().unwrap_or_default())?);
                    Ok(Change::Write(vec![put_op(key.clone(), &ci)?], ()))
                }
                None => Err(not_found()),
            })
        }
        Target::Service(cluster, name) => {
            let key = keys::service(&cluster, &name);
            read_modify_write(store, &key, |cur: Option<StoredService>| match cur {
                Some(mut s) if s.service.status.as_deref() != Some("INACTIVE") => {
                    s.service.tags = Some(edit(s.service.tags.as_deref().unwrap_or_default())?);
                    Ok(Change::Write(vec![put_op(key.clone(), &s)?], ()))
                }
                _ => Err(not_found()),
            })
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TagResourceRequest {
    resource_arn: Option<String>,
    tags: Option<Vec<Tag>>,
}

#[derive(Serialize)]
pub(crate) struct Empty {}

pub(crate) fn tag(cx: &Cx<'_>, req: TagResourceRequest) -> Result<Empty, ApiError> {
    let arn = required(&req.resource_arn, "resourceArn")?;
    let new = req.tags.unwrap_or_default();
    validate_tags(&new)?;
    edit_tags(cx, arn, |existing| {
        let merged = merge_tags(existing, &new);
        if merged.len() > MAX_TAGS {
            return Err(ApiError::new(
                ErrorCode::LimitExceededException,
                format!("A resource can have at most {MAX_TAGS} tags."),
            ));
        }
        Ok(merged)
    })?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UntagResourceRequest {
    resource_arn: Option<String>,
    tag_keys: Option<Vec<String>>,
}

pub(crate) fn untag(cx: &Cx<'_>, req: UntagResourceRequest) -> Result<Empty, ApiError> {
    let arn = required(&req.resource_arn, "resourceArn")?;
    let remove = req.tag_keys.unwrap_or_default();
    edit_tags(cx, arn, |existing| {
        Ok(existing
            .iter()
            .filter(|t| !remove.iter().any(|k| Some(k.as_str()) == t.key.as_deref()))
            .cloned()
            .collect())
    })?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListTagsForResourceRequest {
    resource_arn: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct ListTagsForResourceResponse {
    tags: Vec<Tag>,
}

pub(crate) fn list(
    cx: &Cx<'_>,
    req: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, ApiError> {
    let arn = required(&req.resource_arn, "resourceArn")?;
    let store = cx.store();
    let missing = || ApiError::invalid_parameter("The specified resource could not be found.");
    let tags = match target(cx, arn)? {
        Target::Cluster(name) => match state::get::<Cluster>(store, &keys::cluster(&name))? {
            Some(c) if c.value.status.as_deref() == Some("ACTIVE") => {
                c.value.tags.unwrap_or_default()
            }
            _ => return Err(ApiError::cluster_not_found()),
        },
        Target::TaskDefinition(family, revision) => {
            state::get::<StoredTaskDefinition>(store, &keys::taskdef(&family, revision))?
                .ok_or_else(missing)?
                .value
                .tags
        }
        Target::ContainerInstance(cluster, id) => {
            state::get::<StoredInstance>(store, &keys::instance(&cluster, &id))?
                .ok_or_else(missing)?
                .value
                .instance
                .tags
                .unwrap_or_default()
        }
        Target::Service(cluster, name) => {
            state::get::<StoredService>(store, &keys::service(&cluster, &name))?
                .ok_or_else(missing)?
                .value
                .service
                .tags
                .unwrap_or_default()
        }
    };
    Ok(ListTagsForResourceResponse { tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn merge_replaces_values() {
        let merged = merge_tags(&[t("a", "1"), t("b", "2")], &[t("b", "3"), t("c", "4")]);
        assert_eq!(merged, vec![t("a", "1"), t("b", "3"), t("c", "4")]);
    }
}
