//! Property tests of the engine's safety laws.
// Tests may panic on a broken expectation; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use berth_scheduler::query::InstanceView;
use berth_scheduler::*;
use common::*;
use proptest::prelude::*;

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const RANGE: PlacementOptions = PlacementOptions {
    dynamic_port_first: 50000,
    dynamic_port_last: 50024,
};

fn arb_instance() -> impl Strategy<Value = ContainerInstance> {
    (
        0usize..3,
        0u32..4096,
        0u32..4096,
        0u32..3,
        prop::collection::vec(
            prop::sample::select(vec![22u16, 80, 443, 50000, 50001, 50010]),
            0..4,
        ),
        prop::collection::vec(prop::sample::select(vec![53u16, 50002]), 0..2),
        prop::sample::select(vec![
            InstanceStatus::Active,
            InstanceStatus::Active,
            InstanceStatus::Active,
            InstanceStatus::Draining,
        ]),
        prop::bool::weighted(0.9),
        prop::sample::select(vec!["t2.micro", "t2.large", "m5.large"]),
        0u32..3,
        // The instance's own dynamic port range, mostly none; overlapping the run's, disjoint from
        // it, narrow, or empty.
        prop::sample::select(vec![
            None,
            None,
            None,
            Some((50000u16, 50002u16)),
            Some((49998, 50001)),
            Some((50010, 50011)),
            Some((51000, 51003)),
            Some((50001, 50000)),
        ]),
    )
        .prop_map(
            |(zone, cpu, mem, gpus, tcp, udp, status, agent, itype, web_tasks, dynamic_ports)| {
                let mut i =
                    inst(0, ZONES[zone], 4096, 4096).with_attribute(ATTR_INSTANCE_TYPE, itype);
                i.remaining = res(cpu, mem, gpus);
                i.registered.gpus = 2;
                i.used_tcp_ports = tcp;
                i.used_udp_ports = udp;
                i.dynamic_ports = dynamic_ports;
                i.status = status;
                i.agent_connected = agent;
                for k in 0..web_tasks {
                    i.tasks.push(TaskOnInstance {
                        id: format!("pre-{k}"),
                        group: if k % 2 == 0 {
                            "service:web".into()
                        } else {
                            "service:db".into()
                        },
                        family: "f".into(),
                        resources: res(0, 0, 0),
                        tcp_ports: vec![],
                        udp_ports: vec![],
                    });
                    i.running_tasks_count += 1;
                }
                i
            },
        )
}

fn arb_cluster() -> impl Strategy<Value = ClusterSnapshot> {
    prop::collection::vec(arb_instance(), 0..12).prop_map(|mut instances| {
        for (n, i) in instances.iter_mut().enumerate() {
            i.id = format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/ci-{n}");
            i.ec2_instance_id = Some(format!("i-{n:04}"));
        }
        ClusterSnapshot { instances }
    })
}

fn arb_strategies() -> impl Strategy<Value = Vec<PlacementStrategy>> {
    prop::sample::select(vec![
        vec![],
        vec![strat("binpack", Some("memory"))],
        vec![strat("binpack", Some("cpu"))],
        vec![strat("spread", Some("instanceId"))],
        PlacementStrategy::service_defaults(),
        vec![
            PlacementStrategy::spread_availability_zone(),
            strat("binpack", Some("memory")),
        ],
        vec![
            strat("binpack", Some("cpu")),
            PlacementStrategy::spread_availability_zone(),
        ],
        vec![
            strat("spread", Some("attribute:ecs.instance-type")),
            strat("random", None),
        ],
        vec![strat("random", None)],
        vec![
            PlacementStrategy::spread_availability_zone(),
            strat("spread", Some("attribute:ecs.instance-type")),
            strat("binpack", Some("cpu")),
        ],
    ])
}

fn arb_constraints() -> impl Strategy<Value = Vec<PlacementConstraint>> {
    prop::sample::select(vec![
        vec![],
        vec![PlacementConstraint::DistinctInstance],
        vec![member_of("attribute:ecs.instance-type =~ t2.*")],
        vec![member_of("not(task:group == service:db)")],
        vec![member_of("runningTasksCount < 3"), PlacementConstraint::DistinctInstance],
        vec![member_of("attribute:ecs.availability-zone in [us-east-1a, us-east-1b] or task:group == service:web")],
    ])
}

fn arb_request() -> impl Strategy<Value = PlacementRequest> {
    (
        0u32..1500,
        0u32..1500,
        0u32..2,
        prop::collection::vec(prop::sample::select(vec![80u16, 50003]), 0..2),
        prop::collection::vec(prop::sample::select(vec![53u16]), 0..2),
        0u16..3,
        0u16..2,
        arb_strategies(),
        arb_constraints(),
        0u32..25,
    )
        .prop_map(
            |(cpu, mem, gpus, mut tcp, mut udp, dtcp, dudp, strategies, constraints, count)| {
                tcp.dedup();
                udp.dedup();
                PlacementRequest {
                    group: "service:web".into(),
                    family: "web".into(),
                    requirements: TaskRequirements {
                        resources: res(cpu, mem, gpus),
                        static_tcp_ports: tcp,
                        static_udp_ports: udp,
                        dynamic_tcp_ports: dtcp,
                        dynamic_udp_ports: dudp,
                    },
                    strategies,
                    constraints,
                    count,
                }
            },
        )
}

fn one(plan: &Plan, p: &Placement) -> Plan {
    Plan {
        placements: vec![p.clone()],
        unplaced: 0,
        diagnosis: plan.diagnosis.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Replaying a plan one placement at a time, each one is legal at the moment it is made: the
    /// instance is ACTIVE and connected, every constraint holds, resources suffice, no host port
    /// is taken twice, and dynamic ports come from the instance's own range (the run's when it has
    /// none). At the end, unplaced tasks really had nowhere to go.
    #[test]
    fn plans_are_safe(snap in arb_cluster(), req in arb_request(), seed in any::<u64>()) {
        let plan = place(&snap, &req, &RANGE, &mut rng(seed));
        prop_assert_eq!(plan.placements.len() + plan.unplaced as usize, req.count as usize);
        let need = &req.requirements;
        let mut cur = snap.clone();
        for p in &plan.placements {
            let i = &cur.instances[p.instance_index];
            prop_assert!(i.agent_connected && i.status == InstanceStatus::Active);
            prop_assert!(i.remaining.cpu >= need.resources.cpu, "cpu over-committed");
            prop_assert!(i.remaining.memory >= need.resources.memory, "memory over-committed");
            prop_assert!(i.remaining.gpus >= need.resources.gpus, "gpus over-committed");
            for c in &req.constraints {
                match c {
                    PlacementConstraint::DistinctInstance => prop_assert!(i.tasks.iter().all(|t| t.group != req.group)),
                    PlacementConstraint::MemberOf(e) => prop_assert!(e.eval(&InstanceView::new(i)), "{e}"),
                }
            }
            prop_assert_eq!(p.dynamic_tcp_ports.len(), usize::from(need.dynamic_tcp_ports));
            prop_assert_eq!(p.dynamic_udp_ports.len(), usize::from(need.dynamic_udp_ports));
            let used_tcp: BTreeSet<u16> = i.used_tcp_ports.iter().copied().collect();
            let used_udp: BTreeSet<u16> = i.used_udp_ports.iter().copied().collect();
            let mut new_tcp = BTreeSet::new();
            for port in need.static_tcp_ports.iter().chain(&p.dynamic_tcp_ports) {
                prop_assert!(!used_tcp.contains(port) && new_tcp.insert(*port), "tcp port {} twice", port);
            }
            let mut new_udp = BTreeSet::new();
            for port in need.static_udp_ports.iter().chain(&p.dynamic_udp_ports) {
                prop_assert!(!used_udp.contains(port) && new_udp.insert(*port), "udp port {} twice", port);
            }
            let (first, last) = i.dynamic_ports.unwrap_or((RANGE.dynamic_port_first, RANGE.dynamic_port_last));
            for port in p.dynamic_tcp_ports.iter().chain(&p.dynamic_udp_ports) {
                prop_assert!((first..=last).contains(port), "port {} outside {}-{}", port, first, last);
            }
            let mut k = 0;
            cur.apply(&req, &one(&plan, p), |_| { k += 1; format!("new-{k}") });
        }
        if plan.unplaced > 0 {
            let d = plan.diagnosis.as_ref().unwrap();
            prop_assert_eq!(d.rejections.len(), snap.instances.len());
            prop_assert_eq!(d.reasons.iter().map(|r| r.instances as usize).sum::<usize>(), snap.instances.len());
            // Nothing left would take the task: a fresh plan on the applied snapshot places none.
            let mut again = req.clone();
            again.count = 1;
            prop_assert!(place(&cur, &again, &RANGE, &mut rng(seed)).placements.is_empty());
        }
    }

    /// Same seed, same answer.
    #[test]
    fn same_seed_same_plan(snap in arb_cluster(), req in arb_request(), seed in any::<u64>()) {
        prop_assert_eq!(place(&snap, &req, &RANGE, &mut rng(seed)), place(&snap, &req, &RANGE, &mut rng(seed)));
    }

    /// With room everywhere, spread keeps the per-zone and per-instance counts within one.
    #[test]
    fn spread_keeps_counts_within_one(zones in prop::collection::vec(0usize..3, 1..15), count in 0u32..60, seed in any::<u64>(), by_zone in any::<bool>()) {
        let snap = ClusterSnapshot { instances: zones.iter().enumerate().map(|(n, z)| inst(n, ZONES[*z], 1 << 20, 1 << 20)).collect() };
        let mut req = task("service:web", 1, 1);
        req.count = count;
        req.strategies = if by_zone { PlacementStrategy::service_defaults() } else { vec![strat("spread", Some("instanceId"))] };
        let plan = place(&snap, &req, &RANGE, &mut rng(seed));
        prop_assert_eq!(plan.placements.len(), count as usize);
        let mut per_instance = vec![0i64; snap.instances.len()];
        let mut per_zone: BTreeMap<&str, i64> = BTreeMap::new();
        for z in &zones { per_zone.entry(ZONES[*z]).or_insert(0); }
        for p in &plan.placements {
            per_instance[p.instance_index] += 1;
            *per_zone.entry(ZONES[zones[p.instance_index]]).or_insert(0) += 1;
        }
        let spread = |v: Vec<i64>| v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0);
        if by_zone {
            prop_assert!(spread(per_zone.values().copied().collect()) <= 1, "{:?}", per_zone);
            for zone in per_zone.keys() {
                let within: Vec<i64> = (0..zones.len()).filter(|n| ZONES[zones[*n]] == *zone).map(|n| per_instance[n]).collect();
                prop_assert!(spread(within) <= 1);
            }
        } else {
            prop_assert!(spread(per_instance) <= 1);
        }
    }

    /// Placing `k` tasks of a new group and then scaling that group in by `k` gives back the snapshot.
    #[test]
    fn place_then_scale_in_restores(snap in arb_cluster(), mut req in arb_request(), seed in any::<u64>()) {
        req.group = "service:new".into();
        let plan = place(&snap, &req, &RANGE, &mut rng(seed));
        let mut cur = snap.clone();
        let mut k = 0;
        cur.apply(&req, &plan, |_| { k += 1; format!("new-{k}") });
        let placed = plan.placements.len() as u32;
        let stop = select_tasks_to_stop(&cur, &req.group, &req.strategies, placed, &mut rng(seed ^ 1));
        prop_assert_eq!(stop.len() as u32, placed);
        for t in &stop {
            prop_assert!(cur.remove_task(t.instance_index, &t.task_id).is_some());
        }
        prop_assert_eq!(cur, snap);
    }

    /// Scaling a balanced spread service in keeps it balanced.
    #[test]
    fn scale_in_spread_keeps_balance(zones in prop::collection::vec(0usize..3, 1..12), count in 1u32..40, remove in 0u32..40, seed in any::<u64>()) {
        let snap = ClusterSnapshot { instances: zones.iter().enumerate().map(|(n, z)| inst(n, ZONES[*z], 1 << 20, 1 << 20)).collect() };
        let mut req = task("service:web", 1, 1);
        req.count = count;
        req.strategies = PlacementStrategy::service_defaults();
        let plan = place(&snap, &req, &RANGE, &mut rng(seed));
        let mut cur = snap.clone();
        let mut k = 0;
        cur.apply(&req, &plan, |_| { k += 1; format!("t-{k}") });
        for t in select_tasks_to_stop(&cur, "service:web", &req.strategies, remove, &mut rng(seed)) {
            cur.remove_task(t.instance_index, &t.task_id);
        }
        let mut per_zone: BTreeMap<&str, i64> = BTreeMap::new();
        for z in &zones { per_zone.entry(ZONES[*z]).or_insert(0); }
        for (n, i) in cur.instances.iter().enumerate() {
            *per_zone.entry(ZONES[zones[n]]).or_insert(0) += i.tasks.len() as i64;
        }
        let v: Vec<i64> = per_zone.values().copied().collect();
        prop_assert!(v.iter().max().unwrap() - v.iter().min().unwrap() <= 1, "{:?}", per_zone);
    }
}
