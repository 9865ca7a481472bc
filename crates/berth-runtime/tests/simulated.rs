//! The simulated runtime: scripted behaviours on a manual clock, ports,
//! labels, events, determinism, and many instances in one process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::labels::{self, LabelFilter};
use berth_runtime::{
    ContainerId, ContainerRuntime, ContainerSpec, ContainerStatus, HealthCheck, HealthStatus,
    ManualClock, PortMapping, RuntimeError, RuntimeEventKind, SimBehavior, SimulatedConfig,
    SimulatedRuntime, SystemClock, SIMULATED_LABEL, SIM_BEHAVIOR_LABEL,
};
use futures_util::StreamExt;

const IMAGE: &str = "app:1";
const T0: i64 = 1_700_000_000_000;

fn runtime(seed: u64) -> (SimulatedRuntime, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let config = SimulatedConfig {
        seed,
        missing_images: vec!["missing:1".to_string()],
        ..Default::default()
    };
    (SimulatedRuntime::new(config, clock.clone()), clock)
}

fn spec(name: &str, behavior: Option<&str>) -> ContainerSpec {
    let mut labels = BTreeMap::new();
    labels.insert(labels::CONTAINER_NAME.to_string(), name.to_string());
    if let Some(b) = behavior {
        labels.insert(SIM_BEHAVIOR_LABEL.to_string(), b.to_string());
    }
    ContainerSpec {
        name: name.to_string(),
        image: IMAGE.to_string(),
        labels,
        ..Default::default()
    }
}

async fn run(rt: &SimulatedRuntime, spec: &ContainerSpec) -> ContainerId {
    rt.ensure_image(&spec.image, None).await.unwrap();
    let id = rt.create(spec).await.unwrap();
    rt.start(&id).await.unwrap();
    id
}

#[tokio::test]
async fn says_it_is_simulated() {
    let (rt, _) = runtime(1);
    assert_eq!(rt.name(), "simulated");
    let info = rt.info().await.unwrap();
    assert!(info.simulated);
    assert_eq!(info.runtime, "simulated");
    assert_eq!(info.server_version, "simulated");
    assert_eq!(info.cpu_units(), 2048);
    assert_eq!(info.memory_mib(), 4096);
    let id = run(&rt, &spec("web", None)).await;
    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(
        state.labels.get(SIMULATED_LABEL).map(String::as_str),
        Some("true")
    );
}

#[tokio::test]
async fn images_are_pulled_once_and_missing_ones_fail() {
    let (rt, _) = runtime(1);
    let first = rt.ensure_image(IMAGE, None).await.unwrap();
    assert!(first.pulled);
    assert_eq!(first.pull_started_millis, Some(T0));
    let again = rt.ensure_image(IMAGE, None).await.unwrap();
    assert!(!again.pulled);
    assert_eq!(again.id, first.id);
    assert!(matches!(
        rt.ensure_image("missing:1", None).await,
        Err(RuntimeError::ImageNotFound { .. })
    ));
    let mut no_image = spec("x", None);
    no_image.image = "never-pulled:1".to_string();
    assert!(matches!(
        rt.create(&no_image).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn runs_forever_until_stopped() {
    let (rt, clock) = runtime(1);
    let id = run(&rt, &spec("web", None)).await;
    clock.advance(3_600_000);
    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(state.status, ContainerStatus::Running);
    assert_eq!(state.started_millis, Some(T0));
    assert!(state.ip_address.is_some());

    rt.stop(&id, Duration::from_secs(30)).await.unwrap();
    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(state.status, ContainerStatus::Exited);
    assert_eq!(state.exit_code, Some(143));
    assert_eq!(state.finished_millis, Some(T0 + 3_600_000));
    // Idempotent, as on Docker.
    rt.stop(&id, Duration::from_secs(30)).await.unwrap();
    assert!(matches!(
        rt.kill(&id, "SIGKILL").await,
        Err(RuntimeError::Conflict(_))
    ));
}

#[tokio::test]
async fn exits_after_its_duration_with_its_code() {
    let (rt, clock) = runtime(1);
    let id = run(&rt, &spec("job", Some("exit:5s:3"))).await;
    clock.advance(4_999);
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Running
    );
    clock.advance(1);
    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(state.status, ContainerStatus::Exited);
    assert_eq!(state.exit_code, Some(3));
    assert_eq!(state.finished_millis, Some(T0 + 5_000));

    // Restarted, it runs its script again from the new start.
    rt.start(&id).await.unwrap();
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Running
    );
    clock.advance(5_000);
    assert_eq!(rt.inspect(&id).await.unwrap().exit_code, Some(3));
}

#[tokio::test]
async fn fails_to_start() {
    let (rt, _) = runtime(1);
    rt.ensure_image(IMAGE, None).await.unwrap();
    let id = rt
        .create(&spec(
            "broken",
            Some("fail:exec: \"app\": executable file not found"),
        ))
        .await
        .unwrap();
    match rt.start(&id).await {
        Err(RuntimeError::StartFailed(message)) => assert!(message.contains("executable file")),
        other => panic!("expected a start failure, got {other:?}"),
    }
    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(state.status, ContainerStatus::Created);
    assert!(state.error.is_some());
    assert_eq!(state.exit_code, Some(128));
}

#[tokio::test]
async fn becomes_healthy_then_unhealthy() {
    let (rt, clock) = runtime(1);
    let mut s = spec("web", Some("unhealthy:10s"));
    let mut check = HealthCheck::new(vec!["CMD-SHELL".to_string(), "true".to_string()]);
    check.interval = Duration::from_secs(1);
    s.health_check = Some(check);
    let mut events = rt.events(&LabelFilter::any());
    let id = run(&rt, &s).await;
    assert_eq!(rt.inspect(&id).await.unwrap().health, HealthStatus::Unknown);
    clock.advance(1_000);
    assert_eq!(rt.inspect(&id).await.unwrap().health, HealthStatus::Healthy);
    clock.advance(9_000);
    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(state.health, HealthStatus::Unhealthy);
    assert_eq!(state.status, ContainerStatus::Running);

    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        kinds.push(events.next().await.unwrap().unwrap().kind);
    }
    assert_eq!(
        kinds,
        vec![
            RuntimeEventKind::Created,
            RuntimeEventKind::Started,
            RuntimeEventKind::HealthChanged(HealthStatus::Healthy),
            RuntimeEventKind::HealthChanged(HealthStatus::Unhealthy),
        ]
    );

    // Without a health check the same script never reports health.
    let plain = run(&rt, &spec("plain", Some("unhealthy:1s"))).await;
    clock.advance(5_000);
    assert_eq!(
        rt.inspect(&plain).await.unwrap().health,
        HealthStatus::Unknown
    );
}

#[tokio::test]
async fn ports_are_bound_and_conflicts_refused() {
    let (rt, _) = runtime(1);
    let local: std::net::IpAddr = [127, 0, 0, 1].into();
    let mut a = spec("a", None);
    a.ports = vec![
        PortMapping::tcp(80, Some(49153)).on(local),
        PortMapping::tcp(81, None).on(local),
    ];
    let a = run(&rt, &a).await;
    let state = rt.inspect(&a).await.unwrap();
    let ports: Vec<(u16, u16)> = state
        .ports
        .iter()
        .map(|p| (p.container_port, p.host_port))
        .collect();
    assert_eq!(ports, vec![(80, 49153), (81, 32768)]);

    // 0.0.0.0 overlaps 127.0.0.1; UDP does not clash with TCP.
    let mut b = spec("b", None);
    b.ports = vec![PortMapping::tcp(80, Some(49153))];
    rt.ensure_image(IMAGE, None).await.unwrap();
    let b = rt.create(&b).await.unwrap();
    assert!(matches!(
        rt.start(&b).await,
        Err(RuntimeError::PortInUse(_))
    ));
    assert_eq!(
        rt.inspect(&b).await.unwrap().status,
        ContainerStatus::Created
    );
    let mut udp = spec("udp", None);
    udp.ports = vec![PortMapping {
        protocol: berth_runtime::Protocol::Udp,
        ..PortMapping::tcp(80, Some(49153))
    }];
    run(&rt, &udp).await;

    // Once the holder is gone the port is free again.
    rt.stop(&a, Duration::from_secs(1)).await.unwrap();
    rt.start(&b).await.unwrap();
    assert_eq!(rt.inspect(&b).await.unwrap().ports[0].host_port, 49153);
}

#[tokio::test]
async fn names_labels_list_and_remove() {
    let (rt, _) = runtime(1);
    let mut web = spec("web", None);
    web.labels.extend(
        labels::TaskLabels {
            cluster: "default",
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/1",
            container_name: "web",
            family: "web",
            revision: 2,
        }
        .to_map(),
    );
    let web = run(&rt, &web).await;
    let other = run(&rt, &spec("other", Some("exit:0:0"))).await;
    assert!(matches!(
        rt.create(&spec("web", None)).await,
        Err(RuntimeError::Conflict(_))
    ));

    let managed = rt.list(&LabelFilter::managed()).await.unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].id, web);
    let all = rt.list(&LabelFilter::any()).await.unwrap();
    assert_eq!(all.len(), 2);
    let exited = all.iter().find(|c| c.id == other).unwrap();
    assert_eq!(exited.status, ContainerStatus::Exited);

    // By name, as Docker allows.
    assert_eq!(rt.inspect(&ContainerId::from("web")).await.unwrap().id, web);
    rt.remove(&web).await.unwrap();
    rt.remove(&web).await.unwrap();
    assert!(matches!(
        rt.inspect(&web).await,
        Err(RuntimeError::NotFound(_))
    ));
    // The name is free again.
    rt.create(&spec("web", None)).await.unwrap();
}

#[tokio::test]
async fn kill_reports_the_signal_in_the_exit_code() {
    let (rt, _) = runtime(1);
    let id = run(&rt, &spec("victim", None)).await;
    rt.kill(&id, "SIGKILL").await.unwrap();
    assert_eq!(rt.inspect(&id).await.unwrap().exit_code, Some(137));
    let id = run(&rt, &spec("hup", None)).await;
    rt.kill(&id, "HUP").await.unwrap();
    assert_eq!(rt.inspect(&id).await.unwrap().exit_code, Some(129));
}

#[tokio::test]
async fn events_follow_a_manual_clock_and_are_filtered() {
    let (rt, clock) = runtime(1);
    let mut job = spec("job", Some("exit:2s:7"));
    job.labels.insert("team".to_string(), "a".to_string());
    let mut events = rt.events(&LabelFilter::any().with("team", "a"));
    run(&rt, &spec("unrelated", Some("exit:1s:1"))).await;
    let id = run(&rt, &job).await;
    assert_eq!(
        events.next().await.unwrap().unwrap().kind,
        RuntimeEventKind::Created
    );
    assert_eq!(
        events.next().await.unwrap().unwrap().kind,
        RuntimeEventKind::Started
    );

    let waiter = tokio::spawn(async move { events.next().await.unwrap().unwrap() });
    clock.advance(2_000);
    rt.tick();
    let died = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(died.id, id);
    assert_eq!(died.kind, RuntimeEventKind::Died { exit_code: Some(7) });
    assert_eq!(died.time_millis, T0 + 2_000);
}

#[tokio::test]
async fn events_on_the_wall_clock_fire_by_themselves() {
    let rt = SimulatedRuntime::new(SimulatedConfig::default(), Arc::new(SystemClock));
    let mut events = rt.events(&LabelFilter::any());
    let id = run(&rt, &spec("job", Some("exit:50ms:0"))).await;
    let died = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = events.next().await.unwrap().unwrap();
            if matches!(e.kind, RuntimeEventKind::Died { .. }) {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(died.id, id);
}

#[tokio::test]
async fn same_seed_same_run() {
    async fn script(seed: u64) -> Vec<(ContainerId, Option<String>)> {
        let (rt, clock) = runtime(seed);
        let mut out = Vec::new();
        for i in 0..5 {
            let mut s = spec(&format!("c{i}"), Some("exit:1s:0"));
            s.ports = vec![PortMapping::tcp(80, None)];
            let id = run(&rt, &s).await;
            clock.advance(500);
            out.push((id.clone(), rt.inspect(&id).await.unwrap().ip_address));
        }
        out
    }
    assert_eq!(script(7).await, script(7).await);
    assert_ne!(script(7).await, script(8).await);
}

#[tokio::test]
async fn many_simulated_hosts_in_one_process() {
    let clock = Arc::new(ManualClock::new(T0));
    let hosts: Vec<SimulatedRuntime> = (0..2_000)
        .map(|seed| {
            SimulatedRuntime::new(
                SimulatedConfig {
                    seed,
                    default_behavior: SimBehavior::ExitAfter {
                        after: Duration::from_secs(60),
                        exit_code: 0,
                    },
                    ..Default::default()
                },
                clock.clone(),
            )
        })
        .collect();
    for host in &hosts {
        for i in 0..5 {
            run(host, &spec(&format!("c{i}"), None)).await;
        }
    }
    clock.advance(60_000);
    let mut exited = 0;
    for host in &hosts {
        exited += host
            .list(&LabelFilter::any())
            .await
            .unwrap()
            .iter()
            .filter(|c| c.status == ContainerStatus::Exited)
            .count();
    }
    assert_eq!(exited, 10_000);
}

#[test]
fn behavior_labels_parse() {
    assert_eq!(SimBehavior::parse("run"), Some(SimBehavior::RunForever));
    assert_eq!(
        SimBehavior::parse("exit:2m:1"),
        Some(SimBehavior::ExitAfter {
            after: Duration::from_secs(120),
            exit_code: 1
        })
    );
    assert_eq!(
        SimBehavior::parse("unhealthy:250ms"),
        Some(SimBehavior::BecomeUnhealthy {
            after: Duration::from_millis(250)
        })
    );
    assert!(matches!(
        SimBehavior::parse("fail"),
        Some(SimBehavior::FailToStart { .. })
    ));
    assert_eq!(SimBehavior::parse("exit:soon:1"), None);
    assert_eq!(SimBehavior::parse("dance"), None);
}
