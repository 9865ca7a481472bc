//! Placement throughput: 1 and 10,000 tasks on 100, 1,000 and 10,000 instances, for binpack, spread
//! (AZ then instanceId), random, distinctInstance and memberOf.
//!
//! Run: `cargo bench -p berth-scheduler --bench placement`. The time of one iteration is one whole
//! planning run (setup of the working state included), for `count` tasks; criterion reports it as
//! elements per second, i.e. placements per second.
// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use berth_scheduler::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const TYPES: [&str; 4] = ["t2.large", "m5.large", "t2.xlarge", "c5.large"];

/// `n` instances of 8 vCPU / 32 GiB over three zones and four instance types, agent ports reserved.
fn cluster(n: usize) -> ClusterSnapshot {
    let instances = (0..n)
        .map(|k| {
            let mut i = ContainerInstance::new(
                format!("arn:aws:ecs:us-east-1:000000000000:container-instance/bench/{k:08x}"),
                Resources {
                    cpu: 8192,
                    memory: 32768,
                    gpus: 0,
                },
            )
            .with_attribute(ATTR_AVAILABILITY_ZONE, ZONES[k % 3])
            .with_attribute(ATTR_INSTANCE_TYPE, TYPES[(k / 3) % 4])
            .with_attribute(ATTR_OS_TYPE, "linux")
            .with_attribute(ATTR_CPU_ARCHITECTURE, "x86_64")
            .with_attribute(ATTR_AMI_ID, "ami-0123456789");
            i.ec2_instance_id = Some(format!("i-{k:017x}"));
            i.used_tcp_ports = vec![22, 2375, 2376, 51678, 51679];
            i
        })
        .collect();
    ClusterSnapshot { instances }
}

fn request(case: &str, count: u32) -> PlacementRequest {
    let (strategies, constraints) = match case {
        "binpack" => (vec![PlacementStrategy::Binpack(BinpackField::Memory)], vec![]),
        "spread" => (PlacementStrategy::service_defaults(), vec![]),
        "random" => (vec![PlacementStrategy::Random], vec![]),
        "distinctInstance" => (PlacementStrategy::service_defaults(), vec![PlacementConstraint::DistinctInstance]),
        "memberOf" => (
            vec![PlacementStrategy::Binpack(BinpackField::Memory)],
            vec![PlacementConstraint::member_of(
                "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
            )
            .unwrap()],
        ),
        other => panic!("unknown case {other}"),
    };
    PlacementRequest {
        group: "service:bench".into(),
        family: "bench".into(),
        requirements: TaskRequirements {
            resources: Resources {
                cpu: 16,
                memory: 64,
                gpus: 0,
            },
            dynamic_tcp_ports: 1,
            ..Default::default()
        },
        strategies,
        constraints,
        count,
    }
}

fn placement(c: &mut Criterion) {
    for case in [
        "binpack",
        "spread",
        "random",
        "distinctInstance",
        "memberOf",
    ] {
        let mut group = c.benchmark_group(case);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        for n in [100usize, 1_000, 10_000] {
            let snap = cluster(n);
            for tasks in [1u32, 10_000] {
                // distinctInstance cannot place more tasks than there are instances.
                let count = if case == "distinctInstance" {
                    tasks.min(n as u32)
                } else {
                    tasks
                };
                let req = request(case, count);
                let check = place(
                    &snap,
                    &req,
                    &PlacementOptions::default(),
                    &mut ChaCha8Rng::seed_from_u64(1),
                );
                assert_eq!(
                    check.placements.len(),
                    count as usize,
                    "{case} {n} {count}: {:?}",
                    check.diagnosis
                );
                group.throughput(Throughput::Elements(u64::from(count)));
                group.bench_with_input(
                    BenchmarkId::new(format!("{n}-instances"), tasks),
                    &req,
                    |b, req| {
                        b.iter(|| {
                            let mut rng = ChaCha8Rng::seed_from_u64(1);
                            black_box(place(&snap, req, &PlacementOptions::default(), &mut rng))
                        });
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, placement);
criterion_main!(benches);
