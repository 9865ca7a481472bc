//! The one interface the agent speaks to run containers.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::error::Result;
use crate::labels::LabelFilter;
use crate::types::{
    ContainerId, ContainerSpec, ContainerState, ContainerSummary, ImageInfo, RegistryAuth,
    RuntimeEvent, RuntimeInfo, Stats,
};

/// A stream of container events. An `Err` item means events may have been
/// missed (the connection dropped, or the consumer lagged): the caller
/// should re-list and re-inspect, then subscribe again.
pub type EventStream = BoxStream<'static, Result<RuntimeEvent>>;

/// A container runtime: Docker, or a simulation of it for scale tests.
///
/// Every method is safe to call concurrently. Identifiers are the runtime's
/// container ids (names are accepted wherever Docker accepts them).
#[async_trait]
pub trait ContainerRuntime: Send + Sync + std::fmt::Debug {
    /// `"docker"` or `"simulated"`.
    fn name(&self) -> &'static str;

    /// What the host offers.
    async fn info(&self) -> Result<RuntimeInfo>;

    /// Makes `image` available locally: a local image is used as it is,
    /// otherwise it is pulled (with `credentials` when given). The pull's
    /// start and stop times are reported.
    async fn ensure_image(
        &self,
        image: &str,
        credentials: Option<&RegistryAuth>,
    ) -> Result<ImageInfo>;

    /// Creates (but does not start) a container; named volumes it mounts
    /// are created first if absent.
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId>;

    /// Starts a created container. Starting a running one is not an error.
    async fn start(&self, id: &ContainerId) -> Result<()>;

    /// Sends SIGTERM (or the image's stop signal), then SIGKILL after
    /// `timeout`. Stopping a stopped container is not an error.
    async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<()>;

    /// Sends `signal` (`SIGKILL`, `SIGHUP`, `9`, ...).
    async fn kill(&self, id: &ContainerId, signal: &str) -> Result<()>;

    /// The container's current state.
    async fn inspect(&self, id: &ContainerId) -> Result<ContainerState>;

    /// Removes the container (forcibly, with its anonymous volumes).
    /// Removing a container that is already gone is not an error.
    async fn remove(&self, id: &ContainerId) -> Result<()>;

    /// Removes a named volume. A volume that is already gone is not an
    /// error; one still in use is a `Conflict`.
    async fn remove_volume(&self, name: &str) -> Result<()>;

    /// All containers, running or not, whose labels match `filter`.
    async fn list(&self, filter: &LabelFilter) -> Result<Vec<ContainerSummary>>;

    /// Container events from the moment of this call on (even if the
    /// stream is polled later), for containers whose labels match `filter`.
    fn events(&self, filter: &LabelFilter) -> EventStream;

    /// One sample of the container's resource use.
    async fn stats(&self, id: &ContainerId) -> Result<Stats>;

    /// The host's address on the default bridge network (Docker's `bridge`
    /// gateway, e.g. `172.17.0.1`): where bridge-mode containers reach
    /// services of the host. `None` when the runtime has no such network.
    async fn bridge_gateway(&self) -> Result<Option<IpAddr>> {
        Ok(None)
    }
}
