//! What a request costs when most of it cannot be placed, and which host ports a task may get.
//!
//! - A request for any number of tasks that fit nowhere comes back with a count and one record per
//!   rejected instance, never one entry per task: its size (and so its memory) is bounded by the
//!   cluster, not by the count asked for. The placements made are those a smaller request makes.
//! - A dynamic host port is never one the instance reports as unusable (its registered `PORTS`,
//!   which include ports other processes hold) nor one a task on it holds; a static port in that
//!   set rejects the instance with `RESOURCE:PORTS`.
// Tests may panic on a broken expectation; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use berth_scheduler::*;
use common::*;
use proptest::prelude::*;

/// The serialized size of a plan: what it holds, whatever its shape.
fn size(plan: &Plan) -> usize {
    serde_json::to_vec(plan).unwrap().len()
}

#[test]
fn ten_million_tasks_that_fit_nowhere_come_back_as_a_count() {
    // Three instances, none with the memory a task needs.
    let snap = ClusterSnapshot {
        instances: (0..3).map(|n| inst(n, "us-east-1a", 4096, 256)).collect(),
    };
    let mut req = task("service:web", 128, 512);
    req.strategies = PlacementStrategy::service_defaults();
    req.count = 10_000_000;
    let p = plan(&snap, &req, 1);
    assert!(p.placements.is_empty());
    let d = p.diagnosis.as_ref().unwrap();
    assert_eq!(d.rejections.len(), 3);
    assert_eq!(d.wire_reasons(), vec!["RESOURCE:MEMORY"]);
    // One record per instance, not per task: a few hundred bytes, not tens of megabytes.
    assert!(size(&p) < 4096, "plan of {} bytes", size(&p));
    assert_eq!(
        serde_json::to_value(&p).unwrap()["unplaced"],
        serde_json::json!(10_000_000)
    );
}

#[test]
fn a_huge_request_places_what_fits_and_counts_the_rest() {
    // Room for two tasks on each of three instances.
    let snap = ClusterSnapshot {
        instances: (0..3).map(|n| inst(n, "us-east-1a", 4096, 1024)).collect(),
    };
    let mut req = task("service:web", 128, 512);
    req.strategies = PlacementStrategy::service_defaults();
    req.count = 6;
    let exact = plan(&snap, &req, 7);
    assert_eq!(exact.placements.len(), 6);
    for count in [10_000_000, u32::MAX] {
        req.count = count;
        let p = plan(&snap, &req, 7);
        assert_eq!(p.placements, exact.placements);
        assert_eq!(p.unplaced, count - 6);
        assert_eq!(p.diagnosis.as_ref().unwrap().rejections.len(), 3);
        assert!(size(&p) < 8192, "plan of {} bytes", size(&p));
    }
    // No instance at all: the same, with no record.
    let p = plan(&ClusterSnapshot::default(), &req, 7);
    assert_eq!((p.placements.len(), p.unplaced), (0, u32::MAX));
    assert!(p.diagnosis.unwrap().rejections.is_empty());
}

#[test]
fn dynamic_ports_avoid_the_reported_ports_and_the_tasks_ports() {
    // The agent reports 49153, 49154 and 49157 as unusable (held by other processes); a task on the
    // instance holds 49155.
    let mut i = inst(0, "us-east-1a", 4096, 8192);
    i.used_tcp_ports = vec![22, 49153, 49154, 49157];
    i.add_task(TaskOnInstance {
        id: "old".into(),
        group: "family:old".into(),
        family: "old".into(),
        resources: res(1, 1, 0),
        tcp_ports: vec![49155],
        udp_ports: vec![],
    });
    let snap = ClusterSnapshot { instances: vec![i] };
    let mut req = task("family:x", 1, 1);
    req.requirements.dynamic_tcp_ports = 1;
    req.count = 3;
    let p = plan(&snap, &req, 1);
    let ports: Vec<Vec<u16>> = p
        .placements
        .iter()
        .map(|p| p.dynamic_tcp_ports.clone())
        .collect();
    assert_eq!(ports, vec![vec![49156], vec![49158], vec![49159]]);

    // A static port the agent reported, or one the task holds: RESOURCE:PORTS.
    for taken in [49153, 49155] {
        let mut req = task("family:x", 1, 1);
        req.requirements.static_tcp_ports = vec![taken];
        let p = plan(&snap, &req, 1);
        assert!(p.placements.is_empty(), "static port {taken} was given");
        assert_eq!(p.diagnosis.unwrap().wire_reasons(), vec!["RESOURCE:PORTS"]);
    }
}

const RANGE: PlacementOptions = PlacementOptions {
    dynamic_port_first: 50000,
    dynamic_port_last: 50015,
};

fn arb_instance() -> impl Strategy<Value = ContainerInstance> {
    (
        // Ports the agent reports as unusable, in and around the range.
        prop::collection::vec(49995u16..50020, 0..12),
        // Ports held by tasks already there.
        prop::collection::vec(prop::collection::vec(49998u16..50018, 0..3), 0..3),
        prop::sample::select(vec![
            None,
            None,
            Some((50004u16, 50010u16)),
            Some((49996, 50001)),
        ]),
    )
        .prop_map(|(reserved, held, range)| {
            let mut i = inst(0, "us-east-1a", 1 << 20, 1 << 20);
            i.used_tcp_ports = reserved.clone();
            i.used_udp_ports = reserved;
            i.dynamic_ports = range;
            for (k, ports) in held.into_iter().enumerate() {
                i.add_task(TaskOnInstance {
                    id: format!("held-{k}"),
                    group: "family:other".into(),
                    family: "other".into(),
                    resources: res(0, 0, 0),
                    tcp_ports: ports.clone(),
                    udp_ports: ports,
                });
            }
            i
        })
}

fn arb_cluster() -> impl Strategy<Value = ClusterSnapshot> {
    prop::collection::vec(arb_instance(), 1..4).prop_map(|mut instances| {
        for (n, i) in instances.iter_mut().enumerate() {
            i.id = format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/ci-{n}");
        }
        ClusterSnapshot { instances }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A dynamic port is never in the reserved set: not one the instance reports as unusable, not
    /// one a task there holds, not one given to another task of the same run; and a static port in
    /// that set is never given.
    #[test]
    fn a_dynamic_port_is_never_in_the_reserved_set(
        snap in arb_cluster(),
        dynamic in 1u16..3,
        statics in prop::collection::vec(49995u16..50020, 0..2),
        count in 1u32..40,
        seed in any::<u64>(),
    ) {
        let mut req = task("service:web", 1, 1);
        req.requirements.dynamic_tcp_ports = dynamic;
        req.requirements.dynamic_udp_ports = 1;
        req.requirements.static_tcp_ports = statics.clone();
        req.requirements.static_tcp_ports.dedup();
        req.count = count;
        let plan = place(&snap, &req, &RANGE, &mut rng(seed));
        let mut taken: Vec<BTreeSet<u16>> = snap
            .instances
            .iter()
            .map(|i| i.used_tcp_ports.iter().copied().collect())
            .collect();
        let mut taken_udp: Vec<BTreeSet<u16>> = snap
            .instances
            .iter()
            .map(|i| i.used_udp_ports.iter().copied().collect())
            .collect();
        for p in &plan.placements {
            for port in &req.requirements.static_tcp_ports {
                prop_assert!(taken[p.instance_index].insert(*port), "static port {} given twice or reserved", port);
            }
            for port in &p.dynamic_tcp_ports {
                prop_assert!(taken[p.instance_index].insert(*port), "dynamic tcp port {} reserved", port);
            }
            for port in &p.dynamic_udp_ports {
                prop_assert!(taken_udp[p.instance_index].insert(*port), "dynamic udp port {} reserved", port);
            }
        }
        if plan.unplaced > 0 {
            let d = plan.diagnosis.as_ref().unwrap();
            prop_assert!(d.wire_reasons().iter().all(|r| r.starts_with("RESOURCE:PORTS")), "{:?}", d.reasons);
        }
    }

    /// For any count, the failure records are bounded by the cluster (at most one per instance,
    /// so at most reasons × instances), and the placements are those of a request for fewer tasks:
    /// what fits is placed as before, and the rest is a count.
    #[test]
    fn failure_records_are_bounded_by_the_cluster_not_the_count(
        snap in prop::collection::vec(
            (0u32..4096, 0u32..4096, prop::bool::weighted(0.85)),
            0..10,
        ),
        cpu in 0u32..1500,
        mem in 64u32..1500,
        distinct in any::<bool>(),
        small in 0u32..25,
        huge in prop::sample::select(vec![5_000u32, 10_000_000, u32::MAX]),
        seed in any::<u64>(),
    ) {
        let snap = ClusterSnapshot {
            instances: snap
                .into_iter()
                .enumerate()
                .map(|(n, (c, m, agent))| {
                    let mut i = inst(n, ["us-east-1a", "us-east-1b"][n % 2], 4096, 4096);
                    i.remaining = res(c, m, 0);
                    i.agent_connected = agent;
                    i
                })
                .collect(),
        };
        let mut req = task("service:web", cpu, mem);
        req.strategies = PlacementStrategy::service_defaults();
        if distinct {
            req.constraints = vec![PlacementConstraint::DistinctInstance];
        }
        req.count = small;
        let few = place(&snap, &req, &RANGE, &mut rng(seed));
        req.count = huge;
        let many = place(&snap, &req, &RANGE, &mut rng(seed));
        prop_assert_eq!(many.placements.len() as u64 + u64::from(many.unplaced), u64::from(huge));
        // The first tasks go where a smaller request puts them.
        prop_assert_eq!(&many.placements[..few.placements.len()], &few.placements[..]);
        if few.unplaced > 0 {
            prop_assert_eq!(&many.placements, &few.placements);
            prop_assert_eq!(&many.diagnosis, &few.diagnosis);
        }
        if let Some(d) = &many.diagnosis {
            let n = snap.instances.len();
            prop_assert!(d.rejections.len() <= n * FailureReason::ALL.len());
            let per_instance: BTreeSet<&str> = d.rejections.iter().map(|r| r.instance_id.as_str()).collect();
            prop_assert_eq!(per_instance.len(), d.rejections.len());
            prop_assert!(size(&many) < 1024 + 256 * (n + many.placements.len()), "plan of {} bytes", size(&many));
        }
    }
}
