//! From a task and its task definition to the runtime's container specs:
//! which ECS container-definition fields become which Docker settings.
//! Pure; the host ports come from the task's network bindings, which the
//! placement engine chose.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use berth_model::task::Task;
use berth_model::task_definition::{ContainerDefinition, TaskDefinition};
use berth_runtime::labels;
use berth_runtime::{
    ContainerSpec, ExtraHost, HealthCheck, Mount, MountSource, NetworkMode, PortMapping, Protocol,
    Ulimit, VolumeSpec,
};

use crate::reconcile::{Condition, DesiredContainer};

/// Settings of this host that shape every container.
#[derive(Clone, Debug)]
pub struct HostSettings {
    pub cluster: String,
    pub container_instance_arn: String,
    /// The address host ports are bound on.
    pub bind_ip: IpAddr,
    /// Where containers reach the task metadata endpoint (see
    /// [`crate::metadata::bind`]) and the key of their ids; `None` when the
    /// agent serves no metadata.
    pub metadata: Option<crate::metadata::MetadataEndpoint>,
}

/// Why a container could not be described to the runtime.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("container {0} is not in the task definition")]
    UnknownContainer(String),
    #[error("mount point of container {container} names unknown volume {volume}")]
    UnknownVolume { container: String, volume: String },
}

/// The id part of a task ARN.
pub fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

/// The runtime name of a task's container: unique per host.
pub fn runtime_name(task_arn: &str, container: &str) -> String {
    format!("berth-{}-{}", task_id(task_arn), container)
}

/// The reconciler's view of a task's containers.
pub fn desired_containers(task: &Task, td: &TaskDefinition) -> Vec<DesiredContainer> {
    td.container_definitions
        .iter()
        .flatten()
        .map(|c| {
            let name = c.name.clone().unwrap_or_default();
            let reported = task
                .containers
                .iter()
                .flatten()
                .find(|tc| tc.name.as_deref() == Some(name.as_str()))
                .and_then(|tc| tc.last_status.clone())
                .unwrap_or_else(|| "PENDING".into());
            DesiredContainer {
                name,
                essential: c.essential.unwrap_or(true),
                stop_timeout_secs: c.stop_timeout.map_or(30, |t| t.max(0) as u64),
                depends_on: c
                    .depends_on
                    .iter()
                    .flatten()
                    .filter_map(|d| {
                        Some((d.container_name.clone(), Condition::parse(&d.condition)?))
                    })
                    .collect(),
                reported,
            }
        })
        .collect()
}

/// The runtime spec of container `name` of `task`.
pub fn container_spec(
    host: &HostSettings,
    task: &Task,
    td: &TaskDefinition,
    name: &str,
) -> Result<ContainerSpec, SpecError> {
    let task_arn = task.task_arn.clone().unwrap_or_default();
    let c: &ContainerDefinition = td
        .container_definitions
        .iter()
        .flatten()
        .find(|c| c.name.as_deref() == Some(name))
        .ok_or_else(|| SpecError::UnknownContainer(name.to_string()))?;
    let overrides = task
        .overrides
        .as_ref()
        .and_then(|o| o.container_overrides.as_ref())
        .and_then(|list| list.iter().find(|o| o.name.as_deref() == Some(name)));
    let network_mode = match td.network_mode.as_deref() {
        Some("host") => NetworkMode::Host,
        Some("none") => NetworkMode::None,
        _ => NetworkMode::Bridge,
    };

    let mut env: Vec<(String, String)> = c
        .environment
        .iter()
        .flatten()
        .filter_map(|kv| Some((kv.name.clone()?, kv.value.clone().unwrap_or_default())))
        .collect();
    if let Some(o) = overrides {
        env.extend(
            o.environment
                .iter()
                .flatten()
                .filter_map(|kv| Some((kv.name.clone()?, kv.value.clone().unwrap_or_default()))),
        );
    }

    // ECS sets these itself: after the user's, so the agent's values win.
    if let Some(endpoint) = &host.metadata {
        let base = endpoint.base_uri.trim_end_matches('/');
        let id = endpoint.key.endpoint_id(&task_arn, name);
        env.push((
            "ECS_CONTAINER_METADATA_URI_V4".to_string(),
            format!("{base}/v4/{id}"),
        ));
        env.push((
            "ECS_CONTAINER_METADATA_URI".to_string(),
            format!("{base}/v3/{id}"),
        ));
    }

    // Host ports as the placement chose them, from the task's bindings.
    let bindings = task
        .containers
        .iter()
        .flatten()
        .find(|tc| tc.name.as_deref() == Some(name))
        .and_then(|tc| tc.network_bindings.clone())
        .unwrap_or_default();
    let ports = if network_mode == NetworkMode::Bridge {
        bindings
            .iter()
            .filter_map(|b| {
                Some(PortMapping {
                    container_port: u16::try_from(b.container_port?).ok()?,
                    protocol: Protocol::parse(b.protocol.as_deref().unwrap_or("tcp"))?,
                    host_port: b.host_port.and_then(|p| u16::try_from(p).ok()),
                    host_ip: host.bind_ip,
                })
            })
            .collect()
    } else {
        Vec::new()
    };

    let mut spec_labels: BTreeMap<String, String> = c.docker_labels.clone().unwrap_or_default();
    let family = td.family.clone().unwrap_or_default();
    let revision = td.revision.unwrap_or(0).to_string();
    for (k, v) in [
        (labels::MANAGED, "true".to_string()),
        (labels::CLUSTER, host.cluster.clone()),
        (labels::TASK_ARN, task_arn.clone()),
        (labels::CONTAINER_NAME, name.to_string()),
        (labels::TASK_DEFINITION_FAMILY, family.clone()),
        (labels::TASK_DEFINITION_REVISION, revision.clone()),
        (
            labels::CONTAINER_INSTANCE_ARN,
            host.container_instance_arn.clone(),
        ),
        (labels::ECS_CLUSTER, host.cluster.clone()),
        (labels::ECS_TASK_ARN, task_arn.clone()),
        (labels::ECS_CONTAINER_NAME, name.to_string()),
        (labels::ECS_TASK_DEFINITION_FAMILY, family),
        (labels::ECS_TASK_DEFINITION_VERSION, revision),
    ] {
        spec_labels.insert(k.to_string(), v);
    }

    let mut mounts = Vec::new();
    for mp in c.mount_points.iter().flatten() {
        let volume_name = mp.source_volume.clone().unwrap_or_default();
        let volume = td
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name.as_deref() == Some(volume_name.as_str()))
            .ok_or_else(|| SpecError::UnknownVolume {
                container: name.to_string(),
                volume: volume_name.clone(),
            })?;
        let source = match (&volume.host, &volume.docker_volume_configuration) {
            (Some(h), _) if h.source_path.is_some() => MountSource::Bind {
                host_path: h.source_path.clone().unwrap_or_default(),
            },
            (_, Some(d)) => {
                // Task-scoped volumes are per task; shared ones keep their name.
                let shared = d.scope.as_deref() == Some("shared");
                let docker_name = if shared {
                    volume_name.clone()
                } else {
                    format!("berth-{}-{}", task_id(&task_arn), volume_name)
                };
                MountSource::Volume(VolumeSpec {
                    name: docker_name,
                    driver: d.driver.clone(),
                    driver_opts: d.driver_opts.clone().unwrap_or_default(),
                    labels: d.labels.clone().unwrap_or_default(),
                })
            }
            _ => MountSource::Volume(VolumeSpec {
                name: format!("berth-{}-{}", task_id(&task_arn), volume_name),
                driver: None,
                driver_opts: BTreeMap::new(),
                labels: BTreeMap::new(),
            }),
        };
        mounts.push(Mount {
            source,
            target: mp.container_path.clone().unwrap_or_default(),
            read_only: mp.read_only.unwrap_or(false),
        });
    }

    let secs =
        |v: Option<i32>, default: u64| Duration::from_secs(v.map_or(default, |s| s.max(0) as u64));
    let health_check = c.health_check.as_ref().map(|h| HealthCheck {
        command: h.command.clone(),
        interval: secs(h.interval, 30),
        timeout: secs(h.timeout, 5),
        retries: h.retries.map_or(3, |r| r.max(0) as u32),
        start_period: secs(h.start_period, 0),
    });

    let positive = |v: Option<i32>| v.filter(|v| *v > 0).map(|v| v as u64);
    Ok(ContainerSpec {
        name: runtime_name(&task_arn, name),
        image: c.image.clone().unwrap_or_default(),
        command: overrides
            .and_then(|o| o.command.clone())
            .or_else(|| c.command.clone()),
        entrypoint: c.entry_point.clone(),
        env,
        working_dir: c.working_directory.clone(),
        user: c.user.clone(),
        cpu_shares: positive(overrides.and_then(|o| o.cpu).or(c.cpu)),
        memory_limit_mib: positive(overrides.and_then(|o| o.memory).or(c.memory)),
        memory_reservation_mib: positive(
            overrides
                .and_then(|o| o.memory_reservation)
                .or(c.memory_reservation),
        ),
        ports,
        labels: spec_labels,
        health_check,
        stop_timeout: c.stop_timeout.map(|s| Duration::from_secs(s.max(0) as u64)),
        ulimits: c
            .ulimits
            .iter()
            .flatten()
            .map(|u| Ulimit {
                name: u.name.clone(),
                soft: i64::from(u.soft_limit),
                hard: i64::from(u.hard_limit),
            })
            .collect(),
        readonly_rootfs: c.readonly_root_filesystem.unwrap_or(false),
        privileged: c.privileged.unwrap_or(false),
        links: c
            .links
            .iter()
            .flatten()
            .map(|l| {
                let (target, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
                format!("{}:{}", runtime_name(&task_arn, target), alias)
            })
            .collect(),
        mounts,
        network_mode,
        extra_hosts: c
            .extra_hosts
            .iter()
            .flatten()
            .map(|h| ExtraHost {
                hostname: h.hostname.clone(),
                ip_address: h.ip_address.clone(),
            })
            .collect(),
        dns_servers: c.dns_servers.clone().unwrap_or_default(),
        dns_search_domains: c.dns_search_domains.clone().unwrap_or_default(),
        hostname: c.hostname.clone(),
        init: c
            .linux_parameters
            .as_ref()
            .and_then(|l| l.init_process_enabled)
            .unwrap_or(false),
        tty: c.pseudo_terminal.unwrap_or(false),
        interactive: c.interactive.unwrap_or(false),
        log: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_model::common::KeyValuePair;

    const TASK_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef";

    fn fixture() -> (Task, TaskDefinition) {
        let td = TaskDefinition {
            family: Some("web".into()),
            revision: Some(1),
            container_definitions: Some(vec![ContainerDefinition {
                name: Some("app".into()),
                image: Some("busybox".into()),
                environment: Some(vec![
                    KeyValuePair {
                        name: Some("ECS_CONTAINER_METADATA_URI_V4".into()),
                        value: Some("http://user.example/".into()),
                    },
                    KeyValuePair {
                        name: Some("A".into()),
                        value: Some("1".into()),
                    },
                ]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let task = Task {
            task_arn: Some(TASK_ARN.into()),
            ..Default::default()
        };
        (task, td)
    }

    fn host(base: Option<&str>) -> HostSettings {
        HostSettings {
            cluster: "default".into(),
            container_instance_arn: "ci".into(),
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            metadata: base.map(|b| crate::metadata::MetadataEndpoint {
                base_uri: b.to_string(),
                key: crate::metadata::EndpointKey::from_bytes([7; 64]),
            }),
        }
    }

    #[test]
    fn metadata_uris_come_after_the_user_environment() {
        let (task, td) = fixture();
        let spec =
            container_spec(&host(Some("http://172.17.0.1:51679/")), &task, &td, "app").unwrap();
        let id = crate::metadata::EndpointKey::from_bytes([7; 64]).endpoint_id(TASK_ARN, "app");
        let names: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "ECS_CONTAINER_METADATA_URI_V4",
                "A",
                "ECS_CONTAINER_METADATA_URI_V4",
                "ECS_CONTAINER_METADATA_URI"
            ]
        );
        // In Docker a later duplicate wins: the agent's value.
        let last = |key: &str| {
            spec.env
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            last("ECS_CONTAINER_METADATA_URI_V4").unwrap(),
            format!("http://172.17.0.1:51679/v4/{id}")
        );
        assert_eq!(
            last("ECS_CONTAINER_METADATA_URI").unwrap(),
            format!("http://172.17.0.1:51679/v3/{id}")
        );
    }

    #[test]
    fn no_metadata_uris_without_a_server() {
        let (task, td) = fixture();
        let spec = container_spec(&host(None), &task, &td, "app").unwrap();
        assert_eq!(spec.env.len(), 2);
        assert_eq!(spec.env[0].1, "http://user.example/");
    }
}
