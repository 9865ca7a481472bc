//! Berth's own plain types for what runs on a host: the container to create
//! ([`ContainerSpec`]), what it looks like now ([`ContainerState`]), and what
//! the runtime reports ([`RuntimeEvent`], [`Stats`], [`RuntimeInfo`]).
//!
//! These are not ECS JSON: the agent translates a task definition into a
//! spec, and a state back into ECS container fields. Timestamps are
//! milliseconds since the Unix epoch, as the control plane's clock counts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A runtime's identifier for a container (Docker's 64-hex id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl ContainerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ContainerId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for ContainerId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A port's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container_port: u16,
    pub protocol: Protocol,
    /// The host port. `None` (or `Some(0)`) lets the runtime pick an
    /// ephemeral port; the agent normally chooses one itself from its
    /// dynamic range so the placement engine's bookkeeping is honoured.
    pub host_port: Option<u16>,
    /// The host address to bind; `0.0.0.0` by default.
    pub host_ip: IpAddr,
}

impl PortMapping {
    /// A TCP mapping on `0.0.0.0`.
    pub fn tcp(container_port: u16, host_port: Option<u16>) -> Self {
        Self {
            container_port,
            protocol: Protocol::Tcp,
            host_port,
            host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    pub fn on(mut self, host_ip: IpAddr) -> Self {
        self.host_ip = host_ip;
        self
    }

    /// The host port to ask for, `None` when the runtime picks.
    pub fn requested_host_port(&self) -> Option<u16> {
        self.host_port.filter(|p| *p != 0)
    }
}

/// A container health check, in ECS's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `["CMD-SHELL", "curl -f http://localhost/"]` or `["CMD", "prog", "arg"]`.
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl HealthCheck {
    /// ECS's defaults: every 30 s, 5 s timeout, 3 retries, no start period.
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            retries: 3,
            start_period: Duration::ZERO,
        }
    }
}

/// A resource limit (`ulimit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// A Docker named volume, created with these settings if absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    /// `None` uses the engine's default driver (`local`).
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountSource {
    /// A host path bound into the container.
    Bind { host_path: String },
    /// A Docker named volume.
    Volume(VolumeSpec),
}

/// A filesystem mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: MountSource,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// The container's network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }
}

/// An `/etc/hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub hostname: String,
    pub ip_address: String,
}

/// The log driver and its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            driver: "json-file".to_string(),
            options: BTreeMap::new(),
        }
    }
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The runtime-level container name (unique on the host).
    pub name: String,
    pub image: String,
    /// `None` keeps the image's CMD.
    pub command: Option<Vec<String>>,
    /// `None` keeps the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// In order; a later duplicate wins, as in Docker.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Relative CPU weight (ECS `cpu` units map to shares one to one).
    pub cpu_shares: Option<u64>,
    /// Hard memory limit (ECS `memory`).
    pub memory_limit_mib: Option<u64>,
    /// Soft memory limit (ECS `memoryReservation`).
    pub memory_reservation_mib: Option<u64>,
    pub ports: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub health_check: Option<HealthCheck>,
    /// Grace between SIGTERM and SIGKILL when the engine stops the container
    /// on its own (daemon shutdown); [`crate::ContainerRuntime::stop`]
    /// takes its own timeout.
    pub stop_timeout: Option<Duration>,
    pub ulimits: Vec<Ulimit>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    /// `container` or `container:alias` (bridge mode only).
    pub links: Vec<String>,
    pub mounts: Vec<Mount>,
    pub network_mode: NetworkMode,
    pub extra_hosts: Vec<ExtraHost>,
    pub dns_servers: Vec<String>,
    pub dns_search_domains: Vec<String>,
    pub hostname: Option<String>,
    /// Run an init process as PID 1 (ECS `linuxParameters.initProcessEnabled`).
    pub init: bool,
    /// Allocate a TTY (ECS `pseudoTerminal`).
    pub tty: bool,
    /// Keep stdin open (ECS `interactive`).
    pub interactive: bool,
    /// `None` uses the engine's default log driver (json-file unless the
    /// host's daemon is configured otherwise).
    pub log: Option<LogConfig>,
}

/// Credentials for a registry pull.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// The registry host, e.g. `127.0.0.1:9480`.
    pub server_address: Option<String>,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server_address", &self.server_address)
            .finish()
    }
}

/// The outcome of [`crate::ContainerRuntime::ensure_image`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The reference asked for.
    pub image: String,
    /// The local image id (`sha256:...`), when known.
    pub id: Option<String>,
    /// False when a local image was used without pulling.
    pub pulled: bool,
    pub pull_started_millis: Option<i64>,
    pub pull_stopped_millis: Option<i64>,
}

/// A container's lifecycle status, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Restarting => "restarting",
            ContainerStatus::Removing => "removing",
            ContainerStatus::Exited => "exited",
            ContainerStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => ContainerStatus::Created,
            "running" => ContainerStatus::Running,
            "paused" => ContainerStatus::Paused,
            "restarting" => ContainerStatus::Restarting,
            "removing" => ContainerStatus::Removing,
            "exited" => ContainerStatus::Exited,
            "dead" => ContainerStatus::Dead,
            _ => return None,
        })
    }

    /// The process is alive (running, paused or restarting).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        )
    }

    /// The container ran and is over (or will never run again).
    pub fn is_stopped(self) -> bool {
        matches!(
            self,
            ContainerStatus::Exited | ContainerStatus::Dead | ContainerStatus::Removing
        )
    }
}

/// Container health in ECS's words. Docker's `starting` and "no health
/// check" are both `UNKNOWN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    #[default]
    Unknown,
}

impl HealthStatus {
    /// `HEALTHY`, `UNHEALTHY` or `UNKNOWN`, as ECS's `healthStatus`.
    pub fn as_ecs_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }

    /// From Docker's health status word.
    pub fn from_docker(s: &str) -> Self {
        match s.trim() {
            "healthy" => HealthStatus::Healthy,
            "unhealthy" => HealthStatus::Unhealthy,
            _ => HealthStatus::Unknown,
        }
    }
}

/// A published port as actually bound (ECS `networkBindings`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoundPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    pub host_port: u16,
}

/// What a container looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: ContainerId,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The image reference the container was created from.
    pub image: String,
    /// The image id (`sha256:...`).
    pub image_id: Option<String>,
    pub status: ContainerStatus,
    /// Set once the container has exited.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// The engine's error, e.g. why the container could not start.
    pub error: Option<String>,
    pub health: HealthStatus,
    /// The output of the latest health probe, when there is one.
    pub health_output: Option<String>,
    pub created_millis: Option<i64>,
    pub started_millis: Option<i64>,
    pub finished_millis: Option<i64>,
    /// The host ports actually bound, including the ones the engine chose.
    pub ports: Vec<BoundPort>,
    /// The container's address on its primary network (none in host and
    /// none modes).
    pub ip_address: Option<String>,
    pub network_mode: String,
    pub labels: BTreeMap<String, String>,
    pub memory_limit_bytes: Option<i64>,
    pub memory_reservation_bytes: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pid: Option<i64>,
}

/// One line of [`crate::ContainerRuntime::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSummary {
    pub id: ContainerId,
    pub name: String,
    pub image: String,
    pub status: ContainerStatus,
    pub labels: BTreeMap<String, String>,
    pub created_millis: Option<i64>,
}

/// What happened to a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeEventKind {
    Created,
    Started,
    /// The process ended (by itself, by stop or by kill).
    Died {
        exit_code: Option<i64>,
    },
    OomKilled,
    Killed {
        signal: Option<String>,
    },
    Stopped,
    Destroyed,
    HealthChanged(HealthStatus),
}

/// A container event, filtered to the labels asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeEvent {
    pub id: ContainerId,
    /// The container's name, when the runtime says it.
    pub name: Option<String>,
    pub kind: RuntimeEventKind,
    pub time_millis: i64,
    pub labels: BTreeMap<String, String>,
}

/// Counters of one network interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub read_millis: i64,
    /// Total CPU time of the container, nanoseconds.
    pub cpu_total_ns: u64,
    /// Total CPU time of the host, nanoseconds (for percentages).
    pub system_cpu_ns: Option<u64>,
    /// The same two counters one sample earlier (zero on a one-shot read).
    pub precpu_total_ns: u64,
    pub presystem_cpu_ns: Option<u64>,
    pub online_cpus: Option<u32>,
    pub memory_usage_bytes: u64,
    pub memory_max_usage_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub networks: BTreeMap<String, NetworkStats>,
    pub pids: Option<u64>,
    /// The engine's own document (Docker's stats JSON), which ECS's task
    /// metadata `/stats` serves as it is. `None` for the simulated runtime.
    pub raw: Option<serde_json::Value>,
}

/// What the host offers, for registering the container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// `docker` or `simulated`.
    pub runtime: String,
    pub simulated: bool,
    /// The engine version (`simulated` for the simulated runtime).
    pub server_version: String,
    pub api_version: Option<String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub operating_system: String,
    /// e.g. `linux`.
    pub os_type: String,
    /// e.g. `x86_64`.
    pub architecture: String,
    pub kernel_version: Option<String>,
    pub hostname: Option<String>,
}

impl RuntimeInfo {
    /// ECS CPU units: 1024 per core.
    pub fn cpu_units(&self) -> u64 {
        u64::from(self.cpus) * 1024
    }

    /// Memory in MiB, rounded down.
    pub fn memory_mib(&self) -> u64 {
        self.memory_bytes / (1024 * 1024)
    }
}
