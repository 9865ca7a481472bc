//! Builders shared by the integration tests.
#![allow(dead_code)]

use berth_scheduler::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn res(cpu: u32, memory: u32, gpus: u32) -> Resources {
    Resources { cpu, memory, gpus }
}

/// An ACTIVE instance `ci-<n>` in `zone`, type `t2.micro` unless changed.
pub fn inst(n: usize, zone: &str, cpu: u32, memory: u32) -> ContainerInstance {
    let mut i = ContainerInstance::new(
        format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/ci-{n}"),
        res(cpu, memory, 0),
    )
    .with_attribute(ATTR_AVAILABILITY_ZONE, zone)
    .with_attribute(ATTR_INSTANCE_TYPE, "t2.micro")
    .with_attribute(ATTR_OS_TYPE, "linux")
    .with_attribute(ATTR_CPU_ARCHITECTURE, "x86_64");
    i.ec2_instance_id = Some(format!("i-{n:04}"));
    i.used_tcp_ports = vec![22, 2375, 2376, 51678, 51679];
    i
}

pub fn task(group: &str, cpu: u32, memory: u32) -> PlacementRequest {
    PlacementRequest {
        group: group.into(),
        family: "fam".into(),
        requirements: TaskRequirements {
            resources: res(cpu, memory, 0),
            ..Default::default()
        },
        strategies: vec![],
        constraints: vec![],
        count: 1,
    }
}

pub fn strat(kind: &str, field: Option<&str>) -> PlacementStrategy {
    match PlacementStrategy::from_wire(kind, field) {
        Ok(s) => s,
        Err(e) => panic!("bad strategy in test: {e}"),
    }
}

pub fn member_of(expr: &str) -> PlacementConstraint {
    match PlacementConstraint::member_of(expr) {
        Ok(c) => c,
        Err(e) => panic!("bad expression in test: {e}"),
    }
}

pub fn plan(snapshot: &ClusterSnapshot, req: &PlacementRequest, seed: u64) -> Plan {
    place(snapshot, req, &PlacementOptions::default(), &mut rng(seed))
}

/// Short ids of the instances each task went to.
pub fn targets(plan: &Plan) -> Vec<String> {
    plan.placements
        .iter()
        .map(|p| failure::short_id(&p.instance_id).to_owned())
        .collect()
}
