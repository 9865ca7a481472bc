//! The `berth` binary: parses the command line, wires the crates together
//! and runs. All behaviour lives in the libraries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use berth_control::{Config, ControlPlane, SystemClock};
use berth_edge::credentials::Source;
use berth_edge::registry::{Registry, RegistryConfig};
use berth_edge::{Authenticator, Credentials, Edge, RootCredentials};
use berth_store::SqliteStore;
use clap::{Args, Parser, Subcommand};

/// jemalloc instead of the system allocator. Under load (thousands of
/// channels, 50,000-task placements) glibc's malloc hands freed heap back to
/// the kernel and faults it in again: zeroing fresh pages profiled at 12-22%
/// of the server's and the agent's CPU. jemalloc keeps freed pages for a
/// while (its decay) before returning them.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "A self-hosted container orchestrator that speaks the ECS API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane: the ECS API, STS and health endpoints.
    Server(ServerArgs),
    /// Run the agent on this host: register it to a cluster and run the
    /// tasks placed on it.
    Agent(AgentArgs),
    /// Run the server and a local Docker agent together, on the embedded
    /// store: a whole Berth on one machine.
    Up(UpArgs),
}

#[derive(Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// `ecs.availability-zone` of the local instance.
    #[arg(long, default_value = "local-1a")]
    availability_zone: String,
    /// The host address task ports are published on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: std::net::IpAddr,
    /// `docker`, or `simulated`.
    #[arg(long, default_value = "docker")]
    runtime: String,
    #[command(flatten)]
    host: AgentHostArgs,
}

/// What `berth agent` and `berth up` both let the local agent be told.
#[derive(Args, Debug)]
struct AgentHostArgs {
    /// The cluster to join (`berth up` creates it).
    #[arg(long, env = "BERTH_CLUSTER", default_value = "default")]
    cluster: String,
    /// Port of the task metadata endpoint containers reach through
    /// `ECS_CONTAINER_METADATA_URI_V4` (0 picks a free one).
    #[arg(long, env = "BERTH_METADATA_PORT", default_value_t = berth_agent::metadata::DEFAULT_PORT)]
    metadata_port: u16,
    /// The range dynamic host ports are drawn from, `first-last`
    /// (default 49153-65535).
    #[arg(long, env = "BERTH_DYNAMIC_HOST_PORT_RANGE", value_parser = parse_port_range)]
    dynamic_host_port_range: Option<(u16, u16)>,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// The control plane's edge URL.
    #[arg(long, env = "BERTH_SERVER", default_value = "http://127.0.0.1:9480")]
    server: String,
    #[command(flatten)]
    host: AgentHostArgs,
    /// A custom attribute, `key=value`; repeatable.
    #[arg(long = "attribute")]
    attributes: Vec<String>,
    /// `ecs.availability-zone` of this host.
    #[arg(long, env = "BERTH_AVAILABILITY_ZONE")]
    availability_zone: Option<String>,
    /// `ecs.instance-type` of this host.
    #[arg(long, env = "BERTH_INSTANCE_TYPE")]
    instance_type: Option<String>,
    /// `docker`, or `simulated` (no containers run; for scale tests).
    #[arg(long, default_value = "docker")]
    runtime: String,
    /// How many container instances this process registers and runs; more
    /// than one needs `--runtime simulated`. Each keeps its registration in
    /// `<data-dir>/instance-<n>`.
    #[arg(long, default_value_t = 1)]
    instances: u32,
    /// Where the agent keeps its registration.
    #[arg(long, env = "BERTH_AGENT_DATA_DIR", default_value = ".berth-agent")]
    data_dir: PathBuf,
    /// The host address task ports are published on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_ip: std::net::IpAddr,
    /// Milliseconds between reconciliation passes.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Seconds an exited container of a finished task is kept.
    #[arg(long, default_value_t = 3 * 60 * 60)]
    cleanup_delay_secs: u64,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Address of the edge listener.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:9480")]
    listen: SocketAddr,
    /// Directory for the state store and generated credentials.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = ".berth")]
    data_dir: PathBuf,
    /// The region ARNs and signatures carry.
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    region: String,
    /// The account id ARNs carry.
    #[arg(long, env = "BERTH_ACCOUNT_ID", default_value = "000000000000")]
    account_id: String,
    /// Seconds between runs of registry lifecycle policy enforcement.
    #[arg(long, env = "BERTH_LIFECYCLE_INTERVAL", default_value_t = 3600)]
    lifecycle_interval: u64,
    /// Seconds between registry garbage collection sweeps.
    #[arg(long, env = "BERTH_REGISTRY_GC_INTERVAL", default_value_t = 3600)]
    registry_gc_interval: u64,
    /// Seconds an unreferenced blob is kept after its upload or last use
    /// (a push in flight pushes its layers before its manifest).
    #[arg(long, env = "BERTH_REGISTRY_GC_GRACE", default_value_t = 3600)]
    registry_gc_grace: u64,
    /// Seconds between heartbeats sent down each agent channel.
    #[arg(long, env = "BERTH_AGENT_HEARTBEAT_SECS", default_value_t = 2)]
    agent_heartbeat_secs: u64,
    /// Seconds without hearing from an agent before its instance shows
    /// `agentConnected: false` and gets no new tasks.
    #[arg(long, env = "BERTH_AGENT_TIMEOUT_SECS", default_value_t = 6)]
    agent_timeout_secs: u64,
    /// Milliseconds between passes of the service controller.
    #[arg(long, env = "BERTH_SERVICE_INTERVAL_MS", default_value_t = 1000)]
    service_interval_ms: u64,
    /// Seconds a STOPPED task stays visible before it is deleted.
    #[arg(long, env = "BERTH_STOPPED_TASK_RETENTION_SECS",
          default_value_t = berth_control::DEFAULT_STOPPED_TASK_RETENTION_SECS)]
    stopped_task_retention_secs: u64,
    /// Seconds a finished service deployment stays listed (with its
    /// revision) before it is deleted.
    #[arg(long, env = "BERTH_SERVICE_DEPLOYMENT_RETENTION_SECS",
          default_value_t = berth_control::DEFAULT_SERVICE_DEPLOYMENT_RETENTION_SECS)]
    service_deployment_retention_secs: u64,
    /// The most tasks one service may ask for (desiredCount): ECS's
    /// default tasks per service quota unless raised here.
    #[arg(long, env = "BERTH_MAX_TASKS_PER_SERVICE",
          default_value_t = berth_control::DEFAULT_MAX_TASKS_PER_SERVICE)]
    max_tasks_per_service: u32,
    /// Connections the edge keeps open at once (agent channels included);
    /// past it, new connections wait. Keep it below the open-file limit.
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", default_value_t = 8192)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers, and an idle
    /// keep-alive connection waits for its next request.
    #[arg(long, env = "BERTH_HEADER_TIMEOUT_SECS", default_value_t = 30)]
    header_timeout_secs: u64,
    /// Seconds a connection may move no byte while no request on it is
    /// being answered (agent channels excepted: they have heartbeats).
    #[arg(long, env = "BERTH_IDLE_TIMEOUT_SECS", default_value_t = 120)]
    idle_timeout_secs: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server(args),
        Command::Agent(args) => agent(args),
        Command::Up(args) => up(args),
    }
}

/// What a running server is made of, before it listens.
struct ServerParts {
    store: Arc<SqliteStore>,
    root: RootCredentials,
    /// The keys the edge accepts, for the registry's tokens.
    credentials: Credentials,
    /// Where the root credentials came from.
    source: Source,
    edge: Arc<Edge>,
}

fn prepare_server(args: &ServerArgs) -> anyhow::Result<ServerParts> {
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("account id must be 12 digits, got {:?}", args.account_id);
    }
    owner_only_dir(&args.data_dir)?;
    let store = Arc::new(
        SqliteStore::open(args.data_dir.join("state.db")).context("opening the state store")?,
    );
    let (root, source) = RootCredentials::load_or_create(&args.data_dir)?;
    match &source {
        Source::Environment => {
            tracing::info!(access_key_id = %root.access_key_id, "root credentials from the environment")
        }
        Source::File(p) => {
            tracing::info!(access_key_id = %root.access_key_id, path = %p.display(), "root credentials from file")
        }
        Source::Generated(p) => {
            tracing::info!(access_key_id = %root.access_key_id, path = %p.display(), "root credentials generated")
        }
    }
    let control = ControlPlane::new(
        store.clone(),
        Config {
            region: args.region.clone(),
            account_id: args.account_id.clone(),
            max_tasks_per_service: args.max_tasks_per_service,
        },
        Arc::new(SystemClock),
    );
    let credentials =
        Credentials::with_root(&root, &args.account_id).with_agent_keys(control.clone());
    let edge = Arc::new(Edge {
        auth: Authenticator::new(credentials.clone(), &args.region),
        control,
        metrics: Default::default(),
        account_id: args.account_id.clone(),
        channel: berth_edge::channel::ChannelSettings {
            heartbeat: std::time::Duration::from_secs(args.agent_heartbeat_secs.max(1)),
            silence: std::time::Duration::from_secs(args.agent_timeout_secs.max(1)),
        },
    });
    Ok(ServerParts {
        store,
        root,
        credentials,
        source,
        edge,
    })
}

/// Binds the edge, opens the registry and serves until `shutdown`;
/// `ready` learns the bound address.
async fn run_server(
    args: &ServerArgs,
    parts: ServerParts,
    ready: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    // The registry needs the bound address: repository URIs carry it.
    // Its tokens are honoured while the key that got them exists: today
    // only the root key.
    let access_keys: Arc<dyn berth_edge::registry::AccessKeys> = Arc::new(parts.credentials);
    let registry = Arc::new(
        Registry::open(
            parts.store,
            Arc::new(SystemClock),
            RegistryConfig {
                region: args.region.clone(),
                account_id: args.account_id.clone(),
                data_dir: args.data_dir.clone(),
                endpoint: local.to_string(),
            },
            access_keys,
        )
        .context("opening the registry")?,
    );
    berth_edge::registry::api::spawn_lifecycle_enforcement(
        registry.clone(),
        std::time::Duration::from_secs(args.lifecycle_interval.max(1)),
    );
    berth_edge::registry::gc::spawn_garbage_collection(
        registry.clone(),
        std::time::Duration::from_secs(args.registry_gc_interval.max(1)),
        std::time::Duration::from_secs(args.registry_gc_grace),
    );
    parts
        .edge
        .control
        .start_task_fanout()
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let control = parts.edge.control.clone();
    let timeout = args.agent_timeout_secs.max(1) as f64;
    // An agent found lost wakes the service controller at once, so its
    // tasks are replaced without waiting for the next pass.
    let lost = Arc::new(tokio::sync::Notify::new());
    let wake_services = lost.clone();
    // Liveness is checked a few times per timeout.
    spawn_periodic(
        "agent liveness",
        std::time::Duration::from_secs_f64((timeout / 4.0).max(0.25)),
        None,
        move || {
            let verdicts = control.check_agents(timeout)?;
            if verdicts.iter().any(|v| !v.connected) {
                lost.notify_one();
            }
            Ok(verdicts)
        },
    );
    let control = parts.edge.control.clone();
    spawn_periodic(
        "service controller",
        std::time::Duration::from_millis(args.service_interval_ms.max(50)),
        Some(wake_services),
        move || control.reconcile_services(),
    );
    let control = parts.edge.control.clone();
    let retention = args.stopped_task_retention_secs as f64;
    // Checked a few times per retention period, at most once a minute.
    spawn_periodic(
        "stopped task reaper",
        std::time::Duration::from_secs_f64((retention / 4.0).clamp(0.5, 60.0)),
        None,
        move || control.reap_stopped_tasks(retention),
    );
    let control = parts.edge.control.clone();
    let retention = args.service_deployment_retention_secs as f64;
    spawn_periodic(
        "service deployment reaper",
        std::time::Duration::from_secs_f64((retention / 4.0).clamp(0.5, 600.0)),
        None,
        move || control.reap_service_deployments(retention),
    );
    tracing::info!(listen = %local, region = %args.region, "berth server ready");
    // The line scripts wait for; printed on stdout so it is easy to find.
    println!("berth server listening on http://{local}");
    let _ = ready.send(local);
    let options = berth_edge::ServeOptions {
        max_connections: connection_cap(args.max_connections.max(1)),
        header_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout_secs.max(1)),
    };
    berth_edge::serve_with_registry(listener, parts.edge, Some(registry), options, shutdown).await
}

/// File handles kept free of connections: the store's, the registry's
/// blob and upload files, the Docker socket, logs.
const RESERVED_FILES: u64 = 256;

/// The connection cap used: `asked`, lowered below the process's
/// open-file limit when that is smaller, so that the cap (with its log
/// line) is what holds connections back, never a failing accept.
fn connection_cap(asked: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let Some(limit) = limit else {
        return asked;
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FILES).max(64)).unwrap_or(asked);
    if asked > room {
        tracing::warn!(
            max_connections = asked,
            open_file_limit = limit,
            cap = room,
            "--max-connections is above what the open-file limit allows; capping connections lower"
        );
        return room;
    }
    asked
}

/// Creates the data directory readable by its owner only (0700), or
/// narrows an existing one to that: it holds the state, the credentials and
/// the registry's blobs.
fn owner_only_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting data directory {}", dir.display()))
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    berth_model::container_instance::parse_port_range(text).ok_or_else(|| {
        format!("{text:?} is not a port range first-last with 1 <= first <= last <= 65535")
    })
}

/// Runs the blocking `job` every `period`, and also whenever `wake` is
/// notified, for good; a failed run is logged and the next one comes at
/// its time.
fn spawn_periodic<T, F>(
    what: &'static str,
    period: std::time::Duration,
    wake: Option<Arc<tokio::sync::Notify>>,
    job: F,
) where
    F: Fn() -> Result<T, berth_model::ApiError> + Clone + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match &wake {
                Some(wake) => {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = wake.notified() => {}
                    }
                }
                None => {
                    tick.tick().await;
                }
            }
            match tokio::task::spawn_blocking(job.clone()).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(job = what, error = %err.message, "periodic job failed")
                }
                Err(err) => tracing::warn!(job = what, error = %err, "periodic job panicked"),
            }
        }
    });
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn server(args: ServerArgs) -> anyhow::Result<()> {
    let parts = prepare_server(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (ready, _) = tokio::sync::oneshot::channel();
    runtime.block_on(run_server(&args, parts, ready, shutdown_signal()))
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let parts = prepare_server(&args.server)?;
    let root = parts.root.clone();
    let source = parts.source.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (ready, bound) = tokio::sync::oneshot::channel();
        let server_args = ServerArgs { ..args.server };
        let agent_data = server_args.data_dir.join("agent");
        let region = server_args.region.clone();
        let server =
            tokio::spawn(
                async move { run_server(&server_args, parts, ready, shutdown_signal()).await },
            );
        let local = match bound.await {
            Ok(local) => local,
            // The server ended before it listened: its own error says why
            // (e.g. which address is in use).
            Err(_) => {
                return match server.await {
                    Ok(Err(err)) => Err(err),
                    Ok(Ok(())) => Err(anyhow::anyhow!("the server stopped before it listened")),
                    Err(err) => Err(anyhow::Error::new(err).context("the server failed")),
                }
            }
        };
        let endpoint = format!("http://{local}");
        let client = berth_agent::EcsClient::new(
            &endpoint,
            &region,
            &root.access_key_id,
            &root.secret_access_key,
            None,
        )?;
        client
            .call(
                "CreateCluster",
                &serde_json::json!({"clusterName": args.host.cluster}),
            )
            .await
            .with_context(|| format!("creating cluster {}", args.host.cluster))?;
        let container_runtime = make_runtime(&args.runtime).await?;
        let config = berth_agent::AgentConfig {
            cluster: args.host.cluster.clone(),
            availability_zone: Some(args.availability_zone.clone()),
            instance_type: None,
            attributes: Vec::new(),
            data_dir: agent_data,
            bind_ip: args.bind_ip,
            poll_interval: std::time::Duration::from_millis(500),
            memory_reserve_mib: 256,
            cleanup_delay: std::time::Duration::from_secs(3 * 60 * 60),
            channel: Default::default(),
            metadata_port: Some(args.host.metadata_port),
            dynamic_port_range: args.host.dynamic_host_port_range,
            host_ports: host_ports(&args.runtime),
        };
        let agent = berth_agent::Agent::register(client, container_runtime, config).await?;
        println!("berth agent registered as {}", agent.instance_arn());
        println!();
        println!("Berth is up. To use it:");
        // Never the secret itself: this output often ends up in a log file.
        match &source {
            Source::File(path) | Source::Generated(path) => println!(
                "  export AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE=berth AWS_DEFAULT_REGION={region}",
                path.display()
            ),
            Source::Environment => println!(
                "  export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY=<the secret in BERTH_ROOT_SECRET_ACCESS_KEY> AWS_DEFAULT_REGION={region}",
                root.access_key_id
            ),
        }
        println!("  aws --endpoint-url {endpoint} ecs list-container-instances");
        tokio::spawn(agent.run(shutdown_signal()));
        server.await.context("server task failed")?
    })
}

async fn make_runtime(name: &str) -> anyhow::Result<Arc<dyn berth_runtime::ContainerRuntime>> {
    Ok(match name {
        "docker" => Arc::new(berth_runtime::DockerRuntime::connect().await?),
        "simulated" => Arc::new(berth_runtime::SimulatedRuntime::new(
            berth_runtime::SimulatedConfig::default(),
            Arc::new(berth_runtime::SystemClock),
        )),
        other => anyhow::bail!("unknown runtime {other:?}: use docker or simulated"),
    })
}

/// Where the agent learns which host ports are in use: this machine's
/// sockets for Docker; none for simulated hosts, whose ports are not this
/// machine's.
fn host_ports(runtime: &str) -> Arc<dyn berth_runtime::HostPorts> {
    match runtime {
        "simulated" => Arc::new(berth_runtime::NoHostPorts),
        _ => Arc::new(berth_runtime::ProcNetTcp),
    }
}

fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let access_key = std::env::var("AWS_ACCESS_KEY_ID").context("AWS_ACCESS_KEY_ID is not set")?;
    let secret_key =
        std::env::var("AWS_SECRET_ACCESS_KEY").context("AWS_SECRET_ACCESS_KEY is not set")?;
    let session_token = std::env::var("AWS_SESSION_TOKEN").ok();
    let mut attributes = Vec::new();
    for a in &args.attributes {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("attribute {a:?} is not key=value"))?;
        attributes.push((k.to_string(), v.to_string()));
    }
    let config = berth_agent::AgentConfig {
        cluster: args.host.cluster.clone(),
        availability_zone: args.availability_zone.clone(),
        instance_type: args.instance_type.clone(),
        attributes,
        data_dir: args.data_dir.clone(),
        bind_ip: args.bind_ip,
        poll_interval: std::time::Duration::from_millis(args.poll_interval_ms.max(50)),
        memory_reserve_mib: 256,
        cleanup_delay: std::time::Duration::from_secs(args.cleanup_delay_secs),
        channel: Default::default(),
        metadata_port: Some(args.host.metadata_port),
        dynamic_port_range: args.host.dynamic_host_port_range,
        host_ports: host_ports(&args.runtime),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.instances > 1 && args.runtime != "simulated" {
        anyhow::bail!(
            "--instances above 1 needs --runtime simulated: one Docker Engine is one instance"
        );
    }
    runtime.block_on(async move {
        let client = berth_agent::EcsClient::new(
            &args.server,
            &args.region,
            &access_key,
            &secret_key,
            session_token,
        )?;
        if args.instances <= 1 {
            let container_runtime = make_runtime(&args.runtime).await?;
            let agent = berth_agent::Agent::register(client, container_runtime, config).await?;
            println!("berth agent registered as {}", agent.instance_arn());
            agent.run(shutdown_signal()).await;
            return Ok(());
        }
        // Many simulated instances in one process, each with its own
        // runtime and registration, all stopped by one signal.
        let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut running = Vec::new();
        for n in 0..args.instances {
            let mut config = config.clone();
            config.data_dir = args.data_dir.join(format!("instance-{n}"));
            // One port cannot serve them all: each gets a free one.
            config.metadata_port = Some(0);
            let container_runtime = make_runtime(&args.runtime).await?;
            let agent =
                berth_agent::Agent::register(client.clone(), container_runtime, config).await?;
            let mut stopped = stop.subscribe();
            running.push(tokio::spawn(agent.run(async move {
                let _ = stopped.recv().await;
            })));
        }
        println!(
            "berth agent registered {} simulated instances",
            args.instances
        );
        shutdown_signal().await;
        let _ = stop.send(());
        for task in running {
            let _ = task.await;
        }
        Ok(())
    })
}
