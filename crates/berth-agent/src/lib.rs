//! `berth agent`: runs the tasks the control plane places on this host.
//!
//! The heart is [`reconcile`]: a pure function from the tasks the control
//! plane wants here and the containers the runtime shows, to the actions
//! that close the gap (create, start, stop, remove, report). The loop that
//! gathers both sides and carries the actions out lives at the edge.

pub mod reconcile;
