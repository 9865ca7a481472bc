//! Task definitions: the `RegisterTaskDefinition` request, the stored
//! `TaskDefinition` and every shape nested in them, ECS's validation of a
//! registration, and the derivation of the stored definition from a request.
//!
//! # Types
//!
//! Each type is named after the ECS model shape it mirrors, member for
//! member. Members the model marks required are plain fields; every other
//! member is an `Option` that is omitted from the JSON when absent. Enum
//! members are kept as `String` so that an unknown value reaches
//! [`validate`] and gets ECS's error rather than a deserialization failure.
//! Timestamps are `f64` epoch seconds, as the JSON protocol sends them.
//! String maps are `BTreeMap`s so that output is deterministic.
//!
//! # Validation
//!
//! [`validate`] applies the checks ECS makes when a task definition is
//! registered and returns the normalized task size ([`ValidatedTaskDefinition`]).
//! Errors carry ECS's error code (`ClientException` for most content errors,
//! `InvalidParameterException` for malformed task sizes and tags) and, where
//! ECS's wording is known, its message.
//!
//! # Stored form
//!
//! [`build_task_definition`] turns a validated request into the
//! `TaskDefinition` that Describe returns: defaults filled in as ECS fills
//! them, `compatibilities` and `requiresAttributes` derived, status `ACTIVE`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::common::{Attribute, KeyValuePair, Tag};
use crate::error::ApiError;
use crate::units::{parse_task_cpu, parse_task_memory};

/// A map of strings, as the model's map shapes are.
pub type StringMap = BTreeMap<String, String>;

// ---------------------------------------------------------------------------
// Request and response shapes.
// ---------------------------------------------------------------------------

/// `RegisterTaskDefinitionRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTaskDefinitionRequest {
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    pub container_definitions: Vec<ContainerDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_constraints: Option<Vec<TaskDefinitionPlacementConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_configuration: Option<ProxyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_fault_injection: Option<bool>,
}

/// `RegisterTaskDefinitionResponse`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTaskDefinitionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<TaskDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
}

/// `TaskDefinition`: a registered revision as Describe returns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_definitions: Option<Vec<ContainerDefinition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_attributes: Option<Vec<Attribute>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_constraints: Option<Vec<TaskDefinitionPlacementConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_configuration: Option<ProxyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_fault_injection: Option<bool>,
}

// ---------------------------------------------------------------------------
// Container definition and its parts.
// ---------------------------------------------------------------------------

/// `ContainerDefinition`. The model marks no member required; ECS requires
/// `name` and `image` in [`validate`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_credentials: Option<RepositoryCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<ContainerRestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<KeyValuePair>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_files: Option<Vec<EnvironmentFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_points: Option<Vec<MountPoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes_from: Option<Vec<VolumeFrom>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_parameters: Option<LinuxParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<Secret>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<ContainerDependency>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_networking: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_search_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_hosts: Option<Vec<HostEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_security_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo_terminal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_labels: Option<StringMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Vec<Ulimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_controls: Option<Vec<SystemControl>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<Vec<ResourceRequirement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firelens_configuration: Option<FirelensConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_specs: Option<Vec<String>>,
}

/// `RepositoryCredentials`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCredentials {
    pub credentials_parameter: String,
}

/// `PortMapping`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port_range: Option<String>,
}

/// `ContainerRestartPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRestartPolicy {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_exit_codes: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_attempt_period: Option<i32>,
}

/// `EnvironmentFile`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentFile {
    pub value: String,
    #[serde(rename = "type")]
    pub r#type: String,
}

/// `MountPoint`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// `VolumeFrom`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// `LinuxParameters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<KernelCapabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_process_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_memory_size: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<Tmpfs>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_swap: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<i32>,
}

/// `KernelCapabilities`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelCapabilities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<Vec<String>>,
}

/// `Device`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub host_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// `Tmpfs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tmpfs {
    pub container_path: String,
    pub size: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_options: Option<Vec<String>>,
}

/// `Secret`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

/// `ContainerDependency`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    pub container_name: String,
    pub condition: String,
}

/// `HostEntry`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEntry {
    pub hostname: String,
    pub ip_address: String,
}

/// `Ulimit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    pub name: String,
    pub soft_limit: i32,
    pub hard_limit: i32,
}

/// `LogConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    pub log_driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<StringMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_options: Option<Vec<Secret>>,
}

/// `HealthCheck`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i32>,
}

/// `SystemControl`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemControl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `ResourceRequirement`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirement {
    pub value: String,
    #[serde(rename = "type")]
    pub r#type: String,
}

/// `FirelensConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirelensConfiguration {
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<StringMap>,
}

// ---------------------------------------------------------------------------
// Volumes.
// ---------------------------------------------------------------------------

/// `Volume`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostVolumeProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_volume_configuration: Option<DockerVolumeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efs_volume_configuration: Option<EFSVolumeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3files_volume_configuration: Option<S3FilesVolumeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsx_windows_file_server_volume_configuration:
        Option<FSxWindowsFileServerVolumeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_at_launch: Option<bool>,
}

/// `HostVolumeProperties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostVolumeProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
}

/// `DockerVolumeConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerVolumeConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoprovision: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<StringMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<StringMap>,
}

/// `EFSVolumeConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EFSVolumeConfiguration {
    pub file_system_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_config: Option<EFSAuthorizationConfig>,
}

/// `EFSAuthorizationConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EFSAuthorizationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_point_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<String>,
}

/// `S3FilesVolumeConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3FilesVolumeConfiguration {
    pub file_system_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_point_arn: Option<String>,
}

/// `FSxWindowsFileServerVolumeConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FSxWindowsFileServerVolumeConfiguration {
    pub file_system_id: String,
    pub root_directory: String,
    pub authorization_config: FSxWindowsFileServerAuthorizationConfig,
}

/// `FSxWindowsFileServerAuthorizationConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FSxWindowsFileServerAuthorizationConfig {
    pub credentials_parameter: String,
    pub domain: String,
}

// ---------------------------------------------------------------------------
// Task-level parts.
// ---------------------------------------------------------------------------

/// `TaskDefinitionPlacementConstraint`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionPlacementConstraint {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// `ProxyConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfiguration {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    pub container_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<KeyValuePair>>,
}

/// `InferenceAccelerator`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceAccelerator {
    pub device_name: String,
    pub device_type: String,
}

/// `EphemeralStorage`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralStorage {
    #[serde(rename = "sizeInGiB")]
    pub size_in_gib: i32,
}

/// `RuntimePlatform`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePlatform {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system_family: Option<String>,
}

// ---------------------------------------------------------------------------
// Enum value sets, as the model lists them.
// ---------------------------------------------------------------------------

/// Values of the model's enum shapes that task definitions use.
pub mod enums {
    pub const NETWORK_MODE: &[&str] = &["bridge", "host", "awsvpc", "none"];
    pub const COMPATIBILITY: &[&str] = &["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"];
    pub const PID_MODE: &[&str] = &["host", "task"];
    pub const IPC_MODE: &[&str] = &["host", "task", "none"];
    pub const TRANSPORT_PROTOCOL: &[&str] = &["tcp", "udp"];
    pub const APPLICATION_PROTOCOL: &[&str] = &["http", "http2", "grpc"];
    pub const VERSION_CONSISTENCY: &[&str] = &["enabled", "disabled"];
    pub const ENVIRONMENT_FILE_TYPE: &[&str] = &["s3"];
    pub const DEVICE_CGROUP_PERMISSION: &[&str] = &["read", "write", "mknod"];
    pub const CONTAINER_CONDITION: &[&str] = &["START", "COMPLETE", "SUCCESS", "HEALTHY"];
    pub const ULIMIT_NAME: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    pub const LOG_DRIVER: &[&str] = &[
        "json-file",
        "syslog",
        "journald",
        "gelf",
        "fluentd",
        "awslogs",
        "splunk",
        "awsfirelens",
    ];
    pub const RESOURCE_TYPE: &[&str] = &["GPU", "InferenceAccelerator"];
    pub const FIRELENS_CONFIGURATION_TYPE: &[&str] = &["fluentd", "fluentbit"];
    pub const SCOPE: &[&str] = &["task", "shared"];
    pub const EFS_TRANSIT_ENCRYPTION: &[&str] = &["ENABLED", "DISABLED"];
    pub const EFS_AUTHORIZATION_CONFIG_IAM: &[&str] = &["ENABLED", "DISABLED"];
    pub const TASK_DEFINITION_PLACEMENT_CONSTRAINT_TYPE: &[&str] = &["memberOf"];
    pub const PROXY_CONFIGURATION_TYPE: &[&str] = &["APPMESH"];
    pub const CPU_ARCHITECTURE: &[&str] = &["X86_64", "ARM64"];
    pub const OS_FAMILY: &[&str] = &[
        "WINDOWS_SERVER_2019_FULL",
        "WINDOWS_SERVER_2019_CORE",
        "WINDOWS_SERVER_2016_FULL",
        "WINDOWS_SERVER_2004_CORE",
        "WINDOWS_SERVER_2022_CORE",
        "WINDOWS_SERVER_2022_FULL",
        "WINDOWS_SERVER_2025_CORE",
        "WINDOWS_SERVER_2025_FULL",
        "WINDOWS_SERVER_20H2_CORE",
        "LINUX",
    ];
    pub const TASK_DEFINITION_STATUS: &[&str] = &["ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"];
    /// Linux capabilities ECS accepts in `linuxParameters.capabilities`.
    pub const KERNEL_CAPABILITY: &[&str] = &[
        "ALL",
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "SYSLOG",
        "WAKE_ALARM",
    ];
}

// ---------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------

/// The most containers a task definition may have.
pub const MAX_CONTAINERS: usize = 10;
/// The least memory, in MiB, a container may be given.
pub const MIN_CONTAINER_MEMORY_MIB: i32 = 6;
/// The most tags a resource may carry.
pub const MAX_TAGS: usize = 50;
/// The largest task definition ECS registers, in bytes of its JSON (64 KiB).
pub const MAX_TASK_DEFINITION_BYTES: usize = 65_536;
/// The most placement constraints a task definition may have.
pub const MAX_PLACEMENT_CONSTRAINTS: usize = 10;
/// Task-level CPU range, in CPU units, for tasks on EC2 instances.
pub const EC2_TASK_CPU_RANGE: std::ops::RangeInclusive<u32> = 128..=196_608;
/// Ephemeral storage range, in GiB.
pub const EPHEMERAL_STORAGE_RANGE: std::ops::RangeInclusive<i32> = 21..=200;

/// What [`validate`] learned about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedTaskDefinition {
    /// Task-level CPU in CPU units, when the request gives one.
    pub cpu: Option<u32>,
    /// Task-level memory in MiB, when the request gives one.
    pub memory: Option<u32>,
    /// The network mode the task runs with: the request's, or `bridge`.
    pub effective_network_mode: String,
    /// The launch types the definition can run on (`compatibilities`).
    pub compatibilities: Vec<String>,
}

/// The Fargate task sizes ECS supports: CPU units and the memory sizes (MiB)
/// allowed with them.
pub fn fargate_size_supported(cpu: u32, memory: u32) -> bool {
    let (min, max, step) = match cpu {
        256 => return matches!(memory, 512 | 1024 | 2048),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122_880, 8192),
        _ => return false,
    };
    (min..=max).contains(&memory) && memory.is_multiple_of(step)
}

fn client(message: impl Into<String>) -> ApiError {
    ApiError::client(message)
}

fn regex(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

fn matches(cell: &'static OnceLock<Option<Regex>>, pattern: &str, text: &str) -> bool {
    regex(cell, pattern).is_some_and(|re| re.is_match(text))
}

/// Letters, digits, hyphens and underscores, 1 to 255 of them: the rule for
/// families, container names and volume names.
fn is_simple_name(text: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    matches(&RE, r"^[A-Za-z0-9_-]{1,255}$", text)
}

fn is_valid_image(text: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    matches(&RE, r"^[A-Za-z0-9_./:#@-]{1,255}$", text)
}

fn is_ecr_image(image: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    matches(
        &RE,
        r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/",
        image,
    )
}

fn check_enum(value: &str, allowed: &[&str], member: &str) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(client(format!(
            "Invalid value '{value}' for '{member}'. Valid values are: {}.",
            allowed.join(", ")
        )))
    }
}

fn check_opt_enum(value: Option<&String>, allowed: &[&str], member: &str) -> Result<(), ApiError> {
    match value {
        Some(value) => check_enum(value, allowed, member),
        None => Ok(()),
    }
}

fn requires(req: &RegisterTaskDefinitionRequest, compatibility: &str) -> bool {
    req.requires_compatibilities
        .as_ref()
        .is_some_and(|list| list.iter().any(|c| c == compatibility))
}

fn container_name(container: &ContainerDefinition) -> &str {
    container.name.as_deref().unwrap_or_default()
}

fn is_essential(container: &ContainerDefinition) -> bool {
    container.essential.unwrap_or(true)
}

/// Counts the bytes written through it and keeps none.
#[derive(Default)]
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size of `value` as compact JSON, counted without building it.
fn json_size<T: Serialize>(value: &T) -> usize {
    let mut count = ByteCount::default();
    // Writing to a counter cannot fail, and the model's types always
    // serialize; a failure would only make the count short.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The size of the task definition a request registers: the request as
/// compact JSON without its `tags` (which are the resource's, not the task
/// definition's), whatever whitespace or unknown members the client sent.
/// Unknown members are dropped on the way in, so this is also a bound on
/// what is stored.
pub fn task_definition_size(req: &RegisterTaskDefinitionRequest) -> usize {
    let total = json_size(req);
    match &req.tags {
        // `"tags":` and its value, and the comma before it (`family` always
        // comes first).
        Some(tags) => total.saturating_sub(r#","tags":"#.len() + json_size(tags)),
        None => total,
    }
}

/// ECS's 64 KiB limit on a task definition, with ECS's ClientException.
fn check_size(req: &RegisterTaskDefinitionRequest) -> Result<(), ApiError> {
    let size = task_definition_size(req);
    if size > MAX_TASK_DEFINITION_BYTES {
        return Err(client(format!(
            "Actual length: '{size}'. Max allowed length is '{MAX_TASK_DEFINITION_BYTES}' bytes."
        )));
    }
    Ok(())
}

/// Validates a `RegisterTaskDefinition` request the way ECS does.
///
/// Returns the parsed task size, the effective network mode and the derived
/// compatibilities, or the first error ECS would report.
pub fn validate(req: &RegisterTaskDefinitionRequest) -> Result<ValidatedTaskDefinition, ApiError> {
    check_size(req)?;
    validate_family(&req.family)?;
    if req.container_definitions.is_empty() {
        return Err(client("Container list cannot be empty."));
    }
    if req.container_definitions.len() > MAX_CONTAINERS {
        return Err(client("Too many containers."));
    }
    check_opt_enum(
        req.network_mode.as_ref(),
        enums::NETWORK_MODE,
        "networkMode",
    )?;
    check_opt_enum(req.pid_mode.as_ref(), enums::PID_MODE, "pidMode")?;
    check_opt_enum(req.ipc_mode.as_ref(), enums::IPC_MODE, "ipcMode")?;
    for compatibility in req.requires_compatibilities.iter().flatten() {
        check_enum(
            compatibility,
            enums::COMPATIBILITY,
            "requiresCompatibilities",
        )?;
    }
    if let Some(platform) = &req.runtime_platform {
        check_opt_enum(
            platform.cpu_architecture.as_ref(),
            enums::CPU_ARCHITECTURE,
            "runtimePlatform.cpuArchitecture",
        )?;
        check_opt_enum(
            platform.operating_system_family.as_ref(),
            enums::OS_FAMILY,
            "runtimePlatform.operatingSystemFamily",
        )?;
    }
    let cpu = req.cpu.as_deref().map(parse_task_cpu).transpose()?;
    let memory = req.memory.as_deref().map(parse_task_memory).transpose()?;
    if let Some(units) = cpu {
        if !requires(req, "FARGATE") && !EC2_TASK_CPU_RANGE.contains(&units) {
            return Err(ApiError::client(crate::units::INVALID_TASK_CPU));
        }
    }
    if let Some(tags) = &req.tags {
        validate_tags(tags)?;
    }
    let network_mode = req
        .network_mode
        .clone()
        .unwrap_or_else(|| "bridge".to_string());

    validate_volumes(req)?;
    validate_placement_constraints(req)?;
    validate_inference_accelerators(req)?;
    validate_containers(req, &network_mode, cpu, memory)?;
    validate_proxy_configuration(req, &network_mode)?;
    if let Some(storage) = &req.ephemeral_storage {
        if !EPHEMERAL_STORAGE_RANGE.contains(&storage.size_in_gib) {
            return Err(client(format!(
                "The ephemeral storage size must be between {} and {} GiB.",
                EPHEMERAL_STORAGE_RANGE.start(),
                EPHEMERAL_STORAGE_RANGE.end()
            )));
        }
    }

    let fargate = check_fargate(req, &network_mode, cpu, memory);
    if requires(req, "FARGATE") {
        fargate.clone()?;
    }
    let external = check_external(req, &network_mode);
    if requires(req, "EXTERNAL") {
        external.clone()?;
    }
    let mut compatibilities = vec!["EC2".to_string()];
    if fargate.is_ok() {
        compatibilities.push("FARGATE".to_string());
    }
    if external.is_ok() {
        compatibilities.push("EXTERNAL".to_string());
    }
    if requires(req, "MANAGED_INSTANCES") {
        compatibilities.push("MANAGED_INSTANCES".to_string());
    }
    Ok(ValidatedTaskDefinition {
        cpu,
        memory,
        effective_network_mode: network_mode,
        compatibilities,
    })
}

fn validate_family(family: &str) -> Result<(), ApiError> {
    if family.is_empty() {
        return Err(client("Family should not be null or empty."));
    }
    if !is_simple_name(family) {
        return Err(client("Family contains invalid characters."));
    }
    Ok(())
}

/// Checks a resource's tags as ECS does (`InvalidParameterException`).
pub fn validate_tags(tags: &[Tag]) -> Result<(), ApiError> {
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    const TAG_PATTERN: &str = r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$";
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid_parameter(format!(
            "The number of tags exceeds the limit of {MAX_TAGS}."
        )));
    }
    let mut seen = HashSet::new();
    for tag in tags {
        let key = tag.key.as_deref().unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ApiError::invalid_parameter(
                "Tag keys must be between 1 and 128 characters in length.",
            ));
        }
        if !matches(&PATTERN, TAG_PATTERN, key) {
            return Err(ApiError::invalid_parameter(format!(
                "Tag key '{key}' contains invalid characters."
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_parameter(
                "Tag keys beginning with 'aws:' are reserved and cannot be used.",
            ));
        }
        let value = tag.value.as_deref().unwrap_or_default();
        if value.chars().count() > 256 {
            return Err(ApiError::invalid_parameter(
                "Tag values must be no longer than 256 characters.",
            ));
        }
        if !matches(&PATTERN, TAG_PATTERN, value) {
            return Err(ApiError::invalid_parameter(format!(
                "Tag value for key '{key}' contains invalid characters."
            )));
        }
        if !seen.insert(key) {
            return Err(ApiError::invalid_parameter(format!(
                "Duplicate tag key '{key}'."
            )));
        }
    }
    Ok(())
}

fn validate_volumes(req: &RegisterTaskDefinitionRequest) -> Result<(), ApiError> {
    let mut names = HashSet::new();
    for volume in req.volumes.iter().flatten() {
        let name = volume.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(client("Volume name should not be null or empty."));
        }
        if !is_simple_name(name) {
            return Err(client("Volume name contains invalid characters."));
        }
        if !names.insert(name) {
            return Err(client(format!("Duplicate volume name '{name}'.")));
        }
        let kinds = [
            volume.host.is_some(),
            volume.docker_volume_configuration.is_some(),
            volume.efs_volume_configuration.is_some(),
            volume.s3files_volume_configuration.is_some(),
            volume
                .fsx_windows_file_server_volume_configuration
                .is_some(),
        ];
        if kinds.iter().filter(|set| **set).count() > 1 {
            return Err(client(format!(
                "Invalid volume '{name}'. Only one volume type can be specified for a volume."
            )));
        }
        if let Some(docker) = &volume.docker_volume_configuration {
            check_opt_enum(
                docker.scope.as_ref(),
                enums::SCOPE,
                "dockerVolumeConfiguration.scope",
            )?;
            if docker.autoprovision == Some(true) && docker.scope.as_deref() != Some("shared") {
                return Err(client(format!(
                    "Invalid volume '{name}'. 'autoprovision' is only supported when 'scope' is 'shared'."
                )));
            }
        }
        if let Some(efs) = &volume.efs_volume_configuration {
            if efs.file_system_id.is_empty() {
                return Err(client(format!(
                    "Invalid volume '{name}'. 'fileSystemId' should not be null or empty."
                )));
            }
            check_opt_enum(
                efs.transit_encryption.as_ref(),
                enums::EFS_TRANSIT_ENCRYPTION,
                "efsVolumeConfiguration.transitEncryption",
            )?;
            if let Some(port) = efs.transit_encryption_port {
                if !(0..=65535).contains(&port) {
                    return Err(client(format!(
                        "Invalid volume '{name}'. 'transitEncryptionPort' must be between 0 and 65535."
                    )));
                }
            }
            let transit = efs.transit_encryption.as_deref() == Some("ENABLED");
            if let Some(auth) = &efs.authorization_config {
                check_opt_enum(
                    auth.iam.as_ref(),
                    enums::EFS_AUTHORIZATION_CONFIG_IAM,
                    "efsVolumeConfiguration.authorizationConfig.iam",
                )?;
                let uses_auth =
                    auth.iam.as_deref() == Some("ENABLED") || auth.access_point_id.is_some();
                if uses_auth && !transit {
                    return Err(client(format!(
                        "Invalid volume '{name}'. Transit encryption must be enabled when IAM authorization or an access point is used."
                    )));
                }
                if auth.access_point_id.is_some()
                    && efs
                        .root_directory
                        .as_deref()
                        .is_some_and(|dir| !dir.is_empty() && dir != "/")
                {
                    return Err(client(format!(
                        "Invalid volume '{name}'. The root directory must be omitted or set to '/' when an access point is used."
                    )));
                }
            }
        }
    }
    Ok(())
}

fn validate_placement_constraints(req: &RegisterTaskDefinitionRequest) -> Result<(), ApiError> {
    let constraints = req.placement_constraints.as_deref().unwrap_or_default();
    if constraints.len() > MAX_PLACEMENT_CONSTRAINTS {
        return Err(client(format!(
            "Too many placement constraints. The limit is {MAX_PLACEMENT_CONSTRAINTS}."
        )));
    }
    for constraint in constraints {
        match constraint.r#type.as_deref() {
            None => {
                return Err(client(
                    "Placement constraint type should not be null or empty.",
                ))
            }
            Some(kind) => check_enum(
                kind,
                enums::TASK_DEFINITION_PLACEMENT_CONSTRAINT_TYPE,
                "placementConstraints.type",
            )?,
        }
        if constraint
            .expression
            .as_deref()
            .is_none_or(|e| e.trim().is_empty())
        {
            return Err(client(
                "Placement constraint expression should not be null or empty.",
            ));
        }
    }
    Ok(())
}

fn validate_inference_accelerators(req: &RegisterTaskDefinitionRequest) -> Result<(), ApiError> {
    let mut names = HashSet::new();
    for accelerator in req.inference_accelerators.iter().flatten() {
        if accelerator.device_name.is_empty() || accelerator.device_type.is_empty() {
            return Err(client(
                "Inference accelerator 'deviceName' and 'deviceType' should not be null or empty.",
            ));
        }
        if !names.insert(accelerator.device_name.as_str()) {
            return Err(client(format!(
                "Duplicate inference accelerator device name '{}'.",
                accelerator.device_name
            )));
        }
    }
    Ok(())
}

fn validate_proxy_configuration(
    req: &RegisterTaskDefinitionRequest,
    network_mode: &str,
) -> Result<(), ApiError> {
    let Some(proxy) = &req.proxy_configuration else {
        return Ok(());
    };
    check_opt_enum(
        proxy.r#type.as_ref(),
        enums::PROXY_CONFIGURATION_TYPE,
        "proxyConfiguration.type",
    )?;
    if network_mode != "awsvpc" {
        return Err(client(
            "Proxy configuration is only supported when networkMode=awsvpc.",
        ));
    }
    if !req
        .container_definitions
        .iter()
        .any(|c| container_name(c) == proxy.container_name)
    {
        return Err(client(format!(
            "Proxy configuration container '{}' does not exist in the task definition.",
            proxy.container_name
        )));
    }
    Ok(())
}

/// The checks a definition must pass to be compatible with Fargate, in the
/// order ECS reports them.
fn check_fargate(
    req: &RegisterTaskDefinitionRequest,
    network_mode: &str,
    cpu: Option<u32>,
    memory: Option<u32>,
) -> Result<(), ApiError> {
    if network_mode != "awsvpc" {
        return Err(client(
            "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
        ));
    }
    let Some(cpu) = cpu else {
        return Err(client(
            "Fargate requires that 'cpu' be defined at the task level.",
        ));
    };
    let Some(memory) = memory else {
        return Err(client(
            "Fargate requires that 'memory' be defined at the task level.",
        ));
    };
    if !fargate_size_supported(cpu, memory) {
        return Err(client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
        )));
    }
    if req
        .placement_constraints
        .as_ref()
        .is_some_and(|list| !list.is_empty())
    {
        return Err(client(
            "Fargate does not support task placement constraints.",
        ));
    }
    for volume in req.volumes.iter().flatten() {
        if volume
            .host
            .as_ref()
            .is_some_and(|host| host.source_path.is_some())
        {
            return Err(client(
                "host.sourcePath should not be set for volumes in Fargate.",
            ));
        }
        if volume.docker_volume_configuration.is_some() {
            return Err(client(
                "Fargate does not support volumes with 'dockerVolumeConfiguration'.",
            ));
        }
    }
    if req
        .inference_accelerators
        .as_ref()
        .is_some_and(|list| !list.is_empty())
    {
        return Err(client("Fargate does not support inference accelerators."));
    }
    if req.ipc_mode.is_some() {
        return Err(client("Fargate does not support 'ipcMode'."));
    }
    if req.pid_mode.as_deref() == Some("host") {
        return Err(client("Fargate only supports pidMode 'task'."));
    }
    for container in &req.container_definitions {
        let name = container_name(container);
        if container.privileged == Some(true) {
            return Err(client(format!(
                "Invalid setting for container '{name}'. Fargate does not support privileged containers."
            )));
        }
        if container.stop_timeout.is_some_and(|t| t > 120) {
            return Err(client(format!(
                "Invalid setting for container '{name}'. 'stopTimeout' must be at most 120 seconds on Fargate."
            )));
        }
        if container
            .resource_requirements
            .iter()
            .flatten()
            .any(|r| r.r#type == "GPU")
        {
            return Err(client(format!(
                "Invalid setting for container '{name}'. Fargate does not support GPU resource requirements."
            )));
        }
    }
    Ok(())
}

/// The checks a definition must pass to run on external (ECS Anywhere)
/// instances.
fn check_external(req: &RegisterTaskDefinitionRequest, network_mode: &str) -> Result<(), ApiError> {
    if network_mode == "awsvpc" {
        return Err(client(
            "EXTERNAL does not support network mode \u{2018}awsvpc\u{2019}.",
        ));
    }
    for volume in req.volumes.iter().flatten() {
        if volume.efs_volume_configuration.is_some()
            || volume
                .fsx_windows_file_server_volume_configuration
                .is_some()
            || volume.s3files_volume_configuration.is_some()
        {
            return Err(client(
                "EXTERNAL does not support EFS, FSx or S3 Files volumes.",
            ));
        }
    }
    if req
        .inference_accelerators
        .as_ref()
        .is_some_and(|list| !list.is_empty())
    {
        return Err(client("EXTERNAL does not support inference accelerators."));
    }
    Ok(())
}

fn validate_containers(
    req: &RegisterTaskDefinitionRequest,
    network_mode: &str,
    task_cpu: Option<u32>,
    task_memory: Option<u32>,
) -> Result<(), ApiError> {
    let containers = &req.container_definitions;
    let mut names: HashMap<&str, &ContainerDefinition> = HashMap::new();
    for container in containers {
        let name = container.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(client("Container.name should not be null or empty."));
        }
        if !is_simple_name(name) {
            return Err(client("Container.name contains invalid characters."));
        }
        if names.insert(name, container).is_some() {
            return Err(client(format!(
                "Duplicate container name '{name}'. Container names must be unique within a task definition."
            )));
        }
    }
    let volume_names: HashSet<&str> = req
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.name.as_deref())
        .collect();
    let accelerator_names: HashSet<&str> = req
        .inference_accelerators
        .iter()
        .flatten()
        .map(|a| a.device_name.as_str())
        .collect();

    let mut cpu_sum: i64 = 0;
    let mut reserved_sum: i64 = 0;
    let mut host_ports: HashSet<(i32, String)> = HashSet::new();
    let mut port_names: HashSet<&str> = HashSet::new();
    let mut firelens_containers = 0;
    for container in containers {
        let name = container_name(container);
        validate_image(container)?;
        validate_container_memory(container, name, task_memory)?;
        if let Some(cpu) = container.cpu {
            if cpu < 0 {
                return Err(client(format!(
                    "Invalid 'cpu' setting for container '{name}'."
                )));
            }
            cpu_sum += i64::from(cpu);
        }
        reserved_sum += i64::from(
            container
                .memory_reservation
                .or(container.memory)
                .unwrap_or(0),
        );
        validate_links(container, name, network_mode, &names)?;
        validate_port_mappings(
            container,
            name,
            network_mode,
            &mut host_ports,
            &mut port_names,
        )?;
        validate_health_check(container, name)?;
        validate_mounts(container, name, &volume_names, &names)?;
        validate_ulimits(container, name)?;
        validate_linux_parameters(container, name)?;
        validate_misc(container, name, &accelerator_names)?;
        if container.firelens_configuration.is_some() {
            firelens_containers += 1;
        }
    }
    if let Some(task_cpu) = task_cpu {
        if cpu_sum > i64::from(task_cpu) {
            return Err(client(
                "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
            ));
        }
    }
    if let Some(task_memory) = task_memory {
        if reserved_sum > i64::from(task_memory) {
            return Err(client(
                "The sum of all container memory reservations cannot be greater than the value of the task 'memory'.",
            ));
        }
    }
    if !containers.iter().any(is_essential) {
        return Err(client(
            "A task definition must have at least one essential container.",
        ));
    }
    if firelens_containers > 1 {
        return Err(client(
            "Only one container in a task definition can have a 'firelensConfiguration'.",
        ));
    }
    let uses_firelens_driver = containers.iter().any(|c| {
        c.log_configuration
            .as_ref()
            .is_some_and(|log| log.log_driver == "awsfirelens")
    });
    if uses_firelens_driver && firelens_containers == 0 {
        return Err(client(
            "The 'awsfirelens' log driver requires a container with a 'firelensConfiguration' in the task definition.",
        ));
    }
    validate_dependencies(containers, &names)
}

fn validate_image(container: &ContainerDefinition) -> Result<(), ApiError> {
    let image = container.image.as_deref().unwrap_or_default();
    if image.trim().is_empty() {
        return Err(client("Container.image should not be null or empty."));
    }
    if !is_valid_image(image) {
        return Err(client("Container.image contains invalid characters."));
    }
    if let Some(credentials) = &container.repository_credentials {
        if credentials.credentials_parameter.is_empty() {
            return Err(client(
                "RepositoryCredentials.credentialsParameter should not be null or empty.",
            ));
        }
    }
    Ok(())
}

fn validate_container_memory(
    container: &ContainerDefinition,
    name: &str,
    task_memory: Option<u32>,
) -> Result<(), ApiError> {
    let memory = container.memory;
    let reservation = container.memory_reservation;
    if memory.is_none() && reservation.is_none() && task_memory.is_none() {
        return Err(client(format!(
            "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
        )));
    }
    for (member, value) in [("memory", memory), ("memoryReservation", reservation)] {
        if value.is_some_and(|v| v < MIN_CONTAINER_MEMORY_MIB) {
            return Err(client(format!(
                "Invalid '{member}' setting for container '{name}'. The minimum is {MIN_CONTAINER_MEMORY_MIB} MiB."
            )));
        }
    }
    if let (Some(memory), Some(reservation)) = (memory, reservation) {
        if reservation > memory {
            return Err(client(format!(
                "Invalid setting for container '{name}'. 'memoryReservation' must be less than or equal to 'memory'."
            )));
        }
    }
    if let Some(task_memory) = task_memory.map(i64::from) {
        if memory.is_some_and(|m| i64::from(m) > task_memory) {
            return Err(client(format!(
                "The 'memory' setting for container '{name}' is greater than for the task."
            )));
        }
        if reservation.is_some_and(|m| i64::from(m) > task_memory) {
            return Err(client(format!(
                "The 'memoryReservation' setting for container '{name}' is greater than for the task."
            )));
        }
    }
    Ok(())
}

fn validate_links(
    container: &ContainerDefinition,
    name: &str,
    network_mode: &str,
    names: &HashMap<&str, &ContainerDefinition>,
) -> Result<(), ApiError> {
    let Some(links) = &container.links else {
        return Ok(());
    };
    if links.is_empty() {
        return Ok(());
    }
    if network_mode != "bridge" {
        return Err(client(format!(
            "Links are not supported when networkMode={network_mode}."
        )));
    }
    for link in links {
        let (target, alias) = match link.split_once(':') {
            Some((target, alias)) => (target, Some(alias)),
            None => (link.as_str(), None),
        };
        if alias.is_some_and(|a| !is_simple_name(a)) {
            return Err(client(format!(
                "Invalid link '{link}' for container '{name}'. The alias contains invalid characters."
            )));
        }
        if target == name || !names.contains_key(target) {
            return Err(client(format!(
                "Invalid link '{link}' for container '{name}'. Linked container '{target}' does not exist in the task definition."
            )));
        }
    }
    Ok(())
}

fn parse_port_range(text: &str) -> Option<(i32, i32)> {
    let (start, end) = text.split_once('-')?;
    let start: i32 = start.trim().parse().ok()?;
    let end: i32 = end.trim().parse().ok()?;
    ((1..=65535).contains(&start) && (1..=65535).contains(&end) && start < end)
        .then_some((start, end))
}

fn validate_port_mappings<'a>(
    container: &'a ContainerDefinition,
    name: &str,
    network_mode: &str,
    host_ports: &mut HashSet<(i32, String)>,
    port_names: &mut HashSet<&'a str>,
) -> Result<(), ApiError> {
    static PORT_NAME: OnceLock<Option<Regex>> = OnceLock::new();
    for mapping in container.port_mappings.iter().flatten() {
        let protocol = mapping
            .protocol
            .clone()
            .unwrap_or_else(|| "tcp".to_string());
        check_enum(
            &protocol,
            enums::TRANSPORT_PROTOCOL,
            "portMappings.protocol",
        )?;
        check_opt_enum(
            mapping.app_protocol.as_ref(),
            enums::APPLICATION_PROTOCOL,
            "portMappings.appProtocol",
        )?;
        if let Some(port_name) = mapping.name.as_deref() {
            if !matches(
                &PORT_NAME,
                r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$",
                port_name,
            ) {
                return Err(client(format!(
                    "Invalid port mapping name '{port_name}' for container '{name}'. Names must be 1 to 64 lowercase letters, digits and hyphens, and cannot start or end with a hyphen."
                )));
            }
            if !port_names.insert(port_name) {
                return Err(client(format!(
                    "Duplicate port mapping name '{port_name}'. Port mapping names must be unique within a task definition."
                )));
            }
        }
        if mapping.app_protocol.is_some() && mapping.name.is_none() {
            return Err(client(format!(
                "Invalid port mapping for container '{name}'. 'appProtocol' requires a port mapping 'name'."
            )));
        }
        if let Some(range) = mapping.container_port_range.as_deref() {
            if mapping.container_port.is_some() {
                return Err(client(format!(
                    "Invalid port mapping for container '{name}'. Specify either 'containerPort' or 'containerPortRange', not both."
                )));
            }
            if mapping.host_port.is_some() {
                return Err(client(format!(
                    "Invalid port mapping for container '{name}'. 'hostPort' cannot be set with 'containerPortRange'."
                )));
            }
            if parse_port_range(range).is_none() {
                return Err(client(format!(
                    "Invalid 'containerPortRange' setting for container '{name}'."
                )));
            }
            continue;
        }
        let Some(container_port) = mapping.container_port else {
            return Err(client(format!(
                "Invalid port mapping for container '{name}'. 'containerPort' should not be null."
            )));
        };
        if !(1..=65535).contains(&container_port) {
            return Err(client(format!(
                "Invalid 'containerPort' setting for container '{name}'."
            )));
        }
        if let Some(host_port) = mapping.host_port {
            if !(0..=65535).contains(&host_port) {
                return Err(client(format!(
                    "Invalid 'hostPort' setting for container '{name}'."
                )));
            }
            if (network_mode == "awsvpc" || network_mode == "host")
                && host_port != 0
                && host_port != container_port
            {
                return Err(client(format!(
                    "When networkMode={network_mode}, the host ports and container ports in port mappings must match."
                )));
            }
        }
        let host_port = match network_mode {
            "awsvpc" | "host" => Some(container_port),
            _ => mapping.host_port.filter(|p| *p != 0),
        };
        if let Some(port) = host_port {
            if !host_ports.insert((port, protocol.clone())) {
                return Err(client(format!(
                    "Host port {port}/{protocol} is used by more than one port mapping in the task definition."
                )));
            }
        }
    }
    Ok(())
}

fn validate_health_check(container: &ContainerDefinition, name: &str) -> Result<(), ApiError> {
    let Some(check) = &container.health_check else {
        return Ok(());
    };
    if check.command.is_empty() || check.command.iter().all(|part| part.trim().is_empty()) {
        return Err(client(format!(
            "Invalid health check for container '{name}'. 'command' should not be null or empty."
        )));
    }
    let bounds = [
        ("interval", check.interval, 5, 300),
        ("timeout", check.timeout, 2, 60),
        ("retries", check.retries, 1, 10),
        ("startPeriod", check.start_period, 0, 300),
    ];
    for (member, value, min, max) in bounds {
        if let Some(value) = value {
            if !(min..=max).contains(&value) {
                return Err(client(format!(
                    "Invalid '{member}' setting for the health check of container '{name}'. The value must be between {min} and {max}."
                )));
            }
        }
    }
    Ok(())
}

fn validate_mounts(
    container: &ContainerDefinition,
    name: &str,
    volume_names: &HashSet<&str>,
    names: &HashMap<&str, &ContainerDefinition>,
) -> Result<(), ApiError> {
    for mount in container.mount_points.iter().flatten() {
        let source = mount.source_volume.as_deref().unwrap_or_default();
        if source.is_empty() {
            return Err(client(format!(
                "Invalid mount point for container '{name}'. 'sourceVolume' should not be null or empty."
            )));
        }
        if !volume_names.contains(source) {
            return Err(client(format!(
                "Invalid mount point for container '{name}'. Volume '{source}' is not defined in the task definition."
            )));
        }
        if mount.container_path.as_deref().is_none_or(str::is_empty) {
            return Err(client(format!(
                "Invalid mount point for container '{name}'. 'containerPath' should not be null or empty."
            )));
        }
    }
    for from in container.volumes_from.iter().flatten() {
        let source = from.source_container.as_deref().unwrap_or_default();
        if source.is_empty() || source == name || !names.contains_key(source) {
            return Err(client(format!(
                "Invalid 'volumesFrom' setting for container '{name}'. Container '{source}' does not exist in the task definition."
            )));
        }
    }
    Ok(())
}

fn validate_ulimits(container: &ContainerDefinition, name: &str) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for ulimit in container.ulimits.iter().flatten() {
        check_enum(&ulimit.name, enums::ULIMIT_NAME, "ulimits.name")?;
        if !seen.insert(ulimit.name.as_str()) {
            return Err(client(format!(
                "Invalid setting for container '{name}'. Duplicate ulimit '{}'.",
                ulimit.name
            )));
        }
        if ulimit.soft_limit > ulimit.hard_limit {
            return Err(client(format!(
                "Invalid ulimit '{}' for container '{name}'. 'softLimit' must be less than or equal to 'hardLimit'.",
                ulimit.name
            )));
        }
    }
    Ok(())
}

fn validate_linux_parameters(container: &ContainerDefinition, name: &str) -> Result<(), ApiError> {
    let Some(params) = &container.linux_parameters else {
        return Ok(());
    };
    if let Some(capabilities) = &params.capabilities {
        for capability in capabilities
            .add
            .iter()
            .chain(capabilities.drop.iter())
            .flatten()
        {
            check_enum(
                capability,
                enums::KERNEL_CAPABILITY,
                "linuxParameters.capabilities",
            )?;
        }
    }
    for device in params.devices.iter().flatten() {
        if device.host_path.is_empty() {
            return Err(client(format!(
                "Invalid device for container '{name}'. 'hostPath' should not be null or empty."
            )));
        }
        for permission in device.permissions.iter().flatten() {
            check_enum(
                permission,
                enums::DEVICE_CGROUP_PERMISSION,
                "devices.permissions",
            )?;
        }
    }
    if params.shared_memory_size.is_some_and(|size| size <= 0) {
        return Err(client(format!(
            "Invalid 'sharedMemorySize' setting for container '{name}'. The value must be greater than 0."
        )));
    }
    for tmpfs in params.tmpfs.iter().flatten() {
        if tmpfs.container_path.is_empty() || tmpfs.size <= 0 {
            return Err(client(format!(
                "Invalid tmpfs mount for container '{name}'. 'containerPath' must be set and 'size' must be greater than 0."
            )));
        }
    }
    if params.max_swap.is_some_and(|swap| swap < 0) {
        return Err(client(format!(
            "Invalid 'maxSwap' setting for container '{name}'. The value must be 0 or greater."
        )));
    }
    if params.swappiness.is_some_and(|s| !(0..=100).contains(&s)) {
        return Err(client(format!(
            "Invalid 'swappiness' setting for container '{name}'. The value must be between 0 and 100."
        )));
    }
    Ok(())
}

fn validate_misc(
    container: &ContainerDefinition,
    name: &str,
    accelerator_names: &HashSet<&str>,
) -> Result<(), ApiError> {
    check_opt_enum(
        container.version_consistency.as_ref(),
        enums::VERSION_CONSISTENCY,
        "versionConsistency",
    )?;
    for (member, value) in [
        ("startTimeout", container.start_timeout),
        ("stopTimeout", container.stop_timeout),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(client(format!(
                "Invalid '{member}' setting for container '{name}'. The value must be 0 or greater."
            )));
        }
    }
    for file in container.environment_files.iter().flatten() {
        check_enum(
            &file.r#type,
            enums::ENVIRONMENT_FILE_TYPE,
            "environmentFiles.type",
        )?;
        if file.value.is_empty() {
            return Err(client(format!(
                "Invalid environment file for container '{name}'. 'value' should not be null or empty."
            )));
        }
    }
    for variable in container.environment.iter().flatten() {
        if variable.name.as_deref().is_none_or(str::is_empty) {
            return Err(client(format!(
                "Invalid environment variable for container '{name}'. 'name' should not be null or empty."
            )));
        }
    }
    let mut secret_names = HashSet::new();
    for secret in container.secrets.iter().flatten() {
        if secret.name.is_empty() || secret.value_from.is_empty() {
            return Err(client(format!(
                "Invalid secret for container '{name}'. 'name' and 'valueFrom' should not be null or empty."
            )));
        }
        if !secret_names.insert(secret.name.as_str()) {
            return Err(client(format!(
                "Invalid secret for container '{name}'. Duplicate secret name '{}'.",
                secret.name
            )));
        }
    }
    if let Some(log) = &container.log_configuration {
        check_enum(
            &log.log_driver,
            enums::LOG_DRIVER,
            "logConfiguration.logDriver",
        )?;
        for secret in log.secret_options.iter().flatten() {
            if secret.name.is_empty() || secret.value_from.is_empty() {
                return Err(client(format!(
                    "Invalid log configuration for container '{name}'. Secret option 'name' and 'valueFrom' should not be null or empty."
                )));
            }
        }
    }
    for control in container.system_controls.iter().flatten() {
        if control.namespace.as_deref().is_none_or(str::is_empty) {
            return Err(client(format!(
                "Invalid system control for container '{name}'. 'namespace' should not be null or empty."
            )));
        }
    }
    let mut requirement_types = HashSet::new();
    for requirement in container.resource_requirements.iter().flatten() {
        check_enum(
            &requirement.r#type,
            enums::RESOURCE_TYPE,
            "resourceRequirements.type",
        )?;
        if !requirement_types.insert(requirement.r#type.as_str()) {
            return Err(client(format!(
                "Invalid resource requirements for container '{name}'. Duplicate type '{}'.",
                requirement.r#type
            )));
        }
        match requirement.r#type.as_str() {
            "GPU" => {
                if !requirement.value.parse::<u32>().is_ok_and(|gpus| gpus > 0) {
                    return Err(client(format!(
                        "Invalid GPU resource requirement for container '{name}'. The value must be a positive integer."
                    )));
                }
            }
            _ => {
                if !accelerator_names.contains(requirement.value.as_str()) {
                    return Err(client(format!(
                        "Invalid InferenceAccelerator resource requirement for container '{name}'. Device '{}' is not defined in the task definition.",
                        requirement.value
                    )));
                }
            }
        }
    }
    if let Some(firelens) = &container.firelens_configuration {
        check_enum(
            &firelens.r#type,
            enums::FIRELENS_CONFIGURATION_TYPE,
            "firelensConfiguration.type",
        )?;
    }
    if let Some(policy) = &container.restart_policy {
        if policy
            .ignored_exit_codes
            .as_ref()
            .is_some_and(|codes| codes.len() > 50)
        {
            return Err(client(format!(
                "Invalid restart policy for container '{name}'. At most 50 'ignoredExitCodes' can be specified."
            )));
        }
        if policy
            .restart_attempt_period
            .is_some_and(|p| !(60..=1800).contains(&p))
        {
            return Err(client(format!(
                "Invalid restart policy for container '{name}'. 'restartAttemptPeriod' must be between 60 and 1800 seconds."
            )));
        }
    }
    Ok(())
}

fn validate_dependencies(
    containers: &[ContainerDefinition],
    names: &HashMap<&str, &ContainerDefinition>,
) -> Result<(), ApiError> {
    for container in containers {
        let name = container_name(container);
        for dependency in container.depends_on.iter().flatten() {
            check_enum(
                &dependency.condition,
                enums::CONTAINER_CONDITION,
                "dependsOn.condition",
            )?;
            let target_name = dependency.container_name.as_str();
            let Some(target) = names.get(target_name).filter(|_| target_name != name) else {
                return Err(client(format!(
                    "Invalid 'dependsOn' setting for container '{name}'. Container '{target_name}' does not exist in the task definition."
                )));
            };
            match dependency.condition.as_str() {
                "SUCCESS" | "COMPLETE" if is_essential(target) => {
                    return Err(client(
                        "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
                    ));
                }
                "HEALTHY" if target.health_check.is_none() => {
                    return Err(client(format!(
                        "Invalid 'dependsOn' setting for container '{name}'. Container '{target_name}' must have a health check to be used with the HEALTHY condition."
                    )));
                }
                _ => {}
            }
        }
    }
    // Cycle detection: depth-first search with three colours.
    let edges: HashMap<&str, Vec<&str>> = containers
        .iter()
        .map(|c| {
            let targets = c
                .depends_on
                .iter()
                .flatten()
                .map(|d| d.container_name.as_str())
                .collect();
            (container_name(c), targets)
        })
        .collect();
    let mut state: HashMap<&str, u8> = HashMap::new();
    for start in containers.iter().map(container_name) {
        if state.get(start).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        state.insert(start, 1);
        while let Some((node, next)) = stack.pop() {
            let targets = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            if let Some(target) = targets.get(next) {
                stack.push((node, next + 1));
                match state.get(target).copied().unwrap_or(0) {
                    0 => {
                        state.insert(target, 1);
                        stack.push((target, 0));
                    }
                    1 => {
                        return Err(client(format!(
                            "Invalid 'dependsOn' setting. Container dependencies contain a cycle involving container '{target}'."
                        )));
                    }
                    _ => {}
                }
            } else {
                state.insert(node, 2);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The stored form.
// ---------------------------------------------------------------------------

/// Identity of a new revision, decided by the caller that stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The revision number within the family (1 for the first).
    pub revision: i32,
    /// The full ARN, `arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>`.
    pub task_definition_arn: String,
    /// Registration time, epoch seconds.
    pub registered_at: f64,
    /// The ARN of the principal that registered it.
    pub registered_by: Option<String>,
}

/// The request's volumes as ECS stores them: an EFS volume without a
/// `rootDirectory` mounts the root of the file system, and ECS says so with
/// `"/"`.
fn stored_volumes(req: &RegisterTaskDefinitionRequest) -> Vec<Volume> {
    let mut volumes = req.volumes.clone().unwrap_or_default();
    for efs in volumes
        .iter_mut()
        .filter_map(|v| v.efs_volume_configuration.as_mut())
    {
        efs.root_directory.get_or_insert_with(|| "/".to_string());
    }
    volumes
}

/// Builds the stored `TaskDefinition` for a request that [`validate`]
/// accepted, as DescribeTaskDefinition returns it.
///
/// What is filled in, as ECS does:
/// - task: `status` `ACTIVE`; `volumes` and `placementConstraints` as `[]`
///   when absent; an EFS volume's `rootDirectory` `/` when absent; `cpu`/`memory` normalized to plain numbers of CPU units and
///   MiB (`"1 vCPU"` is stored as `"1024"`); `compatibilities` and
///   `requiresAttributes` derived. `networkMode` stays absent when the request
///   has none, as ECS leaves it. Tags are not part of the definition.
/// - containers: `cpu` 0, `essential` true, and `portMappings`,
///   `environment`, `mountPoints`, `volumesFrom`, `systemControls` as `[]`
///   when absent; each port mapping gets `protocol` `tcp` and a `hostPort`
///   (the container port under `awsvpc`/`host`, 0 for a dynamic port under
///   `bridge`) unless it uses `containerPortRange`.
pub fn build_task_definition(
    req: &RegisterTaskDefinitionRequest,
    validated: &ValidatedTaskDefinition,
    registration: &Registration,
) -> TaskDefinition {
    let network_mode = validated.effective_network_mode.as_str();
    let containers = req
        .container_definitions
        .iter()
        .map(|container| stored_container(container, network_mode))
        .collect();
    TaskDefinition {
        task_definition_arn: Some(registration.task_definition_arn.clone()),
        container_definitions: Some(containers),
        family: Some(req.family.clone()),
        task_role_arn: req.task_role_arn.clone(),
        execution_role_arn: req.execution_role_arn.clone(),
        network_mode: req.network_mode.clone(),
        revision: Some(registration.revision),
        volumes: Some(stored_volumes(req)),
        status: Some("ACTIVE".to_string()),
        requires_attributes: Some(
            required_attributes(req, network_mode)
                .into_iter()
                .map(|name| Attribute {
                    name,
                    value: None,
                    target_type: None,
                    target_id: None,
                })
                .collect(),
        ),
        placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
        compatibilities: Some(validated.compatibilities.clone()),
        runtime_platform: req.runtime_platform.clone(),
        requires_compatibilities: req.requires_compatibilities.clone(),
        cpu: validated
            .cpu
            .map(|units| units.to_string())
            .or_else(|| req.cpu.clone()),
        memory: validated
            .memory
            .map(|mib| mib.to_string())
            .or_else(|| req.memory.clone()),
        inference_accelerators: req.inference_accelerators.clone(),
        pid_mode: req.pid_mode.clone(),
        ipc_mode: req.ipc_mode.clone(),
        proxy_configuration: req.proxy_configuration.clone(),
        registered_at: Some(registration.registered_at),
        deregistered_at: None,
        delete_requested_at: None,
        registered_by: registration.registered_by.clone(),
        ephemeral_storage: req.ephemeral_storage.clone(),
        enable_fault_injection: req.enable_fault_injection,
    }
}

fn stored_container(container: &ContainerDefinition, network_mode: &str) -> ContainerDefinition {
    let mut stored = container.clone();
    stored.cpu = Some(container.cpu.unwrap_or(0));
    stored.essential = Some(is_essential(container));
    let mappings = container.port_mappings.clone().unwrap_or_default();
    stored.port_mappings = Some(
        mappings
            .into_iter()
            .map(|mut mapping| {
                if mapping.protocol.is_none() {
                    mapping.protocol = Some("tcp".to_string());
                }
                if mapping.container_port_range.is_none() && mapping.host_port.is_none() {
                    mapping.host_port = match network_mode {
                        "awsvpc" | "host" => mapping.container_port,
                        _ => Some(0),
                    };
                }
                mapping
            })
            .collect(),
    );
    stored.environment = Some(container.environment.clone().unwrap_or_default());
    stored.mount_points = Some(container.mount_points.clone().unwrap_or_default());
    stored.volumes_from = Some(container.volumes_from.clone().unwrap_or_default());
    stored.system_controls = Some(container.system_controls.clone().unwrap_or_default());
    stored
}

const DOCKER_API: &str = "com.amazonaws.ecs.capability.docker-remote-api.";

/// The container-instance attributes a task needs, derived from the
/// features the definition uses. Berth derives this subset of what ECS
/// derives:
///
/// | feature | attributes |
/// |---|---|
/// | `networkMode` set | `docker-remote-api.1.18` |
/// | `networkMode` `awsvpc` | `ecs.capability.task-eni` |
/// | `taskRoleArn` | `com.amazonaws.ecs.capability.task-iam-role` (`-network-host` too under `host`) |
/// | `logConfiguration` | `docker-remote-api.1.18`, `com.amazonaws.ecs.capability.logging-driver.<driver>`; `awslogs` also `docker-remote-api.1.19`, and `ecs.capability.execution-role-awslogs` with an execution role |
/// | `ulimits`, `dockerLabels` | `docker-remote-api.1.18` |
/// | `memoryReservation` | `docker-remote-api.1.21` |
/// | `healthCheck` | `docker-remote-api.1.24`, `ecs.capability.container-health-check` |
/// | `linuxParameters` devices / capabilities | `docker-remote-api.1.17`; `sharedMemorySize`, `tmpfs` `docker-remote-api.1.22`; `initProcessEnabled` `docker-remote-api.1.25` |
/// | `pidMode` / `ipcMode` | `docker-remote-api.1.22` |
/// | `systemControls` | `docker-remote-api.1.38` |
/// | `dependsOn`, `startTimeout`, `stopTimeout` | `ecs.capability.container-ordering` |
/// | ECR image | `com.amazonaws.ecs.capability.ecr-auth`; with an execution role `ecs.capability.execution-role-ecr-pull` |
/// | `repositoryCredentials` | `com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager` |
/// | `secrets` | `ecs.capability.secrets.ssm.environment-variables` / `ecs.capability.secrets.asm.environment-variables` by source |
/// | log `secretOptions` | `ecs.capability.secrets.ssm.bootstrap.log-driver` / `ecs.capability.secrets.asm.bootstrap.log-driver` |
/// | `environmentFiles` | `ecs.capability.env-files.s3` |
/// | `firelensConfiguration` | `ecs.capability.firelens.<type>` |
/// | `proxyConfiguration` | `ecs.capability.aws-appmesh` |
/// | docker volumes | `docker-remote-api.1.25`; a non-`local` driver `ecs.capability.docker-plugin.<driver>` |
/// | EFS volumes | `ecs.capability.efs`; with IAM or an access point `ecs.capability.efsAuth` |
/// | FSx volumes | `ecs.capability.fsxWindowsFileServer` |
///
/// The result is sorted and free of duplicates.
pub fn required_attributes(req: &RegisterTaskDefinitionRequest, network_mode: &str) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    let mut add = |name: &str| {
        out.insert(name.to_string());
    };
    let api = |version: &str| format!("{DOCKER_API}{version}");
    if req.network_mode.is_some() {
        add(&api("1.18"));
    }
    if network_mode == "awsvpc" {
        add("ecs.capability.task-eni");
    }
    if req.task_role_arn.is_some() {
        add("com.amazonaws.ecs.capability.task-iam-role");
        if network_mode == "host" {
            add("com.amazonaws.ecs.capability.task-iam-role-network-host");
        }
    }
    if req.pid_mode.is_some() || req.ipc_mode.is_some() {
        add(&api("1.22"));
    }
    if req.proxy_configuration.is_some() {
        add("ecs.capability.aws-appmesh");
    }
    let execution_role = req.execution_role_arn.is_some();
    for container in &req.container_definitions {
        if let Some(log) = &container.log_configuration {
            add(&api("1.18"));
            add(&format!(
                "com.amazonaws.ecs.capability.logging-driver.{}",
                log.log_driver
            ));
            if log.log_driver == "awslogs" {
                add(&api("1.19"));
                if execution_role {
                    add("ecs.capability.execution-role-awslogs");
                }
            }
            for secret in log.secret_options.iter().flatten() {
                add(&format!(
                    "ecs.capability.secrets.{}.bootstrap.log-driver",
                    secret_source(&secret.value_from)
                ));
            }
        }
        if container.ulimits.is_some() || container.docker_labels.is_some() {
            add(&api("1.18"));
        }
        if container.memory_reservation.is_some() {
            add(&api("1.21"));
        }
        if container.health_check.is_some() {
            add(&api("1.24"));
            add("ecs.capability.container-health-check");
        }
        if let Some(params) = &container.linux_parameters {
            if params.devices.is_some() || params.capabilities.is_some() {
                add(&api("1.17"));
            }
            if params.shared_memory_size.is_some() || params.tmpfs.is_some() {
                add(&api("1.22"));
            }
            if params.init_process_enabled.is_some() {
                add(&api("1.25"));
            }
        }
        if container.system_controls.is_some() {
            add(&api("1.38"));
        }
        if container.depends_on.is_some()
            || container.start_timeout.is_some()
            || container.stop_timeout.is_some()
        {
            add("ecs.capability.container-ordering");
        }
        if container.image.as_deref().is_some_and(is_ecr_image) {
            add("com.amazonaws.ecs.capability.ecr-auth");
            if execution_role {
                add("ecs.capability.execution-role-ecr-pull");
            }
        }
        if container.repository_credentials.is_some() {
            add("com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager");
        }
        for secret in container.secrets.iter().flatten() {
            add(&format!(
                "ecs.capability.secrets.{}.environment-variables",
                secret_source(&secret.value_from)
            ));
        }
        if container
            .environment_files
            .as_ref()
            .is_some_and(|files| !files.is_empty())
        {
            add("ecs.capability.env-files.s3");
        }
        if let Some(firelens) = &container.firelens_configuration {
            add(&format!("ecs.capability.firelens.{}", firelens.r#type));
        }
    }
    for volume in req.volumes.iter().flatten() {
        if let Some(docker) = &volume.docker_volume_configuration {
            add(&api("1.25"));
            if let Some(driver) = docker.driver.as_deref().filter(|d| *d != "local") {
                add(&format!("ecs.capability.docker-plugin.{driver}"));
            }
        }
        if let Some(efs) = &volume.efs_volume_configuration {
            add("ecs.capability.efs");
            if efs.authorization_config.is_some() {
                add("ecs.capability.efsAuth");
            }
        }
        if volume
            .fsx_windows_file_server_volume_configuration
            .is_some()
        {
            add("ecs.capability.fsxWindowsFileServer");
        }
    }
    out.into_iter().collect()
}

/// `asm` for a Secrets Manager ARN, `ssm` for anything else (a Parameter
/// Store name or ARN).
fn secret_source(value_from: &str) -> &'static str {
    if value_from.starts_with("arn:") && value_from.contains(":secretsmanager:") {
        "asm"
    } else {
        "ssm"
    }
}
