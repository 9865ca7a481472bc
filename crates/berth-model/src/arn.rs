//! Amazon Resource Names in the shape AWS gives them, for the account and
//! region Berth is configured with.

use std::fmt;

/// The partition, region and account every ARN Berth mints carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnScope {
    pub partition: String,
    pub region: String,
    pub account_id: String,
}

impl ArnScope {
    pub fn new(region: impl Into<String>, account_id: impl Into<String>) -> Self {
        Self {
            partition: "aws".into(),
            region: region.into(),
            account_id: account_id.into(),
        }
    }

    /// `arn:aws:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{}:{}:{}:{}",
            self.partition, service, self.region, self.account_id, resource
        )
    }

    pub fn cluster(&self, name: &str) -> String {
        self.arn("ecs", &format!("cluster/{name}"))
    }

    pub fn task_definition(&self, family: &str, revision: i64) -> String {
        self.arn("ecs", &format!("task-definition/{family}:{revision}"))
    }

    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        self.arn("ecs", &format!("container-instance/{cluster}/{id}"))
    }

    pub fn task(&self, cluster: &str, id: &str) -> String {
        self.arn("ecs", &format!("task/{cluster}/{id}"))
    }

    pub fn service(&self, cluster: &str, name: &str) -> String {
        self.arn("ecs", &format!("service/{cluster}/{name}"))
    }

    /// The root principal of the account.
    pub fn root_principal(&self) -> String {
        format!("arn:{}:iam::{}:root", self.partition, self.account_id)
    }
}

/// A parsed ARN. Only the shape is checked, not that the resource exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    /// Everything after the fifth colon, e.g. `cluster/default`.
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Parses `arn:partition:service:region:account:resource`; `None` if the
    /// text does not have that shape.
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let partition = parts.next()?;
        let service = parts.next()?;
        let region = parts.next()?;
        let account_id = parts.next()?;
        let resource = parts.next()?;
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return None;
        }
        Some(Self {
            partition,
            service,
            region,
            account_id,
            resource,
        })
    }

    /// The resource type and the rest: `cluster/default` gives
    /// `("cluster", "default")`.
    pub fn resource_parts(&self) -> (&'a str, &'a str) {
        match self.resource.split_once('/') {
            Some((kind, rest)) => (kind, rest),
            None => (self.resource, ""),
        }
    }
}

impl fmt::Display for Arn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account_id, self.resource
        )
    }
}

/// The name of a cluster given either as a name or as a cluster ARN.
pub fn cluster_name(reference: &str) -> &str {
    match Arn::parse(reference) {
        Some(arn) if arn.service == "ecs" => match arn.resource_parts() {
            ("cluster", name) => name,
            _ => reference,
        },
        _ => reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_and_parses() {
        let scope = ArnScope::new("us-east-1", "000000000000");
        let arn = scope.cluster("default");
        assert_eq!(arn, "arn:aws:ecs:us-east-1:000000000000:cluster/default");
        let parsed = Arn::parse(&arn).map(|a| a.resource_parts());
        assert_eq!(parsed, Some(("cluster", "default")));
        assert_eq!(cluster_name(&arn), "default");
        assert_eq!(cluster_name("prod"), "prod");
        assert_eq!(
            scope.task_definition("web", 3),
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"
        );
    }

    #[test]
    fn rejects_non_arns() {
        assert!(Arn::parse("cluster/default").is_none());
        assert!(Arn::parse("arn:aws:ecs").is_none());
        assert!(Arn::parse("arn::ecs:r:a:x").is_none());
    }
}
