//! Contract between the task definition types and the botocore ECS model.
//!
//! For every structure reachable from `RegisterTaskDefinitionRequest`,
//! `RegisterTaskDefinitionResponse` and `TaskDefinition`, a maximal JSON
//! example (every member set, recursively) is generated from the model and
//! must survive deserialize-then-serialize unchanged, which proves that each
//! member is stored and returned under its wire name. A minimal example
//! (required members only) must round-trip too, and leaving out any required
//! member must fail, which proves requiredness matches the model. The enum
//! value lists the validation uses must equal the model's.
//!
//! The model is loaded through botocore (the installed copy is gzipped). When
//! python3 or botocore is missing the test is skipped with a note, unless
//! `CI=true`, where that is a failure.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use berth_model::common::{Attribute, KeyValuePair, Tag};
use berth_model::task_definition::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

const ROOTS: &[&str] = &[
    "RegisterTaskDefinitionRequest",
    "RegisterTaskDefinitionResponse",
    "TaskDefinition",
];

fn load_model() -> Option<Value> {
    let script = "import json, botocore.loaders\n\
                  m = botocore.loaders.Loader().load_service_model('ecs', 'service-2')\n\
                  print(json.dumps(m))";
    let failure = match Command::new("python3").args(["-c", script]).output() {
        Ok(out) if out.status.success() => match serde_json::from_slice(&out.stdout) {
            Ok(model) => return Some(model),
            Err(err) => format!("model output is not JSON: {err}"),
        },
        Ok(out) => format!("python3 failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(err) => format!("python3 not runnable: {err}"),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("cannot load the botocore ECS model: {failure}");
    }
    eprintln!("note: skipping the botocore contract test: {failure}");
    None
}

struct Model {
    shapes: Map<String, Value>,
}

impl Model {
    fn shape(&self, name: &str) -> &Value {
        self.shapes
            .get(name)
            .unwrap_or_else(|| panic!("no shape {name}"))
    }

    fn kind(&self, name: &str) -> &str {
        self.shape(name)["type"].as_str().unwrap()
    }

    fn members(&self, name: &str) -> Vec<(String, String)> {
        self.shape(name)["members"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(member, spec)| (member.clone(), spec["shape"].as_str().unwrap().to_string()))
            .collect()
    }

    fn required(&self, name: &str) -> BTreeSet<String> {
        self.shape(name)["required"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn enum_values(&self, name: &str) -> Vec<String> {
        self.shape(name)["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not an enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Structure shapes reachable from `roots`.
    fn reachable_structures(&self, roots: &[&str]) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
        while let Some(name) = stack.pop() {
            let shape = self.shape(&name);
            match self.kind(&name) {
                "structure" if seen.insert(name.clone()) => {
                    stack.extend(self.members(&name).into_iter().map(|(_, s)| s));
                }
                "list" => stack.push(shape["member"]["shape"].as_str().unwrap().to_string()),
                "map" => stack.push(shape["value"]["shape"].as_str().unwrap().to_string()),
                _ => {}
            }
        }
        seen
    }

    /// An example value of `name`: every member when `full`, otherwise only
    /// required members. `path` makes strings and numbers distinct.
    fn example(&self, name: &str, path: &str, full: bool) -> Value {
        let shape = self.shape(name);
        match self.kind(name) {
            "structure" => {
                let required = self.required(name);
                let mut object = Map::new();
                for (member, member_shape) in self.members(name) {
                    if full || required.contains(&member) {
                        let value = self.example(&member_shape, &format!("{path}.{member}"), full);
                        object.insert(member, value);
                    }
                }
                Value::Object(object)
            }
            "list" => {
                let member = shape["member"]["shape"].as_str().unwrap();
                json!([self.example(member, &format!("{path}[0]"), full)])
            }
            "map" => {
                let value = shape["value"]["shape"].as_str().unwrap();
                let mut object = Map::new();
                object.insert(
                    format!("{path}-key"),
                    self.example(value, &format!("{path}{{}}"), full),
                );
                Value::Object(object)
            }
            "string" => match shape.get("enum").and_then(Value::as_array) {
                Some(values) => values.last().cloned().unwrap(),
                None => Value::String(format!("s{path}")),
            },
            "integer" | "long" => {
                let hash = path
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
                json!(hash % 10_000 + 1)
            }
            "boolean" => json!(path.len().is_multiple_of(2)),
            "timestamp" => json!(1_700_000_000.25 + path.len() as f64),
            "double" | "float" => json!(1.5),
            other => panic!("unexpected shape type {other} for {name}"),
        }
    }
}

/// The first 600 characters of a JSON value, for failure messages.
fn clip(value: &Value) -> String {
    value.to_string().chars().take(600).collect()
}

type RoundTrip = fn(&Value) -> Result<Value, String>;

fn round_trip<T: Serialize + DeserializeOwned>(value: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

macro_rules! registry {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), round_trip::<$name> as RoundTrip)),*]
    };
}

fn types() -> BTreeMap<&'static str, RoundTrip> {
    registry![
        RegisterTaskDefinitionRequest,
        RegisterTaskDefinitionResponse,
        TaskDefinition,
        ContainerDefinition,
        RepositoryCredentials,
        PortMapping,
        ContainerRestartPolicy,
        KeyValuePair,
        EnvironmentFile,
        MountPoint,
        VolumeFrom,
        LinuxParameters,
        KernelCapabilities,
        Device,
        Tmpfs,
        Secret,
        ContainerDependency,
        HostEntry,
        Ulimit,
        LogConfiguration,
        HealthCheck,
        SystemControl,
        ResourceRequirement,
        FirelensConfiguration,
        Volume,
        HostVolumeProperties,
        DockerVolumeConfiguration,
        EFSVolumeConfiguration,
        EFSAuthorizationConfig,
        S3FilesVolumeConfiguration,
        FSxWindowsFileServerVolumeConfiguration,
        FSxWindowsFileServerAuthorizationConfig,
        TaskDefinitionPlacementConstraint,
        Tag,
        ProxyConfiguration,
        InferenceAccelerator,
        EphemeralStorage,
        RuntimePlatform,
        Attribute,
    ]
    .into_iter()
    .collect()
}

#[test]
fn every_reachable_shape_has_a_type() {
    let Some(model) = load_model() else { return };
    let model = Model {
        shapes: model["shapes"].as_object().unwrap().clone(),
    };
    let reachable = model.reachable_structures(ROOTS);
    let defined: BTreeSet<String> = types().keys().map(|k| k.to_string()).collect();
    let missing: Vec<_> = reachable.difference(&defined).collect();
    let extra: Vec<_> = defined.difference(&reachable).collect();
    assert!(
        missing.is_empty(),
        "model shapes without a Rust type: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "Rust types for shapes the model no longer reaches: {extra:?}"
    );
}

#[test]
fn maximal_examples_round_trip() {
    let Some(model) = load_model() else { return };
    let model = Model {
        shapes: model["shapes"].as_object().unwrap().clone(),
    };
    let mut failures = Vec::new();
    for (name, trip) in types() {
        let example = model.example(name, name, true);
        match trip(&example) {
            Ok(back) if back == example => {}
            Ok(back) => failures.push(format!(
                "{name}: round trip changed the JSON\n  sent: {}\n  back: {}",
                clip(&example),
                clip(&back)
            )),
            Err(err) => failures.push(format!("{name}: does not deserialize: {err}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn requiredness_matches_the_model() {
    let Some(model) = load_model() else { return };
    let model = Model {
        shapes: model["shapes"].as_object().unwrap().clone(),
    };
    let mut failures = Vec::new();
    for (name, trip) in types() {
        let minimal = model.example(name, name, false);
        match trip(&minimal) {
            Ok(back) if back == minimal => {}
            Ok(back) => failures.push(format!(
                "{name}: minimal example changed\n  sent: {minimal}\n  back: {back}"
            )),
            Err(err) => failures.push(format!("{name}: minimal example rejected: {err}")),
        }
        for member in model.required(name) {
            let mut without = minimal.clone();
            without.as_object_mut().unwrap().remove(&member);
            if trip(&without).is_ok() {
                failures.push(format!("{name}: accepted without required member {member}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn enum_lists_match_the_model() {
    let Some(model) = load_model() else { return };
    let model = Model {
        shapes: model["shapes"].as_object().unwrap().clone(),
    };
    let pairs: &[(&str, &[&str])] = &[
        ("NetworkMode", enums::NETWORK_MODE),
        ("Compatibility", enums::COMPATIBILITY),
        ("PidMode", enums::PID_MODE),
        ("IpcMode", enums::IPC_MODE),
        ("TransportProtocol", enums::TRANSPORT_PROTOCOL),
        ("ApplicationProtocol", enums::APPLICATION_PROTOCOL),
        ("VersionConsistency", enums::VERSION_CONSISTENCY),
        ("EnvironmentFileType", enums::ENVIRONMENT_FILE_TYPE),
        ("DeviceCgroupPermission", enums::DEVICE_CGROUP_PERMISSION),
        ("ContainerCondition", enums::CONTAINER_CONDITION),
        ("UlimitName", enums::ULIMIT_NAME),
        ("LogDriver", enums::LOG_DRIVER),
        ("ResourceType", enums::RESOURCE_TYPE),
        (
            "FirelensConfigurationType",
            enums::FIRELENS_CONFIGURATION_TYPE,
        ),
        ("Scope", enums::SCOPE),
        ("EFSTransitEncryption", enums::EFS_TRANSIT_ENCRYPTION),
        (
            "EFSAuthorizationConfigIAM",
            enums::EFS_AUTHORIZATION_CONFIG_IAM,
        ),
        (
            "TaskDefinitionPlacementConstraintType",
            enums::TASK_DEFINITION_PLACEMENT_CONSTRAINT_TYPE,
        ),
        ("ProxyConfigurationType", enums::PROXY_CONFIGURATION_TYPE),
        ("CPUArchitecture", enums::CPU_ARCHITECTURE),
        ("OSFamily", enums::OS_FAMILY),
        ("TaskDefinitionStatus", enums::TASK_DEFINITION_STATUS),
    ];
    let mut failures = Vec::new();
    for (shape, ours) in pairs {
        let theirs: BTreeSet<String> = model.enum_values(shape).into_iter().collect();
        let ours: BTreeSet<String> = ours.iter().map(|s| s.to_string()).collect();
        if theirs != ours {
            failures.push(format!("{shape}: model {theirs:?}, ours {ours:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
