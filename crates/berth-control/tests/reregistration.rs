#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! An agent registering again under its ARN (after a restart, or to report
//! host ports it cannot use): what it reports is replaced, what was set on
//! the instance through the API stays, and placement follows the new ports.

mod common;

use berth_control::ControlPlane;
use common::{ok, plane};
use serde_json::{json, Value};

fn registration(ports: &[&str], arn: Option<&str>) -> Value {
    let mut body = json!({
        "cluster": "c",
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ports},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
        ],
        "attributes": [
            {"name": "ecs.os-type", "value": "linux"},
            {"name": "berth.dynamic-host-port-range", "value": "41000-41002"}
        ]
    });
    if let Some(arn) = arn {
        body["containerInstanceArn"] = json!(arn);
    }
    body
}

fn ports(ci: &Value, which: &str) -> Vec<String> {
    let mut out: Vec<String> = ci[which]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "PORTS")
        .map(|r| {
            r["stringSetValue"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn describe(cp: &ControlPlane, arn: &str) -> Value {
    ok(
        cp,
        "DescribeContainerInstances",
        json!({"cluster": "c", "containerInstances": [arn]}),
    )["containerInstances"][0]
        .clone()
}

fn run_web(cp: &ControlPlane) -> i64 {
    let task = ok(
        cp,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web"}),
    );
    assert_eq!(task["failures"], json!([]), "{task}");
    task["tasks"][0]["containers"][0]["networkBindings"][0]["hostPort"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_re_registration_replaces_reported_ports_and_keeps_what_the_api_set() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    let arn = ok(
        &cp,
        "RegisterContainerInstance",
        registration(&["22"], None),
    )["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &cp,
        "PutAttributes",
        json!({"cluster": "c", "attributes": [{"name": "team", "value": "a", "targetId": arn}]}),
    );
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "web", "containerDefinitions": [{"name": "w", "image": "busybox", "memory": 16,
               "portMappings": [{"containerPort": 80, "hostPort": 0}]}]}),
    );
    assert_eq!(run_web(&cp), 41000);

    // The agent finds 41001 held by another process on its host.
    let again = ok(
        &cp,
        "RegisterContainerInstance",
        registration(&["22", "41001"], Some(&arn)),
    );
    assert_eq!(again["containerInstance"]["containerInstanceArn"], arn);
    let ci = describe(&cp, &arn);
    assert_eq!(ports(&ci, "registeredResources"), ["22", "41001"]);
    assert_eq!(ports(&ci, "remainingResources"), ["22", "41000", "41001"]);
    assert_eq!(run_web(&cp), 41002);

    // Draining and custom attributes survive a re-registration.
    ok(
        &cp,
        "UpdateContainerInstancesState",
        json!({"cluster": "c", "containerInstances": [arn], "status": "DRAINING"}),
    );
    ok(
        &cp,
        "RegisterContainerInstance",
        registration(&["22"], Some(&arn)),
    );
    let ci = describe(&cp, &arn);
    assert_eq!(ci["status"], "DRAINING");
    assert_eq!(ports(&ci, "registeredResources"), ["22"]);
    let attrs: Vec<(String, String)> = ci["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(attrs.contains(&("team".into(), "a".into())), "{attrs:?}");

    // An attribute the agent reports goes when it stops reporting it.
    let mut body = registration(&["22"], Some(&arn));
    body["attributes"] = json!([{"name": "ecs.os-type", "value": "linux"}]);
    ok(&cp, "RegisterContainerInstance", body);
    let ci = describe(&cp, &arn);
    let names: Vec<&str> = ci["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"berth.dynamic-host-port-range"),
        "{names:?}"
    );
    assert!(names.contains(&"team"), "{names:?}");
}
