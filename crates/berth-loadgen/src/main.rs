//! `berth-loadgen`: a bounded load generator for AWS JSON 1.1 APIs. It signs
//! every request with SigV4, drives one operation at a time with a fixed
//! number of concurrent workers for a fixed time (and at most a fixed number
//! of requests), and reports throughput and latency percentiles per target,
//! so Berth and a peer can be measured side by side in one run.
//!
//! ```text
//! berth-loadgen --target berth=http://127.0.0.1:9480 --target moto=http://127.0.0.1:5000 \
//!     --access-key AK --secret-key SK --concurrency 16 --seconds 10
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use berth_client::EcsClient;
use clap::Parser;
use serde_json::Value;
#[derive(Parser, Debug)]
#[command(about = "Signed, bounded load against AWS JSON APIs, side by side")]
struct Cli {
    /// `name=http://host:port`, repeatable; every target gets the same load.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY")]
    secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Operations to measure, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "RegisterTaskDefinition,DescribeTaskDefinition,ListTaskDefinitions"
    )]
    ops: Vec<String>,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per operation per target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Upper bound on requests per operation per target.
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
}

/// Revisions registered in the `seed` family before the read operations, so
/// that Describe and List read the same data on every target.
const SEED_REVISIONS: usize = 20;

/// One system under test.
#[derive(Clone)]
struct Target {
    name: String,
    client: EcsClient,
}

fn body_for(op: &str, worker: usize, seq: u64) -> anyhow::Result<Value> {
    let v = match op {
        "RegisterTaskDefinition" => serde_json::json!({
            "family": "loadgen",
            "containerDefinitions": [{
                "name": "app",
                "image": "127.0.0.1:9480/app:latest",
                "cpu": 128,
                "memory": 256,
                "essential": true,
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
                "environment": [{"name": "WORKER", "value": worker.to_string()}, {"name": "SEQ", "value": seq.to_string()}],
            }],
        }),
        "DescribeTaskDefinition" => serde_json::json!({"taskDefinition": "seed"}),
        "ListTaskDefinitions" => serde_json::json!({"familyPrefix": "seed"}),
        "ListClusters" => serde_json::json!({}),
        other => bail!("no workload for operation {other}"),
    };
    Ok(v)
}

async fn call(target: &Target, op: &str, body: &Value) -> anyhow::Result<()> {
    target.client.call(op, body).await?;
    Ok(())
}

struct Stats {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    first_error: Option<String>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }
}

async fn run_op(
    target: &Target,
    op: &str,
    concurrency: usize,
    seconds: u64,
    max_requests: u64,
) -> anyhow::Result<Stats> {
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for worker in 0..concurrency {
        let target = target.clone();
        let op = op.to_string();
        let issued = issued.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            while Instant::now() < deadline {
                let seq = issued.fetch_add(1, Ordering::Relaxed);
                if seq >= max_requests {
                    break;
                }
                let body = match body_for(&op, worker, seq) {
                    Ok(b) => b,
                    Err(e) => return (lat, errors + 1, Some(e.to_string())),
                };
                let t = Instant::now();
                match call(&target, &op, &body).await {
                    Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(e.to_string());
                        }
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        first_error: None,
    };
    for h in handles {
        let (lat, errors, first_error) = h.await?;
        stats.requests += lat.len() as u64;
        stats.errors += errors;
        stats.latencies_us.extend(lat);
        if stats.first_error.is_none() {
            stats.first_error = first_error;
        }
    }
    stats.elapsed = started.elapsed();
    stats.latencies_us.sort_unstable();
    Ok(stats)
}

async fn seed(target: &Target) -> anyhow::Result<()> {
    for i in 0..SEED_REVISIONS {
        let body = serde_json::json!({
            "family": "seed",
            "containerDefinitions": [{"name": "app", "image": "app:latest", "memory": 128,
                "environment": [{"name": "I", "value": i.to_string()}]}],
        });
        call(target, "RegisterTaskDefinition", &body)
            .await
            .with_context(|| format!("seeding {}", target.name))?;
    }
    Ok(())
}

fn parse_target(spec: &str, cli: &Cli) -> anyhow::Result<Target> {
    let (name, endpoint) = spec
        .split_once('=')
        .context("a target is name=http://host:port")?;
    if !endpoint.starts_with("http://") {
        bail!("only http:// endpoints are supported");
    }
    let client = EcsClient::new(
        endpoint,
        &cli.region,
        &cli.access_key,
        &cli.secret_key,
        None,
    )?;
    Ok(Target {
        name: name.to_string(),
        client,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let targets: Vec<Target> = cli
        .targets
        .iter()
        .map(|t| parse_target(t, &cli))
        .collect::<anyhow::Result<_>>()?;
    for t in &targets {
        seed(t).await?;
    }
    println!("| operation | target | requests | errors | req/s | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut rates: Vec<(String, String, f64)> = Vec::new();
    for op in &cli.ops {
        for t in &targets {
            let s = run_op(t, op, cli.concurrency, cli.seconds, cli.max_requests).await?;
            println!(
                "| {op} | {} | {} | {} | {:.0} | {:.2} | {:.2} |",
                t.name,
                s.requests,
                s.errors,
                s.rate(),
                s.percentile_ms(0.50),
                s.percentile_ms(0.99)
            );
            if let Some(e) = &s.first_error {
                eprintln!("first error from {} on {op}: {e}", t.name);
            }
            rates.push((op.clone(), t.name.clone(), s.rate()));
        }
    }
    if targets.len() >= 2 {
        let (a, b) = (&targets[0].name, &targets[1].name);
        println!();
        println!("| operation | {a} req/s | {b} req/s | {a} / {b} |");
        println!("|---|---:|---:|---:|");
        for op in &cli.ops {
            let get = |n: &str| {
                rates
                    .iter()
                    .find(|(o, t, _)| o == op && t == n)
                    .map(|r| r.2)
                    .unwrap_or(0.0)
            };
            let (ra, rb) = (get(a), get(b));
            println!(
                "| {op} | {ra:.0} | {rb:.0} | {:.1}x |",
                if rb > 0.0 { ra / rb } else { f64::INFINITY }
            );
        }
    }
    Ok(())
}
