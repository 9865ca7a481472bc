//! The Docker Engine runtime: [`ContainerRuntime`] over the Engine API
//! (bollard), on the local socket or wherever `DOCKER_HOST` points.
//!
//! The client negotiates the API version with the engine at connect time, so
//! engines back to API 1.41 (Docker 20.10) work. Bind mounts and named
//! volumes are passed as `Binds`, as the ECS agent does, so a missing host
//! directory is created by the engine.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerStatsResponse, ContainerSummaryStateEnum, EventMessage, EventMessageTypeEnum,
    HealthConfig, HealthStatusEnum, HostConfig, HostConfigLogConfig, IpamConfig, PortBinding,
    ResourcesUlimits, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectNetworkOptions,
    KillContainerOptions, ListContainersOptions, RemoveContainerOptions, RemoveVolumeOptions,
    StatsOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::clock::{Clock, SystemClock};
use crate::error::{Result, RuntimeError};
use crate::image_ref::ImageRef;
use crate::labels::LabelFilter;
use crate::runtime::{ContainerRuntime, EventStream};
use crate::types::{
    BoundPort, ContainerId, ContainerSpec, ContainerState, ContainerStatus, ContainerSummary,
    HealthStatus, ImageInfo, MountSource, NetworkMode, NetworkStats, Protocol, RegistryAuth,
    RuntimeEvent, RuntimeEventKind, RuntimeInfo, Stats,
};

const MIB: i64 = 1024 * 1024;

/// Extra time granted to a stop request beyond the container's own grace,
/// so the HTTP request does not time out while the engine waits.
const STOP_REQUEST_MARGIN: Duration = Duration::from_secs(60);

/// A Docker Engine.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").finish_non_exhaustive()
    }
}

impl DockerRuntime {
    /// Connects to `DOCKER_HOST` (default: the local socket) and negotiates
    /// the API version. Fails with `Unavailable` when no engine answers.
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_defaults().map_err(unavailable)?;
        Self::from_client(docker).await
    }

    /// Wraps an existing client, negotiating the API version.
    pub async fn from_client(docker: Docker) -> Result<Self> {
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        tracing::debug!(api_version = %docker.client_version(), "connected to docker engine");
        Ok(Self { docker })
    }

    /// The underlying client, for what the trait does not cover.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Checks that the engine answers.
    pub async fn ping(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(unavailable)
    }

    async fn ensure_volume(&self, volume: &crate::types::VolumeSpec) -> Result<()> {
        match self.docker.inspect_volume(&volume.name).await {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(map_err(e)),
        }
        let request = VolumeCreateRequest {
            name: Some(volume.name.clone()),
            driver: volume.driver.clone(),
            driver_opts: Some(to_hash_map(&volume.driver_opts)),
            labels: Some(to_hash_map(&volume.labels)),
            ..Default::default()
        };
        self.docker.create_volume(request).await.map_err(map_err)?;
        tracing::debug!(volume = %volume.name, "created docker volume");
        Ok(())
    }

    async fn pull(&self, image: &str, credentials: Option<&RegistryAuth>) -> Result<()> {
        let reference = ImageRef::parse(image);
        let options = CreateImageOptions {
            from_image: Some(reference.repository.clone()),
            tag: Some(reference.pull_tag().to_string()),
            ..Default::default()
        };
        let credentials = credentials.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: c
                .server_address
                .clone()
                .or_else(|| reference.registry().map(str::to_string)),
            ..Default::default()
        });
        let mut progress = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = progress.next().await {
            match item {
                Ok(info) => {
                    tracing::trace!(image, status = ?info.status, "pull progress");
                }
                Err(e) => return Err(pull_error(image, e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn info(&self) -> Result<RuntimeInfo> {
        let info = self.docker.info().await.map_err(map_err)?;
        let version = self.docker.version().await.map_err(map_err)?;
        Ok(RuntimeInfo {
            runtime: "docker".to_string(),
            simulated: false,
            server_version: info.server_version.or(version.version).unwrap_or_default(),
            api_version: version.api_version,
            cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            memory_bytes: info
                .mem_total
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            operating_system: info.operating_system.unwrap_or_default(),
            os_type: info.os_type.unwrap_or_else(|| "linux".to_string()),
            architecture: info.architecture.unwrap_or_default(),
            kernel_version: info.kernel_version,
            hostname: info.name,
        })
    }

    async fn ensure_image(
        &self,
        image: &str,
        credentials: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        match self.docker.inspect_image(image).await {
            Ok(found) => {
                tracing::debug!(image, "using local image");
                return Ok(ImageInfo {
                    image: image.to_string(),
                    id: found.id,
                    pulled: false,
                    pull_started_millis: None,
                    pull_stopped_millis: None,
                });
            }
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(map_err(e)),
        }
        let started = SystemClock.now_millis();
        tracing::info!(image, "pulling image");
        self.pull(image, credentials).await?;
        let stopped = SystemClock.now_millis();
        let found = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| pull_error(image, e))?;
        tracing::info!(image, elapsed_ms = stopped - started, "pulled image");
        Ok(ImageInfo {
            image: image.to_string(),
            id: found.id,
            pulled: true,
            pull_started_millis: Some(started),
            pull_stopped_millis: Some(stopped),
        })
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId> {
        let body = create_body(spec)?;
        for mount in &spec.mounts {
            if let MountSource::Volume(volume) = &mount.source {
                self.ensure_volume(volume).await?;
            }
        }
        let options = CreateContainerOptions {
            name: (!spec.name.is_empty()).then(|| spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(map_err)?;
        for warning in &created.warnings {
            tracing::warn!(container = %spec.name, warning = %warning, "docker warning on create");
        }
        tracing::debug!(container = %spec.name, id = %created.id, "created container");
        Ok(ContainerId(created.id))
    }

    async fn start(&self, id: &ContainerId) -> Result<()> {
        self.docker
            .start_container(id.as_str(), None)
            .await
            .map_err(|e| match map_err(e) {
                RuntimeError::Other(m) | RuntimeError::InvalidSpec(m) => {
                    RuntimeError::StartFailed(m)
                }
                other => other,
            })?;
        tracing::debug!(id = %id, "started container");
        Ok(())
    }

    async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        // The engine answers only once the container is down, which may be
        // the whole grace period; the client's request timeout must outlast it.
        let client = self.docker.clone().with_timeout(
            timeout
                .saturating_add(STOP_REQUEST_MARGIN)
                .max(self.docker.timeout()),
        );
        client
            .stop_container(id.as_str(), Some(options))
            .await
            .map_err(map_err)?;
        tracing::debug!(id = %id, timeout_s = secs, "stopped container");
        Ok(())
    }

    async fn kill(&self, id: &ContainerId, signal: &str) -> Result<()> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        self.docker
            .kill_container(id.as_str(), Some(options))
            .await
            .map_err(map_err)
    }

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerState> {
        let response = self
            .docker
            .inspect_container(id.as_str(), None)
            .await
            .map_err(map_err)?;
        Ok(state_from_inspect(response))
    }

    async fn remove(&self, id: &ContainerId) -> Result<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self
            .docker
            .remove_container(id.as_str(), Some(options))
            .await
        {
            Ok(()) => {
                tracing::debug!(id = %id, "removed container");
                Ok(())
            }
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn list(&self, filter: &LabelFilter) -> Result<Vec<ContainerSummary>> {
        let mut filters = HashMap::new();
        let labels = filter.docker_filters();
        if !labels.is_empty() {
            filters.insert("label".to_string(), labels);
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(map_err)?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let labels: BTreeMap<String, String> =
                    c.labels.unwrap_or_default().into_iter().collect();
                Some(ContainerSummary {
                    id: ContainerId(id),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    status: summary_status(c.state),
                    labels,
                    created_millis: c.created.map(|s| s.saturating_mul(1000)),
                })
            })
            .collect())
    }

    fn events(&self, filter: &LabelFilter) -> EventStream {
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        let labels = filter.docker_filters();
        if !labels.is_empty() {
            filters.insert("label".to_string(), labels);
        }
        // The request is made when the stream is first polled; `since` = now
        // makes the engine replay what happened in between, so events are
        // covered from this call on (subscribe, then list, without a gap).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let options = EventsOptions {
            since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
            until: None,
            filters: Some(filters),
        };
        let filter = filter.clone();
        self.docker
            .events(Some(options))
            .filter_map(move |item| {
                let out = match item {
                    Ok(message) => event_from_message(message)
                        .filter(|e| filter.matches(&e.labels))
                        .map(Ok),
                    Err(e) => Some(Err(map_err(e))),
                };
                std::future::ready(out)
            })
            .boxed()
    }

    async fn stats(&self, id: &ContainerId) -> Result<Stats> {
        // Not one-shot: the engine samples twice, so `precpu` is filled and
        // a CPU percentage can be computed, as `docker stats --no-stream`.
        let options = StatsOptions {
            stream: false,
            one_shot: false,
        };
        let mut stream = self.docker.stats(id.as_str(), Some(options));
        match stream.next().await {
            Some(Ok(sample)) => Ok(stats_from_docker(sample)),
            Some(Err(e)) => Err(map_err(e)),
            None => Err(RuntimeError::Other(format!(
                "no stats returned for container {id}"
            ))),
        }
    }

    async fn bridge_gateway(&self) -> Result<Option<IpAddr>> {
        let network = match self
            .docker
            .inspect_network("bridge", None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => n,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        let configs = network.ipam.and_then(|i| i.config).unwrap_or_default();
        Ok(bridge_gateway_of(&configs))
    }
}

/// The IPv4 gateway of a bridge network's IPAM configuration. Docker leaves
/// `Gateway` out for the default bridge on some engines; the gateway is then
/// the subnet's first address, as the engine assigns it.
fn bridge_gateway_of(configs: &[IpamConfig]) -> Option<IpAddr> {
    let strip = |s: &str| s.split('/').next().unwrap_or(s).trim().to_string();
    let explicit = configs
        .iter()
        .filter_map(|c| c.gateway.as_deref())
        .filter_map(|g| strip(g).parse::<Ipv4Addr>().ok())
        .next();
    let from_subnet = || {
        configs
            .iter()
            .filter_map(|c| c.subnet.as_deref())
            .find_map(|subnet| {
                let (addr, len) = subnet.split_once('/')?;
                let addr: Ipv4Addr = addr.trim().parse().ok()?;
                let len: u32 = len.trim().parse().ok()?;
                if len > 30 {
                    return None;
                }
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Some(Ipv4Addr::from((u32::from(addr) & mask).saturating_add(1)))
            })
    };
    explicit.or_else(from_subnet).map(IpAddr::V4)
}

/// Turns a spec into Docker's create request.
fn create_body(spec: &ContainerSpec) -> Result<ContainerCreateBody> {
    if spec.image.trim().is_empty() {
        return Err(RuntimeError::InvalidSpec("image is empty".to_string()));
    }
    if spec.network_mode == NetworkMode::None && !spec.ports.is_empty() {
        return Err(RuntimeError::InvalidSpec(
            "port mappings are not allowed in network mode none".to_string(),
        ));
    }
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.ports {
        if port.container_port == 0 {
            return Err(RuntimeError::InvalidSpec(
                "container port 0 is not valid".to_string(),
            ));
        }
        let key = format!("{}/{}", port.container_port, port.protocol.as_str());
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        if spec.network_mode == NetworkMode::Bridge {
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(port.host_ip.to_string()),
                    host_port: Some(
                        port.requested_host_port()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                    ),
                });
        }
    }

    let mut binds = Vec::new();
    for mount in &spec.mounts {
        if !mount.target.starts_with('/') {
            return Err(RuntimeError::InvalidSpec(format!(
                "mount target {} is not an absolute path",
                mount.target
            )));
        }
        let source = match &mount.source {
            MountSource::Bind { host_path } => {
                if !host_path.starts_with('/') {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "bind mount source {host_path} is not an absolute path"
                    )));
                }
                host_path.as_str()
            }
            MountSource::Volume(volume) => {
                if volume.name.is_empty() || volume.name.contains('/') {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "volume name {:?} is not valid",
                        volume.name
                    )));
                }
                volume.name.as_str()
            }
        };
        let mode = if mount.read_only { ":ro" } else { "" };
        binds.push(format!("{source}:{}{mode}", mount.target));
    }

    let health = spec.health_check.as_ref().map(|h| HealthConfig {
        test: Some(h.command.clone()),
        interval: Some(duration_nanos(h.interval)),
        timeout: Some(duration_nanos(h.timeout)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(duration_nanos(h.start_period)),
        start_interval: None,
    });

    let host_config = HostConfig {
        cpu_shares: spec
            .cpu_shares
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        memory: spec.memory_limit_mib.map(mib_to_bytes),
        memory_reservation: spec.memory_reservation_mib.map(mib_to_bytes),
        init: spec.init.then_some(true),
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        binds: (!binds.is_empty()).then_some(binds),
        log_config: spec.log.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: Some(to_hash_map(&l.options)),
        }),
        network_mode: Some(spec.network_mode.as_str().to_string()),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        dns: non_empty(&spec.dns_servers),
        dns_search: non_empty(&spec.dns_search_domains),
        extra_hosts: (!spec.extra_hosts.is_empty()).then(|| {
            spec.extra_hosts
                .iter()
                .map(|h| format!("{}:{}", h.hostname, h.ip_address))
                .collect()
        }),
        links: non_empty(&spec.links),
        privileged: Some(spec.privileged),
        readonly_rootfs: Some(spec.readonly_rootfs),
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        hostname: spec.hostname.clone(),
        user: spec.user.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: Some(spec.tty),
        open_stdin: Some(spec.interactive),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        healthcheck: health,
        image: Some(spec.image.clone()),
        working_dir: spec.working_dir.clone(),
        labels: Some(to_hash_map(&spec.labels)),
        stop_timeout: spec
            .stop_timeout
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        ..Default::default()
    })
}

fn state_from_inspect(r: ContainerInspectResponse) -> ContainerState {
    let state = r.state.unwrap_or_default();
    let config = r.config.unwrap_or_default();
    let host = r.host_config.unwrap_or_default();
    let network = r.network_settings.unwrap_or_default();

    let status = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
        // Still alive while the engine waits out the stop grace period.
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => {
            ContainerStatus::Running
        }
        Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
        Some(ContainerStateStatusEnum::EMPTY) | None => {
            if state.running == Some(true) {
                ContainerStatus::Running
            } else {
                ContainerStatus::Created
            }
        }
    };
    let started_millis = state.started_at.as_deref().and_then(parse_docker_time);
    // The engine stamps StartedAt when its start call returns, which can be
    // after a short-lived process already exited: never report an end
    // before the start.
    let finished_millis = state
        .finished_at
        .as_deref()
        .and_then(parse_docker_time)
        .map(|f| started_millis.map_or(f, |s| f.max(s)));
    let failed_to_start = state.error.as_deref().is_some_and(|e| !e.is_empty());
    let exit_code = if status.is_stopped()
        || failed_to_start
        || (status == ContainerStatus::Created && finished_millis.is_some())
    {
        state.exit_code
    } else {
        None
    };
    let (health, health_output) = match state.health {
        Some(h) => {
            let status = match h.status {
                Some(HealthStatusEnum::HEALTHY) => HealthStatus::Healthy,
                Some(HealthStatusEnum::UNHEALTHY) => HealthStatus::Unhealthy,
                _ => HealthStatus::Unknown,
            };
            let output = h
                .log
                .and_then(|log| log.into_iter().last())
                .and_then(|entry| entry.output)
                .map(|o| o.trim().to_string());
            (status, output)
        }
        None => (HealthStatus::Unknown, None),
    };

    let mut ports = Vec::new();
    for (key, bindings) in network.ports.unwrap_or_default() {
        let Some((port, proto)) = key.split_once('/') else {
            continue;
        };
        let (Ok(container_port), Some(protocol)) = (port.parse::<u16>(), Protocol::parse(proto))
        else {
            continue;
        };
        for binding in bindings.unwrap_or_default() {
            let Some(host_port) = binding
                .host_port
                .as_deref()
                .and_then(|p| p.parse::<u16>().ok())
            else {
                continue;
            };
            ports.push(BoundPort {
                container_port,
                protocol,
                host_ip: binding.host_ip.unwrap_or_default(),
                host_port,
            });
        }
    }
    ports.sort_by(|a, b| {
        (
            a.container_port,
            a.protocol.as_str(),
            &a.host_ip,
            a.host_port,
        )
            .cmp(&(
                b.container_port,
                b.protocol.as_str(),
                &b.host_ip,
                b.host_port,
            ))
    });

    let network_mode = host.network_mode.clone().unwrap_or_default();
    let networks = network.networks.unwrap_or_default();
    let ip_address = networks
        .get(&network_mode)
        .and_then(|n| n.ip_address.clone())
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            let mut names: Vec<&String> = networks.keys().collect();
            names.sort();
            names
                .into_iter()
                .filter_map(|n| networks.get(n).and_then(|e| e.ip_address.clone()))
                .find(|ip| !ip.is_empty())
        });

    ContainerState {
        id: ContainerId(r.id.unwrap_or_default()),
        name: r
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        image_id: r.image,
        status,
        exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.filter(|e| !e.is_empty()),
        health,
        health_output,
        created_millis: r.created.as_deref().and_then(parse_docker_time),
        started_millis,
        finished_millis,
        ports,
        ip_address,
        network_mode,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        memory_limit_bytes: host.memory.filter(|m| *m > 0),
        memory_reservation_bytes: host.memory_reservation.filter(|m| *m > 0),
        cpu_shares: host.cpu_shares.filter(|c| *c > 0),
        pid: state.pid.filter(|p| *p > 0),
    }
}

/// Attributes Docker adds to a container event beside the container's labels.
const EVENT_ATTRIBUTES: &[&str] = &["name", "image", "exitCode", "signal", "execID"];

fn event_from_message(message: EventMessage) -> Option<RuntimeEvent> {
    if let Some(typ) = message.typ {
        if typ != EventMessageTypeEnum::CONTAINER {
            return None;
        }
    }
    let action = message.action?;
    let actor = message.actor?;
    let id = actor.id?;
    let attributes = actor.attributes.unwrap_or_default();
    let kind = match action.as_str() {
        "create" => RuntimeEventKind::Created,
        "start" => RuntimeEventKind::Started,
        "die" => RuntimeEventKind::Died {
            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => RuntimeEventKind::OomKilled,
        "kill" => RuntimeEventKind::Killed {
            signal: attributes.get("signal").cloned(),
        },
        "stop" => RuntimeEventKind::Stopped,
        "destroy" => RuntimeEventKind::Destroyed,
        other => match other.strip_prefix("health_status") {
            Some(rest) => RuntimeEventKind::HealthChanged(HealthStatus::from_docker(
                rest.trim_start_matches(':'),
            )),
            None => return None,
        },
    };
    let time_millis = message
        .time_nano
        .map(|n| n / 1_000_000)
        .or_else(|| message.time.map(|s| s.saturating_mul(1000)))
        .unwrap_or_else(|| SystemClock.now_millis());
    let name = attributes.get("name").cloned();
    let labels = attributes
        .into_iter()
        .filter(|(k, _)| !EVENT_ATTRIBUTES.contains(&k.as_str()))
        .collect();
    Some(RuntimeEvent {
        id: ContainerId(id),
        name,
        kind,
        time_millis,
        labels,
    })
}

fn stats_from_docker(sample: ContainerStatsResponse) -> Stats {
    let raw = serde_json::to_value(&sample).ok();
    let cpu = sample.cpu_stats.unwrap_or_default();
    let precpu = sample.precpu_stats.unwrap_or_default();
    let memory = sample.memory_stats.unwrap_or_default();
    let networks = sample
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, n)| {
            (
                name,
                NetworkStats {
                    rx_bytes: n.rx_bytes.unwrap_or(0),
                    rx_packets: n.rx_packets.unwrap_or(0),
                    rx_errors: n.rx_errors.unwrap_or(0),
                    rx_dropped: n.rx_dropped.unwrap_or(0),
                    tx_bytes: n.tx_bytes.unwrap_or(0),
                    tx_packets: n.tx_packets.unwrap_or(0),
                    tx_errors: n.tx_errors.unwrap_or(0),
                    tx_dropped: n.tx_dropped.unwrap_or(0),
                },
            )
        })
        .collect();
    Stats {
        read_millis: sample
            .read
            .as_deref()
            .and_then(parse_docker_time)
            .unwrap_or_else(|| SystemClock.now_millis()),
        cpu_total_ns: cpu
            .cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        system_cpu_ns: cpu.system_cpu_usage,
        precpu_total_ns: precpu
            .cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        presystem_cpu_ns: precpu.system_cpu_usage,
        online_cpus: cpu.online_cpus,
        memory_usage_bytes: memory.usage.unwrap_or(0),
        memory_max_usage_bytes: memory.max_usage,
        memory_limit_bytes: memory.limit,
        networks,
        pids: sample.pids_stats.and_then(|p| p.current),
        raw,
    }
}

fn summary_status(state: Option<ContainerSummaryStateEnum>) -> ContainerStatus {
    match state {
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerStatus::Dead,
        _ => ContainerStatus::Created,
    }
}

/// Docker's RFC 3339 timestamps in epoch milliseconds; Docker's zero time
/// (`0001-01-01T00:00:00Z`, "never") is `None`.
fn parse_docker_time(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let millis = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?;
    (millis > 0).then_some(millis)
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn mib_to_bytes(mib: u64) -> i64 {
    i64::try_from(mib).unwrap_or(i64::MAX).saturating_mul(MIB)
}

fn to_hash_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn is_port_in_use(message: &str) -> bool {
    message.contains("port is already allocated") || message.contains("address already in use")
}

/// Connection-level failures: the engine could not be reached.
fn unavailable(e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError { .. } => map_err(e),
        other => RuntimeError::Unavailable(other.to_string()),
    }
}

fn map_err(e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            if is_port_in_use(&message) {
                RuntimeError::PortInUse(message)
            } else {
                match status_code {
                    404 => RuntimeError::NotFound(message),
                    409 => RuntimeError::Conflict(message),
                    400 => RuntimeError::InvalidSpec(message),
                    _ => RuntimeError::Other(message),
                }
            }
        }
        BollardError::DockerStreamError { error } => RuntimeError::Other(error),
        e @ (BollardError::RequestTimeoutError
        | BollardError::IOError { .. }
        | BollardError::SocketNotFoundError(_)
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::HttpClientError { .. }) => RuntimeError::Unavailable(e.to_string()),
        other => RuntimeError::Other(other.to_string()),
    }
}

fn pull_error(image: &str, e: BollardError) -> RuntimeError {
    let (status, message) = match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => (Some(status_code), message),
        BollardError::DockerStreamError { error } => (None, error),
        other => return map_err(other),
    };
    let lower = message.to_lowercase();
    let not_found = status == Some(404)
        || lower.contains("not found")
        || lower.contains("does not exist")
        || lower.contains("manifest unknown");
    if not_found {
        RuntimeError::ImageNotFound {
            image: image.to_string(),
            message,
        }
    } else {
        RuntimeError::ImagePull {
            image: image.to_string(),
            message,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::{HealthCheck, Mount, PortMapping, VolumeSpec};

    #[test]
    fn parses_docker_times() {
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_docker_time("2024-01-02T03:04:05.678901234Z"),
            Some(1_704_164_645_678)
        );
        assert_eq!(parse_docker_time("garbage"), None);
    }

    #[test]
    fn maps_engine_errors() {
        let err = |status_code: u16, message: &str| BollardError::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        };
        assert!(matches!(
            map_err(err(404, "No such container: x")),
            RuntimeError::NotFound(_)
        ));
        assert!(matches!(
            map_err(err(409, "name already in use")),
            RuntimeError::Conflict(_)
        ));
        assert!(matches!(
            map_err(err(
                500,
                "driver failed programming external connectivity on endpoint x: Bind for 127.0.0.1:8080 failed: port is already allocated"
            )),
            RuntimeError::PortInUse(_)
        ));
        assert!(matches!(
            pull_error(
                "x",
                BollardError::DockerStreamError {
                    error: "manifest for x:latest not found: manifest unknown".to_string()
                }
            ),
            RuntimeError::ImageNotFound { .. }
        ));
        assert!(matches!(
            pull_error(
                "x",
                BollardError::DockerStreamError {
                    error: "unauthorized: authentication required".to_string()
                }
            ),
            RuntimeError::ImagePull { .. }
        ));
    }

    #[test]
    fn finds_the_bridge_gateway() {
        let config = |subnet: Option<&str>, gateway: Option<&str>| IpamConfig {
            subnet: subnet.map(str::to_string),
            gateway: gateway.map(str::to_string),
            ..Default::default()
        };
        let gw = |configs: &[IpamConfig]| bridge_gateway_of(configs).map(|ip| ip.to_string());
        assert_eq!(
            gw(&[config(Some("172.17.0.0/16"), Some("172.17.0.1"))]).as_deref(),
            Some("172.17.0.1")
        );
        // Docker 20.10 leaves the default bridge's gateway out.
        assert_eq!(
            gw(&[config(Some("172.18.0.0/16"), None)]).as_deref(),
            Some("172.18.0.1")
        );
        assert_eq!(
            gw(&[
                config(Some("fd00::/64"), Some("fd00::1")),
                config(Some("10.1.2.0/24"), None)
            ])
            .as_deref(),
            Some("10.1.2.1")
        );
        assert_eq!(gw(&[config(Some("garbage"), Some("nope"))]), None);
        assert_eq!(
            gw(&[config(Some("10.0.0.0/0"), None)]).as_deref(),
            Some("0.0.0.1")
        );
        assert_eq!(gw(&[]), None);
    }

    #[test]
    fn builds_create_body() {
        let spec = ContainerSpec {
            name: "web".into(),
            image: "busybox".into(),
            ports: vec![
                PortMapping::tcp(80, Some(49200)).on(std::net::IpAddr::from([127, 0, 0, 1])),
                PortMapping::tcp(80, None),
            ],
            mounts: vec![
                Mount {
                    source: MountSource::Bind {
                        host_path: "/srv/data".into(),
                    },
                    target: "/data".into(),
                    read_only: true,
                },
                Mount {
                    source: MountSource::Volume(VolumeSpec {
                        name: "cache".into(),
                        ..Default::default()
                    }),
                    target: "/cache".into(),
                    read_only: false,
                },
            ],
            health_check: Some(HealthCheck::new(vec!["CMD-SHELL".into(), "true".into()])),
            memory_limit_mib: Some(64),
            ..Default::default()
        };
        let body = create_body(&spec).unwrap();
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let host = body.host_config.unwrap();
        let bindings = host.port_bindings.unwrap();
        let b = bindings.get("80/tcp").cloned().flatten().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b[0].host_port.as_deref(), Some("49200"));
        assert_eq!(b[1].host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(b[1].host_port.as_deref(), Some(""));
        assert_eq!(
            host.binds,
            Some(vec![
                "/srv/data:/data:ro".to_string(),
                "cache:/cache".to_string()
            ])
        );
        assert_eq!(host.memory, Some(64 * MIB));
        assert_eq!(body.healthcheck.unwrap().interval, Some(30_000_000_000));

        let bad = ContainerSpec {
            image: "busybox".into(),
            network_mode: NetworkMode::None,
            ports: vec![PortMapping::tcp(80, None)],
            ..Default::default()
        };
        assert!(matches!(
            create_body(&bad),
            Err(RuntimeError::InvalidSpec(_))
        ));
    }
}
