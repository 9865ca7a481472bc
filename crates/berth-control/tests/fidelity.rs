#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! Where Berth's answers must match ECS's exactly (issue 14's fidelity
//! audit): enum validation of `launchType`, the launch type / capacity
//! provider refusal, DiscoverPollEndpoint for any cluster, the EFS
//! `rootDirectory` default and the ARN of a missing service.

mod common;

use berth_control::ControlPlane;
use berth_model::ErrorCode;
use common::{caller, err, ok, plane};
use serde_json::{json, Value};

const BOTH: &str = "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.";

fn setup() -> ControlPlane {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "web", "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}]}),
    );
    cp
}

fn strategy() -> Value {
    json!([{"capacityProvider": "cp", "weight": 1}])
}

#[test]
fn a_launch_type_outside_the_enum_is_an_invalid_parameter() {
    let cp = setup();
    let calls = [
        (
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "web", "launchType": "LAMBDA"}),
        ),
        (
            "CreateService",
            json!({"cluster": "c", "serviceName": "s", "taskDefinition": "web", "desiredCount": 1, "launchType": "LAMBDA"}),
        ),
        ("ListTasks", json!({"cluster": "c", "launchType": "LAMBDA"})),
        (
            "ListServices",
            json!({"cluster": "c", "launchType": "LAMBDA"}),
        ),
    ];
    for (op, body) in calls {
        let e = err(&cp, op, body);
        assert_eq!(e.code, ErrorCode::InvalidParameterException, "{op}: {e}");
        assert!(e.message.contains("launchType"), "{op}: {e}");
    }
    // A launch type in the enum that Berth does not run stays an honest
    // UnsupportedFeatureException.
    let e = err(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web", "launchType": "FARGATE"}),
    );
    assert_eq!(e.code, ErrorCode::UnsupportedFeatureException);
    let e = err(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "web", "desiredCount": 1, "launchType": "FARGATE"}),
    );
    assert_eq!(e.code, ErrorCode::UnsupportedFeatureException);
    // A valid filter filters.
    let listed = ok(
        &cp,
        "ListTasks",
        json!({"cluster": "c", "launchType": "FARGATE"}),
    );
    assert_eq!(listed["taskArns"], json!([]));
}

#[test]
fn a_launch_type_with_a_capacity_provider_strategy_is_refused_as_ecs_does() {
    let cp = setup();
    let e = err(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web", "launchType": "EC2", "capacityProviderStrategy": strategy()}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    assert_eq!(e.message, BOTH);
    let e = err(
        &cp,
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "web", "desiredCount": 1,
               "launchType": "EC2", "capacityProviderStrategy": strategy()}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    assert_eq!(e.message, BOTH);
    // A strategy alone stays unsupported.
    let e = err(
        &cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web", "capacityProviderStrategy": strategy()}),
    );
    assert_eq!(e.code, ErrorCode::UnsupportedFeatureException);
}

#[test]
fn discover_poll_endpoint_answers_whatever_the_cluster() {
    let cp = plane();
    for body in [
        json!({"cluster": "ghost", "containerInstance": "0123456789abcdef0123456789abcdef"}),
        json!({"cluster": "ghost"}),
        json!({}),
    ] {
        let out = cp
            .discover_poll_endpoint(body.to_string().as_bytes(), &caller(), "http://x/")
            .unwrap_or_else(|e| panic!("{body}: {e}"));
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["endpoint"], "http://x/");
        assert_eq!(out["telemetryEndpoint"], "http://x/");
    }
}

#[test]
fn an_efs_volume_root_directory_defaults_to_slash() {
    let cp = plane();
    let registered = ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "efs", "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}],
               "volumes": [{"name": "a", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}},
                           {"name": "b", "efsVolumeConfiguration": {"fileSystemId": "fs-2", "rootDirectory": "/data"}}]}),
    );
    for doc in [
        registered,
        ok(
            &cp,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "efs"}),
        ),
    ] {
        let volumes = &doc["taskDefinition"]["volumes"];
        assert_eq!(volumes[0]["efsVolumeConfiguration"]["rootDirectory"], "/");
        assert_eq!(
            volumes[1]["efsVolumeConfiguration"]["rootDirectory"],
            "/data"
        );
    }
}

#[test]
fn a_missing_service_is_reported_by_its_long_arn() {
    let cp = setup();
    let d = ok(
        &cp,
        "DescribeServices",
        json!({"cluster": "c", "services": ["ghost", "arn:aws:ecs:us-east-1:000000000000:service/c/phantom"]}),
    );
    assert_eq!(d["services"], json!([]));
    assert_eq!(
        d["failures"],
        json!([
            {"arn": "arn:aws:ecs:us-east-1:000000000000:service/c/ghost", "reason": "MISSING"},
            {"arn": "arn:aws:ecs:us-east-1:000000000000:service/c/phantom", "reason": "MISSING"},
        ])
    );
}
