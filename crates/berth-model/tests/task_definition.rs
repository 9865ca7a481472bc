//! Table tests for task definition validation and the stored form.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use berth_model::task_definition::*;
use berth_model::ErrorCode::{self, ClientException, InvalidParameterException};
use serde_json::{json, Value};

/// A request from JSON, as the wire delivers it.
fn request(value: Value) -> RegisterTaskDefinitionRequest {
    serde_json::from_value(value).expect("test request deserializes")
}

/// A valid EC2 request with one container, with `patch` merged into the
/// task (top-level keys) and `container` merged into the container.
fn ec2(patch: Value, container: Value) -> Value {
    let mut base = json!({
        "family": "web",
        "containerDefinitions": [{"name": "app", "image": "nginx:1.27", "memory": 256}]
    });
    merge(&mut base["containerDefinitions"][0], container);
    merge(&mut base, patch);
    base
}

/// A valid Fargate request with one container.
fn fargate(patch: Value, container: Value) -> Value {
    let mut base = json!({
        "family": "web",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "app", "image": "nginx:1.27"}]
    });
    merge(&mut base["containerDefinitions"][0], container);
    merge(&mut base, patch);
    base
}

fn merge(target: &mut Value, patch: Value) {
    if let (Some(target), Value::Object(patch)) = (target.as_object_mut(), patch) {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                target.insert(key, value);
            }
        }
    }
}

fn two_containers(first: Value, second: Value) -> Value {
    let mut base = json!({
        "family": "web",
        "containerDefinitions": [
            {"name": "app", "image": "nginx", "memory": 128},
            {"name": "side", "image": "busybox", "memory": 128}
        ]
    });
    merge(&mut base["containerDefinitions"][0], first);
    merge(&mut base["containerDefinitions"][1], second);
    base
}

#[track_caller]
fn assert_rejects(label: &str, body: Value, code: ErrorCode, fragment: &str) {
    match validate(&request(body)) {
        Ok(_) => panic!("{label}: accepted, expected {code} containing {fragment:?}"),
        Err(err) => {
            assert_eq!(err.code, code, "{label}: wrong code ({})", err.message);
            assert!(
                err.message.contains(fragment),
                "{label}: message {:?} does not contain {fragment:?}",
                err.message
            );
        }
    }
}

#[track_caller]
fn assert_accepts(label: &str, body: Value) -> ValidatedTaskDefinition {
    match validate(&request(body)) {
        Ok(validated) => validated,
        Err(err) => panic!("{label}: rejected: {err}"),
    }
}

#[test]
fn valid_definitions_are_accepted() {
    let cases = vec![
        ("minimal ec2", ec2(json!({}), json!({}))),
        (
            "reservation only",
            ec2(json!({}), json!({"memory": null, "memoryReservation": 128})),
        ),
        (
            "task memory only",
            ec2(json!({"memory": "512"}), json!({"memory": null})),
        ),
        (
            "memory equals reservation",
            ec2(json!({}), json!({"memoryReservation": 256})),
        ),
        (
            "vcpu and gb",
            ec2(
                json!({"cpu": "1 vCPU", "memory": "2 GB"}),
                json!({"cpu": 1024}),
            ),
        ),
        ("minimal fargate", fargate(json!({}), json!({}))),
        (
            "fargate 16 vcpu",
            fargate(json!({"cpu": "16 vCPU", "memory": "120 GB"}), json!({})),
        ),
        (
            "bridge with links and dynamic ports",
            two_containers(
                json!({"links": ["side:s"], "portMappings": [{"containerPort": 80}]}),
                json!({"portMappings": [{"containerPort": 80}]}),
            ),
        ),
        (
            "awsvpc matching ports",
            ec2(
                json!({"networkMode": "awsvpc"}),
                json!({"portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]}),
            ),
        ),
        (
            "same port different protocols",
            ec2(
                json!({"networkMode": "host"}),
                json!({"portMappings": [
                    {"containerPort": 53, "protocol": "tcp"},
                    {"containerPort": 53, "protocol": "udp"}
                ]}),
            ),
        ),
        (
            "port range",
            ec2(
                json!({"networkMode": "awsvpc"}),
                json!({"portMappings": [{"containerPortRange": "8000-8010"}]}),
            ),
        ),
        (
            "health check bounds",
            ec2(
                json!({}),
                json!({"healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 60, "retries": 10, "startPeriod": 300}}),
            ),
        ),
        (
            "volumes and mounts",
            two_containers(
                json!({"mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]}),
                json!({"volumesFrom": [{"sourceContainer": "app"}]}),
            )
            .tap(|v| v["volumes"] = json!([{"name": "data", "host": {"sourcePath": "/srv"}}])),
        ),
        (
            "dependencies",
            two_containers(
                json!({"dependsOn": [{"containerName": "side", "condition": "SUCCESS"}]}),
                json!({"essential": false}),
            ),
        ),
        (
            "healthy dependency",
            two_containers(
                json!({"dependsOn": [{"containerName": "side", "condition": "HEALTHY"}]}),
                json!({"healthCheck": {"command": ["CMD", "true"]}}),
            ),
        ),
        (
            "ulimits",
            ec2(
                json!({}),
                json!({"ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]}),
            ),
        ),
        (
            "tags",
            ec2(
                json!({"tags": [{"key": "team", "value": "web"}, {"key": "empty", "value": ""}]}),
                json!({}),
            ),
        ),
        (
            "pid and ipc",
            ec2(json!({"pidMode": "host", "ipcMode": "task"}), json!({})),
        ),
        (
            "restart policy",
            ec2(
                json!({}),
                json!({"restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60}}),
            ),
        ),
        (
            "firelens pair",
            two_containers(
                json!({"logConfiguration": {"logDriver": "awsfirelens"}}),
                json!({"firelensConfiguration": {"type": "fluentbit"}}),
            ),
        ),
        (
            "family at 255",
            ec2(json!({"family": "f".repeat(255)}), json!({})),
        ),
        (
            "image with digest",
            ec2(json!({}), json!({"image": "repo/app@sha256:abc123"})),
        ),
    ];
    for (label, body) in cases {
        assert_accepts(label, body);
    }
}

trait Tap {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn task_level_rules() {
    let cases: Vec<(&str, Value, ErrorCode, &str)> = vec![
        ("empty family", ec2(json!({"family": ""}), json!({})), ClientException, "Family should not be null or empty"),
        ("family chars", ec2(json!({"family": "web.app"}), json!({})), ClientException, "Family contains invalid characters"),
        ("family length", ec2(json!({"family": "f".repeat(256)}), json!({})), ClientException, "Family contains invalid characters"),
        ("no containers", ec2(json!({"containerDefinitions": []}), json!({})), ClientException, "Container list cannot be empty"),
        (
            "too many containers",
            ec2(
                json!({"containerDefinitions": (0..11).map(|i| json!({"name": format!("c{i}"), "image": "x", "memory": 10})).collect::<Vec<_>>()}),
                json!({}),
            ),
            ClientException,
            "Too many containers",
        ),
        ("network mode", ec2(json!({"networkMode": "nat"}), json!({})), ClientException, "networkMode"),
        ("pid mode", ec2(json!({"pidMode": "container"}), json!({})), ClientException, "pidMode"),
        ("ipc mode", ec2(json!({"ipcMode": "shareable"}), json!({})), ClientException, "ipcMode"),
        ("compatibility", ec2(json!({"requiresCompatibilities": ["LAMBDA"]}), json!({})), ClientException, "requiresCompatibilities"),
        ("cpu text", ec2(json!({"cpu": "lots"}), json!({})), ClientException, "Invalid 'cpu' setting for task."),
        ("cpu empty", ec2(json!({"cpu": ""}), json!({})), ClientException, "Invalid 'cpu' setting for task."),
        ("cpu too small for ec2", ec2(json!({"cpu": "64"}), json!({})), ClientException, "Invalid 'cpu' setting for task."),
        ("memory text", ec2(json!({"memory": "2 TB"}), json!({})), ClientException, "Invalid 'memory' setting for task."),
        (
            "cpu sum",
            ec2(json!({"cpu": "256"}), json!({"cpu": 512})),
            ClientException,
            "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
        ),
        (
            "memory sum",
            two_containers(json!({"memory": 300}), json!({"memory": 300})).tap(|v| v["memory"] = json!("512")),
            ClientException,
            "cannot be greater than the value of the task 'memory'",
        ),
        ("too many tags", ec2(json!({"tags": (0..51).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect::<Vec<_>>()}), json!({})), InvalidParameterException, "50"),
        ("empty tag key", ec2(json!({"tags": [{"key": "", "value": "v"}]}), json!({})), InvalidParameterException, "between 1 and 128"),
        ("long tag key", ec2(json!({"tags": [{"key": "k".repeat(129), "value": "v"}]}), json!({})), InvalidParameterException, "between 1 and 128"),
        ("long tag value", ec2(json!({"tags": [{"key": "k", "value": "v".repeat(257)}]}), json!({})), InvalidParameterException, "256"),
        ("aws prefix", ec2(json!({"tags": [{"key": "aws:owner", "value": "v"}]}), json!({})), InvalidParameterException, "aws:"),
        ("tag chars", ec2(json!({"tags": [{"key": "a*b", "value": "v"}]}), json!({})), InvalidParameterException, "invalid characters"),
        ("duplicate tag", ec2(json!({"tags": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}), json!({})), InvalidParameterException, "Duplicate tag key"),
        ("volume without name", ec2(json!({"volumes": [{"host": {}}]}), json!({})), ClientException, "Volume name should not be null or empty"),
        ("volume name chars", ec2(json!({"volumes": [{"name": "a b"}]}), json!({})), ClientException, "Volume name contains invalid characters"),
        ("duplicate volume", ec2(json!({"volumes": [{"name": "a"}, {"name": "a"}]}), json!({})), ClientException, "Duplicate volume name 'a'"),
        (
            "two volume kinds",
            ec2(json!({"volumes": [{"name": "a", "host": {}, "dockerVolumeConfiguration": {}}]}), json!({})),
            ClientException,
            "Only one volume type",
        ),
        ("docker scope", ec2(json!({"volumes": [{"name": "a", "dockerVolumeConfiguration": {"scope": "global"}}]}), json!({})), ClientException, "scope"),
        (
            "autoprovision needs shared",
            ec2(json!({"volumes": [{"name": "a", "dockerVolumeConfiguration": {"scope": "task", "autoprovision": true}}]}), json!({})),
            ClientException,
            "autoprovision",
        ),
        (
            "efs iam without transit encryption",
            ec2(json!({"volumes": [{"name": "a", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "authorizationConfig": {"iam": "ENABLED"}}}]}), json!({})),
            ClientException,
            "Transit encryption must be enabled",
        ),
        ("placement type", ec2(json!({"placementConstraints": [{"type": "distinctInstance"}]}), json!({})), ClientException, "placementConstraints.type"),
        ("placement expression", ec2(json!({"placementConstraints": [{"type": "memberOf"}]}), json!({})), ClientException, "expression"),
        ("ephemeral storage", fargate(json!({"ephemeralStorage": {"sizeInGiB": 20}}), json!({})), ClientException, "between 21 and 200"),
        ("cpu architecture", ec2(json!({"runtimePlatform": {"cpuArchitecture": "RISCV"}}), json!({})), ClientException, "cpuArchitecture"),
        ("os family", ec2(json!({"runtimePlatform": {"operatingSystemFamily": "BSD"}}), json!({})), ClientException, "operatingSystemFamily"),
        (
            "proxy container",
            ec2(json!({"networkMode": "awsvpc", "proxyConfiguration": {"type": "APPMESH", "containerName": "envoy"}}), json!({})),
            ClientException,
            "'envoy' does not exist",
        ),
        (
            "proxy needs awsvpc",
            ec2(json!({"proxyConfiguration": {"containerName": "app"}}), json!({})),
            ClientException,
            "networkMode=awsvpc",
        ),
        (
            "duplicate accelerator",
            ec2(json!({"inferenceAccelerators": [{"deviceName": "d", "deviceType": "t"}, {"deviceName": "d", "deviceType": "t"}]}), json!({})),
            ClientException,
            "Duplicate inference accelerator",
        ),
    ];
    for (label, body, code, fragment) in cases {
        assert_rejects(label, body, code, fragment);
    }
}

#[test]
fn fargate_rules() {
    let cases: Vec<(&str, Value, ErrorCode, &str)> = vec![
        (
            "bridge",
            fargate(json!({"networkMode": "bridge"}), json!({})),
            ClientException,
            "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
        ),
        (
            "default mode",
            fargate(json!({"networkMode": null}), json!({})),
            ClientException,
            "Fargate only supports network mode",
        ),
        (
            "no cpu",
            fargate(json!({"cpu": null}), json!({})),
            ClientException,
            "Fargate requires that 'cpu' be defined at the task level.",
        ),
        (
            "no memory",
            fargate(json!({"memory": null}), json!({"memory": 256})),
            ClientException,
            "Fargate requires that 'memory' be defined at the task level.",
        ),
        (
            "bad combination",
            fargate(json!({"cpu": "256", "memory": "4096"}), json!({})),
            ClientException,
            "No Fargate configuration exists for given values: 256 CPU, 4096 memory.",
        ),
        (
            "odd cpu",
            fargate(json!({"cpu": "300", "memory": "1024"}), json!({})),
            ClientException,
            "No Fargate configuration exists",
        ),
        (
            "placement",
            fargate(
                json!({"placementConstraints": [{"type": "memberOf", "expression": "attribute:x == y"}]}),
                json!({}),
            ),
            ClientException,
            "Fargate does not support task placement constraints.",
        ),
        (
            "host path",
            fargate(
                json!({"volumes": [{"name": "v", "host": {"sourcePath": "/srv"}}]}),
                json!({}),
            ),
            ClientException,
            "host.sourcePath should not be set for volumes in Fargate.",
        ),
        (
            "docker volume",
            fargate(
                json!({"volumes": [{"name": "v", "dockerVolumeConfiguration": {"scope": "task"}}]}),
                json!({}),
            ),
            ClientException,
            "dockerVolumeConfiguration",
        ),
        (
            "privileged",
            fargate(json!({}), json!({"privileged": true})),
            ClientException,
            "privileged",
        ),
        (
            "ipc mode",
            fargate(json!({"ipcMode": "task"}), json!({})),
            ClientException,
            "ipcMode",
        ),
        (
            "pid host",
            fargate(json!({"pidMode": "host"}), json!({})),
            ClientException,
            "pidMode",
        ),
        (
            "stop timeout",
            fargate(json!({}), json!({"stopTimeout": 121})),
            ClientException,
            "stopTimeout",
        ),
        (
            "external awsvpc",
            ec2(
                json!({"requiresCompatibilities": ["EXTERNAL"], "networkMode": "awsvpc"}),
                json!({}),
            ),
            ClientException,
            "EXTERNAL",
        ),
    ];
    for (label, body, code, fragment) in cases {
        assert_rejects(label, body, code, fragment);
    }
    let sizes = [
        (256, 512, true),
        (256, 2048, true),
        (256, 3072, false),
        (512, 4096, true),
        (512, 5120, false),
        (1024, 2048, true),
        (1024, 1024, false),
        (2048, 16384, true),
        (4096, 30720, true),
        (4096, 31744, false),
        (8192, 20480, true),
        (8192, 17408, false),
        (16384, 122_880, true),
        (16384, 40960, true),
        (16384, 36864, false),
        (32768, 65536, false),
    ];
    for (cpu, memory, ok) in sizes {
        assert_eq!(
            fargate_size_supported(cpu, memory),
            ok,
            "{cpu} CPU / {memory} MiB"
        );
    }
}

#[test]
fn container_rules() {
    let cases: Vec<(&str, Value, ErrorCode, &str)> = vec![
        ("no name", ec2(json!({}), json!({"name": null})), ClientException, "Container.name should not be null or empty."),
        ("empty name", ec2(json!({}), json!({"name": ""})), ClientException, "Container.name should not be null or empty."),
        ("name chars", ec2(json!({}), json!({"name": "my app"})), ClientException, "Container.name contains invalid characters."),
        ("duplicate name", two_containers(json!({}), json!({"name": "app"})), ClientException, "Duplicate container name 'app'"),
        ("no image", ec2(json!({}), json!({"image": null})), ClientException, "Container.image should not be null or empty."),
        ("blank image", ec2(json!({}), json!({"image": "  "})), ClientException, "Container.image should not be null or empty."),
        ("image chars", ec2(json!({}), json!({"image": "$IMAGE_NAME"})), ClientException, "Container.image contains invalid characters."),
        (
            "no memory at all",
            ec2(json!({}), json!({"memory": null})),
            ClientException,
            "Invalid setting for container 'app'. At least one of 'memory' or 'memoryReservation' must be specified.",
        ),
        (
            "fargate without task memory still needs it",
            fargate(json!({"requiresCompatibilities": null, "networkMode": null, "cpu": null, "memory": null}), json!({})),
            ClientException,
            "At least one of 'memory' or 'memoryReservation' must be specified.",
        ),
        ("memory below 6", ec2(json!({}), json!({"memory": 5})), ClientException, "minimum is 6 MiB"),
        ("reservation below 6", ec2(json!({}), json!({"memory": null, "memoryReservation": 4})), ClientException, "'memoryReservation' setting for container 'app'"),
        ("reservation above memory", ec2(json!({}), json!({"memory": 128, "memoryReservation": 256})), ClientException, "'memoryReservation' must be less than or equal to 'memory'"),
        ("memory above task", ec2(json!({"memory": "512"}), json!({"memory": 1024})), ClientException, "The 'memory' setting for container 'app' is greater than for the task."),
        ("reservation above task", ec2(json!({"memory": "512"}), json!({"memory": null, "memoryReservation": 1024})), ClientException, "The 'memoryReservation' setting for container 'app' is greater than for the task."),
        ("negative cpu", ec2(json!({}), json!({"cpu": -1})), ClientException, "Invalid 'cpu' setting for container 'app'."),
        ("no essential", two_containers(json!({"essential": false}), json!({"essential": false})), ClientException, "at least one essential container"),
        ("links in awsvpc", two_containers(json!({"links": ["side"]}), json!({})).tap(|v| v["networkMode"] = json!("awsvpc")), ClientException, "Links are not supported when networkMode=awsvpc."),
        ("links in host", two_containers(json!({"links": ["side"]}), json!({})).tap(|v| v["networkMode"] = json!("host")), ClientException, "Links are not supported when networkMode=host."),
        ("link target", two_containers(json!({"links": ["db"]}), json!({})), ClientException, "'db' does not exist"),
        ("link self", two_containers(json!({"links": ["app"]}), json!({})), ClientException, "'app' does not exist"),
        ("link alias", two_containers(json!({"links": ["side:a b"]}), json!({})), ClientException, "alias"),
        ("container port zero", ec2(json!({}), json!({"portMappings": [{"containerPort": 0}]})), ClientException, "Invalid 'containerPort' setting for container 'app'."),
        ("container port big", ec2(json!({}), json!({"portMappings": [{"containerPort": 65536}]})), ClientException, "Invalid 'containerPort'"),
        ("container port missing", ec2(json!({}), json!({"portMappings": [{"hostPort": 80}]})), ClientException, "'containerPort' should not be null"),
        ("host port big", ec2(json!({}), json!({"portMappings": [{"containerPort": 80, "hostPort": 70000}]})), ClientException, "Invalid 'hostPort'"),
        (
            "awsvpc host port mismatch",
            ec2(json!({"networkMode": "awsvpc"}), json!({"portMappings": [{"containerPort": 80, "hostPort": 8080}]})),
            ClientException,
            "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
        ),
        (
            "host mode mismatch",
            ec2(json!({"networkMode": "host"}), json!({"portMappings": [{"containerPort": 80, "hostPort": 8080}]})),
            ClientException,
            "When networkMode=host, the host ports and container ports in port mappings must match.",
        ),
        ("protocol", ec2(json!({}), json!({"portMappings": [{"containerPort": 80, "protocol": "sctp"}]})), ClientException, "portMappings.protocol"),
        ("app protocol", ec2(json!({}), json!({"portMappings": [{"containerPort": 80, "name": "web", "appProtocol": "http3"}]})), ClientException, "appProtocol"),
        ("app protocol without name", ec2(json!({}), json!({"portMappings": [{"containerPort": 80, "appProtocol": "http"}]})), ClientException, "requires a port mapping 'name'"),
        (
            "duplicate bridge host port",
            two_containers(json!({"portMappings": [{"containerPort": 80, "hostPort": 8080}]}), json!({"portMappings": [{"containerPort": 81, "hostPort": 8080}]})),
            ClientException,
            "Host port 8080/tcp",
        ),
        (
            "duplicate awsvpc port",
            two_containers(json!({"portMappings": [{"containerPort": 80}]}), json!({"portMappings": [{"containerPort": 80}]})).tap(|v| v["networkMode"] = json!("awsvpc")),
            ClientException,
            "Host port 80/tcp",
        ),
        (
            "duplicate port name",
            two_containers(json!({"portMappings": [{"containerPort": 80, "name": "web"}]}), json!({"portMappings": [{"containerPort": 81, "name": "web"}]})),
            ClientException,
            "Duplicate port mapping name 'web'",
        ),
        ("port name chars", ec2(json!({}), json!({"portMappings": [{"containerPort": 80, "name": "Web_1"}]})), ClientException, "Invalid port mapping name"),
        ("range and port", ec2(json!({}), json!({"portMappings": [{"containerPort": 80, "containerPortRange": "80-90"}]})), ClientException, "not both"),
        ("bad range", ec2(json!({}), json!({"portMappings": [{"containerPortRange": "90-80"}]})), ClientException, "containerPortRange"),
        ("health interval low", ec2(json!({}), json!({"healthCheck": {"command": ["CMD", "x"], "interval": 4}})), ClientException, "'interval'"),
        ("health interval high", ec2(json!({}), json!({"healthCheck": {"command": ["CMD", "x"], "interval": 301}})), ClientException, "between 5 and 300"),
        ("health timeout", ec2(json!({}), json!({"healthCheck": {"command": ["CMD", "x"], "timeout": 1}})), ClientException, "between 2 and 60"),
        ("health retries", ec2(json!({}), json!({"healthCheck": {"command": ["CMD", "x"], "retries": 11}})), ClientException, "between 1 and 10"),
        ("health start period", ec2(json!({}), json!({"healthCheck": {"command": ["CMD", "x"], "startPeriod": -1}})), ClientException, "between 0 and 300"),
        ("health command", ec2(json!({}), json!({"healthCheck": {"command": []}})), ClientException, "'command' should not be null or empty"),
        ("mount unknown volume", ec2(json!({}), json!({"mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}]})), ClientException, "Volume 'data' is not defined"),
        ("mount no source", ec2(json!({}), json!({"mountPoints": [{"containerPath": "/d"}]})), ClientException, "'sourceVolume' should not be null or empty"),
        (
            "mount no path",
            ec2(json!({"volumes": [{"name": "data"}]}), json!({"mountPoints": [{"sourceVolume": "data"}]})),
            ClientException,
            "'containerPath' should not be null or empty",
        ),
        ("volumes from unknown", ec2(json!({}), json!({"volumesFrom": [{"sourceContainer": "db"}]})), ClientException, "'volumesFrom'"),
        ("volumes from self", ec2(json!({}), json!({"volumesFrom": [{"sourceContainer": "app"}]})), ClientException, "'volumesFrom'"),
        ("ulimit name", ec2(json!({}), json!({"ulimits": [{"name": "files", "softLimit": 1, "hardLimit": 2}]})), ClientException, "ulimits.name"),
        ("ulimit soft above hard", ec2(json!({}), json!({"ulimits": [{"name": "nofile", "softLimit": 3, "hardLimit": 2}]})), ClientException, "'softLimit' must be less than or equal to 'hardLimit'"),
        (
            "duplicate ulimit",
            ec2(json!({}), json!({"ulimits": [{"name": "nofile", "softLimit": 1, "hardLimit": 2}, {"name": "nofile", "softLimit": 1, "hardLimit": 2}]})),
            ClientException,
            "Duplicate ulimit 'nofile'",
        ),
        ("log driver", ec2(json!({}), json!({"logConfiguration": {"logDriver": "loki"}})), ClientException, "logConfiguration.logDriver"),
        ("firelens driver without router", ec2(json!({}), json!({"logConfiguration": {"logDriver": "awsfirelens"}})), ClientException, "firelensConfiguration"),
        (
            "two firelens",
            two_containers(json!({"firelensConfiguration": {"type": "fluentd"}}), json!({"firelensConfiguration": {"type": "fluentbit"}})),
            ClientException,
            "Only one container",
        ),
        ("firelens type", ec2(json!({}), json!({"firelensConfiguration": {"type": "vector"}})), ClientException, "firelensConfiguration.type"),
        ("env file type", ec2(json!({}), json!({"environmentFiles": [{"type": "http", "value": "x"}]})), ClientException, "environmentFiles.type"),
        ("env name", ec2(json!({}), json!({"environment": [{"value": "x"}]})), ClientException, "'name' should not be null or empty"),
        ("secret duplicate", ec2(json!({}), json!({"secrets": [{"name": "A", "valueFrom": "p"}, {"name": "A", "valueFrom": "q"}]})), ClientException, "Duplicate secret name 'A'"),
        ("version consistency", ec2(json!({}), json!({"versionConsistency": "sometimes"})), ClientException, "versionConsistency"),
        ("negative stop timeout", ec2(json!({}), json!({"stopTimeout": -1})), ClientException, "'stopTimeout'"),
        ("gpu value", ec2(json!({}), json!({"resourceRequirements": [{"type": "GPU", "value": "zero"}]})), ClientException, "positive integer"),
        ("resource type", ec2(json!({}), json!({"resourceRequirements": [{"type": "FPGA", "value": "1"}]})), ClientException, "resourceRequirements.type"),
        ("accelerator unknown", ec2(json!({}), json!({"resourceRequirements": [{"type": "InferenceAccelerator", "value": "d1"}]})), ClientException, "'d1' is not defined"),
        ("capability", ec2(json!({}), json!({"linuxParameters": {"capabilities": {"add": ["FLY"]}}})), ClientException, "linuxParameters.capabilities"),
        ("device permission", ec2(json!({}), json!({"linuxParameters": {"devices": [{"hostPath": "/dev/x", "permissions": ["exec"]}]}})), ClientException, "devices.permissions"),
        ("swappiness", ec2(json!({}), json!({"linuxParameters": {"swappiness": 101}})), ClientException, "swappiness"),
        ("max swap", ec2(json!({}), json!({"linuxParameters": {"maxSwap": -1}})), ClientException, "maxSwap"),
        ("shm size", ec2(json!({}), json!({"linuxParameters": {"sharedMemorySize": 0}})), ClientException, "sharedMemorySize"),
        ("tmpfs size", ec2(json!({}), json!({"linuxParameters": {"tmpfs": [{"containerPath": "/t", "size": 0}]}})), ClientException, "tmpfs"),
        ("system control namespace", ec2(json!({}), json!({"systemControls": [{"value": "1"}]})), ClientException, "'namespace'"),
        ("restart period", ec2(json!({}), json!({"restartPolicy": {"enabled": true, "restartAttemptPeriod": 59}})), ClientException, "restartAttemptPeriod"),
        ("restart codes", ec2(json!({}), json!({"restartPolicy": {"enabled": true, "ignoredExitCodes": (0..51).collect::<Vec<_>>()}})), ClientException, "ignoredExitCodes"),
    ];
    for (label, body, code, fragment) in cases {
        assert_rejects(label, body, code, fragment);
    }
}

#[test]
fn dependency_rules() {
    let cases: Vec<(&str, Value, ErrorCode, &str)> = vec![
        ("unknown", two_containers(json!({"dependsOn": [{"containerName": "db", "condition": "START"}]}), json!({})), ClientException, "'db' does not exist"),
        ("self", two_containers(json!({"dependsOn": [{"containerName": "app", "condition": "START"}]}), json!({})), ClientException, "'app' does not exist"),
        ("condition", two_containers(json!({"dependsOn": [{"containerName": "side", "condition": "READY"}]}), json!({})), ClientException, "dependsOn.condition"),
        (
            "essential success target",
            two_containers(json!({"dependsOn": [{"containerName": "side", "condition": "SUCCESS"}]}), json!({})),
            ClientException,
            "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
        ),
        (
            "healthy without health check",
            two_containers(json!({"dependsOn": [{"containerName": "side", "condition": "HEALTHY"}]}), json!({})),
            ClientException,
            "must have a health check",
        ),
        (
            "cycle",
            two_containers(
                json!({"dependsOn": [{"containerName": "side", "condition": "START"}]}),
                json!({"dependsOn": [{"containerName": "app", "condition": "START"}]}),
            ),
            ClientException,
            "cycle",
        ),
    ];
    for (label, body, code, fragment) in cases {
        assert_rejects(label, body, code, fragment);
    }
    // A longer cycle through three containers.
    let body = json!({
        "family": "web",
        "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 10, "dependsOn": [{"containerName": "b", "condition": "START"}]},
            {"name": "b", "image": "x", "memory": 10, "dependsOn": [{"containerName": "c", "condition": "START"}]},
            {"name": "c", "image": "x", "memory": 10, "dependsOn": [{"containerName": "a", "condition": "START"}]}
        ]
    });
    assert_rejects("three-cycle", body, ClientException, "cycle");
    // A diamond is not a cycle.
    let body = json!({
        "family": "web",
        "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 10, "dependsOn": [{"containerName": "b", "condition": "START"}, {"containerName": "c", "condition": "START"}]},
            {"name": "b", "image": "x", "memory": 10, "dependsOn": [{"containerName": "d", "condition": "START"}]},
            {"name": "c", "image": "x", "memory": 10, "dependsOn": [{"containerName": "d", "condition": "START"}]},
            {"name": "d", "image": "x", "memory": 10}
        ]
    });
    assert_accepts("diamond", body);
}

#[test]
fn validation_reports_task_size_and_compatibilities() {
    let v = assert_accepts(
        "ec2",
        ec2(json!({"cpu": "0.5 vCPU", "memory": "1GB"}), json!({})),
    );
    assert_eq!((v.cpu, v.memory), (Some(512), Some(1024)));
    assert_eq!(v.effective_network_mode, "bridge");
    assert_eq!(v.compatibilities, vec!["EC2", "EXTERNAL"]);

    let v = assert_accepts("fargate", fargate(json!({}), json!({})));
    assert_eq!(v.effective_network_mode, "awsvpc");
    assert_eq!(v.compatibilities, vec!["EC2", "FARGATE"]);

    // awsvpc without a Fargate size is EC2 only.
    let v = assert_accepts("awsvpc", ec2(json!({"networkMode": "awsvpc"}), json!({})));
    assert_eq!(v.compatibilities, vec!["EC2"]);

    let v = assert_accepts(
        "managed",
        ec2(
            json!({"requiresCompatibilities": ["MANAGED_INSTANCES"], "networkMode": "host"}),
            json!({}),
        ),
    );
    assert_eq!(
        v.compatibilities,
        vec!["EC2", "EXTERNAL", "MANAGED_INSTANCES"]
    );
}

fn registration() -> Registration {
    Registration {
        revision: 3,
        task_definition_arn: "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3".into(),
        registered_at: 1_700_000_000.5,
        registered_by: Some("arn:aws:iam::000000000000:root".into()),
    }
}

fn stored(body: Value) -> Value {
    let req = request(body);
    let validated = validate(&req).expect("valid");
    serde_json::to_value(build_task_definition(&req, &validated, &registration())).expect("json")
}

#[test]
fn stored_definition_fills_ecs_defaults() {
    let td = stored(ec2(
        json!({"cpu": "1 vCPU", "memory": "2 GB"}),
        json!({"portMappings": [{"containerPort": 80}]}),
    ));
    assert_eq!(
        td,
        json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
            "containerDefinitions": [{
                "name": "app",
                "image": "nginx:1.27",
                "cpu": 0,
                "memory": 256,
                "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
                "essential": true,
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
                "systemControls": []
            }],
            "family": "web",
            "revision": 3,
            "volumes": [],
            "status": "ACTIVE",
            "requiresAttributes": [],
            "placementConstraints": [],
            "compatibilities": ["EC2", "EXTERNAL"],
            "cpu": "1024",
            "memory": "2048",
            "registeredAt": 1_700_000_000.5,
            "registeredBy": "arn:aws:iam::000000000000:root"
        })
    );
}

#[test]
fn stored_definition_keeps_request_members() {
    let td = stored(fargate(
        json!({"taskRoleArn": "arn:aws:iam::000000000000:role/t", "enableFaultInjection": true,
               "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
               "ephemeralStorage": {"sizeInGiB": 30}}),
        json!({"essential": false, "cpu": 128, "portMappings": [{"containerPort": 8080, "name": "web", "appProtocol": "http"}]}),
    ).tap(|v| {
        v["containerDefinitions"].as_array_mut().unwrap().push(json!({"name": "main", "image": "app"}));
    }));
    assert_eq!(td["networkMode"], "awsvpc");
    assert_eq!(td["requiresCompatibilities"], json!(["FARGATE"]));
    assert_eq!(td["compatibilities"], json!(["EC2", "FARGATE"]));
    assert_eq!(td["taskRoleArn"], "arn:aws:iam::000000000000:role/t");
    assert_eq!(td["enableFaultInjection"], true);
    assert_eq!(td["ephemeralStorage"], json!({"sizeInGiB": 30}));
    assert_eq!(td["runtimePlatform"]["cpuArchitecture"], "ARM64");
    let first = &td["containerDefinitions"][0];
    assert_eq!(first["essential"], false);
    assert_eq!(first["cpu"], 128);
    assert_eq!(
        first["portMappings"],
        json!([{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp", "name": "web", "appProtocol": "http"}])
    );
    assert_eq!(td["containerDefinitions"][1]["essential"], true);
    assert!(td.get("tags").is_none());
}

fn attribute_names(td: &Value) -> Vec<String> {
    td["requiresAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a.as_object().unwrap().len(), 1, "only the name is set: {a}");
            a["name"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn stored_definition_derives_required_attributes() {
    let td = stored(fargate(
        json!({"executionRoleArn": "arn:aws:iam::000000000000:role/exec", "taskRoleArn": "arn:aws:iam::000000000000:role/task"}),
        json!({
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
            "memoryReservation": 128,
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
            "healthCheck": {"command": ["CMD", "true"]},
            "secrets": [
                {"name": "A", "valueFrom": "arn:aws:secretsmanager:us-east-1:000000000000:secret:s"},
                {"name": "B", "valueFrom": "/param/b"}
            ],
            "environmentFiles": [{"type": "s3", "value": "arn:aws:s3:::bucket/env"}],
            "stopTimeout": 30
        }),
    ));
    let names = attribute_names(&td);
    for expected in [
        "com.amazonaws.ecs.capability.docker-remote-api.1.18",
        "com.amazonaws.ecs.capability.docker-remote-api.1.19",
        "com.amazonaws.ecs.capability.docker-remote-api.1.21",
        "com.amazonaws.ecs.capability.docker-remote-api.1.24",
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "com.amazonaws.ecs.capability.ecr-auth",
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.execution-role-awslogs",
        "ecs.capability.execution-role-ecr-pull",
        "ecs.capability.task-eni",
        "ecs.capability.container-health-check",
        "ecs.capability.secrets.asm.environment-variables",
        "ecs.capability.secrets.ssm.environment-variables",
        "ecs.capability.env-files.s3",
        "ecs.capability.container-ordering",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing {expected} in {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "sorted and unique");

    let td = stored(ec2(
        json!({"volumes": [
            {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "transitEncryption": "ENABLED", "authorizationConfig": {"iam": "ENABLED"}}},
            {"name": "plug", "dockerVolumeConfiguration": {"scope": "shared", "driver": "rexray"}}
        ]}),
        json!({"repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:000000000000:secret:r"}}),
    ));
    let names = attribute_names(&td);
    for expected in [
        "ecs.capability.efs",
        "ecs.capability.efsAuth",
        "ecs.capability.docker-plugin.rexray",
        "com.amazonaws.ecs.capability.docker-remote-api.1.25",
        "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing {expected} in {names:?}"
        );
    }
    // EFS keeps the definition off external instances.
    assert_eq!(td["compatibilities"], json!(["EC2"]));
}

#[test]
fn stored_definition_round_trips_through_json() {
    let req = request(fargate(
        json!({"tags": [{"key": "a", "value": "b"}]}),
        json!({}),
    ));
    let validated = validate(&req).expect("valid");
    let td = build_task_definition(&req, &validated, &registration());
    let text = serde_json::to_string(&td).expect("json");
    let back: TaskDefinition = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, td);
}

#[test]
fn size_limit_is_64_kib_of_the_task_definition_without_its_tags() {
    let env = |n: usize| -> Value {
        json!((0..n)
            .map(|i| json!({"name": format!("V{i:04}"), "value": "x".repeat(1000)}))
            .collect::<Vec<_>>())
    };
    // The size is the request's compact JSON without its tags, whatever the tags.
    let tags = json!([{"key": "team", "value": "web"}, {"key": "k".repeat(128), "value": "v".repeat(256)}]);
    let with = request(ec2(json!({"tags": tags}), json!({"environment": env(3)})));
    let without = request(ec2(json!({}), json!({"environment": env(3)})));
    assert_eq!(task_definition_size(&with), task_definition_size(&without));
    assert_eq!(
        task_definition_size(&without),
        serde_json::to_vec(&without).unwrap().len()
    );
    // Over the limit: ECS's ClientException, with the actual and the maximum size.
    let big = request(ec2(json!({}), json!({"environment": env(70)})));
    let size = task_definition_size(&big);
    assert!(size > MAX_TASK_DEFINITION_BYTES);
    let e = validate(&big).unwrap_err();
    assert_eq!(e.code, ClientException);
    assert_eq!(
        e.message,
        format!("Actual length: '{size}'. Max allowed length is '65536' bytes.")
    );
    // At the limit exactly: accepted.
    let mut exact = request(ec2(json!({}), json!({"environment": env(60)})));
    let short = MAX_TASK_DEFINITION_BYTES - task_definition_size(&exact);
    exact.container_definitions[0].command =
        Some(vec!["y".repeat(short - r#","command":[""]"#.len())]);
    assert_eq!(task_definition_size(&exact), MAX_TASK_DEFINITION_BYTES);
    assert!(validate(&exact).is_ok());
}
