//! What the control plane's integration tests share: a plane over an
//! in-memory store and a manual clock, and calls that go in and come out as
//! the JSON documents the edge passes.
#![allow(dead_code, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use berth_control::{Caller, Config, ControlPlane, ManualClock};
use berth_model::ApiError;
use berth_store::MemoryStore;
use serde_json::Value;

pub fn plane_with(config: Config) -> ControlPlane {
    ControlPlane::new(
        Arc::new(MemoryStore::new()),
        config,
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
}

pub fn plane() -> ControlPlane {
    plane_with(Config::default())
}

/// The account's root user, the caller of `call`, `ok` and `err`.
pub fn caller() -> Caller {
    Caller::root("arn:aws:iam::000000000000:root", "AKID")
}

pub fn call_as(
    cp: &ControlPlane,
    caller: &Caller,
    op: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let out = cp.ecs(op, body.to_string().as_bytes(), caller)?;
    serde_json::from_slice(&out).map_err(|e| ApiError::server(e.to_string()))
}

pub fn ok_as(cp: &ControlPlane, caller: &Caller, op: &str, body: Value) -> Value {
    match call_as(cp, caller, op, body) {
        Ok(v) => v,
        Err(e) => panic!("{op} failed: {e}"),
    }
}

pub fn call(cp: &ControlPlane, op: &str, body: Value) -> Result<Value, ApiError> {
    call_as(cp, &caller(), op, body)
}

pub fn ok(cp: &ControlPlane, op: &str, body: Value) -> Value {
    ok_as(cp, &caller(), op, body)
}

pub fn err(cp: &ControlPlane, op: &str, body: Value) -> ApiError {
    match call(cp, op, body) {
        Ok(v) => panic!("{op} unexpectedly succeeded: {v}"),
        Err(e) => e,
    }
}
