//! The Docker labels Berth puts on every container it starts, so that an
//! agent restarted while its tasks run finds them again, and label filters
//! used to list and watch only those containers.
//!
//! Berth writes its own `com.berth.*` labels and, for tools that know the
//! ECS agent's conventions, the `com.amazonaws.ecs.*` equivalents.

use std::collections::BTreeMap;

/// The cluster name the task runs in.
pub const CLUSTER: &str = "com.berth.cluster";
/// The full task ARN.
pub const TASK_ARN: &str = "com.berth.task-arn";
/// The container's name in the task definition.
pub const CONTAINER_NAME: &str = "com.berth.container-name";
/// The task definition family.
pub const TASK_DEFINITION_FAMILY: &str = "com.berth.task-definition-family";
/// The task definition revision.
pub const TASK_DEFINITION_REVISION: &str = "com.berth.task-definition-revision";
/// The container instance ARN of the agent that created the container.
pub const CONTAINER_INSTANCE_ARN: &str = "com.berth.container-instance-arn";
/// Present on every container Berth manages; value "true".
pub const MANAGED: &str = "com.berth.managed";

/// The ECS agent's equivalents.
pub const ECS_CLUSTER: &str = "com.amazonaws.ecs.cluster";
pub const ECS_TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
pub const ECS_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
pub const ECS_TASK_DEFINITION_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
pub const ECS_TASK_DEFINITION_VERSION: &str = "com.amazonaws.ecs.task-definition-version";

/// The identity of a task's container, turned into the full label set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLabels<'a> {
    pub cluster: &'a str,
    pub task_arn: &'a str,
    pub container_name: &'a str,
    pub family: &'a str,
    pub revision: i64,
}

impl TaskLabels<'_> {
    /// Both Berth's labels and the ECS agent's equivalents, plus [`MANAGED`].
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let revision = self.revision.to_string();
        [
            (MANAGED, "true"),
            (CLUSTER, self.cluster),
            (TASK_ARN, self.task_arn),
            (CONTAINER_NAME, self.container_name),
            (TASK_DEFINITION_FAMILY, self.family),
            (TASK_DEFINITION_REVISION, revision.as_str()),
            (ECS_CLUSTER, self.cluster),
            (ECS_TASK_ARN, self.task_arn),
            (ECS_CONTAINER_NAME, self.container_name),
            (ECS_TASK_DEFINITION_FAMILY, self.family),
            (ECS_TASK_DEFINITION_VERSION, revision.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// A conjunction of label conditions: every one must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelFilter {
    conditions: Vec<(String, Option<String>)>,
}

impl LabelFilter {
    /// Matches everything.
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches Berth's containers: those labelled [`MANAGED`]`=true`.
    pub fn managed() -> Self {
        Self::any().with(MANAGED, "true")
    }

    /// Adds the condition "label `key` has value `value`".
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.conditions.push((key.into(), Some(value.into())));
        self
    }

    /// Adds the condition "label `key` is present".
    pub fn has(mut self, key: impl Into<String>) -> Self {
        self.conditions.push((key.into(), None));
        self
    }

    pub fn conditions(&self) -> &[(String, Option<String>)] {
        &self.conditions
    }

    /// Docker's `label` filter values: `key` or `key=value`.
    pub fn docker_filters(&self) -> Vec<String> {
        self.conditions
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect()
    }

    /// Whether a label set satisfies every condition.
    pub fn matches<'a, I>(&self, labels: I) -> bool
    where
        I: IntoIterator<Item = (&'a String, &'a String)> + Clone,
    {
        self.conditions.iter().all(|(key, want)| {
            labels
                .clone()
                .into_iter()
                .any(|(k, v)| k == key && want.as_ref().is_none_or(|w| w == v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_all_conditions() {
        let labels: BTreeMap<String, String> = TaskLabels {
            cluster: "default",
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/abc",
            container_name: "web",
            family: "web",
            revision: 3,
        }
        .to_map();
        assert!(LabelFilter::managed()
            .with(CLUSTER, "default")
            .matches(&labels));
        assert!(LabelFilter::any().has(TASK_ARN).matches(&labels));
        assert!(!LabelFilter::managed()
            .with(CLUSTER, "other")
            .matches(&labels));
        assert!(!LabelFilter::any().has("nope").matches(&labels));
        assert_eq!(
            labels.get(ECS_TASK_DEFINITION_VERSION).map(String::as_str),
            Some("3")
        );
        assert_eq!(
            LabelFilter::managed().has(TASK_ARN).docker_filters(),
            vec!["com.berth.managed=true".to_string(), TASK_ARN.to_string()]
        );
    }
}
