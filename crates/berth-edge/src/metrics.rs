//! Prometheus metrics of the edge: request counts by service, operation and
//! outcome, and latency histograms by service and operation.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub service: String,
    pub operation: String,
    /// `ok`, or the error code returned.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub service: String,
    pub operation: String,
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
    /// Frames carried by agent channels, by direction and type.
    pub channel_frames: Family<FrameLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    /// `up` (from the agent) or `down`.
    pub direction: String,
    pub r#type: String,
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
            channel_frames,
        }
    }
}

impl Metrics {
    pub fn observe(&self, service: &str, operation: &str, code: &str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                service: service.to_string(),
                operation: operation.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                service: service.to_string(),
                operation: operation.to_string(),
            })
            .observe(seconds);
    }

    pub fn frame(&self, direction: &str, frame_type: &str) {
        self.channel_frames
            .get_or_create(&FrameLabels {
                direction: direction.to_string(),
                r#type: frame_type.to_string(),
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
