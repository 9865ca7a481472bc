//! The closed set of errors the API returns. Each code is mapped once, here,
//! to its wire name and HTTP status; the edge only formats them.

use std::fmt;

/// An API error code, named as the ECS/ECR/STS models name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // ECS model errors.
    ClientException,
    ServerException,
    InvalidParameterException,
    ClusterNotFoundException,
    ClusterContainsServicesException,
    ClusterContainsContainerInstancesException,
    ClusterContainsTasksException,
    ResourceNotFoundException,
    ResourceInUseException,
    TargetNotFoundException,
    AttributeLimitExceededException,
    LimitExceededException,
    AccessDeniedException,
    UnsupportedFeatureException,
    UpdateInProgressException,
    ServiceNotFoundException,
    ServiceNotActiveException,
    PlatformUnknownException,
    PlatformTaskDefinitionIncompatibilityException,
    // Protocol and authentication errors shared by every AWS JSON service.
    UnknownOperationException,
    SerializationException,
    ValidationException,
    MissingAuthenticationTokenException,
    IncompleteSignatureException,
    InvalidSignatureException,
    UnrecognizedClientException,
    ExpiredTokenException,
    XAmzContentSHA256Mismatch,
    // Query-protocol (STS) spellings.
    MissingAuthenticationToken,
    IncompleteSignature,
    SignatureDoesNotMatch,
    InvalidClientTokenId,
    ExpiredToken,
    InvalidAction,
    InternalFailure,
}

impl ErrorCode {
    /// The `__type` value on the wire.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ClientException => "ClientException",
            ServerException => "ServerException",
            InvalidParameterException => "InvalidParameterException",
            ClusterNotFoundException => "ClusterNotFoundException",
            ClusterContainsServicesException => "ClusterContainsServicesException",
            ClusterContainsContainerInstancesException => {
                "ClusterContainsContainerInstancesException"
            }
            ClusterContainsTasksException => "ClusterContainsTasksException",
            ResourceNotFoundException => "ResourceNotFoundException",
            ResourceInUseException => "ResourceInUseException",
            TargetNotFoundException => "TargetNotFoundException",
            AttributeLimitExceededException => "AttributeLimitExceededException",
            LimitExceededException => "LimitExceededException",
            AccessDeniedException => "AccessDeniedException",
            UnsupportedFeatureException => "UnsupportedFeatureException",
            UpdateInProgressException => "UpdateInProgressException",
            ServiceNotFoundException => "ServiceNotFoundException",
            ServiceNotActiveException => "ServiceNotActiveException",
            PlatformUnknownException => "PlatformUnknownException",
            PlatformTaskDefinitionIncompatibilityException => {
                "PlatformTaskDefinitionIncompatibilityException"
            }
            UnknownOperationException => "UnknownOperationException",
            SerializationException => "SerializationException",
            ValidationException => "ValidationException",
            MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            IncompleteSignatureException => "IncompleteSignatureException",
            InvalidSignatureException => "InvalidSignatureException",
            UnrecognizedClientException => "UnrecognizedClientException",
            ExpiredTokenException => "ExpiredTokenException",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            MissingAuthenticationToken => "MissingAuthenticationToken",
            IncompleteSignature => "IncompleteSignature",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            InvalidClientTokenId => "InvalidClientTokenId",
            ExpiredToken => "ExpiredToken",
            InvalidAction => "InvalidAction",
            InternalFailure => "InternalFailure",
        }
    }

    /// The HTTP status the error is returned with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            ServerException | InternalFailure => 500,
            // Authentication failures are 403 Forbidden, except a malformed
            // signature, which is a bad request.
            MissingAuthenticationTokenException
            | MissingAuthenticationToken
            | AccessDeniedException
            | InvalidSignatureException
            | UnrecognizedClientException
            | ExpiredTokenException
            | SignatureDoesNotMatch
            | InvalidClientTokenId
            | ExpiredToken => 403,
            _ => 400,
        }
    }

    /// True for faults of the server rather than the caller.
    pub fn is_server_fault(self) -> bool {
        self.http_status() >= 500
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the API returns it: a code and a human message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterException, message)
    }
    pub fn client(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ClientException, message)
    }
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerException, message)
    }
    pub fn cluster_not_found() -> Self {
        Self::new(ErrorCode::ClusterNotFoundException, "Cluster not found.")
    }
}
