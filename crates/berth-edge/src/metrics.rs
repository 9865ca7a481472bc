//! Prometheus metrics of the edge: request counts by service, operation and
//! outcome, and latency histograms by service and operation.
//!
//! Every label value comes from a closed set, so no client can grow the
//! number of series: a service is one of [`SERVICES`], an operation one the
//! service's model names ([`operation_label`]) or [`OTHER`], and a request
//! that did not authenticate is counted under [`UNAUTHENTICATED`] whatever
//! it asked for. Label values are escaped as the exposition format requires
//! all the same ([`LabelValue`]).

use std::fmt::Write as _;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The services a request can be counted under (`unknown`: no known
/// target or action).
pub const SERVICES: &[&str] = &["ecs", "ecr", "sts", "unknown"];

/// The operation label of a known service's operation that is not in its
/// model, and of every request of an unknown service.
pub const OTHER: &str = "other";

/// The operation label of a request that did not authenticate: what it
/// asked for is the client's word, not worth a series.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// ECR's operations, as botocore's model (`ecr/2015-09-21`) names them.
pub const ECR_OPERATIONS: &[&str] = &[
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "BatchGetRepositoryScanningConfiguration",
    "CompleteLayerUpload",
    "CreatePullThroughCacheRule",
    "CreateRepository",
    "CreateRepositoryCreationTemplate",
    "DeleteLifecyclePolicy",
    "DeletePullThroughCacheRule",
    "DeleteRegistryPolicy",
    "DeleteRepository",
    "DeleteRepositoryCreationTemplate",
    "DeleteRepositoryPolicy",
    "DeleteSigningConfiguration",
    "DeregisterPullTimeUpdateExclusion",
    "DescribeImageReplicationStatus",
    "DescribeImageScanFindings",
    "DescribeImageSigningStatus",
    "DescribeImages",
    "DescribePullThroughCacheRules",
    "DescribeRegistry",
    "DescribeRepositories",
    "DescribeRepositoryCreationTemplates",
    "GetAccountSetting",
    "GetAuthorizationToken",
    "GetDownloadUrlForLayer",
    "GetLifecyclePolicy",
    "GetLifecyclePolicyPreview",
    "GetRegistryPolicy",
    "GetRegistryScanningConfiguration",
    "GetRepositoryPolicy",
    "GetSigningConfiguration",
    "InitiateLayerUpload",
    "ListImageReferrers",
    "ListImages",
    "ListPullTimeUpdateExclusions",
    "ListTagsForResource",
    "PutAccountSetting",
    "PutImage",
    "PutImageScanningConfiguration",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "PutRegistryPolicy",
    "PutRegistryScanningConfiguration",
    "PutReplicationConfiguration",
    "PutSigningConfiguration",
    "RegisterPullTimeUpdateExclusion",
    "SetRepositoryPolicy",
    "StartImageScan",
    "StartLifecyclePolicyPreview",
    "TagResource",
    "UntagResource",
    "UpdateImageStorageClass",
    "UpdatePullThroughCacheRule",
    "UpdateRepositoryCreationTemplate",
    "UploadLayerPart",
    "ValidatePullThroughCacheRule",
];

/// STS's operations, as botocore's model (`sts/2011-06-15`) names them.
pub const STS_OPERATIONS: &[&str] = &[
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "AssumeRoot",
    "DecodeAuthorizationMessage",
    "GetAccessKeyInfo",
    "GetCallerIdentity",
    "GetDelegatedAccessToken",
    "GetFederationToken",
    "GetSessionToken",
    "GetWebIdentityToken",
];

/// The label of `operation` of `service`: the model's own name of it (a
/// `&'static str` from the closed list), or [`OTHER`].
pub fn operation_label(service: &str, operation: &str) -> &'static str {
    let ops: &[&'static str] = match service {
        "ecs" => berth_control::ECS_OPERATIONS,
        "ecr" => ECR_OPERATIONS,
        "sts" => STS_OPERATIONS,
        _ => &[],
    };
    ops.iter()
        .copied()
        .find(|op| *op == operation)
        .unwrap_or(OTHER)
}

/// A label value, escaped on output as the OpenMetrics and Prometheus text
/// formats require: backslash, double quote and line feed.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct LabelValue(pub String);

impl From<&str> for LabelValue {
    fn from(s: &str) -> Self {
        LabelValue(s.to_string())
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub service: LabelValue,
    pub operation: LabelValue,
    /// `ok`, or the error code returned.
    pub code: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub service: LabelValue,
    pub operation: LabelValue,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    /// Agent channels open now.
    pub channels_open: Gauge,
    /// Connections to the listener open now.
    pub connections_open: Gauge,
    /// Frames carried by agent channels, by direction and type.
    pub channel_frames: Family<FrameLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    /// `up` (from the agent) or `down`.
    pub direction: LabelValue,
    pub r#type: LabelValue,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "api_requests",
            "API requests by service, operation and outcome",
            requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "API request latency by service and operation",
            latency.clone(),
        );
        let channels_open = Gauge::default();
        registry.register(
            "agent_channels_open",
            "Agent channels open now",
            channels_open.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Connections to the edge listener open now",
            connections_open.clone(),
        );
        let channel_frames = Family::<FrameLabels, Counter>::default();
        registry.register(
            "agent_channel_frames",
            "Frames carried by agent channels, by direction and type",
            channel_frames.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            channels_open,
            connections_open,
            channel_frames,
        }
    }
}

impl Metrics {
    /// Counts one request. Every argument must come from a closed set
    /// (hence `'static`): a service of [`SERVICES`], an operation label of
    /// [`operation_label`] or [`UNAUTHENTICATED`], an error code of a closed
    /// enum.
    pub fn observe(
        &self,
        service: &'static str,
        operation: &'static str,
        code: &'static str,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                service: service.into(),
                operation: operation.into(),
                code: code.into(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                service: service.into(),
                operation: operation.into(),
            })
            .observe(seconds);
    }

    pub fn frame(&self, direction: &'static str, frame_type: &'static str) {
        self.channel_frames
            .get_or_create(&FrameLabels {
                direction: direction.into(),
                r#type: frame_type.into(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.requests
            .get_or_create(&RequestLabels {
                service: "ecs".into(),
                operation: "a\"b\\c\nd".into(),
                code: "ok".into(),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains(r#"operation="a\"b\\c\nd""#),
            "escaped value missing in {text}"
        );
        assert!(!text.contains("\nd\""), "a raw newline leaked into {text}");
    }

    #[test]
    fn only_known_operations_get_their_own_label() {
        assert_eq!(operation_label("ecs", "RunTask"), "RunTask");
        assert_eq!(operation_label("ecr", "UploadLayerPart"), "UploadLayerPart");
        assert_eq!(
            operation_label("sts", "GetCallerIdentity"),
            "GetCallerIdentity"
        );
        assert_eq!(operation_label("ecs", "RunTask\"} 1\nfake"), OTHER);
        assert_eq!(operation_label("ecs", "GetCallerIdentity"), OTHER);
        assert_eq!(operation_label("unknown", "RunTask"), OTHER);
    }
}
