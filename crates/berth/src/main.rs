//! The `berth` binary: parses the command line, wires the crates together
//! and runs. All behaviour lives in the libraries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use berth_control::{Config, ControlPlane, SystemClock};
use berth_edge::credentials::Source;
use berth_edge::{Authenticator, Credentials, Edge, RootCredentials};
use berth_store::SqliteStore;
use clap::{Args, Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server(args),
    }
}

fn server(args: ServerArgs) -> anyhow::Result<()> {
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("account id must be 12 digits, got {:?}", args.account_id);
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let store =
        SqliteStore::open(args.data_dir.join("state.db")).context("opening the state store")?;
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
        Arc::new(store),
        Config {
            region: args.region.clone(),
            account_id: args.account_id.clone(),
        },
        Arc::new(SystemClock),
    );
    let edge = Arc::new(Edge {
        control,
        auth: Authenticator::new(
            Credentials::with_root(&root, &args.account_id),
            &args.region,
        ),
        metrics: Default::default(),
        account_id: args.account_id.clone(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let local = listener.local_addr()?;
        tracing::info!(listen = %local, region = %args.region, "berth server ready");
        // The line scripts wait for; printed on stdout so it is easy to find.
        println!("berth server listening on http://{local}");
        berth_edge::serve(listener, edge, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}
