//! Berth's container runtime: the [`ContainerRuntime`] trait the agent
//! speaks, with two implementations.
//!
//! - [`DockerRuntime`] runs real containers on a Docker Engine through its
//!   API (bollard), honouring every field of [`ContainerSpec`].
//! - [`SimulatedRuntime`] runs nothing: containers live in memory and follow
//!   a scripted [`SimBehavior`], driven by a passed-in [`Clock`]. It exists
//!   for scale tests and says `simulated` wherever it shows up.
//!
//! The types ([`ContainerSpec`], [`ContainerState`], ...) are Berth's own,
//! not ECS JSON; the agent translates between the two. [`labels`] names the
//! Docker labels that let a restarted agent find its containers again.
//! [`HostPorts`] says which TCP ports something on the host listens on.

mod clock;
mod docker;
mod error;
mod host_ports;
mod image_ref;
pub mod labels;
mod runtime;
mod simulated;
mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use docker::DockerRuntime;
pub use error::{Result, RuntimeError};
pub use host_ports::{listening_ports, FixedHostPorts, HostPorts, NoHostPorts, ProcNetTcp};
pub use image_ref::ImageRef;
pub use labels::LabelFilter;
pub use runtime::{ContainerRuntime, EventStream};
pub use simulated::{
    SimBehavior, SimulatedConfig, SimulatedRuntime, SIMULATED_LABEL, SIM_BEHAVIOR_LABEL,
};
pub use types::*;
