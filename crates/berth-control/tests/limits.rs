#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! Limits and refusals of issue 13, over an in-memory store: ECS's quotas on
//! how many tasks a call may ask for, the 64 KiB task definition, every
//! setting Berth cannot honour refused in one message by everything that
//! would run it, ECS Exec refused alike everywhere, awsvpc named as what it
//! is, and the ports an agent reports as unusable kept out of placement.

mod common;

use berth_control::{Config, ControlPlane};
use berth_model::{ApiError, ErrorCode};
use common::{err, ok, plane, plane_with};
use serde_json::{json, Value};

fn register(cp: &ControlPlane, family: &str, container: Value) {
    let mut c = json!({"name": "app", "image": "busybox", "memory": 64});
    for (k, v) in container.as_object().unwrap() {
        c[k] = v.clone();
    }
    ok(
        cp,
        "RegisterTaskDefinition",
        json!({"family": family, "containerDefinitions": [c]}),
    );
}

/// An instance with `memory` MiB and these host ports reported as unusable.
fn instance(cp: &ControlPlane, cluster: &str, memory: i64, ports: &[&str]) -> String {
    let r = ok(
        cp,
        "RegisterContainerInstance",
        json!({
            "cluster": cluster,
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ports},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
            ]
        }),
    );
    r["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn desired_count_is_capped_at_the_tasks_per_service_quota() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    register(&cp, "web", json!({}));
    let huge = json!({"cluster": "c", "serviceName": "huge", "taskDefinition": "web", "desiredCount": 2_000_000_000});
    let e = err(&cp, "CreateService", huge);
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    assert!(
        e.message.starts_with("Desired count exceeds limit."),
        "{}",
        e.message
    );
    assert!(e.message.contains("5000"), "{}", e.message);
    let e = err(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "over", "taskDefinition": "web", "desiredCount": 5001}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    // The quota itself is allowed; UpdateService is held to it too.
    ok(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web", "desiredCount": 5000}),
    );
    let e = err(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "web", "desiredCount": 5001}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    assert!(e.message.starts_with("Desired count exceeds limit."));
    let e = err(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "web", "desiredCount": i32::MAX}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    ok(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "web", "desiredCount": 3}),
    );

    // RunTask's count and StartTask's instances: 1 to 10.
    for count in [0i64, 11, 1 << 40] {
        let e = err(
            &cp,
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "web", "count": count}),
        );
        assert_eq!(e.code, ErrorCode::InvalidParameterException, "{count}");
    }
    let eleven: Vec<String> = (0..11).map(|n| format!("ci-{n}")).collect();
    let e = err(
        &cp,
        "StartTask",
        json!({"cluster": "c", "taskDefinition": "web", "containerInstances": eleven}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);

    // A server started with another quota holds services to it.
    let cp = plane_with(Config {
        max_tasks_per_service: 10,
        ..Config::default()
    });
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    register(&cp, "web", json!({}));
    let e = err(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web", "desiredCount": 11}),
    );
    assert!(e.message.contains("at most 10 tasks"), "{}", e.message);
}

#[test]
fn an_unplaceable_service_at_the_quota_gets_one_event_and_no_task() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    // Two instances too small for the task.
    instance(&cp, "c", 32, &[]);
    instance(&cp, "c", 32, &[]);
    register(&cp, "web", json!({}));
    ok(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web", "desiredCount": 5000}),
    );
    cp.reconcile_services().unwrap();
    let svc = &ok(
        &cp,
        "DescribeServices",
        json!({"cluster": "c", "services": ["web"]}),
    )["services"][0];
    assert_eq!(svc["runningCount"], 0);
    let unable: Vec<&str> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("was unable to place a task"))
        .collect();
    assert_eq!(unable.len(), 1, "{unable:?}");
    assert!(unable[0].contains("insufficient memory"), "{}", unable[0]);
    // RunTask lists its failures per instance, not per task.
    let out = ok(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web", "count": 10}),
    );
    assert_eq!(out["tasks"], json!([]));
    let failures = out["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|f| f["reason"] == "RESOURCE:MEMORY"));
}

/// A task definition whose environment makes its JSON `bytes` long, about.
fn sized(family: &str, bytes: usize) -> Value {
    let value = "x".repeat(1000);
    let n = bytes / 1016;
    let env: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("V{i:04}"), "value": value}))
        .collect();
    json!({"family": family, "containerDefinitions": [
        {"name": "app", "image": "busybox", "memory": 64, "environment": env}
    ]})
}

#[test]
fn task_definitions_are_limited_to_64_kib() {
    let cp = plane();
    let e = err(&cp, "RegisterTaskDefinition", sized("big", 70_000));
    assert_eq!(e.code, ErrorCode::ClientException);
    assert!(
        e.message.starts_with("Actual length: '")
            && e.message
                .ends_with("'. Max allowed length is '65536' bytes."),
        "{}",
        e.message
    );
    let actual: usize = e.message["Actual length: '".len()..]
        .split('\'')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((65_537..75_000).contains(&actual), "{actual}");
    // Ten megabytes, as the issue found accepted.
    let e = err(&cp, "RegisterTaskDefinition", sized("huge", 10 << 20));
    assert_eq!(e.code, ErrorCode::ClientException);
    // Under the limit, and tags do not count.
    let mut fits = sized("fits", 60_000);
    let tags: Vec<Value> = (0..50)
        .map(|i| json!({"key": format!("k{i}{}", "k".repeat(100)), "value": "v".repeat(250)}))
        .collect();
    fits["tags"] = json!(tags);
    ok(&cp, "RegisterTaskDefinition", fits);
}

#[test]
fn every_unsupported_setting_is_refused_at_once_where_it_would_run() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    let arn = instance(&cp, "c", 4096, &[]);
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "many", "pidMode": "host", "containerDefinitions": [
            {"name": "app", "image": "busybox", "memory": 64,
             "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
             "secrets": [{"name": "S", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/s"}]},
            {"name": "side", "image": "busybox", "memory": 64, "startTimeout": 30}
        ]}),
    );
    register(&cp, "plain", json!({}));
    let expected = [
        "'pidMode'",
        "'logConfiguration' of container 'app'",
        "'secrets' of container 'app'",
        "'startTimeout' of container 'side'",
    ];
    let check = |e: ApiError| {
        assert_eq!(e.code, ErrorCode::UnsupportedFeatureException);
        for what in expected {
            assert!(
                e.message.contains(what),
                "{what} missing from: {}",
                e.message
            );
        }
        assert!(e.message.contains("are not supported"), "{}", e.message);
    };
    check(err(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "many"}),
    ));
    check(err(
        &cp,
        "StartTask",
        json!({"cluster": "c", "taskDefinition": "many", "containerInstances": [arn]}),
    ));
    check(err(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "many", "desiredCount": 1}),
    ));
    ok(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "plain", "desiredCount": 0}),
    );
    check(err(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "s", "taskDefinition": "many"}),
    ));
    // Nothing was placed or changed.
    assert_eq!(
        ok(&cp, "ListTasks", json!({"cluster": "c"}))["taskArns"],
        json!([])
    );
    let svc = &ok(
        &cp,
        "DescribeServices",
        json!({"cluster": "c", "services": ["s"]}),
    )["services"][0];
    assert!(svc["taskDefinition"]
        .as_str()
        .unwrap()
        .ends_with("task-definition/plain:1"));
}

#[test]
fn execute_command_is_refused_alike_everywhere() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    let arn = instance(&cp, "c", 4096, &[]);
    register(&cp, "web", json!({}));
    let check = |e: ApiError| {
        assert_eq!(e.code, ErrorCode::InvalidParameterException);
        assert!(e.message.contains("enableExecuteCommand"), "{}", e.message);
    };
    check(err(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web", "enableExecuteCommand": true}),
    ));
    check(err(
        &cp,
        "StartTask",
        json!({"cluster": "c", "taskDefinition": "web", "containerInstances": [arn], "enableExecuteCommand": true}),
    ));
    check(err(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "web", "desiredCount": 0, "enableExecuteCommand": true}),
    ));
    assert_eq!(
        ok(&cp, "ListTasks", json!({"cluster": "c"}))["taskArns"],
        json!([])
    );
    // false is accepted, and shown as it is.
    let t = ok(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web", "enableExecuteCommand": false}),
    );
    assert_eq!(t["tasks"][0]["enableExecuteCommand"], false);
    let s = ok(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "web", "desiredCount": 0, "enableExecuteCommand": false}),
    );
    assert_eq!(s["service"]["enableExecuteCommand"], false);
    check(err(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "s", "enableExecuteCommand": true}),
    ));
    let s = ok(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "s", "enableExecuteCommand": false}),
    );
    assert_eq!(s["service"]["enableExecuteCommand"], false);
}

#[test]
fn awsvpc_is_named_and_other_modes_refuse_a_network_configuration() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    let arn = instance(&cp, "c", 4096, &[]);
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "vpc", "networkMode": "awsvpc", "containerDefinitions": [
            {"name": "app", "image": "busybox", "memory": 64}]}),
    );
    register(&cp, "bridge", json!({}));
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "host", "networkMode": "host", "containerDefinitions": [
            {"name": "app", "image": "busybox", "memory": 64}]}),
    );
    let net = json!({"awsvpcConfiguration": {"subnets": ["subnet-1"]}});
    // awsvpc, with the networkConfiguration it needs or without: unsupported, by name.
    for with_net in [true, false] {
        let mut run = json!({"cluster": "c", "taskDefinition": "vpc"});
        let mut start =
            json!({"cluster": "c", "taskDefinition": "vpc", "containerInstances": [arn]});
        let mut create =
            json!({"cluster": "c", "serviceName": "v", "taskDefinition": "vpc", "desiredCount": 1});
        if with_net {
            for r in [&mut run, &mut start, &mut create] {
                r["networkConfiguration"] = net.clone();
            }
        }
        for (op, body) in [
            ("RunTask", run),
            ("StartTask", start),
            ("CreateService", create),
        ] {
            let e = err(&cp, op, body);
            assert_eq!(e.code, ErrorCode::UnsupportedFeatureException, "{op}");
            assert!(
                e.message.contains("networkMode 'awsvpc'"),
                "{op}: {}",
                e.message
            );
            assert!(
                !e.message.contains("Network Configuration"),
                "{op}: {}",
                e.message
            );
        }
    }
    // bridge and host take no networkConfiguration: ECS's message.
    for family in ["bridge", "host"] {
        for (op, body) in [
            (
                "RunTask",
                json!({"cluster": "c", "taskDefinition": family, "networkConfiguration": net}),
            ),
            (
                "StartTask",
                json!({"cluster": "c", "taskDefinition": family, "containerInstances": [arn], "networkConfiguration": net}),
            ),
            (
                "CreateService",
                json!({"cluster": "c", "serviceName": family, "taskDefinition": family, "desiredCount": 0, "networkConfiguration": net}),
            ),
        ] {
            let e = err(&cp, op, body);
            assert_eq!(
                e.code,
                ErrorCode::InvalidParameterException,
                "{op} {family}"
            );
            assert_eq!(
                e.message,
                "Network Configuration is not valid for the given networkMode of this task definition.",
            );
        }
    }
    ok(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "b", "taskDefinition": "bridge", "desiredCount": 0}),
    );
    let e = err(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "b", "networkConfiguration": net}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    let e = err(
        &cp,
        "UpdateService",
        json!({"cluster": "c", "service": "b", "taskDefinition": "vpc", "networkConfiguration": net}),
    );
    assert_eq!(e.code, ErrorCode::UnsupportedFeatureException);
}

#[test]
fn ports_the_agent_reports_are_never_given() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    instance(&cp, "c", 4096, &["22", "49153", "49154", "49156"]);
    register(
        &cp,
        "dyn",
        json!({"portMappings": [{"containerPort": 80, "hostPort": 0}]}),
    );
    let host_port = |t: &Value| t["containers"][0]["networkBindings"][0]["hostPort"].as_i64();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let out = ok(
            &cp,
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "dyn"}),
        );
        ports.push(host_port(&out["tasks"][0]).unwrap());
    }
    assert_eq!(ports, vec![49155, 49157, 49158]);
    // A static port the agent reported: RESOURCE:PORTS.
    register(
        &cp,
        "fixed",
        json!({"portMappings": [{"containerPort": 80, "hostPort": 49153}]}),
    );
    let out = ok(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "fixed"}),
    );
    assert_eq!(out["tasks"], json!([]));
    assert_eq!(out["failures"][0]["reason"], "RESOURCE:PORTS");
}
