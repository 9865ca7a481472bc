//! The simulated runtime: the same [`ContainerRuntime`] with no Docker.
//!
//! Containers "run" in memory and follow a scripted [`SimBehavior`]: run
//! forever, exit after a while with a code, fail to start, or turn
//! unhealthy. Nothing runs per container: a container's future is a set of
//! timers in one ordered map, applied lazily against the passed-in
//! [`Clock`] whenever the runtime is looked at (`inspect`, `list`, an event
//! stream being polled, or [`SimulatedRuntime::tick`]). So thousands of
//! simulated hosts fit in one process, and a `ManualClock` plus a seed make
//! every run the same.
//!
//! A container's behaviour comes from its [`SIM_BEHAVIOR_LABEL`] label when
//! present (so a task definition's `dockerLabels` can script it), else from
//! [`SimulatedConfig::default_behavior`]. Every simulated container carries
//! the label `com.berth.simulated=true`, and [`RuntimeInfo`] says
//! `simulated`: nothing pretends that a real container runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::error::{Result, RuntimeError};
use crate::labels::LabelFilter;
use crate::runtime::{ContainerRuntime, EventStream};
use crate::types::{
    BoundPort, ContainerId, ContainerSpec, ContainerState, ContainerStatus, ContainerSummary,
    HealthStatus, ImageInfo, MountSource, NetworkMode, NetworkStats, RegistryAuth, RuntimeEvent,
    RuntimeEventKind, RuntimeInfo, Stats, VolumeSpec,
};

/// The label that scripts a simulated container: `run`, `exit:<after>:<code>`,
/// `fail:<message>` or `unhealthy:<after>`, with durations such as `500ms`,
/// `5s` or `2m` (a bare number is milliseconds).
pub const SIM_BEHAVIOR_LABEL: &str = "com.berth.simulated.behavior";

/// The label every simulated container carries, value `true`.
pub const SIMULATED_LABEL: &str = "com.berth.simulated";

/// What a simulated container does once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimBehavior {
    /// Runs until stopped or killed.
    RunForever,
    /// Exits by itself `after` its start, with `exit_code`.
    ExitAfter { after: Duration, exit_code: i64 },
    /// `start` fails with `message`, as when the entrypoint is missing.
    FailToStart { message: String },
    /// Runs; its health check reports unhealthy from `after` its start on
    /// (healthy before, once the first interval has passed).
    BecomeUnhealthy { after: Duration },
}

impl SimBehavior {
    /// Parses the [`SIM_BEHAVIOR_LABEL`] syntax.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s == "run" {
            return Some(SimBehavior::RunForever);
        }
        if let Some(message) = s.strip_prefix("fail:") {
            return Some(SimBehavior::FailToStart {
                message: message.to_string(),
            });
        }
        if s == "fail" {
            return Some(SimBehavior::FailToStart {
                message: "simulated start failure".to_string(),
            });
        }
        if let Some(after) = s.strip_prefix("unhealthy:") {
            return Some(SimBehavior::BecomeUnhealthy {
                after: parse_duration(after)?,
            });
        }
        if let Some(rest) = s.strip_prefix("exit:") {
            let (after, code) = rest.split_once(':')?;
            return Some(SimBehavior::ExitAfter {
                after: parse_duration(after)?,
                exit_code: code.trim().parse().ok()?,
            });
        }
        None
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (digits, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1)
    };
    let n: u64 = digits.trim().parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(scale)?))
}

/// How a simulated host looks and behaves.
#[derive(Debug, Clone)]
pub struct SimulatedConfig {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub hostname: Option<String>,
    /// Behaviour of containers without a [`SIM_BEHAVIOR_LABEL`] label.
    pub default_behavior: SimBehavior,
    /// Images that a pull cannot find.
    pub missing_images: Vec<String>,
    /// Exit code of a container stopped with `stop` (SIGTERM's 143 by
    /// default, as a process without a handler reports).
    pub stop_exit_code: i64,
    /// Host ports handed out when a mapping leaves the host port open.
    pub ephemeral_ports: (u16, u16),
    /// Seeds container ids, image ids and addresses.
    pub seed: u64,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        Self {
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            hostname: None,
            default_behavior: SimBehavior::RunForever,
            missing_images: Vec::new(),
            stop_exit_code: 143,
            ephemeral_ports: (32768, 60999),
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Exit(i64),
    Healthy,
    Unhealthy,
}

/// A scheduled change: `(deadline, sequence, container id, start generation, kind)`.
type Timer = (i64, u64, String, u64, TimerKind);

#[derive(Debug)]
struct SimContainer {
    id: String,
    spec: ContainerSpec,
    behavior: SimBehavior,
    status: ContainerStatus,
    exit_code: Option<i64>,
    error: Option<String>,
    health: HealthStatus,
    created: i64,
    started: Option<i64>,
    finished: Option<i64>,
    ports: Vec<BoundPort>,
    ip: Option<String>,
    /// Bumped on every start, so timers of an earlier run are ignored.
    generation: u64,
    image_id: Option<String>,
}

impl SimContainer {
    fn labels(&self) -> BTreeMap<String, String> {
        self.spec.labels.clone()
    }
}

#[derive(Debug)]
struct Inner {
    containers: HashMap<String, SimContainer>,
    names: HashMap<String, String>,
    images: HashMap<String, String>,
    volumes: BTreeMap<String, VolumeSpec>,
    timers: BTreeSet<Timer>,
    rng: ChaCha8Rng,
    seq: u64,
    next_ip: u32,
}

#[derive(Debug)]
struct Shared {
    config: SimulatedConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<RuntimeEvent>,
}

/// A container runtime that runs nothing, for scale tests.
#[derive(Debug, Clone)]
pub struct SimulatedRuntime {
    shared: Arc<Shared>,
}

impl SimulatedRuntime {
    pub fn new(config: SimulatedConfig, clock: Arc<dyn Clock>) -> Self {
        let (events, _) = broadcast::channel(4096);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            shared: Arc::new(Shared {
                config,
                clock,
                inner: Mutex::new(Inner {
                    containers: HashMap::new(),
                    names: HashMap::new(),
                    images: HashMap::new(),
                    volumes: BTreeMap::new(),
                    timers: BTreeSet::new(),
                    rng,
                    seq: 0,
                    next_ip: 2,
                }),
                events,
            }),
        }
    }

    /// Applies every scripted change due by the clock's now, emitting their
    /// events. Call it after moving a manual clock.
    pub fn tick(&self) {
        self.shared.tick();
    }

    /// Marks an image as present locally, as a `docker load` would.
    pub fn add_local_image(&self, image: &str) {
        let mut inner = self.shared.inner.lock();
        let id = random_id(&mut inner.rng);
        inner
            .images
            .insert(image.to_string(), format!("sha256:{id}"));
    }

    /// The named volumes that exist.
    pub fn volumes(&self) -> Vec<String> {
        self.shared.inner.lock().volumes.keys().cloned().collect()
    }

    /// The next instant (epoch ms) at which a scripted change is due.
    pub fn next_deadline(&self) -> Option<i64> {
        self.shared.inner.lock().timers.first().map(|t| t.0)
    }
}

impl Shared {
    fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    fn emit(&self, events: Vec<RuntimeEvent>) {
        for event in events {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
    }

    fn tick(&self) {
        let now = self.now();
        let mut out = Vec::new();
        {
            let mut inner = self.inner.lock();
            while let Some(first) = inner.timers.first() {
                if first.0 > now {
                    break;
                }
                let Some((at, _, id, generation, kind)) = inner.timers.pop_first() else {
                    break;
                };
                let Some(c) = inner.containers.get_mut(&id) else {
                    continue;
                };
                if c.generation != generation || c.status != ContainerStatus::Running {
                    continue;
                }
                match kind {
                    TimerKind::Exit(code) => {
                        out.extend(finish(c, at, code));
                    }
                    TimerKind::Healthy => {
                        if c.health == HealthStatus::Unknown {
                            c.health = HealthStatus::Healthy;
                            out.push(event(c, RuntimeEventKind::HealthChanged(c.health), at));
                        }
                    }
                    TimerKind::Unhealthy => {
                        if c.health != HealthStatus::Unhealthy {
                            c.health = HealthStatus::Unhealthy;
                            out.push(event(c, RuntimeEventKind::HealthChanged(c.health), at));
                        }
                    }
                }
            }
        }
        self.emit(out);
    }
}

fn event(c: &SimContainer, kind: RuntimeEventKind, at: i64) -> RuntimeEvent {
    RuntimeEvent {
        id: ContainerId(c.id.clone()),
        name: Some(c.spec.name.clone()),
        kind,
        time_millis: at,
        labels: c.labels(),
    }
}

/// Ends a running container's process at `at`, returning the events.
fn finish(c: &mut SimContainer, at: i64, code: i64) -> Vec<RuntimeEvent> {
    c.status = ContainerStatus::Exited;
    c.exit_code = Some(code);
    c.finished = Some(at);
    // Published ports are released with the process, as Docker does.
    c.ports.clear();
    c.ip = None;
    vec![event(
        c,
        RuntimeEventKind::Died {
            exit_code: Some(code),
        },
        at,
    )]
}

fn random_id(rng: &mut ChaCha8Rng) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn signal_number(signal: &str) -> Option<i64> {
    let s = signal.trim().trim_start_matches("SIG");
    if let Ok(n) = s.parse::<i64>() {
        return (1..=64).contains(&n).then_some(n);
    }
    Some(match s {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ABRT" => 6,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => return None,
    })
}

fn ips_overlap(a: &str, b: &str) -> bool {
    let unspecified = |s: &str| {
        s.parse::<IpAddr>()
            .map(|ip| ip.is_unspecified())
            .unwrap_or(false)
    };
    a == b || unspecified(a) || unspecified(b)
}

impl Inner {
    fn resolve(&self, id: &ContainerId) -> Result<String> {
        if self.containers.contains_key(id.as_str()) {
            return Ok(id.0.clone());
        }
        if let Some(found) = self.names.get(id.as_str()) {
            return Ok(found.clone());
        }
        // A unique id prefix, as Docker accepts.
        let mut matches = self
            .containers
            .keys()
            .filter(|k| k.starts_with(id.as_str()));
        match (matches.next(), matches.next()) {
            (Some(one), None) if !id.as_str().is_empty() => Ok(one.clone()),
            _ => Err(RuntimeError::NotFound(format!("No such container: {id}"))),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn port_taken(&self, ip: &str, port: u16, protocol: crate::types::Protocol) -> bool {
        self.containers.values().any(|c| {
            c.status.is_running()
                && c.ports.iter().any(|b| {
                    b.host_port == port && b.protocol == protocol && ips_overlap(&b.host_ip, ip)
                })
        })
    }
}

#[async_trait]
impl ContainerRuntime for SimulatedRuntime {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn info(&self) -> Result<RuntimeInfo> {
        let c = &self.shared.config;
        Ok(RuntimeInfo {
            runtime: "simulated".to_string(),
            simulated: true,
            server_version: "simulated".to_string(),
            api_version: None,
            cpus: c.cpus,
            memory_bytes: c.memory_bytes,
            operating_system: "simulated".to_string(),
            os_type: "linux".to_string(),
            architecture: std::env::consts::ARCH.to_string(),
            kernel_version: None,
            hostname: c.hostname.clone(),
        })
    }

    async fn ensure_image(
        &self,
        image: &str,
        _credentials: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        let now = self.shared.now();
        let mut inner = self.shared.inner.lock();
        if let Some(id) = inner.images.get(image) {
            return Ok(ImageInfo {
                image: image.to_string(),
                id: Some(id.clone()),
                pulled: false,
                pull_started_millis: None,
                pull_stopped_millis: None,
            });
        }
        if self.shared.config.missing_images.iter().any(|m| m == image) {
            return Err(RuntimeError::ImageNotFound {
                image: image.to_string(),
                message: format!(
                    "simulated: pull access denied for {image}, repository does not exist"
                ),
            });
        }
        let id = format!("sha256:{}", random_id(&mut inner.rng));
        inner.images.insert(image.to_string(), id.clone());
        Ok(ImageInfo {
            image: image.to_string(),
            id: Some(id),
            pulled: true,
            pull_started_millis: Some(now),
            pull_stopped_millis: Some(now),
        })
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId> {
        let behavior = match spec.labels.get(SIM_BEHAVIOR_LABEL) {
            Some(text) => SimBehavior::parse(text).ok_or_else(|| {
                RuntimeError::InvalidSpec(format!("unknown simulated behavior {text:?}"))
            })?,
            None => self.shared.config.default_behavior.clone(),
        };
        if spec.image.trim().is_empty() {
            return Err(RuntimeError::InvalidSpec("image is empty".to_string()));
        }
        if spec.network_mode == NetworkMode::None && !spec.ports.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "port mappings are not allowed in network mode none".to_string(),
            ));
        }
        let now = self.shared.now();
        let created_event;
        let id;
        {
            let mut inner = self.shared.inner.lock();
            let Some(image_id) = inner.images.get(&spec.image).cloned() else {
                return Err(RuntimeError::NotFound(format!(
                    "No such image: {}",
                    spec.image
                )));
            };
            if !spec.name.is_empty() {
                if let Some(existing) = inner.names.get(&spec.name) {
                    return Err(RuntimeError::Conflict(format!(
                        "Conflict. The container name \"/{}\" is already in use by container \"{existing}\"",
                        spec.name
                    )));
                }
            }
            for mount in &spec.mounts {
                if let MountSource::Volume(volume) = &mount.source {
                    inner
                        .volumes
                        .entry(volume.name.clone())
                        .or_insert_with(|| volume.clone());
                }
            }
            id = random_id(&mut inner.rng);
            let mut spec = spec.clone();
            if spec.name.is_empty() {
                spec.name = format!("sim-{}", &id[..12]);
            }
            spec.labels
                .insert(SIMULATED_LABEL.to_string(), "true".to_string());
            let container = SimContainer {
                id: id.clone(),
                behavior,
                status: ContainerStatus::Created,
                exit_code: None,
                error: None,
                health: HealthStatus::Unknown,
                created: now,
                started: None,
                finished: None,
                ports: Vec::new(),
                ip: None,
                generation: 0,
                image_id: Some(image_id),
                spec,
            };
            created_event = event(&container, RuntimeEventKind::Created, now);
            inner.names.insert(container.spec.name.clone(), id.clone());
            inner.containers.insert(id.clone(), container);
        }
        self.shared.emit(vec![created_event]);
        tracing::debug!(id = %id, "created simulated container");
        Ok(ContainerId(id))
    }

    async fn start(&self, id: &ContainerId) -> Result<()> {
        self.shared.tick();
        let now = self.shared.now();
        let (lo, hi) = self.shared.config.ephemeral_ports;
        let mut out = Vec::new();
        let result = {
            let mut inner = self.shared.inner.lock();
            let key = inner.resolve(id)?;
            let Some(c) = inner.containers.get(&key) else {
                return Err(RuntimeError::NotFound(format!("No such container: {id}")));
            };
            if c.status.is_running() {
                return Ok(());
            }
            if c.status == ContainerStatus::Removing || c.status == ContainerStatus::Dead {
                return Err(RuntimeError::Conflict(format!(
                    "container {id} cannot be started"
                )));
            }
            let behavior = c.behavior.clone();
            let health_check = c.spec.health_check.clone();
            let network_mode = c.spec.network_mode;
            let mappings = c.spec.ports.clone();

            // Bind the ports first: a conflict leaves the container created.
            let mut bound = Vec::new();
            let mut conflict = None;
            if network_mode == NetworkMode::Bridge {
                for m in &mappings {
                    let ip = m.host_ip.to_string();
                    let port = match m.requested_host_port() {
                        Some(p) => {
                            let taken = inner.port_taken(&ip, p, m.protocol)
                                || bound.iter().any(|b: &BoundPort| {
                                    b.host_port == p
                                        && b.protocol == m.protocol
                                        && ips_overlap(&b.host_ip, &ip)
                                });
                            if taken {
                                conflict = Some(format!(
                                    "Bind for {ip}:{p} failed: port is already allocated"
                                ));
                                break;
                            }
                            p
                        }
                        None => {
                            let found = (lo..=hi).find(|p| {
                                !inner.port_taken(&ip, *p, m.protocol)
                                    && !bound.iter().any(|b: &BoundPort| b.host_port == *p)
                            });
                            match found {
                                Some(p) => p,
                                None => {
                                    conflict = Some("no ephemeral host port is free".to_string());
                                    break;
                                }
                            }
                        }
                    };
                    bound.push(BoundPort {
                        container_port: m.container_port,
                        protocol: m.protocol,
                        host_ip: ip,
                        host_port: port,
                    });
                }
            }
            if let Some(message) = conflict {
                Err(RuntimeError::PortInUse(message))
            } else if let SimBehavior::FailToStart { message } = behavior {
                if let Some(c) = inner.containers.get_mut(&key) {
                    c.error = Some(message.clone());
                    c.exit_code = Some(128);
                }
                Err(RuntimeError::StartFailed(message))
            } else {
                let ip = (network_mode == NetworkMode::Bridge).then(|| {
                    let n = inner.next_ip;
                    inner.next_ip = inner.next_ip.wrapping_add(1);
                    format!("172.17.{}.{}", (n >> 8) & 0xff, n & 0xff)
                });
                let mut timers = Vec::new();
                let generation;
                {
                    let Some(c) = inner.containers.get_mut(&key) else {
                        return Err(RuntimeError::NotFound(format!("No such container: {id}")));
                    };
                    c.generation += 1;
                    generation = c.generation;
                    c.status = ContainerStatus::Running;
                    c.started = Some(now);
                    c.finished = None;
                    c.exit_code = None;
                    c.error = None;
                    c.health = HealthStatus::Unknown;
                    c.ports = bound;
                    c.ip = ip;
                    out.push(event(c, RuntimeEventKind::Started, now));
                }
                let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                match &behavior {
                    SimBehavior::ExitAfter { after, exit_code } => {
                        timers.push((now.saturating_add(ms(*after)), TimerKind::Exit(*exit_code)));
                    }
                    SimBehavior::BecomeUnhealthy { after } if health_check.is_some() => {
                        timers.push((now.saturating_add(ms(*after)), TimerKind::Unhealthy));
                    }
                    _ => {}
                }
                if let Some(h) = &health_check {
                    timers.push((now.saturating_add(ms(h.interval)), TimerKind::Healthy));
                }
                for (at, kind) in timers {
                    let seq = inner.next_seq();
                    inner
                        .timers
                        .insert((at, seq, key.clone(), generation, kind));
                }
                Ok(())
            }
        };
        self.shared.emit(out);
        // Timers due right away (zero durations) fire now.
        self.shared.tick();
        result
    }

    async fn stop(&self, id: &ContainerId, _timeout: Duration) -> Result<()> {
        self.shared.tick();
        let now = self.shared.now();
        let code = self.shared.config.stop_exit_code;
        let mut out = Vec::new();
        {
            let mut inner = self.shared.inner.lock();
            let key = inner.resolve(id)?;
            if let Some(c) = inner.containers.get_mut(&key) {
                if c.status.is_running() {
                    out.push(event(
                        c,
                        RuntimeEventKind::Killed {
                            signal: Some("15".to_string()),
                        },
                        now,
                    ));
                    out.extend(finish(c, now, code));
                    out.push(event(c, RuntimeEventKind::Stopped, now));
                }
            }
        }
        self.shared.emit(out);
        Ok(())
    }

    async fn kill(&self, id: &ContainerId, signal: &str) -> Result<()> {
        self.shared.tick();
        let now = self.shared.now();
        let number = signal_number(signal)
            .ok_or_else(|| RuntimeError::InvalidSpec(format!("invalid signal: {signal}")))?;
        let mut out = Vec::new();
        {
            let mut inner = self.shared.inner.lock();
            let key = inner.resolve(id)?;
            let Some(c) = inner.containers.get_mut(&key) else {
                return Err(RuntimeError::NotFound(format!("No such container: {id}")));
            };
            if !c.status.is_running() {
                return Err(RuntimeError::Conflict(format!(
                    "Container {key} is not running"
                )));
            }
            out.push(event(
                c,
                RuntimeEventKind::Killed {
                    signal: Some(number.to_string()),
                },
                now,
            ));
            out.extend(finish(c, now, 128 + number));
        }
        self.shared.emit(out);
        Ok(())
    }

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerState> {
        self.shared.tick();
        let inner = self.shared.inner.lock();
        let key = inner.resolve(id)?;
        let Some(c) = inner.containers.get(&key) else {
            return Err(RuntimeError::NotFound(format!("No such container: {id}")));
        };
        let mib = |m: u64| {
            i64::try_from(m)
                .unwrap_or(i64::MAX)
                .saturating_mul(1024 * 1024)
        };
        Ok(ContainerState {
            id: ContainerId(c.id.clone()),
            name: c.spec.name.clone(),
            image: c.spec.image.clone(),
            image_id: c.image_id.clone(),
            status: c.status,
            exit_code: c.exit_code,
            oom_killed: false,
            error: c.error.clone(),
            health: c.health,
            health_output: None,
            created_millis: Some(c.created),
            started_millis: c.started,
            finished_millis: c.finished,
            ports: c.ports.clone(),
            ip_address: c.ip.clone(),
            network_mode: c.spec.network_mode.as_str().to_string(),
            labels: c.labels(),
            memory_limit_bytes: c.spec.memory_limit_mib.map(mib),
            memory_reservation_bytes: c.spec.memory_reservation_mib.map(mib),
            cpu_shares: c
                .spec
                .cpu_shares
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            pid: None,
        })
    }

    async fn remove(&self, id: &ContainerId) -> Result<()> {
        self.shared.tick();
        let now = self.shared.now();
        let mut out = Vec::new();
        {
            let mut inner = self.shared.inner.lock();
            let Ok(key) = inner.resolve(id) else {
                return Ok(());
            };
            if let Some(mut c) = inner.containers.remove(&key) {
                if c.status.is_running() {
                    out.push(event(
                        &c,
                        RuntimeEventKind::Killed {
                            signal: Some("9".to_string()),
                        },
                        now,
                    ));
                    out.extend(finish(&mut c, now, 137));
                }
                out.push(event(&c, RuntimeEventKind::Destroyed, now));
                inner.names.remove(&c.spec.name);
                inner.timers.retain(|t| t.2 != key);
            }
        }
        self.shared.emit(out);
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let mut inner = self.shared.inner.lock();
        let in_use = inner.containers.values().any(|c| {
            c.spec.mounts.iter().any(|m| match &m.source {
                MountSource::Volume(v) => v.name == name,
                MountSource::Bind { .. } => false,
            })
        });
        if in_use {
            return Err(RuntimeError::Conflict(format!(
                "remove {name}: volume is in use"
            )));
        }
        inner.volumes.remove(name);
        Ok(())
    }

    async fn list(&self, filter: &LabelFilter) -> Result<Vec<ContainerSummary>> {
        self.shared.tick();
        let inner = self.shared.inner.lock();
        let mut out: Vec<ContainerSummary> = inner
            .containers
            .values()
            .filter(|c| filter.matches(&c.spec.labels))
            .map(|c| ContainerSummary {
                id: ContainerId(c.id.clone()),
                name: c.spec.name.clone(),
                image: c.spec.image.clone(),
                status: c.status,
                labels: c.labels(),
                created_millis: Some(c.created),
            })
            .collect();
        out.sort_by(|a, b| (a.created_millis, &a.id).cmp(&(b.created_millis, &b.id)));
        Ok(out)
    }

    fn events(&self, filter: &LabelFilter) -> EventStream {
        let rx = self.shared.events.subscribe();
        let state = (Arc::clone(&self.shared), rx, filter.clone());
        futures_util::stream::unfold(state, |(shared, mut rx, filter)| async move {
            loop {
                shared.tick();
                let received = match rx.try_recv() {
                    Err(broadcast::error::TryRecvError::Empty) => {
                        let deadline = shared.inner.lock().timers.first().map(|t| t.0);
                        match deadline {
                            Some(at) => {
                                let wait =
                                    u64::try_from(at.saturating_sub(shared.now())).unwrap_or(0);
                                tokio::select! {
                                    r = rx.recv() => r,
                                    _ = tokio::time::sleep(Duration::from_millis(wait)) => continue,
                                }
                            }
                            None => rx.recv().await,
                        }
                    }
                    Ok(e) => Ok(e),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        Err(broadcast::error::RecvError::Closed)
                    }
                };
                match received {
                    Ok(e) if filter.matches(&e.labels) => {
                        return Some((Ok(e), (shared, rx, filter)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let err = RuntimeError::Other(format!(
                            "simulated event stream lagged, {n} events missed"
                        ));
                        return Some((Err(err), (shared, rx, filter)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    async fn stats(&self, id: &ContainerId) -> Result<Stats> {
        self.shared.tick();
        let now = self.shared.now();
        let inner = self.shared.inner.lock();
        let key = inner.resolve(id)?;
        let Some(c) = inner.containers.get(&key) else {
            return Err(RuntimeError::NotFound(format!("No such container: {id}")));
        };
        let running = c.status.is_running();
        let uptime_ms = match (c.started, running) {
            (Some(s), true) => u64::try_from(now.saturating_sub(s)).unwrap_or(0),
            _ => 0,
        };
        let mib = 1024 * 1024;
        let limit = c.spec.memory_limit_mib.map(|m| m.saturating_mul(mib));
        let usage = if running {
            c.spec
                .memory_reservation_mib
                .or(c.spec.memory_limit_mib.map(|m| m / 2))
                .unwrap_or(16)
                .saturating_mul(mib)
        } else {
            0
        };
        // A steady 5% of one core, and a trickle of traffic.
        let cpu_total_ns = uptime_ms.saturating_mul(50_000);
        let system_ns = u64::try_from(now).unwrap_or(0).saturating_mul(1_000_000);
        let mut networks = BTreeMap::new();
        if c.spec.network_mode == NetworkMode::Bridge && running {
            networks.insert(
                "eth0".to_string(),
                NetworkStats {
                    rx_bytes: uptime_ms.saturating_mul(10),
                    rx_packets: uptime_ms / 100,
                    tx_bytes: uptime_ms.saturating_mul(5),
                    tx_packets: uptime_ms / 200,
                    ..Default::default()
                },
            );
        }
        Ok(Stats {
            read_millis: now,
            cpu_total_ns,
            system_cpu_ns: Some(system_ns),
            precpu_total_ns: cpu_total_ns.saturating_sub(50_000_000),
            presystem_cpu_ns: Some(system_ns.saturating_sub(1_000_000_000)),
            online_cpus: Some(self.shared.config.cpus),
            memory_usage_bytes: usage,
            memory_max_usage_bytes: Some(usage),
            memory_limit_bytes: limit.or(Some(self.shared.config.memory_bytes)),
            networks,
            pids: Some(u64::from(running)),
            raw: None,
        })
    }
    /// Nothing runs, so no container needs to reach the host.
    async fn bridge_gateway(&self) -> Result<Option<IpAddr>> {
        Ok(None)
    }
}
