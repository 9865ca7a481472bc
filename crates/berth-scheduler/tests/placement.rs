//! Table tests for strategies, constraints, failure reasons, ports, wire conversion and scale-in.
// Tests may panic on a broken expectation; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use berth_scheduler::*;
use common::*;

fn counts(plan: &Plan) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in targets(plan) {
        *m.entry(t).or_default() += 1;
    }
    m
}

#[test]
fn binpack_memory_picks_least_remaining_memory_that_fits() {
    let mut a = inst(0, "us-east-1a", 4096, 4096);
    a.remaining.memory = 600;
    let mut b = inst(1, "us-east-1a", 4096, 4096);
    b.remaining.memory = 300; // too little
    let mut c = inst(2, "us-east-1a", 4096, 4096);
    c.remaining.memory = 1000;
    let snap = ClusterSnapshot {
        instances: vec![a, b, c],
    };
    let mut req = task("family:x", 10, 512);
    req.strategies = vec![strat("binpack", Some("memory"))];
    req.count = 2;
    // First onto ci-0 (600 left), which then has 88: the second goes to ci-2.
    assert_eq!(targets(&plan(&snap, &req, 1)), vec!["ci-0", "ci-2"]);
}

#[test]
fn binpack_cpu_fills_one_instance_before_the_next() {
    let snap = ClusterSnapshot {
        instances: (0..3).map(|n| inst(n, "us-east-1a", 1024, 8192)).collect(),
    };
    let mut req = task("family:x", 256, 16);
    req.strategies = vec![strat("binpack", Some("cpu"))];
    req.count = 8;
    let c = counts(&plan(&snap, &req, 3));
    assert_eq!(c.values().copied().collect::<Vec<_>>(), vec![4, 4]);
}

#[test]
fn spread_availability_zone_balances_zones() {
    let zones = [
        "us-east-1a",
        "us-east-1a",
        "us-east-1a",
        "us-east-1b",
        "us-east-1c",
    ];
    let snap = ClusterSnapshot {
        instances: zones
            .iter()
            .enumerate()
            .map(|(n, z)| inst(n, z, 4096, 8192))
            .collect(),
    };
    let mut req = task("service:web", 10, 10);
    req.strategies = vec![PlacementStrategy::spread_availability_zone()];
    req.count = 9;
    let p = plan(&snap, &req, 5);
    let mut per_zone = BTreeMap::new();
    for pl in &p.placements {
        let z = snap.instances[pl.instance_index]
            .attribute(ATTR_AVAILABILITY_ZONE)
            .flatten()
            .unwrap();
        *per_zone.entry(z).or_insert(0) += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3]
    );
}

#[test]
fn spread_counts_existing_tasks_of_the_group_only() {
    let mut a = inst(0, "us-east-1a", 4096, 8192);
    for k in 0..2 {
        a.add_task(TaskOnInstance {
            id: format!("old-{k}"),
            group: "service:web".into(),
            family: "web".into(),
            resources: res(10, 10, 0),
            tcp_ports: vec![],
            udp_ports: vec![],
        });
    }
    let mut b = inst(1, "us-east-1b", 4096, 8192);
    b.add_task(TaskOnInstance {
        id: "other".into(),
        group: "service:other".into(),
        family: "o".into(),
        resources: res(10, 10, 0),
        tcp_ports: vec![],
        udp_ports: vec![],
    });
    let snap = ClusterSnapshot {
        instances: vec![a, b],
    };
    let mut req = task("service:web", 10, 10);
    req.strategies = PlacementStrategy::service_defaults();
    req.count = 2;
    assert_eq!(targets(&plan(&snap, &req, 9)), vec!["ci-1", "ci-1"]);
}

#[test]
fn spread_zone_then_instance_and_spread_zone_then_binpack() {
    let mut instances: Vec<_> = (0..4)
        .map(|n| {
            inst(
                n,
                if n < 2 { "us-east-1a" } else { "us-east-1b" },
                4096,
                8192,
            )
        })
        .collect();
    instances[1].remaining.memory = 1000;
    instances[3].remaining.memory = 2000;
    let snap = ClusterSnapshot { instances };
    let mut req = task("service:web", 10, 100);
    req.count = 4;
    req.strategies = PlacementStrategy::service_defaults();
    let c = counts(&plan(&snap, &req, 11));
    assert_eq!(c.values().copied().collect::<Vec<_>>(), vec![1, 1, 1, 1]);
    req.strategies = vec![
        PlacementStrategy::spread_availability_zone(),
        strat("binpack", Some("memory")),
    ];
    let c = counts(&plan(&snap, &req, 11));
    assert_eq!(
        c,
        BTreeMap::from([("ci-1".to_owned(), 2), ("ci-3".to_owned(), 2)])
    );
}

#[test]
fn attribute_spread_after_binpack_uses_the_linear_path() {
    // binpack first, then spread on zone: a chain the grouped trees cannot serve.
    let snap = ClusterSnapshot {
        instances: (0..4)
            .map(|n| {
                inst(
                    n,
                    if n % 2 == 0 {
                        "us-east-1a"
                    } else {
                        "us-east-1b"
                    },
                    4096,
                    200,
                )
            })
            .collect(),
    };
    let mut req = task("service:web", 10, 100);
    req.count = 4;
    req.strategies = vec![
        strat("binpack", Some("memory")),
        PlacementStrategy::spread_availability_zone(),
    ];
    for seed in 0..20 {
        let p = plan(&snap, &req, seed);
        // Binpack fills one instance (two tasks); when the rest tie on memory, zone spread sends the
        // next pair to the other zone.
        let c = counts(&p);
        assert_eq!(
            c.values().copied().collect::<Vec<_>>(),
            vec![2, 2],
            "seed {seed}"
        );
        let zones: std::collections::BTreeSet<_> = p
            .placements
            .iter()
            .map(|pl| snap.instances[pl.instance_index].attribute(ATTR_AVAILABILITY_ZONE))
            .collect();
        assert_eq!(zones.len(), 2, "seed {seed}");
    }
}

#[test]
fn random_is_seeded() {
    let snap = ClusterSnapshot {
        instances: (0..50).map(|n| inst(n, "us-east-1a", 4096, 8192)).collect(),
    };
    let mut req = task("family:x", 10, 10);
    req.strategies = PlacementStrategy::run_task_defaults();
    req.count = 20;
    let a = plan(&snap, &req, 42);
    assert_eq!(a, plan(&snap, &req, 42));
    assert_ne!(targets(&a), targets(&plan(&snap, &req, 43)));
    assert!(
        counts(&a).len() > 5,
        "random should use many instances: {:?}",
        counts(&a)
    );
}

#[test]
fn distinct_instance_places_one_per_instance_and_reports_the_rest() {
    let snap = ClusterSnapshot {
        instances: (0..3).map(|n| inst(n, "us-east-1a", 4096, 8192)).collect(),
    };
    let mut req = task("service:web", 10, 10);
    req.constraints = vec![PlacementConstraint::from_wire("distinctInstance", None).unwrap()];
    req.strategies = vec![strat("binpack", Some("memory"))];
    req.count = 5;
    let p = plan(&snap, &req, 1);
    assert_eq!(counts(&p).len(), 3);
    assert_eq!(p.unplaced, 2);
    let d = p.diagnosis.unwrap();
    assert_eq!(
        d.reasons,
        vec![ReasonCount {
            reason: FailureReason::DistinctInstance,
            instances: 3
        }]
    );
    assert_eq!(d.wire_reasons(), vec!["ATTRIBUTE"]);
}

#[test]
fn member_of_restricts_and_task_group_affinity_follows_planned_tasks() {
    let mut instances: Vec<_> = (0..4).map(|n| inst(n, "us-east-1a", 4096, 8192)).collect();
    instances[2] = instances[2]
        .clone()
        .with_attribute(ATTR_INSTANCE_TYPE, "m5.large");
    let snap = ClusterSnapshot { instances };
    let mut req = task("service:web", 10, 10);
    req.constraints = vec![member_of("attribute:ecs.instance-type =~ m5.*")];
    req.count = 3;
    assert_eq!(targets(&plan(&snap, &req, 1)), vec!["ci-2", "ci-2", "ci-2"]);

    // Anti-affinity with its own group is distinctInstance by another name, and sees planned tasks.
    req.constraints = vec![member_of("not(task:group == service:web)")];
    req.strategies = vec![strat("binpack", Some("cpu"))];
    req.count = 5;
    let p = plan(&snap, &req, 1);
    assert_eq!(p.placements.len(), 4);
    assert_eq!(
        p.diagnosis.unwrap().reasons,
        vec![ReasonCount {
            reason: FailureReason::Attribute,
            instances: 4
        }]
    );

    // runningTasksCount counts tasks planned in the same run.
    req.constraints = vec![member_of("runningTasksCount < 2")];
    req.count = 10;
    let p = plan(&snap, &req, 1);
    assert_eq!(p.placements.len(), 8);
}

/// One instance that fails exactly one check, named by the reason.
fn failing(reason: FailureReason) -> (ContainerInstance, PlacementRequest) {
    let mut i = inst(7, "us-east-1a", 1024, 1024);
    i.remaining.gpus = 1;
    i.registered.gpus = 1;
    let mut req = task("service:web", 256, 256);
    req.requirements.resources.gpus = 1;
    req.requirements.static_tcp_ports = vec![8080];
    req.requirements.static_udp_ports = vec![53];
    match reason {
        FailureReason::Agent => i.agent_connected = false,
        FailureReason::Attribute => {
            req.constraints = vec![member_of("attribute:ecs.instance-type == m5.large")]
        }
        FailureReason::DistinctInstance => {
            req.constraints = vec![PlacementConstraint::DistinctInstance];
            i.tasks.push(TaskOnInstance {
                id: "t".into(),
                group: "service:web".into(),
                family: "web".into(),
                resources: res(0, 0, 0),
                tcp_ports: vec![],
                udp_ports: vec![],
            });
        }
        FailureReason::Cpu => i.remaining.cpu = 100,
        FailureReason::Memory => i.remaining.memory = 100,
        FailureReason::Gpu => i.remaining.gpus = 0,
        FailureReason::PortsTcp => i.used_tcp_ports.push(8080),
        FailureReason::PortsUdp => i.used_udp_ports.push(53),
    }
    (i, req)
}

#[test]
fn every_failure_reason_in_ecs_words() {
    let table = [
        (
            FailureReason::Agent,
            "AGENT",
            "is not connected to its agent or is not ACTIVE",
        ),
        (
            FailureReason::Attribute,
            "ATTRIBUTE",
            "is missing an attribute required by your task",
        ),
        (
            FailureReason::DistinctInstance,
            "ATTRIBUTE",
            "is already running a task of this group (distinctInstance)",
        ),
        (
            FailureReason::Cpu,
            "RESOURCE:CPU",
            "has insufficient CPU units available",
        ),
        (
            FailureReason::Memory,
            "RESOURCE:MEMORY",
            "has insufficient memory available",
        ),
        (
            FailureReason::Gpu,
            "RESOURCE:GPU",
            "has insufficient GPU available",
        ),
        (
            FailureReason::PortsTcp,
            "RESOURCE:PORTS",
            "is already using a port required by your task",
        ),
        (
            FailureReason::PortsUdp,
            "RESOURCE:PORTS_UDP",
            "is already using a UDP port required by your task",
        ),
    ];
    for (reason, wire, lacking) in table {
        let (i, mut req) = failing(reason);
        req.count = 2;
        let snap = ClusterSnapshot { instances: vec![i] };
        let p = plan(&snap, &req, 1);
        assert!(p.placements.is_empty(), "{reason:?}");
        assert_eq!(p.unplaced, 2);
        let d = p.diagnosis.unwrap();
        assert_eq!(
            d.reasons,
            vec![ReasonCount {
                reason,
                instances: 1
            }],
            "{reason:?}"
        );
        assert_eq!(d.rejections[0].reason.as_wire(), wire);
        assert!(d.rejections[0].instance_id.ends_with("/ci-7"));
        assert_eq!(d.closest.as_ref().unwrap().lacking, vec![reason]);
        assert_eq!(
            d.message,
            format!(
                "service web was unable to place a task because no container instance met all of its requirements. \
                 The closest matching container-instance ci-7 {lacking}."
            ),
            "{reason:?}"
        );
    }
}

#[test]
fn draining_is_reported_as_agent_and_dynamic_port_exhaustion_as_ports() {
    let (mut i, req) = failing(FailureReason::Cpu);
    i.remaining.cpu = 4096;
    i.status = InstanceStatus::Draining;
    let p = plan(&ClusterSnapshot { instances: vec![i] }, &req, 1);
    assert_eq!(p.diagnosis.unwrap().reasons[0].reason, FailureReason::Agent);

    let mut i = inst(0, "us-east-1a", 4096, 4096);
    i.used_tcp_ports.push(40001);
    let snap = ClusterSnapshot { instances: vec![i] };
    let mut req = task("family:x", 1, 1);
    req.requirements.dynamic_tcp_ports = 2;
    req.count = 3;
    let opts = PlacementOptions {
        dynamic_port_first: 40000,
        dynamic_port_last: 40004,
    };
    let p = place(&snap, &req, &opts, &mut rng(1));
    // Five ports, one used: two tasks of two ports each, then RESOURCE:PORTS.
    assert_eq!(
        p.placements
            .iter()
            .map(|p| p.dynamic_tcp_ports.clone())
            .collect::<Vec<_>>(),
        vec![vec![40000, 40002], vec![40003, 40004]]
    );
    assert_eq!(p.diagnosis.unwrap().wire_reasons(), vec!["RESOURCE:PORTS"]);
}

#[test]
fn reasons_are_counted_per_instance_and_closest_has_fewest_gaps() {
    let mut instances = Vec::new();
    let mut a = inst(0, "us-east-1a", 4096, 4096);
    a.agent_connected = false;
    a.remaining.memory = 0;
    instances.push(a);
    let mut b = inst(1, "us-east-1a", 4096, 4096);
    b.remaining.memory = 100;
    b.remaining.cpu = 0;
    instances.push(b);
    let mut c = inst(2, "us-east-1a", 4096, 4096);
    c.remaining.memory = 100;
    instances.push(c);
    let snap = ClusterSnapshot { instances };
    let req = task("family:batch", 512, 512);
    let d = plan(&snap, &req, 1).diagnosis.unwrap();
    assert_eq!(
        d.reasons,
        vec![
            ReasonCount {
                reason: FailureReason::Agent,
                instances: 1
            },
            ReasonCount {
                reason: FailureReason::Cpu,
                instances: 1
            },
            ReasonCount {
                reason: FailureReason::Memory,
                instances: 1
            },
        ]
    );
    assert_eq!(
        d.wire_reasons(),
        vec!["AGENT", "RESOURCE:CPU", "RESOURCE:MEMORY"]
    );
    let closest = d.closest.unwrap();
    assert!(closest.instance_id.ends_with("ci-2"));
    assert!(d
        .message
        .starts_with("task group family:batch was unable to place a task"));
}

#[test]
fn empty_cluster_message() {
    let p = plan(&ClusterSnapshot::default(), &task("service:web", 1, 1), 1);
    let d = p.diagnosis.unwrap();
    assert!(d.rejections.is_empty());
    assert_eq!(
        d.message,
        "service web was unable to place a task. Reason: No Container Instances were found in your cluster."
    );
}

#[test]
fn dynamic_ports_skip_reserved_and_used_and_never_repeat() {
    let mut i = inst(0, "us-east-1a", 4096, 8192);
    i.used_tcp_ports.extend([49153, 49155]);
    i.used_udp_ports.push(49153);
    let snap = ClusterSnapshot { instances: vec![i] };
    let mut req = task("family:x", 1, 1);
    req.requirements.dynamic_tcp_ports = 2;
    req.requirements.dynamic_udp_ports = 1;
    req.requirements.static_tcp_ports = vec![]; // dynamic only
    req.count = 3;
    let p = plan(&snap, &req, 1);
    let tcp: Vec<_> = p
        .placements
        .iter()
        .map(|p| p.dynamic_tcp_ports.clone())
        .collect();
    assert_eq!(
        tcp,
        vec![vec![49154, 49156], vec![49157, 49158], vec![49159, 49160]]
    );
    let udp: Vec<_> = p
        .placements
        .iter()
        .map(|p| p.dynamic_udp_ports.clone())
        .collect();
    assert_eq!(udp, vec![vec![49154], vec![49155], vec![49156]]);
}

#[test]
fn static_ports_allow_one_task_per_instance() {
    let snap = ClusterSnapshot {
        instances: (0..3).map(|n| inst(n, "us-east-1a", 4096, 8192)).collect(),
    };
    let mut req = task("family:x", 1, 1);
    req.requirements.static_tcp_ports = vec![80];
    req.strategies = vec![strat("binpack", Some("memory"))];
    req.count = 4;
    let p = plan(&snap, &req, 1);
    assert_eq!(counts(&p).len(), 3);
    assert_eq!(p.diagnosis.unwrap().wire_reasons(), vec!["RESOURCE:PORTS"]);
}

#[test]
fn strategies_from_wire() {
    let ok = [
        (
            "binpack",
            Some("memory"),
            PlacementStrategy::Binpack(BinpackField::Memory),
        ),
        (
            "binpack",
            Some("cpu"),
            PlacementStrategy::Binpack(BinpackField::Cpu),
        ),
        (
            "BINPACK",
            Some("CPU"),
            PlacementStrategy::Binpack(BinpackField::Cpu),
        ),
        (
            "spread",
            Some("instanceId"),
            PlacementStrategy::Spread(SpreadField::InstanceId),
        ),
        (
            "spread",
            Some("host"),
            PlacementStrategy::Spread(SpreadField::InstanceId),
        ),
        (
            "spread",
            Some("attribute:ecs.availability-zone"),
            PlacementStrategy::spread_availability_zone(),
        ),
        (
            "spread",
            Some("attribute:custom"),
            PlacementStrategy::Spread(SpreadField::Attribute("custom".into())),
        ),
        ("random", None, PlacementStrategy::Random),
        ("random", Some("ignored"), PlacementStrategy::Random),
    ];
    for (kind, field, want) in ok {
        assert_eq!(
            PlacementStrategy::from_wire(kind, field).unwrap(),
            want,
            "{kind} {field:?}"
        );
    }
    let bad = [
        (
            "pack",
            Some("memory"),
            "invalid placement strategy type 'pack': must be one of binpack, spread, random",
        ),
        (
            "binpack",
            None,
            "placement strategy binpack requires a field",
        ),
        (
            "binpack",
            Some("disk"),
            "invalid binpack field 'disk': must be cpu or memory",
        ),
        ("spread", None, "placement strategy spread requires a field"),
        (
            "spread",
            Some("zone"),
            "invalid spread field 'zone': must be instanceId, host or attribute:<name>",
        ),
        (
            "spread",
            Some("attribute:"),
            "invalid spread field 'attribute:': must be instanceId, host or attribute:<name>",
        ),
    ];
    for (kind, field, msg) in bad {
        assert_eq!(
            PlacementStrategy::from_wire(kind, field)
                .unwrap_err()
                .to_string(),
            msg
        );
    }
    for s in [
        PlacementStrategy::Random,
        PlacementStrategy::spread_availability_zone(),
        PlacementStrategy::Binpack(BinpackField::Cpu),
    ] {
        let (t, f) = s.to_wire();
        assert_eq!(PlacementStrategy::from_wire(t, f.as_deref()).unwrap(), s);
    }
    assert_eq!(
        PlacementStrategy::run_task_defaults(),
        vec![PlacementStrategy::Random]
    );
    assert_eq!(
        PlacementStrategy::service_defaults(),
        vec![
            PlacementStrategy::spread_availability_zone(),
            PlacementStrategy::Spread(SpreadField::InstanceId)
        ]
    );
}

#[test]
fn constraints_from_wire() {
    assert_eq!(
        PlacementConstraint::from_wire("distinctInstance", None).unwrap(),
        PlacementConstraint::DistinctInstance
    );
    assert!(matches!(
        PlacementConstraint::from_wire("memberOf", Some("attribute:ecs.instance-type =~ t2.*")),
        Ok(PlacementConstraint::MemberOf(_))
    ));
    let bad = [
        ("distinctInstance", Some("x == y"), "an expression cannot be specified with a distinctInstance constraint"),
        ("memberOf", None, "an expression is required with a memberOf constraint"),
        ("memberOf", Some("  "), "an expression is required with a memberOf constraint"),
        ("sameHost", None, "invalid placement constraint type 'sameHost': must be one of distinctInstance, memberOf"),
        (
            "memberOf",
            Some("attribute:a =="),
            "invalid memberOf expression: invalid expression at position 14: expected a value, found end of expression",
        ),
    ];
    for (kind, expr, msg) in bad {
        assert_eq!(
            PlacementConstraint::from_wire(kind, expr)
                .unwrap_err()
                .to_string(),
            msg
        );
    }
    let long = format!("attribute:a == {}", "x".repeat(2000));
    assert!(matches!(
        PlacementConstraint::from_wire("memberOf", Some(&long)),
        Err(WireError::ExpressionTooLong(_))
    ));
}

fn with_group_tasks(layout: &[(usize, &str, u32)]) -> ClusterSnapshot {
    let mut instances = Vec::new();
    for (n, zone, k) in layout {
        let mut i = inst(*n, zone, 4096, 8192);
        for t in 0..*k {
            i.add_task(TaskOnInstance {
                id: format!("t-{n}-{t}"),
                group: "service:web".into(),
                family: "web".into(),
                resources: res(100, 1000, 0),
                tcp_ports: vec![],
                udp_ports: vec![],
            });
        }
        instances.push(i);
    }
    ClusterSnapshot { instances }
}

#[test]
fn scale_in_spread_takes_from_the_fullest_zone_then_instance() {
    let snap = with_group_tasks(&[
        (0, "us-east-1a", 3),
        (1, "us-east-1a", 1),
        (2, "us-east-1b", 2),
        (3, "us-east-1c", 1),
    ]);
    let stop = select_tasks_to_stop(
        &snap,
        "service:web",
        &PlacementStrategy::service_defaults(),
        2,
        &mut rng(1),
    );
    // Zone a has 4: take from its fullest instance (ci-0) twice would leave a=2, b=2, c=1.
    assert_eq!(
        stop.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
        vec!["t-0-2", "t-0-1"]
    );
}

#[test]
fn scale_in_binpack_frees_the_emptiest_instance() {
    let snap = with_group_tasks(&[
        (0, "us-east-1a", 3),
        (1, "us-east-1a", 1),
        (2, "us-east-1b", 2),
    ]);
    let stop = select_tasks_to_stop(
        &snap,
        "service:web",
        &[strat("binpack", Some("memory"))],
        3,
        &mut rng(1),
    );
    // ci-1 has the most memory left; then ci-2 (6192 after one stop vs ci-1 now empty of the group).
    assert_eq!(
        stop.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
        vec!["t-1-0", "t-2-1", "t-2-0"]
    );
}

#[test]
fn scale_in_stops_at_what_exists() {
    let snap = with_group_tasks(&[(0, "us-east-1a", 2)]);
    assert_eq!(
        select_tasks_to_stop(
            &snap,
            "service:web",
            &[PlacementStrategy::Random],
            5,
            &mut rng(1)
        )
        .len(),
        2
    );
    assert!(select_tasks_to_stop(&snap, "service:none", &[], 5, &mut rng(1)).is_empty());
}

#[test]
fn spread_over_an_attribute_with_many_values() {
    // 40 distinct values: more than the interner's short list.
    let snap = ClusterSnapshot {
        instances: (0..40)
            .map(|n| inst(n, ZONE_A, 4096, 8192).with_attribute("rack", &format!("r{}", n % 20)))
            .collect(),
    };
    let mut req = task("service:web", 1, 1);
    req.strategies = vec![
        strat("spread", Some("attribute:rack")),
        strat("spread", Some("instanceId")),
    ];
    req.count = 80;
    let c = counts(&plan(&snap, &req, 4));
    assert_eq!(c.len(), 40);
    assert!(c.values().all(|n| *n == 2), "{c:?}");
}

const ZONE_A: &str = "us-east-1a";

#[test]
fn check_instance_lists_every_gap_for_start_task() {
    let mut i = inst(0, "us-east-1a", 4096, 4096);
    i.agent_connected = false;
    i.remaining.memory = 10;
    i.used_tcp_ports.push(80);
    let snap = ClusterSnapshot {
        instances: vec![i, inst(1, "us-east-1a", 4096, 4096)],
    };
    let mut req = task("family:x", 10, 100);
    req.requirements.static_tcp_ports = vec![80];
    assert_eq!(
        check_instance(&snap, 0, &req, &PlacementOptions::default()),
        Some(vec![
            FailureReason::Agent,
            FailureReason::Memory,
            FailureReason::PortsTcp
        ])
    );
    assert_eq!(
        check_instance(&snap, 1, &req, &PlacementOptions::default()),
        Some(vec![])
    );
    assert_eq!(
        check_instance(&snap, 2, &req, &PlacementOptions::default()),
        None
    );
}

/// One case of the per-instance dynamic port range table.
struct RangeCase {
    name: &'static str,
    /// The instance's own range (`None`: the run's, 49153-49155 here).
    range: Option<(u16, u16)>,
    used_tcp: &'static [u16],
    static_tcp: &'static [u16],
    dynamic_tcp: u16,
    dynamic_udp: u16,
    count: u32,
    /// Dynamic TCP ports of each placed task, in order.
    tcp: &'static [&'static [u16]],
    /// Dynamic UDP ports of each placed task, in order.
    udp: &'static [&'static [u16]],
    /// The wire reasons when some task is left unplaced.
    reasons: &'static [&'static str],
}

/// A narrow run-wide range, so that a case can tell which range a decision used.
const NARROW_RUN: PlacementOptions = PlacementOptions {
    dynamic_port_first: 49153,
    dynamic_port_last: 49155,
};

#[test]
fn instance_dynamic_port_range_decides_feasibility_and_assignment() {
    let cases = [
        RangeCase {
            name: "two dynamic ports fill a two-port range",
            range: Some((40000, 40001)),
            used_tcp: &[],
            static_tcp: &[],
            dynamic_tcp: 2,
            dynamic_udp: 0,
            count: 1,
            tcp: &[&[40000, 40001]],
            udp: &[&[]],
            reasons: &[],
        },
        RangeCase {
            name: "three dynamic ports do not fit a two-port range",
            range: Some((40000, 40001)),
            used_tcp: &[],
            static_tcp: &[],
            dynamic_tcp: 3,
            dynamic_udp: 0,
            count: 1,
            tcp: &[],
            udp: &[],
            reasons: &["RESOURCE:PORTS"],
        },
        RangeCase {
            name: "tasks drain the instance's range, not the run's",
            range: Some((40000, 40001)),
            used_tcp: &[],
            static_tcp: &[],
            dynamic_tcp: 1,
            dynamic_udp: 0,
            count: 3,
            tcp: &[&[40000], &[40001]],
            udp: &[&[], &[]],
            reasons: &["RESOURCE:PORTS"],
        },
        RangeCase {
            name: "used ports in the instance's range are skipped",
            range: Some((40000, 40002)),
            used_tcp: &[40001],
            static_tcp: &[],
            dynamic_tcp: 2,
            dynamic_udp: 0,
            count: 2,
            tcp: &[&[40000, 40002]],
            udp: &[&[]],
            reasons: &["RESOURCE:PORTS"],
        },
        RangeCase {
            name: "a static port inside the instance's range counts against it",
            range: Some((40000, 40001)),
            used_tcp: &[],
            static_tcp: &[40000],
            dynamic_tcp: 2,
            dynamic_udp: 0,
            count: 1,
            tcp: &[],
            udp: &[],
            reasons: &["RESOURCE:PORTS"],
        },
        RangeCase {
            name: "a static port inside the instance's range leaves the rest",
            range: Some((40000, 40001)),
            used_tcp: &[],
            static_tcp: &[40000],
            dynamic_tcp: 1,
            dynamic_udp: 0,
            count: 1,
            tcp: &[&[40001]],
            udp: &[&[]],
            reasons: &[],
        },
        RangeCase {
            name: "a static port in the run's range but not the instance's does not count",
            range: Some((40000, 40002)),
            used_tcp: &[],
            static_tcp: &[49153],
            dynamic_tcp: 3,
            dynamic_udp: 0,
            count: 1,
            tcp: &[&[40000, 40001, 40002]],
            udp: &[&[]],
            reasons: &[],
        },
        RangeCase {
            name: "without a range of its own the instance uses the run's",
            range: None,
            used_tcp: &[],
            static_tcp: &[49153],
            dynamic_tcp: 3,
            dynamic_udp: 0,
            count: 1,
            tcp: &[],
            udp: &[],
            reasons: &["RESOURCE:PORTS"],
        },
        RangeCase {
            name: "the run's range when the instance has none",
            range: None,
            used_tcp: &[],
            static_tcp: &[],
            dynamic_tcp: 2,
            dynamic_udp: 1,
            count: 1,
            tcp: &[&[49153, 49154]],
            udp: &[&[49153]],
            reasons: &[],
        },
        RangeCase {
            name: "udp draws from the instance's range too",
            range: Some((40000, 40001)),
            used_tcp: &[],
            static_tcp: &[],
            dynamic_tcp: 1,
            dynamic_udp: 2,
            count: 1,
            tcp: &[&[40000]],
            udp: &[&[40000, 40001]],
            reasons: &[],
        },
        RangeCase {
            name: "udp exhaustion is RESOURCE:PORTS_UDP",
            range: Some((40000, 40001)),
            used_tcp: &[],
            static_tcp: &[],
            dynamic_tcp: 0,
            dynamic_udp: 3,
            count: 1,
            tcp: &[],
            udp: &[],
            reasons: &["RESOURCE:PORTS_UDP"],
        },
        RangeCase {
            name: "an empty range offers no dynamic port",
            range: Some((40001, 40000)),
            used_tcp: &[],
            static_tcp: &[],
            dynamic_tcp: 1,
            dynamic_udp: 0,
            count: 1,
            tcp: &[],
            udp: &[],
            reasons: &["RESOURCE:PORTS"],
        },
        RangeCase {
            name: "an empty range still takes tasks with static ports only",
            range: Some((40001, 40000)),
            used_tcp: &[],
            static_tcp: &[8080],
            dynamic_tcp: 0,
            dynamic_udp: 0,
            count: 1,
            tcp: &[&[]],
            udp: &[&[]],
            reasons: &[],
        },
    ];
    for c in cases {
        let mut i = inst(0, ZONE_A, 4096, 4096);
        i.dynamic_ports = c.range;
        i.used_tcp_ports.extend_from_slice(c.used_tcp);
        let snap = ClusterSnapshot { instances: vec![i] };
        let mut req = task("family:x", 1, 1);
        req.requirements.static_tcp_ports = c.static_tcp.to_vec();
        req.requirements.dynamic_tcp_ports = c.dynamic_tcp;
        req.requirements.dynamic_udp_ports = c.dynamic_udp;
        req.count = c.count;
        let p = place(&snap, &req, &NARROW_RUN, &mut rng(1));
        let general = place_general(&snap, &req, &NARROW_RUN, &mut rng(1));
        assert_eq!(p, general, "{}: fast path and engine differ", c.name);
        let tcp: Vec<Vec<u16>> = p
            .placements
            .iter()
            .map(|p| p.dynamic_tcp_ports.clone())
            .collect();
        let udp: Vec<Vec<u16>> = p
            .placements
            .iter()
            .map(|p| p.dynamic_udp_ports.clone())
            .collect();
        assert_eq!(tcp, c.tcp, "{}", c.name);
        assert_eq!(udp, c.udp, "{}", c.name);
        let reasons = p.diagnosis.as_ref().map(Diagnosis::wire_reasons);
        let expected = (!c.reasons.is_empty()).then(|| c.reasons.to_vec());
        assert_eq!(reasons, expected, "{}", c.name);
        // StartTask's check agrees on the first task.
        let first_fits = !c.tcp.is_empty();
        assert_eq!(
            check_instance(&snap, 0, &req, &NARROW_RUN).is_some_and(|r| r.is_empty()),
            first_fits,
            "{}: check_instance",
            c.name
        );
    }
}

#[test]
fn instances_with_different_ranges_in_one_snapshot() {
    let snap = ClusterSnapshot {
        instances: vec![
            inst(0, ZONE_A, 4096, 4096).with_dynamic_ports(40000, 40009),
            inst(1, ZONE_A, 4096, 4096).with_dynamic_ports(41000, 41009),
            inst(2, ZONE_A, 4096, 4096),
        ],
    };
    let mut req = task("service:web", 1, 1);
    req.requirements.dynamic_tcp_ports = 2;
    req.strategies = vec![strat("spread", Some("instanceId"))];
    req.count = 6;
    let p = place(&snap, &req, &PlacementOptions::default(), &mut rng(3));
    assert_eq!(p.unplaced, 0, "{:?}", p.diagnosis);
    let mut by_instance: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
    for pl in &p.placements {
        by_instance
            .entry(pl.instance_index)
            .or_default()
            .extend_from_slice(&pl.dynamic_tcp_ports);
    }
    for ports in by_instance.values_mut() {
        ports.sort_unstable();
    }
    assert_eq!(
        by_instance,
        BTreeMap::from([
            (0, vec![40000, 40001, 40002, 40003]),
            (1, vec![41000, 41001, 41002, 41003]),
            (2, vec![49153, 49154, 49155, 49156]),
        ])
    );

    // A run-wide range too small for the task: only the instance with a range of its own can take
    // it, until that range runs out too.
    let snap = ClusterSnapshot {
        instances: vec![
            inst(0, ZONE_A, 4096, 4096),
            inst(1, ZONE_A, 4096, 4096).with_dynamic_ports(41000, 41004),
        ],
    };
    let opts = PlacementOptions {
        dynamic_port_first: 50000,
        dynamic_port_last: 50000,
    };
    let mut req = task("family:x", 1, 1);
    req.requirements.dynamic_tcp_ports = 2;
    let one = place(&snap, &req, &opts, &mut rng(1));
    assert_eq!(one, place_general(&snap, &req, &opts, &mut rng(1)));
    assert_eq!(targets(&one), vec!["ci-1"]);
    assert_eq!(
        one.placements.first().map(|p| p.dynamic_tcp_ports.clone()),
        Some(vec![41000, 41001])
    );
    req.count = 3;
    let p = place(&snap, &req, &opts, &mut rng(1));
    assert_eq!(targets(&p), vec!["ci-1", "ci-1"]);
    assert_eq!(
        p.placements
            .iter()
            .map(|p| p.dynamic_tcp_ports.clone())
            .collect::<Vec<_>>(),
        vec![vec![41000, 41001], vec![41002, 41003]]
    );
    let d = p.diagnosis.as_ref();
    assert_eq!(d.map(Diagnosis::wire_reasons), Some(vec!["RESOURCE:PORTS"]));
    assert_eq!(d.map(|d| d.rejections.len()), Some(2));
}

#[test]
fn single_task_path_and_engine_agree_on_instance_ranges() {
    // Ranges of every kind side by side: the run's, a wide one, a narrow one, one half used, an
    // empty one.
    let mut instances = vec![
        inst(0, "us-east-1a", 4096, 4096),
        inst(1, "us-east-1b", 4096, 2048).with_dynamic_ports(30000, 39999),
        inst(2, "us-east-1c", 4096, 1024).with_dynamic_ports(40000, 40001),
        inst(3, "us-east-1a", 4096, 512).with_dynamic_ports(40000, 40003),
        inst(4, "us-east-1b", 4096, 256).with_dynamic_ports(40001, 40000),
    ];
    instances[3].used_tcp_ports.extend([40000, 40002]);
    let snap = ClusterSnapshot { instances };
    let opts = PlacementOptions {
        dynamic_port_first: 50000,
        dynamic_port_last: 50001,
    };
    let strategies = [
        vec![strat("binpack", Some("memory"))],
        vec![strat("random", None)],
        PlacementStrategy::service_defaults(),
        vec![],
    ];
    for strategies in &strategies {
        for dynamic in 0..4u16 {
            for statics in [vec![], vec![40000], vec![50000]] {
                for seed in 0..8 {
                    let mut req = task("service:web", 1, 1);
                    req.strategies = strategies.clone();
                    req.requirements.dynamic_tcp_ports = dynamic;
                    req.requirements.static_tcp_ports = statics.clone();
                    let fast = place(&snap, &req, &opts, &mut rng(seed));
                    let general = place_general(&snap, &req, &opts, &mut rng(seed));
                    assert_eq!(fast, general, "{strategies:?} {dynamic} {statics:?} {seed}");
                }
            }
        }
    }
}
