//! The runtime's error type. Variants are what a caller (the agent) decides
//! on: a missing container, an image that cannot be had, a name or port
//! conflict, a runtime that cannot be reached. The message keeps Docker's
//! own words so it can become a container's stop reason unchanged.

/// Result of every runtime operation.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The container (or volume, or, at create, the image) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The image is not present locally and the registry does not have it.
    #[error("image {image} not found: {message}")]
    ImageNotFound { image: String, message: String },
    /// Pulling the image failed for another reason (auth, network, ...).
    #[error("pull of image {image} failed: {message}")]
    ImagePull { image: String, message: String },
    /// A name is taken, or the operation conflicts with the container's state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A host port the container asks for is already bound.
    #[error("host port in use: {0}")]
    PortInUse(String),
    /// The engine could not start the container (missing executable, bad
    /// mount, ...): ECS's `CannotStartContainerError`.
    #[error("cannot start container: {0}")]
    StartFailed(String),
    /// The spec cannot be turned into a container (bad port, bad mount, ...).
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The runtime itself cannot be reached (socket missing, timeout).
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// Anything else, with the runtime's message.
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// True when retrying later may succeed without changing the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, RuntimeError::Unavailable(_))
    }
}
