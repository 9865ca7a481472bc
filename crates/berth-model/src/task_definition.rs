//! placeholder (owned by the task definition helper)
