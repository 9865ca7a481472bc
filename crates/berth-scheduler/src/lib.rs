//! Berth's placement engine: which container instance gets each task, and which tasks stop when a
//! service shrinks.
//!
//! Architecture invariant: this crate is pure. It knows nothing of tokio, HTTP, Docker, the store or
//! the clock, and draws randomness only from the RNG it is given. A [`ClusterSnapshot`] and a
//! [`PlacementRequest`] go in, a [`Plan`] comes out; replaying the same inputs with the same seed
//! gives the same plan.
//!
//! - [`place`] runs the pipeline in [`pipeline`]: feasibility stages (agent and status, memberOf,
//!   distinctInstance, cpu, memory, gpu, tcp ports, udp ports), then ranking by the chained
//!   strategies, then selection, task after task, with dynamic host ports assigned from the
//!   instance's own range ([`ContainerInstance::dynamic_ports`]), or else from
//!   [`PlacementOptions`], never a port the instance reports as used or a task there holds.
//!   Tasks that cannot be placed come back as a count ([`Plan::unplaced`]) with one [`Diagnosis`]
//!   in ECS's words (one record per rejected instance), so a run costs what it places, whatever
//!   count was asked for. A one-task request takes a shortcut with the same answer: one pass over the snapshot,
//!   keeping only the best candidate (`small.rs`).
//! - [`select_tasks_to_stop`] is the scale-in mirror of placement.
//! - [`query`] is the cluster query language, shared with ListContainerInstances' `filter`.
//! - [`PlacementStrategy::from_wire`] and [`PlacementConstraint::from_wire`] turn ECS's JSON shapes
//!   into the domain types, with ECS's defaults alongside.
//!
//! ```
//! use berth_scheduler::*;
//! use rand::SeedableRng;
//!
//! let snapshot = ClusterSnapshot {
//!     instances: vec![
//!         ContainerInstance::new("ci-a", Resources { cpu: 2048, memory: 4096, gpus: 0 })
//!             .with_attribute(ATTR_AVAILABILITY_ZONE, "us-east-1a"),
//!         ContainerInstance::new("ci-b", Resources { cpu: 2048, memory: 4096, gpus: 0 })
//!             .with_attribute(ATTR_AVAILABILITY_ZONE, "us-east-1b"),
//!     ],
//! };
//! let request = PlacementRequest {
//!     group: "service:web".into(),
//!     family: "web".into(),
//!     requirements: TaskRequirements {
//!         resources: Resources { cpu: 256, memory: 512, gpus: 0 },
//!         dynamic_tcp_ports: 1,
//!         ..Default::default()
//!     },
//!     strategies: PlacementStrategy::service_defaults(),
//!     constraints: vec![PlacementConstraint::member_of("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]").unwrap()],
//!     count: 2,
//! };
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let plan = place(&snapshot, &request, &PlacementOptions::default(), &mut rng);
//! assert_eq!(plan.placements.len(), 2);
//! assert_ne!(plan.placements[0].instance_id, plan.placements[1].instance_id);
//! assert_eq!(plan.placements[0].dynamic_tcp_ports, vec![49153]);
//! ```

pub mod failure;
pub mod model;
pub mod pipeline;
mod ports;
pub mod query;
pub mod scale_in;
mod small;
pub mod strategy;

pub use failure::{ClosestInstance, Diagnosis, FailureReason, ReasonCount, Rejection};
pub use model::{
    ClusterSnapshot, ContainerInstance, InstanceStatus, Placement, PlacementOptions,
    PlacementRequest, Plan, Resources, TaskOnInstance, TaskRequirements, ATTR_AMI_ID,
    ATTR_AVAILABILITY_ZONE, ATTR_CPU_ARCHITECTURE, ATTR_INSTANCE_TYPE, ATTR_OS_TYPE,
};
pub use pipeline::{check_instance, place, place_general, place_with_tie_mask};
pub use query::{Expr, InstanceView, ParseError};
pub use scale_in::{select_tasks_to_stop, TaskToStop};
pub use strategy::{BinpackField, PlacementConstraint, PlacementStrategy, SpreadField, WireError};
