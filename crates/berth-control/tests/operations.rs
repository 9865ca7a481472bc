#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! The control plane's operations end to end over an in-memory store: the
//! JSON documents go in and come out exactly as the edge passes them.

mod common;

use berth_control::ControlPlane;
use berth_model::ErrorCode;
use common::{caller, err, ok, plane};
use serde_json::{json, Value};

fn taskdef(family: &str) -> Value {
    json!({"family": family, "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}]})
}

#[test]
fn cluster_lifecycle() {
    let cp = plane();
    let created = ok(
        &cp,
        "CreateCluster",
        json!({"clusterName": "prod", "tags": [{"key": "team", "value": "web"}]}),
    );
    assert_eq!(
        created["cluster"]["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/prod"
    );
    assert_eq!(created["cluster"]["status"], "ACTIVE");
    // Idempotent create returns the same cluster.
    let again = ok(&cp, "CreateCluster", json!({"clusterName": "prod"}));
    assert_eq!(again["cluster"]["tags"][0]["key"], "team");
    // Default name.
    assert_eq!(
        ok(&cp, "CreateCluster", json!({}))["cluster"]["clusterName"],
        "default"
    );

    let d = ok(
        &cp,
        "DescribeClusters",
        json!({"clusters": ["prod", "ghost"], "include": ["TAGS"]}),
    );
    assert_eq!(d["clusters"][0]["tags"][0]["value"], "web");
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    assert_eq!(
        d["failures"][0]["arn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/ghost"
    );
    let d = ok(&cp, "DescribeClusters", json!({"clusters": ["prod"]}));
    assert!(
        d["clusters"][0].get("tags").is_none(),
        "tags only when included"
    );

    let u = ok(
        &cp,
        "UpdateClusterSettings",
        json!({"cluster": "prod", "settings": [{"name": "containerInsights", "value": "enabled"}]}),
    );
    assert_eq!(
        u["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    let e = err(
        &cp,
        "UpdateClusterSettings",
        json!({"cluster": "prod", "settings": [{"name": "bogus", "value": "x"}]}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);

    let deleted = ok(&cp, "DeleteCluster", json!({"cluster": "prod"}));
    assert_eq!(deleted["cluster"]["status"], "INACTIVE");
    let d = ok(&cp, "DescribeClusters", json!({"clusters": ["prod"]}));
    assert_eq!(d["clusters"][0]["status"], "INACTIVE");
    assert_eq!(
        err(&cp, "DeleteCluster", json!({"cluster": "prod"})).code,
        ErrorCode::ClusterNotFoundException
    );
    assert_eq!(
        err(&cp, "UpdateCluster", json!({"cluster": "prod"})).code,
        ErrorCode::ClusterNotFoundException
    );
    let listed = ok(&cp, "ListClusters", json!({}));
    assert_eq!(
        listed["clusterArns"],
        json!(["arn:aws:ecs:us-east-1:000000000000:cluster/default"])
    );
}

#[test]
fn bad_cluster_names_are_refused() {
    let cp = plane();
    for name in ["has space", "slash/y", &"x".repeat(256)] {
        assert_eq!(
            err(&cp, "CreateCluster", json!({"clusterName": name})).code,
            ErrorCode::InvalidParameterException
        );
    }
}

#[test]
fn list_clusters_pages_through_everything_once() {
    let cp = plane();
    let mut want = Vec::new();
    for i in 0..23 {
        let name = format!("c{i:02}");
        ok(&cp, "CreateCluster", json!({"clusterName": name}));
        want.push(format!("arn:aws:ecs:us-east-1:000000000000:cluster/{name}"));
    }
    // One deleted cluster in the middle must be skipped, not end a page early.
    ok(&cp, "DeleteCluster", json!({"cluster": "c05"}));
    want.retain(|a| !a.ends_with("/c05"));
    let mut got = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = json!({"maxResults": 5});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let page = ok(&cp, "ListClusters", req);
        let arns = page["clusterArns"].as_array().cloned().unwrap_or_default();
        assert!(arns.len() <= 5);
        got.extend(
            arns.into_iter()
                .filter_map(|v| v.as_str().map(String::from)),
        );
        pages += 1;
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(got, want);
    assert_eq!(pages, 5);
    assert_eq!(
        err(&cp, "ListClusters", json!({"maxResults": 0})).code,
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        err(&cp, "ListClusters", json!({"maxResults": 101})).code,
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        err(&cp, "ListClusters", json!({"nextToken": "garbage!"})).code,
        ErrorCode::InvalidParameterException
    );
}

#[test]
fn task_definition_revisions_and_statuses() {
    let cp = plane();
    for expected in 1..=3 {
        let r = ok(&cp, "RegisterTaskDefinition", taskdef("web"));
        assert_eq!(r["taskDefinition"]["revision"], expected);
        assert_eq!(r["taskDefinition"]["registeredAt"], 1_700_000_000.0);
        assert_eq!(
            r["taskDefinition"]["registeredBy"],
            "arn:aws:iam::000000000000:root"
        );
    }
    ok(&cp, "RegisterTaskDefinition", taskdef("api"));
    // Latest ACTIVE by family; exact by family:revision and by ARN.
    assert_eq!(
        ok(
            &cp,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "web"})
        )["taskDefinition"]["revision"],
        3
    );
    assert_eq!(
        ok(
            &cp,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "web:2"})
        )["taskDefinition"]["revision"],
        2
    );
    let arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1";
    assert_eq!(
        ok(
            &cp,
            "DescribeTaskDefinition",
            json!({"taskDefinition": arn})
        )["taskDefinition"]["revision"],
        1
    );
    let e = err(
        &cp,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "nope"}),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::ClientException,
            "Unable to describe task definition."
        )
    );

    // Deregistering the latest moves "latest ACTIVE" back.
    let d = ok(
        &cp,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:3"}),
    );
    assert_eq!(d["taskDefinition"]["status"], "INACTIVE");
    assert!(d["taskDefinition"]["deregisteredAt"].is_number());
    assert_eq!(
        ok(
            &cp,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "web"})
        )["taskDefinition"]["revision"],
        2
    );
    // The next registration still gets a new number.
    assert_eq!(
        ok(&cp, "RegisterTaskDefinition", taskdef("web"))["taskDefinition"]["revision"],
        4
    );

    let active = ok(&cp, "ListTaskDefinitions", json!({"familyPrefix": "web"}));
    let arns: Vec<&str> = active["taskDefinitionArns"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        arns.iter()
            .map(|a| a.rsplit('/').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["web:1", "web:2", "web:4"]
    );
    let desc = ok(
        &cp,
        "ListTaskDefinitions",
        json!({"sort": "DESC", "maxResults": 2}),
    );
    assert_eq!(
        desc["taskDefinitionArns"][0],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:4"
    );
    let next = ok(
        &cp,
        "ListTaskDefinitions",
        json!({"sort": "DESC", "maxResults": 2, "nextToken": desc["nextToken"]}),
    );
    assert_eq!(
        next["taskDefinitionArns"],
        json!([
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/api:1"
        ])
    );
    assert!(next.get("nextToken").is_none());
    let inactive = ok(&cp, "ListTaskDefinitions", json!({"status": "INACTIVE"}));
    assert_eq!(
        inactive["taskDefinitionArns"],
        json!(["arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"])
    );

    // Families.
    for r in [1, 2, 4] {
        ok(
            &cp,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": format!("web:{r}")}),
        );
    }
    assert_eq!(
        ok(&cp, "ListTaskDefinitionFamilies", json!({}))["families"],
        json!(["api"])
    );
    assert_eq!(
        ok(
            &cp,
            "ListTaskDefinitionFamilies",
            json!({"status": "INACTIVE"})
        )["families"],
        json!(["web"])
    );
    assert_eq!(
        ok(
            &cp,
            "ListTaskDefinitionFamilies",
            json!({"status": "ALL", "familyPrefix": "w"})
        )["families"],
        json!(["web"])
    );
    let e = err(
        &cp,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web"}),
    );
    assert_eq!(e.code, ErrorCode::ClientException);

    // Delete: INACTIVE ones go DELETE_IN_PROGRESS, ACTIVE ones fail.
    let del = ok(
        &cp,
        "DeleteTaskDefinitions",
        json!({"taskDefinitions": ["web:1", "api:1", "web:99"]}),
    );
    assert_eq!(del["taskDefinitions"][0]["status"], "DELETE_IN_PROGRESS");
    assert_eq!(del["failures"].as_array().map(Vec::len), Some(2));
    assert!(del["failures"][0]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("ACTIVE"));
}

#[test]
fn task_definition_validation_reaches_the_client() {
    let cp = plane();
    let e = err(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "bad name!", "containerDefinitions": [{"name": "a", "image": "b", "memory": 64}]}),
    );
    assert_eq!(e.code, ErrorCode::ClientException);
    let e = err(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "f", "cpu": "1.5 potatoes", "containerDefinitions": [{"name": "a", "image": "b", "memory": 64}]}),
    );
    assert_eq!(e.code, ErrorCode::ClientException);
    let e = err(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "b", "memory": 64}, {"name": "a", "image": "c", "memory": 64}]}),
    );
    assert_eq!(e.code, ErrorCode::ClientException);
    let e = err(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "f", "memory": "1 GB", "containerDefinitions": [{"name": "a", "image": "b", "memory": 2048}]}),
    );
    assert_eq!(e.code, ErrorCode::ClientException);
    // A failed registration leaves no trace.
    assert_eq!(
        ok(&cp, "ListTaskDefinitionFamilies", json!({"status": "ALL"}))["families"],
        json!([])
    );
}

#[test]
fn every_container_field_round_trips() {
    let cp = plane();
    let container = json!({
        "name": "web", "image": "nginx:1", "cpu": 256, "memory": 512, "memoryReservation": 256,
        "links": ["db"], "essential": true, "entryPoint": ["/bin/sh"], "command": ["-c", "run"],
        "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp", "name": "http"}],
        "environment": [{"name": "A", "value": "1"}],
        "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": false}],
        "volumesFrom": [], "workingDirectory": "/srv", "user": "1000", "privileged": false,
        "readonlyRootFilesystem": true, "dockerLabels": {"x": "y"},
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
        "healthCheck": {"command": ["CMD", "true"], "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 0},
        "dependsOn": [{"containerName": "db", "condition": "START"}],
        "stopTimeout": 30, "startTimeout": 60, "hostname": "web", "dnsServers": ["1.1.1.1"],
        "extraHosts": [{"hostname": "h", "ipAddress": "10.0.0.1"}],
        "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
        "systemControls": [], "interactive": false, "pseudoTerminal": false
    });
    let db = json!({"name": "db", "image": "postgres", "memory": 256, "essential": true,
        "portMappings": [], "environment": [], "mountPoints": [], "volumesFrom": [], "systemControls": [], "cpu": 0});
    let req = json!({"family": "full", "containerDefinitions": [container, db],
        "volumes": [{"name": "data", "host": {"sourcePath": "/srv/data"}}]});
    ok(&cp, "RegisterTaskDefinition", req);
    let back = ok(
        &cp,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "full:1"}),
    );
    assert_eq!(back["taskDefinition"]["containerDefinitions"][0], container);
    assert_eq!(back["taskDefinition"]["containerDefinitions"][1], db);
}

#[test]
fn concurrent_registrations_get_dense_unique_revisions() {
    let cp = plane();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let cp = cp.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| {
                        ok(&cp, "RegisterTaskDefinition", taskdef("hot"))["taskDefinition"]
                            ["revision"]
                            .as_i64()
                            .unwrap_or(-1)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut revisions: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=200).collect::<Vec<_>>());
}

fn register_instance(cp: &ControlPlane, cluster: &str) -> String {
    let r = ok(
        cp,
        "RegisterContainerInstance",
        json!({
            "cluster": cluster,
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}
            ],
            "attributes": [{"name": "ecs.os-type", "value": "linux"}]
        }),
    );
    r["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn attributes_and_cluster_deletion_guards() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "c"}));
    let arn = register_instance(&cp, "c");
    assert!(arn.starts_with("arn:aws:ecs:us-east-1:000000000000:container-instance/c/"));
    let d = ok(&cp, "DescribeClusters", json!({"clusters": ["c"]}));
    assert_eq!(d["clusters"][0]["registeredContainerInstancesCount"], 1);
    let e = err(&cp, "DeleteCluster", json!({"cluster": "c"}));
    assert_eq!(
        e.code,
        ErrorCode::ClusterContainsContainerInstancesException
    );

    let put = ok(
        &cp,
        "PutAttributes",
        json!({"cluster": "c", "attributes": [
            {"name": "stack", "value": "prod", "targetId": arn},
            {"name": "gpu", "targetId": arn}
        ]}),
    );
    assert_eq!(put["attributes"][0]["targetId"], arn.as_str());
    let listed = ok(
        &cp,
        "ListAttributes",
        json!({"cluster": "c", "targetType": "container-instance", "attributeName": "stack"}),
    );
    assert_eq!(
        listed["attributes"],
        json!([{"name": "stack", "value": "prod", "targetType": "container-instance", "targetId": arn}])
    );
    let all = ok(
        &cp,
        "ListAttributes",
        json!({"cluster": "c", "targetType": "container-instance", "maxResults": 2}),
    );
    assert_eq!(all["attributes"].as_array().map(Vec::len), Some(2));
    let rest = ok(
        &cp,
        "ListAttributes",
        json!({"cluster": "c", "targetType": "container-instance", "maxResults": 2, "nextToken": all["nextToken"]}),
    );
    assert_eq!(rest["attributes"].as_array().map(Vec::len), Some(1));
    assert!(rest.get("nextToken").is_none());

    let e = err(
        &cp,
        "PutAttributes",
        json!({"cluster": "c", "attributes": [{"name": "x", "targetId": "0123456789abcdef"}]}),
    );
    assert_eq!(e.code, ErrorCode::TargetNotFoundException);
    let too_many: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("k{i}"), "targetId": arn}))
        .collect();
    let e = err(
        &cp,
        "PutAttributes",
        json!({"cluster": "c", "attributes": too_many}),
    );
    assert_eq!(e.code, ErrorCode::AttributeLimitExceededException);

    ok(
        &cp,
        "DeleteAttributes",
        json!({"cluster": "c", "attributes": [{"name": "stack", "targetId": arn}]}),
    );
    let listed = ok(
        &cp,
        "ListAttributes",
        json!({"cluster": "c", "targetType": "container-instance", "attributeName": "stack"}),
    );
    assert_eq!(listed["attributes"], json!([]));

    ok(
        &cp,
        "DeregisterContainerInstance",
        json!({"cluster": "c", "containerInstance": arn}),
    );
    assert_eq!(
        ok(&cp, "DeleteCluster", json!({"cluster": "c"}))["cluster"]["status"],
        "INACTIVE"
    );
}

#[test]
fn tags_on_clusters_and_task_definitions() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "t"}));
    let cluster = "arn:aws:ecs:us-east-1:000000000000:cluster/t";
    ok(
        &cp,
        "TagResource",
        json!({"resourceArn": cluster, "tags": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]}),
    );
    ok(
        &cp,
        "TagResource",
        json!({"resourceArn": cluster, "tags": [{"key": "a", "value": "3"}]}),
    );
    ok(
        &cp,
        "UntagResource",
        json!({"resourceArn": cluster, "tagKeys": ["b"]}),
    );
    assert_eq!(
        ok(&cp, "ListTagsForResource", json!({"resourceArn": cluster}))["tags"],
        json!([{"key": "a", "value": "3"}])
    );

    let mut req = taskdef("tagged");
    req["tags"] = json!([{"key": "x", "value": "y"}]);
    ok(&cp, "RegisterTaskDefinition", req);
    let td = "arn:aws:ecs:us-east-1:000000000000:task-definition/tagged:1";
    assert_eq!(
        ok(&cp, "ListTagsForResource", json!({"resourceArn": td}))["tags"],
        json!([{"key": "x", "value": "y"}])
    );
    let d = ok(
        &cp,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "tagged", "include": ["TAGS"]}),
    );
    assert_eq!(d["tags"], json!([{"key": "x", "value": "y"}]));

    let many: Vec<Value> = (0..50)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    let e = err(&cp, "TagResource", json!({"resourceArn": td, "tags": many}));
    assert_eq!(
        e.code,
        ErrorCode::LimitExceededException,
        "50 new plus 1 existing is over the limit"
    );
    let e = err(
        &cp,
        "TagResource",
        json!({"resourceArn": td, "tags": [{"key": "aws:x", "value": "v"}]}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    let e = err(
        &cp,
        "TagResource",
        json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:cluster/none", "tags": []}),
    );
    assert_eq!(e.code, ErrorCode::ClusterNotFoundException);
    let e = err(
        &cp,
        "ListTagsForResource",
        json!({"resourceArn": "not-an-arn"}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
}

#[test]
fn account_settings_layers() {
    let cp = plane();
    let eff = ok(
        &cp,
        "ListAccountSettings",
        json!({"name": "containerInsights", "effectiveSettings": true}),
    );
    assert_eq!(eff["settings"][0]["value"], "disabled");
    assert_eq!(eff["settings"][0]["type"], "aws_managed");
    ok(
        &cp,
        "PutAccountSettingDefault",
        json!({"name": "containerInsights", "value": "enabled"}),
    );
    let eff = ok(
        &cp,
        "ListAccountSettings",
        json!({"name": "containerInsights", "effectiveSettings": true}),
    );
    assert_eq!(eff["settings"][0]["value"], "enabled");
    let put = ok(
        &cp,
        "PutAccountSetting",
        json!({"name": "containerInsights", "value": "disabled"}),
    );
    assert_eq!(
        put["setting"]["principalArn"],
        "arn:aws:iam::000000000000:root"
    );
    let mine = ok(&cp, "ListAccountSettings", json!({}));
    assert_eq!(mine["settings"].as_array().map(Vec::len), Some(1));
    let eff = ok(
        &cp,
        "ListAccountSettings",
        json!({"name": "containerInsights", "effectiveSettings": true}),
    );
    assert_eq!(eff["settings"][0]["value"], "disabled");
    ok(
        &cp,
        "DeleteAccountSetting",
        json!({"name": "containerInsights"}),
    );
    let eff = ok(
        &cp,
        "ListAccountSettings",
        json!({"name": "containerInsights", "effectiveSettings": true}),
    );
    assert_eq!(eff["settings"][0]["value"], "enabled");
    // Paged effective listing covers every setting once.
    let first = ok(
        &cp,
        "ListAccountSettings",
        json!({"effectiveSettings": true, "maxResults": 4}),
    );
    assert_eq!(first["settings"].as_array().map(Vec::len), Some(4));
    assert!(first["nextToken"].is_string());
    assert_eq!(
        err(
            &cp,
            "PutAccountSetting",
            json!({"name": "bogus", "value": "x"})
        )
        .code,
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        err(
            &cp,
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "maybe"})
        )
        .code,
        ErrorCode::InvalidParameterException
    );
}

#[test]
fn protocol_level_errors() {
    let cp = plane();
    let e = cp.ecs("ListClusters", b"{not json", &caller()).err();
    assert_eq!(e.map(|e| e.code), Some(ErrorCode::SerializationException));
    let e = cp
        .ecs("ListClusters", br#"{"maxResults": "ten"}"#, &caller())
        .err();
    assert_eq!(e.map(|e| e.code), Some(ErrorCode::SerializationException));
    let e = cp.ecs("Frobnicate", b"{}", &caller()).err();
    assert_eq!(
        e.map(|e| e.code),
        Some(ErrorCode::UnknownOperationException)
    );
    let e = cp.ecs("CreateTaskSet", b"{}", &caller()).err();
    assert_eq!(
        e.map(|e| e.code),
        Some(ErrorCode::UnsupportedFeatureException)
    );
    // An empty body is an empty document.
    assert!(cp.ecs("ListClusters", b"", &caller()).is_ok());
}

#[test]
fn list_container_instances_filters_with_the_query_language() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "q"}));
    let mut arns = Vec::new();
    for (zone, kind) in [
        ("us-east-1a", "t2.micro"),
        ("us-east-1b", "m5.large"),
        ("us-east-1c", "t2.small"),
    ] {
        let r = ok(
            &cp,
            "RegisterContainerInstance",
            json!({
                "cluster": "q",
                "attributes": [
                    {"name": "ecs.availability-zone", "value": zone},
                    {"name": "ecs.instance-type", "value": kind}
                ]
            }),
        );
        arns.push(
            r["containerInstance"]["containerInstanceArn"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let list = |filter: &str| -> Vec<String> {
        let r = ok(
            &cp,
            "ListContainerInstances",
            json!({"cluster": "q", "filter": filter}),
        );
        let mut v: Vec<String> = r["containerInstanceArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        list("attribute:ecs.instance-type =~ t2.*"),
        sorted(vec![arns[0].clone(), arns[2].clone()])
    );
    assert_eq!(
        list("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"),
        sorted(vec![arns[0].clone(), arns[1].clone()])
    );
    assert_eq!(
        list("not(attribute:ecs.instance-type =~ t2.*)"),
        vec![arns[1].clone()]
    );
    assert_eq!(
        list("attribute:ecs.instance-type exists"),
        sorted(arns.clone())
    );
    let e = err(
        &cp,
        "ListContainerInstances",
        json!({"cluster": "q", "filter": "attribute:ecs.instance-type =="}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    assert!(e.message.contains("position"), "{}", e.message);
    // Status filter and paging.
    ok(
        &cp,
        "DeregisterContainerInstance",
        json!({"cluster": "q", "containerInstance": arns[1]}),
    );
    let page = ok(
        &cp,
        "ListContainerInstances",
        json!({"cluster": "q", "maxResults": 1}),
    );
    assert_eq!(
        page["containerInstanceArns"].as_array().map(Vec::len),
        Some(1)
    );
    let rest = ok(
        &cp,
        "ListContainerInstances",
        json!({"cluster": "q", "maxResults": 1, "nextToken": page["nextToken"]}),
    );
    assert_eq!(
        rest["containerInstanceArns"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(rest.get("nextToken").is_none());
    let d = ok(
        &cp,
        "DescribeContainerInstances",
        json!({"cluster": "q", "containerInstances": [arns[1], "nope"]}),
    );
    assert_eq!(d["containerInstances"][0]["status"], "INACTIVE");
    assert_eq!(d["failures"][0]["reason"], "MISSING");
}

fn register_sized(cp: &ControlPlane, cluster: &str, zone: &str, cpu: i64, memory: i64) -> String {
    let r = ok(
        cp,
        "RegisterContainerInstance",
        json!({
            "cluster": cluster,
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]}
            ],
            "attributes": [{"name": "ecs.availability-zone", "value": zone}]
        }),
    );
    r["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn run_task_places_and_reports_failures_in_ecs_form() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "run"}));
    let a = register_sized(&cp, "run", "us-east-1a", 1024, 1000);
    let b = register_sized(&cp, "run", "us-east-1b", 1024, 1000);
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "web", "containerDefinitions": [
        {"name": "app", "image": "busybox", "memory": 400, "cpu": 100,
         "portMappings": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81, "hostPort": 8081}]}]}),
    );

    let r = ok(
        &cp,
        "RunTask",
        json!({"cluster": "run", "taskDefinition": "web", "count": 2,
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}], "startedBy": "me"}),
    );
    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{r}");
    let mut hosts: Vec<&str> = tasks
        .iter()
        .map(|t| t["containerInstanceArn"].as_str().unwrap())
        .collect();
    hosts.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(hosts, want, "spread across zones");
    let t0 = &tasks[0];
    assert_eq!(t0["lastStatus"], "PROVISIONING");
    assert_eq!(t0["desiredStatus"], "RUNNING");
    assert_eq!(t0["group"], "family:web");
    assert_eq!(t0["launchType"], "EC2");
    let bindings = t0["containers"][0]["networkBindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 2);
    let dynamic = bindings[0]["hostPort"].as_i64().unwrap();
    assert!((49153..=65535).contains(&dynamic), "{dynamic}");
    assert_eq!(bindings[1]["hostPort"], 8081);

    // Static port 8081 is taken on both instances now.
    let r = ok(
        &cp,
        "RunTask",
        json!({"cluster": "run", "taskDefinition": "web"}),
    );
    assert_eq!(r["tasks"].as_array().map(Vec::len), Some(0));
    let reasons: Vec<&str> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["RESOURCE:PORTS", "RESOURCE:PORTS"]);

    // Too much memory.
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "big", "containerDefinitions": [{"name": "a", "image": "b", "memory": 900}]}),
    );
    let r = ok(
        &cp,
        "RunTask",
        json!({"cluster": "run", "taskDefinition": "big"}),
    );
    let reasons: Vec<&str> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["RESOURCE:MEMORY", "RESOURCE:MEMORY"]);

    // Listing and describing.
    let listed = ok(
        &cp,
        "ListTasks",
        json!({"cluster": "run", "startedBy": "me"}),
    );
    assert_eq!(listed["taskArns"].as_array().map(Vec::len), Some(2));
    let listed = ok(
        &cp,
        "ListTasks",
        json!({"cluster": "run", "containerInstance": a, "family": "web"}),
    );
    assert_eq!(listed["taskArns"].as_array().map(Vec::len), Some(1));
    let arn = t0["taskArn"].as_str().unwrap().to_string();
    let d = ok(
        &cp,
        "DescribeTasks",
        json!({"cluster": "run", "tasks": [arn, "nope"]}),
    );
    assert_eq!(d["tasks"][0]["taskArn"], arn.as_str());
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    // The cluster counts its tasks and refuses deletion.
    let c = ok(&cp, "DescribeClusters", json!({"clusters": ["run"]}));
    assert_eq!(c["clusters"][0]["pendingTasksCount"], 2);
    assert_eq!(
        err(&cp, "DeleteCluster", json!({"cluster": "run"})).code,
        ErrorCode::ClusterContainsContainerInstancesException
    );
}

#[test]
fn task_lifecycle_moves_forward_only_and_frees_resources() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "life"}));
    register_sized(&cp, "life", "us-east-1a", 1024, 500);
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "job", "containerDefinitions": [{"name": "a", "image": "b", "memory": 400}]}),
    );
    let r = ok(
        &cp,
        "RunTask",
        json!({"cluster": "life", "taskDefinition": "job"}),
    );
    let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    // Full: a second one does not fit.
    let r = ok(
        &cp,
        "RunTask",
        json!({"cluster": "life", "taskDefinition": "job"}),
    );
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:MEMORY");

    ok(
        &cp,
        "SubmitTaskStateChange",
        json!({"cluster": "life", "task": arn, "status": "RUNNING",
        "containers": [{"containerName": "a", "status": "RUNNING", "runtimeId": "abc"}]}),
    );
    let d = ok(
        &cp,
        "DescribeTasks",
        json!({"cluster": "life", "tasks": [arn]}),
    );
    assert_eq!(d["tasks"][0]["lastStatus"], "RUNNING");
    assert!(d["tasks"][0]["startedAt"].is_number());
    assert_eq!(d["tasks"][0]["containers"][0]["runtimeId"], "abc");
    // A late PENDING report does not move it back.
    ok(
        &cp,
        "SubmitTaskStateChange",
        json!({"cluster": "life", "task": arn, "status": "PENDING"}),
    );
    let d = ok(
        &cp,
        "DescribeTasks",
        json!({"cluster": "life", "tasks": [arn]}),
    );
    assert_eq!(d["tasks"][0]["lastStatus"], "RUNNING");

    let s = ok(
        &cp,
        "StopTask",
        json!({"cluster": "life", "task": arn, "reason": "done"}),
    );
    assert_eq!(s["task"]["desiredStatus"], "STOPPED");
    assert_eq!(s["task"]["stopCode"], "UserInitiated");
    assert_eq!(s["task"]["stoppedReason"], "done");
    ok(
        &cp,
        "SubmitContainerStateChange",
        json!({"cluster": "life", "task": arn, "containerName": "a", "status": "STOPPED", "exitCode": 143}),
    );
    ok(
        &cp,
        "SubmitTaskStateChange",
        json!({"cluster": "life", "task": arn, "status": "STOPPED"}),
    );
    let d = ok(
        &cp,
        "DescribeTasks",
        json!({"cluster": "life", "tasks": [arn]}),
    );
    assert_eq!(d["tasks"][0]["lastStatus"], "STOPPED");
    assert_eq!(d["tasks"][0]["containers"][0]["exitCode"], 143);
    assert!(d["tasks"][0]["stoppedAt"].is_number());
    assert_eq!(
        ok(&cp, "ListTasks", json!({"cluster": "life"}))["taskArns"],
        json!([])
    );
    assert_eq!(
        ok(
            &cp,
            "ListTasks",
            json!({"cluster": "life", "desiredStatus": "STOPPED"})
        )["taskArns"],
        json!([arn])
    );
    // Its memory is free again.
    let r = ok(
        &cp,
        "RunTask",
        json!({"cluster": "life", "taskDefinition": "job"}),
    );
    assert_eq!(r["tasks"].as_array().map(Vec::len), Some(1), "{r}");
    // A task no agent took yet stops at once.
    let pending = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let s = ok(&cp, "StopTask", json!({"cluster": "life", "task": pending}));
    assert_eq!(s["task"]["lastStatus"], "STOPPED");
}

#[test]
fn run_task_input_errors() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "e"}));
    ok(&cp, "RegisterTaskDefinition", taskdef("fam"));
    let e = err(
        &cp,
        "RunTask",
        json!({"cluster": "e", "taskDefinition": "fam"}),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::InvalidParameterException,
            "No Container Instances were found in your cluster."
        )
    );
    register_sized(&cp, "e", "us-east-1a", 1024, 1024);
    assert_eq!(
        err(
            &cp,
            "RunTask",
            json!({"cluster": "e", "taskDefinition": "fam", "count": 11})
        )
        .code,
        ErrorCode::InvalidParameterException
    );
    assert_eq!(
        err(
            &cp,
            "RunTask",
            json!({"cluster": "e", "taskDefinition": "nope"})
        )
        .code,
        ErrorCode::ClientException
    );
    assert_eq!(
        err(
            &cp,
            "RunTask",
            json!({"cluster": "nope", "taskDefinition": "fam"})
        )
        .code,
        ErrorCode::ClusterNotFoundException
    );
    assert_eq!(
        err(
            &cp,
            "RunTask",
            json!({"cluster": "e", "taskDefinition": "fam", "launchType": "FARGATE"})
        )
        .code,
        ErrorCode::UnsupportedFeatureException
    );
    let e = err(
        &cp,
        "RunTask",
        json!({"cluster": "e", "taskDefinition": "fam", "placementStrategy": [{"type": "binpack", "field": "disk"}]}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    let e = err(
        &cp,
        "RunTask",
        json!({"cluster": "e", "taskDefinition": "fam", "placementConstraints": [{"type": "memberOf", "expression": "attribute:x =="}]}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    let e = err(
        &cp,
        "RunTask",
        json!({"cluster": "e", "taskDefinition": "fam", "overrides": {"containerOverrides": [{"name": "ghost"}]}}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    ok(
        &cp,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "fam:1"}),
    );
    assert_eq!(
        err(
            &cp,
            "RunTask",
            json!({"cluster": "e", "taskDefinition": "fam:1"})
        )
        .code,
        ErrorCode::ClientException
    );
}

#[test]
fn concurrent_run_tasks_never_overcommit() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "race"}));
    for z in ["a", "b", "c"] {
        register_sized(&cp, "race", &format!("us-east-1{z}"), 4096, 1000);
    }
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "m", "containerDefinitions": [{"name": "a", "image": "b", "memory": 100}]}),
    );
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let cp = cp.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| {
                        ok(
                            &cp,
                            "RunTask",
                            json!({"cluster": "race", "taskDefinition": "m", "count": 2}),
                        )["tasks"]
                            .as_array()
                            .map_or(0, Vec::len)
                    })
                    .sum::<usize>()
            })
        })
        .collect();
    let placed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // 3 instances x 10 tasks of 100 MiB fit exactly; 60 were asked for.
    assert_eq!(placed, 30);
}

#[test]
fn instances_show_what_their_tasks_hold() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "r"}));
    let arn = register_sized(&cp, "r", "us-east-1a", 2048, 1000);
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "w", "containerDefinitions": [
        {"name": "a", "image": "b", "cpu": 256, "memory": 300, "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]}),
    );
    ok(
        &cp,
        "RunTask",
        json!({"cluster": "r", "taskDefinition": "w"}),
    );
    let d = ok(
        &cp,
        "DescribeContainerInstances",
        json!({"cluster": "r", "containerInstances": [arn]}),
    );
    let ci = &d["containerInstances"][0];
    assert_eq!(ci["pendingTasksCount"], 1);
    let remaining = ci["remainingResources"].as_array().unwrap();
    let get = |n: &str| remaining.iter().find(|r| r["name"] == n).cloned().unwrap();
    assert_eq!(get("CPU")["integerValue"], 2048 - 256);
    assert_eq!(get("MEMORY")["integerValue"], 1000 - 300);
    assert!(get("PORTS")["stringSetValue"]
        .as_array()
        .unwrap()
        .contains(&json!("8080")));
    let registered = ci["registeredResources"].as_array().unwrap();
    assert_eq!(
        registered.iter().find(|r| r["name"] == "MEMORY").unwrap()["integerValue"],
        1000
    );
}

#[test]
fn draining_instances_take_no_new_tasks() {
    let cp = plane();
    ok(&cp, "CreateCluster", json!({"clusterName": "d"}));
    let a = register_sized(&cp, "d", "us-east-1a", 1024, 1000);
    ok(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "t", "containerDefinitions": [{"name": "a", "image": "b", "memory": 10}]}),
    );
    let r = ok(
        &cp,
        "UpdateContainerInstancesState",
        json!({"cluster": "d", "containerInstances": [a, "ghost"], "status": "DRAINING"}),
    );
    assert_eq!(r["containerInstances"][0]["status"], "DRAINING");
    assert_eq!(r["failures"][0]["reason"], "MISSING");
    let run = ok(
        &cp,
        "RunTask",
        json!({"cluster": "d", "taskDefinition": "t"}),
    );
    assert_eq!(run["tasks"], json!([]));
    assert_eq!(run["failures"][0]["reason"], "AGENT");
    assert_eq!(
        ok(
            &cp,
            "ListContainerInstances",
            json!({"cluster": "d", "status": "DRAINING"})
        )["containerInstanceArns"],
        json!([a])
    );
    ok(
        &cp,
        "UpdateContainerInstancesState",
        json!({"cluster": "d", "containerInstances": [a], "status": "ACTIVE"}),
    );
    assert_eq!(
        ok(
            &cp,
            "RunTask",
            json!({"cluster": "d", "taskDefinition": "t"})
        )["tasks"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let e = err(
        &cp,
        "UpdateContainerInstancesState",
        json!({"cluster": "d", "containerInstances": [a], "status": "INACTIVE"}),
    );
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
}
