#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! Container instances' own keys: issued at registration, revoked on
//! deregistration and on re-registration by an account key, and limited to
//! the instance's own calls and tasks.

mod common;

use berth_control::{Caller, ControlPlane};
use berth_model::ErrorCode;
use common::{call_as as call, ok_as as ok, plane};
use serde_json::{json, Value};

/// The account's root user, under a key of its own (not the agents').
fn root() -> Caller {
    Caller::root("arn:aws:iam::000000000000:root", "AKIDROOT")
}

fn denied(cp: &ControlPlane, caller: &Caller, op: &str, body: Value) {
    match call(cp, caller, op, body) {
        Err(e) => assert_eq!(e.code, ErrorCode::AccessDeniedException, "{op}: {e}"),
        Ok(v) => panic!("{op} was allowed for an agent key: {v}"),
    }
}

/// Registers an instance with the root key; returns its ARN and the caller
/// its issued key authenticates as (as the edge builds it).
fn register(cp: &ControlPlane) -> (String, Caller) {
    let r = ok(
        cp,
        &root(),
        "RegisterContainerInstance",
        json!({"cluster": "c", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]}),
    );
    let arn = r["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let akid = r["berthAgentCredentials"]["accessKeyId"]
        .as_str()
        .expect("an agent key is issued")
        .to_string();
    assert_eq!(
        r["berthAgentCredentials"]["secretAccessKey"]
            .as_str()
            .unwrap()
            .len(),
        40
    );
    (arn, caller_for(cp, &akid))
}

fn caller_for(cp: &ControlPlane, akid: &str) -> Caller {
    let key = cp.agent_key(akid).expect("the key is known");
    Caller {
        principal_arn: key.scope.instance_arn.clone(),
        access_key_id: akid.to_string(),
        instance: Some(key.scope),
    }
}

fn setup() -> (ControlPlane, String, Caller, String, Caller, String) {
    let cp = plane();
    ok(&cp, &root(), "CreateCluster", json!({"clusterName": "c"}));
    let (a, agent_a) = register(&cp);
    let (b, agent_b) = register(&cp);
    ok(
        &cp,
        &root(),
        "RegisterTaskDefinition",
        json!({"family": "web", "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}]}),
    );
    let r = ok(
        &cp,
        &root(),
        "StartTask",
        json!({"cluster": "c", "taskDefinition": "web", "containerInstances": [b]}),
    );
    let task_on_b = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    (cp, a, agent_a, b, agent_b, task_on_b)
}

#[test]
fn an_agent_key_acts_only_for_its_own_instance_and_tasks() {
    let (cp, a, agent_a, b, agent_b, task_on_b) = setup();
    // A forged state change for another host's task is refused, and the
    // task is untouched.
    denied(
        &cp,
        &agent_a,
        "SubmitTaskStateChange",
        json!({"cluster": "c", "task": task_on_b, "status": "STOPPED", "reason": "forged"}),
    );
    denied(
        &cp,
        &agent_a,
        "SubmitContainerStateChange",
        json!({"cluster": "c", "task": task_on_b, "containerName": "app", "status": "STOPPED"}),
    );
    let d = ok(
        &cp,
        &root(),
        "DescribeTasks",
        json!({"cluster": "c", "tasks": [task_on_b]}),
    );
    assert_eq!(d["tasks"][0]["desiredStatus"], "RUNNING");
    // Reading another host's tasks, or listing them, is refused too.
    denied(
        &cp,
        &agent_a,
        "DescribeTasks",
        json!({"cluster": "c", "tasks": [task_on_b]}),
    );
    denied(
        &cp,
        &agent_a,
        "ListTasks",
        json!({"cluster": "c", "containerInstance": b}),
    );
    denied(&cp, &agent_a, "ListTasks", json!({"cluster": "c"}));
    // Nothing an account does.
    denied(&cp, &agent_a, "CreateCluster", json!({"clusterName": "x"}));
    denied(
        &cp,
        &agent_a,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "web"}),
    );
    denied(
        &cp,
        &agent_a,
        "DeregisterContainerInstance",
        json!({"cluster": "c", "containerInstance": b, "force": true}),
    );
    denied(
        &cp,
        &agent_a,
        "RegisterContainerInstance",
        json!({"cluster": "c"}),
    );
    denied(
        &cp,
        &agent_a,
        "RegisterContainerInstance",
        json!({"cluster": "c", "containerInstanceArn": b}),
    );
    // The task definition only of a task it runs.
    let td = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1";
    denied(
        &cp,
        &agent_a,
        "DescribeTaskDefinition",
        json!({"taskDefinition": td}),
    );

    // The owner does all of it.
    ok(
        &cp,
        &agent_b,
        "DescribeTaskDefinition",
        json!({"taskDefinition": td}),
    );
    ok(
        &cp,
        &agent_b,
        "ListTasks",
        json!({"cluster": "c", "containerInstance": b}),
    );
    ok(
        &cp,
        &agent_b,
        "DescribeTasks",
        json!({"cluster": "c", "tasks": [task_on_b]}),
    );
    ok(
        &cp,
        &agent_b,
        "SubmitTaskStateChange",
        json!({"cluster": "c", "task": task_on_b, "status": "RUNNING"}),
    );
    let again = ok(
        &cp,
        &agent_a,
        "RegisterContainerInstance",
        json!({"cluster": "c", "containerInstanceArn": a}),
    );
    assert!(
        again.get("berthAgentCredentials").is_none(),
        "an agent re-registering keeps its key"
    );
    assert!(cp.agent_key(&agent_a.access_key_id).is_some());

    // The channel and the poll endpoint follow the same rule.
    assert!(cp.authorize_channel(&agent_a, "c", &a).is_ok());
    assert_eq!(
        cp.authorize_channel(&agent_a, "c", &b).unwrap_err().code,
        ErrorCode::AccessDeniedException
    );
    assert!(cp
        .discover_poll_endpoint(
            json!({"cluster": "c", "containerInstance": b})
                .to_string()
                .as_bytes(),
            &agent_a,
            "http://x/"
        )
        .is_err());
}

#[test]
fn keys_are_revoked_on_deregistration_and_replaced_on_account_re_registration() {
    let (cp, a, agent_a, b, agent_b, _) = setup();
    // An account re-registering the instance issues a new key; the old one
    // stops working.
    let r = ok(
        &cp,
        &root(),
        "RegisterContainerInstance",
        json!({"cluster": "c", "containerInstanceArn": a}),
    );
    let new_akid = r["berthAgentCredentials"]["accessKeyId"].as_str().unwrap();
    assert_ne!(new_akid, agent_a.access_key_id);
    assert!(cp.agent_key(&agent_a.access_key_id).is_none());
    assert!(cp.agent_key(new_akid).is_some());
    // Deregistration deletes the key with the instance.
    ok(
        &cp,
        &root(),
        "DeregisterContainerInstance",
        json!({"cluster": "c", "containerInstance": b, "force": true}),
    );
    assert!(cp.agent_key(&agent_b.access_key_id).is_none());
}
