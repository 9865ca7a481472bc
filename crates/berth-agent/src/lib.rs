//! `berth agent`: runs the tasks the control plane places on this host.
//!
//! The heart is [`reconcile`]: a pure function from the tasks the control
//! plane wants here and the containers the runtime shows, to the actions
//! that close the gap (launch, start, stop, remove, report). [`spec`] turns
//! an ECS container definition into the runtime's container spec, also
//! pure. [`agent`] is the loop at the edge that gathers both sides over the
//! signed ECS API (`berth-client`) and the runtime, and carries actions out.

pub mod agent;
pub mod channel;
pub mod identity;
pub mod metadata;
pub mod reconcile;
pub mod spec;

pub use agent::{Agent, AgentConfig, AgentError};
pub use berth_client::{CallError, EcsClient};
