//! Berth's domain model: the resources of ECS as plain Rust types, their
//! validation, ARNs and the closed set of API error codes.
//!
//! The types mirror the shapes of the ECS API model member for member
//! (camelCase on the wire through serde), so the control plane can store and
//! return them as they are. Nothing here knows HTTP, signing or storage.

pub mod account;
pub mod arn;
pub mod channel;
pub mod cluster;
pub mod common;
pub mod container_instance;
pub mod error;
pub mod service;
pub mod task;
pub mod task_definition;
pub mod units;

pub use error::{ApiError, ErrorCode};
